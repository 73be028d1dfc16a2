//! GGUF out and in: model directories written as GGUF and checked by the PyPI `gguf` package
//! (llama.cpp's gguf-py) in tests/data/gguf_check.py, greenai's reader on its own files and on one
//! written by gguf-py's GGUFWriter, and bad input. Needs python3 with numpy, safetensors, tokenizers
//! and gguf; without them the Python checks say so and pass, unless GREENAI_MINILM_REQUIRED is set.
//! llama.cpp itself is an optional peer that is not built here.
#![cfg(feature = "cli")]

#[path = "support/minilm.rs"]
mod minilm;

use greenai::model::gguf::{write_gguf, Array, GgufFile, PlannedTensor, TensorType, Value};
use greenai::model::Destination;
use std::path::{Path, PathBuf};
use std::process::Command;

const QUANTS: [&str; 8] = ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q4_k", "q6_k"];

fn greenai() -> Command {
    Command::new(env!("CARGO_BIN_EXE_greenai"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf_check.py")
}

/// Whether python3 has what the checks need; a printed skip otherwise (a failure under CI).
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, safetensors, tokenizers, gguf"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !minilm::minilm_required(),
            "python3 with numpy, safetensors, tokenizers and gguf is required"
        );
        eprintln!(
            "skipped: python3 with numpy, safetensors, tokenizers and gguf not found (pip install gguf)"
        );
    }
    ok
}

fn python(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let mut cmd = Command::new("python3");
    cmd.arg(script());
    for a in args {
        cmd.arg(a);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "gguf_check.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("greenai runs");
    assert!(out.status.success(), "greenai failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compresses `model` to GGUF with every type, checks each with gguf-py, and reads each back with
/// greenai's `inspect` and `decompress` (compared with gguf-py's dequantization).
fn every_type(model: &Path, tmp: &Path) {
    for quant in QUANTS {
        let out = tmp.join(format!("m-{quant}.gguf"));
        run_ok(
            greenai().arg("compress").arg(model).args(["--format", "gguf", "--quant", quant, "-o"]).arg(&out),
        );
        python(&[&"check", &model, &out, &quant]);
        let shown = run_ok(greenai().arg("inspect").arg(&out));
        assert!(shown.contains("GGUF v3"), "{shown}");
        let st = tmp.join(format!("m-{quant}.safetensors"));
        run_ok(greenai().arg("decompress").arg(&out).arg("-o").arg(&st));
        python(&[&"same-gguf", &out, &st]);
    }
}

#[test]
fn minilm_to_gguf_every_type() {
    let Some(dir) = minilm::minilm_dir() else { return };
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    every_type(&dir, tmp.path());
}

#[test]
fn tiny_llama_and_qwen2_to_gguf_every_type() {
    if !python_ready() {
        return;
    }
    for arch in ["llama", "qwen2"] {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join(arch);
        python(&[&"make", &model, &arch]);
        every_type(&model, tmp.path());
    }
}

#[test]
fn reads_a_file_written_by_gguf_py() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (peer, npz, st) =
        (tmp.path().join("peer.gguf"), tmp.path().join("peer.npz"), tmp.path().join("peer.safetensors"));
    python(&[&"peer", &peer, &npz]);
    let file = GgufFile::open(&peer).unwrap();
    assert_eq!(file.get("general.architecture").and_then(Value::as_str), Some("llama"));
    assert_eq!(file.get("test.string").and_then(Value::as_str), Some("héllo"));
    assert_eq!(file.get("test.f64"), Some(&Value::F64(0.125)));
    assert!(matches!(file.get("test.ints"), Some(Value::Array(a)) if a.len() == 3));
    let types: Vec<_> = file.tensors.iter().map(|t| t.ty.name()).collect();
    assert_eq!(types, ["f32", "f16", "q8_0", "q4_0", "q5_0", "bf16"]);
    run_ok(greenai().arg("decompress").arg(&peer).arg("-o").arg(&st));
    python(&[&"same", &st, &npz]);
}

/// A small file written by greenai's writer, with metadata of several types.
fn small_file(path: &Path) {
    let metadata = vec![
        ("general.architecture".to_string(), Value::String("llama".into())),
        ("general.alignment".to_string(), Value::U32(64)),
        ("x.tokens".to_string(), Value::Array(Array::String(vec!["a".into(), "bc".into()]))),
        ("x.flag".to_string(), Value::Bool(true)),
    ];
    let values: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 7.0).collect();
    let tensors = vec![
        PlannedTensor {
            name: "w".into(),
            dims: vec![32, 2],
            ty: TensorType::Ggml(greenai::kernels::ggml::GgmlType::Q8_0),
            bytes: Box::new(|| {
                greenai::model::gguf::encode(
                    TensorType::Ggml(greenai::kernels::ggml::GgmlType::Q8_0),
                    &values,
                    32,
                )
            }),
        },
        PlannedTensor {
            name: "b".into(),
            dims: vec![3],
            ty: TensorType::F32,
            bytes: Box::new(|| Ok([1f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect())),
        },
    ];
    write_gguf(&Destination::check(path).unwrap(), &metadata, tensors, &mut |_, _| {}).unwrap();
}

#[test]
fn our_reader_reads_our_writer_and_refuses_every_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("small.gguf");
    small_file(&path);
    let file = GgufFile::open(&path).unwrap();
    assert_eq!((file.version, file.alignment, file.tensors.len()), (3, 64, 2));
    assert!(file.tensors.iter().all(|t| t.offset % 64 == 0));
    assert_eq!(file.to_f32(&file.tensors[1]).unwrap(), [1.0, 2.0, 3.0]);
    let w = file.to_f32(&file.tensors[0]).unwrap();
    assert!(w.iter().enumerate().all(|(i, v)| (v - (i as f32 - 30.0) / 7.0).abs() < 0.02));
    let bytes = std::fs::read(&path).unwrap();
    for len in 0..bytes.len() {
        // The last tensor's padding is not data: only cuts into the data itself must fail.
        let cut = GgufFile::from_bytes("cut", bytes[..len].to_vec());
        if len < bytes.len() - 64 + 12 {
            assert!(cut.is_err(), "a file cut at {len} of {} bytes was accepted", bytes.len());
        }
    }
    // Every single-byte change is either read or refused, never a panic.
    for i in 0..bytes.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = GgufFile::from_bytes("flip", b);
        }
    }
    // A length field that claims more than the file holds is refused without allocating it.
    let mut huge = bytes.clone();
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // the metadata count
    assert!(GgufFile::from_bytes("huge", huge).unwrap_err().to_string().contains("exceeds"));
}

