//! AVX-512 kernels: an 8 x 32 f32 register tile for GEMM (sixteen zmm accumulators; f16 weights
//! widened with the zmm `vcvtph2ps`, bf16 by a 16-bit shift, int8 by sign extension), C stored
//! through masks, and four-row GEMV with 32 weights a step.

use super::{as_kind, GemvWeight, Tile, WeightElement, WeightKind};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// Sixteen f32 weights at `p`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
unsafe fn load_f32(p: *const f32) -> __m512 {
    // SAFETY: the caller guarantees 16 readable elements at p.
    unsafe { _mm512_loadu_ps(p) }
}

/// Sixteen f16 weights at `p`, widened exactly.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
unsafe fn load_f16(p: *const f16) -> __m512 {
    // SAFETY: the caller guarantees 16 readable elements (32 bytes) at p.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
}

/// Sixteen bf16 weights at `p`, widened exactly (the bits move to the top half of an f32).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
unsafe fn load_bf16(p: *const bf16) -> __m512 {
    // SAFETY: the caller guarantees 16 readable elements (32 bytes) at p.
    unsafe {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))))
    }
}

/// Sixteen int8 weights at `p`, as f32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
unsafe fn load_i8(p: *const i8) -> __m512 {
    // SAFETY: the caller guarantees 16 readable bytes at p.
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
}

/// Rows of C per microkernel call (sixteen accumulators with [`NR`]).
pub(super) const MR: usize = 8;
/// Columns of C per microkernel call, and the width of the packed B panels this kernel reads.
pub(super) const NR: usize = 32;
/// How far ahead (in weights) a strided B row is prefetched: two panels.
const B_AHEAD: usize = 2 * NR;

const _: () = assert!(MR == 8, "by_rows_8! names the row counts 1..=8");

/// Runs `$body::<R, PF>` for the tile's row count `R` (1..=8) and `PF` = whether B is read in place.
macro_rules! by_rows_8 {
    ($body:ident, $tile:expr, $($arg:expr),*) => {{
        let strided = $tile.b_stride != NR;
        // SAFETY: forwarded from the caller's contract (CPU features and buffer extents).
        unsafe {
            match ($tile.mr, strided) {
                (1, false) => $body::<1, false>($($arg),*),
                (2, false) => $body::<2, false>($($arg),*),
                (3, false) => $body::<3, false>($($arg),*),
                (4, false) => $body::<4, false>($($arg),*),
                (5, false) => $body::<5, false>($($arg),*),
                (6, false) => $body::<6, false>($($arg),*),
                (7, false) => $body::<7, false>($($arg),*),
                (_, false) => $body::<8, false>($($arg),*),
                (1, true) => $body::<1, true>($($arg),*),
                (2, true) => $body::<2, true>($($arg),*),
                (3, true) => $body::<3, true>($($arg),*),
                (4, true) => $body::<4, true>($($arg),*),
                (5, true) => $body::<5, true>($($arg),*),
                (6, true) => $body::<6, true>($($arg),*),
                (7, true) => $body::<7, true>($($arg),*),
                (_, true) => $body::<8, true>($($arg),*),
            }
        }
    }};
}

