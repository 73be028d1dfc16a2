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
//! The pieces: [`blocking`] (tile and cache sizes), [`pack`] (B panels, A panels), the
//! microkernels ([`scalar`], `x86`, `aarch64`), and the driver here (cache blocking, threads).

pub mod blocking;
mod linear;
pub mod pack;
pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use linear::{ActivationQuant, QuantLinear};
pub use pack::{AElement, PackedI8};

use super::Isa;
use crate::error::{check_len, try_vec};
use crate::{Error, Result};
use blocking::{A_WHOLE_DEPTH_BYTES, KC_QUADS, KU, MC, MR, NR};
use pack::{block_is_seven_bit, pack_a_narrow, pack_a_wide, Quad, WideQuad};
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

/// The int8 GEMM on a chosen path, A u8 or i8: checks every argument (nothing is written on
/// error), packs B, and runs [`gemm_packed_on`].
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
    isa.ensure_available()?;
    check_matrix("a", a.len(), m, k, lda)?;
    check_matrix("b", b.len(), k, n, ldb)?;
    check_matrix("c", c.len(), m, n, ldc)?;
    if m == 0 || n == 0 || k == 0 {
        finish_empty(m, n, k, c, ldc, update);
        return Ok(());
    }
    let packed = PackedI8::pack(k, n, b, ldb)?;
    run(isa, update, m, a, lda, &packed, c, ldc)
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

/// [`gemm_packed`] on a chosen path.
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
    isa.ensure_available()?;
    let (n, k) = (packed.n(), packed.k());
    check_matrix("a", a.len(), m, k, lda)?;
    check_matrix("c", c.len(), m, n, ldc)?;
    if m == 0 || n == 0 || k == 0 {
        finish_empty(m, n, k, c, ldc, update);
        return Ok(());
    }
    run(isa, update, m, a, lda, packed, c, ldc)
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

/// Arguments checked, dimensions nonzero: splits the work and applies the i8 correction.
#[allow(clippy::too_many_arguments)]
fn run<T: AElement>(
    isa: Isa,
    update: Update,
    m: usize,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    c: &mut [i32],
    ldc: usize,
) -> Result<()> {
    let n = packed.n();
    let cp = CPtr(c.as_mut_ptr());
    let accumulate = update == Update::Accumulate;
    // SAFETY (for each `drive` below): dimensions were checked against the buffers, so every
    // (row < m, column < n) element of C is in `c`; the regions given to workers are disjoint.
    let whole = || unsafe { drive(isa, a, lda, packed, 0..m, 0..packed.panels(), cp, ldc, accumulate) };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        // Small products never touch rayon (not even to ask its thread count, which starts the pool).
        let macs = m.saturating_mul(n).saturating_mul(packed.k());
        let threads = if macs >= blocking::PARALLEL_MIN_MACS { rayon::current_num_threads() } else { 1 };
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
                // whose bounds were checked above; `isa` was checked available.
                split(panels, 1).into_par_iter().try_for_each(|cols| unsafe {
                    drive(isa, a, lda, packed, 0..m, cols, cp, ldc, accumulate)
                })?;
            } else {
                // SAFETY: the row ranges are disjoint, so each thread writes its own rows of C, whose
                // bounds were checked above; `isa` was checked available.
                split(m, MR).into_par_iter().try_for_each(|rows| unsafe {
                    drive(isa, a, lda, packed, rows, 0..panels, cp, ldc, accumulate)
                })?;
            }
        } else {
            whole()?;
        }
    }
    #[cfg(not(feature = "parallel"))]
    whole()?;
    if T::SHIFT != 0 {
        for i in 0..m {
            for (out, &sum) in c[i * ldc..i * ldc + n].iter_mut().zip(packed.col_sums()) {
                *out = out.wrapping_sub(T::SHIFT.wrapping_mul(sum));
            }
        }
    }
    Ok(())
}

