//! `CompressedModel`, the reader an engine uses: any bytes as a `config.json` (its length in the first
//! two bytes) and a safetensors file (the rest), then every tensor read as f32, as int8 and as ggml
//! blocks (compressed-tensors modules when the config says so, greenai's convention otherwise).
#![no_main]

use greenai::model::{CompressedModel, ModelFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let split = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (config, weights) = rest.split_at(split);
    let config: Option<serde_json::Value> = serde_json::from_slice(config).ok();
    let Ok(file) = ModelFile::from_bytes("model.safetensors", weights.to_vec()) else { return };
    let Ok(model) = CompressedModel::from_model(file.into(), config.as_ref()) else { return };
    for (i, t) in model.tensors().iter().enumerate() {
        if let Ok(values) = model.read_f32(i) {
            assert_eq!(values.len(), t.params, "`{}`: element count", t.name);
        }
        if let Ok(w) = model.read_int8(i) {
            assert_eq!(w.values.len(), w.out_features * w.in_features, "`{}`", t.name);
            assert_eq!((w.scales.len(), w.zero_points.len()), (w.out_features, w.out_features));
        }
        let _ = model.read_ggml(i);
    }
    assert!(model.read_f32(model.tensors().len()).is_err());
});
