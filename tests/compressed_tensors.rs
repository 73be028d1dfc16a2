//! `greenai compress --format compressed-tensors` and `greenai decompress` of such directories, checked
//! by an independent reader (tests/support/ct_reader.py: numpy only, written from compressed-tensors'
//! rules): every tensor's name, dtype, shape, packing, the RTN scales, zero points and levels
//! recomputed from the original weights, the quantization_config block, and the error bound; on
//! all-MiniLM-L6-v2 (f32) and on a tiny Llama-style model made here (bf16). A directory written by
//! the reader's own writer (asymmetric, g_idx, two formats) is decompressed by greenai. A 3-shard
//! copy of MiniLM gives the single file's tensors byte for byte, in shards mirroring its own; memory
//! stays bounded by the largest tensor; a failure or a signal leaves nothing.
#![cfg(feature = "cli")]

mod common;
#[path = "support/minilm.rs"]
mod minilm;
#[path = "support/model_dirs.rs"]
mod model_dirs;

use common::greenai;
use greenai::model::{write_safetensors, Model, ModelFile, OutTensor};
use model_dirs::{
    assert_peak_rss_within, files_under, interrupt_while_writing, shard_in_three, synthetic_folder,
    temporaries,
};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const READER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ct_reader.py");

/// Runs the reader; `None` (after a notice) when python3 with numpy is missing.
fn reader(args: &[&str]) -> Option<String> {
    let out = Command::new("python3").arg(READER).args(args).output().ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No module named 'numpy'") {
        eprintln!("skipped: python3 with numpy not found");
        return None;
    }
    assert!(out.status.success(), "reader {args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    Some(stdout)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny Llama-style model in bf16: embeddings, two decoder layers (GQA), norms, an untied lm_head.
fn tiny_llama(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let (hidden, kv, inter, vocab) = (64usize, 32usize, 128usize, 96usize);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut tensor = |shape: Vec<usize>, scale: f32| {
        let n: usize = shape.iter().product();
        let bytes = (0..n)
            .flat_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let u = (seed >> 40) as f32 / (1u64 << 24) as f32;
                half::bf16::from_f32((u * 2.0 - 1.0) * scale).to_le_bytes()
            })
            .collect();
        OutTensor { dtype: Dtype::BF16, shape, bytes: Cow::Owned(bytes) }
    };
    let mut t = vec![("model.embed_tokens.weight".to_string(), tensor(vec![vocab, hidden], 1.0))];
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj", vec![hidden, hidden]),
            ("self_attn.k_proj", vec![kv, hidden]),
            ("self_attn.v_proj", vec![kv, hidden]),
            ("self_attn.o_proj", vec![hidden, hidden]),
            ("mlp.gate_proj", vec![inter, hidden]),
            ("mlp.up_proj", vec![inter, hidden]),
            ("mlp.down_proj", vec![hidden, inter]),
        ] {
            t.push((format!("{p}.{name}.weight"), tensor(shape, 0.08)));
        }
        t.push((format!("{p}.input_layernorm.weight"), tensor(vec![hidden], 1.0)));
        t.push((format!("{p}.post_attention_layernorm.weight"), tensor(vec![hidden], 1.0)));
    }
    // an outlier and an all-zero row
    if let Cow::Owned(b) = &mut t[1].1.bytes {
        b[..2].copy_from_slice(&half::bf16::from_f32(3.5).to_le_bytes());
        b[2 * hidden..4 * hidden].fill(0);
    }
    t.push(("model.norm.weight".into(), tensor(vec![hidden], 1.0)));
    t.push(("lm_head.weight".into(), tensor(vec![vocab, hidden], 0.1)));
    write_safetensors(&dir.join("model.safetensors"), &t, &Default::default()).unwrap();
    let config = format!(
        r#"{{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": {hidden},
        "intermediate_size": {inter}, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": {vocab}, "rms_norm_eps": 1e-05, "torch_dtype": "bfloat16",
        "tie_word_embeddings": false}}"#
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
}

fn run_and_check(
    model: &Path,
    tmp: &Path,
    tag: &str,
    scheme: &str,
    group_size: usize,
    symmetric: bool,
) -> PathBuf {
    let out = tmp.join(format!("{tag}-{scheme}-{group_size}-{symmetric}"));
    let gs = group_size.to_string();
    let mut args = vec![
        "compress",
        s(model),
        "--format",
        "compressed-tensors",
        "--scheme",
        scheme,
        "--group-size",
        &gs,
        "-o",
        s(&out),
    ];
    if !symmetric {
        args.push("--asymmetric");
    }
    let (ok, stdout, stderr) = greenai(&args);
    assert!(ok, "{args:?}: {stderr}");
    println!("{tag} {scheme} g{group_size} sym={symmetric}: {}", stdout.trim());
    if let Some(r) = reader(&["check", s(model), s(&out), scheme, &gs, if symmetric { "1" } else { "0" }]) {
        println!("  reader: {}", r.trim());
    }
    out
}

