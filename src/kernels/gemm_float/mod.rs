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
#[cfg(target_arch = "x86_64")]
mod x86_512;

use super::Isa;
use crate::error::{check_len, try_vec};
use crate::{Error, Result};
use blocking::{KC, KU_IN_PLACE, MC};
use half::{bf16, f16};

#[cfg(target_arch = "x86_64")]
const _: () = assert!(MC.is_multiple_of(x86::MR));
#[cfg(target_arch = "x86_64")]
const _: () = assert!(MC.is_multiple_of(x86_512::MR));
#[cfg(target_arch = "aarch64")]
const _: () = assert!(MC.is_multiple_of(aarch64::MR));
const _: () = assert!(MC.is_multiple_of(scalar::MR));

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

/// The float GEMM kernel of one tier: its register tile (`mr x nr`), the packed-B layout it reads
/// and its code. It exists only for a tier this machine can run ([`Kernel::for_isa`] checks), and
/// a [`PackedB`] made for one layout is refused by a kernel that reads another.
///
/// Every kernel rounds as f32 FMA (or multiply-add) chains in its own order, so the tiers agree
/// within the f32 summation bound, not bit for bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    tier: Tier,
}

/// The tiers with float GEMM code of their own (the dotprod and i8mm tiers run the NEON one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Tier {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    /// The kernel tier `isa` runs; fails when the machine lacks `isa`.
    pub fn for_isa(isa: Isa) -> Result<Kernel> {
        isa.ensure_available()?;
        let tier = match isa {
            Isa::Scalar => Tier::Scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Tier::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Tier::Avx512,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::Dotprod | Isa::I8mm => Tier::Neon,
        };
        Ok(Kernel { tier })
    }

    /// The kernel of the active tier ([`Isa::active`]).
    pub fn active() -> Kernel {
        // The active tier is available by construction; scalar is the fallback that always is.
        Kernel::for_isa(Isa::active()).unwrap_or(Kernel { tier: Tier::Scalar })
    }

    /// The kernel's name.
    pub const fn name(self) -> &'static str {
        match self.tier {
            Tier::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => "avx512",
            #[cfg(target_arch = "aarch64")]
            Tier::Neon => "neon",
        }
    }

    /// Rows of C per microkernel call (and of each packed panel of A).
    pub const fn mr(self) -> usize {
        match self.tier {
            Tier::Scalar => scalar::MR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => x86::MR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => x86_512::MR,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon => aarch64::MR,
        }
    }

    /// Columns of C per microkernel call (and of each packed panel of B).
    pub const fn nr(self) -> usize {
        match self.tier {
            Tier::Scalar => scalar::NR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => x86::NR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => x86_512::NR,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon => aarch64::NR,
        }
    }

    /// The layout of the packed B this kernel reads.
    pub const fn layout(self) -> PackedLayout {
        PackedLayout { panel_cols: self.nr() }
    }

    /// The largest `m` for which the plain GEMM reads B in place instead of packing it.
    pub const fn in_place_max_m(self) -> usize {
        match self.tier {
            Tier::Scalar => blocking::IN_PLACE_MAX_M,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 | Tier::Avx512 => blocking::IN_PLACE_MAX_M,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon => blocking::IN_PLACE_MAX_M,
        }
    }

    /// One microkernel call (the tile is checked against the buffers first).
    fn microkernel<W: WeightElement>(self, tile: Tile, a: &[f32], b: &[W], c: &mut [f32]) {
        tile.assert_fits(self, a, b, c);
        match self.tier {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel of this tier exists only after for_isa checked avx2, fma and f16c;
            // the buffers hold the tile (asserted above).
            Tier::Avx2 => unsafe { x86::microkernel(tile, a, b, c) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel of this tier exists only after for_isa checked the AVX-512 tier;
            // the buffers hold the tile (asserted above).
            Tier::Avx512 => unsafe { x86_512::microkernel(tile, a, b, c) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a Kernel of this tier exists only after for_isa checked NEON; buffers asserted.
            Tier::Neon => unsafe { aarch64::microkernel(tile, a, b, c) },
            Tier::Scalar => scalar::microkernel(tile, a, b, c),
        }
    }
}

impl Kernel {
    /// `y = a B` for a single row `a` of A: B (`k x n`, rows `ldb` apart) read row after row, in
    /// the order it lies in memory. Panics unless the buffers hold what it reads and writes (an
    /// internal invariant).
    fn sweep<W: WeightElement>(self, k: usize, n: usize, a: &[f32], b: &[W], ldb: usize, y: &mut [f32]) {
        assert!(a.len() >= k && y.len() >= n && ldb >= n && (k == 0 || b.len() >= (k - 1) * ldb + n));
        match self.tier {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel of this tier exists only after for_isa checked avx2, fma and f16c;
            // the buffers hold what the sweep reads (asserted above).
            Tier::Avx2 => unsafe { x86::sweep(k, n, a, b, ldb, y) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for the AVX-512 tier.
            Tier::Avx512 => unsafe { x86_512::sweep(k, n, a, b, ldb, y) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a Kernel of this tier exists only after for_isa checked NEON; buffers asserted.
            Tier::Neon => unsafe { aarch64::sweep(k, n, a, b, ldb, y) },
            Tier::Scalar => scalar::sweep(k, n, a, b, ldb, y),
        }
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} x {} tile)", self.name(), self.mr(), self.nr())
    }
}

/// How a [`PackedB`] stores B: panels of `panel_cols` columns, panel `j` holding `k` rows of
/// `panel_cols` weights (`B[p][j * panel_cols ..]`, zero past column `n`), panel after panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedLayout {
    panel_cols: usize,
}

