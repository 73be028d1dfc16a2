//! Exact integer GEMM (`u8 x i8 -> i32`, `i8 x i8 -> i32`), prepacked weights ([`PackedI8`]) and
//! the quantized linear layer ([`QuantLinear`]).
//!
//! Matrices are row-major with leading dimensions in elements. Results equal the textbook i32
//! sum ([`scalar::gemm_reference`]) for every input, including a = 255 and b = -128 everywhere:
//! the AVX2 path uses `vpmaddubsw` only where no i16 pair sum can saturate (B packed with every
//! value in [-64, 63], or an A cache block whose bytes are all <= 127, both checked, never assumed)
//! and otherwise an exact widened `vpmaddwd` sequence. `i8` A is shifted to u8 by +128 and
//! corrected with B's column sums, which is exact in wrapping i32 arithmetic.
//!
//! The plain functions ([`gemm_u8i8_i32`], [`gemm_on`]) take B row-major as the caller has it:
//! for few rows of A (up to [`Kernel::stream_max_rows`], the decode step's m = 1 and small
//! batches) B is streamed through a kernel that widens it in registers, without packing; for
//! more rows B is packed first. [`gemm_packed`] reuses a [`PackedI8`] made once.
//!
//! The pieces: [`Kernel`] (per tier: tile, layouts, properties), [`blocking`] (tile and cache
//! sizes), [`pack`] (B panels, A panels), the microkernels ([`scalar`], `x86`, `aarch64`), the
//! streaming small-m driver (`stream`), the packed driver here (cache blocking, threads), and
//! `sparse24` (2:4 weights for [`QuantLinear::from_float_2_4`] and their AVX-512 kernel).

pub mod blocking;
mod kernel;
mod linear;
pub mod pack;
pub mod scalar;
mod sparse24;
mod stream;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_512;

pub use kernel::{ALayout, BLayout, Kernel};
pub use linear::{ActivationQuant, QuantLinear};
pub use pack::{AElement, PackedI8};

use super::Isa;
use crate::error::{check_len, try_vec};
use crate::{Error, Result};
#[cfg(target_arch = "x86_64")]
use blocking::PANELS_VNNI;
use blocking::{A_WHOLE_DEPTH_BYTES, KC_QUADS, KU, MC, MR, NR};
#[cfg(target_arch = "aarch64")]
use kernel::NeonToken;
use kernel::Tier;
use pack::{block_is_seven_bit, pack_a_narrow};
#[cfg(target_arch = "x86_64")]
use pack::{pack_a_wide, Quad, WideQuad};
use std::ops::Range;

/// What a GEMM does with the existing contents of C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// `C = A B`.
    Overwrite,
    /// `C += A B` (wrapping i32 adds).
    Accumulate,
}

/// Elements a row-major `rows x cols` matrix with leading dimension `ld` spans: `(rows - 1) * ld +
/// cols`, or 0 when empty. Fails when `ld < cols` or the size overflows.
pub fn matrix_len(rows: usize, cols: usize, ld: usize) -> Result<usize> {
    if ld < cols {
        return Err(Error::invalid("leading dimension", ld, format!("smaller than the row length {cols}")));
    }
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols)).ok_or_else(|| Error::Overflow {
        context: "matrix extent",
        detail: format!("{rows} rows x leading dimension {ld} + {cols}"),
    })
}

/// Checks that buffer `name` of `len` elements holds a `rows x cols` matrix with leading dimension `ld`.
pub(crate) fn check_matrix(
    name: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    ld: usize,
) -> Result<()> {
    check_len(name, len, matrix_len(rows, cols, ld)?)
}

/// `C = A B` with A u8 (`m x k`), B i8 (`k x n`), C i32 (`m x n`), exact.
#[allow(clippy::too_many_arguments)]
pub fn gemm_u8i8_i32(
    m: usize,
    n: usize,
    k: usize,
    a: &[u8],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
) -> Result<()> {
    gemm_on(Isa::active(), Update::Overwrite, m, n, k, a, lda, b, ldb, c, ldc)
}

/// `C += A B` with A u8, B i8, C i32, exact (wrapping on i32 overflow).
#[allow(clippy::too_many_arguments)]
pub fn gemm_u8i8_i32_acc(
    m: usize,
    n: usize,
    k: usize,
    a: &[u8],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
) -> Result<()> {
    gemm_on(Isa::active(), Update::Accumulate, m, n, k, a, lda, b, ldb, c, ldc)
}

/// `C = A B` with A i8 (`m x k`), B i8 (`k x n`), C i32 (`m x n`), exact.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8i8_i32(
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
) -> Result<()> {
    gemm_on(Isa::active(), Update::Overwrite, m, n, k, a, lda, b, ldb, c, ldc)
}

/// `C += A B` with A i8, B i8, C i32, exact (wrapping on i32 overflow).
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8i8_i32_acc(
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
) -> Result<()> {
    gemm_on(Isa::active(), Update::Accumulate, m, n, k, a, lda, b, ldb, c, ldc)
}

/// How the unpacked API treats B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainPath {
    /// Stream B for few rows of A (up to [`Kernel::stream_max_rows`]), else pack it: what
    /// [`gemm_u8i8_i32`] and the other plain functions do.
    Auto,
    /// Stream row-major B through the small-m kernel whatever m (kernels that have none pack).
    Stream,
    /// Pack all of B, then run the packed kernels.
    Pack,
}

