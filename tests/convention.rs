//! Issue 21's Must-show reader: `tests/convention_reader.py`, written from the README's convention
//! section alone (numpy + safetensors), decodes one file of every tensor kind greenai writes, and its
//! values equal `decompress`'s output bit for bit.
//!
//! Skipped with a notice when python3, numpy or safetensors is missing, unless GREENAI_MINILM_REQUIRED
//! is set (CI sets it and has them), then a failure.

use greenai::kernels::ggml::GgmlType;
use greenai::model::{
    compress, decompress, CompressOptions, Grouping, Method, Model, ModelFile, OutTensor, Pruning, Target,
};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Deterministic values in (-1, 1) with a few exact zeros (SplitMix64, independent of greenai).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|i| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
            if i % 97 == 5 {
                0.0
            } else {
                (u * 2.0 - 1.0) as f32
            }
        })
        .collect()
}

fn f32_tensor(shape: &[usize], seed: u64) -> OutTensor<'static> {
    let n = shape.iter().product();
    let bytes = values(n, seed).iter().flat_map(|v| v.to_le_bytes()).collect();
    OutTensor { dtype: Dtype::F32, shape: shape.to_vec(), bytes: Cow::Owned(bytes) }
}

fn f16_tensor(shape: &[usize], seed: u64) -> OutTensor<'static> {
    let n = shape.iter().product();
    let bytes = values(n, seed).iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    OutTensor { dtype: Dtype::F16, shape: shape.to_vec(), bytes: Cow::Owned(bytes) }
}

/// `a` (whole ggml super-blocks), `b` (rows of 36: a short last group of 32, whole 2:4 groups), `c` (an
/// odd element count), `h` (stored as F16), a 1-D `bias` and an integer `step` (both pass through).
fn write_model(path: &Path) {
    let tensors = vec![
        ("a".to_string(), f32_tensor(&[16, 256], 1)),
        ("b".to_string(), f32_tensor(&[7, 36], 2)),
        ("c".to_string(), f32_tensor(&[3, 5], 3)),
        ("h".to_string(), f16_tensor(&[4, 64], 5)),
        ("bias".to_string(), f32_tensor(&[64], 4)),
        (
            "step".to_string(),
            OutTensor { dtype: Dtype::I64, shape: vec![1], bytes: Cow::Owned(7i64.to_le_bytes().to_vec()) },
        ),
    ];
    greenai::model::write_safetensors(path, &tensors, &HashMap::new()).unwrap();
}

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, safetensors.numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("GREENAI_MINILM_REQUIRED").is_none(),
            "python3 with numpy and safetensors is required (GREENAI_MINILM_REQUIRED is set)"
        );
        eprintln!("skipping the convention reader test: python3 with numpy and safetensors not found");
    }
    ok
}

struct Case {
    label: &'static str,
    options: CompressOptions,
    /// Tensors left unchanged (N:M pruning needs rows of whole groups): skipped tensors.
    skip: &'static [&'static str],
    /// The storage `a` must get.
    storage_a: Option<&'static str>,
}

fn case(label: &'static str, target: Option<Target>, grouping: Grouping) -> Case {
    Case {
        label,
        options: CompressOptions { target, grouping, ..CompressOptions::default() },
        skip: &[],
        storage_a: None,
    }
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
    for (name, target) in [("int8", Target::Int8), ("uint8", Target::Uint8), ("int4", Target::Int4)] {
        cases.push(case(name, Some(target), Grouping::Tensor));
        cases.push(case(name, Some(target), Grouping::Channel));
        cases.push(case(name, Some(target), Grouping::Block(32)));
    }
    for (target, grouping) in [(Target::Int4, Grouping::Block(32)), (Target::Uint8, Grouping::Channel)] {
        let mut c = case("hqq", Some(target), grouping);
        c.options.method = Method::Hqq;
        cases.push(c);
    }
    cases.push(case("fp16", Some(Target::Fp16), Grouping::Channel));
    cases.push(case("bf16", Some(Target::Bf16), Grouping::Channel));
    for ty in GgmlType::ALL.into_iter().filter(|t| t.is_weight_type()) {
        cases.push(case("ggml", Some(Target::Ggml(ty)), Grouping::Channel));
    }
    let pruned: [(_, _, _, _, _, &[&str]); 10] = [
        (None, Pruning::Amount(0.5), Grouping::Channel, Method::Rtn, "csr", &["c"]),
        (None, Pruning::NOfM { n: 2, m: 4 }, Grouping::Channel, Method::Rtn, "nm", &["c"]),
        (Some(Target::Int8), Pruning::Amount(0.6), Grouping::Channel, Method::Rtn, "csr", &[]),
        (Some(Target::Uint8), Pruning::Amount(0.7), Grouping::Block(32), Method::Rtn, "csr", &[]),
        (Some(Target::Int4), Pruning::NOfM { n: 2, m: 4 }, Grouping::Block(32), Method::Rtn, "nm", &["c"]),
        (Some(Target::Int8), Pruning::NOfM { n: 1, m: 4 }, Grouping::Tensor, Method::Rtn, "nm", &["c"]),
        (Some(Target::Fp16), Pruning::NOfM { n: 2, m: 8 }, Grouping::Channel, Method::Rtn, "nm", &["b", "c"]),
        (Some(Target::Bf16), Pruning::Amount(0.8), Grouping::Channel, Method::Rtn, "csr", &[]),
        (Some(Target::Int4), Pruning::Amount(0.8), Grouping::Block(32), Method::Hqq, "csr", &[]),
        (
            Some(Target::Ggml(GgmlType::Q4_0)),
            Pruning::NOfM { n: 2, m: 4 },
            Grouping::Channel,
            Method::Rtn,
            "dense",
            &["c"],
        ),
    ];
    for (target, pruning, grouping, method, storage, skip) in pruned {
        cases.push(Case {
            label: "pruned",
            options: CompressOptions {
                target,
                grouping,
                method,
                pruning: Some(pruning),
                ..CompressOptions::default()
            },
            skip,
            storage_a: Some(storage),
        });
    }
    cases
}