impl PackedLayout {
    /// Columns per panel.
    pub const fn panel_cols(self) -> usize {
        self.panel_cols
    }
}

impl std::fmt::Display for PackedLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panels of {} columns", self.panel_cols)
    }
}

/// Checks a matrix argument against its buffer; returns the elements it spans.
fn check_matrix<T>(name: &'static str, buf: &[T], rows: usize, cols: usize, ld: usize) -> Result<usize> {
    let needed = matrix_len(name, rows, cols, ld)?;
    check_len(name, buf.len(), needed)?;
    Ok(needed)
}

/// B (`k x n`) prepacked for one kernel's layout ([`PackedLayout`]), which it records: a kernel
/// that reads another layout refuses it ([`gemm_packed_on`] returns an error), and
/// [`PackedB::repack_for`] converts it. Pack once, multiply many times.
#[derive(Clone, Debug)]
pub struct PackedB<W> {
    k: usize,
    n: usize,
    layout: PackedLayout,
    data: Vec<W>,
}

/// Prepacked f16 weights.
pub type PackedF16 = PackedB<f16>;
/// Prepacked bf16 weights.
pub type PackedBf16 = PackedB<bf16>;

impl<W: WeightElement> PackedB<W> {
    /// Packs row-major `b` (`k x n`, leading dimension `ldb`) for the active kernel ([`Kernel::active`]).
    pub fn pack(k: usize, n: usize, b: &[W], ldb: usize) -> Result<Self> {
        Self::pack_for(Kernel::active(), k, n, b, ldb)
    }