/// Cache-blocked product of rows `rows` of A with column panels `panels` of B into C.
///
/// # Safety
/// `c` must point to a matrix with leading dimension `ldc` holding every (row in `rows`, column
/// of `panels` below `packed.n()`), not accessed by anyone else during the call; `a` must hold
/// the rows (`lda >= packed.k()`).
#[allow(clippy::too_many_arguments)]
unsafe fn drive<T: AElement>(
    isa: Isa,
    a: &[T],
    lda: usize,
    packed: &PackedI8,
    rows: Range<usize>,
    panels: Range<usize>,
    c: CPtr,
    ldc: usize,
    accumulate: bool,
) -> Result<()> {
    let (n, k, quads) = (packed.n(), packed.k(), packed.quads());
    let block_rows = MC.min(rows.len().div_ceil(MR) * MR);
    let whole_depth = block_rows * quads * KU * std::mem::size_of::<i16>() <= A_WHOLE_DEPTH_BYTES;
    let kc = if whole_depth { quads.max(1) } else { KC_QUADS };
    let block_len = block_rows * kc.min(quads) * KU;
    let mut narrow = try_vec(block_len, 0u8)?;
    let mut wide: Vec<i16> = Vec::new();
    let mut wide_b: Vec<WideQuad> = Vec::new();
    for q0 in (0..quads).step_by(kc) {
        let qn = kc.min(quads - q0);
        let ks = q0 * KU..k.min((q0 + qn) * KU);
        let add = accumulate || q0 > 0;
        for i0 in rows.clone().step_by(MC) {
            let block = i0..rows.end.min(i0 + MC);
            let use_wide = has_wide_kernels(isa)
                && !packed.is_seven_bit()
                && !block_is_seven_bit(a, lda, block.clone(), ks.clone());
            if use_wide {
                if wide.is_empty() {
                    wide = try_vec(block_len, 0i16)?;
                }
                pack_a_wide(a, lda, block.clone(), ks.clone(), &mut wide);
            } else {
                pack_a_narrow(a, lda, block.clone(), ks.clone(), &mut narrow);
            }
            // With several row tiles, B is sign-extended once per panel rather than once per tile,
            // into a buffer that stays in L1 (a whole-depth panel of the few-row case would not).
            let widen_b = use_wide && block.len() > MR && qn <= KC_QUADS;
            if widen_b && wide_b.is_empty() {
                wide_b = try_vec(kc.min(quads), WideQuad([0; NR * KU]))?;
            }
            for p in panels.clone() {
                let bytes = &packed.panel_from(p, q0)[..qn];
                #[cfg(target_arch = "x86_64")]
                let b = if widen_b {
                    // SAFETY: `use_wide` implies Isa::Avx2, checked available by the caller.
                    unsafe { x86::widen(bytes, &mut wide_b[..qn]) };
                    BPanel::Widened(&wide_b[..qn])
                } else {
                    BPanel::Bytes(bytes)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let b = BPanel::Bytes(bytes);
                let cols = NR.min(n - p * NR);
                for (pi, r0) in block.clone().step_by(MR).enumerate() {
                    let tile = Tile { rows: MR.min(block.end - r0), cols, add };
                    let a_at = pi * qn * MR * KU..(pi + 1) * qn * MR * KU;
                    let a_panel =
                        if use_wide { APanel::Wide(&wide[a_at]) } else { APanel::Narrow(&narrow[a_at]) };
                    // SAFETY: (r0.., p * NR..) is inside the caller's region of C.
                    unsafe { run_tile(isa, a_panel, b, c.0.add(r0 * ldc + p * NR), ldc, tile) };
                }
            }
        }
    }
    Ok(())
}

/// Whether the tier has the exact widened (i16) kernels for full-range operands.
const fn has_wide_kernels(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => false,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => true,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => false,
    }
}

