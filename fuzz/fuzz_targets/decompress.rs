//! `greenai decompress`'s reader: any bytes as a safetensors file, then greenai's metadata parsed and
//! checked and every changed tensor restored (everything `decompress` does but the write).
#![no_main]

use greenai::model::{decompress_tensors, ModelFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = ModelFile::from_bytes("fuzz.safetensors", data.to_vec()) else { return };
    if let Ok((tensors, _metadata)) = decompress_tensors(&file, &mut |_, _| {}) {
        for (name, t) in &tensors {
            let numel: usize = t.shape.iter().product();
            assert_eq!(numel * t.dtype.size(), t.bytes.len(), "`{name}`: shape and bytes disagree");
        }
    }
});
