//! AVX2 dot products: 32 weights a step as u8 (or |w| with the sign moved onto the activation)
//! times i8 with `vpmaddubsw` (no pair sum can saturate: at most 63 * 127 * 2 or 128 * 127 * 2),
//! widened by `vpmaddwd` (with the K types' sub-block scales as the i16 multiplier), f32 lanes
//! scaled per block.

use super::blocks::{BlockQ4K, BlockQ4_0, BlockQ6K, BlockQ8K, BlockQ8_0, QK_K};
use super::dot::{bsums, scales_mins_k4};
use core::arch::x86_64::*;

/// The f32 value of the f16 bits `h`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn f16_to_f32(h: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le_bytes(h)))))
}

/// The sum of the eight f32 lanes of `v`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The 32 nibbles of a Q4_0 block in element order (low nibbles, then high), as u8.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: qs holds 16 bytes.
    let q = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(q), q), _mm256_set1_epi8(0x0F))
}

/// Eight i32 lanes of `sum w a` over 32 signed `w` and `a` (a in [-127, 127]): |w| times a with
/// w's sign.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_i8(w: __m256i, a: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// 32 activations of a Q8_0 block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_qs(qs: &[i8; 32]) -> __m256i {
    // SAFETY: qs holds 32 bytes.
    unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
}

/// Q4_0 x Q8_0 (`dy`: the activation blocks' scales as f32).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `y` and `dy` hold at least `x.len()` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0], dy: &[f32]) -> f32 {
    let eight = _mm256_set1_epi8(8);
    let mut acc = [_mm256_setzero_ps(); 2];
    for (i, (xb, yb)) in x.iter().zip(y).enumerate() {
        let w = _mm256_sub_epi8(nibbles(&xb.qs), eight);
        let sum = _mm256_cvtepi32_ps(dot_i8(w, load_qs(&yb.qs)));
        let d = _mm256_set1_ps(f16_to_f32(xb.d) * dy[i]);
        acc[i % 2] = _mm256_fmadd_ps(sum, d, acc[i % 2]);
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// Q8_0 x Q8_0 (`dy`: the activation blocks' scales as f32).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `y` and `dy` hold at least `x.len()` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0], dy: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    for (i, (xb, yb)) in x.iter().zip(y).enumerate() {
        let sum = _mm256_cvtepi32_ps(dot_i8(load_qs(&xb.qs), load_qs(&yb.qs)));
        let d = _mm256_set1_ps(f16_to_f32(xb.d) * dy[i]);
        acc[i % 2] = _mm256_fmadd_ps(sum, d, acc[i % 2]);
    }
    hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// `sum_j sums32[j] * mins[j]` for the eight sub-blocks of a Q4_K super-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn mins_dot(mins: u64, sums32: &[i16; 8]) -> i32 {
    let m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mins as i64));
    // SAFETY: sums32 holds 16 bytes.
    let s = unsafe { _mm_loadu_si128(sums32.as_ptr().cast()) };
    let p = _mm_madd_epi16(m, s);
    let p = _mm_add_epi32(p, _mm_shuffle_epi32::<0b01_00_11_10>(p));
    _mm_cvtsi128_si32(_mm_add_epi32(p, _mm_shuffle_epi32::<0b10_11_00_01>(p)))
}

/// Q4_K x Q8_K (`sums32`: the sums of each 32 activations).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `y` and `sums32` hold at least `x.len()` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K], sums32: &[[i16; 8]]) -> f32 {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = 0.0f32;
    for (i, (xb, yb)) in x.iter().zip(y).enumerate() {
        let (scales, mins) = scales_mins_k4(&xb.scales);
        let scale = |j: usize| ((scales >> (8 * j)) & 0xFF) as i16;
        let mut sumi = _mm256_setzero_si256();
        for j in 0..QK_K / 64 {
            // SAFETY: qs holds 128 bytes and yb.qs 256: offsets 32 j and 64 j (+ 32) are in range.
            let (q, a_lo, a_hi) = unsafe {
                (
                    _mm256_loadu_si256(xb.qs.as_ptr().add(32 * j).cast()),
                    _mm256_loadu_si256(yb.qs.as_ptr().add(64 * j).cast()),
                    _mm256_loadu_si256(yb.qs.as_ptr().add(64 * j + 32).cast()),
                )
            };
            let lo = _mm256_and_si256(q, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low);
            let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), _mm256_set1_epi16(scale(2 * j)));
            let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), _mm256_set1_epi16(scale(2 * j + 1)));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
        }
        let yd = f32::from_le_bytes(yb.d);
        let d = f16_to_f32(xb.d) * yd;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        let dmin = f16_to_f32(xb.dmin) * yd;
        acc_min += dmin * mins_dot(mins, &sums32[i]) as f32;
    }
    hsum_ps(acc) - acc_min
}

/// Bits `S` and `S + 1` of each byte of `h`, moved to bits 4 and 5 (a Q6_K value's high bits).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn high_bits<const S: i32>(h: __m256i) -> __m256i {
    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<S>(h), _mm256_set1_epi8(3)))
}

/// Q6_K x Q8_K: the 6-bit values as u8 in [0, 63], 32 times each 16-sum subtracted.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `y` holds at least `x.len()` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    for (xb, yb) in x.iter().zip(y) {
        let mut sumi = _mm256_setzero_si256();
        for n in 0..2 {
            // SAFETY: ql holds 128 bytes, qh 64 and yb.qs 256: every offset below is in range.
            let (l0, l1, h) = unsafe {
                (
                    _mm256_loadu_si256(xb.ql.as_ptr().add(64 * n).cast()),
                    _mm256_loadu_si256(xb.ql.as_ptr().add(64 * n + 32).cast()),
                    _mm256_loadu_si256(xb.qh.as_ptr().add(32 * n).cast()),
                )
            };
            let q = [
                _mm256_or_si256(_mm256_and_si256(l0, low), high_bits::<0>(h)),
                _mm256_or_si256(_mm256_and_si256(l1, low), high_bits::<2>(h)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l0), low), high_bits::<4>(h)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l1), low), high_bits::<6>(h)),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let at = 128 * n + 32 * k;
                // SAFETY: at + 32 <= 256.
                let a = unsafe { _mm256_loadu_si256(yb.qs.as_ptr().add(at).cast()) };
                let (s0, s1) = (i16::from(xb.scales[at / 16]), i16::from(xb.scales[at / 16 + 1]));
                let scale = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(qk, a), scale));
            }
        }
        // The offset: 32 * sum_j scale_j * bsum_j.
        let bs = bsums(yb);
        // SAFETY: both arrays hold 16 i16 (32 bytes); scales widen from 16 i8.
        let offset = unsafe {
            let b = _mm256_loadu_si256(bs.as_ptr().cast());
            let s = _mm256_cvtepi8_epi16(_mm_loadu_si128(xb.scales.as_ptr().cast()));
            _mm256_slli_epi32::<5>(_mm256_madd_epi16(b, s))
        };
        let d = f16_to_f32(xb.d) * f32::from_le_bytes(yb.d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, offset)), acc);
    }
    hsum_ps(acc)
}

/// [`q8_0_blocks`](super::dot::q8_0_blocks) compiled for the AVX2 tier.
///
/// # Safety
/// The CPU has the AVX2 tier's features.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q8_0_blocks(x: &[f32], blocks: &mut [BlockQ8_0], d: &mut [f32]) {
    super::dot::q8_0_blocks(x, blocks, d)
}
