//! A Hugging Face model directory to one GGUF file, as llama.cpp's `convert_hf_to_gguf.py` (and
//! `llama-quantize` for the block types) makes it: tensor names, the q/k permutation of `llama`,
//! the `general.*` and `<arch>.*` hyper-parameters and the `tokenizer.ggml.*` vocabulary.
//!
//! Supported: BERT encoders (`BertModel`, `BertForMaskedLM`: arch `bert`), Llama-style decoders
//! (`LlamaForCausalLM`, `MistralForCausalLM`: `llama`; `Qwen2ForCausalLM`: `qwen2`). Tokenizers:
//! WordPiece (`tokenizer.json` or `vocab.txt`) and byte-level BPE (`tokenizer.json`).

use super::format::{write_gguf, Array, PlannedTensor, TensorType, Value};
use super::types::{tensor_type, FileType, ModelShape};
use crate::kernels::ggml;
use crate::model::{Destination, Model};
use crate::{Error, Result};
use half::{bf16, f16};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The architectures greenai writes as GGUF, by `config.json`'s `architectures` entry.
pub const SUPPORTED_ARCHITECTURES: [(&str, &str); 5] = [
    ("BertModel", "bert"),
    ("BertForMaskedLM", "bert"),
    ("LlamaForCausalLM", "llama"),
    ("MistralForCausalLM", "llama"),
    ("Qwen2ForCausalLM", "qwen2"),
];

/// A GGUF architecture greenai writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// BERT encoder (`bert`).
    Bert,
    /// Llama / Mistral decoder (`llama`).
    Llama,
    /// Qwen2 decoder (`qwen2`).
    Qwen2,
}

impl Arch {
    /// The `general.architecture` name.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::Bert => "bert",
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    fn from_config(config: &Json) -> Result<Self> {
        let listed: Vec<&str> = config
            .get("architectures")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        let found = listed.iter().find_map(|a| SUPPORTED_ARCHITECTURES.iter().find(|(hf, _)| hf == a));
        match found.map(|(_, gguf)| *gguf) {
            Some("bert") => Ok(Arch::Bert),
            Some("llama") => Ok(Arch::Llama),
            Some(_) => Ok(Arch::Qwen2),
            None => {
                let supported: Vec<_> =
                    SUPPORTED_ARCHITECTURES.iter().map(|(hf, g)| format!("{hf} ({g})")).collect();
                Err(Error::invalid(
                    "architecture",
                    if listed.is_empty() { "none".to_string() } else { listed.join(", ") },
                    format!("GGUF output supports {}", supported.join(", ")),
                ))
            }
        }
    }
}

/// One tensor of a written GGUF file, as reported.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GgufTensorReport {
    /// The GGUF name.
    pub name: String,
    /// The source tensor's name.
    pub source: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// ggml's type name.
    pub ty: String,
    /// Bytes of the source tensor.
    pub bytes_before: usize,
    /// Bytes in the GGUF file.
    pub bytes_after: usize,
}

/// What [`convert_to_gguf`] wrote.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GgufReport {
    /// `general.architecture`.
    pub arch: String,
    /// Number of metadata keys.
    pub metadata_keys: usize,
    /// Every tensor in file order.
    pub tensors: Vec<GgufTensorReport>,
    /// Size of the written file.
    pub file_bytes: u64,
}

/// Opens the model's weights: the directory's `model.safetensors`, or its shards with their index.
pub fn open_weights(dir: &Path) -> Result<Model> {
    Model::open(dir)
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path.display().to_string(), e.to_string()))
}

fn read_json_opt(path: &Path) -> Result<Option<Json>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// A hyper-parameter as an unsigned integer, from the first of `keys` present.
fn hp_u32(config: &Json, keys: &[&str]) -> Option<u32> {
    keys.iter().find_map(|k| config.get(*k)).and_then(Json::as_u64).and_then(|v| u32::try_from(v).ok())
}

fn hp_f32(config: &Json, keys: &[&str]) -> Option<f32> {
    keys.iter().find_map(|k| config.get(*k)).and_then(Json::as_f64).map(|v| v as f32)
}

fn required(config: &Json, keys: &[&str]) -> Result<u32> {
    hp_u32(config, keys)
        .ok_or_else(|| Error::format("config.json", format!("no positive integer `{}`", keys.join("` or `"))))
}

/// How a source tensor becomes a GGUF tensor.
#[derive(Clone, Debug)]
struct Mapped {
    source: String,
    name: String,
    /// Row permutation of `convert_hf_to_gguf`'s `LlamaModel.permute`, with this many heads.
    permute_heads: Option<usize>,
}

