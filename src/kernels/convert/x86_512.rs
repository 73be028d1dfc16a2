//! AVX-512 conversion kernels: f16 <-> f32 with the zmm forms of `vcvtph2ps`/`vcvtps2ph` (the
//! same rounding and NaN rule as F16C), bf16 <-> f32 with integer zmm operations (this tier does
//! not assume AVX-512 BF16, whose `vcvtneps2bf16` also flushes subnormals), the NaN scan with
//! chained mask compares, ONNX quantization by a fixed-point quotient on sixteen lanes packed
//! with saturation, and dequantization on zmm.
//!
//! As in `x86.rs`, every function is `unsafe` only because of `#[target_feature]` (the caller
//! checked [`Isa::Avx512`](crate::kernels::Isa::Avx512)); lengths are the shorter slice's, and
//! the elements past the last whole vector go through the scalar reference (the quantizers'
//! through one masked vector).

use super::general::{Dest, Wide, FRACTION_BITS, SHIFTER};
use super::scalar;
use core::arch::x86_64::*;
use half::{bf16, f16};

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

/// Index of the first NaN in `x`, if any. A block of 128 elements costs four ordered compares
/// of vector pairs, each masked by the previous one's result (no mask ORs), and one branch.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn first_nan(x: &[f32]) -> Option<usize> {
    const BLOCK: usize = 8 * LANES;
    let (blocks, rest) = x.as_chunks::<BLOCK>();
    for (i, s) in blocks.iter().enumerate() {
        // SAFETY: `s` holds 128 f32; unaligned loads.
        let ordered = unsafe {
            let p = s.as_ptr();
            let pair = |k: usize, ordered: __mmask16| {
                let a = _mm512_loadu_ps(p.add(2 * k * LANES));
                _mm512_mask_cmp_ps_mask::<_CMP_ORD_Q>(ordered, a, _mm512_loadu_ps(p.add((2 * k + 1) * LANES)))
            };
            pair(3, pair(2, pair(1, pair(0, 0xFFFF))))
        };
        if ordered != 0xFFFF {
            return s.iter().position(|v| v.is_nan()).map(|k| i * BLOCK + k);
        }
    }
    let done = x.len() - rest.len();
    rest.iter().position(|v| v.is_nan()).map(|k| done + k)
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

/// Fraction bits of the fixed-point quotient for one scale (the AVX2 tier and the per-element path
/// keep [`FRACTION_BITS`], 11): with 13, quotients up to `2^9` in magnitude stay exact, which is all
/// that i8 and u8 need (a result in range has `|x / scale| <= 255.5`), and a lane is flagged for the
/// division 4 times less often (about 1 in 8192).
const QUOTIENT_BITS: u32 = 13;

/// `1.5 * 2^23 + 2^12`: the shifter of [`SHIFTER`] with the half of [`QUOTIENT_BITS`]'s unit.
const QUOTIENT_SHIFTER: f32 = 12_587_008.0;

/// The AVX2 tier's fixed-point quotient (see `FixedQuotient` in `x86.rs` for why it is exact
/// where it does not flag a lane) with [`QUOTIENT_BITS`] fraction bits instead of 11, reordered to
/// cost three operations and one flag test a vector.
///
/// `sum = x * RN(2^13 / scale) + QUOTIENT_SHIFTER` in one FMA. Inside the shifter's binade the
/// sum's bit pattern is `bits(1.5 * 2^23) + 2^12 + fixed`, `fixed` the quotient with 13 fraction
/// bits, within 0.75 of `2^13 x / scale` while `|fixed| < 2^22` (`|x / scale| < 2^9`); there the
/// f32 quotient's half ulp is below `2^-15`, so a `fixed` off a half-integer (low 13 bits of the
/// sum not all zero) rounds as `round_half_even(x / scale)` does. The arithmetic shift
/// `sum >> 13` is `0x25A00 + floor((fixed + 2^12) / 2^13)`, the rounded quotient plus a constant
/// that one subtraction (with the zero point) removes. Outside the binade the lanes only have to
/// saturate the right way, which they do without a flag: positive sums keep their order as
/// integers (quotients beyond `+-2^9` land beyond the ends of i8 and u8 whatever the zero point),
/// and a negative or `-0` sum (quotients below about `-1536`, and `-inf`) shifts to a negative
/// number below every end. Only lanes whose low 13 bits are zero (a quotient on or within about
/// `2^-14` of a half-integer) are flagged for the division.
#[derive(Clone, Copy)]
struct FixedQuotient {
    reciprocal: __m512,
    shifter: __m512,
    /// `bits(QUOTIENT_SHIFTER) >> 13` minus the zero point.
    offset: __m512i,
    fraction: __m512i,
}

