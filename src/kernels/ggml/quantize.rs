//! ggml's reference quantizers (`quantize_row_*_ref` in `ggml-quants.c`), restated in Rust so that
//! they produce the same bytes: the same f32 operations in the same order (Rust never contracts a
//! multiply and an add into an FMA), ggml's float-to-integer conversions, and f16 scales rounded to
//! nearest even as `GGML_FP32_TO_FP16` rounds them.
//!
//! Where ggml's C converts a float that does not fit the integer type (undefined behaviour in C,
//! reachable only when a scale underflows, e.g. a block whose largest value is below ~1e-38), these
//! functions do what ggml compiled by gcc for x86-64 does (`cvttss2si`: such a float becomes
//! `i32::MIN`, then is truncated to the narrower type).

use super::blocks::{f16_put, BlockQ8K, BlockQ8_0, BlockQ8_1, F16Bytes, QK, QK_K};
use crate::{Error, Result};
use half::f16;

/// `GGML_FP32_TO_FP16`: round to nearest even; a NaN becomes ggml's quiet NaN `0x7E00` (with the
/// sign), which `half` matches for every NaN but those with payload bits below the top one.
#[inline]
pub(crate) fn fp16(value: f32) -> F16Bytes {
    if value.is_nan() {
        let sign = ((value.to_bits() >> 16) & 0x8000) as u16;
        return (sign | 0x7E00).to_le_bytes();
    }
    f16_put(f16::from_f32(value))
}

/// C's `(int)f` as gcc emits it on x86-64 (`cvttss2si`): truncation toward zero, and `i32::MIN` for
/// NaN and out-of-range values (where C leaves the result undefined). Rust's `as` saturates instead.
#[inline]
pub(crate) fn c_trunc(value: f32) -> i32 {
    // 2^31 is exactly representable; every f32 in [-2^31, 2^31) converts exactly.
    if value >= -2_147_483_648.0 && value < 2_147_483_648.0 {
        value as i32
    } else {
        i32::MIN
    }
}

/// ggml's `nearest_int`: rounds to nearest, ties to even, by adding 1.5 * 2^23 and reading the
/// mantissa bits (ggml asserts |fval| <= 4194303; beyond, the same bit trick is applied unchecked).
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// Checks that `x` holds exactly `blocks` blocks of `per` elements.
fn check_row(x: usize, blocks: usize, per: usize, ty: &str) -> Result<()> {
    if blocks.checked_mul(per) != Some(x) {
        return Err(Error::invalid(
            "x",
            format!("{x} elements"),
            format!("{ty} quantization of {blocks} blocks needs exactly {blocks} * {per} elements"),
        ));
    }
    Ok(())
}

/// The largest |v| of a block, as ggml's `MAX(amax, fabsf(v))` folds it.
#[inline]
fn amax_fold(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |amax, &v| {
        let a = v.abs();
        // MAX(a, b) is `a > b ? a : b`.
        if amax > a {
            amax
        } else {
            a
        }
    })
}

/// One Q8_0 block (`quantize_row_q8_0_ref`).
#[inline]
pub(crate) fn q8_0_block(x: &[f32], y: &mut BlockQ8_0) {
    let amax = amax_fold(x);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = c_trunc((v * id).round()) as i8;
    }
}

/// One Q8_1 block (`quantize_row_q8_1_ref`).
#[inline]
pub(crate) fn q8_1_block(x: &[f32], y: &mut BlockQ8_1) {
    let amax = amax_fold(x);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    let mut sum: i32 = 0;
    for j in 0..QK / 2 {
        let v0 = x[j] * id;
        let v1 = x[QK / 2 + j] * id;
        y.qs[j] = c_trunc(v0.round()) as i8;
        y.qs[QK / 2 + j] = c_trunc(v1.round()) as i8;
        sum += i32::from(y.qs[j]) + i32::from(y.qs[QK / 2 + j]);
    }
    // `sum*d`: the int is converted to float, then multiplied in f32.
    y.s = fp16(sum as f32 * d);
}

/// One Q8_K block (`quantize_row_q8_K_ref`). ggml leaves `bsums` unwritten for an all-zero block;
/// here they are zero.
#[inline]
pub(crate) fn q8_k_block(x: &[f32], y: &mut BlockQ8K) {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax == 0.0 {
        y.d = 0.0f32.to_le_bytes();
        y.qs = [0; QK_K];
        y.bsums = [[0; 2]; QK_K / 16];
        return;
    }
    let iscale = -127.0f32 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, group) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
        let sum: i32 = group.iter().map(|&q| i32::from(q)).sum();
        *s = (sum as i16).to_le_bytes();
    }
    y.d = (1.0 / iscale).to_le_bytes();
}

/// Quantizes `x` into Q8_0 blocks as `quantize_row_q8_0_ref` does; `x.len()` must be `32 * y.len()`.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) -> Result<()> {
    check_row(x.len(), y.len(), QK, "q8_0")?;
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        q8_0_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q8_1 blocks as `quantize_row_q8_1_ref` does; `x.len()` must be `32 * y.len()`.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) -> Result<()> {
    check_row(x.len(), y.len(), QK, "q8_1")?;
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        q8_1_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q8_K blocks as `quantize_row_q8_K_ref` does; `x.len()` must be `256 * y.len()`.
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) -> Result<()> {
    check_row(x.len(), y.len(), QK_K, "q8_K")?;
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        q8_k_block(xb, yb);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ggml::f16_get;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-127.4), -127);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    #[test]
    fn c_trunc_is_cvttss2si() {
        assert_eq!(c_trunc(2.9), 2);
        assert_eq!(c_trunc(-2.9), -2);
        assert_eq!(c_trunc(f32::NAN), i32::MIN);
        assert_eq!(c_trunc(f32::INFINITY), i32::MIN);
        assert_eq!(c_trunc(3e9), i32::MIN);
        assert_eq!(c_trunc(-2_147_483_648.0), i32::MIN);
    }

    #[test]
    fn fp16_nan_is_ggml_quiet_nan() {
        assert_eq!(u16::from_le_bytes(fp16(f32::NAN)), 0x7E00);
        assert_eq!(u16::from_le_bytes(fp16(-f32::NAN)), 0xFE00);
        assert_eq!(u16::from_le_bytes(fp16(f32::from_bits(0x7f80_0001))), 0x7E00);
        assert_eq!(u16::from_le_bytes(fp16(1e6)), 0x7C00);
    }

    #[test]
    fn q8_0_of_a_ramp() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let mut y = [BlockQ8_0 { d: [0; 2], qs: [0; 32] }];
        quantize_row_q8_0(&x, &mut y).unwrap();
        assert_eq!(f16_get(y[0].d), f16::from_f32(16.0 / 127.0));
        assert_eq!(y[0].qs[0], -127);
        assert_eq!(y[0].qs[16], 0);
        assert!(quantize_row_q8_0(&x[..31], &mut y).is_err());
    }

    #[test]
    fn q8_k_zero_block_is_all_zero() {
        let x = [0.0f32; QK_K];
        let mut y = [bytemuck::Zeroable::zeroed(); 1];
        let mut ones: BlockQ8K = bytemuck::Zeroable::zeroed();
        ones.bsums = [[1; 2]; 16];
        y[0] = ones;
        quantize_row_q8_k(&x, &mut y).unwrap();
        assert_eq!(y[0], bytemuck::Zeroable::zeroed());
    }
}
