//! Model folders in and out (issue 18, part 1): the real all-MiniLM-L6-v2 folder and a 3-shard copy of
//! it compress to the same tensors, decompress back, other files copied; memory stays bounded by the
//! largest tensor, not the model; offsets beyond 4 GiB work; every bad folder fails clearly, exit 1,
//! nothing written; a signal leaves no temporary folder.
#![cfg(all(feature = "cli", unix))]

mod common;
#[path = "support/minilm.rs"]
mod minilm;
#[path = "support/model_dirs.rs"]
mod model_dirs;

use common::greenai;
use greenai::model::{write_safetensors, Model, ModelFile, OutTensor};
use model_dirs::{
    assert_peak_rss_within, copy_dir, files_under, interrupt_while_writing, shard_in_three, synthetic_folder,
    temporaries, MIB,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Every tensor of a model (file or folder) as (dtype, shape, bytes), by name.
fn tensors_of(path: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let model = Model::open(path).unwrap();
    model
        .tensors()
        .map(|info| {
            let t = model.read(info).unwrap();
            (info.name.clone(), (format!("{:?}", t.dtype), t.shape.to_vec(), t.bytes.to_vec()))
        })
        .collect()
}

fn run_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = greenai(args);
    assert!(ok, "{args:?}: {stderr}");
    stdout
}

#[test]
fn minilm_folder_and_its_three_shard_copy_compress_to_the_same_tensors() {
    let Some(model) = minilm::minilm_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sharded = tmp.path().join("sharded");
    shard_in_three(&model, &sharded);
    let (q1, q3) = (tmp.path().join("q1"), tmp.path().join("q3"));
    let report1 =
        run_ok(&["compress", s(&model), "-o", s(&q1), "--quant", "int8", "--granularity", "channel"]);
    let report3 =
        run_ok(&["compress", s(&sharded), "-o", s(&q3), "--quant", "int8", "--granularity", "channel"]);
    assert!(report1.contains("embeddings.word_embeddings.weight") && report1.contains("total:"), "{report1}");
    let total_line = |r: &str| r.lines().find(|l| l.starts_with("total:")).unwrap().to_string();
    assert_eq!(total_line(&report1), total_line(&report3), "the report covers the whole model");

    // Same tensors out, byte for byte, whichever way the input was split.
    let (t1, t3) = (tensors_of(&q1), tensors_of(&q3));
    assert!(t1.contains_key("encoder.layer.0.attention.self.query.weight.scale"));
    assert_eq!(t1.len(), t3.len());
    for (name, a) in &t1 {
        assert!(t3.get(name) == Some(a), "`{name}` differs between the single-file and sharded outputs");
    }
    // The shards keep their names, the index covers every tensor written (companions included) and
    // counts their bytes; every other file is copied as it was.
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(q3.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), t3.len());
    for (name, shard) in map {
        let file = ModelFile::open(q3.join(shard.as_str().unwrap())).unwrap();
        assert!(file.info(name).is_some(), "index puts `{name}` in {shard}, which lacks it");
    }
    let bytes: u64 = t3.values().map(|(_, _, b)| b.len() as u64).sum();
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(bytes));
    assert_eq!(files_under(&q3), files_under(&sharded));
    assert_eq!(files_under(&q1), files_under(&model));
    for rel in ["tokenizer.json", "config.json", "1_Pooling/config.json", "vocab.txt"] {
        assert_eq!(std::fs::read(q1.join(rel)).unwrap(), std::fs::read(model.join(rel)).unwrap(), "{rel}");
        assert_eq!(std::fs::read(q3.join(rel)).unwrap(), std::fs::read(model.join(rel)).unwrap(), "{rel}");
    }

    // Back to float: the same tensors again, the original names and dtypes, companions gone.
    let (b1, b3) = (tmp.path().join("b1"), tmp.path().join("b3"));
    run_ok(&["decompress", s(&q1), "-o", s(&b1)]);
    run_ok(&["decompress", s(&q3), "-o", s(&b3)]);
    let (back1, back3, original) = (tensors_of(&b1), tensors_of(&b3), tensors_of(&model));
    assert_eq!(back1, back3);
    assert_eq!(back1.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>());
    for (name, (dtype, shape, _)) in &original {
        assert_eq!((&back1[name].0, &back1[name].1), (dtype, shape), "{name}");
    }
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b3.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(index["weight_map"].as_object().unwrap().len(), original.len());

    // inspect reads the folders whole.
    let listing = run_ok(&["inspect", s(&q3)]);
    // A compressed folder is listed shard by shard, each tensor once with its companions folded in.
    assert_eq!(listing.matches("greenai format 2").count(), 3, "{listing}");
    assert!(listing.contains("int8"), "{listing}");
    let plain = run_ok(&["inspect", s(&model)]);
    assert!(plain.contains("in 1 safetensors file(s)") || plain.contains("tensors, header"), "{plain}");
}