/// A GGUF file made by hand holding one F32 tensor with dimensions `dims` (innermost first) and no data.
fn one_tensor_file(dims: &[u64]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(0u64.to_le_bytes()); // metadata
    b.extend(1u64.to_le_bytes());
    b.push(b't');
    b.extend((dims.len() as u32).to_le_bytes());
    dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset
    b.resize(b.len().next_multiple_of(32), 0);
    b
}

#[test]
fn dimensions_whose_product_overflows_are_refused_or_empty_never_a_panic() {
    // Found by fuzzing: 2^33 x 2^33 x 0 elements is an empty tensor, but multiplying left to right
    // overflowed before reaching the zero.
    let empty = GgufFile::from_bytes("empty", one_tensor_file(&[1 << 33, 1 << 33, 0])).unwrap();
    assert_eq!(empty.tensors[0].len(), 0);
    assert!(empty.to_f32(&empty.tensors[0]).unwrap().is_empty());
    // Found by fuzzing: an empty tensor in a file that ends before the data section's padding.
    let mut unpadded = one_tensor_file(&[0]);
    unpadded.truncate(unpadded.len() - 1);
    let empty = GgufFile::from_bytes("unpadded", unpadded).unwrap();
    assert!(empty.data(&empty.tensors[0]).unwrap().is_empty());
    let err = GgufFile::from_bytes("huge", one_tensor_file(&[1 << 33, 1 << 33, 2])).unwrap_err();
    assert!(err.to_string().contains("overflow"), "{err}");
}

