//! `greenai flops --hf-config`'s reader: any bytes as config.json, then the transformer built and
//! counted as the command does (batch 1, 16 tokens).
#![no_main]

use greenai::flops::{hf_config, zoo::transformer, Compression};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = hf_config::parse(text) else { return };
    if let Ok(model) = transformer(&cfg, 1, 16) {
        let _ = model.report(&Compression::default());
    }
});
