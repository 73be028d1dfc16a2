//! Issue 20, findings 4, 5 and 6: `decompress` checks everything it reads against the format, names that
//! collide with the companion convention are never lost, and a compressed file is not compressed again.

use greenai::model::{
    compress, decompress, metadata_key, CompressOptions, Grouping, Model, ModelFile, OutTensor, Pruning,
    Target,
};
use greenai::Error;
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn weights(n: usize, seed: i64) -> Vec<f32> {
    (0..n as i64).map(|i| (((i * 37 + seed) % 101) - 50) as f32 / 64.0).collect()
}

fn tensor(dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> OutTensor<'static> {
    OutTensor { dtype, shape: shape.to_vec(), bytes: Cow::Owned(bytes) }
}

/// A model with a 2-D weight `w` (8 x 16), a 1-D `bias` and an F16 2-D weight `h` (4 x 8).
fn write_model(path: &Path) {
    let h: Vec<u8> = weights(32, 3).iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let tensors = vec![
        ("w".to_string(), tensor(Dtype::F32, &[8, 16], f32_bytes(&weights(128, 0)))),
        ("bias".to_string(), tensor(Dtype::F32, &[8], f32_bytes(&weights(8, 1)))),
        ("h".to_string(), tensor(Dtype::F16, &[4, 8], h)),
    ];
    greenai::model::write_safetensors(path, &tensors, &HashMap::new()).unwrap();
}

fn options(target: Option<Target>) -> CompressOptions {
    CompressOptions { target, ..CompressOptions::default() }
}

fn run_compress(input: &Path, output: &Path, options: &CompressOptions) -> greenai::Result<()> {
    compress(&Model::open(input)?, output, options, &|_| true, &mut |_, _| {}).map(|_| ())
}

fn run_decompress(input: &Path, output: &Path) -> greenai::Result<()> {
    decompress(&Model::open(input)?, output, &mut |_, _| {})
}