impl FixedQuotient {
    /// The fixed-point path for `scale`, or `None` where `2^13 / scale` is not a normal f32
    /// (scales below about `2^-114`), which keep the division.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    fn new(scale: f32, zero_point: i32) -> Option<Self> {
        // One rounding: a quotient of f32 values rounded to f64, then to f32, is rounded as once to
        // f32 (53 bits are at least twice 24 plus 2).
        let reciprocal = (f64::from(1u32 << QUOTIENT_BITS) / f64::from(scale)) as f32;
        if !reciprocal.is_normal() {
            return None;
        }
        let offset = (QUOTIENT_SHIFTER.to_bits() >> QUOTIENT_BITS) as i32 - zero_point;
        Some(Self {
            reciprocal: _mm512_set1_ps(reciprocal),
            shifter: _mm512_set1_ps(QUOTIENT_SHIFTER),
            offset: _mm512_set1_epi32(offset),
            fraction: _mm512_set1_epi32((1 << QUOTIENT_BITS) - 1),
        })
    }

    /// `round_half_even(x / scale) + zero_point` as i32 lanes (to be saturated by the packs)
    /// where the lane is clean, and `clean` narrowed to the lanes whose sum is off a half-integer.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    fn lanes(&self, x: __m512, clean: __mmask16) -> (__m512i, __mmask16) {
        let sum = _mm512_castps_si512(_mm512_fmadd_ps(x, self.reciprocal, self.shifter));
        let q = _mm512_sub_epi32(_mm512_srai_epi32::<QUOTIENT_BITS>(sum), self.offset);
        (q, _mm512_mask_test_epi32_mask(clean, sum, self.fraction))
    }
}

/// Sixteen lanes quantized by the definition, `clamp(round_half_even(x / scale) + zero_point)`
/// (i8 if `SIGNED`, else u8 range): the clamp comes before the conversion, which would turn
/// out-of-range values into `i32::MIN`; the float sum is exact wherever the result lies in range.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn divide_lanes<const SIGNED: bool>(v: __m512, scale: f32, zero_point: i32) -> __m512i {
    let (lo, hi) = if SIGNED { (-128.0, 127.0) } else { (0.0, 255.0) };
    let q = _mm512_roundscale_ps::<RNE>(_mm512_div_ps(v, _mm512_set1_ps(scale)));
    let q = _mm512_add_ps(q, _mm512_set1_ps(zero_point as f32));
    _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(lo)), _mm512_set1_ps(hi)))
}

/// Elements per block of [`quantize_vectors`]: four vectors, 64 bytes of output.
const BLOCK: usize = 4 * LANES;