macro_rules! kernels {
    ($microkernel:ident, $dots:ident, $sweep:ident, $t:ty, $load:ident) => {
        /// One `mr x nr` tile of C (`mr <= MR`, `nr <= NR`) from an MR-row panel of packed A and
        /// `kc` rows of NR weights, `tile.b_stride` apart.
        ///
        /// # Safety
        /// The CPU has AVX-512 F/BW/VL/DQ and FMA; the buffers hold the tile (`Tile::assert_fits`).
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
        #[allow(dead_code)]
        unsafe fn $microkernel(tile: Tile, a: &[f32], b: &[$t], c: &mut [f32]) {
            /// The tile with `R` rows of C in registers; `PF` prefetches B rows ahead.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
            #[inline]
            unsafe fn rows<const R: usize, const PF: bool>(tile: Tile, a: &[f32], b: &[$t], c: &mut [f32]) {
                crate::kernels::prefetch_tile(c.as_ptr(), R, tile.ldc, tile.nr);
                let mut acc = [[_mm512_setzero_ps(); 2]; R];
                let (ap, bp, ldb) = (a.as_ptr(), b.as_ptr(), tile.b_stride);
                for p in 0..tile.kc {
                    let row = bp.wrapping_add(p * ldb);
                    if PF {
                        // A prefetch never faults; wrapping_add keeps the address defined past B.
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(B_AHEAD).cast());
                    }
                    // SAFETY: a holds kc * MR elements and b (kc - 1) * b_stride + NR (asserted
                    // by the caller), so row p has NR weights and A's panel MR values at p.
                    unsafe {
                        let b0 = $load(row);
                        let b1 = $load(row.add(16));
                        for (r, acc_row) in acc.iter_mut().enumerate() {
                            let av = _mm512_set1_ps(*ap.add(p * MR + r));
                            acc_row[0] = _mm512_fmadd_ps(av, b0, acc_row[0]);
                            acc_row[1] = _mm512_fmadd_ps(av, b1, acc_row[1]);
                        }
                    }
                }
                let low = if tile.nr >= 16 { u16::MAX } else { (1u16 << tile.nr) - 1 };
                let high =
                    if tile.nr >= NR { u16::MAX } else { ((1u32 << tile.nr.saturating_sub(16)) - 1) as u16 };
                for (r, acc_row) in acc.iter().enumerate() {
                    // SAFETY: row r < R of c holds tile.nr elements at r * ldc (asserted by the
                    // caller); the masks keep every access inside them.
                    unsafe {
                        let cp = c.as_mut_ptr().add(r * tile.ldc);
                        let (mut v0, mut v1) = (acc_row[0], acc_row[1]);
                        if tile.accumulate {
                            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(low, cp));
                            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(high, cp.add(16)));
                        }
                        _mm512_mask_storeu_ps(cp, low, v0);
                        _mm512_mask_storeu_ps(cp.add(16), high, v1);
                    }
                }
            }
            by_rows_8!(rows, tile, tile, a, b, c)
        }

        /// Dot products of `R` weight rows (from `rows`, `ldw` apart) with `x`, prefetching the
        /// next `R` rows into L2 as they go.
        ///
        /// # Safety
        /// The CPU has AVX-512 F/BW/VL/DQ and FMA; `w` holds `(R - 1) * ldw + k` elements and `x` `k`.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
        unsafe fn $dots<const R: usize>(w: &[$t], ldw: usize, k: usize, x: &[f32]) -> [f32; R] {
            let rows: [*const $t; R] = core::array::from_fn(|r| w[r * ldw..].as_ptr());
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            let mut j = 0;
            while j + 32 <= k {
                for row in rows {
                    // A prefetch never faults; wrapping_add keeps the address defined past the last row.
                    _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(R * ldw + j).cast());
                }
                // SAFETY: j + 32 <= k, so every row and x have 32 elements from j.
                unsafe {
                    let x0 = _mm512_loadu_ps(x.as_ptr().add(j));
                    let x1 = _mm512_loadu_ps(x.as_ptr().add(j + 16));
                    for (row, a) in rows.iter().zip(acc.iter_mut()) {
                        a[0] = _mm512_fmadd_ps($load(row.add(j)), x0, a[0]);
                        a[1] = _mm512_fmadd_ps($load(row.add(j + 16)), x1, a[1]);
                    }
                }
                j += 32;
            }
            core::array::from_fn(|r| {
                let tail: f32 = (j..k).map(|t| w[r * ldw + t].value() * x[t]).sum();
                _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) + tail
            })
        }

        /// `y[j] += sum_r a[r] * w[r * ldw + j]` for `j < n`: `R` rows of B swept whole, so B
        /// streams from memory row after row (the product of a single row of A).
        ///
        /// # Safety
        /// The CPU has AVX-512 F/BW/VL/DQ and FMA; `w` holds `(R - 1) * ldw + n` elements, `y` `n`.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
        #[allow(dead_code)]
        unsafe fn $sweep<const R: usize>(w: &[$t], ldw: usize, n: usize, a: [f32; R], y: &mut [f32]) {
            let rows: [*const $t; R] = core::array::from_fn(|r| w[r * ldw..].as_ptr());
            let av: [__m512; R] = a.map(|v| _mm512_set1_ps(v));
            let yp = y.as_mut_ptr();
            let mut j = 0;
            while j + 16 <= n {
                for row in rows {
                    // The next R rows, this far along: a prefetch never faults, and wrapping_add
                    // keeps the address defined past B.
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(R * ldw + j).cast());
                }
                // SAFETY: j + 16 <= n, so every row and y have 16 elements from j.
                unsafe {
                    let mut acc = _mm512_loadu_ps(yp.add(j));
                    for (row, &ar) in rows.iter().zip(&av) {
                        acc = _mm512_fmadd_ps(ar, $load(row.add(j)), acc);
                    }
                    _mm512_storeu_ps(yp.add(j), acc);
                }
                j += 16;
            }
            for t in j..n {
                for (r, &ar) in a.iter().enumerate() {
                    y[t] = ar.mul_add(w[r * ldw + t].value(), y[t]);
                }
            }
        }
    };
}