#[test]
fn the_python_reader_decodes_every_kind_as_decompress_does() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.safetensors");
    write_model(&input);
    let source = Model::open(&input).unwrap();
    let reader = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/convention_reader.py");
    let mut kinds = std::collections::BTreeSet::new();
    for (i, case) in cases().iter().enumerate() {
        let what = format!("case {i} ({}, {:?})", case.label, case.options);
        let packed = dir.path().join(format!("{i}.packed.safetensors"));
        let restored = dir.path().join(format!("{i}.restored.safetensors"));
        let python = dir.path().join(format!("{i}.python.safetensors"));
        let keep = |name: &str| !case.skip.contains(&name);
        compress(&source, &packed, &case.options, &keep, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let file = ModelFile::open(&packed).unwrap();
        let meta_a = file.metadata()["greenai.tensor.a"].clone();
        if let Some(storage) = case.storage_a {
            let found = meta_a.split(';').find_map(|kv| kv.strip_prefix("storage=")).unwrap_or("dense");
            assert_eq!(found, storage, "{what}: {meta_a}");
        }
        for name in ["a", "b", "c"] {
            if let Some(text) = file.metadata().get(&format!("greenai.tensor.{name}")) {
                let kind: Vec<&str> = text
                    .split(';')
                    .filter(|kv| ["kind", "qtype", "type", "storage"].iter().any(|k| kv.starts_with(k)))
                    .collect();
                kinds.insert(kind.join(";"));
            }
        }
        decompress(&Model::open(&packed).unwrap(), &restored, &mut |_, _| {}).unwrap();
        let out = Command::new("python3").arg(&reader).arg(&packed).arg(&python).output().unwrap();
        assert!(out.status.success(), "{what}: reader failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let (ours, theirs) = (ModelFile::open(&restored).unwrap(), ModelFile::open(&python).unwrap());
        let mut names: Vec<&str> = ours.tensors().iter().map(|t| t.name.as_str()).collect();
        let mut their_names: Vec<&str> = theirs.tensors().iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        their_names.sort_unstable();
        assert_eq!(names, their_names, "{what}: companions dropped, every tensor decoded");
        for info in ours.tensors() {
            let t = ours.read(info).unwrap();
            let p = theirs.tensor(t.name).unwrap();
            assert_eq!(t.shape, p.shape, "{what}: `{}`", t.name);
            // The reader decodes to f32; decompress then rounds to the original dtype (F16 here).
            let theirs_bytes: Vec<u8> = match (t.dtype, p.dtype) {
                (Dtype::F16, Dtype::F32) => {
                    p.to_f32().unwrap().iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()
                }
                (a, b) => {
                    assert_eq!(a, b, "{what}: `{}`", t.name);
                    p.bytes.to_vec()
                }
            };
            if *t.bytes != *theirs_bytes.as_slice() {
                let (a, b) = (t.to_f32().unwrap(), p.to_f32().unwrap());
                let k = a.iter().zip(&b).position(|(x, y)| x.to_bits() != y.to_bits()).unwrap_or(0);
                panic!("{what}: `{}` differs first at {k}: greenai {} python {}", t.name, a[k], b[k]);
            }
        }
    }
    // Every kind greenai writes was read: 4 quant qtypes, 2 casts, 7 ggml types, pruned, sparse storage.
    let all = kinds.iter().cloned().collect::<Vec<_>>().join(" | ");
    for needle in [
        "qtype=i8",
        "qtype=u8",
        "qtype=i4",
        "qtype=u4",
        "kind=cast",
        "type=q4_K",
        "type=q6_K",
        "type=q5_1",
        "kind=pruned",
        "storage=csr",
        "storage=nm",
    ] {
        assert!(all.contains(needle), "{needle} never written: {all}");
    }
}
