//! AVX2 + FMA microkernel: a 6 x 16 f32 tile of C in twelve registers. A comes packed as f32; a
//! row of a paired B panel is one 32-byte load of sixteen bf16, in which each 32-bit word holds
//! column `c` (low half) and column `c + 8` (high half). A bf16 is the top half of its f32, so
//! `vpslld 16` gives columns 0..8 and `vpand 0xffff0000` columns 8..16, exactly.

use super::{Tile, KC};
use core::arch::x86_64::*;
use half::bf16;

/// Rows of the register tile.
pub(super) const MR: usize = 6;
/// Columns of the register tile (the width of a B panel).
pub(super) const NR: usize = 16;

const _: () = assert!(super::MC.is_multiple_of(MR) && KC > 0);

/// One tile of `R` rows (`R = tile.mr`): `C (+)= A * B` over `tile.kc`.
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` holds `kc * MR`, `b` `kc * NR` and `c` `(R - 1) * ldc + nr` elements.
#[target_feature(enable = "avx2,fma")]
unsafe fn rows<const R: usize>(tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
    crate::kernels::prefetch_tile(c.as_ptr(), R, tile.ldc, NR);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    macro_rules! step {
        ($p:expr, $acc:expr) => {
            // SAFETY: p < kc, and a holds kc * MR and b kc * NR elements (the caller's contract).
            unsafe {
                let w = _mm256_loadu_si256(bp.add($p * NR).cast());
                let b0 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w));
                let b1 = _mm256_castsi256_ps(_mm256_and_si256(w, high));
                for (r, row) in $acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*ap.add($p * MR + r));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
            }
        };
    }
    if R <= 2 {
        // Two FMA chains per row would wait on the FMA latency: odd steps go to a second set of
        // accumulators, added at the end (another valid f32 summation order).
        let mut odd = [[_mm256_setzero_ps(); 2]; R];
        let mut p = 0;
        while p + 2 <= tile.kc {
            step!(p, acc);
            step!(p + 1, odd);
            p += 2;
        }
        if p < tile.kc {
            step!(p, acc);
        }
        for (row, o) in acc.iter_mut().zip(&odd) {
            row[0] = _mm256_add_ps(row[0], o[0]);
            row[1] = _mm256_add_ps(row[1], o[1]);
        }
    } else {
        for p in 0..tile.kc {
            step!(p, acc);
        }
    }
    if tile.nr == NR {
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: row r < R has NR elements at r * ldc (the caller's contract).
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
        let mut spill = [0.0f32; MR * NR];
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: spill row r holds NR = 16 f32.
            unsafe {
                _mm256_storeu_ps(spill.as_mut_ptr().add(r * NR), row[0]);
                _mm256_storeu_ps(spill.as_mut_ptr().add(r * NR + 8), row[1]);
            }
        }
        tile.store(&spill, NR, c);
    }
}

/// One tile of `tile.mr` rows, computing only those rows (a GEMV-shaped call costs two FMAs per step).
///
/// # Safety
/// As [`super::Micro`]: the CPU has AVX2 and FMA; the buffers hold the tile.
pub(super) unsafe fn microkernel(tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        match tile.mr {
            1 => rows::<1>(tile, a, b, c),
            2 => rows::<2>(tile, a, b, c),
            3 => rows::<3>(tile, a, b, c),
            4 => rows::<4>(tile, a, b, c),
            5 => rows::<5>(tile, a, b, c),
            _ => rows::<MR>(tile, a, b, c),
        }
    }
}