/// Quantizes the whole 16-element vectors of `x` into bytes (i8 if `SIGNED`, else u8) and returns
/// how many elements it did. Four vectors a step by [`FixedQuotient`] with one branch on their
/// flags together; a flagged vector (a block of 64 has one about 0.8% of the time on random data)
/// is redone by division, which is the definition. With `NAN`, the same mask chain also tests the
/// input for NaN (one ordered compare per pair of vectors), and the first block holding one stops
/// the pass with `Err(())`: `y` then holds a partial result.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_vectors<const SIGNED: bool, const NAN: bool>(
    x: &[f32],
    (scale, zero_point, fixed): (f32, i32, Option<FixedQuotient>),
    y: &mut [u8],
) -> Result<usize, ()> {
    const ALL: __mmask16 = 0xFFFF;
    let n = x.len().min(y.len()) / LANES * LANES;
    let (x, y) = (&x[..n], &mut y[..n]);
    let divide = |v: __m512| divide_lanes::<SIGNED>(v, scale, zero_point);
    let has_nan = |v: __m512| NAN && _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v) != 0;
    let Some(fixed) = fixed else {
        for (s, d) in x.as_chunks::<LANES>().0.iter().zip(y.as_chunks_mut::<LANES>().0) {
            // SAFETY: `s` holds 16 f32 and `d` 16 bytes; unaligned load and store.
            unsafe {
                let v = _mm512_loadu_ps(s.as_ptr());
                if has_nan(v) {
                    return Err(());
                }
                _mm_storeu_si128(d.as_mut_ptr().cast(), narrow::<SIGNED>(divide(v)))
            };
        }
        return Ok(n);
    };
    // Slices of arrays: no division by a run-time chunk length in the loop set-up.
    let (xs, x_rest) = x.as_chunks::<BLOCK>();
    let (ys, y_rest) = y.as_chunks_mut::<BLOCK>();
    for (s, d) in xs.iter().zip(ys) {
        // SAFETY: `s` holds 64 f32 and `d` 64 bytes; unaligned loads and stores.
        unsafe {
            let v: [__m512; 4] = core::array::from_fn(|k| _mm512_loadu_ps(s.as_ptr().add(k * LANES)));
            let mut clean = ALL;
            if NAN {
                clean = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(v[0], v[1]);
                clean = _mm512_mask_cmp_ps_mask::<_CMP_ORD_Q>(clean, v[2], v[3]);
            }
            let (q0, clean) = fixed.lanes(v[0], clean);
            let (q1, clean) = fixed.lanes(v[1], clean);
            let (q2, clean) = fixed.lanes(v[2], clean);
            let (q3, clean) = fixed.lanes(v[3], clean);
            let mut q = [q0, q1, q2, q3];
            if clean != ALL {
                for (qk, &vk) in q.iter_mut().zip(&v) {
                    // Opaque, so that the compiler cannot keep this test's operands from the fast
                    // path (an extra AND a vector on every block, measured) to share them here.
                    let vk = core::hint::black_box(vk);
                    if has_nan(vk) {
                        return Err(());
                    }
                    if fixed.lanes(vk, ALL).1 != ALL {
                        *qk = divide(vk);
                    }
                }
            }
            _mm512_storeu_si512(d.as_mut_ptr().cast(), pack_bytes::<SIGNED>(q));
        }
    }
    for (s, d) in x_rest.as_chunks::<LANES>().0.iter().zip(y_rest.as_chunks_mut::<LANES>().0) {
        // SAFETY: `s` holds 16 f32 and `d` 16 bytes; unaligned load and store.
        unsafe {
            let v = _mm512_loadu_ps(s.as_ptr());
            if has_nan(v) {
                return Err(());
            }
            let (q, clean) = fixed.lanes(v, ALL);
            let q = if clean == ALL { q } else { divide(v) };
            _mm_storeu_si128(d.as_mut_ptr().cast(), narrow::<SIGNED>(q));
        }
    }
    Ok(n)
}

/// Inputs up to this many elements are quantized in one pass that also looks for NaN, into a
/// per-thread scratch buffer copied to the output once the input proved clean (16 KiB of bytes).
const FUSED_MAX: usize = 16 << 10;