#[test]
fn compressing_minilm_stays_within_the_largest_tensor_plus_64_mib() {
    let Some(model) = minilm::minilm_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q");
    let largest = Model::open(&model).unwrap().tensors().map(|t| t.byte_len).max().unwrap();
    assert_peak_rss_within("MiniLM compress", &["compress", s(&model), "-o", s(&out)], largest);
}

#[test]
fn memory_does_not_grow_with_the_model() {
    // 40 tensors of 16 MiB: 640 MiB of weights, four times the bound.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    synthetic_folder(&dir, 40, 2048, 2048);
    let out = tmp.path().join("q");
    let largest = 16 * MIB;
    let args = ["compress", s(&dir), "-o", s(&out), "--quant", "fp16"];
    let Some(bound) = assert_peak_rss_within("40 x 16 MiB compress", &args, largest) else { return };
    assert!(40 * largest / 1024 > 2 * bound, "the model must dwarf the bound for the test to mean anything");
    let q = Model::open(&out).unwrap();
    assert_eq!(q.len(), 40);
    assert!(q.tensors().all(|t| format!("{:?}", t.dtype) == "F16"));
}

#[test]
fn a_tensor_beyond_4_gib_is_inspected_and_compressed_in_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big.safetensors");
    // "head" (16 bytes), "big" (4 GiB + 64 bytes of zeros, a hole in a sparse file), "tail.weight"
    // (4 x 8 f32) whose data starts beyond 4 GiB.
    let big_elems: u64 = (1 << 30) + 16;
    let (head_end, big_end) = (16u64, 16 + big_elems * 4);
    let tail_end = big_end + 128;
    let mut header = format!(
        r#"{{"head":{{"dtype":"F32","shape":[4],"data_offsets":[0,{head_end}]}},"big":{{"dtype":"F32","shape":[{big_elems}],"data_offsets":[{head_end},{big_end}]}},"tail.weight":{{"dtype":"F32","shape":[4,8],"data_offsets":[{big_end},{tail_end}]}}}}"#
    );
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let data_start = 8 + header.len() as u64;
    let tail: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) / 8.0).collect();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
        f.write_all(header.as_bytes()).unwrap();
        f.write_all(&[1.0f32, 2.0, 3.0, 4.0].map(f32::to_le_bytes).concat()).unwrap();
        f.set_len(data_start + tail_end).unwrap();
        f.seek(SeekFrom::Start(data_start + big_end)).unwrap();
        f.write_all(&tail.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()).unwrap();
    }
    let start = std::time::Instant::now();
    let rows: serde_json::Value = serde_json::from_str(&run_ok(&["inspect", s(&path), "--json"])).unwrap();
    let row = |name: &str| rows.as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone();
    assert_eq!(row("big")["bytes"].as_u64(), Some(big_elems * 4));
    assert_eq!(row("big")["sparsity"].as_f64(), Some(1.0));
    assert_eq!(row("tail.weight")["min"].as_f64(), Some(-15.5 / 8.0));
    assert_eq!(row("tail.weight")["max"].as_f64(), Some(15.5 / 8.0));

    let out = tmp.path().join("q.safetensors");
    run_ok(&["compress", s(&path), "-o", s(&out), "--skip", "^big$"]);
    let q = ModelFile::open(&out).unwrap();
    let info = q.info("tail.weight").unwrap();
    assert!(q.info("big").unwrap().offset < info.offset, "the tail still lies after the big tensor");
    assert!(info.offset > 1 << 32);
    let scales = q.tensor("tail.weight.scale").unwrap().to_f32().unwrap();
    let stored = q.tensor("tail.weight").unwrap();
    for (i, (&x, &b)) in tail.iter().zip(stored.bytes.iter()).enumerate() {
        let restored = f32::from(b as i8) * scales[i / 8];
        assert!((restored - x).abs() <= scales[i / 8] / 2.0 + 1e-6, "element {i}: {restored} vs {x}");
    }
    assert_eq!(q.tensor("head").unwrap().to_f32().unwrap(), [1.0, 2.0, 3.0, 4.0]);
    println!(
        "inspect + compress of a {} GiB sparse file: {:?}",
        (data_start + tail_end) >> 30,
        start.elapsed()
    );
}

