//! AVX2 + FMA + F16C conversion kernels. Each function owns its whole loop; the last few elements
//! that do not fill a vector go through the scalar reference, so tails are exact by construction.
//!
//! Every function here is `unsafe` only because of `#[target_feature]`: the caller must have
//! checked that the CPU has AVX2, FMA and F16C ([`Isa::Avx2`](crate::kernels::Isa::Avx2) is
//! available). Lengths are taken as the shorter of the two slices, so memory safety never depends
//! on the caller.

use super::general::{fixed_reciprocal, FRACTION_BITS, SHIFTER};
use super::scalar;
use core::arch::x86_64::*;
use half::{bf16, f16};

/// Elements per `__m256`.
const LANES: usize = 8;

/// `_mm256_round_ps` mode: to nearest even, no exceptions.
const RNE: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

/// `_mm256_cvtps_ph` mode: to nearest even (the VEX form takes 3 bits; exceptions are masked anyway).
const CVT_RNE: i32 = _MM_FROUND_TO_NEAREST_INT;

/// f32 -> f16, round to nearest even; NaN is quieted keeping the top payload bits, as `half` does.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f32_to_f16(x: &[f32], y: &mut [f16]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 16 f32 and `d` 16 f16 (2 bytes each); unaligned loads and stores.
        unsafe {
            let a = _mm256_loadu_ps(s.as_ptr());
            let b = _mm256_loadu_ps(s.as_ptr().add(LANES));
            let p = d.as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(p, _mm256_cvtps_ph::<CVT_RNE>(a));
            _mm_storeu_si128(p.add(1), _mm256_cvtps_ph::<CVT_RNE>(b));
        }
    }
    scalar::f32_to_f16(xs.remainder(), ys.into_remainder());
}

/// f16 -> f32, exact; NaN is quieted keeping its payload, as `half` does.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f16_to_f32(x: &[f16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 16 f16 (32 bytes) and `d` 16 f32; unaligned loads and stores.
        unsafe {
            let p = s.as_ptr().cast::<__m128i>();
            let a = _mm256_cvtph_ps(_mm_loadu_si128(p));
            let b = _mm256_cvtph_ps(_mm_loadu_si128(p.add(1)));
            _mm256_storeu_ps(d.as_mut_ptr(), a);
            _mm256_storeu_ps(d.as_mut_ptr().add(LANES), b);
        }
    }
    scalar::f16_to_f32(xs.remainder(), ys.into_remainder());
}

/// Eight f32 bit patterns -> eight bf16 patterns in the low halves of the 32-bit lanes:
/// `(bits + 0x7FFF + lsb) >> 16`, and a NaN keeps its top bits with the quiet bit set.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bf16_bits(bits: __m256i) -> __m256i {
    let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
    let rounded = _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
    let rounded = _mm256_srli_epi32::<16>(rounded);
    let quiet_nan = _mm256_or_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(0x0040));
    let magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFF_FFFF));
    let is_nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F80_0000));
    _mm256_blendv_epi8(rounded, quiet_nan, is_nan)
}

/// f32 -> bf16, round to nearest even with integer operations (Zen 3 has no bf16 instruction).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f32_to_bf16(x: &[f32], y: &mut [bf16]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 16 f32 and `d` 16 bf16 (32 bytes); unaligned loads and stores.
        unsafe {
            let a = bf16_bits(_mm256_loadu_si256(s.as_ptr().cast()));
            let b = bf16_bits(_mm256_loadu_si256(s.as_ptr().add(LANES).cast()));
            // Values are below 0x10000, so the unsigned saturation of `packus` never triggers; it
            // interleaves 128-bit halves (a0-3 b0-3 a4-7 b4-7), which the permute puts back in order.
            let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(a, b));
            _mm256_storeu_si256(d.as_mut_ptr().cast(), packed);
        }
    }
    scalar::f32_to_bf16(xs.remainder(), ys.into_remainder());
}

/// bf16 -> f32, exact; NaN gets the quiet bit, as `half` does.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn bf16_to_f32(x: &[bf16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(LANES);
    let mut ys = y.chunks_exact_mut(LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 8 bf16 (16 bytes) and `d` 8 f32; unaligned loads and stores.
        unsafe {
            let bits = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(s.as_ptr().cast())));
            let magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFF_FFFF));
            let is_nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F80_0000));
            let quiet = _mm256_and_si256(is_nan, _mm256_set1_epi32(0x0040_0000));
            _mm256_storeu_si256(d.as_mut_ptr().cast(), _mm256_or_si256(bits, quiet));
        }
    }
    scalar::bf16_to_f32(xs.remainder(), ys.into_remainder());
}

