//! Hugging Face `config.json` readers for BERT, GPT-2 and LLaMA-style models (feature `serde`).

use super::layer::Activation;
use super::model::Model;
use super::zoo::{transformer, Family, TransformerConfig, MAX_LAYERS};
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

fn field_err(field: &str, detail: impl Into<String>) -> Error {
    Error::format(format!("config.json field `{field}`"), detail)
}

fn get_usize(v: &Value, keys: &[&str], default: Option<usize>) -> Result<usize> {
    for k in keys {
        match v.get(k) {
            None | Some(Value::Null) => continue,
            Some(x) => {
                return x
                    .as_u64()
                    .filter(|&n| n > 0)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| field_err(k, format!("expected a positive integer, got {x}")));
            }
        }
    }
    default.ok_or_else(|| field_err(keys[0], "missing"))
}

fn get_bool(v: &Value, key: &str, default: bool) -> Result<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_bool().ok_or_else(|| field_err(key, format!("expected true or false, got {x}"))),
    }
}

fn activation(v: &Value, keys: &[&str], default: Activation) -> Result<Activation> {
    for k in keys {
        let Some(x) = v.get(k).filter(|x| !x.is_null()) else { continue };
        let s = x.as_str().ok_or_else(|| field_err(k, format!("expected a string, got {x}")))?;
        return Ok(match s {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            other => return Err(field_err(k, format!("unknown activation `{other}`"))),
        });
    }
    Ok(default)
}

/// Reads a `config.json` text into a [`TransformerConfig`] (at most [`MAX_LAYERS`] layers).
pub fn parse(json: &str) -> Result<TransformerConfig> {
    let v: Value = serde_json::from_str(json).map_err(|e| Error::format("config.json", e.to_string()))?;
    if !v.is_object() {
        return Err(Error::format("config.json", "expected a JSON object"));
    }
    let model_type = v
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| field_err("model_type", "missing or not a string"))?;
    let family = match model_type {
        "bert" => Family::Bert,
        "gpt2" => Family::Gpt2,
        "llama" | "mistral" | "qwen2" => Family::Llama,
        other => {
            return Err(field_err(
                "model_type",
                format!("unsupported model_type `{other}` (supported: bert, gpt2, llama, mistral, qwen2)"),
            ))
        }
    };
    let hidden = get_usize(&v, &["hidden_size", "n_embd"], None)?;
    let heads = get_usize(&v, &["num_attention_heads", "n_head"], None)?;
    let kv_heads = get_usize(&v, &["num_key_value_heads"], Some(heads))?;
    let head_dim = get_usize(&v, &["head_dim"], Some(hidden / heads))?;
    if family != Family::Llama && hidden % heads != 0 {
        return Err(field_err(
            "num_attention_heads",
            format!("{heads} does not divide hidden size {hidden}"),
        ));
    }
    if heads % kv_heads != 0 {
        return Err(field_err("num_key_value_heads", format!("{kv_heads} does not divide {heads} heads")));
    }
    let cfg = TransformerConfig {
        family,
        hidden,
        layers: match get_usize(&v, &["num_hidden_layers", "n_layer"], None)? {
            n if n > MAX_LAYERS => {
                return Err(field_err(
                    "num_hidden_layers",
                    format!(
                        "{n}: more than {MAX_LAYERS} layers (the largest published models have under 200)"
                    ),
                ))
            }
            n => n,
        },
        heads,
        kv_heads,
        head_dim,
        // GPT-2's default inner size is 4 x n_embd; one that overflows is left as missing.
        intermediate: get_usize(
            &v,
            &["intermediate_size", "n_inner"],
            if family == Family::Gpt2 { hidden.checked_mul(4) } else { None },
        )?,
        vocab: get_usize(&v, &["vocab_size"], None)?,
        max_positions: get_usize(&v, &["max_position_embeddings", "n_positions"], None)?,
        type_vocab: if family == Family::Bert { get_usize(&v, &["type_vocab_size"], Some(2))? } else { 0 },
        activation: match family {
            Family::Bert => activation(&v, &["hidden_act"], Activation::Gelu)?,
            Family::Gpt2 => activation(&v, &["activation_function"], Activation::GeluTanh)?,
            Family::Llama => activation(&v, &["hidden_act"], Activation::Silu)?,
        },
        tie_embeddings: get_bool(&v, "tie_word_embeddings", family == Family::Gpt2)?,
        attention_bias: match family {
            Family::Llama => get_bool(&v, "attention_bias", model_type == "qwen2")?,
            _ => true,
        },
        mlp_bias: family != Family::Llama || get_bool(&v, "mlp_bias", false)?,
        pooler: family == Family::Bert && get_bool(&v, "add_pooling_layer", true)?,
        lm_head: family != Family::Bert,
    };
    Ok(cfg)
}

/// Reads a `config.json` file and builds the model for `batch` sequences of `seq_len` tokens.
pub fn load(path: impl AsRef<Path>, batch: usize, seq_len: usize) -> Result<Model> {
    let text = std::fs::read_to_string(path.as_ref()).map_err(|e| Error::io(path.as_ref(), e))?;
    transformer(&parse(&text)?, batch, seq_len)
}
