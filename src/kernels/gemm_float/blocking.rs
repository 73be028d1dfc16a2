//! Cache blocking of the float GEMM, in one place (Goto/BLIS loop order). The register tiles
//! (`mr x nr`) belong to each tier's [`Kernel`](super::Kernel).
//!
//! Packed path: a `KC x nr` panel of B (16 KiB of f16 for the 6 x 16 AVX2 tile) stays in L1
//! while it meets every `mr x KC` panel of an `MC x KC` block of A (240 KiB of f32) in L2.
//! KC = 512 rather than 256 halves the passes over C (measured: +8% at 1024^3 on Zen 3).
//!
//! In-place path (few rows of A): B is read where it lies, `KU_IN_PLACE` rows at a time across a
//! block of columns whose rows of C stay in L2, so B streams from DRAM as a few sequential rows.

/// Depth of one pass of the packed path: B panel slices and packed A blocks are `KC` deep.
pub const KC: usize = 512;
/// Rows of A packed per block (a multiple of every kernel's `mr`).
pub const MC: usize = 120;
/// Rows of B one sweep of the in-place path reads together (so as many sequential streams).
/// Measured at m = 1, 4096 x 4096 f16, as a share of the GEMV on the same weights: 8 rows 0.72,
/// 16 0.64, 32 0.87, 64 0.76 (a loaded machine; the spread between runs is about 0.1).
pub const KU_IN_PLACE: usize = 32;
/// Bytes of C a column block of the in-place path keeps (in L2) while B's rows sweep past it.
pub const IN_PLACE_C_BYTES: usize = 256 << 10;
/// Up to this many rows of A, the plain GEMM reads B in place instead of packing it. Measured
/// (`benches/gemm_float.rs`, group `gemm_crossover`, f16 4096 x 4096, one thread), in place
/// against packing B then the packed product: m = 8 8.1x, 16 4.6x, 32 2.5x, 48 1.4x, 64 1.6x,
/// 96 1.03x; at the tie the in-place path also spares the copy of B.
pub const IN_PLACE_MAX_M: usize = 96;
/// Multiply-adds below which a GEMM stays on the calling thread.
pub const PARALLEL_MIN_MACS: usize = 1 << 22;
/// Weights below which a GEMV stays on the calling thread.
pub const PARALLEL_MIN_GEMV_WEIGHTS: usize = 1 << 20;
