//! bf16 x bf16 -> f32 GEMM: `C (m x n, f32) = A (m x k, bf16) * B (k x n, bf16)`, row-major with
//! leading dimensions in elements, C overwritten.
//!
//! A product of two bf16 values (8-bit significands) is exact in f32 (24 bits) unless it
//! underflows, so every path differs from the definition ([`scalar::gemm`]: f32, `acc += a * b`
//! for `p = 0..k` in order) only in the order and grouping of its sums (FMA chains, blocks of
//! [`KC`]). Every result lies within `k * 2^-24 * sum_p |a_ip b_pj|` (plus `k * 2^-149` where
//! products underflow) of the exact value; NaN and infinities propagate as IEEE arithmetic makes them.
//! One exception, stated by [`Kernel::flushes_subnormals`]: the AVX-512 BF16 kernel's instruction
//! counts subnormal bf16 operands (below `2^-126`) as zero and flushes subnormal sums to zero, so
//! its results may further lose those products and up to `2^-126` per step of k.
//!
//! Two ways in:
//! - [`gemm_bf16bf16_f32`] reads B as it is. For `m <= STREAM_MAX_M` it never packs all of B: it
//!   copies one strip of B (`KC` rows x a few panels, L2-sized) at a time into the kernel's layout,
//!   runs every row of A against it and moves on, so B streams from memory once and no `k x n`
//!   buffer is allocated. For larger `m` it packs B whole and runs the packed path.
//! - [`PackedB::pack`] once, then [`gemm_packed`] many times: the fast path for repeated large `m`.
//!
//! A is widened to f32 as it is packed (MR-row panels of an `MC x KC` block); B stays bf16 in its
//! panels and is widened inside the microkernel (a 16-bit shift). Each tier's [`Kernel`] owns its
//! tile and the [`Layout`] of its packed B; a [`PackedB`] records its layout, and multiplying it on
//! a tier that needs another layout is an error, never a misread.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_512;

use super::gemm_float::matrix_len;
use super::Isa;
use crate::error::{check_len, checked_product, try_vec};
use crate::{Error, Result};
use half::bf16;

/// Depth of one pass: packed A blocks and B panel slices are `KC` deep (a 16-column bf16 panel
/// slice is 16 KiB, so it stays in L1 while every row panel of the A block meets it).
pub const KC: usize = 512;
/// Rows of A packed per block (a multiple of every kernel's MR): 120 x 512 f32 = 240 KiB, in L2.
pub const MC: usize = 120;
/// Panels of B per strip on the streaming path (`KC x 8 x 16` bf16 = 128 KiB, in L2; whole
/// 64-byte lines of each row of B are read at once).
pub const STRIP_PANELS: usize = 8;
/// Largest `m` for which the plain API streams B instead of packing it whole.
pub const STREAM_MAX_M: usize = 48;
/// Multiply-adds below which a GEMM stays on the calling thread.
pub const PARALLEL_MIN_MACS: usize = 1 << 22;

