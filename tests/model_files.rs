//! safetensors reading and writing: round trips, every dtype, and every kind of bad file.

use greenai::model::{write_safetensors, ModelFile, OutTensor};
use greenai::Error;
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;

/// A safetensors file built by hand from the format's definition: u64 LE header length, JSON header, data.
fn hand_made(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn reads_a_hand_made_file_with_every_float_width() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut data = Vec::new();
    data.extend(1.5f32.to_le_bytes());
    data.extend((-2.0f32).to_le_bytes());
    data.extend(half::f16::from_f32(0.25).to_le_bytes());
    data.extend(half::bf16::from_f32(-3.0).to_le_bytes());
    data.extend(1e-3f64.to_le_bytes());
    data.extend([7u8, 0, 0, 0, 0, 0, 0, 0]);
    let header = r#"{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"h":{"dtype":"F16","shape":[1],"data_offsets":[8,10]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[10,12]},"d":{"dtype":"F64","shape":[1],"data_offsets":[12,20]},"i":{"dtype":"I64","shape":[1],"data_offsets":[20,28]}}"#;
    std::fs::write(&path, hand_made(header, &data)).unwrap();
    let file = ModelFile::open(&path).unwrap();
    assert_eq!(file.len(), 5);
    assert_eq!(file.metadata().get("k").map(String::as_str), Some("v"));
    let names: Vec<_> = file.tensors().iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["a", "h", "b", "d", "i"]);
    assert_eq!(file.tensor("a").unwrap().to_f32().unwrap(), vec![1.5, -2.0]);
    assert_eq!(file.tensor("h").unwrap().to_f32().unwrap(), vec![0.25]);
    assert_eq!(file.tensor("b").unwrap().to_f32().unwrap(), vec![-3.0]);
    assert_eq!(file.tensor("d").unwrap().to_f32().unwrap(), vec![1e-3f64 as f32]);
    let i64_tensor = file.tensor("i").unwrap();
    assert_eq!(&*i64_tensor.bytes, &[7, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(i64_tensor.to_f32(), Err(Error::InvalidArgument { .. })));
}

#[test]
fn write_then_read_round_trips_bytes_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    let weights: Vec<u8> = (0..24u8).collect();
    let tensors = vec![
        ("w".to_string(), OutTensor { dtype: Dtype::F32, shape: vec![2, 3], bytes: Cow::Borrowed(&weights) }),
        ("q".to_string(), OutTensor { dtype: Dtype::I8, shape: vec![3], bytes: Cow::Owned(vec![1, 2, 255]) }),
    ];
    let metadata = HashMap::from([("greenai".to_string(), "test".to_string())]);
    write_safetensors(&path, &tensors, &metadata).unwrap();
    let file = ModelFile::open(&path).unwrap();
    assert_eq!(&*file.tensor("w").unwrap().bytes, weights.as_slice());
    assert_eq!(file.tensor("w").unwrap().shape, &[2, 3]);
    assert_eq!(&*file.tensor("q").unwrap().bytes, &[1, 2, 255]);
    assert_eq!(file.metadata(), &metadata);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
}

#[test]
fn bad_files_are_format_or_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = hand_made(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0u8; 8]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated data", good[..good.len() - 3].to_vec()),
        ("truncated header", good[..12].to_vec()),
        ("header length beyond the file", {
            let mut b = good.clone();
            b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            b
        }),
        ("header that is not JSON", hand_made("{not json", &[0u8; 8])),
        (
            "offsets that lie about the size",
            hand_made(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#, &[0u8; 8]),
        ),
        (
            "offsets past the data",
            hand_made(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#, &[0u8; 8]),
        ),
    ];
    for (what, bytes) in cases {
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        match ModelFile::open(&path) {
            Err(Error::Format { .. }) => {}
            Err(other) => panic!("{what}: expected a format error, got {other}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }
    let missing = ModelFile::open(dir.path().join("missing.safetensors"));
    assert!(matches!(missing, Err(Error::Io { .. })));
}

#[test]
fn failed_writes_leave_existing_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.safetensors");
    std::fs::write(&path, b"previous content").unwrap();
    let bad = vec![(
        "w".to_string(),
        OutTensor { dtype: Dtype::F32, shape: vec![3], bytes: Cow::Owned(vec![0u8; 5]) },
    )];
    assert!(matches!(write_safetensors(&path, &bad, &HashMap::new()), Err(Error::InvalidArgument { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), b"previous content");
    let unwritable = dir.path().join("no/such/folder/out.safetensors");
    let ok =
        vec![("w".to_string(), OutTensor { dtype: Dtype::U8, shape: vec![1], bytes: Cow::Owned(vec![1]) })];
    assert!(matches!(write_safetensors(&unwritable, &ok, &HashMap::new()), Err(Error::Io { .. })));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn inspect_counts_range_and_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let values = [0.0f32, -2.5, 0.0, 4.0, -0.0, 1.0];
    let w: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![
        ("w".to_string(), OutTensor { dtype: Dtype::F32, shape: vec![2, 3], bytes: Cow::Owned(w) }),
        ("n".to_string(), OutTensor { dtype: Dtype::I8, shape: vec![2], bytes: Cow::Owned(vec![0x80, 5]) }),
        ("e".to_string(), OutTensor { dtype: Dtype::F16, shape: vec![0], bytes: Cow::Owned(vec![]) }),
    ];
    write_safetensors(&path, &tensors, &HashMap::new()).unwrap();
    let file = greenai::model::Model::open(&path).unwrap();
    let rows = greenai::model::inspect(&file, &mut |_, _| {}).unwrap();
    let w = rows.iter().find(|r| r.name == "w").unwrap();
    assert_eq!((w.params, w.bytes, w.min, w.max), (6, 24, Some(-2.5), Some(4.0)));
    assert!((w.sparsity - 0.5).abs() < 1e-12, "three of six are zero (-0.0 included)");
    let n = rows.iter().find(|r| r.name == "n").unwrap();
    assert_eq!((n.min, n.max, n.sparsity), (Some(-128.0), Some(5.0), 0.0));
    let e = rows.iter().find(|r| r.name == "e").unwrap();
    assert_eq!((e.params, e.min, e.sparsity), (0, None, 0.0));
    // Released pages are read back from the file on the next access.
    assert_eq!(file.tensor("w").unwrap().to_f32().unwrap(), values.to_vec());
}
