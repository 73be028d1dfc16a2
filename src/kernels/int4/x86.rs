//! AVX2 and AVX-512 rows of the W4A8 GEMV: 32 columns (16 packed bytes) a step on AVX2 with
//! `vpmaddubsw` (u8 `q + 8` at most 15 times |a| at most 127: no pair sum saturates), 64 a step
//! on AVX-512 with `vpdpbusd`; one f32 multiply-add per group.

use super::Activations;
use core::arch::x86_64::*;

/// The sum of the eight f32 lanes of `v`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The f32 factor and the integer offset of group `g`: `scale * activation scale` and
/// `(8 + zero) * sum(a)`.
#[inline]
fn group_terms(g: usize, scales: &[f32], zeros: Option<&[i8]>, act: &Activations) -> (f32, f32) {
    let s = scales[g] * act.scale[g];
    let offset = (8 + zeros.map_or(0, |z| i32::from(z[g]))) * act.sum[g];
    (s, s * offset as f32)
}

/// One output on AVX2.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `row` holds `cols / 2` bytes with `cols` and `group`
/// multiples of 32, `scales` (and `zeros`) one entry per group, `act` quantized for `cols`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn row_avx2(
    row: &[u8],
    group: usize,
    scales: &[f32],
    zeros: Option<&[i8]>,
    act: &Activations,
) -> f32 {
    let (low, flip, ones) = (_mm256_set1_epi8(0x0F), _mm_set1_epi8(0x88u8 as i8), _mm256_set1_epi16(1));
    let mut acc = _mm256_setzero_ps();
    let mut offset = 0.0f32;
    for (g, (bytes, a)) in row.chunks(group / 2).zip(act.split.chunks(group)).enumerate() {
        let mut isum = _mm256_setzero_si256();
        for (b, a) in bytes.chunks_exact(16).zip(a.chunks_exact(32)) {
            // SAFETY: b holds 16 bytes and a 32.
            let (q, a) =
                unsafe { (_mm_loadu_si128(b.as_ptr().cast()), _mm256_loadu_si256(a.as_ptr().cast())) };
            let q = _mm_xor_si128(q, flip);
            let u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(q), q), low);
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), ones));
        }
        let (s, off) = group_terms(g, scales, zeros, act);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(s), acc);
        offset += off;
    }
    hsum_ps(acc) - offset
}

/// One output on AVX-512.
///
/// # Safety
/// As [`row_avx2`], with the AVX-512 tier's features.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn row_avx512(
    row: &[u8],
    group: usize,
    scales: &[f32],
    zeros: Option<&[i8]>,
    act: &Activations,
) -> f32 {
    const FOUR: i64 = 0x0004_0004_0004_0004;
    let shift = _mm512_set_epi64(FOUR, FOUR, 0, 0, FOUR, FOUR, 0, 0);
    let (low, flip) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x88u8 as i8));
    let mut acc = _mm512_setzero_ps();
    let mut offset = 0.0f32;
    for (g, (bytes, a)) in row.chunks(group / 2).zip(act.split.chunks(group)).enumerate() {
        crate::kernels::prefetch_stream(bytes.as_ptr(), bytes.len());
        let mut isum = _mm512_setzero_si512();
        let mut pairs = bytes.chunks_exact(32).zip(a.chunks_exact(64));
        for (b, a) in &mut pairs {
            // SAFETY: b holds 32 bytes and a 64.
            let (q, a) = unsafe {
                let b0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(b.as_ptr().cast()));
                let b1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(b.as_ptr().add(16).cast()));
                (
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(b0), b1),
                    _mm512_loadu_si512(a.as_ptr().cast()),
                )
            };
            // [lo b0, hi b0, lo b1, hi b1]: the even then odd columns of each 32.
            let u = _mm512_and_si512(_mm512_srlv_epi16(_mm512_xor_si512(q, flip), shift), low);
            isum = _mm512_dpbusd_epi32(isum, u, a);
        }
        if bytes.len() % 32 == 16 {
            // An odd count of 32-column steps: the last one on ymm.
            let (b, a) = (&bytes[bytes.len() - 16..], &a[a.len() - 32..]);
            // SAFETY: b holds 16 bytes and a 32.
            let (q, a) =
                unsafe { (_mm_loadu_si128(b.as_ptr().cast()), _mm256_loadu_si256(a.as_ptr().cast())) };
            let q = _mm_xor_si128(q, _mm_set1_epi8(0x88u8 as i8));
            let u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(q), q), _mm256_set1_epi8(0x0F));
            let tail = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a);
            isum = _mm512_add_epi32(isum, _mm512_zextsi256_si512(tail));
        }
        let (s, off) = group_terms(g, scales, zeros, act);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(s), acc);
        offset += off;
    }
    _mm512_reduce_add_ps(acc) - offset
}

/// [`quantize_group_body`](super::quantize_group_body) compiled for AVX2.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_group_avx2(xg: &[f32], qg: &mut [i8]) -> (f32, i32) {
    super::quantize_group_body(xg, qg)
}

/// [`quantize_group_body`](super::quantize_group_body) compiled for AVX-512.
///
/// # Safety
/// The CPU has the AVX-512 tier's features.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_group_avx512(xg: &[f32], qg: &mut [i8]) -> (f32, i32) {
    super::quantize_group_body(xg, qg)
}
