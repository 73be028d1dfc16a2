//! `greenai inspect`'s reader: any bytes as a safetensors file, then every tensor summarised and every
//! float tensor converted to f32. Anything but an error value (a panic, an abort, a hang) is a bug.
#![no_main]

use greenai::model::{inspect, ModelFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = ModelFile::from_bytes("fuzz.safetensors", data.to_vec()) else { return };
    let summaries = inspect(&file).expect("inspect of a validated file");
    assert_eq!(summaries.len(), file.len());
    for entry in file.tensors().filter(|t| t.is_float()) {
        let values = entry.to_f32().expect("a float tensor converts");
        assert_eq!(values.len(), entry.len());
    }
});
