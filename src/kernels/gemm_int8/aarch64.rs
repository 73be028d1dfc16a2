//! NEON microkernel: a 6 x 16 tile, exact for every u8 A and i8 B (products widened to i32).
//!
//! Each B quad is four groups of 4 columns x 4 k bytes; per row the four A bytes are repeated
//! twice as i16, multiplied with `smull`/`smull2`, and the k sums folded with pairwise adds.

use super::blocking::{KU, MR, NR};
use super::pack::Quad;
use std::arch::aarch64::*;

/// `tile (+)= A B` over `quads` quads on a narrow A panel.
///
/// # Safety
/// NEON must be available; `a` must hold `quads * MR * 4` bytes, `b` `quads` quads, and `c` an
/// `MR x NR` tile with leading dimension `ldc`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn kernel(
    quads: usize,
    a: *const u8,
    b: *const Quad,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    const GROUPS: usize = NR / 4;
    let mut acc = [[vdupq_n_s32(0); GROUPS]; MR];
    for q in 0..quads {
        // SAFETY: q < quads keeps every read inside the caller's buffers.
        unsafe {
            let bq = b.add(q).cast::<i8>();
            let mut bw = [[vdupq_n_s16(0); 2]; GROUPS];
            for (g, w) in bw.iter_mut().enumerate() {
                let v = vld1q_s8(bq.add(16 * g));
                *w = [vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v)];
            }
            let aq = a.add(q * MR * KU);
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let bits = aq.add(r * KU).cast::<u32>().read_unaligned();
                let a16 = vreinterpretq_s16_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(bits))));
                let a_low = vget_low_s16(a16);
                for (g, [lo, hi]) in bw.iter().enumerate() {
                    let c01 = vpaddq_s32(vmull_s16(vget_low_s16(*lo), a_low), vmull_high_s16(*lo, a16));
                    let c23 = vpaddq_s32(vmull_s16(vget_low_s16(*hi), a_low), vmull_high_s16(*hi, a16));
                    acc_row[g] = vaddq_s32(acc_row[g], vpaddq_s32(c01, c23));
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (g, &v) in row.iter().enumerate() {
            // SAFETY: the caller guarantees the tile is inside C.
            unsafe {
                let p = c.add(r * ldc + g * 4);
                let v = if accumulate { vaddq_s32(vld1q_s32(p), v) } else { v };
                vst1q_s32(p, v);
            }
        }
    }
}