std::thread_local! {
    /// The scratch of [`quantize_checked`].
    static SCRATCH: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// Quantizes `x` into `y` unless `x` holds a NaN: `Err(index of the first NaN)` with `y`
/// untouched. The first [`FUSED_MAX`] elements go through one pass that converts and tests for NaN
/// at once (into the scratch), the rest is scanned, and only then is anything written: the output
/// costs one more copy of bytes instead of a second read of the input's f32 (about a quarter of the
/// traffic).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_checked<const SIGNED: bool>(
    x: &[f32],
    scale: f32,
    zero_point: i32,
    y: &mut [u8],
) -> Result<(), usize> {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    // SAFETY (every `first_nan` call): this function has `first_nan`'s target features.
    let scan = |x: &[f32]| unsafe { first_nan(x) };
    let params = (scale, zero_point, FixedQuotient::new(scale, zero_point));
    let head = n.min(FUSED_MAX);
    let fused = SCRATCH.with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().ok()?;
        if scratch.len() < FUSED_MAX {
            scratch.resize(FUSED_MAX, 0);
        }
        let head_pass = quantize_vectors::<SIGNED, true>(&x[..head], params, &mut scratch[..head]);
        Some(match head_pass {
            // The pass stopped at a block with a NaN, so the scan finds one.
            Err(()) => Err(scan(&x[..head]).unwrap_or(0)),
            // The head is final only if the rest holds no NaN either.
            Ok(done) => match scan(&x[done..]) {
                Some(at) => Err(done + at),
                None => {
                    y[..done].copy_from_slice(&scratch[..done]);
                    Ok(done)
                }
            },
        })
    });
    let done = match fused {
        Some(result) => result?,
        // The scratch is in use (not reachable: nothing here re-enters): scan, then convert.
        None => match scan(x) {
            Some(at) => return Err(at),
            None => 0,
        },
    };
    let done = done + quantize_vectors::<SIGNED, false>(&x[done..], params, &mut y[done..]).unwrap_or(0);
    quantize_few::<SIGNED>(&x[done..], params, &mut y[done..]);
    Ok(())
}

/// The last up to 16 elements of a run (no NaN in `x`) into `y`: one masked vector, by division
/// (the definition) when the fixed-point path flags a lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_few<const SIGNED: bool>(
    x: &[f32],
    (scale, zero_point, fixed): (f32, i32, Option<FixedQuotient>),
    y: &mut [u8],
) {
    let n = x.len().min(y.len()).min(LANES);
    if n == 0 {
        return;
    }
    let mask = ((1u32 << n) - 1) as __mmask16;
    // SAFETY: the masked load reads and the masked store writes only the `n` elements the
    // slices hold (masked-off lanes do not fault); the zeros loaded past them are not stored.
    unsafe {
        let v = _mm512_maskz_loadu_ps(mask, x.as_ptr());
        let q = match fixed.map(|fixed| fixed.lanes(v, 0xFFFF)) {
            Some((q, 0xFFFF)) => q,
            _ => divide_lanes::<SIGNED>(v, scale, zero_point),
        };
        _mm_mask_storeu_epi8(y.as_mut_ptr().cast(), mask, narrow::<SIGNED>(q));
    }
}

/// ONNX QuantizeLinear to i8 (no NaN in `x`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn quantize_i8(x: &[f32], scale: f32, zero_point: i8, y: &mut [i8]) {
    let n = x.len().min(y.len());
    let y_bytes = bytemuck::cast_slice_mut(&mut y[..n]);
    let fixed = FixedQuotient::new(scale, zero_point.into());
    let params = (scale, zero_point.into(), fixed);
    let done = quantize_vectors::<true, false>(&x[..n], params, y_bytes).unwrap_or(0);
    quantize_few::<true>(&x[done..n], params, &mut y_bytes[done..]);
}

/// ONNX QuantizeLinear to u8 (no NaN in `x`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn quantize_u8(x: &[f32], scale: f32, zero_point: u8, y: &mut [u8]) {
    let n = x.len().min(y.len());
    let fixed = FixedQuotient::new(scale, zero_point.into());
    let params = (scale, zero_point.into(), fixed);
    let done = quantize_vectors::<false, false>(&x[..n], params, &mut y[..n]).unwrap_or(0);
    quantize_few::<false>(&x[done..n], params, &mut y[done..n]);
}

