//! `greenai inspect`'s reader: any bytes as a safetensors file, then every tensor summarised and every
//! float tensor converted to f32. Anything but an error value (a panic, an abort, a hang) is a bug.
#![no_main]

use greenai::model::{inspect, Model, ModelFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = ModelFile::from_bytes("fuzz.safetensors", data.to_vec()) else { return };
    for info in file.tensors().iter().filter(|t| t.is_float()) {
        let values = file.read_f32(info).expect("a float tensor converts");
        assert_eq!(values.len(), info.len());
    }
    let model = Model::from(file);
    let summaries = inspect(&model, &mut |_, _| {}).expect("inspect of a validated file");
    assert_eq!(summaries.len(), model.len());
});
