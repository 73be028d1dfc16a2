//! `CompressedModel`, the format-independent reader an engine uses (issue 18, part 4): greenai's
//! own files (int8 per channel, pruned and stored sparse, ggml blocks), a compressed-tensors folder
//! written by an independent writer (tests/support/ct_reader.py, from the format's published rules),
//! sharded, and a GGUF file. Values are checked against the original weights (the quantization
//! error bound of the format's definition) or the independent writer's own dequantization.
#![cfg(feature = "serde")]

use greenai::kernels::ggml::{self, GgmlType};
use greenai::model::gguf::{write_gguf, PlannedTensor, TensorType};
use greenai::model::{
    compress, write_safetensors, CompressOptions, CompressedModel, Destination, Grouping, Model, ModelFile,
    ModelFormat, OutTensor, Pruning, Target,
};
use greenai::quant::ActivationQuant;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Tensors by name: shape and f32 values.
type Weights = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// A plain f32 model: two linear layers with biases and a norm, seeded pseudo-random weights.
fn plain_model(path: &Path) -> Weights {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let shapes = [
        ("layer.0.weight", vec![48, 64]),
        ("layer.0.bias", vec![48]),
        ("layer.1.weight", vec![32, 48]),
        ("layer.1.bias", vec![32]),
        ("norm.weight", vec![64]),
    ];
    let mut weights = HashMap::new();
    let mut tensors = Vec::new();
    for (name, shape) in shapes {
        let values: Vec<f32> =
            (0..shape.iter().product::<usize>()).map(|i| next() * (1.0 + (i % 7) as f32)).collect();
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((
            name.to_string(),
            OutTensor { dtype: safetensors::Dtype::F32, shape: shape.clone(), bytes: Cow::Owned(bytes) },
        ));
        weights.insert(name.to_string(), (shape, values));
    }
    write_safetensors(path, &tensors, &HashMap::new()).unwrap();
    weights
}

fn compressed(tmp: &Path, name: &str, options: &CompressOptions) -> (CompressedModel, Weights) {
    let plain = tmp.join("plain.safetensors");
    let weights = plain_model(&plain);
    let out = tmp.join(name);
    compress(&Model::open(&plain).unwrap(), &out, options, &|_| true, &mut |_, _| {}).unwrap();
    (CompressedModel::open(&out).unwrap(), weights)
}

#[test]
fn greenai_int8_per_channel_reads_as_stored_and_as_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, weights) = compressed(tmp.path(), "int8.safetensors", &CompressOptions::default());
    assert_eq!(model.format(), ModelFormat::Greenai);
    let mut names: Vec<_> = model.tensors().iter().map(|t| t.name.clone()).collect();
    names.sort();
    let mut want: Vec<_> = weights.keys().cloned().collect();
    want.sort();
    assert_eq!(names, want, "one logical tensor per original, companions folded in");
    for (name, (shape, original)) in &weights {
        let i = model.find(name).unwrap();
        assert_eq!(&model.tensors()[i].shape, shape);
        let restored = model.read_f32(i).unwrap();
        if shape.len() == 1 {
            assert_eq!(&restored, original, "{name}: 1-D tensors pass through");
            let err = model.read_int8(i).unwrap_err().to_string();
            assert!(err.contains("read it as f32"), "{err}");
            continue;
        }
        let q = model.read_int8(i).unwrap();
        assert_eq!((q.out_features, q.in_features), (shape[0], shape[1]));
        assert!(q.zero_points.iter().all(|&z| z == 0));
        for r in 0..shape[0] {
            let row = &original[r * shape[1]..(r + 1) * shape[1]];
            // Symmetric int8 on [-127, 127]: scale = max|w| / 127, q = round(w / scale) (float64 here).
            let amax = row.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
            let scale = amax / 127.0;
            assert!((f64::from(q.scales[r]) - scale).abs() <= scale * 1e-6, "{name} row {r}");
            for (c, &w) in row.iter().enumerate() {
                let k = r * shape[1] + c;
                let exact = f64::from(w) / f64::from(q.scales[r]);
                assert!((f64::from(q.values[k]) - exact).abs() <= 0.5 + 1e-4, "{name}[{r},{c}]");
                assert_eq!(restored[k], f32::from(q.values[k]) * q.scales[r], "{name}[{r},{c}]: f32 read");
            }
        }
        // The layer runs: against the f64 product with the dequantized weights.
        let bias = &weights[&name.replace("weight", "bias")].1;
        let layer = q.to_linear(Some(bias)).unwrap();
        let x: Vec<f32> = (0..2 * shape[1]).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let mut y = vec![0f32; 2 * shape[0]];
        layer.forward(&x, 2, ActivationQuant::U8Affine, &mut y).unwrap();
        for b in 0..2 {
            for o in 0..shape[0] {
                let exact: f64 = (0..shape[1])
                    .map(|c| f64::from(x[b * shape[1] + c]) * f64::from(restored[o * shape[1] + c]))
                    .sum::<f64>()
                    + f64::from(bias[o]);
                let scale: f64 =
                    (0..shape[1]).map(|c| f64::from(restored[o * shape[1] + c]).abs()).sum::<f64>() * 4.0
                        / 255.0;
                assert!((f64::from(y[b * shape[0] + o]) - exact).abs() <= scale, "{name} y[{b},{o}]");
            }
        }
    }
}