    /// Packs row-major `b` (`k x n`, leading dimension `ldb`) in the layout `kernel` reads.
    pub fn pack_for(kernel: Kernel, k: usize, n: usize, b: &[W], ldb: usize) -> Result<Self> {
        check_matrix("b", b, k, n, ldb)?;
        let layout = kernel.layout();
        let nr = layout.panel_cols;
        let panels = n.div_ceil(nr);
        let len = crate::error::checked_product("packed b", &[panels, k, nr])?;
        let mut data = try_vec(len, W::ZERO)?;
        for (j, panel) in data.chunks_exact_mut((k * nr).max(1)).take(panels).enumerate() {
            let col0 = j * nr;
            let cols = nr.min(n - col0);
            for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                row[..cols].copy_from_slice(&b[p * ldb + col0..p * ldb + col0 + cols]);
            }
        }
        Ok(PackedB { k, n, layout, data })
    }

    /// The same B in the layout `kernel` reads (a copy even when the layouts agree).
    pub fn repack_for(&self, kernel: Kernel) -> Result<Self> {
        let nr = kernel.layout().panel_cols;
        let len = crate::error::checked_product("packed b", &[self.n.div_ceil(nr), self.k, nr])?;
        let mut data = try_vec(len, W::ZERO)?;
        for j in 0..self.n {
            for p in 0..self.k {
                data[((j / nr) * self.k + p) * nr + j % nr] = self.data[self.index(p, j)];
            }
        }
        Ok(PackedB { k: self.k, n: self.n, layout: kernel.layout(), data })
    }

    /// Rows of B (the GEMM's `k`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B (the GEMM's `n`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The layout the weights were packed in.
    pub fn layout(&self) -> PackedLayout {
        self.layout
    }

    /// Element `(p, j)` of B, read through the recorded layout; `None` outside `k x n`.
    pub fn get(&self, p: usize, j: usize) -> Option<W> {
        (p < self.k && j < self.n).then(|| self.data[self.index(p, j)])
    }

    /// Where element `(p, j)` lies in `data`.
    fn index(&self, p: usize, j: usize) -> usize {
        let nr = self.layout.panel_cols;
        ((j / nr) * self.k + p) * nr + j % nr
    }

    /// Panel `j` from row `p` on: `(k - p) * panel_cols` weights.
    fn panel_from(&self, j: usize, p: usize) -> &[W] {
        let nr = self.layout.panel_cols;
        &self.data[(j * self.k + p) * nr..(j + 1) * self.k * nr]
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

/// `C = A * B` on a chosen tier, for any weight element. Up to [`Kernel::in_place_max_m`] rows of
/// A, B is read where it lies (no copy); above, B is packed for the kernel first.
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
    gemm_checked(isa, false, m, n, k, a, lda, b, ldb, c, ldc)
}

/// `C = A * B` reading B in place for any `m` (what [`gemm_on`] does up to
/// [`Kernel::in_place_max_m`] rows): no copy of B, so the right call for a B used once; the
/// packed path is faster for many rows. Arguments as [`gemm_on`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_in_place_on<W: WeightElement>(
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
    gemm_checked(isa, true, m, n, k, a, lda, b, ldb, c, ldc)
}

/// The body [`gemm_on`] and [`gemm_in_place_on`] share: checks every argument (nothing is written
/// on error), then reads B in place when `in_place` or `m` is small enough, else packs it.
#[allow(clippy::too_many_arguments)]
fn gemm_checked<W: WeightElement>(
    isa: Isa,
    in_place: bool,
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
    let kernel = Kernel::for_isa(isa)?;
    check_matrix("a", a, m, k, lda)?;
    check_matrix("b", b, k, n, ldb)?;
    let c_len = check_matrix("c", c, m, n, ldc)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        zero(&mut c[..c_len], n, ldc);
        return Ok(());
    }
    if in_place || m <= kernel.in_place_max_m() {
        return gemm_in_place(kernel, m, n, k, a, lda, b, ldb, &mut c[..c_len], ldc);
    }
    let packed = PackedB::pack_for(kernel, k, n, b, ldb)?;
    gemm_packed_kernel(kernel, m, a, lda, &packed, &mut c[..c_len], ldc)
}

/// Sets the `n` first columns of every row of `c` (leading dimension `ldc`) to zero.
fn zero(c: &mut [f32], n: usize, ldc: usize) {
    for row in c.chunks_mut(ldc) {
        row[..n].fill(0.0);
    }
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

/// [`gemm_packed`] on a chosen tier. Fails, writing nothing, when `b` was packed for a layout
/// other than the one this tier's kernel reads ([`PackedB::repack_for`] converts it). With feature
/// `parallel`, large products split their rows across rayon's threads; small ones stay on the
/// calling thread.
pub fn gemm_packed_on<W: WeightElement>(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB<W>,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    let kernel = Kernel::for_isa(isa)?;
    if b.layout != kernel.layout() {
        return Err(Error::invalid(
            "b",
            format!("weights packed in {}", b.layout),
            format!("the {kernel} kernel reads {}; repack them with PackedB::repack_for", kernel.layout()),
        ));
    }
    let (n, k) = (b.n, b.k);
    check_matrix("a", a, m, k, lda)?;
    let c_len = check_matrix("c", c, m, n, ldc)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        zero(&mut c[..c_len], n, ldc);
        return Ok(());
    }
    gemm_packed_kernel(kernel, m, a, lda, b, &mut c[..c_len], ldc)
}