/// The microkernel of a tier: its register tile and the layout of its packed B. A tier gets its
/// kernel from [`Kernel::for_isa`]; every `match` on it names each kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The reference: sums in order over `p` on B kept row-major.
    Scalar,
    /// AVX2 + FMA: a 6 x 16 f32 tile (twelve accumulators), B in paired 16-column panels.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 BF16: an 8 x 32 f32 tile (sixteen zmm accumulators) by `vdpbf16ps`, A and B in
    /// pairs of k (subnormal operands count as zero, see `x86_512.rs`).
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16,
    /// AVX-512 FMA: the same 8 x 32 tile by `vfmadd231ps` on B widened in registers, B in paired
    /// 32-column panels (on CPUs where `vdpbf16ps` is slower than FMA, see `x86_512.rs`).
    #[cfg(target_arch = "x86_64")]
    Avx512Fma,
    /// NEON: an 8 x 12 f32 tile (twenty-four accumulators), B in plain 12-column panels.
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    /// The kernel a tier runs: on AVX-512, `vdpbf16ps` where the CPU has it and runs it fast
    /// (AMD), else zmm FMA; the Arm tiers the NEON one.
    pub fn for_isa(isa: Isa) -> Kernel {
        match isa {
            Isa::Scalar => Kernel::Scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if isa.has_bf16() && x86_512::dot_is_fast() => Kernel::Avx512Bf16,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Kernel::Avx512Fma,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Kernel::Avx2,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::Dotprod | Isa::I8mm => Kernel::Neon,
        }
    }

    /// Every kernel this machine can run (each tier's, and the AVX-512 BF16 one wherever the CPU
    /// has the instructions, even when its tier prefers FMA), for tests and benches.
    pub fn available() -> Vec<Kernel> {
        let tiers = Isa::available().into_iter().map(Kernel::for_isa);
        #[cfg(target_arch = "x86_64")]
        let tiers = tiers.chain(Isa::Avx512.has_bf16().then_some(Kernel::Avx512Bf16));
        let mut kernels: Vec<Kernel> = Vec::new();
        for kernel in tiers {
            if !kernels.contains(&kernel) {
                kernels.push(kernel);
            }
        }
        kernels
    }

    /// Rows of C per microkernel call.
    pub const fn mr(self) -> usize {
        match self {
            Kernel::Scalar => 1,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::MR,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16 | Kernel::Avx512Fma => x86_512::MR,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => aarch64::MR,
        }
    }

    /// Columns of C per microkernel call.
    pub const fn nr(self) -> usize {
        match self.layout() {
            Layout::RowMajor => 1,
            Layout::Panels { nr, .. } | Layout::KPairs { nr } => nr,
        }
    }

    /// Whether the kernel treats subnormal bf16 operands as zero and flushes subnormal sums to
    /// zero (AVX-512 BF16's `vdpbf16ps` does): its results may then differ from the summation
    /// bound in the module docs by the products it drops and `2^-126` per step.
    pub const fn flushes_subnormals(self) -> bool {
        match self {
            Kernel::Scalar => false,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => false,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16 => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Fma => false,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => false,
        }
    }

    /// The layout this kernel reads packed B in.
    pub const fn layout(self) -> Layout {
        match self {
            Kernel::Scalar => Layout::RowMajor,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Layout::Panels { nr: x86::NR, paired: true },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16 => Layout::KPairs { nr: x86_512::NR },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Fma => Layout::Panels { nr: x86_512::FMA_NR, paired: true },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => Layout::Panels { nr: aarch64::NR, paired: false },
        }
    }
}

/// How a [`PackedB`] stores B (`k x n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Row-major `k x n`, leading dimension `n`.
    RowMajor,
    /// Panels of `nr` columns, one after another; panel `j` holds `k` rows of `nr` values (columns
    /// `j * nr ..`, zeros past `n`). With `paired`, each row stores column `c` and column
    /// `c + nr / 2` side by side (slots `2c` and `2c + 1`), so one 32-bit word holds both and two
    /// bit operations widen a row into two f32 vectors.
    Panels {
        /// Columns per panel.
        nr: usize,
        /// Columns `c` and `c + nr / 2` share a 32-bit word.
        paired: bool,
    },
    /// Panels of `nr` columns over pairs of rows: panel `j` holds `ceil(k / 2)` groups of `2 nr`
    /// values, group `q` storing row `2q` of column `c` in slot `2c` and row `2q + 1` in slot
    /// `2c + 1` (zero past `k` and `n`), so one 32-bit word holds a column's pair of k.
    KPairs {
        /// Columns per panel.
        nr: usize,
    },
}

impl Layout {
    /// Rows of B a panel stores for `k` rows (pairs round up).
    const fn stored_rows(self, k: usize) -> usize {
        match self {
            Layout::KPairs { .. } => k.next_multiple_of(2),
            Layout::RowMajor | Layout::Panels { .. } => k,
        }
    }

    /// Where column `c` (`< nr`) of a panel row sits.
    const fn slot(nr: usize, paired: bool, c: usize) -> usize {
        if !paired {
            c
        } else if c < nr / 2 {
            2 * c
        } else {
            2 * (c - nr / 2) + 1
        }
    }
}

