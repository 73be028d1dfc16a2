//! aarch64 dot products, one body per type written once over a 16-byte dot step and instantiated
//! for two tiers: NEON (`smull`/`smlal2` pairs of i8 products into i16, `sadalp` into i32) and
//! dotprod (`sdot`, which the i8mm tier runs too). Every integer block sum is exact, so the tiers
//! differ from the scalar reference only in the order of the f32 sums.
//!
//! The NEON pair sums cannot overflow i16: a pair of products is at most 2 * 128 * 127 = 32512,
//! since one side of every product is within [-127, 127] (Q8_0 activations, Q4_0's nibbles less
//! 8, Q4_K's nibbles, Q6_K's values less 32) while the other may be -128 (Q8_0 weights, Q8_K
//! activations).
//!
//! `sdot` goes through `asm!`: its intrinsic (`vdotq_s32`) is unstable in Rust 1.95
//! (`stdarch_neon_dotprod`), while the instruction assembles under the functions' target features.

use super::blocks::{f16_get, BlockQ4K, BlockQ4_0, BlockQ6K, BlockQ8K, BlockQ8_0, QK_K};
use super::dot::scales_mins_k4;
use std::arch::aarch64::*;

/// 16 bytes at `p` as i8 lanes.
///
/// # Safety
/// `p` is valid for 16 bytes.
#[inline(always)]
unsafe fn load(p: *const u8) -> int8x16_t {
    // SAFETY: forwarded contract.
    unsafe { vld1q_s8(p.cast()) }
}

/// Q4_0 x Q8_0 (`dy`: the activation blocks' scales as f32): nibbles less 8 times the
/// activations, two f32 accumulators over alternate blocks.
macro_rules! q4_0_q8_0_body {
    ($dot:ident, $x:ident, $y:ident, $dy:ident) => {{
        let (low, eight) = (vdupq_n_u8(0x0F), vdupq_n_s8(8));
        let mut acc = [vdupq_n_f32(0.0); 2];
        for (i, (xb, yb)) in $x.iter().zip($y).enumerate() {
            // SAFETY: a Q4_0 block holds 16 bytes of nibbles and a Q8_0 block 32 values; `sdot`
            // (where used) is enabled on the calling function and touches registers only.
            let sum = unsafe {
                let q = vld1q_u8(xb.qs.as_ptr());
                let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, low)), eight);
                let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
                let a = yb.qs.as_ptr().cast::<u8>();
                let mut sum = vdupq_n_s32(0);
                $dot!(sum, lo, load(a));
                $dot!(sum, hi, load(a.add(16)));
                sum
            };
            let d = f16_get(xb.d).to_f32() * $dy[i];
            acc[i % 2] = vfmaq_n_f32(acc[i % 2], vcvtq_f32_s32(sum), d);
        }
        vaddvq_f32(vaddq_f32(acc[0], acc[1]))
    }};
}

/// Q8_0 x Q8_0 (`dy`: the activation blocks' scales as f32).
macro_rules! q8_0_q8_0_body {
    ($dot:ident, $x:ident, $y:ident, $dy:ident) => {{
        let mut acc = [vdupq_n_f32(0.0); 2];
        for (i, (xb, yb)) in $x.iter().zip($y).enumerate() {
            // SAFETY: Q8_0 blocks hold 32 values each; as in Q4_0.
            let sum = unsafe {
                let (w, a) = (xb.qs.as_ptr().cast::<u8>(), yb.qs.as_ptr().cast::<u8>());
                let mut sum = vdupq_n_s32(0);
                $dot!(sum, load(w), load(a));
                $dot!(sum, load(w.add(16)), load(a.add(16)));
                sum
            };
            let d = f16_get(xb.d).to_f32() * $dy[i];
            acc[i % 2] = vfmaq_n_f32(acc[i % 2], vcvtq_f32_s32(sum), d);
        }
        vaddvq_f32(vaddq_f32(acc[0], acc[1]))
    }};
}