/// Index of the first NaN in `x`, if any. One unordered compare tests two vectors, and a block of
/// 64 elements costs one branch, so the scan runs at the speed of its loads.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn first_nan(x: &[f32]) -> Option<usize> {
    const BLOCK: usize = 8 * LANES;
    let mut xs = x.chunks_exact(BLOCK);
    for (i, s) in (&mut xs).enumerate() {
        // SAFETY: `s` holds 64 f32; unaligned loads.
        let any_nan = unsafe {
            let p = s.as_ptr();
            let unordered = |k: usize| {
                let a = _mm256_loadu_ps(p.add(2 * k * LANES));
                _mm256_cmp_ps::<_CMP_UNORD_Q>(a, _mm256_loadu_ps(p.add((2 * k + 1) * LANES)))
            };
            let m = _mm256_or_ps(
                _mm256_or_ps(unordered(0), unordered(1)),
                _mm256_or_ps(unordered(2), unordered(3)),
            );
            _mm256_movemask_ps(m) != 0
        };
        if any_nan {
            return s.iter().position(|v| v.is_nan()).map(|k| i * BLOCK + k);
        }
    }
    let done = x.len() - xs.remainder().len();
    xs.remainder().iter().position(|v| v.is_nan()).map(|k| done + k)
}

/// `round_half_even(x / scale) + zero_point` saturated to `[lo, hi]` as i32 lanes, with the
/// division itself: the definition, and the path for quotients the fixed-point path flags. The
/// clamp is done in float, before the conversion that would turn out-of-range values into
/// `i32::MIN`; the float sum is exact whenever the result lies inside `[lo, hi]`. `x` holds no NaN.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_lanes(x: __m256, scale: __m256, zero_point: __m256, lo: __m256, hi: __m256) -> __m256i {
    let q = _mm256_round_ps::<RNE>(_mm256_div_ps(x, scale));
    _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, zero_point), lo), hi))
}

/// ONNX quantization without the division, exact for every input it does not flag.
///
/// One FMA forms `fixed = round(x * RN(2^11 / scale))`, the quotient with 11 fraction bits, as the
/// low bits of `x * r + SHIFTER`. Within `|x / scale| < 2^11` it is off from `2^11 * x / scale` by
/// at most 0.75 (the relative error `2^-24` of `r` at `2^22`, plus the rounding). So when `fixed`
/// is not exactly on a half-integer (`fixed mod 2^11 != 2^10`), the quotient lies within
/// `1/2 - 2^-13` of the integer `floor((fixed + 2^10) / 2^11)`, and so does its f32 rounding
/// (`ulp / 2 <= 2^-14` there): that integer is `round_half_even(x / scale)` as ONNX computes it.
/// Beyond `2^11` (and at `+inf`) the integer only has to saturate, which the monotone bit pattern
/// does. Flagged for the division: lanes on a half-integer (exact ties and quotients within about
/// `2^-12` of one, about 1 in 2048 on random data) and lanes whose sum is `+-0` or negative
/// (quotients below about `-6144`, where the bit pattern stops being monotone).
struct FixedQuotient {
    reciprocal: __m256,
    /// `zero_point * 2^11 - bits(SHIFTER) + 2^10`: adds the zero point and removes the shifter in
    /// one integer add, leaving `(q + zero_point) * 2^11 + fraction`.
    bias: __m256i,
}

impl FixedQuotient {
    /// The fixed-point path for `scale`, or `None` where `2^11 / scale` is not a normal f32
    /// (scales below about `2^-116`), which keep the division.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn new(scale: f32, zero_point: i32) -> Option<Self> {
        let reciprocal = fixed_reciprocal(scale)?;
        let bias = (zero_point << FRACTION_BITS) - SHIFTER.to_bits() as i32 + (1 << (FRACTION_BITS - 1));
        Some(Self { reciprocal: _mm256_set1_ps(reciprocal), bias: _mm256_set1_epi32(bias) })
    }

    /// `round_half_even(x / scale) + zero_point` as i32 lanes (to be saturated by the packs), and
    /// the sum's sign and fraction bits: zero or negative exactly where a lane is flagged.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn lanes(&self, x: __m256) -> (__m256i, __m256i) {
        let sum = _mm256_castps_si256(_mm256_fmadd_ps(x, self.reciprocal, _mm256_set1_ps(SHIFTER)));
        let flag = _mm256_and_si256(sum, _mm256_set1_epi32(i32::MIN | ((1 << FRACTION_BITS) - 1)));
        (_mm256_srai_epi32::<FRACTION_BITS>(_mm256_add_epi32(sum, self.bias)), flag)
    }
}