/// The int8 GEMM on a chosen tier, A u8 or i8: checks every argument (nothing is written on
/// error), then streams or packs B as [`PlainPath::Auto`] decides.
#[allow(clippy::too_many_arguments)]
pub fn gemm_on<T: AElement>(
    isa: Isa,
    update: Update,
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
) -> Result<()> {
    gemm_path_on(isa, PlainPath::Auto, update, m, n, k, a, lda, b, ldb, c, ldc)
}

/// [`gemm_on`] with the path forced (benchmarks and tests compare the two).
#[allow(clippy::too_many_arguments)]
pub fn gemm_path_on<T: AElement>(
    isa: Isa,
    path: PlainPath,
    update: Update,
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
) -> Result<()> {
    let kernel = Kernel::new(isa)?;
    check_matrix("a", a.len(), m, k, lda)?;
    check_matrix("b", b.len(), k, n, ldb)?;
    check_matrix("c", c.len(), m, n, ldc)?;
    if m == 0 || n == 0 || k == 0 {
        finish_empty(m, n, k, c, ldc, update);
        return Ok(());
    }
    let stream = match path {
        PlainPath::Auto => m <= kernel.stream_max_rows(),
        PlainPath::Stream => kernel.stream_max_rows() > 0,
        PlainPath::Pack => false,
    };
    if stream {
        return stream::gemm_stream(kernel, update, m, n, k, a, lda, b, ldb, c, ldc);
    }
    // The last call's buffer, so that repeated calls reuse its pages (kept up to PLAIN_PACK_KEEP_BYTES).
    thread_local! {
        static PLAIN_PACK: std::cell::Cell<Option<PackedI8>> = const { std::cell::Cell::new(None) };
    }
    // B is packed and multiplied a block (columns x rows) at a time, so the packed block and the
    // block's columns of C stay in cache; A's columns and the i8 correction follow the block.
    let block_cols = blocking::PLAIN_BLOCK_COLS.min(n);
    let block_rows =
        (blocking::PLAIN_BLOCK_BYTES / block_cols).max(1).next_multiple_of(blocking::PLAIN_BLOCK_ROWS_UNIT);
    let mut packed = match PLAIN_PACK.take() {
        Some(packed) => packed,
        None => PackedI8::pack(0, 0, &[], 0)?,
    };
    let mut result = Ok(());
    'blocks: for j0 in (0..n).step_by(block_cols) {
        let cols = block_cols.min(n - j0);
        for r0 in (0..k).step_by(block_rows) {
            let rows = block_rows.min(k - r0);
            let update = if r0 == 0 { update } else { Update::Accumulate };
            result = packed
                .repack(rows, cols, &b[r0 * ldb + j0..], ldb)
                .and_then(|()| run(kernel, update, m, &a[r0..], lda, &packed, &mut c[j0..], ldc, true));
            if result.is_err() {
                break 'blocks;
            }
        }
    }
    if packed.held_bytes() <= blocking::PLAIN_PACK_KEEP_BYTES {
        PLAIN_PACK.set(Some(packed));
    }
    result
}

/// `C (+)= A B` with B prepacked: the inference fast path. A is u8 or i8 (`m x packed.k()`).
pub fn gemm_packed<T: AElement>(
    m: usize,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    c: &mut [i32],
    ldc: usize,
    update: Update,
) -> Result<()> {
    gemm_packed_on(Isa::active(), m, a, lda, packed, c, ldc, update)
}

/// [`gemm_packed`] on a chosen tier; fails when `packed` is in a layout its kernel does not read.
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed_on<T: AElement>(
    isa: Isa,
    m: usize,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    c: &mut [i32],
    ldc: usize,
    update: Update,
) -> Result<()> {
    let kernel = Kernel::new(isa)?;
    kernel.check_reads(packed)?;
    gemm_packed_with(kernel, m, a, lda, packed, c, ldc, update, true)
}

/// `C (+)= A B` with B prepacked in a layout `kernel` reads (checked by the caller), across rayon's
/// threads when `parallel`, else on the calling thread alone (for callers that split the rows
/// across threads themselves, as [`QuantLinear`] does).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed_with<T: AElement>(
    kernel: Kernel,
    m: usize,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    c: &mut [i32],
    ldc: usize,
    update: Update,
    parallel: bool,
) -> Result<()> {
    let (n, k) = (packed.n(), packed.k());
    check_matrix("a", a.len(), m, k, lda)?;
    check_matrix("c", c.len(), m, n, ldc)?;
    if m == 0 || n == 0 || k == 0 {
        finish_empty(m, n, k, c, ldc, update);
        return Ok(());
    }
    run(kernel, update, m, a, lda, packed, c, ldc, parallel)
}

/// One row of A's quantization as [`QuantLinear`] has it: `x = (q - zero) * scale`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct RowQuant {
    pub(crate) scale: f32,
    pub(crate) zero: i32,
}

/// [`QuantLinear`]'s dequantization of the product into f32 `y` (`m x n`, leading dimension
/// `ldy`): `y[i][j] = (acc - rows[i].zero col_sums[j]) as f32 * (rows[i].scale w_scale[j]) +
/// bias[j]` in wrapping i32, which is exact while `k <= I32_EXACT_DEPTH` (the caller's check).
pub(crate) struct Dequant<'a> {
    pub(crate) y: &'a mut [f32],
    pub(crate) ldy: usize,
    pub(crate) rows: &'a [RowQuant],
    pub(crate) w_scale: &'a [f32],
    pub(crate) bias: &'a [f32],
}