#[test]
fn pruned_and_stored_sparse_reads_dense_with_its_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let options =
        CompressOptions { pruning: Some(Pruning::NOfM { n: 2, m: 4 }), ..CompressOptions::default() };
    let (model, weights) = compressed(tmp.path(), "sparse.safetensors", &options);
    let i = model.find("layer.0.weight").unwrap();
    assert_ne!(model.tensors()[i].storage, "dense", "the 2:4 weight is stored sparse");
    let q = model.read_int8(i).unwrap();
    let f = model.read_f32(i).unwrap();
    let original = &weights["layer.0.weight"].1;
    for (g, chunk) in q.values.chunks(4).enumerate() {
        assert!(chunk.iter().filter(|&&v| v == 0).count() >= 2, "group {g} keeps at most 2 of 4");
        for (j, &v) in chunk.iter().enumerate() {
            let k = g * 4 + j;
            let r = k / 64;
            assert_eq!(f[k], f32::from(v) * q.scales[r]);
            if v != 0 {
                assert!((f64::from(original[k]) / f64::from(q.scales[r]) - f64::from(v)).abs() <= 0.5 + 1e-4);
            }
        }
    }
}

#[test]
fn ggml_blocks_read_as_stored_and_dequantize_to_the_f32_read() {
    let tmp = tempfile::tempdir().unwrap();
    let options = CompressOptions {
        target: Some(Target::Ggml(GgmlType::Q8_0)),
        grouping: Grouping::Channel,
        ..CompressOptions::default()
    };
    let (model, weights) = compressed(tmp.path(), "q8_0.safetensors", &options);
    let i = model.find("layer.0.weight").unwrap();
    let (ty, bytes) = model.read_ggml(i).unwrap();
    assert_eq!(ty, GgmlType::Q8_0);
    assert_eq!(bytes.len(), 48 * 64 / 32 * 34, "ggml's block_q8_0 is 34 bytes per 32");
    let mut x = vec![0f32; 48 * 64];
    ggml::dequantize(ty, &bytes, 48, 64, &mut x).unwrap();
    assert_eq!(x, model.read_f32(i).unwrap());
    // Q8_0: d = max|w| / 127 per block of 32, each value within d / 2, plus 127 times d's f16
    // rounding (at most 2^-11 d).
    for (block, (w, v)) in weights["layer.0.weight"].1.chunks(32).zip(x.chunks(32)).enumerate() {
        let d = w.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        assert!(w.iter().zip(v).all(|(a, b)| (a - b).abs() <= d * (0.5 + 127.0 / 2048.0)), "block {block}");
    }
    let bias = model.find("layer.0.bias").unwrap();
    assert!(model.read_ggml(bias).unwrap_err().to_string().contains("not in ggml blocks"));
}