/// A packed A row panel in the layout its kernel reads.
#[derive(Clone, Copy)]
enum APanel<'a> {
    Narrow(&'a [u8]),
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Wide(&'a [i16]),
}

/// A B panel's quads: as packed, or sign-extended for the exact wide kernel.
#[derive(Clone, Copy)]
enum BPanel<'a> {
    Bytes(&'a [Quad]),
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Widened(&'a [WideQuad]),
}

/// The part of an `MR x NR` tile that lies inside C, and whether to add to it.
#[derive(Clone, Copy)]
struct Tile {
    rows: usize,
    cols: usize,
    add: bool,
}

/// One tile: a kernel straight into C when the tile is full, else through a local buffer.
///
/// # Safety
/// `c` must be valid for reads and writes of `tile.rows` rows of `tile.cols` i32, `ldc` apart.
unsafe fn run_tile(isa: Isa, a: APanel<'_>, b: BPanel<'_>, c: *mut i32, ldc: usize, tile: Tile) {
    // AVX2 kernels come in every row count, so only a narrow last panel goes through `local`.
    let direct = match isa {
        Isa::Scalar => false,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => tile.cols == NR,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => tile.cols == NR && tile.rows == MR,
    };
    if direct {
        // SAFETY: a direct tile is `tile.rows` rows of NR columns inside C (the caller's contract).
        unsafe { simd_tile(isa, a, b, c, ldc, tile.rows, tile.add) };
        return;
    }
    let mut local = [[0i32; NR]; MR];
    match (isa, a, b) {
        (Isa::Scalar, APanel::Narrow(a), BPanel::Bytes(b)) => scalar::kernel(b.len(), a, b, &mut local),
        // SAFETY: `local` holds MR >= tile.rows rows of NR.
        _ => unsafe { simd_tile(isa, a, b, local.as_mut_ptr().cast(), NR, tile.rows, false) },
    }
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

/// The SIMD kernel of `isa` for a `rows x NR` tile at `out` (leading dimension `out_ld`).
///
/// # Safety
/// `isa` must have passed `ensure_available` and not be `Scalar`; `out` must be valid for reads
/// and writes of `rows` rows of NR i32, `out_ld` apart (a full MR rows for NEON).
unsafe fn simd_tile(
    isa: Isa,
    a: APanel<'_>,
    b: BPanel<'_>,
    out: *mut i32,
    out_ld: usize,
    rows: usize,
    add: bool,
) {
    // NEON has one kernel, for full tiles.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = rows;
    /// Calls `$kernel::<R>` with `R = rows` (1 to `MR`).
    #[cfg(target_arch = "x86_64")]
    macro_rules! by_rows {
        ($kernel:ident, $a:expr, $b:expr) => {
            match rows {
                1 => x86::$kernel::<1>($b.len(), $a, $b.as_ptr(), out, out_ld, add),
                2 => x86::$kernel::<2>($b.len(), $a, $b.as_ptr(), out, out_ld, add),
                3 => x86::$kernel::<3>($b.len(), $a, $b.as_ptr(), out, out_ld, add),
                4 => x86::$kernel::<4>($b.len(), $a, $b.as_ptr(), out, out_ld, add),
                5 => x86::$kernel::<5>($b.len(), $a, $b.as_ptr(), out, out_ld, add),
                _ => x86::$kernel::<MR>($b.len(), $a, $b.as_ptr(), out, out_ld, add),
            }
        };
    }
    match (isa, a, b) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the driver only picks Avx2 after `ensure_available`; the panels hold b.len()
        // quads (narrow: the pair sums cannot saturate, as the driver checked); `out` holds
        // `rows` rows of NR (C, or `local`).
        (Isa::Avx2 | Isa::Avx512, APanel::Narrow(a), BPanel::Bytes(b)) => unsafe {
            by_rows!(kernel_narrow, a.as_ptr(), b)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for the exact wide layout.
        (Isa::Avx2 | Isa::Avx512, APanel::Wide(a), BPanel::Bytes(b)) => unsafe {
            by_rows!(kernel_wide, a.as_ptr(), b)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, with B widened; row 4 of the A panel starts 4 * KU i16 into it.
        (Isa::Avx2 | Isa::Avx512, APanel::Wide(a), BPanel::Widened(b)) => unsafe {
            const _: () = assert!(MR == 5, "the widened kernel splits a tile as 4 + 1 rows");
            if rows == MR {
                x86::kernel_wide_b::<4>(b.len(), a.as_ptr(), b.as_ptr(), out, out_ld, add);
                x86::kernel_wide_b::<1>(
                    b.len(),
                    a.as_ptr().add(4 * KU),
                    b.as_ptr(),
                    out.add(4 * out_ld),
                    out_ld,
                    add,
                );
            } else {
                by_rows!(kernel_wide_b, a.as_ptr(), b)
            }
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: Neon was checked available; the narrow panel holds b.len() quads; `out` is a full tile.
        (Isa::Neon, APanel::Narrow(a), BPanel::Bytes(b)) => unsafe {
            aarch64::kernel(b.len(), a.as_ptr(), b.as_ptr(), out, out_ld, add)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above, with Dotprod checked available.
        (Isa::Dotprod, APanel::Narrow(a), BPanel::Bytes(b)) => unsafe {
            aarch64::kernel_dotprod(b.len(), a.as_ptr(), b.as_ptr(), out, out_ld, add)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above, with I8mm checked available.
        (Isa::I8mm, APanel::Narrow(a), BPanel::Bytes(b)) => unsafe {
            aarch64::kernel_i8mm(b.len(), a.as_ptr(), b.as_ptr(), out, out_ld, add)
        },
        _ => unreachable!("the wide layouts are packed for AVX2 only, and Scalar tiles go through `local`"),
    }
}

#[cfg(test)]
mod tests;
