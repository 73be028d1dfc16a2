//! AVX2 + FMA + F16C kernels: a 6 x 16 f32 register tile for GEMM (f16/bf16 weights converted
//! with `vcvtph2ps` / a 16-bit shift as they are loaded, from packed panels or from B in place),
//! and four-row GEMV with eight accumulators.

use super::{as_kind, GemvWeight, Tile, WeightElement, WeightKind};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// Eight f32 weights at `p`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f32(p: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 8 readable elements at p.
    unsafe { _mm256_loadu_ps(p) }
}

/// Eight f16 weights at `p`, widened exactly.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f16(p: *const f16) -> __m256 {
    // SAFETY: the caller guarantees 8 readable elements (16 bytes) at p.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// Eight bf16 weights at `p`, widened exactly (the bits move to the top half of an f32).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_bf16(p: *const bf16) -> __m256 {
    // SAFETY: the caller guarantees 8 readable elements (16 bytes) at p.
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))) }
}

/// Eight int8 weights at `p`, as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_i8(p: *const i8) -> __m256 {
    // SAFETY: the caller guarantees 8 readable bytes at p.
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
}

/// Sum of the eight lanes of `v`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps::<1>(q, q)))
}

/// Rows of C per microkernel call (twelve accumulators with [`NR`]).
pub(super) const MR: usize = 6;
/// Columns of C per microkernel call, and the width of the packed B panels this kernel reads.
pub(super) const NR: usize = 16;
/// How far ahead (in weights) a strided B row is prefetched: two panels, so each DRAM line is
/// asked for about one panel before it is read.
const B_AHEAD: usize = 2 * NR;

const _: () = assert!(MR == 6, "by_rows! names the row counts 1..=6");

