//! NEON microkernel: an 8 x 12 f32 tile of C in twenty-four registers. A comes packed as f32; a
//! row of a B panel is twelve bf16 in column order, widened exactly by `vshll 16` (a bf16 is the
//! top half of its f32) and multiplied in with `vfmaq_n_f32`.

use super::Tile;
use core::arch::aarch64::*;
use half::bf16;

/// Rows of the register tile.
pub(super) const MR: usize = 8;
/// Columns of the register tile (the width of a B panel).
pub(super) const NR: usize = 12;

const _: () = assert!(super::MC.is_multiple_of(MR));

/// One tile of `R` rows (`R = tile.mr`): `C (+)= A * B` over `tile.kc`.
///
/// # Safety
/// The CPU has NEON; `a` holds `kc * MR`, `b` `kc * NR` and `c` `(R - 1) * ldc + nr` elements.
#[target_feature(enable = "neon")]
unsafe fn rows<const R: usize>(tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
    let mut acc = [[vdupq_n_f32(0.0); 3]; R];
    let (ap, bp) = (a.as_ptr(), b.as_ptr().cast::<u16>());
    for p in 0..tile.kc {
        // SAFETY: a holds kc * MR and b kc * NR elements (the caller's contract).
        unsafe {
            let lo = vld1q_u16(bp.add(p * NR));
            let hi = vld1_u16(bp.add(p * NR + 8));
            let bv = [
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(lo))),
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_high_u16(lo))),
                vreinterpretq_f32_u32(vshll_n_u16::<16>(hi)),
            ];
            for (r, row) in acc.iter_mut().enumerate() {
                let av = *ap.add(p * MR + r);
                for (q, v) in row.iter_mut().enumerate() {
                    *v = vfmaq_n_f32(*v, bv[q], av);
                }
            }
        }
    }
    if tile.nr == NR {
        for (r, row) in acc.iter().enumerate() {
            for (q, &v) in row.iter().enumerate() {
                // SAFETY: row r < R has NR elements at r * ldc (the caller's contract).
                unsafe {
                    let cp = c.as_mut_ptr().add(r * tile.ldc + 4 * q);
                    let v = if tile.accumulate { vaddq_f32(v, vld1q_f32(cp)) } else { v };
                    vst1q_f32(cp, v);
                }
            }
        }
    } else {
        let mut spill = [0.0f32; MR * NR];
        for (r, row) in acc.iter().enumerate() {
            for (q, &v) in row.iter().enumerate() {
                // SAFETY: spill row r holds NR = 12 f32.
                unsafe { vst1q_f32(spill.as_mut_ptr().add(r * NR + 4 * q), v) };
            }
        }
        tile.store(&spill, NR, c);
    }
}

/// One tile of `tile.mr` rows, computing only those rows.
///
/// # Safety
/// As [`super::Micro`]: the CPU has NEON; the buffers hold the tile.
pub(super) unsafe fn microkernel(tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        match tile.mr {
            1 => rows::<1>(tile, a, b, c),
            2 => rows::<2>(tile, a, b, c),
            3 => rows::<3>(tile, a, b, c),
            4 => rows::<4>(tile, a, b, c),
            5 => rows::<5>(tile, a, b, c),
            6 => rows::<6>(tile, a, b, c),
            7 => rows::<7>(tile, a, b, c),
            _ => rows::<MR>(tile, a, b, c),
        }
    }
}