/// Copies `src` to `dst` with `edit` applied to its tensors and metadata.
fn rewrite(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<(String, OutTensor<'static>)>, &mut HashMap<String, String>),
) {
    let file = ModelFile::open(src).unwrap();
    let mut tensors: Vec<(String, OutTensor<'static>)> = file
        .tensors()
        .iter()
        .map(|i| (i.name.clone(), tensor(i.dtype, &i.shape, file.read(i).unwrap().bytes.to_vec())))
        .collect();
    let mut metadata = file.metadata().clone();
    edit(&mut tensors, &mut metadata);
    greenai::model::write_safetensors(dst, &tensors, &metadata).unwrap();
}

fn set_meta_field(metadata: &mut HashMap<String, String>, name: &str, key: &str, value: &str) {
    let entry = metadata.get_mut(&metadata_key(name)).unwrap();
    let fields: Vec<String> = entry
        .split(';')
        .map(
            |kv| if kv.split_once('=').unwrap().0 == key { format!("{key}={value}") } else { kv.to_string() },
        )
        .collect();
    assert!(fields.iter().any(|f| f.starts_with(&format!("{key}="))), "{entry} has no {key}");
    *entry = fields.join(";");
}

fn tensor_mut<'a>(tensors: &'a mut [(String, OutTensor<'static>)], name: &str) -> &'a mut OutTensor<'static> {
    &mut tensors.iter_mut().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn decompress_refuses_what_the_format_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let (model, int8, uint8, half) =
        (dir.path().join("m"), dir.path().join("int8"), dir.path().join("uint8"), dir.path().join("f16"));
    write_model(&model);
    run_compress(&model, &int8, &options(Some(Target::Int8))).unwrap();
    run_compress(&model, &uint8, &options(Some(Target::Uint8))).unwrap();
    run_compress(&model, &half, &options(Some(Target::Fp16))).unwrap();
    type Edit = Box<dyn FnOnce(&mut Vec<(String, OutTensor<'static>)>, &mut HashMap<String, String>)>;
    let cases: Vec<(&str, &Path, Edit, &str)> = vec![
        ("i8 data labelled u8", &int8, Box::new(|_, m| set_meta_field(m, "w", "qtype", "u8")), "must be U8"),
        (
            "a mode that does not exist",
            &int8,
            Box::new(|_, m| set_meta_field(m, "w", "mode", "bogus")),
            "mode",
        ),
        ("an unknown original dtype", &int8, Box::new(|_, m| set_meta_field(m, "w", "dtype", "F99")), "F99"),
        ("an unknown kind", &half, Box::new(|_, m| set_meta_field(m, "w", "kind", "magic")), "magic"),
        (
            "an unknown granularity",
            &int8,
            Box::new(|_, m| set_meta_field(m, "w", "granularity", "row")),
            "row",
        ),
        ("an axis beyond the shape", &int8, Box::new(|_, m| set_meta_field(m, "w", "axis", "5")), "axis"),
        ("narrow neither 0 nor 1", &int8, Box::new(|_, m| set_meta_field(m, "w", "narrow", "2")), "narrow"),
        (
            "an F32 tensor labelled quantized",
            &int8,
            Box::new(|_, m| {
                m.insert(
                    metadata_key("bias"),
                    "kind=quant;dtype=F32;shape=8;qtype=i8;mode=symmetric;granularity=tensor;axis=0;block=0"
                        .into(),
                );
            }),
            "must be I8",
        ),
        (
            "a shape that disagrees with the data",
            &int8,
            Box::new(|_, m| set_meta_field(m, "w", "shape", "8,17")),
            "must be I8",
        ),
        (
            "a future format version",
            &int8,
            Box::new(|_, m| drop(m.insert("greenai.format".into(), "3".into()))),
            "format",
        ),
        (
            "a plain file greenai never wrote",
            &int8,
            Box::new(|_, m| m.retain(|k, _| !k.starts_with("greenai."))),
            "not a file written by",
        ),
        (
            "an entry for a tensor that is not there",
            &int8,
            Box::new(|_, m| drop(m.insert(metadata_key("ghost"), "kind=cast;dtype=F32;shape=1".into()))),
            "ghost",
        ),
        (
            "a scale whose product overflows f32",
            &int8,
            Box::new(|t, _| tensor_mut(t, "w.scale").bytes = Cow::Owned(f32_bytes(&[1e37; 8]))),
            "restored",
        ),
        (
            "a scale whose product overflows the original f16",
            &int8,
            Box::new(|t, _| tensor_mut(t, "h.scale").bytes = Cow::Owned(f32_bytes(&[1e3; 4]))),
            "overflows F16",
        ),
        (
            "scales stored as F16",
            &int8,
            Box::new(|t, _| {
                let s = tensor_mut(t, "w.scale");
                *s = tensor(Dtype::F16, &[8], [0x00, 0x3c].repeat(8));
            }),
            "not F32",
        ),
        (
            "too few scales",
            &int8,
            Box::new(|t, _| *tensor_mut(t, "w.scale") = tensor(Dtype::F32, &[4], f32_bytes(&[0.01; 4]))),
            "",
        ),
        (
            "a zero point of the wrong dtype",
            &uint8,
            Box::new(|t, _| {
                let z = tensor_mut(t, "w.zero_point");
                z.dtype = Dtype::I8;
            }),
            "zero_point",
        ),
        (
            "a missing companion",
            &uint8,
            Box::new(|t, _| t.retain(|(n, _)| n != "w.zero_point")),
            "missing `w.zero_point`",
        ),
    ];
    for (what, source, edit, needle) in cases {
        let (bad, out) = (dir.path().join("bad"), dir.path().join("out"));
        rewrite(source, &bad, edit);
        let err = run_decompress(&bad, &out).expect_err(what);
        assert!(matches!(
            err,
            Error::Format { .. } | Error::InvalidArgument { .. } | Error::ShapeMismatch { .. }
        ));
        assert!(err.to_string().contains(needle), "{what}: {needle:?} not in `{err}`");
        assert!(!out.exists(), "{what}: an output was written");
    }
    // The unedited files still decompress.
    for good in [&int8, &uint8, &half] {
        run_decompress(good, &dir.path().join("ok")).unwrap();
    }
}

#[test]
fn user_tensors_with_companion_names_are_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    let attn: Vec<f32> = weights(64, 5);
    let tensors = vec![
        ("attn".to_string(), tensor(Dtype::F32, &[8, 8], f32_bytes(&attn))),
        ("attn.scale".to_string(), tensor(Dtype::F32, &[2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0]))),
        ("attn.zero_point".to_string(), tensor(Dtype::F32, &[2, 2], f32_bytes(&[5.0, 6.0, 7.0, 8.0]))),
    ];
    greenai::model::write_safetensors(&model, &tensors, &HashMap::new()).unwrap();
    let cast_and_prune = [
        options(Some(Target::Fp16)),
        options(Some(Target::Bf16)),
        CompressOptions { target: None, pruning: Some(Pruning::Amount(0.5)), ..CompressOptions::default() },
    ];
    for opts in &cast_and_prune {
        let (packed, back) = (dir.path().join("q"), dir.path().join("back"));
        run_compress(&model, &packed, opts).unwrap();
        run_decompress(&packed, &back).unwrap();
        let file = Model::open(&back).unwrap();
        let mut names: Vec<_> = file.tensors().map(|t| t.name.to_string()).collect();
        names.sort();
        assert_eq!(names, ["attn", "attn.scale", "attn.zero_point"], "{opts:?}");
    }
    // An integer target would need those names for its companions: refused before any work, naming both.
    for target in [Target::Int8, Target::Uint8, Target::Int4] {
        let out = dir.path().join("int");
        let err = run_compress(&model, &out, &options(Some(target))).unwrap_err();
        assert!(err.to_string().contains("`attn.scale`") && err.to_string().contains("--skip"), "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn compressing_a_compressed_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (model, packed) = (dir.path().join("m"), dir.path().join("q"));
    write_model(&model);
    let block =
        CompressOptions { grouping: Grouping::Block(4), include_1d: true, ..CompressOptions::default() };
    run_compress(&model, &packed, &block).unwrap();
    for opts in [block, options(Some(Target::Fp16))] {
        let again = dir.path().join("qq");
        let err = run_compress(&packed, &again, &opts).unwrap_err();
        assert!(err.to_string().contains("already compressed"), "{err}");
        assert!(!again.exists());
    }
    run_decompress(&packed, &dir.path().join("back")).unwrap();
}

/// Issue 21: the sparse encodings' indices are checked as everything else is (format 2).
#[test]
fn decompress_refuses_corrupt_sparse_indices() {
    let dir = tempfile::tempdir().unwrap();
    let (model, csr, nm) = (dir.path().join("m"), dir.path().join("csr"), dir.path().join("nm"));
    write_model(&model);
    let pruned =
        |pruning, target| CompressOptions { target, pruning: Some(pruning), ..CompressOptions::default() };
    run_compress(&model, &csr, &pruned(Pruning::Amount(0.75), None)).unwrap();
    run_compress(&model, &nm, &pruned(Pruning::NOfM { n: 1, m: 4 }, Some(Target::Int8))).unwrap();
    let meta = |path: &Path| ModelFile::open(path).unwrap().metadata()[&metadata_key("w")].clone();
    assert!(meta(&csr).contains("storage=csr"), "{}", meta(&csr));
    assert!(meta(&nm).contains("storage=nm;n=1;m=4"), "{}", meta(&nm));
    type Edit = Box<dyn FnOnce(&mut Vec<(String, OutTensor<'static>)>, &mut HashMap<String, String>)>;
    let cases: Vec<(&str, &Path, Edit, &str)> = vec![
        (
            "row pointers that fall",
            &csr,
            Box::new(|t, _| {
                let p = tensor_mut(t, "w.row_ptr");
                let mut b = p.bytes.to_vec();
                b.swap(1, 2);
                p.bytes = Cow::Owned(b);
            }),
            "row_ptr",
        ),
        (
            "a column past the row",
            &csr,
            Box::new(|t, _| {
                let c = tensor_mut(t, "w.col_idx");
                let mut b = c.bytes.to_vec();
                b[0] = 200;
                c.bytes = Cow::Owned(b);
            }),
            "columns",
        ),
        (
            "signed column indices",
            &csr,
            Box::new(|t, _| {
                let c = tensor_mut(t, "w.col_idx");
                c.dtype = Dtype::I8;
            }),
            "unsigned",
        ),
        ("a missing column index", &csr, Box::new(|t, _| t.retain(|(n, _)| n != "w.col_idx")), "w.col_idx"),
        (
            "one stored value too few",
            &csr,
            Box::new(|t, _| {
                let v = tensor_mut(t, "w");
                let n = v.shape[0] - 1;
                *v = tensor(Dtype::F32, &[n], v.bytes[..4 * n].to_vec());
            }),
            "stored elements",
        ),
        ("an unknown storage", &csr, Box::new(|_, m| set_meta_field(m, "w", "storage", "coo")), "coo"),
        ("csr read as N:M", &csr, Box::new(|_, m| set_meta_field(m, "w", "storage", "nm")), "without `n`"),
        (
            "N:M with a pattern that does not match the index",
            &nm,
            Box::new(|_, m| set_meta_field(m, "w", "n", "2")),
            "nm_index",
        ),
        ("N:M with m = 0", &nm, Box::new(|_, m| set_meta_field(m, "w", "m", "0")), "0 < n <= m"),
    ];
    for (what, source, edit, needle) in cases {
        let (bad, out) = (dir.path().join("bad"), dir.path().join("out"));
        rewrite(source, &bad, edit);
        let err = run_decompress(&bad, &out).expect_err(what);
        assert!(err.to_string().contains(needle), "{what}: {needle:?} not in `{err}`");
        assert!(!out.exists(), "{what}: an output was written");
    }
    for good in [&csr, &nm] {
        run_decompress(good, &dir.path().join("ok")).unwrap();
    }
}

/// Issue 21: format 2 readers still read version 1 files (no sparse storage, no `sparsity` on unpruned
/// tensors), to the same values.
#[test]
fn version_1_files_still_decompress() {
    let dir = tempfile::tempdir().unwrap();
    let (model, v2, v1) = (dir.path().join("m"), dir.path().join("v2"), dir.path().join("v1"));
    write_model(&model);
    run_compress(&model, &v2, &options(Some(Target::Uint8))).unwrap();
    assert_eq!(ModelFile::open(&v2).unwrap().metadata()["greenai.format"], "2");
    rewrite(&v2, &v1, |_, m| {
        m.insert("greenai.format".into(), "1".into());
        for (k, v) in m.iter_mut().filter(|(k, _)| k.starts_with("greenai.tensor.")) {
            *v = v.split(';').filter(|kv| !kv.starts_with("sparsity=")).collect::<Vec<_>>().join(";");
            assert!(!v.contains("sparsity"), "{k}");
        }
    });
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_decompress(&v2, &a).unwrap();
    run_decompress(&v1, &b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}
