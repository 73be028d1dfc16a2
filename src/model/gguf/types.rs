//! Which GGUF type each tensor gets: the rules of llama.cpp's converter (`convert_hf_to_gguf.py`,
//! `ModelBase.prepare_tensors`) followed by `llama-quantize` (`src/llama-quant.cpp`,
//! `tensor_allows_quantization`, `llama_tensor_get_type_impl`, `tensor_type_fallback`), for the file
//! types greenai writes.
//!
//! 1. The converter keeps in F32: tensors of at most one dimension, `*_norm.weight`, the position
//!    embeddings and BERT's token types, and every tensor whose name does not end in `.weight`.
//!    Every other tensor takes the file type (F16 or BF16 for those file types).
//! 2. For a block file type, `llama-quantize` then quantizes only what `tensor_allows_quantization`
//!    lets through (at least 2-D, a `weight`, not a norm, not `position_embd`/`token_types`); the
//!    rest stays as the converter wrote it (greenai starts from the f32 weights, as
//!    `convert_hf_to_gguf.py --outtype f32` followed by `llama-quantize` does).
//! 3. `output.weight`, and `token_embd.weight` when the model has no `output.weight` (tied
//!    embeddings), take Q8_0 when their rows are not whole blocks of the file type, else Q6_K
//!    unless the file type is Q8_0.
//! 4. Q4_K (llama-quantize's `Q4_K_M`, the type its `Q4_K` alias names): `attn_v` and `ffn_down` of
//!    the layers `use_more_bits` picks (the first and last eighth, and every third in between) take
//!    Q6_K.
//! 5. Rows that are not whole blocks of the chosen type fall back: Q4_K to Q5_0, Q6_K to Q8_0, and
//!    to F16 when even those do not fit. Q4_0, Q4_1, Q5_0 and Q8_0 have no fallback in llama.cpp:
//!    such a tensor is an error.

use super::format::TensorType;
use crate::kernels::ggml::GgmlType;
use crate::{Error, Result};

/// The file types `greenai compress --format gguf --quant` writes (llama.cpp's `llama_ftype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// `MOSTLY_F16`.
    F16,
    /// `MOSTLY_BF16`.
    BF16,
    /// `MOSTLY_Q8_0`.
    Q8_0,
    /// `MOSTLY_Q4_0`.
    Q4_0,
    /// `MOSTLY_Q4_1`.
    Q4_1,
    /// `MOSTLY_Q5_0`.
    Q5_0,
    /// `MOSTLY_Q4_K_M` (llama-quantize's `Q4_K`).
    Q4K,
    /// `MOSTLY_Q6_K`.
    Q6K,
}

impl FileType {
    /// Every file type, in the order the command lists them.
    pub const ALL: [FileType; 8] = [
        FileType::F16,
        FileType::BF16,
        FileType::Q8_0,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q4K,
        FileType::Q6K,
    ];

    /// The command's name of the type (`f16`, `q4_k`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            FileType::F16 => "f16",
            FileType::BF16 => "bf16",
            FileType::Q8_0 => "q8_0",
            FileType::Q4_0 => "q4_0",
            FileType::Q4_1 => "q4_1",
            FileType::Q5_0 => "q5_0",
            FileType::Q4K => "q4_k",
            FileType::Q6K => "q6_k",
        }
    }

    /// The type named `name` (case does not matter), or an error listing the names.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|t| t.name()).collect();
            Error::invalid("--quant", name, format!("GGUF output takes one of: {}", names.join(", ")))
        })
    }

    /// llama.cpp's `llama_ftype` value, written as `general.file_type`.
    pub const fn llama_ftype(self) -> u32 {
        match self {
            FileType::F16 => 1,
            FileType::BF16 => 32,
            FileType::Q8_0 => 7,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q5_0 => 8,
            FileType::Q4K => 15,
            FileType::Q6K => 18,
        }
    }

    /// The type most weights take (`llama_ftype_get_default_type`).
    pub const fn default_type(self) -> TensorType {
        match self {
            FileType::F16 => TensorType::F16,
            FileType::BF16 => TensorType::BF16,
            FileType::Q8_0 => TensorType::Ggml(GgmlType::Q8_0),
            FileType::Q4_0 => TensorType::Ggml(GgmlType::Q4_0),
            FileType::Q4_1 => TensorType::Ggml(GgmlType::Q4_1),
            FileType::Q5_0 => TensorType::Ggml(GgmlType::Q5_0),
            FileType::Q4K => TensorType::Ggml(GgmlType::Q4K),
            FileType::Q6K => TensorType::Ggml(GgmlType::Q6K),
        }
    }
}

