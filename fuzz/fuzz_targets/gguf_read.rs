//! `greenai inspect`/`decompress`'s GGUF reader: any bytes as a GGUF file, then every tensor turned to
//! f32 (everything `decompress` does but the write).
#![no_main]

use greenai::model::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes("fuzz.gguf", data.to_vec()) else { return };
    for t in &file.tensors {
        assert_eq!(file.data(t).map(|d| d.len()).ok(), Some(t.size), "`{}`: size and data disagree", t.name);
        if let Ok(values) = file.to_f32(t) {
            assert_eq!(values.len(), t.len(), "`{}`: element count", t.name);
        }
    }
});