#[test]
fn a_gguf_file_lists_and_reads_every_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.gguf");
    let w: Vec<f32> = (0..4 * 64).map(|i| ((i * 29 % 97) as f32 - 48.0) / 13.0).collect();
    let wq = w.clone();
    let tensors = vec![
        PlannedTensor {
            name: "blk.0.ffn_up.weight".into(),
            dims: vec![64, 4],
            ty: TensorType::Ggml(GgmlType::Q4_0),
            bytes: Box::new(move || greenai::model::gguf::encode(TensorType::Ggml(GgmlType::Q4_0), &wq, 64)),
        },
        PlannedTensor {
            name: "output_norm.weight".into(),
            dims: vec![3],
            ty: TensorType::F32,
            bytes: Box::new(|| Ok([0.5f32, -1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect())),
        },
    ];
    write_gguf(&Destination::check(&path).unwrap(), &[], tensors, &mut |_, _| {}).unwrap();
    let model = CompressedModel::open(&path).unwrap();
    assert_eq!(model.format(), ModelFormat::Gguf);
    let up = model.find("blk.0.ffn_up.weight").unwrap();
    let t = &model.tensors()[up];
    assert_eq!((t.shape.clone(), t.dtype.as_str(), t.bytes), (vec![4, 64], "q4_0", 4 * 2 * 18));
    let values = model.read_f32(up).unwrap();
    // Q4_0: d = the block's value of largest magnitude / -8; every value within |d| of its original
    // (the clamp at level 15), plus 8 times d's f16 rounding.
    for (wb, vb) in w.chunks(32).zip(values.chunks(32)) {
        let max = wb.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        assert!(wb.iter().zip(vb).all(|(a, b)| (a - b).abs() <= (max / 8.0).abs() * (1.0 + 8.0 / 2048.0)));
    }
    assert_eq!(model.read_ggml(up).unwrap().0, GgmlType::Q4_0);
    assert_eq!(model.read_f32(model.find("output_norm.weight").unwrap()).unwrap(), [0.5, -1.0, 2.0]);
    assert!(model.read_int8(up).unwrap_err().to_string().contains("not int8"));
    assert!(model.read_f32(9).is_err(), "an index past the end is an error");
}

fn python_writer(args: &[&str]) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ct_reader.py");
    let Ok(out) = Command::new("python3").arg(script).args(args).output() else { return false };
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No module named") {
        eprintln!("skipped: python3 with numpy not found");
        return false;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    true
}