#[test]
fn tiny_llama_every_scheme_checked_by_the_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llama");
    tiny_llama(&model);
    run_and_check(&model, tmp.path(), "llama", "w4a16", 32, true);
    run_and_check(&model, tmp.path(), "llama", "w4a16", 0, false);
    run_and_check(&model, tmp.path(), "llama", "w8a16", 64, false);
    let out = run_and_check(&model, tmp.path(), "llama", "w8a8", 0, true);
    // inspect: one row per logical tensor, each module as its int8 weight in the original's shape
    let (ok, stdout, stderr) = greenai(&["inspect", s(&out), "--json"]);
    assert!(ok, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let original = greenai::model::Model::open(&model).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), original.len());
    for row in rows.as_array().unwrap() {
        let info = original.info(row["name"].as_str().unwrap()).unwrap();
        assert_eq!(row["shape"], serde_json::json!(info.shape), "{row}");
        let module = info.shape.len() == 2
            && row["name"] != "model.embed_tokens.weight"
            && row["name"] != "lm_head.weight";
        assert_eq!(row["dtype"] == "int8", module, "{row}");
    }
    // decompress: a float model again, the config without quantization_config
    let dense = tmp.path().join("dense");
    let (ok, _, stderr) = greenai(&["decompress", s(&out), "-o", s(&dense)]);
    assert!(ok, "{stderr}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dense.join("config.json")).unwrap()).unwrap();
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config, original);
    let a = greenai::model::ModelFile::open(model.join("model.safetensors")).unwrap();
    let b = greenai::model::ModelFile::open(dense.join("model.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for info in a.tensors() {
        let t = a.read(info).unwrap();
        let u = b.tensor(t.name).unwrap();
        assert_eq!((t.dtype, t.shape), (u.dtype, u.shape), "{}", t.name);
        let (x, y) = (t.to_f32().unwrap(), u.to_f32().unwrap());
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = x.iter().zip(&y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        // per-channel int8: at most half a step of the tensor's largest channel, plus bf16 rounding
        assert!(worst <= amax / 127.5 * 0.5 + amax * 2f32.powi(-8), "{}: {worst} vs amax {amax}", t.name);
    }
}

#[test]
fn minilm_every_scheme_checked_by_the_reader() {
    let Some(dir) = minilm::minilm_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (scheme, gs) in [("w8a8", 0), ("w4a16", 128), ("w8a16", 128)] {
        let out = run_and_check(&dir, tmp.path(), "minilm", scheme, gs, true);
        let size = std::fs::metadata(out.join("model.safetensors")).unwrap().len();
        println!("  minilm {scheme}: model.safetensors {size} bytes");
        assert!(out.join("1_Pooling/config.json").exists() && out.join("tokenizer.json").exists());
    }
}

#[test]
fn a_directory_written_by_the_reference_writer_decompresses() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("theirs");
    let expected = tmp.path().join("expected.safetensors");
    if reader(&["write", s(&model), s(&expected)]).is_none() {
        return;
    }
    let dense = tmp.path().join("dense");
    let (ok, stdout, stderr) = greenai(&["decompress", s(&model), "-o", s(&dense)]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 modules"), "{stdout}");
    reader(&["compare", s(&dense.join("model.safetensors")), s(&expected)]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dense.join("config.json")).unwrap()).unwrap();
    assert!(config.get("quantization_config").is_none() && config["hidden_size"] == 12);
    assert!(dense.join("tokenizer.json").exists());
}