/// The GGUF name of a Hugging Face tensor name (`gguf-py`'s `tensor_mapping.py` for these
/// architectures), `None` for tensors the converter drops.
fn map_name(arch: Arch, name: &str) -> Result<Option<String>> {
    let (stem, suffix) = match name.rsplit_once('.') {
        Some((s, x)) if x == "weight" || x == "bias" => (s, x),
        _ => (name, ""),
    };
    let mapped = match arch {
        Arch::Bert => {
            let stem = stem.strip_prefix("bert.").unwrap_or(stem);
            if stem == "embeddings.position_ids" || stem.starts_with("pooler.") || stem.starts_with("cls.") {
                return Ok(None);
            }
            if let Some(rest) = stem.strip_prefix("encoder.layer.") {
                let (n, part) = rest.split_once('.').unwrap_or((rest, ""));
                let gguf = match part {
                    "attention.self.query" => "attn_q",
                    "attention.self.key" => "attn_k",
                    "attention.self.value" => "attn_v",
                    "attention.output.dense" => "attn_output",
                    "attention.output.LayerNorm" => "attn_output_norm",
                    "intermediate.dense" => "ffn_up",
                    "output.dense" => "ffn_down",
                    "output.LayerNorm" => "layer_output_norm",
                    _ => "",
                };
                (!gguf.is_empty() && n.parse::<usize>().is_ok()).then(|| format!("blk.{n}.{gguf}"))
            } else {
                match stem {
                    "embeddings.word_embeddings" => Some("token_embd".to_string()),
                    "embeddings.token_type_embeddings" => Some("token_types".to_string()),
                    "embeddings.position_embeddings" => Some("position_embd".to_string()),
                    "embeddings.LayerNorm" => Some("token_embd_norm".to_string()),
                    _ => None,
                }
            }
        }
        Arch::Llama | Arch::Qwen2 => {
            if stem.ends_with("rotary_emb.inv_freq") {
                return Ok(None);
            }
            if let Some(rest) = stem.strip_prefix("model.layers.") {
                let (n, part) = rest.split_once('.').unwrap_or((rest, ""));
                let gguf = match part {
                    "input_layernorm" => "attn_norm",
                    "self_attn.q_proj" => "attn_q",
                    "self_attn.k_proj" => "attn_k",
                    "self_attn.v_proj" => "attn_v",
                    "self_attn.o_proj" => "attn_output",
                    "post_attention_layernorm" => "ffn_norm",
                    "mlp.gate_proj" => "ffn_gate",
                    "mlp.up_proj" => "ffn_up",
                    "mlp.down_proj" => "ffn_down",
                    _ => "",
                };
                (!gguf.is_empty() && n.parse::<usize>().is_ok()).then(|| format!("blk.{n}.{gguf}"))
            } else {
                match stem {
                    "model.embed_tokens" => Some("token_embd".to_string()),
                    "model.norm" => Some("output_norm".to_string()),
                    "lm_head" => Some("output".to_string()),
                    _ => None,
                }
            }
        }
    };
    match mapped {
        Some(m) if suffix.is_empty() => Ok(Some(m)),
        Some(m) => Ok(Some(format!("{m}.{suffix}"))),
        None => Err(Error::invalid(
            "tensor",
            name,
            format!("has no GGUF name for arch {} (llama.cpp's converter cannot map it either)", arch.name()),
        )),
    }
}