/// ONNX QuantizeLinear to i8 of `x` that may hold NaN: the index of the first NaN, with `y`
/// untouched, or `None` with `y` written.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn quantize_i8_checked(x: &[f32], scale: f32, zero_point: i8, y: &mut [i8]) -> Option<usize> {
    quantize_checked::<true>(x, scale, zero_point.into(), bytemuck::cast_slice_mut(y)).err()
}

/// ONNX QuantizeLinear to u8 of `x` that may hold NaN (see [`quantize_i8_checked`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn quantize_u8_checked(x: &[f32], scale: f32, zero_point: u8, y: &mut [u8]) -> Option<usize> {
    quantize_checked::<false>(x, scale, zero_point.into(), y).err()
}

/// Quantization with a divisor and zero point per element (blocks and channels that run across a
/// row), replaced by `wide`: rounded half to even (or half away from zero with `AWAY`) and clamped
/// to `[lo, hi]`, on the whole vectors of `x` into `y`; returns how many elements it did (the
/// caller finishes the rest).
///
/// With fixed-point reciprocals and a range within `[-256, 255]` (4- and 8-bit types), each vector
/// takes [`FixedQuotient`]'s arithmetic, exact where it flags no lane; the vectors with a flagged
/// lane that matters (about 20% of them when small symmetric groups put their negative extremes
/// on a tie, which a branch would mispredict) are listed without a branch and redone from the f64
/// reciprocals, 64 vectors at a time. Otherwise every vector takes the f64 reciprocals
/// (`general::quotient`, exact).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn quantize_per_element<const AWAY: bool>(
    x: &[f32],
    wide: Wide<'_>,
    zero_points: &[f32],
    range: (f32, f32),
    y: Dest<'_>,
) -> usize {
    let n = x.len().min(wide.reciprocals.len()).min(zero_points.len());
    let n = n.min(y.len()) / LANES * LANES;
    let (x, zero_points) = (&x[..n], &zero_points[..n]);
    // SAFETY (every store below): the elements `i..i + 16` lie in `y` (8 bytes of nibbles for 16),
    // as `i + 16 <= n <= y.len()`; unaligned stores.
    match y {
        Dest::I8(y) => per_element::<AWAY>(x, wide, zero_points, range, |i, q| unsafe {
            _mm_storeu_si128(y.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi8(q))
        }),
        Dest::U8(y) => per_element::<AWAY>(x, wide, zero_points, range, |i, q| unsafe {
            _mm_storeu_si128(y.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi8(q))
        }),
        Dest::I16(y) => per_element::<AWAY>(x, wide, zero_points, range, |i, q| unsafe {
            _mm256_storeu_si256(y.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi16(q))
        }),
        Dest::U16(y) => per_element::<AWAY>(x, wide, zero_points, range, |i, q| unsafe {
            _mm256_storeu_si256(y.as_mut_ptr().add(i).cast(), _mm512_cvtepi32_epi16(q))
        }),
        Dest::I32(y) => per_element::<AWAY>(x, wide, zero_points, range, |i, q| unsafe {
            _mm512_storeu_si512(y.as_mut_ptr().add(i).cast(), q)
        }),
        Dest::Nibbles(y) => per_element::<AWAY>(x, wide, zero_points, range, |i, q| unsafe {
            // Each qword holds an element pair: bits 0-3 from the even one, bits 4-7 from the odd
            // one shifted down (a bitwise select on 0x0F), then the low byte of each qword.
            let pairs =
                _mm512_ternarylogic_epi64::<0xD8>(_mm512_srli_epi64::<28>(q), q, _mm512_set1_epi64(0x0F));
            _mm_storel_epi64(y.as_mut_ptr().add(i / 2).cast(), _mm512_cvtepi64_epi8(pairs))
        }),
    }
    n
}

