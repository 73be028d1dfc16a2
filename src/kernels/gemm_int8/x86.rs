//! AVX2 microkernels: an `R x 16` tile of i32 (`R <= 6`) in `2 R` ymm accumulators; `R < 6` serves
//! the last rows of A and small `m` (the decode step's `m = 1`) without computing padding rows.
//!
//! B quads hold 16 columns x 4 k bytes (two vectors of 8 columns); A gives four bytes per row per
//! quad, broadcast to every lane. Two exact sequences:
//! - narrow (`vpmaddubsw` then `vpmaddwd` by ones): exact only when no i16 pair sum saturates,
//!   which the driver guarantees (A <= 127 or B in [-64, 63]);
//! - wide (full range): B bytes sign-extended in place into even/odd k i16 vectors, A pre-widened
//!   to i16 pairs, two `vpmaddwd` per vector: products of 8-bit values never overflow there.

use super::blocking::{KU, MR, NR};
use super::pack::{Quad, WideQuad};
use crate::kernels::prefetch_tile;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// How far ahead of the quad being multiplied B is prefetched (16 quads = 1 KiB).
const PREFETCH_QUADS: usize = 16;

/// Proof that AVX2, FMA and F16C are present: made only by [`Avx2::detect`], held by
/// [`Kernel`](super::Kernel)'s AVX2 variant, so a kernel value is the licence to call these
/// functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, when the CPU has the features.
    pub(crate) fn detect() -> Option<Avx2> {
        crate::kernels::Isa::Avx2.is_available().then_some(Avx2(()))
    }
}

/// Adds (or stores) the accumulators into the tile at `c`.
///
/// # Safety
/// AVX2 must be available; `c` must be valid for reads and writes of `R` rows of `NR` i32
/// spaced `ldc` apart.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store<const R: usize>(acc: &[[__m256i; 2]; R], c: *mut i32, ldc: usize, accumulate: bool) {
    for (r, row) in acc.iter().enumerate() {
        for (g, &v) in row.iter().enumerate() {
            // SAFETY: AVX2 is enabled in this function and the caller guarantees the tile is inside C; unaligned access is allowed.
            unsafe {
                let p = c.add(r * ldc + g * 8).cast::<__m256i>();
                let v = if accumulate { _mm256_add_epi32(_mm256_loadu_si256(p), v) } else { v };
                _mm256_storeu_si256(p, v);
            }
        }
    }
}

/// Narrow kernel: `tile (+)= A B` over `quads` quads with `vpmaddubsw` + `vpmaddwd`.
///
/// # Safety
/// AVX2 must be available; `R <= MR`; `a` must hold `quads * MR * 4` bytes (rows `MR` apart, the
/// first `R` read), `b` `quads` quads, and `c` an `R x NR` tile with leading dimension `ldc`. No
/// i16 pair sum `a0*b0 + a1*b1` may exceed the i16 range (A <= 127 or B in [-64, 63]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn kernel_narrow<const R: usize>(
    quads: usize,
    a: *const u8,
    b: *const Quad,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    let ones = _mm256_set1_epi16(1);
    prefetch_tile(c, R, ldc, NR);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for q in 0..quads {
        // SAFETY: q < quads, so the quad and the A bytes read are inside the caller's buffers;
        // Quad is 64-byte aligned.
        unsafe {
            let bq = b.add(q).cast::<__m256i>();
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(q + PREFETCH_QUADS).cast::<i8>());
            let b0 = _mm256_load_si256(bq);
            let b1 = _mm256_load_si256(bq.add(1));
            let aq = a.add(q * MR * KU);
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(aq.add(r * KU).cast::<i32>().read_unaligned());
                acc_row[0] =
                    _mm256_add_epi32(acc_row[0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
                acc_row[1] =
                    _mm256_add_epi32(acc_row[1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
            }
        }
    }
    // SAFETY: AVX2 is enabled in this function and the caller guarantees the tile.
    unsafe { store(&acc, c, ldc, accumulate) }
}

/// The even-k and odd-k i16 vectors of one eight-column B vector: i16 lane `2c + h` holds bytes
/// `k(2h), k(2h + 1)` of column `c`, the low byte the even k.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn even_odd(bv: __m256i) -> (__m256i, __m256i) {
    (_mm256_srai_epi16(_mm256_slli_epi16(bv, 8), 8), _mm256_srai_epi16(bv, 8))
}

/// Sign-extends B quads into the [`WideQuad`] layout of [`kernel_wide_b`].
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn widen(b: &[Quad], out: &mut [WideQuad]) {
    for (q, w) in b.iter().zip(out.iter_mut()) {
        let src = q.0.as_ptr().cast::<__m256i>();
        let dst = w.0.as_mut_ptr().cast::<__m256i>();
        for g in 0..NR / 8 {
            // SAFETY: a Quad holds two and a WideQuad four 32-byte vectors, both 64-byte aligned.
            unsafe {
                let (even, odd) = even_odd(_mm256_load_si256(src.add(g)));
                _mm256_store_si256(dst.add(2 * g), even);
                _mm256_store_si256(dst.add(2 * g + 1), odd);
            }
        }
    }
}

