//! NEON conversion kernels. Each function owns its whole loop; the last few elements that do not
//! fill a block go through the scalar reference, so tails are exact by construction.
//!
//! f32 <-> f16 use `vcvt_f16_f32` / `vcvt_f32_f16` (FCVTN / FCVTL, base Advanced SIMD): with the
//! default FPCR (round to nearest even, no flush to zero, default-NaN off) they round like
//! `half`, and a NaN is quieted keeping its top payload bits, as `half` does.
//!
//! Every function here is `unsafe` only because of `#[target_feature]`: the caller must have
//! checked that the CPU has NEON ([`Isa::Neon`](crate::kernels::Isa::Neon) is available). Lengths
//! are taken as the shorter of the two slices, so memory safety never depends on the caller.

use super::scalar;
use core::arch::aarch64::*;
use half::{bf16, f16};

/// Elements per `float32x4_t`.
const LANES: usize = 4;

/// f32 -> f16, round to nearest even.
#[target_feature(enable = "neon")]
pub unsafe fn f32_to_f16(x: &[f32], y: &mut [f16]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 8 f32 and `d` 8 f16 (16 bytes); NEON loads and stores are unaligned.
        unsafe {
            let a = vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(s.as_ptr())));
            let b = vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(s.as_ptr().add(LANES))));
            vst1q_u16(d.as_mut_ptr().cast(), vcombine_u16(a, b));
        }
    }
    scalar::f32_to_f16(xs.remainder(), ys.into_remainder());
}

/// f16 -> f32, exact.
#[target_feature(enable = "neon")]
pub unsafe fn f16_to_f32(x: &[f16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 8 f16 (16 bytes) and `d` 8 f32.
        unsafe {
            let h = vld1q_u16(s.as_ptr().cast());
            vst1q_f32(d.as_mut_ptr(), vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))));
            vst1q_f32(d.as_mut_ptr().add(LANES), vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h))));
        }
    }
    scalar::f16_to_f32(xs.remainder(), ys.into_remainder());
}

/// Four f32 bit patterns -> four bf16 patterns: `(bits + 0x7FFF + lsb) >> 16`, and a NaN keeps
/// its top bits with the quiet bit set.
#[target_feature(enable = "neon")]
#[inline]
fn bf16_bits(bits: uint32x4_t) -> uint16x4_t {
    let lsb = vandq_u32(vshrq_n_u32::<16>(bits), vdupq_n_u32(1));
    let rounded = vshrq_n_u32::<16>(vaddq_u32(bits, vaddq_u32(lsb, vdupq_n_u32(0x7FFF))));
    let quiet_nan = vorrq_u32(vshrq_n_u32::<16>(bits), vdupq_n_u32(0x0040));
    let is_nan = vcgtq_u32(vandq_u32(bits, vdupq_n_u32(0x7FFF_FFFF)), vdupq_n_u32(0x7F80_0000));
    vmovn_u32(vbslq_u32(is_nan, quiet_nan, rounded))
}

/// f32 -> bf16, round to nearest even with integer operations.
#[target_feature(enable = "neon")]
pub unsafe fn f32_to_bf16(x: &[f32], y: &mut [bf16]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 8 f32 and `d` 8 bf16 (16 bytes).
        unsafe {
            let p = s.as_ptr().cast::<u32>();
            let (a, b) = (bf16_bits(vld1q_u32(p)), bf16_bits(vld1q_u32(p.add(LANES))));
            vst1q_u16(d.as_mut_ptr().cast(), vcombine_u16(a, b));
        }
    }
    scalar::f32_to_bf16(xs.remainder(), ys.into_remainder());
}

/// Four bf16 patterns -> four f32 patterns; a NaN gets the quiet bit, as `half` does.
#[target_feature(enable = "neon")]
#[inline]
fn f32_bits(h: uint16x4_t) -> uint32x4_t {
    let bits = vshll_n_u16::<16>(h);
    let is_nan = vcgtq_u32(vandq_u32(bits, vdupq_n_u32(0x7FFF_FFFF)), vdupq_n_u32(0x7F80_0000));
    vorrq_u32(bits, vandq_u32(is_nan, vdupq_n_u32(0x0040_0000)))
}

