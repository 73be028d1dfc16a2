//! What a model file holds, tensor by tensor: dtype, shape, size, range and sparsity.

use super::dir::Model;
use super::file::{ModelFile, TensorEntry, TensorInfo, CHUNK};
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

/// One logical tensor of a file written by `greenai compress`: what it decodes to, how it is stored,
/// and what it costs on disk with its companions.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LogicalSummary {
    /// The tensor's name.
    pub name: String,
    /// The logical element type: `int8`, `uint8`, `int4`, `uint4`, a ggml block type (`q4_0`, ...),
    /// `f16`, `bf16`, `f32`; a tensor passed through keeps its safetensors dtype, lower case.
    pub dtype: String,
    /// The dtype `decompress` restores (`F32`, ...).
    pub restores_to: String,
    /// The logical shape.
    pub shape: Vec<usize>,
    /// Number of elements.
    pub params: usize,
    /// Bits per element of the data alone (4.5 for q4_0: its scale is inside the block).
    pub bits: f64,
    /// How the values are coded: `per-channel symmetric`, `group 128 affine hqq`, `ggml blocks of 32`,
    /// `cast`, `pruned`, `unchanged`.
    pub scheme: String,
    /// How the elements are laid out: `dense`, `csr`, or an N:M pattern such as `2:4`.
    pub storage: String,
    /// Share of zeros of the weight before quantization (pruned or naturally zero; rounding zeros are
    /// not counted); `None` when the file does not say and the values are quantized.
    pub sparsity: Option<f64>,
    /// Bytes on disk, companions included.
    pub bytes: usize,
}

fn quant_scheme(meta: &std::collections::HashMap<&str, &str>) -> String {
    let get = |k: &str| meta.get(k).copied().unwrap_or("?");
    let granularity = match get("granularity") {
        "tensor" => "per-tensor".to_string(),
        "channel" => format!("per-channel (axis {})", get("axis")),
        "block" => format!("group {}", get("block")),
        other => other.to_string(),
    };
    let mut scheme = format!("{granularity} {}", get("mode"));
    if meta.get("narrow") == Some(&"1") {
        scheme.push_str(" narrow");
    }
    scheme.push(' ');
    scheme.push_str(meta.get("method").copied().unwrap_or("rtn"));
    scheme
}

/// The logical tensors of a file written by `greenai compress` (companions folded into the tensor they
/// serve, every entry checked as `decompress` checks it), or `None` for any other file.
pub fn inspect_logical(file: &ModelFile) -> Result<Option<Vec<LogicalSummary>>> {
    logical_rows(file, true)
}

/// [`inspect_logical`]'s rows; without `measure` nothing but the header is read, and a sparsity the
/// file does not declare is `None`.
pub(crate) fn logical_rows(file: &ModelFile, measure: bool) -> Result<Option<Vec<LogicalSummary>>> {
    if !file.metadata().contains_key("greenai.format") {
        return Ok(None);
    }
    let mut changed = std::collections::HashMap::new();
    for info in file.tensors() {
        if let Some(text) = file.metadata().get(&super::metadata_key(&info.name)) {
            changed.insert(info.name.as_str(), super::compress::parse_changed(file, info, text)?);
        }
    }
    let companions: std::collections::HashSet<&str> =
        changed.values().flat_map(|c| c.companions.iter().map(String::as_str)).collect();
    let mut rows = Vec::new();
    for info in file.tensors().iter().filter(|e| !companions.contains(e.name.as_str())) {
        let Some(c) = changed.get(info.name.as_str()) else {
            rows.push(unchanged_row(info, if measure { Some(file.read(info)?) } else { None }));
            continue;
        };
        let params = crate::tensor::numel(&c.shape)?;
        let declared =
            c.meta.get("sparsity").and_then(|s| s.parse::<f64>().ok()).filter(|s| (0.0..=1.0).contains(s));
        let (dtype, bits, scheme) = match c.kind {
            "quant" => {
                let qtype = c.meta.get("qtype").copied().unwrap_or("?");
                let logical = match qtype {
                    "i8" => "int8",
                    "u8" => "uint8",
                    "i4" => "int4",
                    _ => "uint4",
                };
                let bits = if qtype.ends_with('4') { 4.0 } else { 8.0 };
                (logical.to_string(), bits, quant_scheme(&c.meta))
            }
            "ggml" => {
                let ty = c.meta.get("type").and_then(|t| crate::kernels::ggml::GgmlType::from_name(t));
                let bits = ty.map_or(f64::NAN, |t| (t.block_bytes() * 8) as f64 / t.block_elems() as f64);
                let blocks = ty.map_or(0, |t| t.block_elems());
                (
                    c.meta.get("type").copied().unwrap_or("?").to_string(),
                    bits,
                    format!("ggml blocks of {blocks}"),
                )
            }
            "cast" => (
                format!("{:?}", info.dtype).to_ascii_lowercase(),
                (info.dtype.size() * 8) as f64,
                "cast".into(),
            ),
            _ => ("f32".to_string(), 32.0, "pruned".to_string()),
        };
        // Float values: zeros are the weight's own (a cast keeps zero and nonzero apart).
        let sparsity = match (declared, c.kind) {
            (None, "cast" | "pruned") if measure => super::compress::restore(file, &file.read(info)?, c)
                .ok()
                .map(|v| v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len().max(1) as f64),
            _ => declared,
        };
        let companion_bytes: usize =
            c.companions.iter().filter_map(|n| file.info(n)).map(|t| t.byte_len as usize).sum();
        rows.push(LogicalSummary {
            name: info.name.clone(),
            dtype,
            restores_to: format!("{:?}", c.dtype),
            shape: c.shape.clone(),
            params,
            bits,
            scheme,
            storage: c.storage.label(),
            sparsity,
            bytes: info.byte_len as usize + companion_bytes,
        });
    }
    Ok(Some(rows))
}

/// The row of a tensor stored as it came: its zeros counted when `entry` (its data) is given.
pub(crate) fn unchanged_row(info: &TensorInfo, entry: Option<TensorEntry<'_>>) -> LogicalSummary {
    let dtype = format!("{:?}", info.dtype);
    LogicalSummary {
        name: info.name.clone(),
        dtype: dtype.to_ascii_lowercase(),
        restores_to: dtype,
        shape: info.shape.clone(),
        params: info.len(),
        bits: (info.dtype.size() * 8) as f64,
        scheme: "unchanged".into(),
        storage: "dense".into(),
        sparsity: entry.map(|e| summarize(&e).sparsity),
        bytes: info.byte_len as usize,
    }
}