/// What the type rules need to know about the whole model.
#[derive(Clone, Copy, Debug)]
pub struct ModelShape {
    /// Whether the model has no `output.weight` (the token embeddings serve as the output).
    pub tied_embeddings: bool,
    /// Number of layers (`block_count`).
    pub n_layer: usize,
    /// Number of `attn_v` / `attn_qkv` tensors.
    pub n_attn_v: usize,
}

/// llama-quant.cpp's `use_more_bits`: the first and last eighth of the layers and every third one
/// in between.
#[allow(clippy::nonminimal_bool)] // written as llama.cpp writes it
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i >= n / 8 && (i - n / 8) % 3 == 2)
}

/// The layer index of a `blk.N.` name.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Whether the converter keeps the tensor in F32 whatever the file type (rule 1).
fn converter_keeps_f32(name: &str, n_dims: usize) -> bool {
    n_dims <= 1
        || name.ends_with("_norm.weight")
        || name == "position_embd.weight"
        || name == "token_types.weight"
        || !name.ends_with(".weight")
}

const Q8_0: TensorType = TensorType::Ggml(GgmlType::Q8_0);
const Q6K: TensorType = TensorType::Ggml(GgmlType::Q6K);

/// The GGUF type of the tensor `name` with dimensions `dims` (innermost first) in a file of type
/// `file_type`, by the rules of the module documentation; an error where llama.cpp has none
/// (rows that are not whole blocks of a type without fallback).
pub fn tensor_type(
    name: &str,
    dims: &[usize],
    file_type: FileType,
    model: &ModelShape,
) -> Result<TensorType> {
    if converter_keeps_f32(name, dims.len()) {
        return Ok(TensorType::F32);
    }
    let default = file_type.default_type();
    let TensorType::Ggml(default_block) = default else {
        return Ok(default); // F16 / BF16: the converter's type, no llama-quantize step
    };
    let cols = dims[0];
    let is_output = name == "output.weight" || (model.tied_embeddings && name == "token_embd.weight");
    let mut ty = default;
    if is_output {
        if !cols.is_multiple_of(default_block.block_elems()) {
            ty = Q8_0;
        } else if default != Q8_0 {
            ty = Q6K;
        }
    } else if file_type == FileType::Q4K {
        let bump = if name.ends_with("attn_v.weight") || name.ends_with("attn_qkv.weight") {
            layer_of(name).is_some_and(|i| use_more_bits(i, model.n_attn_v))
        } else if name.contains("ffn_down") {
            layer_of(name).is_some_and(|i| use_more_bits(i, model.n_layer))
        } else {
            false
        };
        if bump {
            ty = Q6K;
        }
    }
    fallback(name, cols, ty)
}