/// Checks a matrix argument against its buffer; returns the elements it spans.
fn check_matrix<T>(name: &'static str, buf: &[T], rows: usize, cols: usize, ld: usize) -> Result<usize> {
    let needed = matrix_len(name, rows, cols, ld)?;
    check_len(name, buf.len(), needed)?;
    Ok(needed)
}

/// Copies rows `p0 .. p0 + kc` and columns `j0 .. j0 + cols` of B into panels of `nr` columns
/// (in slot order, zero-padded past `cols`): row `p` of panel `jp` goes to
/// `out[jp * panel_stride + p * nr..][..nr]`. B is read row by row (each row of the block once,
/// contiguously); full rows take a fast path (a copy, or the 16-wide pairing in fixed-size arrays,
/// which compiles to two unpack instructions). This runs over all of B on every plain call.
#[allow(clippy::too_many_arguments)]
fn pack_panels(
    nr: usize,
    paired: bool,
    b: &[bf16],
    ldb: usize,
    p0: usize,
    kc: usize,
    j0: usize,
    cols: usize,
    out: &mut [bf16],
    panel_stride: usize,
) {
    if cols == 0 {
        return;
    }
    for p in 0..kc {
        let b_row = &b[(p0 + p) * ldb + j0..(p0 + p) * ldb + j0 + cols];
        for (jp, src) in b_row.chunks(nr).enumerate() {
            let row = &mut out[jp * panel_stride + p * nr..jp * panel_stride + (p + 1) * nr];
            match (src.len() == nr, paired, nr) {
                (true, false, _) => row.copy_from_slice(src),
                (true, true, 16) => pair_halves::<16>(src, row),
                (true, true, 32) => pair_halves::<32>(src, row),
                _ => {
                    row.fill(bf16::ZERO);
                    for (c, &v) in src.iter().enumerate() {
                        row[Layout::slot(nr, paired, c)] = v;
                    }
                }
            }
        }
    }
}

/// One full row of a paired `N`-column panel: column `c` to slot `2c`, column `c + N / 2` to
/// `2c + 1` (fixed-size arrays, so it compiles to unpack instructions).
#[inline]
fn pair_halves<const N: usize>(src: &[bf16], row: &mut [bf16]) {
    let (Some(src), Some(row)) = (src.first_chunk::<N>(), row.first_chunk_mut::<N>()) else {
        return;
    };
    for c in 0..N / 2 {
        row[2 * c] = src[c];
        row[2 * c + 1] = src[c + N / 2];
    }
}

/// Rows of B ahead that [`pack_pairs`] prefetches.
#[cfg(target_arch = "x86_64")]
const PACK_PREFETCH_ROWS: usize = 8;

/// As [`pack_panels`] for [`Layout::KPairs`] (`p0` even): the pair of rows `p0 + 2q`, `+ 1` of
/// panel `jp` goes to `out[jp * panel_stride + 2 q nr..][..2 nr]`, interleaved column by column
/// (a missing second row of an odd `kc` as zeros).
#[allow(clippy::too_many_arguments)]
fn pack_pairs(
    nr: usize,
    b: &[bf16],
    ldb: usize,
    p0: usize,
    kc: usize,
    j0: usize,
    cols: usize,
    out: &mut [bf16],
    panel_stride: usize,
) {
    if cols == 0 {
        return;
    }
    let row = |p: usize| &b[(p0 + p) * ldb + j0..(p0 + p) * ldb + j0 + cols];
    for q in 0..kc.div_ceil(2) {
        // The rows of a strip lie a leading dimension apart (a page or more for large n), too many
        // streams for the hardware prefetcher: ask for the pair PACK_PREFETCH_ROWS ahead.
        #[cfg(target_arch = "x86_64")]
        if 2 * q + PACK_PREFETCH_ROWS < kc {
            let ahead = b.as_ptr().wrapping_add((p0 + 2 * q + PACK_PREFETCH_ROWS) * ldb + j0);
            for c in (0..cols).step_by(32) {
                crate::kernels::prefetch_tile(ahead.wrapping_add(c), 2, ldb, 1);
            }
        }
        let (even, odd) = (row(2 * q), (2 * q + 1 < kc).then(|| row(2 * q + 1)));
        for jp in 0..cols.div_ceil(nr) {
            let group = &mut out[jp * panel_stride + 2 * q * nr..jp * panel_stride + 2 * (q + 1) * nr];
            let width = nr.min(cols - jp * nr);
            let (even, odd) = (&even[jp * nr..jp * nr + width], odd.map(|o| &o[jp * nr..jp * nr + width]));
            if let (true, Some(odd)) = (width == nr, odd) {
                // A whole panel and both rows: a plain interleave, which the compiler vectorizes.
                for ((slots, &e), &o) in group.chunks_exact_mut(2).zip(even).zip(odd) {
                    slots[0] = e;
                    slots[1] = o;
                }
                continue;
            }
            for (c, slots) in group.chunks_exact_mut(2).enumerate() {
                slots[0] = even.get(c).copied().unwrap_or(bf16::ZERO);
                slots[1] = odd.and_then(|o| o.get(c).copied()).unwrap_or(bf16::ZERO);
            }
        }
    }
}