/// Whether [`gemm_packed_dequant`] runs `m` rows against `packed` on `kernel`: the AVX-512
/// kernel, which dequantizes its tiles in registers, over the whole depth in one block.
pub(crate) fn can_dequant(kernel: Kernel, m: usize, packed: &PackedI8) -> bool {
    #[cfg(target_arch = "x86_64")]
    let vnni = matches!(kernel.tier, Tier::Avx512(_));
    #[cfg(not(target_arch = "x86_64"))]
    let vnni = false;
    let quads = packed.quads();
    vnni && m > 0 && packed.n() > 0 && quads > 0 && depth_block(kernel, m, quads).1 >= quads
}

/// `y = dequant(A B)` with B prepacked, on the calling thread, for a product
/// [`can_dequant`] accepted; no i32 C is written.
pub(crate) fn gemm_packed_dequant<T: AElement>(
    kernel: Kernel,
    m: usize,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    dequant: Dequant<'_>,
) -> Result<()> {
    gemm_packed_dequant_columns(kernel, m, a, lda, packed, dequant, 1)
}

/// [`gemm_packed_dequant`] with B's column panels split into `parts` ranges of whole register
/// tiles, each on its own rayon thread (feature `parallel`): for few rows of A, every thread then
/// reads its share of B once, where a split by rows has every thread read all of B. Each element
/// is computed as on one thread (the same depth block, the same epilogue), so y is the same.
pub(crate) fn gemm_packed_dequant_columns<T: AElement>(
    kernel: Kernel,
    m: usize,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    dequant: Dequant<'_>,
    parts: usize,
) -> Result<()> {
    let (n, k) = (packed.n(), packed.k());
    check_matrix("a", a.len(), m, k, lda)?;
    check_matrix("y", dequant.y.len(), m, n, dequant.ldy)?;
    check_len("rows", dequant.rows.len(), m)?;
    check_len("w_scale", dequant.w_scale.len(), n)?;
    check_len("bias", dequant.bias.len(), n)?;
    if !can_dequant(kernel, m, packed) {
        return Err(Error::invalid("kernel", kernel.name(), "does not dequantize this product"));
    }
    let bias = match T::SHIFT != 0 {
        true => Some(shift_bias(T::SHIFT, packed)?),
        false => None,
    };
    let y = YPtr(dequant.y.as_mut_ptr());
    let tile = kernel.panels_per_tile();
    let tiles = packed.panels().div_ceil(tile);
    let parts = parts.min(tiles).max(1);
    let ranges: Vec<Range<usize>> = (0..parts)
        .map(|t| {
            (tiles * t / parts * tile).min(packed.panels())
                ..(tiles * (t + 1) / parts * tile).min(packed.panels())
        })
        .collect();
    let part = |cols: Range<usize>| -> Result<()> {
        let view = DequantView {
            y: y.get(),
            ldy: dequant.ldy,
            rows: dequant.rows,
            col_sums: packed.col_sums(),
            w_scale: dequant.w_scale,
            bias: dequant.bias,
        };
        let c = CPtr(std::ptr::null_mut());
        // SAFETY: with `dequant`, drive writes only the columns `cols` covers of `y`, whose extent
        // was checked (m x n, ldy); the ranges are disjoint, so no element is written twice; the
        // per-row and per-column slices were checked against m and n; the kernel reads the layout.
        unsafe { drive(kernel, a, lda, packed, 0..m, cols, c, 0, false, bias.as_deref(), Some(&view)) }
    };
    #[cfg(feature = "parallel")]
    if parts > 1 {
        use rayon::prelude::*;
        return ranges.into_par_iter().try_for_each(part);
    }
    ranges.into_iter().try_for_each(part)
}

/// y as shared by the threads of [`gemm_packed_dequant_columns`], each writing its own columns.
#[derive(Clone, Copy)]
struct YPtr(*mut f32);
// SAFETY: the threads write disjoint columns of y, which outlives the parallel scope.
unsafe impl Send for YPtr {}
// SAFETY: as above.
unsafe impl Sync for YPtr {}

impl YPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw pointer).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// [`Dequant`] as the tiles read it (y as a pointer, B's column sums beside the weights'). Only
/// the AVX-512 kernel fuses dequantization; elsewhere [`can_dequant`] is false and this is unused.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct DequantView<'a> {
    y: *mut f32,
    ldy: usize,
    rows: &'a [RowQuant],
    col_sums: &'a [i32],
    w_scale: &'a [f32],
    bias: &'a [f32],
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl DequantView<'_> {
    /// Dequantizes the `tile` part of a local i32 tile whose first element is (`row`, `col`):
    /// the scalar definition the AVX-512 kernel matches bit for bit.
    ///
    /// # Safety
    /// The tile must lie inside y (checked extent), `row + tile.rows <= rows.len()`, `col +
    /// tile.cols <= n`.
    unsafe fn store_local(&self, local: &[[i32; NR]; MR], row: usize, col: usize, tile: Tile) {
        for (r, acc) in local.iter().enumerate().take(tile.rows) {
            let q = self.rows[row + r];
            for (j, &a) in acc.iter().enumerate().take(tile.cols) {
                let c = col + j;
                let centred = a.wrapping_sub(q.zero.wrapping_mul(self.col_sums[c]));
                // SAFETY: (row + r, c) is inside y by the caller's contract.
                unsafe {
                    *self.y.add((row + r) * self.ldy + c) =
                        centred as f32 * (q.scale * self.w_scale[c]) + self.bias[c];
                }
            }
        }
    }

    /// The AVX-512 kernel's view of the tile whose first element is (`row`, `col`), 16 whole
    /// columns at least.
    #[cfg(target_arch = "x86_64")]
    fn fuse(&self, row: usize, col: usize) -> x86_512::Fuse {
        x86_512::Fuse {
            y: self.y.wrapping_add(row * self.ldy + col),
            ldy: self.ldy,
            rows: self.rows[row..].as_ptr(),
            col_sums: self.col_sums[col..].as_ptr(),
            w_scale: self.w_scale[col..].as_ptr(),
            bias: self.bias[col..].as_ptr(),
        }
    }
}

