//! `greenai compress --format compressed-tensors` and `greenai decompress` of such directories, checked
//! by an independent reader (tests/support/ct_reader.py: numpy only, written from compressed-tensors'
//! rules): every tensor's name, dtype, shape, packing, the RTN scales, zero points and levels
//! recomputed from the original weights, the quantization_config block, and the error bound; on
//! all-MiniLM-L6-v2 (f32) and on a tiny Llama-style model made here (bf16). A directory written by
//! the reader's own writer (asymmetric, g_idx, two formats) is decompressed by greenai.
#![cfg(feature = "cli")]

mod common;
#[path = "support/minilm.rs"]
mod minilm;

use common::greenai;
use greenai::model::{write_safetensors, OutTensor};
use safetensors::Dtype;
use std::borrow::Cow;
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
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    std::fs::remove_dir(&out).unwrap();

    // config.json that is not JSON
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(model.join("model.safetensors"), broken.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("config.json"), "{\"model_type\": \"llama\",").unwrap();
    assert_refused(
        &["compress", s(&broken), "--format", "compressed-tensors", "--group-size", "32", "-o", o],
        &out,
        "not valid JSON",
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
