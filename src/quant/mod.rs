//! Quantization: specs, parameters, quantize/dequantize, calibration, fake-quant and error metrics.
//!
//! ```
//! use greenai::quant::{QTensor, QuantSpec, Preset};
//! use greenai::Tensor;
//! let x = Tensor::from_vec([4], vec![-1.0f32, 0.0, 0.5, 2.0])?;
//! let q = QTensor::quantize_min_max(&x, QuantSpec::preset(Preset::OnnxActivationU8))?;
//! let back = q.dequantize()?;
//! assert!((back.as_slice()[3] - 2.0).abs() <= q.params().scales()[0] / 2.0);
//! # Ok::<(), greenai::Error>(())
//! ```
//!
//! C ABI: `src/ffi/quant.rs`.

mod affine;
// AWQ (issue #17): src/quant/awq.rs.
#[cfg(feature = "lowrank")]
mod awq;
mod calibrate;
mod fake;
pub mod float;
// GPTQ (issue #17): src/quant/gptq.rs.
mod gptq;
// HQQ (issue #17): src/quant/hqq.rs.
mod hqq;
mod linear;
mod metrics;
pub mod onnx;
mod pack;
mod params;
pub mod smoothquant;

pub use affine::{dequantize_into, quantize_into, QSlice, QSliceMut, QTensor};
#[cfg(feature = "lowrank")]
pub use awq::{awq_quantize, AwqOptions, AwqWeight};
pub use calibrate::{Calibration, Observer};
pub use fake::{fake_quantize, fake_quantize_grad};
#[cfg(feature = "lowrank")]
pub use gptq::gptq_quantize;
pub use gptq::{rtn_quantize, GptqOptions, GptqWeight, HessianAccumulator};
pub use hqq::{hqq_quantize, HqqOptions};
pub use linear::{ActivationQuant, Int4Linear, QuantLinear};
pub use metrics::{error_metrics, error_metrics_per_axis, ErrorMetrics};
pub(crate) use pack::{nibble_get, nibble_put};
pub use pack::{pack_4bit, packed_len, unpack_4bit};
pub use params::{Convention, Granularity, Mode, Preset, QType, QuantParams, QuantSpec, Rounding, ScaleType};
