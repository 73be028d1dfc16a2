//! ONNX `QuantizeLinear`, `DequantizeLinear` (per tensor and per axis) and `DynamicQuantizeLinear`,
//! exact to the bit.

use super::affine::{quantize_into, QSliceMut};
use super::params::{Granularity, Mode, QType, QuantParams, QuantSpec};
use crate::error::Result;
use crate::kernels::convert as kernel;

pub use kernel::{dequantize_i8, dequantize_u8, quantize_i8, quantize_u8};

/// The ONNX QuantizeLinear spec of `qtype` along `axis` (full range, half to even, `x / scale` in f32).
fn per_axis_spec(qtype: QType, axis: usize) -> QuantSpec {
    QuantSpec { narrow_range: false, ..QuantSpec::new(qtype, Mode::Affine) }
        .with_granularity(Granularity::PerAxis { axis })
}

/// ONNX QuantizeLinear to i8 with one scale and zero point per index along `axis` of the row-major
/// tensor `x` of `shape`. Nothing is written on error.
pub fn quantize_per_axis_i8(
    x: &[f32],
    shape: &[usize],
    axis: usize,
    scales: &[f32],
    zero_points: &[i8],
    y: &mut [i8],
) -> Result<()> {
    let params = QuantParams::new(
        per_axis_spec(QType::I8, axis),
        vec![scales.len()],
        scales.to_vec(),
        zero_points.iter().map(|&z| i32::from(z)).collect(),
    )?;
    quantize_into(x, shape, &params, QSliceMut::I8(y))
}

/// ONNX DynamicQuantizeLinear, as ONNX Runtime computes it (all in f32): `rmin = min(0, min x)`,
/// `rmax = max(0, max x)`, `scale = (rmax - rmin) / 255` (1 when the range is 0),
/// `zero_point = round_half_even(clamp(0 - rmin / scale, 0, 255))`, then QuantizeLinear to u8.
/// Returns `(scale, zero_point)`. NaN is an error naming its index; an infinity gives an infinite
/// scale and is refused; nothing is written on error.
pub fn dynamic_quantize_linear(x: &[f32], y: &mut [u8]) -> Result<(f32, u8)> {
    // One pass for the range; the NaN scan (which names the index) only when something was not finite.
    let (lo, hi, finite) = kernel::min_max_finite(x);
    if !finite {
        crate::kernels::convert::check_no_nan("x", x)?;
    }
    let (min, max) = (lo.min(0.0), hi.max(0.0));
    let scale = if max == min { 1.0 } else { (max - min) / 255.0 };
    kernel::check_scale(scale)?;
    let zero_point = (0.0 - min / scale).clamp(0.0, 255.0).round_ties_even() as u8;
    kernel::quantize_u8_scanned_on(crate::kernels::Isa::active(), x, scale, zero_point, y)?;
    Ok((scale, zero_point))
}