/// Rows of A per cache block and quads of k per depth block for `rows` rows of `quads` quads:
/// row blocks of at most MC rows, balanced (m = 128 is one block of 128, not 120 and 8), kept over
/// the whole depth while the packed block fits [`A_WHOLE_DEPTH_BYTES`].
fn depth_block(kernel: Kernel, rows: usize, quads: usize) -> (usize, usize) {
    let block_rows = rows.div_ceil(rows.div_ceil(MC)).next_multiple_of(MR);
    let a_bytes = if kernel.a_layouts().contains(&ALayout::Wide) { std::mem::size_of::<i16>() } else { 1 };
    let whole_depth = block_rows * quads * KU * a_bytes <= A_WHOLE_DEPTH_BYTES;
    (block_rows, if whole_depth { quads.max(1) } else { KC_QUADS })
}

/// An empty product: only `k == 0` with `Overwrite` writes (zeros).
fn finish_empty(m: usize, n: usize, k: usize, c: &mut [i32], ldc: usize, update: Update) {
    if k == 0 && update == Update::Overwrite && n > 0 {
        for i in 0..m {
            c[i * ldc..i * ldc + n].fill(0);
        }
    }
}

/// C as shared by the workers, each writing its own disjoint tiles.
#[derive(Clone, Copy)]
struct CPtr(*mut i32);
// SAFETY: workers write disjoint (rows x panels) regions of C, which outlives the parallel scope.
unsafe impl Send for CPtr {}
// SAFETY: as above.
unsafe impl Sync for CPtr {}

/// Arguments checked, dimensions nonzero, layout read by `kernel`: splits the work (across
/// threads when `parallel` and the product is large) and applies the i8 correction.
#[allow(clippy::too_many_arguments)]
fn run<T: AElement>(
    kernel: Kernel,
    update: Update,
    m: usize,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    c: &mut [i32],
    ldc: usize,
    parallel: bool,
) -> Result<()> {
    let n = packed.n();
    let cp = CPtr(c.as_mut_ptr());
    let accumulate = update == Update::Accumulate;
    // SAFETY (for each `drive` below): dimensions were checked against the buffers, so every
    // (row < m, column < n) element of C is in `c`; the regions given to workers are disjoint.
    // The i8 correction `-128 col_sums[j]`: folded into the first depth block's accumulators
    // where the kernel can start from a per-column bias, else a pass over C at the end.
    let bias = match T::SHIFT != 0 && kernel.starts_from_bias() {
        true => Some(shift_bias(T::SHIFT, packed)?),
        false => None,
    };
    let bias = bias.as_deref();
    let whole = || unsafe {
        drive(kernel, a, lda, packed, 0..m, 0..packed.panels(), cp, ldc, accumulate, bias, None)
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        // Small products never touch rayon (not even to ask its thread count, which starts the pool).
        let macs = m.saturating_mul(n).saturating_mul(packed.k());
        let threads =
            if parallel && macs >= blocking::PARALLEL_MIN_MACS { rayon::current_num_threads() } else { 1 };
        if threads > 1 {
            let panels = packed.panels();
            let split = |len: usize, unit: usize| -> Vec<Range<usize>> {
                let units = len.div_ceil(unit);
                let parts = threads.min(units);
                (0..parts)
                    .map(|t| (units * t / parts * unit).min(len)..(units * (t + 1) / parts * unit).min(len))
                    .collect()
            };
            if panels >= threads {
                // SAFETY: the column ranges are disjoint, so each thread writes its own columns of C,
                // whose bounds were checked above.
                split(panels, 1).into_par_iter().try_for_each(|cols| unsafe {
                    drive(kernel, a, lda, packed, 0..m, cols, cp, ldc, accumulate, bias, None)
                })?;
            } else {
                // SAFETY: the row ranges are disjoint, so each thread writes its own rows of C, whose
                // bounds were checked above.
                split(m, kernel.mr()).into_par_iter().try_for_each(|rows| unsafe {
                    drive(kernel, a, lda, packed, rows, 0..panels, cp, ldc, accumulate, bias, None)
                })?;
            }
        } else {
            whole()?;
        }
    }
    #[cfg(not(feature = "parallel"))]
    {
        let _ = parallel;
        whole()?;
    }
    if T::SHIFT != 0 && bias.is_none() {
        for i in 0..m {
            for (out, &sum) in c[i * ldc..i * ldc + n].iter_mut().zip(packed.col_sums()) {
                *out = out.wrapping_sub(T::SHIFT.wrapping_mul(sum));
            }
        }
    }
    Ok(())
}

/// `-shift col_sums[j]` for every column of `packed`'s panels (zeros past `n`).
fn shift_bias(shift: i32, packed: &PackedI8) -> Result<Vec<i32>> {
    let mut bias = try_vec(packed.panels() * NR, 0i32)?;
    for (b, &sum) in bias.iter_mut().zip(packed.col_sums()) {
        *b = shift.wrapping_mul(sum).wrapping_neg();
    }
    Ok(bias)
}

