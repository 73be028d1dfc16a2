//! What a model file holds, tensor by tensor: dtype, shape, size, range and sparsity.

use super::file::{ModelFile, TensorEntry};
use crate::Result;
use safetensors::Dtype;

/// One row of `greenai inspect`.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TensorSummary {
    /// The tensor's name.
    pub name: String,
    /// The safetensors dtype name (`"F32"`, `"I8"`, ...).
    pub dtype: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// Number of elements.
    pub params: usize,
    /// Bytes of data.
    pub bytes: usize,
    /// Smallest element (NaN ignored); `None` when empty or all NaN.
    pub min: Option<f64>,
    /// Largest element (NaN ignored); `None` when empty or all NaN.
    pub max: Option<f64>,
    /// Share of elements equal to zero (0 for an empty tensor).
    pub sparsity: f64,
}

fn element(dtype: Dtype, b: &[u8]) -> f64 {
    match dtype {
        Dtype::BOOL | Dtype::U8 => f64::from(b[0]),
        Dtype::I8 => f64::from(b[0] as i8),
        Dtype::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
        Dtype::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
        Dtype::F16 => f64::from(half::f16::from_le_bytes([b[0], b[1]])),
        Dtype::BF16 => f64::from(half::bf16::from_le_bytes([b[0], b[1]])),
        Dtype::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Dtype::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Dtype::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Dtype::F64 => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
        Dtype::I64 => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64,
        Dtype::U64 => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64,
        _ => f64::NAN, // FP8 formats: range not computed
    }
}

/// Summarises one tensor in a single pass over its bytes.
pub fn summarize(entry: &TensorEntry<'_>) -> TensorSummary {
    let width = entry.dtype.size();
    let (mut min, mut max, mut zeros) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
    for chunk in entry.bytes.chunks_exact(width) {
        let v = element(entry.dtype, chunk);
        if v == 0.0 {
            zeros += 1;
        }
        min = min.min(v);
        max = max.max(v);
    }
    let params = entry.len();
    TensorSummary {
        name: entry.name.to_string(),
        dtype: format!("{:?}", entry.dtype),
        shape: entry.shape.to_vec(),
        params,
        bytes: entry.bytes.len(),
        min: (min <= max).then_some(min),
        max: (min <= max).then_some(max),
        sparsity: if params == 0 { 0.0 } else { zeros as f64 / params as f64 },
    }
}

/// Summarises every tensor, releasing each tensor's pages once read so memory stays flat.
pub fn inspect(file: &ModelFile) -> Result<Vec<TensorSummary>> {
    Ok(file
        .tensors()
        .map(|entry| {
            let summary = summarize(&entry);
            file.release(&entry);
            summary
        })
        .collect())
}
