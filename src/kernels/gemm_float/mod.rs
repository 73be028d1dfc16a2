//! GEMM and GEMV with f32 activations and f32, f16, bf16 or int8 weights.
//!
//! - GEMM: `C (m x n) = A (m x k, f32) * B (k x n, f16 or bf16)`, row-major with leading
//!   dimensions, C overwritten. B is converted to f32 inside the microkernel. For repeated use,
//!   pack B once with [`PackedB::pack`] and call [`gemm_packed`].
//! - GEMV (the decode step, `m = 1`): `y = W x` with `W (n x k)` row-major, each output the dot
//!   product of a weight row with `x`; [`gemv_i8`] applies a per-row scale.
//!
//! All products accumulate in f32. The SIMD paths sum in a different order than the scalar
//! reference (blocked, with FMA), so results agree within floating-point rounding, not bit for
//! bit: the tests bound `|got - exact| <= 2 k eps sum_p |a_ip| |b_pj|` against a float64 product.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod blocking;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod entry;
pub mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::Isa;
use crate::error::{check_len, try_vec};
use crate::{Error, Result};
use blocking::{KC, MC, MR, NR};
use half::{bf16, f16};

/// The storage formats of weights, as the kernels see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A floating-point weight element the GEMM/GEMV kernels read (f32, f16, bf16); sealed.
pub trait WeightElement: sealed::Sealed + Copy + Send + Sync + 'static {
    /// Which format this is.
    const KIND: WeightKind;
    /// The zero weight (used to pad packed panels).
    const ZERO: Self;
    /// The exact f32 value.
    fn to_f32(self) -> f32;
}

impl WeightElement for f32 {
    const KIND: WeightKind = WeightKind::F32;
    const ZERO: Self = 0.0;
    fn to_f32(self) -> f32 {
        self
    }
}

impl WeightElement for f16 {
    const KIND: WeightKind = WeightKind::F16;
    const ZERO: Self = f16::ZERO;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl WeightElement for bf16 {
    const KIND: WeightKind = WeightKind::Bf16;
    const ZERO: Self = bf16::ZERO;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// A weight the GEMV kernels read, including int8 (whose scale is applied after the dot product).
pub(crate) trait GemvWeight: Copy {
    /// The exact f32 value.
    fn value(self) -> f32;
}

impl<W: WeightElement> GemvWeight for W {
    fn value(self) -> f32 {
        self.to_f32()
    }
}

impl GemvWeight for i8 {
    fn value(self) -> f32 {
        f32::from(self)
    }
}

/// Reinterprets a weight slice as the concrete type its [`WeightKind`] names.
///
/// # Safety
/// `W` must be `T` (checked through `W::KIND` by the caller; the trait is sealed, one type per kind).
pub(crate) unsafe fn as_kind<W: WeightElement, T>(b: &[W]) -> &[T] {
    debug_assert_eq!(std::mem::size_of::<W>(), std::mem::size_of::<T>());
    // SAFETY: W and T are the same type (caller's contract), so layout and validity agree.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<T>(), b.len()) }
}

/// Elements a row-major `rows x cols` matrix with leading dimension `ld` spans:
/// `(rows - 1) * ld + cols`, or 0 when it is empty. Fails when `ld < cols` or on overflow.
pub fn matrix_len(name: &'static str, rows: usize, cols: usize, ld: usize) -> Result<usize> {
    if ld < cols {
        return Err(Error::invalid(
            name,
            ld,
            format!("leading dimension smaller than the row length {cols}"),
        ));
    }
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols)).ok_or_else(|| Error::Overflow {
        context: name,
        detail: format!("{rows} rows x leading dimension {ld}"),
    })
}

/// Checks a matrix argument against its buffer; returns the elements it spans.
fn check_matrix<T>(name: &'static str, buf: &[T], rows: usize, cols: usize, ld: usize) -> Result<usize> {
    let needed = matrix_len(name, rows, cols, ld)?;
    check_len(name, buf.len(), needed)?;
    Ok(needed)
}

/// B (`k x n`) prepacked for the GEMM microkernel: panels of [`NR`] columns, each `k` rows of
/// `NR` weights (zero-padded past column `n`). Pack once, multiply many times.
#[derive(Clone, Debug)]
pub struct PackedB<W> {
    k: usize,
    n: usize,
    data: Vec<W>,
}

/// Prepacked f16 weights.
pub type PackedF16 = PackedB<f16>;
/// Prepacked bf16 weights.
pub type PackedBf16 = PackedB<bf16>;

