//! GGUF, the file llama.cpp, ollama and other ggml-based engines load: a reader (versions 2 and 3)
//! and a writer (version 3), and the conversion of a Hugging Face model directory into one GGUF file
//! as llama.cpp's `convert_hf_to_gguf.py` and `llama-quantize` would make it (feature `serde`).

mod convert;
mod format;
mod types;

pub use convert::{
    convert_to_gguf, encode, open_weights, permute_qk_rows, Arch, GgufReport, GgufTensorReport,
    SUPPORTED_ARCHITECTURES,
};
pub use format::{
    header_bytes, is_gguf, is_gguf_file, write_gguf, Array, GgufFile, PlannedTensor, TensorInfo, TensorType,
    Value, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS,
};
pub use types::{tensor_type, FileType, ModelShape};

use super::write::OutTensor;
use crate::{Error, Result};
use std::path::Path;

/// Writes every tensor of the GGUF file at `input` to a safetensors file at `output` (atomically):
/// float and block types dequantized to f32, integer types kept, shapes outermost first, names as
/// in the GGUF file (a `llama` file's q/k rows stay in ggml's permuted order). One tensor is held
/// in memory at a time.
/// `progress(done, total)` is called after each tensor.
pub fn decompress_gguf(input: &Path, output: &Path, progress: &mut dyn FnMut(usize, usize)) -> Result<()> {
    super::check_distinct(&[("input", input), ("output", output)])?;
    let file = GgufFile::open(input)?;
    let mut out = super::SafetensorsWriter::create(output)?;
    let total = file.tensors.len();
    for (i, t) in file.tensors.iter().enumerate() {
        let (dtype, bytes) = match t.ty {
            TensorType::I8 => (safetensors::Dtype::I8, file.data(t)?.into_owned()),
            TensorType::I16 => (safetensors::Dtype::I16, file.data(t)?.into_owned()),
            TensorType::I32 => (safetensors::Dtype::I32, file.data(t)?.into_owned()),
            TensorType::I64 => (safetensors::Dtype::I64, file.data(t)?.into_owned()),
            TensorType::F32 | TensorType::F16 | TensorType::BF16 | TensorType::F64 | TensorType::Ggml(_) => (
                safetensors::Dtype::F32,
                file.to_f32(t)
                    .map_err(|e| Error::invalid("tensor", &t.name, e.to_string()))?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        };
        out.add(&t.name, &OutTensor { dtype, shape: t.shape(), bytes: bytes.into() })?;
        progress(i + 1, total);
    }
    let mut metadata = std::collections::HashMap::new();
    if let Some(arch) = file.get("general.architecture").and_then(Value::as_str) {
        metadata.insert("gguf.architecture".to_string(), arch.to_string());
    }
    out.finish(&metadata)
}
