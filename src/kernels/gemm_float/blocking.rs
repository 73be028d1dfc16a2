//! Cache blocking of the float GEMM, in one place (Goto/BLIS loop order).
//!
//! The microkernel keeps an `MR x NR` tile of C in registers (6 x 16 f32: twelve AVX2 or
//! twenty-four NEON accumulators). A `KC x NR` panel of B (16 KiB of f16) stays in L1 while it
//! meets every `MR x KC` panel of an `MC x KC` block of A (240 KiB of f32) that lives in L2.
//! KC = 512 rather than 256 halves the passes over C (measured: +8% at 1024^3 on Zen 3).

/// Rows of C per microkernel call.
pub const MR: usize = 6;
/// Columns of C per microkernel call (and the width of a packed B panel).
pub const NR: usize = 16;
/// Depth of one pass: B panel slices and packed A blocks are `KC` deep.
pub const KC: usize = 512;
/// Rows of A packed per block (a multiple of [`MR`]).
pub const MC: usize = 120;
/// Multiply-adds below which a GEMM stays on the calling thread.
pub const PARALLEL_MIN_MACS: usize = 1 << 22;
/// Weights below which a GEMV stays on the calling thread.
pub const PARALLEL_MIN_GEMV_WEIGHTS: usize = 1 << 20;

const _: () = assert!(MC.is_multiple_of(MR));
