//! Fake quantization for quantization-aware training: the forward pass rounds through the integer
//! grid and back; the straight-through gradient passes where `x` was inside the clipping range.

use super::affine::Quantizer;
use super::params::QuantParams;
use crate::error::{Error, Result};

fn check_out(name: &'static str, n: usize, len: usize) -> Result<()> {
    if n != len {
        return Err(Error::ShapeMismatch { context: name, expected: vec![n], actual: vec![len] });
    }
    Ok(())
}

/// `out = dequantize(quantize(x))` elementwise, without storing integers. NaN is an error naming its
/// index, and nothing is written.
pub fn fake_quantize(x: &[f32], shape: &[usize], params: &QuantParams, out: &mut [f32]) -> Result<()> {
    let layout = params.layout_for(shape)?;
    super::params::check_data(params.spec().granularity, x, shape)?;
    check_out("fake_quantize output", x.len(), out.len())?;
    crate::kernels::convert::check_no_nan("x", x)?;
    layout.runs(|start, count, g| {
        let qz = Quantizer::new(params.spec(), params.scales()[g], params.zero_points()[g]);
        for i in start..start + count {
            out[i] = qz.dequantize(qz.quantize(x[i], i));
        }
    });
    Ok(())
}

/// The straight-through gradient: `grad_x[i] = grad_out[i]` where `round(x / scale) + zero_point` lies
/// in `[qmin, qmax]` (no clamping happened), else 0 (PyTorch's `fake_quantize` mask).
pub fn fake_quantize_grad(
    x: &[f32],
    shape: &[usize],
    params: &QuantParams,
    grad_out: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    let layout = params.layout_for(shape)?;
    super::params::check_data(params.spec().granularity, x, shape)?;
    check_out("grad_out", x.len(), grad_out.len())?;
    check_out("grad_x", x.len(), grad_x.len())?;
    crate::kernels::convert::check_no_nan("x", x)?;
    layout.runs(|start, count, g| {
        let qz = Quantizer::new(params.spec(), params.scales()[g], params.zero_points()[g]);
        for i in start..start + count {
            grad_x[i] = if qz.inside(x[i], i) { grad_out[i] } else { 0.0 };
        }
    });
    Ok(())
}