impl<W: WeightElement> PackedB<W> {
    /// Packs row-major `b` (`k x n`, leading dimension `ldb`).
    pub fn pack(k: usize, n: usize, b: &[W], ldb: usize) -> Result<Self> {
        check_matrix("b", b, k, n, ldb)?;
        let panels = n.div_ceil(NR);
        let len = crate::error::checked_product("packed b", &[panels, k, NR])?;
        let mut data = try_vec(len, W::ZERO)?;
        for (j, panel) in data.chunks_exact_mut((k * NR).max(1)).take(panels).enumerate() {
            let col0 = j * NR;
            let cols = NR.min(n - col0);
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                row[..cols].copy_from_slice(&b[p * ldb + col0..p * ldb + col0 + cols]);
            }
        }
        Ok(PackedB { k, n, data })
    }

    /// Rows of B (the GEMM's `k`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B (the GEMM's `n`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Element `(p, j)` of B.
    pub fn get(&self, p: usize, j: usize) -> W {
        self.data[((j / NR) * self.k + p) * NR + j % NR]
    }

    /// Panel `j` from row `p` on: `(k - p) * NR` weights.
    fn panel_from(&self, j: usize, p: usize) -> &[W] {
        &self.data[(j * self.k + p) * NR..(j + 1) * self.k * NR]
    }
}

/// `C = A * B` with f16 weights: A `m x k` (f32, `lda`), B `k x n` (`ldb`), C `m x n` (`ldc`), overwritten.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_f16w(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f16],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    gemm_on(Isa::active(), m, n, k, a, lda, b, ldb, c, ldc)
}

/// `C = A * B` with bf16 weights; as [`gemm_f32_f16w`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_bf16w(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[bf16],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    gemm_on(Isa::active(), m, n, k, a, lda, b, ldb, c, ldc)
}

/// `C = A * B` on a chosen path, for any weight element (packs B internally).
#[allow(clippy::too_many_arguments)]
pub fn gemm_on<W: WeightElement>(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[W],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    isa.ensure_available()?;
    check_matrix("a", a, m, k, lda)?;
    check_matrix("b", b, k, n, ldb)?;
    check_matrix("c", c, m, n, ldc)?;
    if isa == Isa::Scalar {
        scalar::gemm(m, n, k, a, lda, b, ldb, c, ldc);
        return Ok(());
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let packed = PackedB::pack(k, n, b, ldb)?;
    gemm_packed_on(isa, m, a, lda, &packed, c, ldc)
}

/// `C = A * B` with prepacked B: A `m x b.k()` (`lda`), C `m x b.n()` (`ldc`), overwritten.
pub fn gemm_packed<W: WeightElement>(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB<W>,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    gemm_packed_on(Isa::active(), m, a, lda, b, c, ldc)
}

/// [`gemm_packed`] on a chosen path. With feature `parallel`, large products split their rows
/// across rayon's threads; small ones stay on the calling thread.
pub fn gemm_packed_on<W: WeightElement>(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB<W>,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    isa.ensure_available()?;
    let (n, k) = (b.n, b.k);
    check_matrix("a", a, m, k, lda)?;
    let c_len = check_matrix("c", c, m, n, ldc)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if isa == Isa::Scalar {
        scalar::gemm_packed(m, a, lda, b, c, ldc);
        return Ok(());
    }
    if k == 0 {
        for row in c[..c_len].chunks_mut(ldc) {
            row[..n].fill(0.0);
        }
        return Ok(());
    }
    let rows_per_task = rows_per_task(m, n, k);
    let tasks = m.div_ceil(rows_per_task);
    // Every buffer is allocated before C is touched, so a failure leaves C as it was.
    let mut scratch = Vec::new();
    scratch.try_reserve_exact(tasks).map_err(|_| Error::OutOfMemory { bytes: tasks * MC * KC * 4 })?;
    for _ in 0..tasks {
        scratch.push(try_vec(MC * KC, 0.0f32)?);
    }
    let c = &mut c[..c_len];
    let run = |(t, (c_rows, a_pack)): (usize, (&mut [f32], &mut Vec<f32>))| {
        let row0 = t * rows_per_task;
        let rows = rows_per_task.min(m - row0);
        gemm_block(isa, rows, &a[row0 * lda..], lda, b, c_rows, ldc, a_pack);
    };
    #[cfg(feature = "parallel")]
    if tasks > 1 {
        use rayon::prelude::*;
        c.par_chunks_mut(rows_per_task * ldc).zip(scratch.par_iter_mut()).enumerate().for_each(run);
        return Ok(());
    }
    c.chunks_mut(rows_per_task * ldc).zip(scratch.iter_mut()).enumerate().for_each(run);
    Ok(())
}

/// Rows each task takes: all of them when the product is small or there is one thread.
fn rows_per_task(m: usize, n: usize, k: usize) -> usize {
    #[cfg(feature = "parallel")]
    {
        // Small products never ask rayon for its thread count (which would start its pool).
        let work = m.saturating_mul(n).saturating_mul(k);
        if work >= blocking::PARALLEL_MIN_MACS && m >= 2 * MR && rayon::current_num_threads() > 1 {
            let tasks = rayon::current_num_threads().min(m / MR);
            return m.div_ceil(tasks).div_ceil(MR) * MR;
        }
    }
    let _ = (n, k);
    m
}

/// The blocked product for one row block on a SIMD path: k in KC slices, rows in MC blocks
/// (packed into `a_pack`), then NR-column panels of B against MR-row panels of A.
#[allow(clippy::too_many_arguments)]
fn gemm_block<W: WeightElement>(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB<W>,
    c: &mut [f32],
    ldc: usize,
    a_pack: &mut [f32],
) {
    let (n, k) = (b.n, b.k);
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        for ic in (0..m).step_by(MC) {
            let mc = MC.min(m - ic);
            pack_a(&a[ic * lda..], lda, pc, mc, kc, a_pack);
            for jr in 0..n.div_ceil(NR) {
                let nr = NR.min(n - jr * NR);
                let b_panel = b.panel_from(jr, pc);
                for ir in (0..mc).step_by(MR) {
                    let mr = MR.min(mc - ir);
                    let tile = Tile { mr, nr, kc, accumulate: pc > 0, ldc };
                    let c_tile = &mut c[(ic + ir) * ldc + jr * NR..];
                    let a_panel = &a_pack[ir * kc..(ir + MR) * kc];
                    microkernel(isa, tile, a_panel, b_panel, c_tile);
                }
            }
        }
    }
}

