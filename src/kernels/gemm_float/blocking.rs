//! Cache blocking of the float GEMM, in one place (Goto/BLIS loop order). The register tiles
//! (`mr x nr`) belong to each tier's [`Kernel`](super::Kernel).
//!
//! Packed path: a `KC x nr` panel of B (16 KiB of f16 for the 6 x 16 AVX2 tile) stays in L1
//! while it meets every `mr x KC` panel of an `MC x KC` block of A (240 KiB of f32) in L2.
//! KC = 512 rather than 256 halves the passes over C (measured: +8% at 1024^3 on Zen 3).
//!
//! In-place path (few rows of A): B is read where it lies, a `KC_IN_PLACE x nr` strip at a time
//! (256 lines of 64 bytes, or halves of them for 16-bit weights, so the strip stays in L1 while
//! every row panel of A meets it and the other halves are still in L2 for the next strip).

/// Depth of one pass of the packed path: B panel slices and packed A blocks are `KC` deep.
pub const KC: usize = 512;
/// Rows of A packed per block (a multiple of every kernel's `mr`).
pub const MC: usize = 120;
/// Depth of one pass of the in-place path.
pub const KC_IN_PLACE: usize = 256;
/// Up to this many rows of A, the plain GEMM reads B in place instead of packing it
/// (crossover measured with `benches/gemm_float.rs`, group `gemm_crossover`).
pub const IN_PLACE_MAX_M: usize = 48;
/// Multiply-adds below which a GEMM stays on the calling thread.
pub const PARALLEL_MIN_MACS: usize = 1 << 22;
/// Weights below which a GEMV stays on the calling thread.
pub const PARALLEL_MIN_GEMV_WEIGHTS: usize = 1 << 20;