macro_rules! kernels {
    ($microkernel:ident, $dots:ident, $sweep:ident, $t:ty, $load:ident) => {
        /// One `mr x nr` tile of C (`mr <= MR`, `nr <= NR`) from an MR-row panel of packed A and
        /// `kc` rows of NR weights, `tile.b_stride` apart (NR for a packed panel, B's leading
        /// dimension when B is read in place).
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and F16C; the buffers hold the tile (`Tile::assert_fits`).
        #[target_feature(enable = "avx2,fma,f16c")]
        #[allow(dead_code)]
        unsafe fn $microkernel(tile: Tile, a: &[f32], b: &[$t], c: &mut [f32]) {
            /// The tile with `R` rows of C in registers; `PF` prefetches B rows ahead.
            #[target_feature(enable = "avx2,fma,f16c")]
            #[inline]
            unsafe fn rows<const R: usize, const PF: bool>(tile: Tile, a: &[f32], b: &[$t], c: &mut [f32]) {
                crate::kernels::prefetch_tile(c.as_ptr(), R, tile.ldc, NR);
                let mut acc = [[_mm256_setzero_ps(); 2]; R];
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
                        let b1 = $load(row.add(8));
                        for (r, acc_row) in acc.iter_mut().enumerate() {
                            let av = _mm256_broadcast_ss(&*ap.add(p * MR + r));
                            acc_row[0] = _mm256_fmadd_ps(av, b0, acc_row[0]);
                            acc_row[1] = _mm256_fmadd_ps(av, b1, acc_row[1]);
                        }
                    }
                }
                if tile.nr == NR {
                    for (r, acc_row) in acc.iter().enumerate() {
                        // SAFETY: c holds (R - 1) * ldc + NR elements (asserted by the caller).
                        unsafe {
                            let cp = c.as_mut_ptr().add(r * tile.ldc);
                            let (mut v0, mut v1) = (acc_row[0], acc_row[1]);
                            if tile.accumulate {
                                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cp));
                                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cp.add(8)));
                            }
                            _mm256_storeu_ps(cp, v0);
                            _mm256_storeu_ps(cp.add(8), v1);
                        }
                    }
                } else {
                    let mut spill = [[0.0f32; NR]; R];
                    for (dst, acc_row) in spill.iter_mut().zip(&acc) {
                        // SAFETY: each spill row holds NR = 16 f32.
                        unsafe {
                            _mm256_storeu_ps(dst.as_mut_ptr(), acc_row[0]);
                            _mm256_storeu_ps(dst.as_mut_ptr().add(8), acc_row[1]);
                        }
                    }
                    tile.store(&spill, c);
                }
            }
            super::entry::by_rows!(rows, tile, tile, a, b, c)
        }

        /// Dot products of `R` weight rows (from `rows`, `ldw` apart) with `x`, prefetching the
        /// next `R` rows into L2 as they go (so twice the rows stream from DRAM at once).
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and F16C; `w` holds `(R - 1) * ldw + k` elements and `x` holds `k`.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $dots<const R: usize>(w: &[$t], ldw: usize, k: usize, x: &[f32]) -> [f32; R] {
            let rows: [*const $t; R] = core::array::from_fn(|r| w[r * ldw..].as_ptr());
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            let mut j = 0;
            while j + 16 <= k {
                for row in rows {
                    // A prefetch never faults; wrapping_add keeps the address computation defined
                    // past the last row.
                    _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(R * ldw + j).cast());
                }
                // SAFETY: j + 16 <= k, so every row and x have 16 elements from j.
                unsafe {
                    let x0 = _mm256_loadu_ps(x.as_ptr().add(j));
                    let x1 = _mm256_loadu_ps(x.as_ptr().add(j + 8));
                    for (row, a) in rows.iter().zip(acc.iter_mut()) {
                        a[0] = _mm256_fmadd_ps($load(row.add(j)), x0, a[0]);
                        a[1] = _mm256_fmadd_ps($load(row.add(j + 8)), x1, a[1]);
                    }
                }
                j += 16;
            }
            core::array::from_fn(|r| {
                let tail: f32 = (j..k).map(|t| w[r * ldw + t].value() * x[t]).sum();
                hsum(_mm256_add_ps(acc[r][0], acc[r][1])) + tail
            })
        }

        /// `y[j] += sum_r a[r] * w[r * ldw + j]` for `j < n`: `R` rows of B swept whole, so B
        /// streams from memory row after row (the product of a single row of A).
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and F16C; `w` holds `(R - 1) * ldw + n` elements and `y` `n`.
        #[target_feature(enable = "avx2,fma,f16c")]
        #[allow(dead_code)]
        unsafe fn $sweep<const R: usize>(w: &[$t], ldw: usize, n: usize, a: [f32; R], y: &mut [f32]) {
            let rows: [*const $t; R] = core::array::from_fn(|r| w[r * ldw..].as_ptr());
            let av: [__m256; R] = a.map(|v| _mm256_set1_ps(v));
            let yp = y.as_mut_ptr();
            let mut j = 0;
            while j + 8 <= n {
                for row in rows {
                    // The next R rows, this far along: a prefetch never faults, and wrapping_add
                    // keeps the address defined past B.
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(R * ldw + j).cast());
                }
                // SAFETY: j + 8 <= n, so every row and y have 8 elements from j.
                unsafe {
                    let mut acc = _mm256_loadu_ps(yp.add(j));
                    for (row, &ar) in rows.iter().zip(&av) {
                        acc = _mm256_fmadd_ps(ar, $load(row.add(j)), acc);
                    }
                    _mm256_storeu_ps(yp.add(j), acc);
                }
                j += 8;
            }
            for t in j..n {
                for (r, &ar) in a.iter().enumerate() {
                    y[t] = ar.mul_add(w[r * ldw + t].value(), y[t]);
                }
            }
        }
    };
}

kernels!(microkernel_f32, dots_f32, sweep_f32, f32, load_f32);
kernels!(microkernel_f16, dots_f16, sweep_f16, f16, load_f16);
kernels!(microkernel_bf16, dots_bf16, sweep_bf16, bf16, load_bf16);

kernels!(microkernel_i8, dots_i8, sweep_i8, i8, load_i8);

super::entry::weight_entry_points!("AVX2, FMA and F16C");