/// The shape of one microkernel call: `mr <= MR` rows, `nr <= NR` columns, `kc` deep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile {
    /// Rows of C written.
    pub mr: usize,
    /// Columns of C written.
    pub nr: usize,
    /// Depth.
    pub kc: usize,
    /// Add to C (true) or overwrite it.
    pub accumulate: bool,
    /// C's leading dimension.
    pub ldc: usize,
}

impl Tile {
    /// Panics unless the buffers hold what the tile reads and writes (an internal invariant).
    pub(crate) fn assert_fits<W>(&self, a: &[f32], b: &[W], c: &[f32]) {
        assert!(self.mr >= 1 && self.mr <= MR && self.nr >= 1 && self.nr <= NR);
        assert!(a.len() >= self.kc * MR && b.len() >= self.kc * NR);
        assert!(c.len() >= (self.mr - 1) * self.ldc + self.nr);
    }

    /// Stores a full MR x NR register tile into C, honouring `mr`, `nr` and `accumulate`.
    pub(crate) fn store(&self, tile: &[[f32; NR]; MR], c: &mut [f32]) {
        for (r, row) in tile.iter().enumerate().take(self.mr) {
            let dst = &mut c[r * self.ldc..r * self.ldc + self.nr];
            if self.accumulate {
                dst.iter_mut().zip(row).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(&row[..self.nr]);
            }
        }
    }
}

fn microkernel<W: WeightElement>(isa: Isa, tile: Tile, a: &[f32], b: &[W], c: &mut [f32]) {
    tile.assert_fits(a, b, c);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is only used after ensure_available checked avx2, fma and f16c; the
        // buffers hold the tile (asserted above).
        Isa::Avx2 | Isa::Avx512 => unsafe { x86::microkernel(tile, a, b, c) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: Neon is only used after ensure_available checked it; buffers asserted above.
        Isa::Neon | Isa::Dotprod | Isa::I8mm => unsafe { aarch64::microkernel(tile, a, b, c) },
        Isa::Scalar => scalar::microkernel(tile, a, b, c),
    }
}

/// Packs `mc x kc` of A (from column `pc`) into MR-row panels: panel `i` holds `kc` groups of MR
/// values, zero-padded past row `mc`.
fn pack_a(a: &[f32], lda: usize, pc: usize, mc: usize, kc: usize, out: &mut [f32]) {
    for (i, panel) in out[..mc.div_ceil(MR) * MR * kc].chunks_exact_mut(MR * kc).enumerate() {
        let rows = MR.min(mc - i * MR);
        for r in 0..MR {
            if r < rows {
                let src = &a[(i * MR + r) * lda + pc..(i * MR + r) * lda + pc + kc];
                for (p, &v) in src.iter().enumerate() {
                    panel[p * MR + r] = v;
                }
            } else {
                for p in 0..kc {
                    panel[p * MR + r] = 0.0;
                }
            }
        }
    }
}

/// Checks a GEMV's arguments: `w` `n x k` (`ldw`), `x` `k`, `y` `n`.
fn check_gemv<W>(n: usize, k: usize, w: &[W], ldw: usize, x: &[f32], y: &[f32]) -> Result<()> {
    check_matrix("w", w, n, k, ldw)?;
    check_len("x", x.len(), k)?;
    check_len("y", y.len(), n)
}

