//! From the quantizer to the int8 linear layer: a [`QTensor`] of weights becomes a [`QuantLinear`].

use super::affine::{QSlice, QTensor};
use super::params::Granularity;
use crate::error::{Error, Result};
pub use crate::kernels::gemm_int8::{ActivationQuant, QuantLinear};
pub use crate::kernels::int4::Int4Linear;

impl QTensor {
    /// The int8 linear layer `y = x W^T + b` of these weights: a 2-D i8 tensor `[out_features,
    /// in_features]` quantized per tensor or per axis 0 (one scale and zero point per output
    /// channel, as PyTorch's per-channel and ONNX's per-axis weight presets give), with `bias`
    /// (`out_features` values) or none.
    pub fn to_linear(&self, bias: Option<&[f32]>) -> Result<QuantLinear> {
        let &[out_features, in_features] = self.shape() else {
            return Err(Error::invalid(
                "weights",
                format!("{:?}", self.shape()),
                "a linear layer needs 2-D weights [out_features, in_features]",
            ));
        };
        let params = self.params();
        let (scales, zero_points) = match params.spec().granularity {
            Granularity::PerAxis { axis: 0 } => (params.scales().to_vec(), params.zero_points().to_vec()),
            Granularity::PerTensor => {
                (vec![params.scales()[0]; out_features], vec![params.zero_points()[0]; out_features])
            }
            other => {
                return Err(Error::invalid(
                    "granularity",
                    format!("{other:?}"),
                    "a linear layer takes per-tensor or per-axis-0 (per output channel) weights",
                ))
            }
        };
        match self.as_qslice()? {
            QSlice::I8(w) => {
                QuantLinear::from_int8(w, out_features, in_features, &scales, Some(&zero_points), bias)
            }
            other => Err(Error::UnsupportedDType {
                dtype: other.qtype().dtype(),
                operation: "QuantLinear weights",
            }),
        }
    }
}

impl TryFrom<&QTensor> for QuantLinear {
    type Error = Error;

    /// [`QTensor::to_linear`] without bias.
    fn try_from(w: &QTensor) -> Result<Self> {
        w.to_linear(None)
    }
}