/// How one cache block of A is packed and multiplied: the kernel decides, from its properties
/// and the data.
#[derive(Clone, Copy)]
enum Mode {
    /// Narrow A panels (u8) and B as packed: every kernel's exact path, AVX2's only when no
    /// pair sum can saturate.
    Narrow,
    /// Wide A panels (i16), B widened in registers (AVX2, full-range operands, few row tiles).
    #[cfg(target_arch = "x86_64")]
    Wide(x86::Avx2),
    /// Wide A panels, B sign-extended once per panel and cache block (AVX2, several row tiles).
    #[cfg(target_arch = "x86_64")]
    WideB(x86::Avx2),
}

/// The mode of a block of `block_rows` rows and `qn` quads, `block_seven_bit` asked only when
/// it matters.
fn block_mode(
    kernel: Kernel,
    packed_seven_bit: bool,
    block_seven_bit: impl FnOnce() -> bool,
    block_rows: usize,
    qn: usize,
) -> Mode {
    match kernel.tier {
        Tier::Scalar => Mode::Narrow,
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2(avx2) => {
            if !kernel.narrow_needs_seven_bit() || packed_seven_bit || block_seven_bit() {
                Mode::Narrow
            } else if block_rows > MR && qn <= KC_QUADS {
                // With several row tiles, B is sign-extended once per panel rather than once per
                // tile, into a buffer that stays in L1 (a whole-depth panel of few rows would not).
                Mode::WideB(avx2)
            } else {
                Mode::Wide(avx2)
            }
        }
        // The VNNI and NEON kernels are exact for every input: the data does not choose their path.
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512(_) => Mode::Narrow,
        #[cfg(target_arch = "aarch64")]
        Tier::Neon(_) => {
            let _ = (packed_seven_bit, block_seven_bit, block_rows, qn);
            Mode::Narrow
        }
    }
}