/// The packed product once the arguments are checked (`m, n, k >= 1`, `b` in `kernel`'s layout,
/// `c` exactly the elements C spans).
fn gemm_packed_kernel<W: WeightElement>(
    kernel: Kernel,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB<W>,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    let rows_per_task = rows_per_task(kernel, m, b.n, b.k);
    let tasks = m.div_ceil(rows_per_task);
    // Every buffer is allocated before C is touched, so a failure leaves C as it was.
    let mut scratch = Vec::new();
    scratch.try_reserve_exact(tasks).map_err(|_| Error::OutOfMemory { bytes: tasks * MC * KC * 4 })?;
    for _ in 0..tasks {
        scratch.push(try_vec(MC * KC, 0.0f32)?);
    }
    let run = |(t, (c_rows, a_pack)): (usize, (&mut [f32], &mut Vec<f32>))| {
        let row0 = t * rows_per_task;
        let rows = rows_per_task.min(m - row0);
        gemm_block(kernel, rows, &a[row0 * lda..], lda, b, c_rows, ldc, a_pack);
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

/// Threads worth using for `m * n * k` multiply-adds: 1 when the product is small, the feature
/// `parallel` is off or rayon has one thread.
fn threads_for(m: usize, n: usize, k: usize) -> usize {
    #[cfg(feature = "parallel")]
    {
        // Small products never ask rayon for its thread count (which would start its pool).
        if m.saturating_mul(n).saturating_mul(k) >= blocking::PARALLEL_MIN_MACS {
            return rayon::current_num_threads();
        }
    }
    let _ = (m, n, k);
    1
}

/// Rows each task of the packed product takes: all of them when it stays on one thread.
fn rows_per_task(kernel: Kernel, m: usize, n: usize, k: usize) -> usize {
    let (threads, mr) = (threads_for(m, n, k), kernel.mr());
    if threads > 1 && m >= 2 * mr {
        let tasks = threads.min(m / mr);
        return m.div_ceil(tasks).div_ceil(mr) * mr;
    }
    m
}

/// The blocked product for one row block with packed B: k in KC slices, rows in MC blocks
/// (packed into `a_pack`), then `nr`-column panels of B against `mr`-row panels of A.
#[allow(clippy::too_many_arguments)]
fn gemm_block<W: WeightElement>(
    kernel: Kernel,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB<W>,
    c: &mut [f32],
    ldc: usize,
    a_pack: &mut [f32],
) {
    let (n, k, mr, nr) = (b.n, b.k, kernel.mr(), kernel.nr());
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        for ic in (0..m).step_by(MC) {
            let mc = MC.min(m - ic);
            pack_a(kernel, &a[ic * lda..], lda, pc, mc, kc, a_pack);
            for jr in 0..n.div_ceil(nr) {
                let cols = nr.min(n - jr * nr);
                let b_panel = b.panel_from(jr, pc);
                for ir in (0..mc).step_by(mr) {
                    let rows = mr.min(mc - ir);
                    let tile = Tile { mr: rows, nr: cols, kc, accumulate: pc > 0, ldc, b_stride: nr };
                    let c_tile = &mut c[(ic + ir) * ldc + jr * nr..];
                    kernel.microkernel(tile, &a_pack[ir * kc..(ir + mr) * kc], b_panel, c_tile);
                }
            }
        }
    }
}

/// `C = A * B` for a few rows of A (all dimensions >= 1, `c` exactly C's span), B read where it
/// lies: only A and the last, partial column panel of B are copied. With feature `parallel`,
/// large products split their columns across threads, each into a buffer of its own, copied into
/// C at the end.
#[allow(clippy::too_many_arguments)]
fn gemm_in_place<W: WeightElement>(
    kernel: Kernel,
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
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let a_len = crate::error::checked_product("packed a", &[m.div_ceil(mr) * mr, k])?;
    let tail_len = if n.is_multiple_of(nr) { 0 } else { k * nr };
    #[cfg(feature = "parallel")]
    let scratch =
        || -> Result<(Vec<f32>, Vec<W>)> { Ok((try_vec(a_len, 0.0f32)?, try_vec(tail_len, W::ZERO)?)) };
    let threads = threads_for(m, n, k).min(n.div_ceil(nr));
    if threads <= 1 {
        // Packed A in a buffer the calling thread keeps (many small products, attention's say,
        // would each allocate and zero it); packing writes every element the product reads.
        let mut tail = try_vec(tail_len, W::ZERO)?;
        let mut a_pack = IN_PLACE_A.take();
        if a_pack.len() < a_len {
            a_pack = try_vec(a_len, 0.0f32)?;
        }
        in_place_block(kernel, m, n, k, a, lda, b, ldb, c, ldc, &mut a_pack[..a_len], &mut tail);
        if a_pack.len() <= IN_PLACE_A_KEPT {
            IN_PLACE_A.set(a_pack);
        }
        return Ok(());
    }
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        let cols = n.div_ceil(threads).div_ceil(nr) * nr;
        let tasks = n.div_ceil(cols);
        let mut parts = Vec::new();
        parts.try_reserve_exact(tasks).map_err(|_| Error::OutOfMemory { bytes: m * n * 4 })?;
        for t in 0..tasks {
            let width = cols.min(n - t * cols);
            let (a_pack, tail) = scratch()?;
            parts.push((try_vec(m * width, 0.0f32)?, a_pack, tail));
        }
        parts.par_iter_mut().enumerate().for_each(|(t, (c_part, a_pack, tail))| {
            let (j0, width) = (t * cols, cols.min(n - t * cols));
            in_place_block(kernel, m, width, k, a, lda, &b[j0..], ldb, c_part, width, a_pack, tail);
        });
        for (t, (c_part, _, _)) in parts.iter().enumerate() {
            let (j0, width) = (t * cols, cols.min(n - t * cols));
            for (row, part) in c.chunks_mut(ldc).zip(c_part.chunks_exact(width)) {
                row[j0..j0 + width].copy_from_slice(part);
            }
        }
    }
    Ok(())
}