/// Writes the folder's `model.safetensors` as two shards with their index.
fn shard_in_two(dir: &Path) {
    let file = ModelFile::open(dir.join("model.safetensors")).unwrap();
    let mut shards: [Vec<(String, OutTensor<'static>)>; 2] = [Vec::new(), Vec::new()];
    let mut weight_map = serde_json::Map::new();
    for (i, info) in file.tensors().iter().enumerate() {
        let t = file.read(info).unwrap();
        let shard = format!("model-{:05}-of-00002.safetensors", i % 2 + 1);
        weight_map.insert(info.name.clone(), shard.into());
        shards[i % 2].push((
            info.name.clone(),
            OutTensor { dtype: t.dtype, shape: t.shape.to_vec(), bytes: Cow::Owned(t.bytes.to_vec()) },
        ));
    }
    drop(file);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    for (i, tensors) in shards.iter().enumerate() {
        write_safetensors(
            &dir.join(format!("model-{:05}-of-00002.safetensors", i + 1)),
            tensors,
            &HashMap::new(),
        )
        .unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn a_compressed_tensors_folder_from_an_independent_writer_sharded_reads_as_it_defines() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, expected) = (tmp.path().join("theirs"), tmp.path().join("expected.safetensors"));
    if !python_writer(&["write", dir.to_str().unwrap(), expected.to_str().unwrap()]) {
        return;
    }
    shard_in_two(&dir);
    let model = CompressedModel::open(&dir).unwrap();
    assert_eq!(model.format(), ModelFormat::CompressedTensors);
    let expected = ModelFile::open(&expected).unwrap();
    let mut names: Vec<_> = model.tensors().iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<_> = expected.tensors().iter().map(|t| t.name.as_str()).collect();
    want.sort_unstable();
    assert_eq!(names, want, "modules as their weights, activation scales dropped");
    for info in expected.tensors() {
        let i = model.find(&info.name).unwrap();
        assert_eq!(model.tensors()[i].shape, info.shape, "{}", info.name);
        assert_eq!(model.read_f32(i).unwrap(), expected.read_f32(info).unwrap(), "{}", info.name);
    }
    // b.proj is 8-bit per channel (asymmetric): it reads as stored, and as the f32 read.
    let b = model.find("b.proj.weight").unwrap();
    let q = model.read_int8(b).unwrap();
    assert!(q.zero_points.iter().any(|&z| z != 0));
    let f = model.read_f32(b).unwrap();
    for (k, (&v, &x)) in q.values.iter().zip(&f).enumerate() {
        let r = k / q.in_features;
        let deq = half::f16::from_f32(
            half::f16::from_f32((i32::from(v) - q.zero_points[r]) as f32).to_f32() * q.scales[r],
        );
        assert_eq!(deq.to_f32(), x, "b.proj[{k}]");
    }
    // a.proj is 4-bit in groups with act order: refused as int8, with what it is.
    let err = model.read_int8(model.find("a.proj.weight").unwrap()).unwrap_err().to_string();
    assert!(err.contains("int4") && err.contains("act-order"), "{err}");
}

#[test]
fn bad_input_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(CompressedModel::open(tmp.path().join("missing")).is_err());
    let junk = tmp.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\0\0\0 truncated").unwrap();
    assert!(CompressedModel::open(&junk).unwrap_err().to_string().contains("truncated"));
    assert!(CompressedModel::open(tmp.path()).unwrap_err().to_string().contains("without weights"));
}

#[test]
fn a_compressed_tensors_module_with_a_huge_or_wrong_weight_shape_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, expected) = (tmp.path().join("theirs"), tmp.path().join("expected.safetensors"));
    if !python_writer(&["write", dir.to_str().unwrap(), expected.to_str().unwrap()]) {
        return;
    }
    let original = std::fs::read(dir.join("model.safetensors")).unwrap();
    for (shape, needle) in [
        ([1i32 << 30, 1 << 30], "too large"),
        ([1 << 20, 1 << 20], "weight_packed has shape"),
        ([12, 65], "weight_packed has shape"),
    ] {
        let file = ModelFile::from_bytes("m.safetensors", original.clone()).unwrap();
        let tensors: Vec<(String, OutTensor<'static>)> = file
            .tensors()
            .iter()
            .map(|info| {
                let t = file.read(info).unwrap();
                let bytes = if info.name == "a.proj.weight_shape" {
                    shape.iter().flat_map(|v| v.to_le_bytes()).collect()
                } else {
                    t.bytes.to_vec()
                };
                (
                    info.name.clone(),
                    OutTensor { dtype: t.dtype, shape: t.shape.to_vec(), bytes: Cow::Owned(bytes) },
                )
            })
            .collect();
        std::fs::remove_file(dir.join("model.safetensors")).unwrap();
        write_safetensors(&dir.join("model.safetensors"), &tensors, &HashMap::new()).unwrap();
        let err = CompressedModel::open(&dir).unwrap_err().to_string();
        assert!(err.contains("a.proj") && err.contains(needle), "{shape:?}: {err}");
    }
}