/// Wide kernel over widened B: `tile (+)= A B` over `quads` quads, exact for every u8 A and i8 B,
/// two `vpmaddwd` and two adds per row and eight columns, as many multiplies as the narrow kernel.
/// The quad's four B vectors stay in registers while each row broadcasts its A pairs once, which
/// leaves room for four rows of accumulators: a five-row tile runs as four rows, then one.
///
/// # Safety
/// As [`kernel_wide`], with `R <= 4` and `b` holding `quads` [`WideQuad`]s.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn kernel_wide_b<const R: usize>(
    quads: usize,
    a: *const i16,
    b: *const WideQuad,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    prefetch_tile(c, R, ldc, NR);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for q in 0..quads {
        // SAFETY: q < quads keeps every read inside the caller's buffers; WideQuad is 64-byte aligned.
        unsafe {
            let bq = b.add(q).cast::<__m256i>();
            let aq = a.add(q * MR * KU);
            let bv: [__m256i; 4] = core::array::from_fn(|v| _mm256_load_si256(bq.add(v)));
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let pairs = aq.add(r * KU).cast::<i32>();
                let a_even = _mm256_set1_epi32(pairs.read_unaligned());
                let a_odd = _mm256_set1_epi32(pairs.add(1).read_unaligned());
                for (g, acc) in acc_row.iter_mut().enumerate() {
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(bv[2 * g], a_even));
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(bv[2 * g + 1], a_odd));
                }
            }
        }
    }
    // SAFETY: AVX2 is enabled in this function and the caller guarantees the tile.
    unsafe { store(&acc, c, ldc, accumulate) }
}

/// Wide kernel: `tile (+)= A B` over `quads` quads, exact for every u8 A and i8 B.
///
/// # Safety
/// AVX2 must be available; `R <= MR`; `a` must hold `quads * MR * 4` i16 in the wide layout
/// (`[a0, a2, a1, a3]` per row per quad, the first `R` rows read), `b` `quads` quads, and `c` an
/// `R x NR` tile with leading dimension `ldc`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn kernel_wide<const R: usize>(
    quads: usize,
    a: *const i16,
    b: *const Quad,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    prefetch_tile(c, R, ldc, NR);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for q in 0..quads {
        // SAFETY: q < quads keeps every read inside the caller's buffers; Quad is 64-byte aligned.
        unsafe {
            let bq = b.add(q).cast::<__m256i>();
            // Decode-size products stream B from DRAM once: ask for it a kilobyte ahead.
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(q + PREFETCH_QUADS).cast::<i8>());
            let aq = a.add(q * MR * KU);
            for g in 0..NR / 8 {
                let (even, odd) = even_odd(_mm256_load_si256(bq.add(g)));
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let pairs = aq.add(r * KU).cast::<i32>();
                    let a_even = _mm256_set1_epi32(pairs.read_unaligned());
                    let a_odd = _mm256_set1_epi32(pairs.add(1).read_unaligned());
                    acc_row[g] = _mm256_add_epi32(acc_row[g], _mm256_madd_epi16(even, a_even));
                    acc_row[g] = _mm256_add_epi32(acc_row[g], _mm256_madd_epi16(odd, a_odd));
                }
            }
        }
    }
    // SAFETY: AVX2 is enabled in this function and the caller guarantees the tile.
    unsafe { store(&acc, c, ldc, accumulate) }
}

/// How far ahead (bytes) each B row the streaming kernel reads is prefetched. Asking once per
/// 64-byte line (not per 16-column tile) and 512 bytes ahead measured slower (DRAM GEMV 0.80x a
/// plain read, against 0.91-0.99x for this, in alternating runs).
const STREAM_PREFETCH: usize = 320;

/// Streaming kernel for few rows of A and row-major B, no packing: `tile (+)= A B` for an
/// `R x 16` tile over `pairs` pairs of k, exact for every input (u8 or i8 A, i8 B).
///
/// Per pair of k, the 16 bytes of B row `2p` and of row `2p + 1` are interleaved (`vpunpck*bw`)
/// and sign-extended (`vpmovsxbw`) into two vectors of eight (b[2p][j], b[2p+1][j]) i16 pairs;
/// `a` holds each row's (a[2p], a[2p+1]) i16 pairs, broadcast, and `vpmaddwd` sums the pair into
/// column j's i32 lane: no i16 sum, hence no saturation. Signed A needs no shift.
///
/// # Safety
/// AVX2 must be available (an [`Avx2`] token exists); `R <= 6`; `a` must hold `R` rows of
/// `pairs` i32, `a_ld` apart; `b` must be valid for 16 bytes at `b + 2p ldb` and `b + (2p + 1)
/// ldb` for every `p < pairs` (`ldb` may be 0: one row twice); `c` an `R x 16` tile, `ldc` apart.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel_stream<const R: usize>(
    pairs: usize,
    a: *const i32,
    a_ld: usize,
    b: *const i8,
    ldb: usize,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
    prefetch: bool,
) {
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for p in 0..pairs {
        // SAFETY: p < pairs keeps the B rows and the A pairs inside the caller's buffers; the
        // prefetch address may lie anywhere (a prefetch never faults).
        unsafe {
            let r0 = b.add(2 * p * ldb);
            let r1 = r0.add(ldb);
            if prefetch {
                _mm_prefetch::<_MM_HINT_T0>(r0.wrapping_add(STREAM_PREFETCH));
                _mm_prefetch::<_MM_HINT_T0>(r1.wrapping_add(STREAM_PREFETCH));
            }
            let x0 = _mm_loadu_si128(r0.cast());
            let x1 = _mm_loadu_si128(r1.cast());
            let w0 = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1));
            let w1 = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1));
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(a.add(r * a_ld + p).read());
                acc_row[0] = _mm256_add_epi32(acc_row[0], _mm256_madd_epi16(w0, av));
                acc_row[1] = _mm256_add_epi32(acc_row[1], _mm256_madd_epi16(w1, av));
            }
        }
    }
    // SAFETY: AVX2 is enabled in this function and the caller guarantees the tile.
    unsafe { store(&acc, c, ldc, accumulate) }
}