#[test]
fn a_header_larger_than_the_first_read_is_read_whole_and_tensors_on_demand() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big-header.gguf");
    // 300,000 tokens make a header of about 5 MiB, beyond the reader's first 1 MiB.
    let tokens: Vec<String> = (0..300_000).map(|i| format!("token{i}")).collect();
    let metadata = vec![("tokenizer.ggml.tokens".to_string(), Value::Array(Array::String(tokens.clone())))];
    let tensors = vec![PlannedTensor {
        name: "b".into(),
        dims: vec![3],
        ty: TensorType::F32,
        bytes: Box::new(|| Ok([1f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect())),
    }];
    write_gguf(&Destination::check(&path).unwrap(), &metadata, tensors, &mut |_, _| {}).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 4 << 20);
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.get("tokenizer.ggml.tokens"), Some(&Value::Array(Array::String(tokens))));
    assert_eq!(file.to_f32(&file.tensors[0]).unwrap(), [1.0, 2.0, 3.0]);
    // The data is read when asked: a file cut after opening is an error, not a short read.
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 4).unwrap();
    let err = file.to_f32(&file.tensors[0]).unwrap_err().to_string();
    assert!(err.contains("changed size"), "{err}");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A tiny Llama directory written by hand: hidden size `hidden`, one layer, a 3-token BPE.
fn hand_llama(dir: &Path, arch: &str, hidden: usize) {
    std::fs::create_dir_all(dir).unwrap();
    write(
        &dir.join("config.json"),
        &format!(
            r#"{{"architectures":["{arch}"],"hidden_size":{hidden},"num_attention_heads":2,"num_hidden_layers":1,
               "intermediate_size":{hidden},"vocab_size":3,"rms_norm_eps":1e-5}}"#
        ),
    );
    write(
        &dir.join("tokenizer.json"),
        r#"{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"decoder":{"type":"ByteLevel"},
            "pre_tokenizer":{"type":"ByteLevel"},"added_tokens":[]}"#,
    );
    let f = |n: usize| greenai::model::OutTensor {
        dtype: safetensors::Dtype::F32,
        shape: if n == 1 { vec![hidden] } else { vec![hidden, hidden] },
        bytes: vec![0u8; 4 * hidden * if n == 1 { 1 } else { hidden }].into(),
    };
    let tensors = vec![
        ("model.layers.0.self_attn.q_proj.weight".to_string(), f(2)),
        ("model.norm.weight".to_string(), f(1)),
    ];
    greenai::model::write_safetensors(&dir.join("model.safetensors"), &tensors, &Default::default()).unwrap();
}

fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().expect("greenai runs");
    assert_eq!(out.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.gguf");
    let compress = |dir: &Path, quant: &str| {
        let mut c = greenai();
        c.arg("compress").arg(dir).args(["--format", "gguf", "--quant", quant, "-o"]).arg(&out);
        c
    };
    let gpt2 = tmp.path().join("gpt2");
    hand_llama(&gpt2, "GPT2LMHeadModel", 64);
    let err = run_err(&mut compress(&gpt2, "q8_0"));
    assert!(
        err.contains("GPT2LMHeadModel")
            && err.contains("LlamaForCausalLM (llama)")
            && err.contains("BertModel"),
        "{err}"
    );

    let odd = tmp.path().join("odd");
    hand_llama(&odd, "LlamaForCausalLM", 48);
    let err = run_err(&mut compress(&odd, "q4_0"));
    assert!(err.contains("no fallback"), "{err}");
    // The K-quants fall back (48 is not a multiple of 256, nor of 32: F16), as llama-quantize does.
    run_ok(&mut compress(&odd, "q4_k"));
    let file = GgufFile::open(&out).unwrap();
    assert_eq!(file.tensors.iter().find(|t| t.name == "blk.0.attn_q.weight").unwrap().ty, TensorType::F16);
    std::fs::remove_file(&out).unwrap();

    let err = run_err(&mut compress(&odd, "int8"));
    assert!(err.contains("q4_k"), "{err}");

    let spm = tmp.path().join("spm");
    hand_llama(&spm, "LlamaForCausalLM", 64);
    std::fs::remove_file(spm.join("tokenizer.json")).unwrap();
    write(&spm.join("tokenizer.model"), "not read");
    let err = run_err(&mut compress(&spm, "f16"));
    assert!(err.contains("SentencePiece"), "{err}");
    assert!(!out.exists());

    let good = tmp.path().join("good.gguf");
    small_file(&good);
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = run_err(greenai().arg("inspect").arg(&cut));
    assert!(err.contains("truncated"), "{err}");
    let err = run_err(greenai().arg("decompress").arg(&cut).arg("-o").arg(tmp.path().join("x.safetensors")));
    assert!(err.contains("truncated"), "{err}");
    assert!(!tmp.path().join("x.safetensors").exists());
}