/// Cache-blocked product of rows `rows` of A with column panels `panels` of B into C.
///
/// # Safety
/// `c` must point to a matrix with leading dimension `ldc` holding every (row in `rows`, column
/// of `panels` below `packed.n()`), not accessed by anyone else during the call; `a` must hold
/// the rows (`lda >= packed.k()`); `kernel` must read `packed`'s layout. With `dequant` (only
/// where [`can_dequant`] holds), C is not touched: the tiles go to its `y`, which must hold them.
#[allow(clippy::too_many_arguments)]
unsafe fn drive<T: AElement>(
    kernel: Kernel,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    rows: Range<usize>,
    panels: Range<usize>,
    c: CPtr,
    ldc: usize,
    accumulate: bool,
    bias: Option<&[i32]>,
    dequant: Option<&DequantView<'_>>,
) -> Result<()> {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = dequant; // only the AVX-512 kernel fuses dequantization (see `can_dequant`)
    let (n, k, quads) = (packed.n(), packed.k(), packed.quads());
    let (block_rows, kc) = depth_block(kernel, rows.len(), quads);
    let block_len = block_rows * kc.min(quads) * KU;
    let mut narrow: Vec<u8> = Vec::new();
    // The AVX-512 kernel reads u8 A where it lies (whole quads only: k a multiple of four), so
    // such A is not packed.
    #[cfg(target_arch = "x86_64")]
    let vnni = match kernel.tier {
        Tier::Avx512(_) => Some(T::kernel_bytes(a).filter(|_| k.is_multiple_of(KU))),
        _ => None,
    };
    #[cfg(target_arch = "x86_64")]
    let (mut wide, mut wide_b): (Vec<i16>, Vec<WideQuad>) = (Vec::new(), Vec::new());
    for q0 in (0..quads).step_by(kc) {
        let qn = kc.min(quads - q0);
        let ks = q0 * KU..k.min((q0 + qn) * KU);
        let add = accumulate || q0 > 0;
        for i0 in rows.clone().step_by(block_rows) {
            let block = i0..rows.end.min(i0 + block_rows);
            let seven_bit = || block_is_seven_bit(a, lda, block.clone(), ks.clone());
            let tiles = || block.clone().step_by(MR).enumerate();
            let panel_len = qn * MR * KU;
            match block_mode(kernel, packed.is_seven_bit(), seven_bit, block.len(), qn) {
                Mode::Narrow => {
                    #[cfg(target_arch = "x86_64")]
                    if let Some(direct) = vnni {
                        let a_rows = match direct {
                            Some(bytes) => ARows { ptr: bytes.as_ptr(), ld: lda, step: KU },
                            None => {
                                if narrow.is_empty() {
                                    narrow = try_vec(block_len, 0u8)?;
                                }
                                pack_a_narrow(a, lda, block.clone(), ks.clone(), &mut narrow);
                                ARows { ptr: narrow.as_ptr(), ld: KU, step: MR * KU }
                            }
                        };
                        for p in panels.clone().step_by(PANELS_VNNI) {
                            let tile_panels = PANELS_VNNI.min(panels.end - p);
                            let b = packed.panels_from(p, tile_panels, q0, qn);
                            let cols = (tile_panels * NR).min(n - p * NR);
                            let bias = bias.filter(|_| q0 == 0).map(|bias| &bias[p * NR..]);
                            // The whole row tiles in one call, then the last partial one.
                            let full = block.len() / MR;
                            for (r0, count) in [(block.start, full), (block.start + full * MR, 1)] {
                                let rows = MR.min(block.end - r0);
                                if count == 0 || rows == 0 {
                                    continue;
                                }
                                let tile = Tile { rows, cols, add };
                                let (a, a_tile) = match direct {
                                    // Row r0, quad q0 of A as it lies.
                                    Some(_) => (a_rows.at(r0 * lda + q0 * KU), MR * lda),
                                    None => (a_rows.at((r0 - block.start) / MR * panel_len), panel_len),
                                };
                                let out = c.0.wrapping_add(r0 * ldc + p * NR);
                                let dq = dequant.map(|view| (view, r0, p * NR));
                                // SAFETY: the `count` tiles from (r0, p * NR) are inside the
                                // caller's region of C (or of y with `dequant`); A holds their rows
                                // and quads, `a_tile` bytes apart.
                                unsafe { vnni_tile(a, (count, a_tile), b, bias, out, ldc, tile, dq) };
                            }
                        }
                        continue;
                    }
                    if narrow.is_empty() {
                        narrow = try_vec(block_len, 0u8)?;
                    }
                    pack_a_narrow(a, lda, block.clone(), ks.clone(), &mut narrow);
                    for p in panels.clone().step_by(kernel.panels_per_tile()) {
                        let tile_panels = kernel.panels_per_tile().min(panels.end - p);
                        let b = packed.panels_from(p, tile_panels, q0, qn);
                        let cols = (tile_panels * NR).min(n - p * NR);
                        for (pi, r0) in tiles() {
                            let tile = Tile { rows: MR.min(block.end - r0), cols, add };
                            let a_panel = &narrow[pi * panel_len..(pi + 1) * panel_len];
                            // SAFETY: (r0.., p * NR..) is inside the caller's region of C.
                            let bias = bias.filter(|_| q0 == 0).map(|bias| &bias[p * NR..]);
                            unsafe {
                                narrow_tile(kernel, a_panel, b, bias, c.0.add(r0 * ldc + p * NR), ldc, tile)
                            };
                        }
                    }
                }
                #[cfg(target_arch = "x86_64")]
                mode @ (Mode::Wide(avx2) | Mode::WideB(avx2)) => {
                    if wide.is_empty() {
                        wide = try_vec(block_len, 0i16)?;
                    }
                    pack_a_wide(a, lda, block.clone(), ks.clone(), &mut wide);
                    let widen_b = matches!(mode, Mode::WideB(_));
                    if widen_b && wide_b.is_empty() {
                        wide_b = try_vec(kc.min(quads), WideQuad([0; NR * KU]))?;
                    }
                    for p in panels.clone() {
                        let bytes = &packed.panel_from(p, q0)[..qn];
                        let b = if widen_b {
                            // SAFETY: the token proves AVX2.
                            unsafe { x86::widen(bytes, &mut wide_b[..qn]) };
                            WideB::Widened(&wide_b[..qn])
                        } else {
                            WideB::Bytes(bytes)
                        };
                        let cols = NR.min(n - p * NR);
                        for (pi, r0) in tiles() {
                            let tile = Tile { rows: MR.min(block.end - r0), cols, add };
                            let a_panel = &wide[pi * panel_len..(pi + 1) * panel_len];
                            // SAFETY: (r0.., p * NR..) is inside the caller's region of C.
                            unsafe { wide_tile(avx2, a_panel, b, c.0.add(r0 * ldc + p * NR), ldc, tile) };
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The B operand of AVX2's wide kernels: as packed, or sign-extended for [`x86::kernel_wide_b`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum WideB<'a> {
    Bytes(&'a [Quad]),
    Widened(&'a [WideQuad]),
}

/// The part of an `MR x NR` tile that lies inside C, and whether to add to it.
#[derive(Clone, Copy)]
struct Tile {
    rows: usize,
    cols: usize,
    add: bool,
}

/// Stores (or adds) the `tile` part of a full local tile into C.
///
/// # Safety
/// `c` must be valid for reads and writes of `tile.rows` rows of `tile.cols` i32, `ldc` apart.
unsafe fn store_local(local: &[[i32; NR]; MR], c: *mut i32, ldc: usize, tile: Tile) {
    for (r, row) in local.iter().enumerate().take(tile.rows) {
        for (j, &v) in row.iter().enumerate().take(tile.cols) {
            // SAFETY: r < tile.rows and j < tile.cols are inside C by the caller's contract.
            unsafe {
                let p = c.add(r * ldc + j);
                *p = if tile.add { (*p).wrapping_add(v) } else { v };
            }
        }
    }
}

/// Runs `kernel(out, out_ld, add)` straight on C when `direct`, else on a local `MR x NR` tile
/// whose `tile` part then goes into C.
///
/// # Safety
/// `c` must be valid for reads and writes of `tile.rows` rows of `tile.cols` i32, `ldc` apart,
/// and of `tile.rows` rows of NR when `direct`; `kernel` must write only the rows of NR it is given.
unsafe fn on_tile(
    c: *mut i32,
    ldc: usize,
    tile: Tile,
    direct: bool,
    kernel: impl FnOnce(*mut i32, usize, bool),
) {
    if direct {
        kernel(c, ldc, tile.add);
        return;
    }
    let mut local = [[0i32; NR]; MR];
    kernel(local.as_mut_ptr().cast(), NR, false);
    // SAFETY: the caller's contract.
    unsafe { store_local(&local, c, ldc, tile) }
}

/// Calls the AVX2 kernel `x86::$kernel::<R>` with `R = $rows` (1 to `MR`).
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($kernel:ident, $rows:expr, $quads:expr, $a:expr, $b:expr, $out:expr, $ld:expr, $add:expr) => {
        match $rows {
            1 => x86::$kernel::<1>($quads, $a, $b, $out, $ld, $add),
            2 => x86::$kernel::<2>($quads, $a, $b, $out, $ld, $add),
            3 => x86::$kernel::<3>($quads, $a, $b, $out, $ld, $add),
            4 => x86::$kernel::<4>($quads, $a, $b, $out, $ld, $add),
            _ => x86::$kernel::<MR>($quads, $a, $b, $out, $ld, $add),
        }
    };
}
#[cfg(target_arch = "x86_64")]
const _: () = assert!(MR == 5, "by_rows dispatches 1 to 5 rows");
#[cfg(target_arch = "x86_64")]
const _: () = assert!(PANELS_VNNI == 4, "narrow_tile runs full AVX-512 tiles as kernel_vnni::<_, 4>");

/// Calls `x86_512::kernel_vnni::<R, P>(args)` with `R = $rows` (1 to `MR`) and `P = $panels`.
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows_vnni {
    ($panels:literal, $rows:expr, ($($arg:expr),* $(,)?)) => {
        match $rows {
            1 => x86_512::kernel_vnni::<1, $panels>($($arg),*),
            2 => x86_512::kernel_vnni::<2, $panels>($($arg),*),
            3 => x86_512::kernel_vnni::<3, $panels>($($arg),*),
            4 => x86_512::kernel_vnni::<4, $panels>($($arg),*),
            _ => x86_512::kernel_vnni::<MR, $panels>($($arg),*),
        }
    };
}

/// Where the AVX-512 kernel finds A: row `r`, quad `q` at `ptr + q step + r ld` bytes.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct ARows {
    ptr: *const u8,
    ld: usize,
    step: usize,
}

#[cfg(target_arch = "x86_64")]
impl ARows {
    /// The same rows from `offset` bytes on.
    fn at(self, offset: usize) -> ARows {
        ARows { ptr: self.ptr.wrapping_add(offset), ..self }
    }
}

/// `count` AVX-512 tiles of up to [`PANELS_VNNI`] panels one below the other (`tile.rows` rows
/// each, A's next tile `a_tile` bytes on): full tiles of four panels run straight on C (or
/// dequantized into y) in one kernel call; otherwise, tile by tile, two panels at once, then one
/// (a narrow last panel through the local tile).
///
/// # Safety
/// AVX-512 VNNI must be available; `a` must hold `panels.quads` quads of the tiles' rows; `c`
/// must be valid for reads and writes of `count tile.rows` rows of `tile.cols` i32, `ldc` apart
/// (not read with `dequant`, whose view must hold the tiles from (row, col)); `bias` as for
/// [`narrow_tile`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn vnni_tile(
    a: ARows,
    (count, a_tile): (usize, usize),
    panels: pack::Panels<'_>,
    bias: Option<&[i32]>,
    c: *mut i32,
    ldc: usize,
    tile: Tile,
    dequant: Option<(&DequantView<'_>, usize, usize)>,
) {
    if panels.count == PANELS_VNNI && tile.cols == PANELS_VNNI * NR {
        let (quads, stride, b) = (panels.quads, panels.stride, panels.first().as_ptr());
        let bias = bias.map_or(std::ptr::null(), |bias| bias.as_ptr());
        let fuse = dequant.map(|(view, row, col)| view.fuse(row, col));
        let (ptr, ld, step, add) = (a.ptr, a.ld, a.step, tile.add);
        // SAFETY: the caller's contract: the tiles inside C (or y), panel p's quads at `b + p
        // stride`.
        unsafe {
            by_rows_vnni!(
                4,
                tile.rows,
                (count, a_tile, quads, ptr, ld, step, b, stride, bias, c, ldc, add, fuse.as_ref())
            )
        };
        return;
    }
    for t in 0..count {
        let (a, c) = (a.at(t * a_tile), c.wrapping_add(t * tile.rows * ldc));
        let dequant = dequant.map(|(view, row, col)| (view, row + t * tile.rows, col));
        // SAFETY: the caller's contract for tile t.
        unsafe { vnni_panels(a, panels, bias, c, ldc, tile, dequant) };
    }
}

/// One tile of [`vnni_tile`] that is not four whole panels: two panels at once, then one (a
/// narrow last panel through the local tile).
///
/// # Safety
/// [`vnni_tile`]'s contract for one tile.
#[cfg(target_arch = "x86_64")]
unsafe fn vnni_panels(
    a: ARows,
    panels: pack::Panels<'_>,
    bias: Option<&[i32]>,
    c: *mut i32,
    ldc: usize,
    tile: Tile,
    dequant: Option<(&DequantView<'_>, usize, usize)>,
) {
    let (quads, stride, b) = (panels.quads, panels.stride, panels.first().as_ptr());
    let bias_at = |p: usize| bias.map_or(std::ptr::null(), |bias| bias[p * NR..].as_ptr());
    let fuse_at = |p: usize| dequant.map(|(view, row, col)| view.fuse(row, col + p * NR));
    // SAFETY (every kernel call): the caller's contract; each call covers whole panels of the
    // tile inside C (or y), panel p's quads at `b + p stride`.
    unsafe {
        let mut p = 0;
        while p < panels.count {
            let (bp, out, bias) = (b.add(p * stride), c.wrapping_add(p * NR), bias_at(p));
            if p + 2 <= panels.count && tile.cols >= (p + 2) * NR {
                let fuse = fuse_at(p);
                by_rows_vnni!(
                    2,
                    tile.rows,
                    (1, 0, quads, a.ptr, a.ld, a.step, bp, stride, bias, out, ldc, tile.add, fuse.as_ref())
                );
                p += 2;
                continue;
            }
            let part = Tile { cols: NR.min(tile.cols - p * NR), ..tile };
            match dequant {
                Some(_) if part.cols == NR => {
                    let fuse = fuse_at(p);
                    by_rows_vnni!(
                        1,
                        part.rows,
                        (1, 0, quads, a.ptr, a.ld, a.step, bp, 0, bias, out, ldc, false, fuse.as_ref())
                    );
                }
                Some((view, row, col)) => {
                    let mut local = [[0i32; NR]; MR];
                    let out = local.as_mut_ptr().cast();
                    by_rows_vnni!(
                        1,
                        part.rows,
                        (1, 0, quads, a.ptr, a.ld, a.step, bp, 0, bias, out, NR, false, None)
                    );
                    view.store_local(&local, row, col + p * NR, part);
                }
                None => on_tile(out, ldc, part, part.cols == NR, |out, ld, add| {
                    by_rows_vnni!(
                        1,
                        part.rows,
                        (1, 0, quads, a.ptr, a.ld, a.step, bp, 0, bias, out, ld, add, None)
                    )
                }),
            }
            p += 1;
        }
    }
}

/// One tile of a narrow A panel and up to [`Kernel::panels_per_tile`] packed B panels, on the
/// kernel's narrow path.
///
/// # Safety
/// `c` must be valid for reads and writes of `tile.rows` rows of `tile.cols` i32, `ldc` apart;
/// `a` holds `b.quads` quads of an MR-row narrow panel; the pair sums cannot saturate when
/// `kernel.narrow_needs_seven_bit()` (the driver checked); `bias`, given only to a kernel that
/// [starts from one](Kernel::starts_from_bias), holds the tile's columns' panels.
unsafe fn narrow_tile(
    kernel: Kernel,
    a: &[u8],
    panels: pack::Panels<'_>,
    bias: Option<&[i32]>,
    c: *mut i32,
    ldc: usize,
    tile: Tile,
) {
    // Only the AVX-512 kernel starts from a bias (`Kernel::starts_from_bias`).
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bias;
    let b = panels.first();
    match kernel.tier {
        Tier::Scalar => {
            let mut local = [[0i32; NR]; MR];
            scalar::kernel(b.len(), a, b, &mut local);
            // SAFETY: the caller's contract.
            unsafe { store_local(&local, c, ldc, tile) }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX2; AVX2 kernels come in every row count, so only a narrow
        // last panel goes through the local tile; the panels hold b.len() quads.
        Tier::Avx2(_) => unsafe {
            on_tile(c, ldc, tile, tile.cols == NR, |out, ld, add| {
                by_rows!(kernel_narrow, tile.rows, b.len(), a.as_ptr(), b.as_ptr(), out, ld, add)
            })
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512 VNNI; the narrow panel holds the tile's quads.
        Tier::Avx512(_) => unsafe {
            let a = ARows { ptr: a.as_ptr(), ld: KU, step: MR * KU };
            vnni_tile(a, (1, 0), panels, bias, c, ldc, tile, None)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the token proves NEON and the dot instructions it names (detected by
        // `Kernel::new`); the kernels write full tiles, so partial ones go through the local tile;
        // the panels hold b.len() quads.
        Tier::Neon(dots) => unsafe {
            on_tile(c, ldc, tile, tile.cols == NR && tile.rows == MR, |out, ld, add| match dots {
                NeonToken::Smull => aarch64::kernel(b.len(), a.as_ptr(), b.as_ptr(), out, ld, add),
                NeonToken::Sdot => aarch64::kernel_dotprod(b.len(), a.as_ptr(), b.as_ptr(), out, ld, add),
                NeonToken::Usmmla => aarch64::kernel_i8mm(b.len(), a.as_ptr(), b.as_ptr(), out, ld, add),
            })
        },
    }
}

/// One tile of a wide A panel on AVX2's exact kernels.
///
/// # Safety
/// As [`narrow_tile`], for a wide A panel.
#[cfg(target_arch = "x86_64")]
unsafe fn wide_tile(avx2: x86::Avx2, a: &[i16], b: WideB<'_>, c: *mut i32, ldc: usize, tile: Tile) {
    let _ = avx2;
    // SAFETY: the token proves AVX2; `out` holds tile.rows rows of NR (C or the local tile); the
    // panels hold the quads given; row 4 of the A panel starts 4 * KU i16 into it.
    unsafe {
        on_tile(c, ldc, tile, tile.cols == NR, |out, ld, add| match b {
            WideB::Bytes(b) => {
                by_rows!(kernel_wide, tile.rows, b.len(), a.as_ptr(), b.as_ptr(), out, ld, add)
            }
            WideB::Widened(b) if tile.rows == MR => {
                // The widened kernel has room for four rows of accumulators: 4 + 1.
                x86::kernel_wide_b::<4>(b.len(), a.as_ptr(), b.as_ptr(), out, ld, add);
                x86::kernel_wide_b::<1>(
                    b.len(),
                    a.as_ptr().add(4 * KU),
                    b.as_ptr(),
                    out.add(4 * ld),
                    ld,
                    add,
                );
            }
            WideB::Widened(b) => {
                by_rows!(kernel_wide_b, tile.rows, b.len(), a.as_ptr(), b.as_ptr(), out, ld, add)
            }
        })
    }
}

#[cfg(test)]
mod tests;
