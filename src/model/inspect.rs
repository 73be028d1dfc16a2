//! What a model file holds, tensor by tensor: dtype, shape, size, range and sparsity.

use super::dir::Model;
use super::file::{TensorEntry, TensorInfo, CHUNK};
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

/// Running minimum, maximum and zero count over a tensor's bytes, fed chunk by chunk.
struct Range {
    min: f64,
    max: f64,
    zeros: usize,
}

impl Range {
    fn new() -> Self {
        Range { min: f64::INFINITY, max: f64::NEG_INFINITY, zeros: 0 }
    }

    fn add(&mut self, dtype: Dtype, bytes: &[u8]) {
        let width = dtype.size().max(1);
        // A run of zero bytes (a pruned or sparse region) is counted without decoding it.
        let (head, words, tail) = bytemuck::pod_align_to::<u8, u64>(bytes);
        if words.iter().fold(0, |acc, &w| acc | w) == 0 && head.iter().chain(tail).all(|&b| b == 0) {
            if !bytes.is_empty() {
                self.zeros += bytes.len() / width;
                self.min = self.min.min(0.0);
                self.max = self.max.max(0.0);
            }
            return;
        }
        for chunk in bytes.chunks_exact(width) {
            let v = element(dtype, chunk);
            if v == 0.0 {
                self.zeros += 1;
            }
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    fn summary(&self, info: &TensorInfo) -> TensorSummary {
        let params = info.len();
        let (min, max) = (self.min, self.max);
        TensorSummary {
            name: info.name.clone(),
            dtype: format!("{:?}", info.dtype),
            shape: info.shape.clone(),
            params,
            bytes: info.byte_len as usize,
            min: (min <= max).then_some(min),
            max: (min <= max).then_some(max),
            sparsity: if params == 0 { 0.0 } else { self.zeros as f64 / params as f64 },
        }
    }
}

/// Summarises one tensor in a single pass over its bytes.
pub fn summarize(entry: &TensorEntry<'_>) -> TensorSummary {
    let mut range = Range::new();
    range.add(entry.dtype, &entry.bytes);
    let info = TensorInfo {
        name: entry.name.to_string(),
        dtype: entry.dtype,
        shape: entry.shape.to_vec(),
        offset: 0,
        byte_len: entry.bytes.len() as u64,
    };
    range.summary(&info)
}

/// Summarises every tensor of a model (a file or every shard of a folder), each read in chunks so
/// that memory stays at one chunk whatever the tensors' sizes; `progress(bytes read, total)` is
/// called after each tensor.
pub fn inspect(model: &Model, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<TensorSummary>> {
    let (mut done, total) = (0, model.data_bytes());
    let mut rows = Vec::with_capacity(model.len());
    for shard in model.shards() {
        for info in shard.tensors() {
            let mut range = Range::new();
            shard.read_chunks(info, CHUNK, &mut |bytes| {
                range.add(info.dtype, bytes);
                Ok(())
            })?;
            rows.push(range.summary(info));
            done += info.byte_len;
            progress(done, total);
        }
    }
    Ok(rows)
}