/// `convert_hf_to_gguf.py`'s `LlamaModel.permute`: the rows of each head, stored as two halves
/// (rotate-half RoPE), interleaved pairwise (ggml's RoPE): within a head of `d` rows, new row
/// `2i + j` is old row `j * d/2 + i`.
pub fn permute_qk_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Result<Vec<f32>> {
    if n_head == 0
        || !rows.is_multiple_of(n_head)
        || !(rows / n_head).is_multiple_of(2)
        || data.len() != rows * cols
    {
        return Err(Error::invalid(
            "rows",
            rows,
            format!("cannot split into {n_head} heads of an even number of rows (q/k permutation)"),
        ));
    }
    let d = rows / n_head;
    let half = d / 2;
    let mut out = crate::error::try_vec(data.len(), 0f32)?;
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let dst = (h * d + 2 * i + j) * cols;
                let src = (h * d + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    Ok(out)
}

/// The bytes of `values` (row-major, `cols` per row) stored as `ty`.
pub fn encode(ty: TensorType, values: &[f32], cols: usize) -> Result<Vec<u8>> {
    Ok(match ty {
        TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        TensorType::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
        TensorType::BF16 => values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
        TensorType::Ggml(t) => {
            let rows = values.len().checked_div(cols).unwrap_or(0);
            let mut out = crate::error::try_vec(t.matrix_bytes(rows, cols)?, 0u8)?;
            ggml::quantize(t, values, rows, cols, &mut out)?;
            out
        }
        TensorType::F64 | TensorType::I8 | TensorType::I16 | TensorType::I32 | TensorType::I64 => {
            return Err(Error::invalid(
                "type",
                ty.name(),
                "greenai does not write float weights as this type",
            ))
        }
    })
}

fn kv(key: impl Into<String>, value: Value) -> (String, Value) {
    (key.into(), value)
}

/// Converts the Hugging Face model directory `model_dir` (config.json, model.safetensors, tokenizer
/// files) into a GGUF file at `output` of file type `file_type`, written atomically.
/// `progress(done, total)` is called after each tensor.
pub fn convert_to_gguf(
    model_dir: &Path,
    output: &Path,
    file_type: FileType,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GgufReport> {
    let config = read_json(&model_dir.join("config.json"))?;
    let arch = Arch::from_config(&config)?;
    let destination = Destination::check(output)?;
    let weights = open_weights(model_dir)?;
    crate::model::check_distinct(&[("input", weights.path()), ("output", output)])?;

    let n_layer = required(&config, &["num_hidden_layers", "n_layer", "num_layers"])? as usize;
    let n_head = required(&config, &["num_attention_heads", "n_head", "n_heads"])? as usize;
    let n_head_kv = hp_u32(&config, &["num_key_value_heads"]).map_or(n_head, |v| v as usize);

    // Tensor names and the permutation.
    let mut mapped = Vec::new();
    for t in weights.tensors() {
        let Some(name) = map_name(arch, &t.name)? else { continue };
        let permute_heads = match arch {
            Arch::Llama if name.ends_with("attn_q.weight") => Some(n_head),
            Arch::Llama if name.ends_with("attn_k.weight") => Some(n_head_kv),
            _ => None,
        };
        mapped.push(Mapped { source: t.name.to_string(), name, permute_heads });
    }
    let has_output = mapped.iter().any(|m| m.name == "output.weight");
    let shape = ModelShape {
        tied_embeddings: !has_output,
        n_layer,
        n_attn_v: mapped
            .iter()
            .filter(|m| m.name.ends_with("attn_v.weight") || m.name.ends_with("attn_qkv.weight"))
            .count(),
    };

    let mut metadata = hyper_parameters(arch, &config, model_dir, file_type)?;
    metadata.extend(tokenizer(arch, &config, model_dir)?);

    let mut planned = Vec::with_capacity(mapped.len());
    let mut reports = Vec::with_capacity(mapped.len());
    for m in mapped {
        let entry = weights
            .info(&m.source)
            .ok_or_else(|| Error::invalid("tensor", &m.source, "is not in the model"))?;
        if !entry.is_float() {
            return Err(Error::invalid(
                "tensor",
                &m.source,
                format!("is {:?}: GGUF weights are float", entry.dtype),
            ));
        }
        let dims: Vec<usize> = entry.shape.iter().rev().copied().collect();
        if dims.len() > super::format::MAX_DIMS {
            return Err(Error::invalid("tensor", &m.source, "has more than 4 dimensions"));
        }
        let ty = tensor_type(&m.name, &dims, file_type, &shape)?;
        let bytes_after = ty.bytes(&dims)?;
        reports.push(GgufTensorReport {
            name: m.name.clone(),
            source: m.source.clone(),
            shape: entry.shape.to_vec(),
            ty: ty.name().to_string(),
            bytes_before: entry.byte_len as usize,
            bytes_after,
        });
        let cols = dims.first().copied().unwrap_or(1);
        let weights = &weights;
        let source = m.source.clone();
        let permute = m.permute_heads;
        planned.push(PlannedTensor {
            name: m.name,
            dims,
            ty,
            bytes: Box::new(move || {
                let mut values = weights.tensor(&source)?.to_f32()?;
                if let Some(heads) = permute {
                    let rows = values.len().checked_div(cols).unwrap_or(0);
                    values = permute_qk_rows(&values, rows, cols, heads)
                        .map_err(|e| Error::invalid("tensor", &source, e.to_string()))?;
                }
                encode(ty, &values, cols).map_err(|e| Error::invalid("tensor", &source, e.to_string()))
            }),
        });
    }
    let metadata_keys = metadata.len();
    let file_bytes = write_gguf(&destination, &metadata, planned, progress)?;
    Ok(GgufReport { arch: arch.name().to_string(), metadata_keys, tensors: reports, file_bytes })
}

/// `general.*` and `<arch>.*` keys, as `TextModel.set_gguf_parameters` and the architecture's
/// class write them.
fn hyper_parameters(
    arch: Arch,
    config: &Json,
    dir: &Path,
    file_type: FileType,
) -> Result<Vec<(String, Value)>> {
    let a = arch.name();
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n != "model")
        .or_else(|| {
            config
                .get("_name_or_path")
                .and_then(Json::as_str)
                .and_then(|s| s.rsplit('/').next())
                .map(str::to_string)
        })
        .unwrap_or_else(|| a.to_string());
    let mut m = vec![
        kv("general.architecture", Value::String(a.into())),
        kv("general.type", Value::String("model".into())),
        kv("general.name", Value::String(name)),
    ];
    m.push(kv(
        format!("{a}.block_count"),
        Value::U32(required(config, &["num_hidden_layers", "n_layer", "num_layers"])?),
    ));
    if let Some(n) = hp_u32(config, &["max_position_embeddings", "n_ctx", "n_positions"]) {
        m.push(kv(format!("{a}.context_length"), Value::U32(n)));
    }
    let n_embd = required(config, &["hidden_size", "n_embd", "dim"])?;
    m.push(kv(format!("{a}.embedding_length"), Value::U32(n_embd)));
    if let Some(n) = hp_u32(config, &["intermediate_size", "n_inner", "hidden_dim"]) {
        m.push(kv(format!("{a}.feed_forward_length"), Value::U32(n)));
    }
    let n_head = required(config, &["num_attention_heads", "n_head", "n_heads"])?;
    m.push(kv(format!("{a}.attention.head_count"), Value::U32(n_head)));
    if let Some(n) = hp_u32(config, &["num_key_value_heads"]) {
        m.push(kv(format!("{a}.attention.head_count_kv"), Value::U32(n)));
    }
    if let Some(theta) = hp_f32(config, &["rope_theta"]) {
        m.push(kv(format!("{a}.rope.freq_base"), Value::F32(theta)));
    }
    if let Some(eps) = hp_f32(config, &["rms_norm_eps", "norm_eps"]) {
        m.push(kv(format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(eps)));
    }
    if let Some(eps) = hp_f32(config, &["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"]) {
        m.push(kv(format!("{a}.attention.layer_norm_epsilon"), Value::F32(eps)));
    }
    if let Some(hd) = hp_u32(config, &["head_dim"]) {
        m.push(kv(format!("{a}.attention.key_length"), Value::U32(hd)));
        m.push(kv(format!("{a}.attention.value_length"), Value::U32(hd)));
    }
    m.push(kv("general.file_type", Value::U32(file_type.llama_ftype())));
    match arch {
        Arch::Bert => {
            m.push(kv(format!("{a}.attention.causal"), Value::Bool(false)));
            if let Some(pooling) = pooling_type(dir)? {
                m.push(kv(format!("{a}.pooling_type"), Value::U32(pooling)));
            }
        }
        Arch::Llama => {
            m.push(kv(format!("{a}.vocab_size"), Value::U32(required(config, &["vocab_size"])?)));
            let rope_dim = hp_u32(config, &["head_dim"]).unwrap_or(n_embd / n_head.max(1));
            m.push(kv(format!("{a}.rope.dimension_count"), Value::U32(rope_dim)));
        }
        Arch::Qwen2 => {}
    }
    if let Some(scaling) = config.get("rope_scaling").filter(|s| !s.is_null()) {
        let kind =
            scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(Json::as_str).unwrap_or("");
        let factor = scaling.get("factor").and_then(Json::as_f64);
        match (kind, factor) {
            ("linear", Some(f)) => {
                m.push(kv(format!("{a}.rope.scaling.type"), Value::String("linear".into())));
                m.push(kv(format!("{a}.rope.scaling.factor"), Value::F32(f as f32)));
            }
            _ => {
                return Err(Error::invalid(
                    "rope_scaling",
                    kind,
                    "greenai's GGUF writer handles no rope scaling or `linear` only",
                ))
            }
        }
    }
    m.push(kv("general.quantization_version", Value::U32(2)));
    Ok(m)
}

/// `TextModel._try_set_pooling_type`: sentence-transformers' pooling module, mean (1) or CLS (2).
fn pooling_type(dir: &Path) -> Result<Option<u32>> {
    let Some(modules) = read_json_opt(&dir.join("modules.json"))? else { return Ok(None) };
    let path = modules.as_array().into_iter().flatten().find_map(|m| {
        let ty = m.get("type").and_then(Json::as_str)?;
        ty.ends_with(".Pooling").then(|| m.get("path").and_then(Json::as_str).map(PathBuf::from)).flatten()
    });
    let Some(path) = path else { return Ok(None) };
    let pooling = read_json(&dir.join(path).join("config.json"))?;
    let flag = |k: &str| pooling.get(k).and_then(Json::as_bool).unwrap_or(false);
    if flag("pooling_mode_mean_tokens") {
        Ok(Some(1))
    } else if flag("pooling_mode_cls_token") {
        Ok(Some(2))
    } else {
        Err(Error::invalid(
            "pooling",
            dir.display(),
            "only MEAN and CLS pooling are supported (as llama.cpp)",
        ))
    }
}

/// gguf-py's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// `ModelBase.does_token_look_special`.
fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<｜") && token.ends_with("｜>"))
        || (token.starts_with("<unused") && token.ends_with('>'))
}