/// A small model folder: config.json, two shards of two 8 x 8 f32 tensors each, their index, a
/// tokenizer file. Returns the folder.
fn small_sharded(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "toy"}"#).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    let weight = |k: usize| OutTensor {
        dtype: safetensors::Dtype::F32,
        shape: vec![8, 8],
        bytes: Cow::Owned((0..64).flat_map(|i| ((i * k) as f32 / 10.0).to_le_bytes()).collect()),
    };
    let none = HashMap::new();
    write_safetensors(
        &dir.join("a.safetensors"),
        &[("l0.w".into(), weight(1)), ("l1.w".into(), weight(2))],
        &none,
    )
    .unwrap();
    write_safetensors(
        &dir.join("b.safetensors"),
        &[("l2.w".into(), weight(3)), ("l3.w".into(), weight(4))],
        &none,
    )
    .unwrap();
    write_index(&dir, &[("l0.w", "a"), ("l1.w", "a"), ("l2.w", "b"), ("l3.w", "b")]);
    dir
}

fn write_index(dir: &Path, entries: &[(&str, &str)]) {
    let map: Vec<String> = entries.iter().map(|(t, s)| format!(r#""{t}": "{s}.safetensors""#)).collect();
    let text = format!(r#"{{"metadata": {{"total_size": 1024}}, "weight_map": {{{}}}}}"#, map.join(", "));
    std::fs::write(dir.join("model.safetensors.index.json"), text).unwrap();
}

#[test]
fn bad_model_folders_fail_clearly_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let good = small_sharded(tmp.path(), "good");
    let out = tmp.path().join("out");
    let fails = |input: &Path, output: &Path, needle: &str| {
        for args in [vec!["compress", s(input), "-o", s(output)], vec!["inspect", s(input)]] {
            let (ok, _, stderr) = greenai(&args);
            assert!(!ok, "{args:?} succeeded");
            assert!(stderr.contains("greenai: error:") && !stderr.contains("panicked"), "{args:?}: {stderr}");
            assert!(stderr.contains(needle), "{args:?}: {needle:?} not in {stderr}");
        }
        assert!(!output.exists(), "{} was written", output.display());
        let leftovers: Vec<_> = std::fs::read_dir(output.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".greenai-"))
            .collect();
        assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
    };
    let variant = |name: &str, change: &dyn Fn(&Path)| {
        let dir = tmp.path().join(name);
        copy_dir(&good, &dir);
        change(&dir);
        dir
    };

    let no_weights = variant("no_weights", &|d| {
        for f in ["a.safetensors", "b.safetensors", "model.safetensors.index.json"] {
            std::fs::remove_file(d.join(f)).unwrap();
        }
    });
    fails(&no_weights, &out, "without weights");
    let missing_shard = variant("missing_shard", &|d| std::fs::remove_file(d.join("b.safetensors")).unwrap());
    fails(&missing_shard, &out, "names shard `b.safetensors`, which is missing");
    // A tensor named twice in the index, in two shards: whichever entry a JSON reader keeps, the
    // other shard disagrees.
    let twice = variant("twice", &|d| {
        write_index(d, &[("l0.w", "a"), ("l1.w", "a"), ("l2.w", "b"), ("l3.w", "b"), ("l0.w", "b")])
    });
    fails(&twice, &out, "`l0.w`");
    let in_two_shards = variant("in_two_shards", &|d| {
        std::fs::copy(d.join("a.safetensors"), d.join("c.safetensors")).unwrap();
        write_index(d, &[("l0.w", "a"), ("l1.w", "c"), ("l2.w", "b"), ("l3.w", "b")]);
    });
    fails(&in_two_shards, &out, "model.safetensors.index.json");
    let unlisted = variant("unlisted", &|d| write_index(d, &[("l0.w", "a"), ("l1.w", "a"), ("l2.w", "b")]));
    fails(&unlisted, &out, "does not list `l3.w`, which `b.safetensors` holds");
    let lacking = variant("lacking", &|d| {
        write_index(d, &[("l0.w", "a"), ("l1.w", "a"), ("l2.w", "b"), ("l3.w", "b"), ("l9.w", "b")])
    });
    fails(&lacking, &out, "puts `l9.w` in `b.safetensors`, which does not hold it");
    let escaping = variant("escaping", &|d| write_index(d, &[("l0.w", "../good/a")]));
    fails(&escaping, &out, "is not a file name of the folder");
    let bad_config =
        variant("bad_config", &|d| std::fs::write(d.join("config.json"), "{\"hidden\": ").unwrap());
    fails(&bad_config, &out, "config.json");
    let bad_index =
        variant("bad_index", &|d| std::fs::write(d.join("model.safetensors.index.json"), "[").unwrap());
    fails(&bad_index, &out, "model.safetensors.index.json");

    // Outputs: inside the input, or an existing folder (never merged into).
    let inside = good.join("out");
    let (ok, _, stderr) = greenai(&["compress", s(&good), "-o", s(&inside)]);
    assert!(!ok && stderr.contains("inside the input folder"), "{stderr}");
    assert!(!inside.exists());
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep.txt"), "mine").unwrap();
    let (ok, _, stderr) = greenai(&["compress", s(&good), "-o", s(&existing)]);
    assert!(!ok && stderr.contains("exists"), "{stderr}");
    assert_eq!(files_under(&existing), [PathBuf::from("keep.txt")]);

    // The good folder works, and was left as it was.
    let before = files_under(&good);
    run_ok(&["compress", s(&good), "-o", s(&out)]);
    assert_eq!(files_under(&good), before);
    assert_eq!(files_under(&out), before);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(index["weight_map"]["l3.w.scale"], "b.safetensors");
}

#[test]
fn a_signal_while_a_folder_is_written_leaves_no_temporary_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    synthetic_folder(&dir, 16, 1024, 1024);
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let args = ["compress", "m", "-o", "out", "--quant", "none", "--prune", "0.5"];
        assert_eq!(interrupt_while_writing(tmp.path(), &args, signal), Some(code), "SIG{signal}");
        assert_eq!(temporaries(tmp.path()), Vec::<PathBuf>::new(), "SIG{signal}");
        assert!(!tmp.path().join("out").exists());
    }
    // A run left alone completes.
    let status = Command::new(env!("CARGO_BIN_EXE_greenai"))
        .args(["compress", "m", "-o", "out", "--quant", "none", "--prune", "0.5"])
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(files_under(&tmp.path().join("out")), files_under(&dir));
}
