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
    fn round_even(self) -> Self {
        // SAFETY: features as above.
        Neon(unsafe { vrndnq_f32(self.0) })
    }
    #[inline(always)]
    fn pow2(n: Self) -> Self {
        // SAFETY: features as above; n is integer-valued in [-126, 127], so the biased exponent fits.
        unsafe {
            let bits = vaddq_s32(vcvtq_s32_f32(n.0), vdupq_n_s32(127));
            Neon(vreinterpretq_f32_s32(vshlq_n_s32::<23>(bits)))
        }
    }
    #[inline(always)]
    fn pow2_shifted(shifted: Self) -> Self {
        // SAFETY: features as above. The low bits of `shifted` hold n + 0x400000; shifting them
        // into the exponent field drops the 0x400000 (it lands above bit 31) and the bias is added.
        unsafe {
            let n = vshlq_n_s32::<23>(vreinterpretq_s32_f32(shifted.0));
            Neon(vreinterpretq_f32_s32(vaddq_s32(n, vdupq_n_s32(127 << 23))))
        }
    }
    #[inline(always)]
    fn any_outside(self, lo: f32, hi: f32) -> bool {
        // SAFETY: features as above. NaN fails both ordered compares, so it counts as outside.
        unsafe {
            let inside = vandq_u32(vcgeq_f32(self.0, vdupq_n_f32(lo)), vcleq_f32(self.0, vdupq_n_f32(hi)));
            vminvq_u32(inside) == 0
        }
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