/// Packs four vectors of i32 lanes into 32 saturated bytes (i8 if `SIGNED`, else u8), in order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pack_bytes<const SIGNED: bool>(q: [__m256i; 4]) -> __m256i {
    let (ab, cd) = (_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    let bytes = if SIGNED { _mm256_packs_epi16(ab, cd) } else { _mm256_packus_epi16(ab, cd) };
    // After the packs the dwords are a0-3 b0-3 c0-3 d0-3 a4-7 b4-7 c4-7 d4-7.
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Quantizes the whole 32-element blocks of `x` into bytes (i8 if `SIGNED`, else u8) and returns
/// how many elements it did: by [`FixedQuotient`], then the blocks with a flagged lane again by
/// division. Flags are gathered per group of 64 blocks (blocks past the end of a short group stay
/// clean), so the loop has no data-dependent branch.
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_blocks<const SIGNED: bool>(x: &[f32], scale: f32, zero_point: i32, y: &mut [u8]) -> usize {
    const BLOCK: usize = 4 * LANES;
    const GROUP: usize = 64 * BLOCK;
    let n = x.len().min(y.len()) / BLOCK * BLOCK;
    let (x, y) = (&x[..n], &mut y[..n]);
    let (lo, hi) = if SIGNED { (-128.0, 127.0) } else { (0.0, 255.0) };
    let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let (scale_v, zp) = (_mm256_set1_ps(scale), _mm256_set1_ps(zero_point as f32));
    let divide = |s: &[f32], d: &mut [u8]| {
        // SAFETY: `s` holds 32 f32 and `d` 32 bytes; unaligned loads and store.
        unsafe {
            let v =
                |k: usize| quantize_lanes(_mm256_loadu_ps(s.as_ptr().add(k * LANES)), scale_v, zp, lo, hi);
            _mm256_storeu_si256(d.as_mut_ptr().cast(), pack_bytes::<SIGNED>([v(0), v(1), v(2), v(3)]));
        }
    };
    let Some(fixed) = FixedQuotient::new(scale, zero_point) else {
        x.chunks_exact(BLOCK).zip(y.chunks_exact_mut(BLOCK)).for_each(|(s, d)| divide(s, d));
        return n;
    };
    for (xg, yg) in x.chunks(GROUP).zip(y.chunks_mut(GROUP)) {
        // The sign masks of the blocks' flags, one byte a block (a movemask, not a branch, per block).
        let mut signs = [0u8; GROUP / BLOCK];
        for ((s, d), sign) in xg.chunks_exact(BLOCK).zip(yg.chunks_exact_mut(BLOCK)).zip(&mut signs) {
            // SAFETY: `s` holds 32 f32 and `d` 32 bytes; unaligned loads and store.
            unsafe {
                let v = |k: usize| fixed.lanes(_mm256_loadu_ps(s.as_ptr().add(k * LANES)));
                let ((q0, f0), (q1, f1), (q2, f2), (q3, f3)) = (v(0), v(1), v(2), v(3));
                let least = _mm256_min_epi32(_mm256_min_epi32(f0, f1), _mm256_min_epi32(f2, f3));
                let flagged = _mm256_cmpgt_epi32(_mm256_set1_epi32(1), least);
                *sign = _mm256_movemask_ps(_mm256_castsi256_ps(flagged)) as u8;
                _mm256_storeu_si256(d.as_mut_ptr().cast(), pack_bytes::<SIGNED>([q0, q1, q2, q3]));
            }
        }
        // SAFETY: `signs` is 64 bytes; unaligned loads.
        let clean = unsafe {
            let zero = |k: usize| {
                let v = _mm256_loadu_si256(signs.as_ptr().add(32 * k).cast());
                _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_setzero_si256())) as u32
            };
            u64::from(zero(0)) | u64::from(zero(1)) << 32
        };
        let mut flagged = !clean;
        while flagged != 0 {
            let at = flagged.trailing_zeros() as usize * BLOCK;
            divide(&xg[at..at + BLOCK], &mut yg[at..at + BLOCK]);
            flagged &= flagged - 1;
        }
    }
    n
}

/// ONNX QuantizeLinear to i8 (no NaN in `x`).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_i8(x: &[f32], scale: f32, zero_point: i8, y: &mut [i8]) {
    let n = x.len().min(y.len());
    let done =
        quantize_blocks::<true>(&x[..n], scale, zero_point.into(), bytemuck::cast_slice_mut(&mut y[..n]));
    scalar::quantize_i8(&x[done..n], scale, zero_point, &mut y[done..n]);
}

