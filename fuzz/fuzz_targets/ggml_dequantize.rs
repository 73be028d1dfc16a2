//! ggml block decoding with lengths and dimensions from the input: byte 0 picks the block type, bytes
//! 1-4 give rows and columns (u16 each), the rest are the blocks, whatever their length.
#![no_main]

use greenai::kernels::ggml::{dequantize, GgmlType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [kind, r0, r1, c0, c1, blocks @ ..] = data else { return };
    let ty = GgmlType::ALL[usize::from(*kind) % GgmlType::ALL.len()];
    let (rows, cols) =
        (usize::from(u16::from_le_bytes([*r0, *r1])), usize::from(u16::from_le_bytes([*c0, *c1])));
    // The output buffer's length comes from the input too: the kernel must check it, not trust it.
    let len = (rows * cols).min(1 << 20) + usize::from(*kind >> 7);
    let mut out = vec![0f32; len];
    if dequantize(ty, blocks, rows, cols, &mut out).is_ok() {
        assert_eq!(ty.matrix_bytes(rows, cols).ok(), Some(blocks.len()));
    }
});