/// [`quantize_per_element`] on `x` (whole vectors; the other slices at least as long) through
/// `store(element index, values)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn per_element<const AWAY: bool>(
    x: &[f32],
    wide: Wide<'_>,
    zero_points: &[f32],
    (lo, hi): (f32, f32),
    mut store: impl FnMut(usize, __m512i),
) {
    const BLOCK: usize = 64;
    let n = x.len();
    let (lo_f, hi_f) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let (lo_i, hi_i) = (_mm512_set1_epi32(lo as i32), _mm512_set1_epi32(hi as i32));
    let by_reciprocal = |i: usize| {
        // SAFETY: i + 16 <= n, and no slice read is shorter than n.
        unsafe {
            let product = |k: usize| {
                let v = _mm512_cvtps_pd(_mm256_loadu_ps(x.as_ptr().add(i + k)));
                _mm512_cvtpd_ps(_mm512_mul_pd(v, _mm512_loadu_pd(wide.reciprocals.as_ptr().add(i + k))))
            };
            let t = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(product(0)), product(8));
            let r = if AWAY {
                // Half away from zero, as `f32::round`: the integer part, one further from zero
                // where the dropped fraction (exact) is at least 1/2.
                let whole = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
                let half = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(
                    _mm512_abs_ps(_mm512_sub_ps(t, whole)),
                    _mm512_set1_ps(0.5),
                );
                let one = _mm512_or_ps(_mm512_set1_ps(1.0), _mm512_and_ps(t, _mm512_set1_ps(-0.0)));
                _mm512_mask_add_ps(whole, half, whole, one)
            } else {
                _mm512_roundscale_ps::<RNE>(t)
            };
            let z = _mm512_loadu_ps(zero_points.as_ptr().add(i));
            _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, z), lo_f), hi_f))
        }
    };
    let prefetch = |i: usize| {
        if i < wide.ahead.len() {
            // SAFETY: the address lies in `wide.ahead`; a prefetch reads nothing architecturally.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(wide.ahead.as_ptr().add(i).cast()) };
        }
    };
    if wide.fixed.len() < n || wide.offsets.len() < n || lo < -256.0 || hi > 255.0 {
        for i in (0..n).step_by(LANES) {
            prefetch(i);
            store(i, by_reciprocal(i));
        }
        return;
    }
    let (shifter, fraction) = (_mm512_set1_ps(SHIFTER), _mm512_set1_epi32((1 << FRACTION_BITS) - 1));
    for block in (0..n).step_by(BLOCK * LANES) {
        let mut flagged = [0u16; BLOCK];
        let mut count = 0;
        for (v, i) in (block..n.min(block + BLOCK * LANES)).step_by(LANES).enumerate() {
            prefetch(i);
            // SAFETY: i + 16 <= n, and no slice read is shorter than n.
            let (q, flags) = unsafe {
                let sum = _mm512_castps_si512(_mm512_fmadd_ps(
                    _mm512_loadu_ps(x.as_ptr().add(i)),
                    _mm512_loadu_ps(wide.fixed.as_ptr().add(i)),
                    shifter,
                ));
                let offset = _mm512_loadu_si512(wide.offsets.as_ptr().add(i).cast());
                let q = _mm512_add_epi32(_mm512_srai_epi32::<{ FRACTION_BITS as u32 }>(sum), offset);
                (q, _mm512_testn_epi32_mask(sum, fraction))
            };
            // A flagged lane lies on or near the half-integer between `q - 1` and `q`; when both
            // are above the range (the positive extreme of a symmetric group), it is right.
            let matters = _mm512_mask_cmple_epi32_mask(flags, q, hi_i);
            store(i, _mm512_min_epi32(_mm512_max_epi32(q, lo_i), hi_i));
            flagged[count] = v as u16;
            count += usize::from(matters != 0);
        }
        for &v in &flagged[..count] {
            let i = block + usize::from(v) * LANES;
            store(i, by_reciprocal(i));
        }
    }
}