/// The llama.cpp pre-tokenizer name of a byte-level BPE tokenizer (the converter identifies it
/// by hashing a test text's tokens; greenai matches the pre-tokenizer's regular expression).
fn bpe_pre(arch: Arch, tokenizer: &Json) -> Result<&'static str> {
    const LLAMA3: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    if arch == Arch::Qwen2 {
        return Ok("qwen2");
    }
    let pre = tokenizer.get("pre_tokenizer").unwrap_or(&Json::Null);
    let parts: Vec<&Json> = match pre.get("pretokenizers").and_then(Json::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![pre],
    };
    let regex =
        parts.iter().find_map(|p| p.get("pattern").and_then(|x| x.get("Regex")).and_then(Json::as_str));
    let byte_level = parts.iter().any(|p| p.get("type").and_then(Json::as_str) == Some("ByteLevel"));
    match regex {
        Some(r) if r == LLAMA3 => Ok("llama-bpe"),
        None if byte_level => Ok("gpt-2"),
        _ => Err(Error::invalid(
            "tokenizer.json",
            "pre_tokenizer",
            "an unrecognised BPE pre-tokenizer: greenai knows GPT-2's byte-level one and Llama 3's",
        )),
    }
}

/// `tokenizer.ggml.*`, as `set_vocab` of the architecture's class and gguf-py's `SpecialVocab`
/// write them.
fn tokenizer(arch: Arch, config: &Json, dir: &Path) -> Result<Vec<(String, Value)>> {
    let tokenizer = read_json_opt(&dir.join("tokenizer.json"))?;
    let tokenizer_config = read_json_opt(&dir.join("tokenizer_config.json"))?;
    let model_type = tokenizer.as_ref().and_then(|t| t.pointer("/model/type")).and_then(Json::as_str);

    // The base vocabulary and the added tokens (id, content, special).
    let mut vocab: HashMap<u64, String> = HashMap::new();
    let wordpiece = match (model_type, &tokenizer) {
        (Some("WordPiece"), _) | (None, None) if arch == Arch::Bert => true,
        (Some("BPE"), Some(t)) if arch != Arch::Bert => {
            let byte_level = t.pointer("/decoder/type").and_then(Json::as_str) == Some("ByteLevel");
            if !byte_level {
                return Err(Error::invalid(
                    "tokenizer.json",
                    dir.display(),
                    "a SentencePiece-style BPE (byte fallback, no ByteLevel decoder): greenai writes byte-level \
                     BPE (GPT-2 / Llama 3 / Qwen2) and WordPiece tokenizers only",
                ));
            }
            false
        }
        (None, None) => {
            let why = if dir.join("tokenizer.model").is_file() {
                "has only a SentencePiece tokenizer.model: greenai needs a tokenizer.json (byte-level BPE)"
            } else {
                "has no tokenizer.json"
            };
            return Err(Error::invalid("model", dir.display(), why));
        }
        (other, _) => {
            return Err(Error::invalid(
                "tokenizer.json",
                other.unwrap_or("none"),
                format!(
                    "tokenizer model not supported for arch {} (WordPiece for bert, BPE for decoders)",
                    arch.name()
                ),
            ))
        }
    };
    match tokenizer.as_ref().and_then(|t| t.pointer("/model/vocab")).and_then(Json::as_object) {
        Some(map) => {
            for (tok, id) in map {
                let id = id
                    .as_u64()
                    .ok_or_else(|| Error::format("tokenizer.json", format!("token {tok:?} has no id")))?;
                vocab.insert(id, tok.clone());
            }
        }
        None if wordpiece => {
            let path = dir.join("vocab.txt");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            for (i, line) in text.lines().enumerate() {
                vocab.insert(i as u64, line.to_string());
            }
        }
        None => return Err(Error::format("tokenizer.json", "no model.vocab")),
    }
    let mut added: HashMap<u64, (String, bool)> = HashMap::new();
    let added_list = tokenizer
        .as_ref()
        .and_then(|t| t.get("added_tokens"))
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    for a in &added_list {
        let (Some(id), Some(content)) =
            (a.get("id").and_then(Json::as_u64), a.get("content").and_then(Json::as_str))
        else {
            continue;
        };
        let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
        vocab.insert(id, content.to_string());
        added.insert(id, (content.to_string(), special));
    }
    let max_id = vocab.keys().max().copied().unwrap_or(0);
    let n_vocab = config.get("vocab_size").and_then(Json::as_u64).unwrap_or(max_id + 1);
    if max_id >= n_vocab {
        return Err(Error::invalid("vocab_size", n_vocab, format!("the tokenizer has token id {max_id}")));
    }
    if n_vocab > 1 << 24 {
        return Err(Error::invalid("vocab_size", n_vocab, "larger than any tokenizer greenai writes"));
    }
    let mut tokens = Vec::with_capacity(n_vocab as usize);
    let mut types = Vec::with_capacity(n_vocab as usize);
    for i in 0..n_vocab {
        match (vocab.get(&i), added.get(&i)) {
            (None, _) => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            (Some(tok), Some((_, special))) => {
                tokens.push(tok.clone());
                types.push(if *special || looks_special(tok) { CONTROL } else { USER_DEFINED });
            }
            (Some(tok), None) => {
                tokens.push(tok.clone());
                types.push(NORMAL);
            }
        }
    }
    let mut m = Vec::new();
    if wordpiece {
        // BertModel.set_vocab: the phantom-space spelling llama.cpp's WPM tokenizer expects.
        for (tok, ty) in tokens.iter_mut().zip(&types) {
            if *ty == CONTROL {
                continue;
            }
            *tok = match tok.strip_prefix("##") {
                Some(rest) => rest.to_string(),
                None => format!("\u{2581}{tok}"),
            };
        }
        m.push(kv(
            "tokenizer.ggml.token_type_count",
            Value::U32(hp_u32(config, &["type_vocab_size"]).unwrap_or(1)),
        ));
        m.push(kv("tokenizer.ggml.model", Value::String("bert".into())));
        // llama.cpp reads `pre` for BPE vocabularies only; a WordPiece file carries "default".
        m.push(kv("tokenizer.ggml.pre", Value::String("default".into())));
    } else {
        let t = tokenizer.as_ref().expect("BPE has a tokenizer.json");
        m.push(kv("tokenizer.ggml.model", Value::String("gpt2".into())));
        m.push(kv("tokenizer.ggml.pre", Value::String(bpe_pre(arch, t)?.into())));
    }
    let n_tokens = tokens.len() as u64;
    m.push(kv("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))));
    m.push(kv("tokenizer.ggml.token_type", Value::Array(Array::I32(types))));
    if !wordpiece {
        let merges = tokenizer
            .as_ref()
            .and_then(|t| t.pointer("/model/merges"))
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::with_capacity(merges.len());
        for merge in &merges {
            match merge {
                Json::String(s) => out.push(s.clone()),
                Json::Array(pair) if pair.len() == 2 => {
                    // gguf-py encodes a space inside a part as U+0120 (space + 256).
                    let part = |p: &Json| p.as_str().map(|s| s.replace(' ', "\u{120}"));
                    match (part(&pair[0]), part(&pair[1])) {
                        (Some(a), Some(b)) => out.push(format!("{a} {b}")),
                        _ => return Err(Error::format("tokenizer.json", "a merge is not two strings")),
                    }
                }
                _ => return Err(Error::format("tokenizer.json", "unknown merges format")),
            }
        }
        m.push(kv("tokenizer.ggml.merges", Value::Array(Array::String(out))));
    }
    m.extend(special_tokens(tokenizer.as_ref(), tokenizer_config, config, &added_list, n_tokens));
    let mut flags = [None; 2];
    if let Some(n) = tokenizer.as_ref().and_then(|t| t.get("normalizer")) {
        normalizer_flags(n, &mut flags);
    }
    for (key, flag) in NORMALIZER_FLAGS.iter().zip(flags) {
        if let Some(v) = flag {
            m.push(kv(format!("tokenizer.ggml.normalizer.{key}"), Value::Bool(v)));
        }
    }
    Ok(m)
}

/// The normalizer flags gguf-py's `SpecialVocab` writes, in its order.
const NORMALIZER_FLAGS: [&str; 2] = ["lowercase", "strip_accents"];

/// gguf-py's `SpecialVocab._parse_normalizer`: [`NORMALIZER_FLAGS`] as tokenizer.json's normalizer
/// sets them (llama.cpp's WordPiece tokenizer lowercases when the key is absent).
fn normalizer_flags(n: &Json, flags: &mut [Option<bool>; 2]) {
    match n.get("type").and_then(Json::as_str) {
        Some("Lowercase") => flags[0] = Some(true),
        Some("StripAccents") => flags[1] = Some(true),
        Some("BertNormalizer") => {
            for (key, flag) in NORMALIZER_FLAGS.iter().zip(flags.iter_mut()) {
                if let Some(v) = n.get(*key).and_then(Json::as_bool) {
                    *flag = Some(v);
                }
            }
        }
        Some("Sequence") => {
            for inner in n.get("normalizers").and_then(Json::as_array).into_iter().flatten() {
                normalizer_flags(inner, flags);
            }
        }
        _ => {}
    }
}

/// gguf-py's `SpecialVocab` (special token ids from tokenizer_config.json looked up among the added
/// tokens, then config.json's `*_token_id`; `add_bos`/`add_eos`/`add_sep` from the post-processor's
/// template and tokenizer_config.json; the chat template).
fn special_tokens(
    tokenizer: Option<&Json>,
    tokenizer_config: Option<Json>,
    config: &Json,
    added: &[Json],
    n_vocab: u64,
) -> Vec<(String, Value)> {
    let mut tc = tokenizer_config.unwrap_or(Json::Null);
    let content = |tc: &Json, typ: &str| -> Option<String> {
        match tc.get(format!("{typ}_token"))? {
            Json::String(s) => Some(s.clone()),
            Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
            _ => None,
        }
    };
    let mut add: Vec<(&str, bool)> = Vec::new();
    if tokenizer.is_some() && tc.is_object() {
        if content(&tc, "bos").is_none() {
            if let Some(cls) = content(&tc, "cls") {
                tc["bos_token"] = Json::String(cls);
            }
        }
        if content(&tc, "eos").is_none() {
            if let Some(sep) = content(&tc, "sep") {
                tc["eos_token"] = Json::String(sep);
            }
        }
        let post = tokenizer.and_then(|t| t.get("post_processor")).filter(|p| !p.is_null());
        let processors: Vec<&Json> = match post {
            Some(p) => {
                p.get("processors").and_then(Json::as_array).map_or_else(|| vec![p], |l| l.iter().collect())
            }
            None => vec![],
        };
        for p in processors {
            match p.get("type").and_then(Json::as_str) {
                Some("RobertaProcessing") => add.extend([("bos", true), ("eos", true), ("sep", true)]),
                Some("TemplateProcessing") => {
                    let special =
                        |e: &Json| e.pointer("/SpecialToken/id").and_then(Json::as_str).map(str::to_string);
                    let single = p.get("single").and_then(Json::as_array).cloned().unwrap_or_default();
                    if single.len() > 1 {
                        let (bos, cls, eos) = (content(&tc, "bos"), content(&tc, "cls"), content(&tc, "eos"));
                        if let Some(first) = special(&single[0]) {
                            add.push(("bos", Some(&first) == bos.as_ref() || Some(&first) == cls.as_ref()));
                        }
                        if let Some(last) = special(&single[single.len() - 1]) {
                            add.push(("eos", Some(&last) == eos.as_ref()));
                        }
                        let pair = p.get("pair").and_then(Json::as_array).cloned().unwrap_or_default();
                        let (first, last) = (special(&single[0]), special(&single[single.len() - 1]));
                        let start = usize::from(first.is_some() && pair.first().and_then(special) == first);
                        let stop =
                            pair.len() - usize::from(last.is_some() && pair.last().and_then(special) == last);
                        if start < stop {
                            let mid = &pair[start..stop];
                            let seq = |e: &Json| {
                                e.pointer("/Sequence/id").and_then(Json::as_str).map(str::to_string)
                            };
                            if mid.len() > 2
                                && seq(&mid[0]).as_deref() == Some("A")
                                && seq(&mid[mid.len() - 1]).as_deref() == Some("B")
                            {
                                let inner = &mid[1..mid.len() - 1];
                                let sep = content(&tc, "sep");
                                let is_sep = |e: &Json| {
                                    let s = special(e);
                                    s.is_some() && (s == sep || s == eos)
                                };
                                let mut add_sep = is_sep(&inner[0]) && last.is_none();
                                if inner.len() == 2 && is_sep(&inner[1]) {
                                    add_sep = true;
                                }
                                add.push(("sep", add_sep));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    let mut ids: Vec<(&str, u64)> = Vec::new();
    for typ in ["bos", "eos", "unk", "sep", "pad", "cls", "mask"] {
        if let Some(c) = content(&tc, typ) {
            let id = added
                .iter()
                .find(|a| a.get("content").and_then(Json::as_str) == Some(c.as_str()))
                .and_then(|a| a.get("id")?.as_u64());
            if let Some(id) = id.filter(|&id| id < n_vocab) {
                ids.push((typ, id));
            }
        }
        if let Some(v) = tc.get(format!("add_{typ}_token")).and_then(Json::as_bool) {
            add.retain(|(t, _)| *t != typ);
            add.push((typ, v));
        }
    }
    for typ in ["bos", "eos", "unk", "sep", "pad", "cls", "mask"] {
        if ids.iter().any(|(t, _)| *t == typ) {
            continue;
        }
        if let Some(id) =
            config.get(format!("{typ}_token_id")).and_then(Json::as_u64).filter(|&id| id < n_vocab)
        {
            ids.push((typ, id));
        }
    }
    // gguf-py writes ids in the order found and has no key for `cls`.
    for (typ, id) in ids {
        let key = match typ {
            "bos" => "bos_token_id",
            "eos" => "eos_token_id",
            "unk" => "unknown_token_id",
            "sep" => "seperator_token_id",
            "pad" => "padding_token_id",
            "mask" => "mask_token_id",
            _ => continue,
        };
        out.push(kv(format!("tokenizer.ggml.{key}"), Value::U32(id as u32)));
    }
    let mut seen = Vec::new();
    for (typ, v) in add.into_iter().rev() {
        if seen.contains(&typ) {
            continue;
        }
        seen.push(typ);
        if matches!(typ, "bos" | "eos" | "sep") {
            out.push(kv(format!("tokenizer.ggml.add_{typ}_token"), Value::Bool(v)));
        }
    }
    if let Some(template) = tc.get("chat_template").and_then(Json::as_str) {
        out.push(kv("tokenizer.chat_template", Value::String(template.to_string())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_halves_per_head() {
        // 2 heads of 4 rows, 1 column: rows [a0 a1 b0 b1] per head become [a0 b0 a1 b1].
        let data: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let out = permute_qk_rows(&data, 8, 1, 2).unwrap();
        assert_eq!(out, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert!(permute_qk_rows(&data, 8, 1, 3).is_err());
    }

    #[test]
    fn normalizer_flags_as_gguf_py_reads_them() {
        let flags = |text: &str| {
            let mut out = [None; 2];
            normalizer_flags(&serde_json::from_str(text).unwrap(), &mut out);
            out
        };
        let bert = r#"{"type": "BertNormalizer", "lowercase": false, "strip_accents": null}"#;
        assert_eq!(flags(bert), [Some(false), None]);
        let seq = r#"{"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"},
            {"type": "Lowercase"}]}"#;
        assert_eq!(flags(seq), [Some(true), Some(true)]);
        assert_eq!(flags(r#"{"type": "NFC"}"#), [None, None]);
    }

    #[test]
    fn names_map_as_the_converter_maps_them() {
        let m = |a, n| map_name(a, n).unwrap();
        assert_eq!(m(Arch::Bert, "embeddings.word_embeddings.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(
            m(Arch::Bert, "bert.encoder.layer.3.output.LayerNorm.bias").as_deref(),
            Some("blk.3.layer_output_norm.bias")
        );
        assert_eq!(m(Arch::Bert, "embeddings.position_ids"), None);
        assert_eq!(
            m(Arch::Llama, "model.layers.0.self_attn.k_proj.weight").as_deref(),
            Some("blk.0.attn_k.weight")
        );
        assert_eq!(m(Arch::Qwen2, "lm_head.weight").as_deref(), Some("output.weight"));
        assert!(map_name(Arch::Llama, "model.layers.0.mystery.weight").is_err());
    }
}
