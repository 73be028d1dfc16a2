//! NEON paths: the bodies of `simd.rs` on 4 lanes.

use super::simd::{self, Lanes};
use super::simd::{HARD_EXP, HARD_SOFT, HARD_SQUARE};
use super::{HardExp, KdRowSums, KdStore};
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

/// `y = exp(x)`; lengths equal.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn exp_slice(x: &[f32], y: &mut [f32]) {
    simd::exp_slice::<Neon>(x, y)
}

/// Maximum and finiteness of `x`.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn max_finite(x: &[f32]) -> (f32, bool) {
    simd::max_finite::<Neon>(x)
}

/// `y = exp((x - shift) * scale)`, returns the sum; lengths equal.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn exp_sum(x: &[f32], shift: f32, scale: f32, y: &mut [f32]) -> f64 {
    simd::exp_sum::<Neon>(x, shift, scale, y)
}

/// The fused KD sums of one row; lengths checked by the caller.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kd_row_sums(
    s: &[f32],
    t: &[f32],
    ms: f32,
    mt: f32,
    inv_t: f32,
    hard: HardExp,
    store: Option<KdStore<'_>>,
) -> KdRowSums {
    match hard {
        HardExp::Soft => simd::kd_row_sums::<Neon, HARD_SOFT>(s, t, ms, mt, inv_t, 0, store),
        HardExp::Exp => simd::kd_row_sums::<Neon, HARD_EXP>(s, t, ms, mt, inv_t, 0, store),
        HardExp::Square(k) => simd::kd_row_sums::<Neon, HARD_SQUARE>(s, t, ms, mt, inv_t, k, store),
    }
}

/// The KD gradient combination of one row; lengths checked by the caller.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kd_row_grad(
    es: &[f32],
    et: &[f32],
    cs: f32,
    ct: f32,
    ch: f32,
    hard: HardExp,
    grad: &mut [f32],
) {
    match hard {
        HardExp::Soft => simd::kd_row_grad::<Neon, HARD_SOFT>(es, et, cs, ct, ch, 0, grad),
        HardExp::Exp => simd::kd_row_grad::<Neon, HARD_EXP>(es, et, cs, ct, ch, 0, grad),
        HardExp::Square(k) => simd::kd_row_grad::<Neon, HARD_SQUARE>(es, et, cs, ct, ch, k, grad),
    }
}