fn assert_refused(args: &[&str], out: &Path, needle: &str) {
    let (ok, _, stderr) = greenai(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!out.exists(), "{args:?} wrote {}", out.display());
    let parent = out.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".greenai-"))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
    let status = Command::new(env!("CARGO_BIN_EXE_greenai")).args(args).status().unwrap();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn bad_input_is_refused_clearly_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llama");
    tiny_llama(&model);
    let out = tmp.path().join("out");
    let o = s(&out);

    // unknown scheme, an option of the other format, a group size that does not divide
    assert_refused(
        &["compress", s(&model), "--format", "compressed-tensors", "--scheme", "w3a5", "-o", o],
        &out,
        "expected w8a8, w4a16 or w8a16",
    );
    assert_refused(
        &["compress", s(&model), "--format", "compressed-tensors", "--prune", "0.5", "-o", o],
        &out,
        "does not apply",
    );
    assert_refused(
        &["compress", s(&model), "--format", "compressed-tensors", "--group-size", "48", "-o", o],
        &out,
        "not a multiple of the group size",
    );
    // an existing output is not replaced
    std::fs::create_dir(&out).unwrap();
    let (ok, _, stderr) =
        greenai(&["compress", s(&model), "--format", "compressed-tensors", "--group-size", "32", "-o", o]);
    assert!(!ok && stderr.contains("never into or over another"), "{stderr}");
    std::fs::remove_dir(&out).unwrap();

    // config.json that is not JSON
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(model.join("model.safetensors"), broken.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("config.json"), "{\"model_type\": \"llama\",").unwrap();
    assert_refused(
        &["compress", s(&broken), "--format", "compressed-tensors", "--group-size", "32", "-o", o],
        &out,
        "config.json: not JSON",
    );

    // a tensor that has the name a quantized module's scale would take
    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::copy(model.join("config.json"), taken.join("config.json")).unwrap();
    let scale = OutTensor { dtype: Dtype::BF16, shape: vec![2], bytes: Cow::Owned(vec![0; 4]) };
    let weight = OutTensor { dtype: Dtype::BF16, shape: vec![2, 32], bytes: Cow::Owned(vec![0; 128]) };
    let tensors = [("a.proj.weight".to_string(), weight), ("a.proj.weight_scale".to_string(), scale)];
    write_safetensors(&taken.join("model.safetensors"), &tensors, &Default::default()).unwrap();
    assert_refused(
        &["compress", s(&taken), "--format", "compressed-tensors", "--group-size", "32", "-o", o],
        &out,
        "writes `a.proj.weight_scale`, which the model already has",
    );

    // a packed tensor of the wrong size
    let written = tmp.path().join("w4");
    let (ok, _, stderr) = greenai(&[
        "compress",
        s(&model),
        "--format",
        "compressed-tensors",
        "--group-size",
        "32",
        "-o",
        s(&written),
    ]);
    assert!(ok, "{stderr}");
    let file = greenai::model::ModelFile::open(written.join("model.safetensors")).unwrap();
    let mut tensors: Vec<(String, OutTensor)> = file
        .tensors()
        .iter()
        .map(|info| {
            let t = file.read(info).unwrap();
            (
                t.name.to_string(),
                OutTensor { dtype: t.dtype, shape: t.shape.to_vec(), bytes: Cow::Owned(t.bytes.to_vec()) },
            )
        })
        .collect();
    let packed = tensors.iter_mut().find(|(n, _)| n == "model.layers.0.mlp.up_proj.weight_packed").unwrap();
    let cols = packed.1.shape[1];
    packed.1.shape[1] = cols - 1;
    if let Cow::Owned(b) = &mut packed.1.bytes {
        let rows = packed.1.shape[0];
        *b = b.chunks(cols * 4).flat_map(|r| r[..(cols - 1) * 4].to_vec()).collect();
        assert_eq!(b.len(), rows * (cols - 1) * 4);
    }
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(written.join("config.json"), bad.join("config.json")).unwrap();
    write_safetensors(&bad.join("model.safetensors"), &tensors, &Default::default()).unwrap();
    assert_refused(&["decompress", s(&bad), "-o", o], &out, "weight_packed has shape");

    // an unknown or float compression format in the config
    for (format, needle) in [
        ("nvfp4-pack-quantized", "not supported"),
        ("float-quantized", "not supported"),
        ("sparse-magic", "not supported"),
    ] {
        let text = std::fs::read_to_string(written.join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        config["quantization_config"]["format"] = format.into();
        config["quantization_config"]["config_groups"]["group_0"]["format"] = format.into();
        std::fs::write(bad.join("config.json"), config.to_string()).unwrap();
        std::fs::copy(written.join("model.safetensors"), bad.join("model.safetensors")).unwrap();
        assert_refused(&["decompress", s(&bad), "-o", o], &out, needle);
    }
}

/// Every tensor of a model (file or folder) as (dtype, shape, bytes), by name.
fn tensors_of(path: &Path) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let model = Model::open(path).unwrap();
    model
        .tensors()
        .map(|info| {
            let t = model.read(info).unwrap();
            (info.name.clone(), (t.dtype, t.shape.to_vec(), t.bytes.to_vec()))
        })
        .collect()
}

