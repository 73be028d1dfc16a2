//! AVX-512 conversion kernels: f16 <-> f32 with the zmm forms of `vcvtph2ps`/`vcvtps2ph` (the
//! same rounding and NaN rule as F16C), the NaN scan with mask compares, and ONNX quantization
//! by the AVX2 tier's fixed-point quotient on sixteen lanes with saturating narrowing stores. The
//! bf16 casts and dequantization are the AVX2 tier's (they run at the speed of memory there).
//!
//! As in `x86.rs`, every function is `unsafe` only because of `#[target_feature]` (the caller
//! checked [`Isa::Avx512`](crate::kernels::Isa::Avx512)); lengths are the shorter slice's, and
//! the elements past the last whole vector go through the scalar reference.

pub use super::x86::{bf16_to_f32, dequantize_i8, dequantize_u8, f32_to_bf16};

use super::scalar;
use super::x86::{FRACTION_BITS, SHIFTER};
use core::arch::x86_64::*;
use half::f16;

/// Elements per `__m512`.
const LANES: usize = 16;

/// Rounding immediates: to nearest even, exceptions suppressed.
const RNE: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

/// f32 -> f16, round to nearest even; NaN quieted keeping its top payload bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn f32_to_f16(x: &[f32], y: &mut [f16]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 32 f32 and `d` 32 f16; unaligned loads and stores.
        unsafe {
            let p = d.as_mut_ptr().cast::<__m256i>();
            _mm256_storeu_si256(p, _mm512_cvtps_ph::<RNE>(_mm512_loadu_ps(s.as_ptr())));
            _mm256_storeu_si256(p.add(1), _mm512_cvtps_ph::<RNE>(_mm512_loadu_ps(s.as_ptr().add(LANES))));
        }
    }
    scalar::f32_to_f16(xs.remainder(), ys.into_remainder());
}

/// f16 -> f32, exact; NaN quieted keeping its payload.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn f16_to_f32(x: &[f16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 32 f16 and `d` 32 f32; unaligned loads and stores.
        unsafe {
            let p = s.as_ptr().cast::<__m256i>();
            _mm512_storeu_ps(d.as_mut_ptr(), _mm512_cvtph_ps(_mm256_loadu_si256(p)));
            _mm512_storeu_ps(d.as_mut_ptr().add(LANES), _mm512_cvtph_ps(_mm256_loadu_si256(p.add(1))));
        }
    }
    scalar::f16_to_f32(xs.remainder(), ys.into_remainder());
}

/// Index of the first NaN in `x`, if any: four unordered mask compares per block of 128
/// elements, one branch per block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn first_nan(x: &[f32]) -> Option<usize> {
    const BLOCK: usize = 8 * LANES;
    let mut xs = x.chunks_exact(BLOCK);
    for (i, s) in (&mut xs).enumerate() {
        // SAFETY: `s` holds 128 f32; unaligned loads.
        let any_nan = unsafe {
            let p = s.as_ptr();
            let unordered = |k: usize| {
                let a = _mm512_loadu_ps(p.add(2 * k * LANES));
                _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, _mm512_loadu_ps(p.add((2 * k + 1) * LANES)))
            };
            (unordered(0) | unordered(1) | unordered(2) | unordered(3)) != 0
        };
        if any_nan {
            return s.iter().position(|v| v.is_nan()).map(|k| i * BLOCK + k);
        }
    }
    let done = x.len() - xs.remainder().len();
    xs.remainder().iter().position(|v| v.is_nan()).map(|k| done + k)
}

/// Sixteen quantized lanes, saturated to i8 (`SIGNED`) or u8, as 16 bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
#[inline]
fn narrow<const SIGNED: bool>(q: __m512i) -> __m128i {
    if SIGNED {
        _mm512_cvtsepi32_epi8(q)
    } else {
        _mm512_cvtusepi32_epi8(_mm512_max_epi32(q, _mm512_setzero_si512()))
    }
}

/// Packs four vectors of i32 lanes into 64 saturated bytes (i8 if `SIGNED`, else u8), in order:
/// three in-lane packs leave dword `p` of 128-bit lane `l` holding vector `p`'s lanes `4 l ..`,
/// and one permute transposes those 4 x 4 dwords (fewer shuffles than four narrowing stores).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
#[inline]
fn pack_bytes<const SIGNED: bool>(q: [__m512i; 4]) -> __m512i {
    let (ab, cd) = (_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3]));
    let bytes = if SIGNED { _mm512_packs_epi16(ab, cd) } else { _mm512_packus_epi16(ab, cd) };
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_epi32(order, bytes)
}

