//! The quantized linear layer: `y = x W^T + b` with W int8 per output channel, x quantized per row.

use super::{check_matrix, gemm_packed_on, PackedI8, Update};
use crate::error::{check_len, try_vec};
use crate::kernels::convert::{min_max_finite, quantize_i8_on, quantize_u8_on, scalar};
use crate::kernels::math::check_finite;
use crate::kernels::Isa;
use crate::{Error, Result};

/// How the layer quantizes its f32 input, one scale (and zero point) per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationQuant {
    /// u8 affine over `[min(0, min x), max(0, max x)]`, as ONNX DynamicQuantizeLinear and ONNX
    /// Runtime's dynamic quantization do.
    U8Affine,
    /// i8 symmetric: scale `max |x| / 127`, zero point 0.
    I8Symmetric,
}

/// A linear layer with int8 weights per output channel (scale and zero point per row of W),
/// prepacked for the GEMM.
#[derive(Clone, Debug)]
pub struct QuantLinear {
    packed: PackedI8,
    scales: Vec<f32>,
    /// Per output channel; empty when every zero point is 0 (symmetric weights).
    zero_points: Vec<i32>,
    bias: Vec<f32>,
}

/// `max |x| / limit`, or 1 when that is zero or subnormal (as ONNX Runtime; zeros stay exact).
fn symmetric_scale(x: &[f32], limit: f32) -> f32 {
    let (lo, hi, _) = min_max_finite(x);
    let scale = hi.max(-lo).max(0.0) / limit;
    if scale.is_normal() {
        scale
    } else {
        1.0
    }
}

impl QuantLinear {
    /// Quantizes f32 weights W (`out_features x in_features`, row-major) per output channel,
    /// symmetric: `scale = max |w| / 127` and values in [-127, 127]; with `reduce_range`, 7-bit
    /// ([-63, 63], scale `max |w| / 63`) as ONNX Runtime's `reduce_range`, which lets every
    /// product take the fastest AVX2 path at some accuracy cost. The C twin is
    /// `greenai_qlinear_from_float`, with the same arguments in the same order.
    pub fn from_float(
        w: &[f32],
        out_features: usize,
        in_features: usize,
        bias: Option<&[f32]>,
        reduce_range: bool,
    ) -> Result<Self> {
        check_matrix("w", w.len(), out_features, in_features, in_features)?;
        check_finite("w", &w[..out_features * in_features])?;
        let limit = if reduce_range { 63.0 } else { 127.0 };
        let mut q = try_vec(out_features * in_features, 0i8)?;
        let mut scales = try_vec(out_features, 0f32)?;
        for (o, scale) in scales.iter_mut().enumerate() {
            let row = &w[o * in_features..(o + 1) * in_features];
            *scale = symmetric_scale(row, limit);
            scalar::quantize_i8(row, *scale, 0, &mut q[o * in_features..(o + 1) * in_features]);
        }
        Self::from_int8(&q, out_features, in_features, &scales, None, bias)
    }