/// B (`k x n`) packed for one kernel's layout. Pack once, multiply many times.
#[derive(Clone, Debug)]
pub struct PackedB {
    layout: Layout,
    k: usize,
    n: usize,
    data: Vec<bf16>,
}

impl PackedB {
    /// Packs row-major `b` (`k x n`, leading dimension `ldb`) for the active tier.
    pub fn pack(k: usize, n: usize, b: &[bf16], ldb: usize) -> Result<Self> {
        Self::pack_on(Isa::active(), k, n, b, ldb)
    }

    /// Packs `b` in the layout `isa`'s kernel reads.
    pub fn pack_on(isa: Isa, k: usize, n: usize, b: &[bf16], ldb: usize) -> Result<Self> {
        isa.ensure_available()?;
        Self::pack_for(Kernel::for_isa(isa), k, n, b, ldb)
    }

    /// Packs `b` in the layout `kernel` reads.
    pub(crate) fn pack_for(kernel: Kernel, k: usize, n: usize, b: &[bf16], ldb: usize) -> Result<Self> {
        check_matrix("b", b, k, n, ldb)?;
        let layout = kernel.layout();
        let data = match layout {
            Layout::RowMajor => {
                let mut data = try_vec(checked_product("packed b", &[k, n])?, bf16::ZERO)?;
                for (p, row) in data.chunks_exact_mut(n.max(1)).take(k).enumerate() {
                    row.copy_from_slice(&b[p * ldb..p * ldb + n]);
                }
                data
            }
            Layout::Panels { nr, paired } => {
                let mut data = try_vec(checked_product("packed b", &[n.div_ceil(nr), k, nr])?, bf16::ZERO)?;
                // KC rows at a time, so each block of B's rows is read once while it is in cache.
                for pc in (0..k).step_by(KC) {
                    pack_panels(nr, paired, b, ldb, pc, KC.min(k - pc), 0, n, &mut data[pc * nr..], k * nr);
                }
                data
            }
            Layout::KPairs { nr } => {
                let rows = layout.stored_rows(k);
                let mut data =
                    try_vec(checked_product("packed b", &[n.div_ceil(nr), rows, nr])?, bf16::ZERO)?;
                for pc in (0..k).step_by(KC) {
                    pack_pairs(nr, b, ldb, pc, KC.min(k - pc), 0, n, &mut data[pc * nr..], rows * nr);
                }
                data
            }
        };
        Ok(PackedB { layout, k, n, data })
    }

