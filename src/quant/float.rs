//! f32 <-> f16 / bf16 casts of whole tensors, through the SIMD kernels (round to nearest even,
//! subnormals kept, overflow to infinity, NaN stays NaN: identical to `half`).

use crate::error::Result;
use crate::kernels::convert as kernel;
use crate::tensor::Tensor;
use half::{bf16, f16};

pub use kernel::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

/// Casts an f32 tensor to f16.
pub fn to_f16(x: &Tensor<f32>) -> Result<Tensor<f16>> {
    let mut y = Tensor::<f16>::zeros(x.shape().to_vec())?;
    kernel::f32_to_f16(x.as_slice(), y.as_mut_slice())?;
    Ok(y)
}

/// Casts an f32 tensor to bf16.
pub fn to_bf16(x: &Tensor<f32>) -> Result<Tensor<bf16>> {
    let mut y = Tensor::<bf16>::zeros(x.shape().to_vec())?;
    kernel::f32_to_bf16(x.as_slice(), y.as_mut_slice())?;
    Ok(y)
}

/// Widens an f16 tensor to f32 (exact).
pub fn from_f16(x: &Tensor<f16>) -> Result<Tensor<f32>> {
    let mut y = Tensor::<f32>::zeros(x.shape().to_vec())?;
    kernel::f16_to_f32(x.as_slice(), y.as_mut_slice())?;
    Ok(y)
}

/// Widens a bf16 tensor to f32 (exact).
pub fn from_bf16(x: &Tensor<bf16>) -> Result<Tensor<f32>> {
    let mut y = Tensor::<f32>::zeros(x.shape().to_vec())?;
    kernel::bf16_to_f32(x.as_slice(), y.as_mut_slice())?;
    Ok(y)
}