/// Sixteen f32 bit patterns rounded to bf16 in their high halves: `bits + 0x7FFF + lsb` (round to
/// nearest even; subnormals round like any other pattern, unlike `vcvtneps2bf16`), and a NaN
/// keeps its bits with the quiet bit set.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
#[inline]
fn bf16_high_halves(bits: __m512i) -> __m512i {
    let odd = _mm512_test_epi32_mask(bits, _mm512_set1_epi32(0x1_0000));
    let down = _mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF));
    let rounded = _mm512_mask_add_epi32(down, odd, down, _mm512_set1_epi32(1));
    let as_float = _mm512_castsi512_ps(bits);
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(as_float, as_float);
    _mm512_mask_or_epi32(rounded, nan, bits, _mm512_set1_epi32(0x0040_0000))
}

/// f32 -> bf16, round to nearest even with integer operations (no AVX-512 BF16 needed); NaN
/// quieted keeping its top payload bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn f32_to_bf16(x: &[f32], y: &mut [bf16]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    // Word `i` of the result: the high half of lane `i` of the first vector, then of the second.
    let high_words = _mm512_set_epi16(
        63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15,
        13, 11, 9, 7, 5, 3, 1,
    );
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 32 f32 and `d` 32 bf16 (64 bytes); unaligned loads and store.
        unsafe {
            let a = bf16_high_halves(_mm512_loadu_si512(s.as_ptr().cast()));
            let b = bf16_high_halves(_mm512_loadu_si512(s.as_ptr().add(LANES).cast()));
            _mm512_storeu_si512(d.as_mut_ptr().cast(), _mm512_permutex2var_epi16(a, high_words, b));
        }
    }
    scalar::f32_to_bf16(xs.remainder(), ys.into_remainder());
}

/// bf16 -> f32, exact; NaN gets the quiet bit, as `half` does.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn bf16_to_f32(x: &[bf16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let quiet = _mm512_set1_epi32(0x0040_0000);
    let widen = |v: __m256i| {
        let bits = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v));
        let as_float = _mm512_castsi512_ps(bits);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(as_float, as_float);
        _mm512_mask_or_epi32(bits, nan, bits, quiet)
    };
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 32 bf16 (64 bytes) and `d` 32 f32; unaligned loads and stores.
        unsafe {
            let p = s.as_ptr().cast::<__m256i>();
            _mm512_storeu_si512(d.as_mut_ptr().cast(), widen(_mm256_loadu_si256(p)));
            _mm512_storeu_si512(d.as_mut_ptr().add(LANES).cast(), widen(_mm256_loadu_si256(p.add(1))));
        }
    }
    scalar::bf16_to_f32(xs.remainder(), ys.into_remainder());
}

/// Dequantizes the whole 32-element blocks of `y` (bytes read as i8 if `SIGNED`, else u8) as
/// `(y - zero_point) as f32 * scale`, one rounding, and returns how many elements it did.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
fn dequantize_blocks<const SIGNED: bool>(y: &[u8], scale: f32, zero_point: i32, x: &mut [f32]) -> usize {
    let (scale, zp) = (_mm512_set1_ps(scale), _mm512_set1_epi32(zero_point));
    let widen = |v: __m128i| if SIGNED { _mm512_cvtepi8_epi32(v) } else { _mm512_cvtepu8_epi32(v) };
    let lanes = |v: __m128i| _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(widen(v), zp)), scale);
    let mut done = 0;
    for (s, d) in y.chunks_exact(2 * LANES).zip(x.chunks_exact_mut(2 * LANES)) {
        // SAFETY: `s` holds 32 bytes and `d` 32 f32; unaligned loads and stores.
        unsafe {
            let p = s.as_ptr().cast::<__m128i>();
            _mm512_storeu_ps(d.as_mut_ptr(), lanes(_mm_loadu_si128(p)));
            _mm512_storeu_ps(d.as_mut_ptr().add(LANES), lanes(_mm_loadu_si128(p.add(1))));
        }
        done += 2 * LANES;
    }
    done
}