    /// Rows of B (the GEMM's `k`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B (the GEMM's `n`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The layout the data is in (that of the kernel it was packed for).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Element `(p, j)` of B (`p < k`, `j < n`).
    pub fn get(&self, p: usize, j: usize) -> bf16 {
        match self.layout {
            Layout::RowMajor => self.data[p * self.n + j],
            Layout::Panels { nr, paired } => {
                self.data[((j / nr) * self.k + p) * nr + Layout::slot(nr, paired, j % nr)]
            }
            Layout::KPairs { nr } => {
                let rows = self.layout.stored_rows(self.k);
                self.data[((j / nr) * rows + (p & !1)) * nr + 2 * (j % nr) + (p & 1)]
            }
        }
    }
}

/// `C = A * B` with bf16 A (`m x k`, `lda`) and B (`k x n`, `ldb`), f32 C (`m x n`, `ldc`), overwritten.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16bf16_f32(
    m: usize,
    n: usize,
    k: usize,
    a: &[bf16],
    lda: usize,
    b: &[bf16],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    gemm_on(Isa::active(), m, n, k, a, lda, b, ldb, c, ldc)
}

/// [`gemm_bf16bf16_f32`] on a chosen tier: streams B for small `m`, packs it whole otherwise.
#[allow(clippy::too_many_arguments)]
pub fn gemm_on(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[bf16],
    lda: usize,
    b: &[bf16],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    isa.ensure_available()?;
    gemm_with(Kernel::for_isa(isa), m, n, k, a, lda, b, ldb, c, ldc)
}