    /// Wraps already quantized weights W (`out_features x in_features` i8, row-major) with one
    /// positive finite scale and one zero point per output channel (`None`: all 0, symmetric), so
    /// that `w = (q - zero_point) * scale`. The C twin is `greenai_qlinear_from_int8`.
    pub fn from_int8(
        w: &[i8],
        out_features: usize,
        in_features: usize,
        scales: &[f32],
        zero_points: Option<&[i32]>,
        bias: Option<&[f32]>,
    ) -> Result<Self> {
        check_len("scales", scales.len(), out_features)?;
        let scales = &scales[..out_features];
        if let Some((o, &s)) = scales.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::invalid(
                "scales",
                s,
                format!("scale of channel {o} must be positive and finite"),
            ));
        }
        let zero_points = match zero_points {
            Some(z) => {
                check_len("zero_points", z.len(), out_features)?;
                let z = &z[..out_features];
                if let Some((o, &v)) = z.iter().enumerate().find(|(_, v)| !(-128..=127).contains(*v)) {
                    return Err(Error::invalid(
                        "zero_points",
                        v,
                        format!("zero point of channel {o} must lie in [-128, 127] (int8 weights)"),
                    ));
                }
                if z.iter().all(|&v| v == 0) {
                    Vec::new()
                } else {
                    z.to_vec()
                }
            }
            None => Vec::new(),
        };
        let bias = match bias {
            Some(b) => {
                check_len("bias", b.len(), out_features)?;
                check_finite("bias", &b[..out_features])?;
                b[..out_features].to_vec()
            }
            None => try_vec(out_features, 0f32)?,
        };
        let packed = PackedI8::pack_transposed(out_features, in_features, w, in_features)?;
        Ok(QuantLinear { packed, scales: scales.to_vec(), zero_points, bias })
    }

    /// Renamed with the C argument order: weights first, then their dimensions.
    #[deprecated(
        since = "0.2.0",
        note = "use QuantLinear::from_float(w, out_features, in_features, bias, reduce_range)"
    )]
    pub fn from_f32(
        out_features: usize,
        in_features: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        reduce_range: bool,
    ) -> Result<Self> {
        Self::from_float(w, out_features, in_features, bias, reduce_range)
    }

    /// Renamed with the C argument order and zero points.
    #[deprecated(
        since = "0.2.0",
        note = "use QuantLinear::from_int8(w, out_features, in_features, scales, None, bias)"
    )]
    pub fn from_quantized(
        out_features: usize,
        in_features: usize,
        w: &[i8],
        scales: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Self> {
        Self::from_int8(w, out_features, in_features, scales, None, bias)
    }

    /// The per-output-channel weight scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Input features (columns of x).
    pub fn in_features(&self) -> usize {
        self.packed.k()
    }

    /// Output features (columns of y).
    pub fn out_features(&self) -> usize {
        self.packed.n()
    }

    /// `y = x W^T + b` for `batch` rows of x (`batch x in_features`), y `batch x out_features`.
    /// A non-finite value in x is an error and y is left untouched.
    pub fn forward(&self, x: &[f32], batch: usize, mode: ActivationQuant, y: &mut [f32]) -> Result<()> {
        self.forward_on(Isa::active(), x, batch, mode, y)
    }

    /// [`QuantLinear::forward`] on a chosen path.
    pub fn forward_on(
        &self,
        isa: Isa,
        x: &[f32],
        batch: usize,
        mode: ActivationQuant,
        y: &mut [f32],
    ) -> Result<()> {
        isa.ensure_available()?;
        let (k, n) = (self.in_features(), self.out_features());
        check_matrix("x", x.len(), batch, k, k)?;
        check_matrix("y", y.len(), batch, n, n)?;
        let x = &x[..batch * k];
        check_finite("x", x)?;
        let mut acc = try_vec(batch * n, 0i32)?;
        let mut row_scale = try_vec(batch, 0f32)?;
        let mut row_zero = try_vec(batch, 0i32)?;
        // Sums of each quantized input row, needed only for affine weights.
        let mut row_sums = try_vec(if self.zero_points.is_empty() { 0 } else { batch }, 0i64)?;
        match mode {
            ActivationQuant::U8Affine => {
                let mut q = try_vec(batch * k, 0u8)?;
                for i in 0..batch {
                    let row = &x[i * k..(i + 1) * k];
                    let (lo, hi, _) = min_max_finite(row);
                    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                    let scale = (hi - lo) / 255.0;
                    if !scale.is_finite() {
                        return Err(Error::invalid("x", format!("range of row {i}"), "too wide for f32"));
                    }
                    // As ONNX Runtime: a scale below f32's smallest normal becomes 1.
                    let scale = if scale.is_normal() { scale } else { 1.0 };
                    let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
                    quantize_u8_on(isa, row, scale, zero, &mut q[i * k..(i + 1) * k])?;
                    (row_scale[i], row_zero[i]) = (scale, i32::from(zero));
                }
                for (i, sum) in row_sums.iter_mut().enumerate() {
                    *sum = q[i * k..(i + 1) * k].iter().map(|&v| i64::from(v)).sum();
                }
                gemm_packed_on(isa, batch, &q, k, &self.packed, &mut acc, n, Update::Overwrite)?;
            }
            ActivationQuant::I8Symmetric => {
                let mut q = try_vec(batch * k, 0i8)?;
                for i in 0..batch {
                    let row = &x[i * k..(i + 1) * k];
                    row_scale[i] = symmetric_scale(row, 127.0);
                    quantize_i8_on(isa, row, row_scale[i], 0, &mut q[i * k..(i + 1) * k])?;
                }
                for (i, sum) in row_sums.iter_mut().enumerate() {
                    *sum = q[i * k..(i + 1) * k].iter().map(|&v| i64::from(v)).sum();
                }
                gemm_packed_on(isa, batch, &q, k, &self.packed, &mut acc, n, Update::Overwrite)?;
            }
        }
        // sum_k (x_q - zx)(w_q - zw) = acc - zx sum_k w_q - zw (sum_k x_q - k zx), exact in i64.
        let sums = self.packed.col_sums();
        for i in 0..batch {
            for j in 0..n {
                let mut centred = i64::from(acc[i * n + j]) - i64::from(row_zero[i]) * i64::from(sums[j]);
                if let (Some(&zw), Some(&xs)) = (self.zero_points.get(j), row_sums.get(i)) {
                    centred -= i64::from(zw) * (xs - k as i64 * i64::from(row_zero[i]));
                }
                y[i * n + j] = centred as f32 * (row_scale[i] * self.scales[j]) + self.bias[j];
            }
        }
        Ok(())
    }
}
