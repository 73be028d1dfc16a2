//! NEON paths: the bodies of `simd.rs` on 4 lanes.

use super::simd::{self, Lanes};
use std::arch::aarch64::*;

/// Four f32 lanes in a `float32x4_t`. Only made inside the `#[target_feature]` functions below.
#[derive(Clone, Copy)]
struct Neon(float32x4_t);

// SAFETY (for every `unsafe` block in this impl): a `Neon` value exists only inside the entry
// points of this file, which carry `#[target_feature(enable = "neon")]` and are called only
// after `Isa::Neon` was found available, so the intrinsics' features are present.
impl Lanes for Neon {
    const N: usize = 4;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 4 readable floats; features as above.
        Neon(unsafe { vld1q_f32(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 4 writable floats; features as above.
        unsafe { vst1q_f32(p, self.0) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: the caller guarantees 4 writable floats; features as above. (A plain store:
        // NEON intrinsics have no non-temporal vector store.)
        unsafe { self.store(p) }
    }
    #[inline(always)]
    fn fence() {}
    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: features as above.
        Neon(unsafe { vdupq_n_f32(v) })
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: features as above.
        Neon(unsafe { vaddq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: features as above.
        Neon(unsafe { vsubq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: features as above.
        Neon(unsafe { vmulq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: features as above. vfmaq_f32(c, a, b) = c + a * b, fused.
        Neon(unsafe { vfmaq_f32(c.0, self.0, b.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: features as above.
        Neon(unsafe { vdivq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: features as above.
        Neon(unsafe { vmaxq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: features as above.
        Neon(unsafe { vminq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn exp2_eighths(shifted: Self) -> Self {
        // SAFETY: features as above; the table is 32 bytes, read as two 16-byte vectors, and each
        // byte index 4 j + b (j = n mod 8 < 8, b < 4) is below 32.
        unsafe {
            let bytes = super::EXP2_EIGHTHS.as_ptr().cast::<u8>();
            let table = uint8x16x2_t(vld1q_u8(bytes), vld1q_u8(bytes.add(16)));
            let j = vandq_u32(vreinterpretq_u32_f32(shifted.0), vdupq_n_u32(7));
            let index = vaddq_u32(vmulq_n_u32(j, 0x0404_0404), vdupq_n_u32(0x0302_0100));
            Neon(vreinterpretq_f32_u8(vqtbl2q_u8(table, vreinterpretq_u8_u32(index))))
        }
    }
    #[inline(always)]
    fn mul_pow2_eighths(self, shifted: Self) -> Self {
        // SAFETY: features as above. Shifting the bits of `shifted` left by 20 leaves n * 2^20
        // (the shifter's bits fall off the top); the mask keeps (n >> 3) * 2^23, the exponent step.
        unsafe {
            let step = vshlq_n_u32::<20>(vreinterpretq_u32_f32(shifted.0));
            let step = vandq_u32(step, vdupq_n_u32(0xff80_0000));
            Neon(vreinterpretq_f32_u32(vaddq_u32(vreinterpretq_u32_f32(self.0), step)))
        }
    }
    #[inline(always)]
    fn pow2_halves(shifted: Self) -> (Self, Self) {
        // SAFETY: features as above; k = n >> 3 by an arithmetic shift of n * 2^20 (see
        // mul_pow2_eighths), and both halves of k lie in [-126, 127].
        unsafe {
            let k = vshrq_n_s32::<23>(vshlq_n_s32::<20>(vreinterpretq_s32_f32(shifted.0)));
            let half = vshrq_n_s32::<1>(k);
            let pow2 = |k| vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(k, vdupq_n_s32(127))));
            (Neon(pow2(half)), Neon(pow2(vsubq_s32(k, half))))
        }
    }
    #[inline(always)]
    fn max_magnitude(self, x: Self) -> Self {
        // SAFETY: features as above.
        unsafe {
            let magnitude = vandq_u32(vreinterpretq_u32_f32(x.0), vdupq_n_u32(i32::MAX as u32));
            Neon(vreinterpretq_f32_u32(vmaxq_u32(vreinterpretq_u32_f32(self.0), magnitude)))
        }
    }
    #[inline(always)]
    fn any_magnitude_above(self, bound: f32) -> bool {
        // SAFETY: features as above.
        unsafe { vmaxvq_u32(vcgtq_u32(vreinterpretq_u32_f32(self.0), vdupq_n_u32(bound.to_bits()))) != 0 }
    }
    #[inline(always)]
    fn nan_from(self, x: Self) -> Self {
        // SAFETY: features as above. vceqq(x, x) is all-ones exactly where x is not NaN.
        unsafe { Neon(vbslq_f32(vceqq_f32(x.0, x.0), self.0, x.0)) }
    }
    #[inline(always)]
    fn where_positive(self, m: Self) -> Self {
        // SAFETY: features as above.
        unsafe {
            let keep = vcgtq_f32(m.0, vdupq_n_f32(0.0));
            Neon(vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(self.0), keep)))
        }
    }
    #[inline(always)]
    fn sum(self) -> f32 {
        // SAFETY: features as above.
        unsafe { vaddvq_f32(self.0) }
    }
    #[inline(always)]
    fn hmax(self) -> f32 {
        // SAFETY: features as above.
        unsafe { vmaxvq_f32(self.0) }
    }
}

simd::entry_points!(Neon, "neon");