/// [`gemm_on`] with a given kernel, which must be one of an available tier.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_with(
    kernel: Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: &[bf16],
    lda: usize,
    b: &[bf16],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    check_matrix("a", a, m, k, lda)?;
    check_matrix("b", b, k, n, ldb)?;
    let c_len = check_matrix("c", c, m, n, ldc)?;
    let c = &mut c[..c_len];
    if m == 0 || n == 0 {
        return Ok(());
    }
    let simd = match kernel {
        Kernel::Scalar => {
            scalar::gemm(m, n, k, a, lda, b, ldb, c, ldc);
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx2 kernel comes from a tier ensure_available confirmed (avx2, fma).
        kernel @ Kernel::Avx2 => unsafe { Simd::new(kernel, x86::microkernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx512Bf16 kernel comes from an available AVX-512 tier with BF16 (has_bf16).
        kernel @ Kernel::Avx512Bf16 => unsafe { Simd::new(kernel, x86_512::microkernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx512Fma kernel comes from an available AVX-512 tier (F, BW, VL; FMA).
        kernel @ Kernel::Avx512Fma => unsafe { Simd::new(kernel, x86_512::fma_microkernel) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the Neon kernel comes from a tier ensure_available confirmed (neon).
        kernel @ Kernel::Neon => unsafe { Simd::new(kernel, aarch64::microkernel) },
    };
    if k == 0 {
        zero(c, n, ldc);
        return Ok(());
    }
    if m > STREAM_MAX_M {
        let packed = PackedB::pack_for(kernel, k, n, b, ldb)?;
        return simd.run_packed(m, a, lda, &packed, c, ldc);
    }
    simd.run_streaming(m, n, k, a, lda, b, ldb, c, ldc)
}

/// `C = A * B` with B prepacked: A `m x b.k()` (`lda`), C `m x b.n()` (`ldc`), overwritten.
pub fn gemm_packed(m: usize, a: &[bf16], lda: usize, b: &PackedB, c: &mut [f32], ldc: usize) -> Result<()> {
    gemm_packed_on(Isa::active(), m, a, lda, b, c, ldc)
}

/// [`gemm_packed`] on a chosen tier, which must read the layout `b` was packed in. With feature
/// `parallel`, large products split their rows across rayon's threads.
pub fn gemm_packed_on(
    isa: Isa,
    m: usize,
    a: &[bf16],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    isa.ensure_available()?;
    gemm_packed_with(Kernel::for_isa(isa), m, a, lda, b, c, ldc)
}

/// [`gemm_packed_on`] with a given kernel, which must be one of an available tier.
pub(crate) fn gemm_packed_with(
    kernel: Kernel,
    m: usize,
    a: &[bf16],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
) -> Result<()> {
    if b.layout != kernel.layout() {
        return Err(Error::invalid(
            "packed b",
            format!("{:?}", b.layout),
            format!(
                "kernel {kernel:?} reads {:?}: pack B for its tier with PackedB::pack_on",
                kernel.layout()
            ),
        ));
    }
    let (n, k) = (b.n, b.k);
    check_matrix("a", a, m, k, lda)?;
    let c_len = check_matrix("c", c, m, n, ldc)?;
    let c = &mut c[..c_len];
    if m == 0 || n == 0 {
        return Ok(());
    }
    let simd = match kernel {
        Kernel::Scalar => {
            scalar::gemm(m, n, k, a, lda, &b.data, n, c, ldc);
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx2 kernel comes from a tier ensure_available confirmed (avx2, fma).
        kernel @ Kernel::Avx2 => unsafe { Simd::new(kernel, x86::microkernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx512Bf16 kernel comes from an available AVX-512 tier with BF16 (has_bf16).
        kernel @ Kernel::Avx512Bf16 => unsafe { Simd::new(kernel, x86_512::microkernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx512Fma kernel comes from an available AVX-512 tier (F, BW, VL; FMA).
        kernel @ Kernel::Avx512Fma => unsafe { Simd::new(kernel, x86_512::fma_microkernel) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the Neon kernel comes from a tier ensure_available confirmed (neon).
        kernel @ Kernel::Neon => unsafe { Simd::new(kernel, aarch64::microkernel) },
    };
    if k == 0 {
        zero(c, n, ldc);
        return Ok(());
    }
    simd.run_packed(m, a, lda, b, c, ldc)
}

/// Sets the `n` columns of every row of C to zero (a product with `k = 0`).
fn zero(c: &mut [f32], n: usize, ldc: usize) {
    for row in c.chunks_mut(ldc) {
        row[..n].fill(0.0);
    }
}

/// The shape of one microkernel call: `mr <= MR` rows, `nr <= NR` columns, `kc` deep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile {
    /// Rows of C written (and computed).
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
    /// Stores rows `0..mr`, columns `0..nr` of a spilled register tile (rows `NR` apart) into C.
    pub(crate) fn store(&self, tile: &[f32], tile_nr: usize, c: &mut [f32]) {
        for r in 0..self.mr {
            let src = &tile[r * tile_nr..r * tile_nr + self.nr];
            let dst = &mut c[r * self.ldc..r * self.ldc + self.nr];
            if self.accumulate {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// A SIMD microkernel: `C tile (+)= A panel (kc x MR f32) * B panel (kc x NR bf16, the kernel's layout)`.
///
/// # Safety
/// The CPU has the kernel's features; `a` holds `kc * MR`, `b` `kc * NR` and `c`
/// `(mr - 1) * ldc + nr` elements (checked by [`Simd::call`]).
type Micro = unsafe fn(Tile, &[f32], &[bf16], &mut [f32]);

/// A SIMD kernel ready to run: its tile and its microkernel.
struct Simd {
    mr: usize,
    nr: usize,
    layout: Layout,
    micro: Micro,
}

impl Simd {
    /// # Safety
    /// `micro` must be `kernel`'s microkernel, and the CPU must have `kernel`'s features.
    unsafe fn new(kernel: Kernel, micro: Micro) -> Simd {
        Simd { mr: kernel.mr(), nr: kernel.nr(), layout: kernel.layout(), micro }
    }

    /// Packs a block of B (rows `p0 .. p0 + kc`, columns `j0 .. j0 + cols`) in the kernel's layout.
    #[allow(clippy::too_many_arguments)]
    fn pack_b(
        &self,
        b: &[bf16],
        ldb: usize,
        p0: usize,
        kc: usize,
        j0: usize,
        cols: usize,
        out: &mut [bf16],
        panel_stride: usize,
    ) {
        match self.layout {
            Layout::Panels { nr, paired } => {
                pack_panels(nr, paired, b, ldb, p0, kc, j0, cols, out, panel_stride)
            }
            Layout::KPairs { nr } => pack_pairs(nr, b, ldb, p0, kc, j0, cols, out, panel_stride),
            // The scalar kernel reads B in place; it never gets here.
            Layout::RowMajor => {}
        }
    }

    /// Runs the microkernel on one tile after checking the buffers hold it (an internal invariant).
    fn call(&self, tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
        assert!(tile.mr >= 1 && tile.mr <= self.mr && tile.nr >= 1 && tile.nr <= self.nr);
        assert!(a.len() >= tile.kc * self.mr && b.len() >= tile.kc * self.nr);
        assert!(c.len() >= (tile.mr - 1) * tile.ldc + tile.nr);
        // SAFETY: Simd::new's contract gives the CPU features; the buffers are asserted above.
        unsafe { (self.micro)(tile, a, b, c) }
    }

    /// Packs `mc x kc` of A (from column `pc`) into MR-row panels of f32: panel `i` holds `kc`
    /// groups of MR values, zero past row `mc`.
    fn pack_a(&self, a: &[bf16], lda: usize, pc: usize, mc: usize, kc: usize, out: &mut [f32]) {
        let mr = self.mr;
        if let Layout::KPairs { .. } = self.layout {
            // Pairs of k as one 32-bit word per row (row p low, p + 1 high), zero-padded.
            for (i, panel) in out[..mc.div_ceil(mr) * mr * kc].chunks_exact_mut(mr * kc).enumerate() {
                let rows = mr.min(mc - i * mr);
                for r in 0..mr {
                    let src = (r < rows).then(|| &a[(i * mr + r) * lda + pc..(i * mr + r) * lda + pc + kc]);
                    for q in 0..kc.div_ceil(2) {
                        let at = |p: usize| src.and_then(|s| s.get(p)).map_or(0, |v| u32::from(v.to_bits()));
                        panel[q * mr + r] = f32::from_bits(at(2 * q) | at(2 * q + 1) << 16);
                    }
                }
            }
            return;
        }
        for (i, panel) in out[..mc.div_ceil(mr) * mr * kc].chunks_exact_mut(mr * kc).enumerate() {
            let rows = mr.min(mc - i * mr);
            for r in 0..mr {
                if r < rows {
                    let src = &a[(i * mr + r) * lda + pc..(i * mr + r) * lda + pc + kc];
                    for (p, &v) in src.iter().enumerate() {
                        panel[p * mr + r] = v.to_f32();
                    }
                } else {
                    for p in 0..kc {
                        panel[p * mr + r] = 0.0;
                    }
                }
            }
        }
    }

    /// Every column panel of a `kc`-deep B block against every MR-row panel of a packed A block;
    /// `b_panel(jr)` gives panel `jr` (`kc x NR`) and `c` starts at the block's first element.
    #[allow(clippy::too_many_arguments)]
    fn block<'b>(
        &self,
        mc: usize,
        cols: usize,
        kc: usize,
        accumulate: bool,
        a_pack: &[f32],
        b_panel: impl Fn(usize) -> &'b [bf16],
        c: &mut [f32],
        ldc: usize,
    ) {
        for jr in 0..cols.div_ceil(self.nr) {
            let nr = self.nr.min(cols - jr * self.nr);
            let b = b_panel(jr);
            for ir in (0..mc).step_by(self.mr) {
                let tile = Tile { mr: self.mr.min(mc - ir), nr, kc, accumulate, ldc };
                let a = &a_pack[ir * kc..(ir + self.mr) * kc];
                self.call(tile, a, b, &mut c[ir * ldc + jr * self.nr..]);
            }
        }
    }

    /// Rows per task, and the number of tasks, for `m` rows (one task unless the product is large
    /// and rayon has more than one thread).
    fn split(&self, m: usize, n: usize, k: usize) -> (usize, usize) {
        #[cfg(feature = "parallel")]
        {
            let work = m.saturating_mul(n).saturating_mul(k);
            if work >= PARALLEL_MIN_MACS && m >= 2 * self.mr && rayon::current_num_threads() > 1 {
                let tasks = rayon::current_num_threads().min(m / self.mr);
                let rows = m.div_ceil(tasks).div_ceil(self.mr) * self.mr;
                return (rows, m.div_ceil(rows));
            }
        }
        let _ = (n, k);
        (m, 1)
    }

    /// Runs `body(row0, c_rows, scratch)` over row blocks of C, across threads when `split` says so.
    /// Every scratch buffer (`scratch_len` f32 each) is allocated before C is touched.
    #[allow(clippy::too_many_arguments)]
    fn for_row_tasks(
        &self,
        m: usize,
        n: usize,
        k: usize,
        c: &mut [f32],
        ldc: usize,
        scratch_len: usize,
        body: impl Fn(usize, usize, &mut [f32], &mut [f32]) + Send + Sync,
    ) -> Result<()> {
        let (rows_per_task, tasks) = self.split(m, n, k);
        let mut scratch = Vec::new();
        scratch
            .try_reserve_exact(tasks)
            .map_err(|_| Error::OutOfMemory { bytes: tasks * scratch_len * 4 })?;
        for _ in 0..tasks {
            scratch.push(try_vec(scratch_len, 0.0f32)?);
        }
        let run = |(t, (c_rows, s)): (usize, (&mut [f32], &mut Vec<f32>))| {
            let row0 = t * rows_per_task;
            body(row0, rows_per_task.min(m - row0), c_rows, s);
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

    /// The packed path (Goto/BLIS order): k in `KC` slices, rows in `MC` blocks packed to f32,
    /// then every B panel against every A row panel. `k > 0`, `m, n > 0`, arguments checked.
    fn run_packed(
        &self,
        m: usize,
        a: &[bf16],
        lda: usize,
        b: &PackedB,
        c: &mut [f32],
        ldc: usize,
    ) -> Result<()> {
        let (n, k, nr) = (b.n, b.k, self.nr);
        self.for_row_tasks(m, n, k, c, ldc, MC * KC, |row0, rows, c, a_pack| {
            let a = &a[row0 * lda..];
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                for ic in (0..rows).step_by(MC) {
                    let mc = MC.min(rows - ic);
                    self.pack_a(&a[ic * lda..], lda, pc, mc, kc, a_pack);
                    let (rows, kcs) = (b.layout.stored_rows(k), b.layout.stored_rows(kc));
                    let panel = |jr: usize| &b.data[(jr * rows + pc) * nr..(jr * rows + pc + kcs) * nr];
                    self.block(mc, n, kc, pc > 0, a_pack, panel, &mut c[ic * ldc..], ldc);
                }
            }
        })
    }

    /// The streaming path for small `m` (all rows in one A block): for each `KC` slice, pack A,
    /// then copy B a strip of `STRIP_PANELS` panels at a time and run every row against it.
    #[allow(clippy::too_many_arguments)]
    fn run_streaming(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: &[bf16],
        lda: usize,
        b: &[bf16],
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
    ) -> Result<()> {
        debug_assert!(m <= MC);
        let strip_cols = STRIP_PANELS * self.nr;
        // One scratch holds the packed A block and, after it, the strip (bf16, two per f32 slot).
        let a_len = m.div_ceil(self.mr) * self.mr * KC;
        let strip_len = (KC * strip_cols).div_ceil(2);
        self.for_row_tasks(m, n, k, c, ldc, a_len + strip_len, |row0, rows, c, scratch| {
            let a = &a[row0 * lda..];
            let (a_pack, strip) = scratch.split_at_mut(a_len);
            let strip: &mut [bf16] = bytemuck::cast_slice_mut(strip);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                self.pack_a(a, lda, pc, rows, kc, a_pack);
                for j0 in (0..n).step_by(strip_cols) {
                    let cols = strip_cols.min(n - j0);
                    let panel_len = self.layout.stored_rows(kc) * self.nr;
                    self.pack_b(b, ldb, pc, kc, j0, cols, strip, panel_len);
                    let strip = &*strip;
                    let panel = |jr: usize| &strip[jr * panel_len..(jr + 1) * panel_len];
                    self.block(rows, cols, kc, pc > 0, a_pack, panel, &mut c[j0..], ldc);
                }
            }
        })
    }
}
