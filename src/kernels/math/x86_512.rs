//! AVX-512 paths: the bodies of `simd.rs` on 16 lanes.

use super::simd::{self, Lanes};
use std::arch::x86_64::*;

/// Sixteen f32 lanes in a `__m512`. Only made inside the `#[target_feature]` functions below.
#[derive(Clone, Copy)]
struct Avx512(__m512);

// SAFETY (for every `unsafe` block in this impl): an `Avx512` value exists only inside the entry
// points of this file, which carry the AVX-512 features in `#[target_feature]` and are called
// only after `Isa::Avx512` was found available, so the intrinsics' features are present.
impl Lanes for Avx512 {
    const N: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 16 readable floats; features as above.
        Avx512(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 16 writable floats; features as above.
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: the caller guarantees 16 writable floats aligned to 64 bytes; features as above.
        unsafe { _mm512_stream_ps(p, self.0) }
    }
    #[inline(always)]
    fn fence() {
        // SAFETY: features as above (SSE is part of the x86-64 baseline).
        unsafe { _mm_sfence() }
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: features as above.
        Avx512(unsafe { _mm512_set1_ps(v) })
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx512(unsafe { _mm512_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx512(unsafe { _mm512_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx512(unsafe { _mm512_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: features as above.
        Avx512(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx512(unsafe { _mm512_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx512(unsafe { _mm512_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: features as above.
        Avx512(unsafe { _mm512_min_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn exp2_eighths(shifted: Self) -> Self {
        // SAFETY: features as above; the table's 8 floats are loaded twice (entries i and i + 8
        // equal), and vpermps reads only the low 4 bits of each index lane, whose low 3 bits are
        // n mod 8 (ROUND_SHIFTER's low 22 bits are zero).
        unsafe {
            let table = _mm512_broadcast_f32x8(_mm256_loadu_ps(super::EXP2_EIGHTHS.as_ptr()));
            Avx512(_mm512_permutexvar_ps(_mm512_castps_si512(shifted.0), table))
        }
    }
    #[inline(always)]
    fn mul_pow2_eighths(self, shifted: Self) -> Self {
        // SAFETY: features as above. Shifting the bits of `shifted` left by 20 leaves n * 2^20
        // (the shifter's bits fall off the top); the mask keeps (n >> 3) * 2^23, the exponent step.
        unsafe {
            let step = _mm512_slli_epi32::<20>(_mm512_castps_si512(shifted.0));
            let step = _mm512_and_si512(step, _mm512_set1_epi32(0xff80_0000_u32 as i32));
            Avx512(_mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(self.0), step)))
        }
    }
    #[inline(always)]
    fn pow2_halves(shifted: Self) -> (Self, Self) {
        // SAFETY: features as above; k = n >> 3 by an arithmetic shift of n * 2^20 (see
        // mul_pow2_eighths), and both halves of k lie in [-126, 127].
        unsafe {
            let k = _mm512_srai_epi32::<23>(_mm512_slli_epi32::<20>(_mm512_castps_si512(shifted.0)));
            let half = _mm512_srai_epi32::<1>(k);
            let pow2 =
                |k| _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(k, _mm512_set1_epi32(127))));
            (Avx512(pow2(half)), Avx512(pow2(_mm512_sub_epi32(k, half))))
        }
    }
    #[inline(always)]
    fn max_magnitude(self, x: Self) -> Self {
        // SAFETY: features as above.
        unsafe {
            let magnitude = _mm512_and_si512(_mm512_castps_si512(x.0), _mm512_set1_epi32(i32::MAX));
            Avx512(_mm512_castsi512_ps(_mm512_max_epu32(_mm512_castps_si512(self.0), magnitude)))
        }
    }
    #[inline(always)]
    fn any_magnitude_above(self, bound: f32) -> bool {
        // SAFETY: features as above. Magnitude bits are below 2^31, so a signed compare orders them.
        unsafe {
            _mm512_cmpgt_epi32_mask(_mm512_castps_si512(self.0), _mm512_set1_epi32(bound.to_bits() as i32))
                != 0
        }
    }
    #[inline(always)]
    fn nan_from(self, x: Self) -> Self {
        // SAFETY: features as above.
        unsafe { Avx512(_mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x.0, x.0), self.0, x.0)) }
    }
    #[inline(always)]
    fn where_positive(self, m: Self) -> Self {
        // SAFETY: features as above.
        unsafe {
            let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m.0, _mm512_setzero_ps());
            Avx512(_mm512_maskz_mov_ps(positive, self.0))
        }
    }
    #[inline(always)]
    fn sum(self) -> f32 {
        // SAFETY: features as above.
        unsafe {
            let v = _mm256_add_ps(_mm512_castps512_ps256(self.0), _mm512_extractf32x8_ps::<1>(self.0));
            let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
            let v = _mm_add_ss(v, _mm_shuffle_ps::<0b01>(v, v));
            _mm_cvtss_f32(v)
        }
    }
    #[inline(always)]
    fn hmax(self) -> f32 {
        // SAFETY: features as above.
        unsafe {
            let v = _mm256_max_ps(_mm512_castps512_ps256(self.0), _mm512_extractf32x8_ps::<1>(self.0));
            let v = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let v = _mm_max_ps(v, _mm_movehl_ps(v, v));
            let v = _mm_max_ss(v, _mm_shuffle_ps::<0b01>(v, v));
            _mm_cvtss_f32(v)
        }
    }
}

simd::entry_points!(Avx512, "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c");