/// `sum_j sums32[j] * mins[j]` for the eight sub-blocks of a Q4_K super-block (`mins`: byte `j`
/// for sub-block `j`).
#[inline(always)]
fn mins_dot(mins: u64, sums32: &[i16; 8]) -> i32 {
    // SAFETY: NEON is part of every aarch64 target; sums32 holds eight i16.
    unsafe {
        let m = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(mins)));
        let s = vld1q_s16(sums32.as_ptr());
        vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(m), vget_low_s16(s)), m, s))
    }
}

/// Q4_K x Q8_K (`sums32`: the sums of each 32 activations): per 64 values, the low and high
/// nibbles' 32-sums weighted by their sub-block scales; the minima subtracted per super-block.
macro_rules! q4_k_q8_k_body {
    ($dot:ident, $x:ident, $y:ident, $sums32:ident) => {{
        let low = vdupq_n_u8(0x0F);
        let mut acc = vdupq_n_f32(0.0);
        let mut acc_min = 0.0f32;
        for (i, (xb, yb)) in $x.iter().zip($y).enumerate() {
            let (scales, mins) = scales_mins_k4(&xb.scales);
            let scale = |j: usize| ((scales >> (8 * j)) & 0xFF) as i32;
            let mut sumi = vdupq_n_s32(0);
            for j in 0..QK_K / 64 {
                // SAFETY: qs holds 128 bytes and yb.qs 256: offsets 32 j (+ 16) and 64 j (+ 48)
                // are in range; as in Q4_0 for `sdot`.
                unsafe {
                    let q = xb.qs.as_ptr().add(32 * j);
                    let (q0, q1) = (vld1q_u8(q), vld1q_u8(q.add(16)));
                    let a = yb.qs.as_ptr().add(64 * j).cast::<u8>();
                    let (mut s_lo, mut s_hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
                    $dot!(s_lo, vreinterpretq_s8_u8(vandq_u8(q0, low)), load(a));
                    $dot!(s_lo, vreinterpretq_s8_u8(vandq_u8(q1, low)), load(a.add(16)));
                    $dot!(s_hi, vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0)), load(a.add(32)));
                    $dot!(s_hi, vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1)), load(a.add(48)));
                    sumi = vmlaq_n_s32(sumi, s_lo, scale(2 * j));
                    sumi = vmlaq_n_s32(sumi, s_hi, scale(2 * j + 1));
                }
            }
            let yd = f32::from_le_bytes(yb.d);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sumi), f16_get(xb.d).to_f32() * yd);
            acc_min += f16_get(xb.dmin).to_f32() * yd * mins_dot(mins, &$sums32[i]) as f32;
        }
        vaddvq_f32(acc) - acc_min
    }};
}

/// Q6_K x Q8_K: the 6-bit values less 32 as i8, each 16 weighted by its scale.
macro_rules! q6_k_q8_k_body {
    ($dot:ident, $x:ident, $y:ident) => {{
        let (low, three, offset) = (vdupq_n_u8(0x0F), vdupq_n_u8(3), vdupq_n_s8(32));
        let mut acc = vdupq_n_f32(0.0);
        for (xb, yb) in $x.iter().zip($y) {
            let mut sumi = vdupq_n_s32(0);
            for n in 0..2 {
                for half in 0..2 {
                    // SAFETY: ql holds 128 bytes, qh 64 and yb.qs 256: with n, half < 2 every
                    // offset below stays in range; as in Q4_0 for `sdot`.
                    unsafe {
                        let at = 16 * half;
                        let l0 = vld1q_u8(xb.ql.as_ptr().add(64 * n + at));
                        let l1 = vld1q_u8(xb.ql.as_ptr().add(64 * n + 32 + at));
                        let h = vld1q_u8(xb.qh.as_ptr().add(32 * n + at));
                        let high = |bits: uint8x16_t| vshlq_n_u8::<4>(vandq_u8(bits, three));
                        let values = [
                            vorrq_u8(vandq_u8(l0, low), high(h)),
                            vorrq_u8(vandq_u8(l1, low), high(vshrq_n_u8::<2>(h))),
                            vorrq_u8(vshrq_n_u8::<4>(l0), high(vshrq_n_u8::<4>(h))),
                            vorrq_u8(vshrq_n_u8::<4>(l1), high(vshrq_n_u8::<6>(h))),
                        ];
                        for (k, &v) in values.iter().enumerate() {
                            // Values 128 n + 32 k + at .. + 16: one sub-block of 16.
                            let first = 128 * n + 32 * k + at;
                            let w = vsubq_s8(vreinterpretq_s8_u8(v), offset);
                            let mut s = vdupq_n_s32(0);
                            $dot!(s, w, load(yb.qs.as_ptr().add(first).cast()));
                            sumi = vmlaq_n_s32(sumi, s, i32::from(xb.scales[first / 16]));
                        }
                    }
                }
            }
            let d = f16_get(xb.d).to_f32() * f32::from_le_bytes(yb.d);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sumi), d);
        }
        vaddvq_f32(acc)
    }};
}

