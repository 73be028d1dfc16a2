//! Issue 20, finding 8: an input truncated while greenai has it open is an error, never SIGBUS. (On a
//! memory-mapped reader this test dies of SIGBUS; that is why it has a file of its own.)

use greenai::model::{compress, CompressOptions, Model, ModelFile, OutTensor};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;

#[test]
fn an_input_truncated_after_opening_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let weight: Vec<f32> = (0..256 * 1024).map(|i| ((i % 97) as f32 - 48.0) / 64.0).collect();
    let bytes: Vec<u8> = weight.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![(
        "w".to_string(),
        OutTensor { dtype: Dtype::F32, shape: vec![256, 1024], bytes: Cow::Owned(bytes) },
    )];
    greenai::model::write_safetensors(&path, &tensors, &HashMap::new()).unwrap();
    let file = ModelFile::open(&path).unwrap();
    assert_eq!(file.tensor("w").unwrap().to_f32().unwrap(), weight);
    let model = Model::open(&path).unwrap();
    // Another process truncates the file while it is open.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(16).unwrap();
    let err = file.tensor("w").unwrap_err();
    assert!(err.to_string().contains("changed size"), "{err}");
    let packed = dir.path().join("q.safetensors");
    let err = compress(&model, &packed, &CompressOptions::default(), &|_| true, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("changed size"), "{err}");
    assert!(!packed.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left");
    // Opening the truncated file is a clear format error.
    assert!(matches!(ModelFile::open(&path), Err(greenai::Error::Format { .. })));
}
