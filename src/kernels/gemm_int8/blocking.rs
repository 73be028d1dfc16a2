//! Register tile and cache blocking of the int8 GEMM: every size the kernels and drivers share.
//! [`MR`], [`NR`] and [`KU`] are the tile of every kernel of this build and define the packed B
//! layout (`BLayout::Quad16x4`); the driver asks the [`Kernel`](super::Kernel) for them.

/// Rows of C per microkernel tile (A row panel height). Five, not six: the AVX2 tile's 10
/// accumulators, 2 B vectors, the ones vector, an A broadcast and a temporary fill 15 of the 16
/// registers; at six rows one accumulator was spilled to the stack every quad (1024^3 7-bit:
/// 133 -> 140 GOPS in back-to-back runs, against oneDNN's 0.89x -> 1.07x).
pub const MR: usize = 5;
/// Columns of C per microkernel tile (B column panel width): two vectors of eight i32.
pub const NR: usize = 16;
/// Depth step: the kernels consume k four bytes at a time (one `vpmaddubsw`+`vpmaddwd` quad).
pub const KU: usize = 4;
/// Depth of one cache block, in quads of [`KU`]: an A panel (5 x 512 bytes) and a B panel
/// (512 x 16 bytes) stay in L1 together.
pub const KC_QUADS: usize = 128;
/// Largest packed A block (bytes, the widened layout counted where the kernel has one) that is
/// kept whole over all of k: no depth blocking, so B streams through once in its stored order
/// instead of in short strided pieces, and C is written once (for few rows of A, the decode
/// step; on AVX-512, whose A is u8 only, up to k = 1638 at MC rows: 1024^3 packed 3.77 -> 3.59
/// ms, C of 4 MiB no longer written twice).
pub const A_WHOLE_DEPTH_BYTES: usize = 192 * 1024;
/// Rows of A per cache block (a multiple of [`MR`]): the packed A block (120 x 512 bytes, twice
/// that for the widened exact layout) stays in L2 while B panels stream past it.
pub const MC: usize = 120;
/// Up to this many rows of A, the unpacked API streams row-major B through the small-m kernel
/// instead of packing it (see `stream`). Measured at k x n = 4096 x 4096, one thread (bench
/// `gemm_int8_llm`, group `stream_crossover`): streaming 8.5x faster at m = 1, 3x at 8, 1.6x
/// at 32, even with packing from 48 to 96; past that C (m x n i32) outgrows L2 between k blocks.
pub const STREAM_MAX_ROWS: usize = 32;
/// B panels per AVX-512 register tile: 5 x 64 columns in 20 accumulators, so each A broadcast
/// feeds four `vpdpbusd` and twenty are in flight (their latency is 5 cycles at 2 per cycle).
pub const PANELS_VNNI: usize = 4;
/// Up to this many rows of A, the AVX-512 tier's unpacked API streams B (see `stream`).
pub const STREAM_MAX_ROWS_VNNI: usize = 32;
/// Rows of A per pass of the AVX-512 streaming kernel (24 accumulators of 16 columns).
pub const STREAM_ROWS_VNNI: usize = 6;
/// Quads of k per block of the AVX-512 streaming kernel: 64 rows of B read side by side, C
/// reloaded once per block (for several row groups, C is the larger traffic).
pub const STREAM_QUADS_VNNI: usize = 16;
/// Bytes of accumulators (rows of A x columns x 4) per panel of the AVX-512 banded streaming
/// path (at most [`STREAM_ROWS_VNNI`] rows: B swept in bands of 8 or 16 rows across a panel of
/// columns, the panel's accumulators kept in L2 between bands): 131072 columns at m = 1, 21824
/// at m = 6, so the 11008 columns of an LLM MLP are one panel.
pub const STREAM_BAND_SCRATCH_BYTES: usize = 512 << 10;
/// Up to this many rows of A, the AVX-512 streaming path is the banded one (row groups of at
/// most [`STREAM_ROWS_VNNI`], each sweeping B once); past it, one sweep in blocks of
/// [`STREAM_QUADS_VNNI`] quads with C reloaded per block. k = n = 4096, one thread, Zen 4, group
/// `stream_crossover` (load 1.2-1.7): banded m = 8 1.73-2.06 ms (the block sweep: 3.93 in an
/// earlier run), m = 12 2.97-3.09, m = 16 (three groups) 4.03 against the block sweep's 2.99-3.24.
pub const STREAM_BAND_MAX_ROWS: usize = 8;
/// How far ahead along each row of B the banded streaming path prefetches (into L2, `prefetcht2`).
/// k = 4096, m = 1, one thread, standalone sweep (load ~3.6): 8-row bands at n = 4096 (B in L3)
/// 0.53-0.57 ms without prefetch, 0.48 at 512 bytes T0, 0.46-0.48 at 1024 T1, 0.46 at 2048 T2;
/// n = 11008 from DRAM 2.35-2.50 / 2.20 / 2.06 / 1.94-2.09 ms (a read: 1.83 ms).
pub const STREAM_BAND_PREFETCH_BYTES: usize = 2048;
/// [`STREAM_MAX_ROWS_VNNI`] on AMD: on the Zen 4 of 2026-12-07 (k = n = 4096, one thread, group
/// `stream_crossover`, load 1.2-1.7, two runs) the banded stream / packing: 0.42 / 2.29-2.49 ms at
/// m = 1, 0.78-1.11 / 2.13-2.69 at 4, 1.47-1.73 / 2.68-3.09 at 6, 1.73-2.06 / 2.77-3.18 at 8;
/// at 12 2.97-3.09 / 2.63-3.41 and at 16 (block sweep) 2.99-3.24 / 3.09-4.16, too close to call.
pub const STREAM_MAX_ROWS_VNNI_AMD: usize = 8;
/// Rows of A per pass of the streaming kernel over a block of B (12 accumulators of 16 columns).
pub const STREAM_ROWS: usize = 6;
/// Pairs of k per block of the streaming kernel: 64 rows of B are read side by side, C is
/// reloaded once per block.
pub const STREAM_PAIRS: usize = 32;
/// The plain API keeps its packed B buffer per thread between calls up to this size: a fresh
/// allocation of 16 MiB (B of 4096 x 4096) cost 9-13 ms in page faults and zeroing on this
/// project's VM against ~3 ms reused (`PackedI8::repack`).
pub const PLAIN_PACK_KEEP_BYTES: usize = 64 << 20;
/// The plain API packs B in blocks of [`PLAIN_BLOCK_COLS`] columns x this many bytes of rows (at
/// least [`PLAIN_BLOCK_ROWS_UNIT`] rows) and multiplies each while it and its columns of C are in
/// cache. k = 4096, m = 128, one thread, against oneDNN in the same runs: B packed whole 13.1 ms
/// (n = 4096, 0.75x); all columns x 1 MiB of rows 10.3-11.3 (0.88x); 1024 columns x 1 MiB 10.4
/// (0.98x) and at n = 11008 32.3 against 34.9 (1.08x); 512 x 512 KiB, 2048 x 1 MiB, 1024 x 2 MiB
/// and 256 x 256 KiB were slower.
pub const PLAIN_BLOCK_BYTES: usize = 1 << 20;
/// Columns of B per plain-API block (see [`PLAIN_BLOCK_BYTES`]).
pub const PLAIN_BLOCK_COLS: usize = 1024;
/// Rows of B per plain-API block are a multiple of this (whole quads, whole packing blocks).
pub const PLAIN_BLOCK_ROWS_UNIT: usize = 64;
/// Below this many multiply-adds a product stays on the calling thread.
pub const PARALLEL_MIN_MACS: usize = 1 << 21;

const _: () = assert!(MC.is_multiple_of(MR) && NR * KU == 64);