#[test]
fn minilm_in_three_shards_gives_the_single_files_tensors_in_mirrored_shards() {
    let Some(dir) = minilm::minilm_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sharded = tmp.path().join("sharded");
    shard_in_three(&dir, &sharded);
    for (scheme, gs) in [("w8a8", 0), ("w4a16", 128)] {
        let one = run_and_check(&dir, tmp.path(), "one", scheme, gs, true);
        let three = run_and_check(&sharded, tmp.path(), "three", scheme, gs, true);
        // The same tensors, byte for byte, whichever way the input was split.
        let (t1, t3) = (tensors_of(&one), tensors_of(&three));
        assert!(t1.keys().any(|n| n.ends_with(".weight_scale")), "nothing quantized");
        assert_eq!(t1.keys().collect::<Vec<_>>(), t3.keys().collect::<Vec<_>>(), "{scheme}");
        for (name, a) in &t1 {
            assert!(t3[name] == *a, "{scheme}: `{name}` differs between the one-file and sharded outputs");
        }
        assert_eq!(
            std::fs::read(one.join("config.json")).unwrap(),
            std::fs::read(three.join("config.json")).unwrap()
        );
        // The output mirrors the input: the same file names (shards, index, tokenizer, subfolders).
        assert_eq!(files_under(&one), files_under(&dir), "{scheme}");
        assert_eq!(files_under(&three), files_under(&sharded), "{scheme}");
        for rel in ["tokenizer.json", "vocab.txt", "1_Pooling/config.json"] {
            assert_eq!(
                std::fs::read(three.join(rel)).unwrap(),
                std::fs::read(dir.join(rel)).unwrap(),
                "{rel}"
            );
        }
        // Each module's tensors sit in the shard of its weight, and the index says so.
        let input = Model::open(&sharded).unwrap();
        let index: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(three.join("model.safetensors.index.json")).unwrap(),
        )
        .unwrap();
        let map = index["weight_map"].as_object().unwrap();
        assert_eq!(map.len(), t3.len());
        for (name, shard) in map {
            let shard = shard.as_str().unwrap();
            assert!(
                ModelFile::open(three.join(shard)).unwrap().info(name).is_some(),
                "{name} not in {shard}"
            );
            let weight = ["weight_packed", "weight_scale", "weight_shape", "weight_zero_point"]
                .iter()
                .find_map(|c| name.strip_suffix(c))
                .map_or(name.clone(), |m| format!("{m}weight"));
            let source = input.shard_of(&weight).unwrap().path().file_name().unwrap();
            assert_eq!(shard, source.to_str().unwrap(), "{name} is not in the shard of {weight}");
        }
        let bytes: u64 = t3.values().map(|(_, _, b)| b.len() as u64).sum();
        assert_eq!(index["metadata"]["total_size"].as_u64(), Some(bytes));
        // Decompressed, the sharded folder gives the one file's tensors in the input's shards.
        let (dense1, dense3) =
            (tmp.path().join(format!("dense1-{scheme}")), tmp.path().join(format!("dense3-{scheme}")));
        for (from, to) in [(&one, &dense1), (&three, &dense3)] {
            let (ok, _, stderr) = greenai(&["decompress", s(from), "-o", s(to)]);
            assert!(ok, "{stderr}");
        }
        let (d1, d3) = (tensors_of(&dense1), tensors_of(&dense3));
        assert_eq!(d1, d3, "{scheme}: sharded and one-file decompress differ");
        assert_eq!(d3.keys().collect::<Vec<_>>(), tensors_of(&sharded).keys().collect::<Vec<_>>());
        assert_eq!(files_under(&dense3), files_under(&sharded), "{scheme}");
    }
}

#[cfg(unix)]
#[test]
fn compressing_minilm_in_shards_stays_within_the_largest_tensor_plus_64_mib() {
    let Some(dir) = minilm::minilm_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sharded = tmp.path().join("sharded");
    shard_in_three(&dir, &sharded);
    let out = tmp.path().join("q");
    let largest = Model::open(&sharded).unwrap().tensors().map(|t| t.byte_len).max().unwrap();
    let args =
        ["compress", s(&sharded), "--format", "compressed-tensors", "--scheme", "w4a16", "-o", s(&out)];
    assert_peak_rss_within("MiniLM (3 shards) to w4a16", &args, largest);
}