/// ONNX DequantizeLinear from i8.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn dequantize_i8(y: &[i8], scale: f32, zero_point: i8, x: &mut [f32]) {
    let n = y.len().min(x.len());
    let done =
        dequantize_blocks::<true>(bytemuck::cast_slice(&y[..n]), scale, zero_point.into(), &mut x[..n]);
    scalar::dequantize_i8(&y[done..n], scale, zero_point, &mut x[done..n]);
}

/// ONNX DequantizeLinear from u8.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn dequantize_u8(y: &[u8], scale: f32, zero_point: u8, x: &mut [f32]) {
    let n = y.len().min(x.len());
    let done = dequantize_blocks::<false>(&y[..n], scale, zero_point.into(), &mut x[..n]);
    scalar::dequantize_u8(&y[done..n], scale, zero_point, &mut x[done..n]);
}

/// [`super::min_max_finite`] in 16 lanes as the portable version has them (element `i` of each
/// 16 in lane `i`, the tail masked into its lanes), NaN found by ordered compares.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn min_max_finite(x: &[f32]) -> (f32, f32, bool) {
    let (mut lo, mut hi) = (_mm512_set1_ps(f32::INFINITY), _mm512_set1_ps(f32::NEG_INFINITY));
    let mut ordered: __mmask16 = 0xFFFF;
    let mut pairs = x.chunks_exact(2 * LANES);
    for pair in &mut pairs {
        // SAFETY: the pair holds 32 f32; unaligned loads.
        let (v0, v1) = unsafe { (_mm512_loadu_ps(pair.as_ptr()), _mm512_loadu_ps(pair.as_ptr().add(LANES))) };
        ordered = _mm512_mask_cmp_ps_mask::<_CMP_ORD_Q>(ordered, v0, v1);
        // `min(v, lo)` is `v < lo ? v : lo`, the portable lane update.
        lo = _mm512_min_ps(v1, _mm512_min_ps(v0, lo));
        hi = _mm512_max_ps(v1, _mm512_max_ps(v0, hi));
    }
    let mut rest = pairs.remainder();
    if rest.len() >= LANES {
        // SAFETY: the slice holds at least 16 f32.
        let v = unsafe { _mm512_loadu_ps(rest.as_ptr()) };
        ordered = _mm512_mask_cmp_ps_mask::<_CMP_ORD_Q>(ordered, v, v);
        lo = _mm512_min_ps(v, lo);
        hi = _mm512_max_ps(v, hi);
        rest = &rest[LANES..];
    }
    if !rest.is_empty() {
        let mask: __mmask16 = (1u16 << rest.len()) - 1;
        // SAFETY: the masked load reads only the `rest.len()` elements the slice holds.
        let v = unsafe { _mm512_maskz_loadu_ps(mask, rest.as_ptr()) };
        ordered &= _mm512_mask_cmp_ps_mask::<_CMP_ORD_Q>(mask, v, v) | !mask;
        lo = _mm512_mask_min_ps(lo, mask, v, lo);
        hi = _mm512_mask_max_ps(hi, mask, v, hi);
    }
    let (mut los, mut his) = ([0f32; LANES], [0f32; LANES]);
    // SAFETY: each array holds 16 f32.
    unsafe {
        _mm512_storeu_ps(los.as_mut_ptr(), lo);
        _mm512_storeu_ps(his.as_mut_ptr(), hi);
    }
    let min = los.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let max = his.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    // Infinities reach the range; NaN, which no compare lets through, only the ordered mask.
    let finite = x.is_empty() || (ordered == 0xFFFF && min > f32::NEG_INFINITY && max < f32::INFINITY);
    (min, max, finite)
}
