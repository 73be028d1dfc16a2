//! The committed `include/greenai.h` must be exactly what cbindgen generates from `src/ffi` now.

#[test]
fn committed_header_matches_a_fresh_generation() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/greenai.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/greenai.h");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/greenai.h differs from the header generated from src/ffi; \
         run `GREENAI_UPDATE_HEADER=1 cargo build` and commit it"
    );
}