/// Packs one full panel of A: `MR` rows (`lda` apart) of `kc` values into `out[p * MR + r]`,
/// sixteen columns at a time by an in-register 8 x 16 transposition.
///
/// # Safety
/// The CPU has AVX-512 F/DQ; `a` holds `(MR - 1) * lda + kc` values and `out` `kc * MR`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(super) unsafe fn pack_a_panel(a: &[f32], lda: usize, kc: usize, out: &mut [f32]) {
    debug_assert!(a.len() >= (MR - 1) * lda + kc && out.len() >= kc * MR);
    let rows: [*const f32; MR] = core::array::from_fn(|r| a.as_ptr().wrapping_add(r * lda));
    let dst = out.as_mut_ptr();
    // Lanes 0-3 and 4-7 of 128-bit lane l of u and w (rows 0-3 and 4-7 at one column) put side
    // by side: the column's eight values, for lanes 0, 1 (low) and 2, 3 (high).
    let low = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    let high = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    let mut p = 0;
    while p + 16 <= kc {
        // SAFETY: p + 16 <= kc, so each row has 16 values at p, and out has 16 * MR at p * MR.
        unsafe {
            let r: [__m512; MR] = core::array::from_fn(|i| _mm512_loadu_ps(rows[i].add(p)));
            // Pairs of rows interleaved: t[2i] holds columns 4l, 4l+1 and t[2i+1] 4l+2, 4l+3
            // of rows 2i and 2i+1, in each 128-bit lane l.
            let t: [__m512d; MR] = core::array::from_fn(|i| {
                let (x, y) = (r[i & !1], r[i | 1]);
                _mm512_castps_pd(if i % 2 == 0 { _mm512_unpacklo_ps(x, y) } else { _mm512_unpackhi_ps(x, y) })
            });
            // u[j] (rows 0-3) and u[4 + j] (rows 4-7): column 4l + j in lane l.
            let u: [__m512; MR] = core::array::from_fn(|i| {
                let (base, j) = (if i < 4 { 0 } else { 4 }, i % 4);
                let (x, y) = (t[base + (j >> 1)], t[base + 2 + (j >> 1)]);
                _mm512_castpd_ps(if j % 2 == 0 { _mm512_unpacklo_pd(x, y) } else { _mm512_unpackhi_pd(x, y) })
            });
            for j in 0..4 {
                let lo = _mm512_permutex2var_ps(u[j], low, u[4 + j]);
                let hi = _mm512_permutex2var_ps(u[j], high, u[4 + j]);
                let at = |col: usize| dst.add((p + col) * MR);
                _mm256_storeu_ps(at(j), _mm512_castps512_ps256(lo));
                _mm256_storeu_ps(at(4 + j), _mm512_extractf32x8_ps::<1>(lo));
                _mm256_storeu_ps(at(8 + j), _mm512_castps512_ps256(hi));
                _mm256_storeu_ps(at(12 + j), _mm512_extractf32x8_ps::<1>(hi));
            }
        }
        p += 16;
    }
    for p in p..kc {
        for (r, row) in rows.iter().enumerate() {
            // SAFETY: p < kc, inside row r and inside out.
            unsafe { *dst.add(p * MR + r) = *row.add(p) };
        }
    }
}

kernels!(microkernel_f32, dots_f32, sweep_f32, f32, load_f32);
kernels!(microkernel_f16, dots_f16, sweep_f16, f16, load_f16);
kernels!(microkernel_bf16, dots_bf16, sweep_bf16, bf16, load_bf16);

kernels!(microkernel_i8, dots_i8, sweep_i8, i8, load_i8);

super::entry::weight_entry_points!("AVX-512 F/BW/VL/DQ, FMA and F16C");