#[cfg(unix)]
#[test]
fn memory_does_not_grow_with_the_model() {
    // 24 Linear weights of 16 MiB, every one quantized: 384 MiB of weights, four times the bound.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    synthetic_folder(&dir, 24, 2048, 2048);
    let out = tmp.path().join("q");
    let largest = 16 * model_dirs::MIB;
    let args = ["compress", s(&dir), "--format", "compressed-tensors", "--scheme", "w8a8", "-o", s(&out)];
    let Some(bound) = assert_peak_rss_within("24 x 16 MiB to w8a8", &args, largest) else { return };
    assert!(24 * largest / 1024 > 2 * bound, "the model must dwarf the bound for the test to mean anything");
    let q = Model::open(&out).unwrap();
    assert_eq!(q.len(), 48);
    assert!(q.tensors().filter(|t| t.name.ends_with(".weight")).all(|t| t.dtype == Dtype::I8));
}

#[test]
fn a_file_with_its_config_beside_gives_a_one_file_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llama");
    tiny_llama(&model);
    let file = tmp.path().join("loose");
    std::fs::create_dir(&file).unwrap();
    std::fs::copy(model.join("model.safetensors"), file.join("weights.safetensors")).unwrap();
    std::fs::copy(model.join("config.json"), file.join("config.json")).unwrap();
    let (from_dir, from_file) = (tmp.path().join("from-dir"), tmp.path().join("from-file"));
    for (input, out) in [(model.clone(), &from_dir), (file.join("weights.safetensors"), &from_file)] {
        let args =
            ["compress", s(&input), "--format", "compressed-tensors", "--group-size", "32", "-o", s(out)];
        let (ok, _, stderr) = greenai(&args);
        assert!(ok, "{args:?}: {stderr}");
    }
    assert_eq!(files_under(&from_file), [PathBuf::from("config.json"), PathBuf::from("model.safetensors")]);
    assert_eq!(tensors_of(&from_file), tensors_of(&from_dir));
    let config = |d: &Path| std::fs::read(d.join("config.json")).unwrap();
    assert_eq!(config(&from_file), config(&from_dir));
    // without a config.json beside it, a file is refused
    std::fs::remove_file(file.join("config.json")).unwrap();
    let out = tmp.path().join("out");
    let weights = file.join("weights.safetensors");
    assert_refused(
        &["compress", s(&weights), "--format", "compressed-tensors", "-o", s(&out)],
        &out,
        "no config.json",
    );
}

#[test]
fn a_failure_in_the_last_shard_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llama");
    tiny_llama(&model);
    let sharded = tmp.path().join("sharded");
    shard_in_three(&model, &sharded);
    // A weight of the last shard (in name order, dealt round-robin) that cannot be quantized: an
    // infinity, found only when that shard is written.
    let last = sharded.join("model-00003-of-00003.safetensors");
    let file = ModelFile::open(&last).unwrap();
    let victim =
        file.tensors().iter().map(|t| t.name.clone()).filter(|n| n.ends_with("proj.weight")).max().unwrap();
    let mut tensors: Vec<(String, OutTensor)> = file
        .tensors()
        .iter()
        .map(|info| {
            let t = file.read(info).unwrap();
            let mut bytes = t.bytes.to_vec();
            if t.name == victim {
                let n = bytes.len();
                bytes[n - 2..].copy_from_slice(&half::bf16::INFINITY.to_le_bytes());
            }
            (
                t.name.to_string(),
                OutTensor { dtype: t.dtype, shape: t.shape.to_vec(), bytes: Cow::Owned(bytes) },
            )
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    drop(file);
    write_safetensors(&last, &tensors, &Default::default()).unwrap();
    let out = tmp.path().join("out");
    let args =
        ["compress", s(&sharded), "--format", "compressed-tensors", "--group-size", "32", "-o", s(&out)];
    let last_element = ModelFile::open(sharded.join("model-00003-of-00003.safetensors"))
        .unwrap()
        .info(&victim)
        .unwrap()
        .len()
        - 1;
    assert_refused(&args, &out, &format!("`tensor` = {victim}: element {last_element} is inf"));
}

#[cfg(unix)]
#[test]
fn a_signal_while_compressing_leaves_no_temporary_folder() {
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    synthetic_folder(&dir, 16, 1024, 1024);
    let args = ["compress", "m", "--format", "compressed-tensors", "--scheme", "w4a16", "-o", "out"];
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        assert_eq!(interrupt_while_writing(tmp.path(), &args, signal), Some(code), "SIG{signal}");
        assert_eq!(temporaries(tmp.path()), Vec::<PathBuf>::new(), "SIG{signal}");
        assert!(!tmp.path().join("out").exists());
    }
    let status = Command::new(env!("CARGO_BIN_EXE_greenai"))
        .args(args)
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(files_under(&tmp.path().join("out")), files_under(&dir));
}