/// ONNX QuantizeLinear to u8 (no NaN in `x`).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_u8(x: &[f32], scale: f32, zero_point: u8, y: &mut [u8]) {
    let n = x.len().min(y.len());
    let done = quantize_blocks::<false>(&x[..n], scale, zero_point.into(), &mut y[..n]);
    scalar::quantize_u8(&x[done..n], scale, zero_point, &mut y[done..n]);
}

/// Dequantizes the whole 16-element blocks of `y` (bytes read as i8 if `SIGNED`, else u8) as
/// `(y - zero_point) as f32 * scale`, one rounding, and returns how many elements it did.
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_blocks<const SIGNED: bool>(y: &[u8], scale: f32, zero_point: i32, x: &mut [f32]) -> usize {
    let (scale, zp) = (_mm256_set1_ps(scale), _mm256_set1_epi32(zero_point));
    let widen = |v: __m128i| if SIGNED { _mm256_cvtepi8_epi32(v) } else { _mm256_cvtepu8_epi32(v) };
    let lanes = |v: __m128i| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(widen(v), zp)), scale);
    let mut done = 0;
    for (s, d) in y.chunks_exact(2 * LANES).zip(x.chunks_exact_mut(2 * LANES)) {
        // SAFETY: `s` holds 16 bytes and `d` 16 f32; unaligned loads and stores.
        unsafe {
            let v = _mm_loadu_si128(s.as_ptr().cast());
            _mm256_storeu_ps(d.as_mut_ptr(), lanes(v));
            _mm256_storeu_ps(d.as_mut_ptr().add(LANES), lanes(_mm_unpackhi_epi64(v, v)));
        }
        done += 2 * LANES;
    }
    done
}

/// ONNX DequantizeLinear from i8.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantize_i8(y: &[i8], scale: f32, zero_point: i8, x: &mut [f32]) {
    let n = y.len().min(x.len());
    let done =
        dequantize_blocks::<true>(bytemuck::cast_slice(&y[..n]), scale, zero_point.into(), &mut x[..n]);
    scalar::dequantize_i8(&y[done..n], scale, zero_point, &mut x[done..n]);
}

/// ONNX DequantizeLinear from u8.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequantize_u8(y: &[u8], scale: f32, zero_point: u8, x: &mut [f32]) {
    let n = y.len().min(x.len());
    let done = dequantize_blocks::<false>(&y[..n], scale, zero_point.into(), &mut x[..n]);
    scalar::dequantize_u8(&y[done..n], scale, zero_point, &mut x[done..n]);
}

/// [`super::min_max_finite`] in 16 lanes (two vectors) as the portable version has them, NaN
/// found by ordered compares.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn min_max_finite(x: &[f32]) -> (f32, f32, bool) {
    let (mut lo, mut hi) = ([_mm256_set1_ps(f32::INFINITY); 2], [_mm256_set1_ps(f32::NEG_INFINITY); 2]);
    let mut ordered = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    let chunks = x.chunks_exact(2 * LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        // SAFETY: the chunk holds 16 f32; unaligned loads.
        let v = unsafe { [_mm256_loadu_ps(chunk.as_ptr()), _mm256_loadu_ps(chunk.as_ptr().add(LANES))] };
        ordered = _mm256_and_ps(ordered, _mm256_cmp_ps::<_CMP_ORD_Q>(v[0], v[1]));
        for h in 0..2 {
            // `min(v, lo)` is `v < lo ? v : lo`, the portable lane update.
            lo[h] = _mm256_min_ps(v[h], lo[h]);
            hi[h] = _mm256_max_ps(v[h], hi[h]);
        }
    }
    let (mut los, mut his) = ([0f32; 2 * LANES], [0f32; 2 * LANES]);
    // SAFETY: each array holds 16 f32.
    unsafe {
        for h in 0..2 {
            _mm256_storeu_ps(los.as_mut_ptr().add(h * LANES), lo[h]);
            _mm256_storeu_ps(his.as_mut_ptr().add(h * LANES), hi[h]);
        }
    }
    let mut nan = _mm256_movemask_ps(ordered) != 0xFF;
    for (i, &v) in rest.iter().enumerate() {
        los[i] = if v < los[i] { v } else { los[i] };
        his[i] = if v > his[i] { v } else { his[i] };
        nan |= v.is_nan();
    }
    let min = los.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let max = his.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    // Infinities reach the range; NaN, which no compare lets through, only the ordered mask.
    let finite = x.is_empty() || (!nan && min > f32::NEG_INFINITY && max < f32::INFINITY);
    (min, max, finite)
}
