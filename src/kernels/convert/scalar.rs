//! The scalar reference conversions: the definition the SIMD paths are tested against.

use half::{bf16, f16};

/// f32 -> f16, round to nearest even, elementwise (lengths already checked equal).
pub fn f32_to_f16(x: &[f32], y: &mut [f16]) {
    for (d, &s) in y.iter_mut().zip(x) {
        *d = f16::from_f32(s);
    }
}

/// f16 -> f32, exact.
pub fn f16_to_f32(x: &[f16], y: &mut [f32]) {
    for (d, &s) in y.iter_mut().zip(x) {
        *d = s.to_f32();
    }
}

/// f32 -> bf16, round to nearest even.
pub fn f32_to_bf16(x: &[f32], y: &mut [bf16]) {
    for (d, &s) in y.iter_mut().zip(x) {
        *d = bf16::from_f32(s);
    }
}

/// bf16 -> f32, exact.
pub fn bf16_to_f32(x: &[bf16], y: &mut [f32]) {
    for (d, &s) in y.iter_mut().zip(x) {
        *d = s.to_f32();
    }
}

/// `round_half_even(x / scale) + zero_point`, saturated to `[lo, hi]` (x not NaN).
#[inline]
pub fn quantize_one(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let q = (x / scale).round_ties_even();
    // `as i32` saturates (and maps +-inf to the ends), so the sum below cannot overflow i32.
    (q as i32).saturating_add(zero_point).clamp(lo, hi)
}

/// ONNX QuantizeLinear to i8 (no NaN in `x`).
pub fn quantize_i8(x: &[f32], scale: f32, zero_point: i8, y: &mut [i8]) {
    let zp = i32::from(zero_point);
    for (d, &s) in y.iter_mut().zip(x) {
        *d = quantize_one(s, scale, zp, -128, 127) as i8;
    }
}

/// ONNX QuantizeLinear to u8 (no NaN in `x`).
pub fn quantize_u8(x: &[f32], scale: f32, zero_point: u8, y: &mut [u8]) {
    let zp = i32::from(zero_point);
    for (d, &s) in y.iter_mut().zip(x) {
        *d = quantize_one(s, scale, zp, 0, 255) as u8;
    }
}

/// ONNX DequantizeLinear from i8.
pub fn dequantize_i8(y: &[i8], scale: f32, zero_point: i8, x: &mut [f32]) {
    for (d, &s) in x.iter_mut().zip(y) {
        *d = (i32::from(s) - i32::from(zero_point)) as f32 * scale;
    }
}

/// ONNX DequantizeLinear from u8.
pub fn dequantize_u8(y: &[u8], scale: f32, zero_point: u8, x: &mut [f32]) {
    for (d, &s) in x.iter_mut().zip(y) {
        *d = (i32::from(s) - i32::from(zero_point)) as f32 * scale;
    }
}

/// Index of the first NaN in `x`, if any.
pub fn first_nan(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| v.is_nan())
}
