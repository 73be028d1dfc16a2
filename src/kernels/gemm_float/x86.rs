//! AVX2 + FMA + F16C kernels: a 6 x 16 f32 register tile for GEMM (f16/bf16 panels converted
//! with `vcvtph2ps` / a 16-bit shift as they are loaded), and four-row GEMV with eight accumulators.

use super::blocking::{MR, NR};
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

macro_rules! kernels {
    ($microkernel:ident, $dots:ident, $t:ty, $load:ident) => {
        /// One MR x NR tile of C from packed panels.
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and F16C; the buffers hold the tile (`Tile::assert_fits`).
        #[target_feature(enable = "avx2,fma,f16c")]
        #[allow(dead_code)]
        unsafe fn $microkernel(tile: Tile, a: &[f32], b: &[$t], c: &mut [f32]) {
            crate::kernels::prefetch_tile(c.as_ptr(), tile.mr, tile.ldc, NR);
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            let (ap, bp) = (a.as_ptr(), b.as_ptr());
            for p in 0..tile.kc {
                // SAFETY: a holds kc * MR and b kc * NR elements (asserted by the caller).
                unsafe {
                    let b0 = $load(bp.add(p * NR));
                    let b1 = $load(bp.add(p * NR + 8));
                    for (r, row) in acc.iter_mut().enumerate() {
                        let av = _mm256_broadcast_ss(&*ap.add(p * MR + r));
                        row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                        row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                    }
                }
            }
            if tile.mr == MR && tile.nr == NR {
                for (r, row) in acc.iter().enumerate() {
                    // SAFETY: c holds (MR - 1) * ldc + NR elements (asserted by the caller).
                    unsafe {
                        let cp = c.as_mut_ptr().add(r * tile.ldc);
                        let (mut v0, mut v1) = (row[0], row[1]);
                        if tile.accumulate {
                            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cp));
                            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cp.add(8)));
                        }
                        _mm256_storeu_ps(cp, v0);
                        _mm256_storeu_ps(cp.add(8), v1);
                    }
                }
            } else {
                let mut spill = [[0.0f32; NR]; MR];
                for (dst, row) in spill.iter_mut().zip(&acc) {
                    // SAFETY: each spill row holds NR = 16 f32.
                    unsafe {
                        _mm256_storeu_ps(dst.as_mut_ptr(), row[0]);
                        _mm256_storeu_ps(dst.as_mut_ptr().add(8), row[1]);
                    }
                }
                tile.store(&spill, c);
            }
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
    };
}

kernels!(microkernel_f32, dots_f32, f32, load_f32);
kernels!(microkernel_f16, dots_f16, f16, load_f16);
kernels!(microkernel_bf16, dots_bf16, bf16, load_bf16);

kernels!(microkernel_i8, dots_i8, i8, load_i8);

super::entry::weight_entry_points!("AVX2, FMA and F16C");