/// Q4_0 x Q8_0 on the NEON tier (`dy`: the activation blocks' scales as f32).
///
/// # Safety
/// `y` and `dy` hold at least `x.len()` entries.
#[target_feature(enable = "neon")]
pub(super) unsafe fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0], dy: &[f32]) -> f32 {
    q4_0_q8_0_body!(dot16_neon, x, y, dy)
}

/// Q4_0 x Q8_0 with `sdot`.
///
/// # Safety
/// The dotprod tier is available; `y` and `dy` hold at least `x.len()` entries.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn q4_0_q8_0_dotprod(x: &[BlockQ4_0], y: &[BlockQ8_0], dy: &[f32]) -> f32 {
    q4_0_q8_0_body!(dot16_sdot, x, y, dy)
}

/// Q8_0 x Q8_0 on the NEON tier (`dy`: the activation blocks' scales as f32).
///
/// # Safety
/// `y` and `dy` hold at least `x.len()` entries.
#[target_feature(enable = "neon")]
pub(super) unsafe fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0], dy: &[f32]) -> f32 {
    q8_0_q8_0_body!(dot16_neon, x, y, dy)
}

/// Q8_0 x Q8_0 with `sdot`.
///
/// # Safety
/// The dotprod tier is available; `y` and `dy` hold at least `x.len()` entries.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn q8_0_q8_0_dotprod(x: &[BlockQ8_0], y: &[BlockQ8_0], dy: &[f32]) -> f32 {
    q8_0_q8_0_body!(dot16_sdot, x, y, dy)
}

/// Q4_K x Q8_K on the NEON tier (`sums32`: the sums of each 32 activations).
///
/// # Safety
/// `y` and `sums32` hold at least `x.len()` entries.
#[target_feature(enable = "neon")]
pub(super) unsafe fn q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K], sums32: &[[i16; 8]]) -> f32 {
    q4_k_q8_k_body!(dot16_neon, x, y, sums32)
}

/// Q4_K x Q8_K with `sdot`.
///
/// # Safety
/// The dotprod tier is available; `y` and `sums32` hold at least `x.len()` entries.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn q4_k_q8_k_dotprod(x: &[BlockQ4K], y: &[BlockQ8K], sums32: &[[i16; 8]]) -> f32 {
    q4_k_q8_k_body!(dot16_sdot, x, y, sums32)
}

/// Q6_K x Q8_K on the NEON tier.
///
/// # Safety
/// `y` holds at least `x.len()` blocks.
#[target_feature(enable = "neon")]
pub(super) unsafe fn q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    q6_k_q8_k_body!(dot16_neon, x, y)
}

/// Q6_K x Q8_K with `sdot`.
///
/// # Safety
/// The dotprod tier is available; `y` holds at least `x.len()` blocks.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn q6_k_q8_k_dotprod(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    q6_k_q8_k_body!(dot16_sdot, x, y)
}
