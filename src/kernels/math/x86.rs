//! AVX2+FMA paths: the bodies of `simd.rs` on 8 lanes.

use super::simd::{self, Lanes};
use std::arch::x86_64::*;

/// Eight f32 lanes in a `__m256`. Only made inside the `#[target_feature]` functions below.
#[derive(Clone, Copy)]
struct Avx2(__m256);

// SAFETY (for every `unsafe` block in this impl): an `Avx2` value exists only inside the entry
// points of this file, which carry `#[target_feature(enable = "avx2,fma,f16c")]` and are called
// only after `Isa::Avx2` was found available, so the intrinsics' features are present.
impl Lanes for Avx2 {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable floats; features as above.
        Avx2(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable floats; features as above.
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable floats aligned to 32 bytes; features as above.
        unsafe { _mm256_stream_ps(p, self.0) }
    }
    #[inline(always)]
    fn fence() {
        // SAFETY: features as above (SSE is part of the x86-64 baseline).
        unsafe { _mm_sfence() }
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: features as above.
        Avx2(unsafe { _mm256_set1_ps(v) })
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx2(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx2(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx2(unsafe { _mm256_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: features as above.
        Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx2(unsafe { _mm256_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx2(unsafe { _mm256_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx2(unsafe { _mm256_min_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn exp2_eighths(shifted: Self) -> Self {
        // SAFETY: features as above; the table holds 8 floats, and vpermps reads only the low 3
        // bits of each index lane, which are n mod 8 (ROUND_SHIFTER's low 22 bits are zero).
        unsafe {
            let table = _mm256_loadu_ps(super::EXP2_EIGHTHS.as_ptr());
            Avx2(_mm256_permutevar8x32_ps(table, _mm256_castps_si256(shifted.0)))
        }
    }
    #[inline(always)]
    fn mul_pow2_eighths(self, shifted: Self) -> Self {
        // SAFETY: features as above. Shifting the bits of `shifted` left by 20 leaves n * 2^20
        // (the shifter's bits fall off the top); the mask keeps (n >> 3) * 2^23, the exponent step.
        unsafe {
            let step = _mm256_slli_epi32::<20>(_mm256_castps_si256(shifted.0));
            let step = _mm256_and_si256(step, _mm256_set1_epi32(0xff80_0000_u32 as i32));
            Avx2(_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(self.0), step)))
        }
    }
    #[inline(always)]
    fn pow2_halves(shifted: Self) -> (Self, Self) {
        // SAFETY: features as above; k = n >> 3 by an arithmetic shift of n * 2^20 (see
        // mul_pow2_eighths), and both halves of k lie in [-126, 127].
        unsafe {
            let k = _mm256_srai_epi32::<23>(_mm256_slli_epi32::<20>(_mm256_castps_si256(shifted.0)));
            let half = _mm256_srai_epi32::<1>(k);
            let pow2 =
                |k| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k, _mm256_set1_epi32(127))));
            (Avx2(pow2(half)), Avx2(pow2(_mm256_sub_epi32(k, half))))
        }
    }
    #[inline(always)]
    fn max_magnitude(self, x: Self) -> Self {
        // SAFETY: features as above.
        unsafe {
            let magnitude = _mm256_and_si256(_mm256_castps_si256(x.0), _mm256_set1_epi32(i32::MAX));
            Avx2(_mm256_castsi256_ps(_mm256_max_epu32(_mm256_castps_si256(self.0), magnitude)))
        }
    }
    #[inline(always)]
    fn any_magnitude_above(self, bound: f32) -> bool {
        // SAFETY: features as above. Magnitude bits are below 2^31, so a signed compare orders them.
        unsafe {
            let above =
                _mm256_cmpgt_epi32(_mm256_castps_si256(self.0), _mm256_set1_epi32(bound.to_bits() as i32));
            _mm256_movemask_ps(_mm256_castsi256_ps(above)) != 0
        }
    }
    #[inline(always)]
    fn nan_from(self, x: Self) -> Self {
        // SAFETY: features as above.
        unsafe { Avx2(_mm256_blendv_ps(self.0, x.0, _mm256_cmp_ps::<_CMP_UNORD_Q>(x.0, x.0))) }
    }
    #[inline(always)]
    fn where_positive(self, m: Self) -> Self {
        // SAFETY: features as above.
        unsafe { Avx2(_mm256_and_ps(self.0, _mm256_cmp_ps::<_CMP_GT_OQ>(m.0, _mm256_setzero_ps()))) }
    }
    #[inline(always)]
    fn sum(self) -> f32 {
        // SAFETY: features as above.
        unsafe {
            let v = _mm_add_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
            let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
            let v = _mm_add_ss(v, _mm_shuffle_ps::<0b01>(v, v));
            _mm_cvtss_f32(v)
        }
    }
    #[inline(always)]
    fn hmax(self) -> f32 {
        // SAFETY: features as above.
        unsafe {
            let v = _mm_max_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
            let v = _mm_max_ps(v, _mm_movehl_ps(v, v));
            let v = _mm_max_ss(v, _mm_shuffle_ps::<0b01>(v, v));
            _mm_cvtss_f32(v)
        }
    }
}

simd::entry_points!(Avx2, "avx2,fma,f16c");