/// `y = W x` with f32 weights: W `n x k` row-major (`ldw`), `x` length `k`, `y` length `n` (overwritten).
pub fn gemv_f32(n: usize, k: usize, w: &[f32], ldw: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    gemv_on(Isa::active(), n, k, w, ldw, x, y)
}

/// `y = W x` with f16 weights; as [`gemv_f32`].
pub fn gemv_f16(n: usize, k: usize, w: &[f16], ldw: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    gemv_on(Isa::active(), n, k, w, ldw, x, y)
}

/// `y = W x` with bf16 weights; as [`gemv_f32`].
pub fn gemv_bf16(n: usize, k: usize, w: &[bf16], ldw: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    gemv_on(Isa::active(), n, k, w, ldw, x, y)
}

/// Output rows per GEMV task when splitting across threads (a multiple of every kernel's row group).
#[cfg(feature = "parallel")]
const GEMV_ROWS_PER_TASK: usize = 256;

/// Runs `rows(row0, y_chunk)` over `y` in row blocks, across threads when the weights are large.
fn for_gemv_rows(n: usize, k: usize, y: &mut [f32], rows: impl Fn(usize, &mut [f32]) + Send + Sync) {
    let y = &mut y[..n];
    #[cfg(feature = "parallel")]
    if n.saturating_mul(k) >= blocking::PARALLEL_MIN_GEMV_WEIGHTS && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        y.par_chunks_mut(GEMV_ROWS_PER_TASK).enumerate().for_each(|(t, ys)| rows(t * GEMV_ROWS_PER_TASK, ys));
        return;
    }
    let _ = k;
    rows(0, y);
}

/// [`gemv_f32`] / [`gemv_f16`] / [`gemv_bf16`] on a chosen path, for any weight element.
pub fn gemv_on<W: WeightElement>(
    isa: Isa,
    n: usize,
    k: usize,
    w: &[W],
    ldw: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    isa.ensure_available()?;
    check_gemv(n, k, w, ldw, x, y)?;
    if k == 0 {
        y[..n].fill(0.0);
        return Ok(());
    }
    let x = &x[..k];
    for_gemv_rows(n, k, y, |row0, ys| {
        let w = if ys.is_empty() { &w[..0] } else { &w[row0 * ldw..] };
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 passed ensure_available; check_gemv sized w, x and y for these rows.
            Isa::Avx2 | Isa::Avx512 => unsafe { x86::gemv(ys.len(), k, w, ldw, x, ys) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: Neon passed ensure_available; check_gemv sized w, x and y for these rows.
            Isa::Neon | Isa::Dotprod | Isa::I8mm => unsafe { aarch64::gemv(ys.len(), k, w, ldw, x, ys) },
            Isa::Scalar => scalar::gemv(ys.len(), k, w, ldw, x, ys),
        }
    });
    Ok(())
}

/// `y_i = scale_i * sum_j W_ij x_j` with int8 weights and a per-row scale: W `n x k` (`ldw`),
/// `scales` length `n`, `x` length `k`, `y` length `n` (overwritten).
pub fn gemv_i8(
    n: usize,
    k: usize,
    w: &[i8],
    ldw: usize,
    scales: &[f32],
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    gemv_i8_on(Isa::active(), n, k, w, ldw, scales, x, y)
}

/// [`gemv_i8`] on a chosen path.
#[allow(clippy::too_many_arguments)]
pub fn gemv_i8_on(
    isa: Isa,
    n: usize,
    k: usize,
    w: &[i8],
    ldw: usize,
    scales: &[f32],
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    isa.ensure_available()?;
    check_gemv(n, k, w, ldw, x, y)?;
    check_len("scales", scales.len(), n)?;
    if k == 0 {
        y[..n].fill(0.0);
        return Ok(());
    }
    let x = &x[..k];
    for_gemv_rows(n, k, y, |row0, ys| {
        let w = if ys.is_empty() { &w[..0] } else { &w[row0 * ldw..] };
        let scales = &scales[row0..row0 + ys.len()];
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 passed ensure_available; check_gemv sized w, x, y and scales.
            Isa::Avx2 | Isa::Avx512 => unsafe { x86::gemv_i8(ys.len(), k, w, ldw, scales, x, ys) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: Neon passed ensure_available; check_gemv sized w, x, y and scales.
            Isa::Neon | Isa::Dotprod | Isa::I8mm => unsafe {
                aarch64::gemv_i8(ys.len(), k, w, ldw, scales, x, ys)
            },
            Isa::Scalar => scalar::gemv_i8(ys.len(), k, w, ldw, scales, x, ys),
        }
    });
    Ok(())
}