/// bf16 -> f32, exact.
#[target_feature(enable = "neon")]
pub unsafe fn bf16_to_f32(x: &[bf16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut xs = x.chunks_exact(2 * LANES);
    let mut ys = y.chunks_exact_mut(2 * LANES);
    for (s, d) in (&mut xs).zip(&mut ys) {
        // SAFETY: `s` holds 8 bf16 (16 bytes) and `d` 8 f32.
        unsafe {
            let h = vld1q_u16(s.as_ptr().cast());
            let p = d.as_mut_ptr().cast::<u32>();
            vst1q_u32(p, f32_bits(vget_low_u16(h)));
            vst1q_u32(p.add(LANES), f32_bits(vget_high_u16(h)));
        }
    }
    scalar::bf16_to_f32(xs.remainder(), ys.into_remainder());
}

/// Index of the first NaN in `x`, if any.
#[target_feature(enable = "neon")]
pub unsafe fn first_nan(x: &[f32]) -> Option<usize> {
    const BLOCK: usize = 4 * LANES;
    let mut xs = x.chunks_exact(BLOCK);
    for (i, s) in (&mut xs).enumerate() {
        // SAFETY: `s` holds 16 f32.
        let all_ordered = unsafe {
            let p = s.as_ptr();
            let ordered = |k: usize| {
                let v = vld1q_f32(p.add(k * LANES));
                vceqq_f32(v, v)
            };
            let m = vandq_u32(vandq_u32(ordered(0), ordered(1)), vandq_u32(ordered(2), ordered(3)));
            vminvq_u32(m) != 0
        };
        if !all_ordered {
            return s.iter().position(|v| v.is_nan()).map(|k| i * BLOCK + k);
        }
    }
    let done = x.len() - xs.remainder().len();
    xs.remainder().iter().position(|v| v.is_nan()).map(|k| done + k)
}

/// `round_half_even(x / scale) + zero_point` saturated to `[lo, hi]` as i32 lanes; the clamp is in
/// float and the float sum is exact whenever the result lies inside `[lo, hi]`. `x` holds no NaN.
#[target_feature(enable = "neon")]
#[inline]
fn quantize_lanes(
    x: float32x4_t,
    scale: float32x4_t,
    zp: float32x4_t,
    lo: float32x4_t,
    hi: float32x4_t,
) -> int32x4_t {
    let q = vrndnq_f32(vdivq_f32(x, scale));
    vcvtq_s32_f32(vminq_f32(vmaxq_f32(vaddq_f32(q, zp), lo), hi))
}

/// Quantizes the whole 16-element blocks of `x` into bytes (i8 if `SIGNED`, else u8) and returns
/// how many elements it did.
#[target_feature(enable = "neon")]
fn quantize_blocks<const SIGNED: bool>(x: &[f32], scale: f32, zero_point: i32, y: &mut [u8]) -> usize {
    const BLOCK: usize = 4 * LANES;
    let (lo, hi) = if SIGNED { (-128.0, 127.0) } else { (0.0, 255.0) };
    let (scale, zp) = (vdupq_n_f32(scale), vdupq_n_f32(zero_point as f32));
    let (lo, hi) = (vdupq_n_f32(lo), vdupq_n_f32(hi));
    let narrow = |v: int16x8_t| if SIGNED { vreinterpret_u8_s8(vqmovn_s16(v)) } else { vqmovun_s16(v) };
    let mut done = 0;
    for (s, d) in x.chunks_exact(BLOCK).zip(y.chunks_exact_mut(BLOCK)) {
        // SAFETY: `s` holds 16 f32 and `d` 16 bytes.
        unsafe {
            let p = s.as_ptr();
            let q = |k: usize| vqmovn_s32(quantize_lanes(vld1q_f32(p.add(k * LANES)), scale, zp, lo, hi));
            let (ab, cd) = (vcombine_s16(q(0), q(1)), vcombine_s16(q(2), q(3)));
            vst1q_u8(d.as_mut_ptr(), vcombine_u8(narrow(ab), narrow(cd)));
        }
        done += BLOCK;
    }
    done
}

/// ONNX QuantizeLinear to i8 (no NaN in `x`).
#[target_feature(enable = "neon")]
pub unsafe fn quantize_i8(x: &[f32], scale: f32, zero_point: i8, y: &mut [i8]) {
    let n = x.len().min(y.len());
    let done =
        quantize_blocks::<true>(&x[..n], scale, zero_point.into(), bytemuck::cast_slice_mut(&mut y[..n]));
    scalar::quantize_i8(&x[done..n], scale, zero_point, &mut y[done..n]);
}

/// ONNX QuantizeLinear to u8 (no NaN in `x`).
#[target_feature(enable = "neon")]
pub unsafe fn quantize_u8(x: &[f32], scale: f32, zero_point: u8, y: &mut [u8]) {
    let n = x.len().min(y.len());
    let done = quantize_blocks::<false>(&x[..n], scale, zero_point.into(), &mut y[..n]);
    scalar::quantize_u8(&x[done..n], scale, zero_point, &mut y[done..n]);
}

/// Dequantizes the whole 16-element blocks of `y` (bytes read as i8 if `SIGNED`, else u8) as
/// `(y - zero_point) as f32 * scale`, one rounding, and returns how many elements it did.
#[target_feature(enable = "neon")]
fn dequantize_blocks<const SIGNED: bool>(y: &[u8], scale: f32, zero_point: i32, x: &mut [f32]) -> usize {
    // The byte pattern of the zero point; `y - zero_point` lies in [-255, 255], so the wrapping
    // unsigned difference read as i16 is exact.
    let zp = vdup_n_u8(zero_point as u8);
    let diff = |v: uint8x8_t| {
        if SIGNED {
            vsubl_s8(vreinterpret_s8_u8(v), vreinterpret_s8_u8(zp))
        } else {
            vreinterpretq_s16_u16(vsubl_u8(v, zp))
        }
    };
    let lanes = |v: int16x4_t| vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(v)), scale);
    let mut done = 0;
    for (s, d) in y.chunks_exact(4 * LANES).zip(x.chunks_exact_mut(4 * LANES)) {
        // SAFETY: `s` holds 16 bytes and `d` 16 f32.
        unsafe {
            let v = vld1q_u8(s.as_ptr());
            let (lo, hi) = (diff(vget_low_u8(v)), diff(vget_high_u8(v)));
            let p = d.as_mut_ptr();
            vst1q_f32(p, lanes(vget_low_s16(lo)));
            vst1q_f32(p.add(LANES), lanes(vget_high_s16(lo)));
            vst1q_f32(p.add(2 * LANES), lanes(vget_low_s16(hi)));
            vst1q_f32(p.add(3 * LANES), lanes(vget_high_s16(hi)));
        }
        done += 4 * LANES;
    }
    done
}

/// ONNX DequantizeLinear from i8.
#[target_feature(enable = "neon")]
pub unsafe fn dequantize_i8(y: &[i8], scale: f32, zero_point: i8, x: &mut [f32]) {
    let n = y.len().min(x.len());
    let done =
        dequantize_blocks::<true>(bytemuck::cast_slice(&y[..n]), scale, zero_point.into(), &mut x[..n]);
    scalar::dequantize_i8(&y[done..n], scale, zero_point, &mut x[done..n]);
}

/// ONNX DequantizeLinear from u8.
#[target_feature(enable = "neon")]
pub unsafe fn dequantize_u8(y: &[u8], scale: f32, zero_point: u8, x: &mut [f32]) {
    let n = y.len().min(x.len());
    let done = dequantize_blocks::<false>(&y[..n], scale, zero_point.into(), &mut x[..n]);
    scalar::dequantize_u8(&y[done..n], scale, zero_point, &mut x[done..n]);
}