/// Quantizes the whole 16-element vectors of `x` into bytes (i8 if `SIGNED`, else u8); returns
/// how many elements it did. Each vector goes by the fixed-point quotient (see the AVX2 tier's
/// `FixedQuotient` for why it is exact where it does not flag a lane); a vector with a flagged
/// lane (about 1 in 130 on random data) is redone by division, which is the definition.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_vectors<const SIGNED: bool>(x: &[f32], scale: f32, zero_point: i32, y: &mut [u8]) -> usize {
    let n = x.len().min(y.len()) / LANES * LANES;
    let (x, y) = (&x[..n], &mut y[..n]);
    let (lo, hi) = if SIGNED { (-128.0, 127.0) } else { (0.0, 255.0) };
    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let (scale_v, zp) = (_mm512_set1_ps(scale), _mm512_set1_ps(zero_point as f32));
    let divide = |v: __m512| {
        let q = _mm512_roundscale_ps::<RNE>(_mm512_div_ps(v, scale_v));
        _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, zp), lo), hi))
    };
    let reciprocal = (f64::from(1u32 << FRACTION_BITS) / f64::from(scale)) as f32;
    if !reciprocal.is_normal() {
        for (s, d) in x.chunks_exact(LANES).zip(y.chunks_exact_mut(LANES)) {
            // SAFETY: `s` holds 16 f32 and `d` 16 bytes; unaligned load and store.
            unsafe {
                _mm_storeu_si128(d.as_mut_ptr().cast(), narrow::<SIGNED>(divide(_mm512_loadu_ps(s.as_ptr()))))
            };
        }
        return n;
    }
    let bias = (zero_point << FRACTION_BITS) - SHIFTER.to_bits() as i32 + (1 << (FRACTION_BITS - 1));
    let (reciprocal, bias, shifter) =
        (_mm512_set1_ps(reciprocal), _mm512_set1_epi32(bias), _mm512_set1_ps(SHIFTER));
    let flag_bits = _mm512_set1_epi32(i32::MIN | ((1 << FRACTION_BITS) - 1));
    let fixed = |v: __m512| {
        let sum = _mm512_castps_si512(_mm512_fmadd_ps(v, reciprocal, shifter));
        let flagged = _mm512_cmplt_epi32_mask(_mm512_and_si512(sum, flag_bits), _mm512_set1_epi32(1));
        (_mm512_srai_epi32::<{ FRACTION_BITS as u32 }>(_mm512_add_epi32(sum, bias)), flagged)
    };
    // Four vectors a step, one branch on their flags together.
    let mut xs = x.chunks_exact(4 * LANES);
    let mut ys = y.chunks_exact_mut(4 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 64 f32 and `d` 64 bytes; unaligned loads and stores.
        unsafe {
            let v: [__m512; 4] = core::array::from_fn(|k| _mm512_loadu_ps(s.as_ptr().add(k * LANES)));
            let mut q = v.map(fixed);
            if (q[0].1 | q[1].1 | q[2].1 | q[3].1) != 0 {
                for (qk, &vk) in q.iter_mut().zip(&v) {
                    if qk.1 != 0 {
                        qk.0 = divide(vk);
                    }
                }
            }
            _mm512_storeu_si512(d.as_mut_ptr().cast(), pack_bytes::<SIGNED>(q.map(|(qk, _)| qk)));
        }
    }
    for (s, d) in xs.remainder().chunks_exact(LANES).zip(ys.into_remainder().chunks_exact_mut(LANES)) {
        // SAFETY: `s` holds 16 f32 and `d` 16 bytes; unaligned load and store.
        unsafe {
            let v = _mm512_loadu_ps(s.as_ptr());
            let (q, flagged) = fixed(v);
            let q = if flagged == 0 { q } else { divide(v) };
            _mm_storeu_si128(d.as_mut_ptr().cast(), narrow::<SIGNED>(q));
        }
    }
    n
}

/// ONNX QuantizeLinear to i8 (no NaN in `x`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn quantize_i8(x: &[f32], scale: f32, zero_point: i8, y: &mut [i8]) {
    let n = x.len().min(y.len());
    let done =
        quantize_vectors::<true>(&x[..n], scale, zero_point.into(), bytemuck::cast_slice_mut(&mut y[..n]));
    scalar::quantize_i8(&x[done..n], scale, zero_point, &mut y[done..n]);
}

/// ONNX QuantizeLinear to u8 (no NaN in `x`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn quantize_u8(x: &[f32], scale: f32, zero_point: u8, y: &mut [u8]) {
    let n = x.len().min(y.len());
    let done = quantize_vectors::<false>(&x[..n], scale, zero_point.into(), &mut y[..n]);
    scalar::quantize_u8(&x[done..n], scale, zero_point, &mut y[done..n]);
}