/// The largest packed A (in floats, 1 MiB) a thread keeps for its next in-place product.
const IN_PLACE_A_KEPT: usize = 1 << 18;

thread_local! {
    /// [`gemm_in_place`]'s packed A on one thread, kept across calls up to [`IN_PLACE_A_KEPT`].
    static IN_PLACE_A: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The in-place product on one thread. All of A is packed first (`KU_IN_PLACE`-deep slices of
/// `mr`-row panels, `a_pack` holding `ceil(m / mr) * mr * k`), and the partial last column panel
/// of B, if any, into `tail` (`k x nr`, zero-padded). Then, per block of columns small enough that
/// its rows of C stay in L2, B is swept `KU_IN_PLACE` rows at a time: each `KU x nr` strip is
/// read in place (rows `ldb` apart, a few sequential streams the prefetchers follow) by every row
/// panel of A, accumulating into C.
#[allow(clippy::too_many_arguments)]
fn in_place_block<W: WeightElement>(
    kernel: Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[W],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    a_pack: &mut [f32],
    tail: &mut [W],
) {
    if m == 1 {
        // One row of A: B swept whole rows at a time streams in memory order (a KU-row sweep
        // across columns keeps KU short streams in flight and ran at half the bandwidth).
        kernel.sweep(k, n, &a[..k], b, ldb, &mut c[..n]);
        return;
    }
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let (ku, c_budget) = (KU_IN_PLACE, blocking::IN_PLACE_C_BYTES);
    let m_pad = m.div_ceil(mr) * mr;
    for pc in (0..k).step_by(ku) {
        pack_a(kernel, a, lda, pc, m, ku.min(k - pc), &mut a_pack[pc * m_pad..]);
    }
    let full = n / nr;
    let tail_cols = n - full * nr;
    if tail_cols > 0 {
        for (p, row) in tail.chunks_exact_mut(nr).take(k).enumerate() {
            row[..tail_cols].copy_from_slice(&b[p * ldb + full * nr..p * ldb + n]);
        }
    }
    let nc = (c_budget / (4 * m * nr)).max(1) * nr;
    for jc in (0..n).step_by(nc) {
        let cols_in_block = nc.min(n - jc);
        for pc in (0..k).step_by(ku) {
            let kc = ku.min(k - pc);
            let a_slice = &a_pack[pc * m_pad..pc * m_pad + m_pad * kc];
            for jr in (jc..jc + cols_in_block).step_by(nr) {
                let (b_panel, b_stride) =
                    if jr / nr < full { (&b[pc * ldb + jr..], ldb) } else { (&tail[pc * nr..], nr) };
                let cols = nr.min(n - jr);
                for ir in (0..m).step_by(mr) {
                    let rows = mr.min(m - ir);
                    let tile = Tile { mr: rows, nr: cols, kc, accumulate: pc > 0, ldc, b_stride };
                    let c_tile = &mut c[ir * ldc + jr..];
                    kernel.microkernel(tile, &a_slice[ir * kc..(ir + mr) * kc], b_panel, c_tile);
                }
            }
        }
    }
}

/// The shape of one microkernel call: `mr` rows, `nr` columns (at most the kernel's tile), `kc`
/// deep, B's rows `b_stride` apart.
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
    /// Elements between consecutive rows of B: the kernel's `nr` for a packed panel, B's leading
    /// dimension when B is read in place.
    pub b_stride: usize,
}

impl Tile {
    /// Panics unless the buffers hold what `kernel` reads and writes for this tile (an internal
    /// invariant, checked before every unsafe microkernel call).
    pub(crate) fn assert_fits<W>(&self, kernel: Kernel, a: &[f32], b: &[W], c: &[f32]) {
        let (mr, nr) = (kernel.mr(), kernel.nr());
        assert!(self.mr >= 1 && self.mr <= mr && self.nr >= 1 && self.nr <= nr && self.b_stride >= nr);
        assert!(a.len() >= self.kc * mr);
        assert!(self.kc == 0 || b.len() >= (self.kc - 1) * self.b_stride + nr);
        assert!(c.len() >= (self.mr - 1) * self.ldc + self.nr);
    }

    /// Stores the first `mr x nr` of a register tile into C, honouring `accumulate`.
    pub(crate) fn store<const R: usize, const N: usize>(&self, tile: &[[f32; N]; R], c: &mut [f32]) {
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

/// Packs `mc x kc` of A (from column `pc`) into the kernel's `mr`-row panels: panel `i` holds
/// `kc` groups of `mr` values, zero-padded past row `mc`.
fn pack_a(kernel: Kernel, a: &[f32], lda: usize, pc: usize, mc: usize, kc: usize, out: &mut [f32]) {
    let mr = kernel.mr();
    for (i, panel) in out[..mc.div_ceil(mr) * mr * kc].chunks_exact_mut(mr * kc).enumerate() {
        let rows = mr.min(mc - i * mr);
        let first = (i * mr) * lda + pc;
        #[cfg(target_arch = "x86_64")]
        if kernel.tier == Tier::Avx512 && rows == mr {
            // SAFETY: a Kernel of this tier exists only after for_isa checked the AVX-512 tier;
            // the panel's mr rows hold kc values from `first` (lda apart) and `panel` kc * mr.
            unsafe { x86_512::pack_a_panel(&a[first..(i * mr + rows - 1) * lda + pc + kc], lda, kc, panel) };
            continue;
        }
        for r in 0..mr {
            if r < rows {
                let src = &a[first + r * lda..first + r * lda + kc];
                for (p, &v) in src.iter().enumerate() {
                    panel[p * mr + r] = v;
                }
            } else {
                for p in 0..kc {
                    panel[p * mr + r] = 0.0;
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
            Isa::Avx2 => unsafe { x86::gemv(ys.len(), k, w, ldw, x, ys) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: ensure_available passed for the AVX-512 tier; the slices were checked above.
            Isa::Avx512 => unsafe { x86_512::gemv(ys.len(), k, w, ldw, x, ys) },
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
    // A NaN or infinite scale would spread silently into its output row.
    if let Some(row) = scales.iter().position(|s| !s.is_finite()) {
        return Err(Error::invalid("scales", scales[row], format!("row {row}: must be finite")));
    }
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
            Isa::Avx2 => unsafe { x86::gemv_i8(ys.len(), k, w, ldw, scales, x, ys) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: ensure_available passed for the AVX-512 tier; the slices were checked above.
            Isa::Avx512 => unsafe { x86_512::gemv_i8(ys.len(), k, w, ldw, scales, x, ys) },
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