/// llama-quant.cpp's `tensor_type_fallback` for the types greenai writes.
fn fallback(name: &str, cols: usize, ty: TensorType) -> Result<TensorType> {
    let TensorType::Ggml(block) = ty else { return Ok(ty) };
    if cols.is_multiple_of(block.block_elems()) {
        return Ok(ty);
    }
    let next = match block {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q6K => GgmlType::Q8_0,
        GgmlType::Q4_0
        | GgmlType::Q4_1
        | GgmlType::Q5_0
        | GgmlType::Q5_1
        | GgmlType::Q8_0
        | GgmlType::Q8_1
        | GgmlType::Q8K => {
            return Err(Error::invalid(
                "tensor",
                name,
                format!(
                    "rows of {cols} elements are not whole {} blocks of {}, and llama.cpp has no fallback \
                     type for {} (choose a K-quant, f16 or bf16)",
                    block.name(),
                    block.block_elems(),
                    block.name()
                ),
            ))
        }
    };
    Ok(if cols.is_multiple_of(next.block_elems()) { TensorType::Ggml(next) } else { TensorType::F16 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q4K: TensorType = TensorType::Ggml(GgmlType::Q4K);
    const Q5_0: TensorType = TensorType::Ggml(GgmlType::Q5_0);
    const Q4_0: TensorType = TensorType::Ggml(GgmlType::Q4_0);

    fn shape(tied: bool, n: usize) -> ModelShape {
        ModelShape { tied_embeddings: tied, n_layer: n, n_attn_v: n }
    }

    #[test]
    fn use_more_bits_matches_llama_quant_for_32_layers() {
        // Written out from the formula by hand for n = 32: 0..4, 28..32, and 4 + 3k + 2.
        let picked: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(picked, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    }

    #[test]
    fn rules_for_bert_shapes() {
        let m = shape(true, 6);
        let t = |name: &str, dims: &[usize], ft| tensor_type(name, dims, ft, &m).unwrap();
        assert_eq!(t("blk.0.attn_q.bias", &[384], FileType::Q4_0), TensorType::F32);
        assert_eq!(t("blk.0.attn_output_norm.weight", &[384], FileType::F16), TensorType::F32);
        assert_eq!(t("position_embd.weight", &[384, 512], FileType::Q4_0), TensorType::F32);
        assert_eq!(t("token_types.weight", &[384, 2], FileType::F16), TensorType::F32);
        assert_eq!(t("token_embd.weight", &[384, 30522], FileType::F16), TensorType::F16);
        // Tied embeddings, 384 is not a multiple of 256: Q6_K falls back to Q8_0.
        assert_eq!(t("token_embd.weight", &[384, 30522], FileType::Q4_0), Q8_0);
        assert_eq!(t("token_embd.weight", &[384, 30522], FileType::Q4K), Q8_0);
        assert_eq!(t("blk.0.attn_q.weight", &[384, 384], FileType::Q4_0), Q4_0);
        assert_eq!(t("blk.0.attn_q.weight", &[384, 384], FileType::Q4K), Q5_0);
        // Of 6 layers, use_more_bits picks 2 ((2 - 6/8) % 3 == 2) and 5 (>= 7 * 6 / 8), not 0 (6/8 = 0):
        // attn_v there is bumped to Q6_K, which falls back to Q8_0 at 384 columns.
        assert_eq!(t("blk.0.attn_v.weight", &[384, 384], FileType::Q4K), Q5_0);
        assert_eq!(t("blk.1.attn_v.weight", &[384, 384], FileType::Q4K), Q5_0);
        assert_eq!(t("blk.2.attn_v.weight", &[384, 384], FileType::Q4K), Q8_0);
        assert_eq!(t("blk.5.attn_v.weight", &[384, 384], FileType::Q4K), Q8_0);
        assert_eq!(t("blk.0.attn_q.weight", &[384, 384], FileType::Q6K), Q8_0);
    }

    #[test]
    fn rules_for_llama_shapes() {
        let m = shape(false, 8);
        let t = |name: &str, dims: &[usize], ft| tensor_type(name, dims, ft, &m).unwrap();
        assert_eq!(t("output.weight", &[512, 1000], FileType::Q4_0), Q6K);
        assert_eq!(t("output.weight", &[512, 1000], FileType::Q8_0), Q8_0);
        assert_eq!(t("token_embd.weight", &[512, 1000], FileType::Q4_0), Q4_0);
        assert_eq!(t("blk.1.ffn_down.weight", &[1024, 512], FileType::Q4K), Q4K);
        assert_eq!(t("blk.0.ffn_down.weight", &[1024, 512], FileType::Q4K), Q6K);
        assert_eq!(t("blk.7.attn_v.weight", &[512, 128], FileType::Q4K), Q6K);
        // Columns that no block divides: K-quants fall back to F16, the others are refused.
        assert_eq!(t("blk.1.attn_q.weight", &[40, 40], FileType::Q4K), TensorType::F16);
        assert!(tensor_type("blk.1.attn_q.weight", &[40, 40], FileType::Q4_0, &m).is_err());
        assert!(tensor_type("blk.1.attn_q.weight", &[40, 40], FileType::Q8_0, &m).is_err());
    }
}
