//! A BERT sentence encoder (all-MiniLM-L6-v2 and its kind) on greenai's kernels: embeddings,
//! LayerNorm, attention with each sequence at its own length (what the padding mask computes),
//! GELU, mean pooling and L2 normalisation as sentence-transformers does. Every linear layer runs on
//! the kernel of its weight format ([`Linear`]); nothing here depends on the rest of the example,
//! so the file can be copied into an engine.

use greenai::kernels::gemm_float::{gemm_packed, PackedB};
use greenai::kernels::gemm_int8::{ActivationQuant, QuantLinear};
use greenai::kernels::int4;
use greenai::kernels::{gemm_float, math};
use greenai::quant::GptqWeight;
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Errors of this module: a message naming what was wrong.
pub type Result<T> = std::result::Result<T, String>;

fn lib<T>(r: greenai::Result<T>) -> Result<T> {
    r.map_err(|e| e.to_string())
}

/// The keys of `config.json` this encoder reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `hidden_size`: the width of every token's vector.
    pub hidden: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `intermediate_size`: the MLP's width.
    pub intermediate: usize,
    /// `vocab_size`.
    pub vocab: usize,
    /// `max_position_embeddings`: the longest sequence.
    pub max_positions: usize,
    /// `type_vocab_size` (segment embeddings; every token here is segment 0).
    pub type_vocab: usize,
    /// `layer_norm_eps`.
    pub layer_norm_eps: f32,
}

impl Config {
    /// Reads a BERT `config.json`; anything this encoder does not implement is refused by name.
    pub fn parse(json: &str) -> Result<Config> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("config.json: {e}"))?;
        let num = |key: &str| -> Result<usize> {
            v.get(key)
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("config.json: `{key}` missing or not a positive integer"))
        };
        let text = |key: &str, default: &str| -> String {
            v.get(key).and_then(serde_json::Value::as_str).unwrap_or(default).to_string()
        };
        if text("model_type", "bert") != "bert" {
            return Err(format!(
                "config.json: model_type `{}` is not supported (only `bert`)",
                text("model_type", "")
            ));
        }
        if text("hidden_act", "gelu") != "gelu" {
            return Err(format!(
                "config.json: hidden_act `{}` is not supported (only `gelu`, the erf form)",
                text("hidden_act", "")
            ));
        }
        if text("position_embedding_type", "absolute") != "absolute" {
            return Err("config.json: only `position_embedding_type: absolute` is supported".into());
        }
        let cfg = Config {
            hidden: num("hidden_size")?,
            heads: num("num_attention_heads")?,
            layers: num("num_hidden_layers")?,
            intermediate: num("intermediate_size")?,
            vocab: num("vocab_size")?,
            max_positions: num("max_position_embeddings")?,
            type_vocab: num("type_vocab_size").unwrap_or(2),
            layer_norm_eps: v.get("layer_norm_eps").and_then(serde_json::Value::as_f64).unwrap_or(1e-12)
                as f32,
        };
        if !cfg.hidden.is_multiple_of(cfg.heads) {
            return Err(format!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden, cfg.heads
            ));
        }
        if cfg.layers > 256 {
            return Err(format!(
                "config.json: {} layers is more than this encoder accepts (256)",
                cfg.layers
            ));
        }
        Ok(cfg)
    }
}

/// The weight format of a variant's linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// f32 weights, f32 GEMM.
    F32,
    /// f16 weights, converted in the GEMM's registers.
    F16,
    /// bf16 weights, likewise.
    Bf16,
    /// int8 weights per output channel, activations quantized per row (u8 affine), exact int8 GEMM.
    Int8,
}

/// A linear layer `y = x W^T + b` on the kernel of its weight format.
pub enum Linear {
    /// f32 weights, packed for the float GEMM.
    F32 { w: PackedB<f32>, bias: Vec<f32> },
    /// f16 weights, packed for the float GEMM.
    F16 { w: PackedB<f16>, bias: Vec<f32> },
    /// bf16 weights, packed for the float GEMM.
    Bf16 { w: PackedB<bf16>, bias: Vec<f32> },
    /// int8 weights and their bias in greenai's quantized linear layer.
    Int8(QuantLinear),
    /// Group-wise int4 weights on greenai's W4A8 GEMM (`kernels::int4`).
    Int4(Int4Linear),
    /// Layers side by side on one input, their outputs concatenated (query, key and value kept
    /// apart, as the low-rank variant factorizes each on its own).
    Stacked(Vec<Linear>),
    /// `W ~ A B` (truncated SVD): `x B^T` (rank wide), then `A` and the bias; each factor f32.
    LowRank {
        /// `B`, `rank x in`, without bias.
        first: Box<Linear>,
        /// `A`, `out x rank`, with the layer's bias.
        second: Box<Linear>,
    },
}

/// A linear layer in greenai's group-wise int4 layout on its W4A8 GEMM
/// ([`greenai::kernels::int4::Int4Linear`]: signed nibbles, one scale and zero point per group of a
/// row, HQQ's fractional zero points as per-group offsets, bias).
pub struct Int4Linear(int4::Int4Linear);

impl Int4Linear {
    /// Takes a 4-bit GPTQ-layout weight (greenai's RTN, HQQ or GPTQ) with contiguous groups
    /// (`g_idx[c] = c / group`, so act order only with static groups) and its bias.
    pub fn from_gptq(w: &GptqWeight, bias: &[f32]) -> Result<Int4Linear> {
        lib(int4::Int4Linear::from_gptq(w, Some(bias))).map(Int4Linear).map_err(|e| format!("int4: {e}"))
    }

    fn bytes(&self) -> usize {
        self.0.bytes()
    }

    fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) -> Result<()> {
        lib(self.0.forward(x, rows, y))
    }
}

impl Linear {
    /// Builds the layer from f32 `w` (`out x in`, as PyTorch stores it) in `format`.
    pub fn new(format: Format, out: usize, inp: usize, w: &[f32], bias: &[f32]) -> Result<Linear> {
        let transposed = || {
            let mut t = vec![0.0f32; inp * out];
            for o in 0..out {
                for i in 0..inp {
                    t[i * out + o] = w[o * inp + i];
                }
            }
            t
        };
        let bias = bias.to_vec();
        Ok(match format {
            Format::F32 => Linear::F32 { w: lib(PackedB::pack(inp, out, &transposed(), out))?, bias },
            Format::F16 => {
                let t: Vec<f16> = transposed().iter().map(|&x| f16::from_f32(x)).collect();
                Linear::F16 { w: lib(PackedB::pack(inp, out, &t, out))?, bias }
            }
            Format::Bf16 => {
                let t: Vec<bf16> = transposed().iter().map(|&x| bf16::from_f32(x)).collect();
                Linear::Bf16 { w: lib(PackedB::pack(inp, out, &t, out))?, bias }
            }
            Format::Int8 => Linear::Int8(lib(QuantLinear::from_float(w, out, inp, Some(&bias), false))?),
        })
    }

    /// Bytes the weights occupy (bias and scales included).
    pub fn weight_bytes(&self) -> usize {
        match self {
            Linear::F32 { w, bias } => 4 * (w.k() * w.n() + bias.len()),
            Linear::F16 { w, bias } => 2 * w.k() * w.n() + 4 * bias.len(),
            Linear::Bf16 { w, bias } => 2 * w.k() * w.n() + 4 * bias.len(),
            Linear::Int8(q) => q.in_features() * q.out_features() + 8 * q.out_features(),
            Linear::Int4(q) => q.bytes(),
            Linear::Stacked(parts) => parts.iter().map(Linear::weight_bytes).sum(),
            Linear::LowRank { first, second } => {
                first.weight_bytes() + second.weight_bytes() - 4 * out_width(first)
            }
        }
    }

    /// `y (rows x out) = x (rows x in) W^T + b`.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) -> Result<()> {
        fn add_bias(y: &mut [f32], bias: &[f32]) -> Result<()> {
            par_rows(y, bias.len(), LIGHT_PAR_MIN_ROWS, |_, rows| {
                for row in rows.chunks_exact_mut(bias.len()) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
                Ok(())
            })
        }
        match self {
            Linear::F32 { w, bias } => {
                lib(gemm_packed(rows, x, w.k(), w, y, w.n()))?;
                add_bias(y, bias)?;
            }
            Linear::F16 { w, bias } => {
                lib(gemm_packed(rows, x, w.k(), w, y, w.n()))?;
                add_bias(y, bias)?;
            }
            Linear::Bf16 { w, bias } => {
                lib(gemm_packed(rows, x, w.k(), w, y, w.n()))?;
                add_bias(y, bias)?;
            }
            Linear::Int8(q) => lib(q.forward(x, rows, ActivationQuant::U8Affine, y))?,
            Linear::Int4(q) => q.forward(x, rows, y)?,
            Linear::Stacked(parts) => {
                let out = y.len() / rows.max(1);
                let mut col = 0;
                for part in parts {
                    let width = out_width(part);
                    let mut t = vec![0.0f32; rows * width];
                    part.forward(x, rows, &mut t)?;
                    for (row, piece) in y.chunks_exact_mut(out).zip(t.chunks_exact(width)) {
                        row[col..col + width].copy_from_slice(piece);
                    }
                    col += width;
                }
            }
            Linear::LowRank { first, second } => {
                let mut t = vec![0.0f32; rows * out_width(first)];
                first.forward(x, rows, &mut t)?;
                second.forward(&t, rows, y)?;
            }
        }
        Ok(())
    }

    /// The low-rank layer `W ~ a b` (`a`: `out x rank`, `b`: `rank x in`, row-major) with `bias`, both
    /// factors f32.
    pub fn low_rank(
        out: usize,
        inp: usize,
        rank: usize,
        a: &[f32],
        b: &[f32],
        bias: &[f32],
    ) -> Result<Linear> {
        Ok(Linear::LowRank {
            first: Box::new(Linear::new(Format::F32, rank, inp, b, &vec![0.0; rank])?),
            second: Box::new(Linear::new(Format::F32, out, rank, a, bias)?),
        })
    }
}

/// The output width of a layer (the rank, for the first factor of a low-rank layer).
fn out_width(first: &Linear) -> usize {
    match first {
        Linear::F32 { bias, .. } | Linear::F16 { bias, .. } | Linear::Bf16 { bias, .. } => bias.len(),
        Linear::Int8(q) => q.out_features(),
        Linear::Int4(q) => q.0.out_features(),
        Linear::LowRank { second, .. } => out_width(second),
        Linear::Stacked(parts) => parts.iter().map(out_width).sum(),
    }
}

/// LayerNorm weights.
pub struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
    /// SmoothQuant's division folded in (`gamma / s`, `beta / s`): a second output for the linear
    /// layers this norm feeds. BERT is post-LN, so the unsmoothed output still carries the residual.
    folded: Option<(Vec<f32>, Vec<f32>)>,
}

impl Norm {
    /// `x = (x + residual - mean) / sqrt(var + eps) * gamma + beta` on every row (greenai's SIMD
    /// LayerNorm; no residual: `x` alone); with a folded smoothing, `smoothed` gets the same rows
    /// through `gamma / s` and `beta / s`.
    pub fn apply(&self, x: &mut [f32], residual: Option<&[f32]>, smoothed: &mut [f32]) -> Result<()> {
        let width = self.gamma.len();
        let add = |first: usize, rows: &mut [f32]| {
            if let Some(r) = residual {
                rows.iter_mut().zip(&r[first * width..]).for_each(|(a, b)| *a += b);
            }
        };
        if let Some((g2, b2)) = &self.folded {
            par_rows(x, width, LIGHT_PAR_MIN_ROWS, |first, rows| {
                add(first, rows);
                Ok(())
            })?;
            let input: &[f32] = x;
            par_rows(&mut smoothed[..input.len()], width, LIGHT_PAR_MIN_ROWS, |first, out| {
                out.copy_from_slice(&input[first * width..first * width + out.len()]);
                lib(math::layer_norm(out, g2, b2, self.eps))
            })?;
            return par_rows(x, width, LIGHT_PAR_MIN_ROWS, |_, rows| {
                lib(math::layer_norm(rows, &self.gamma, &self.beta, self.eps))
            });
        }
        par_rows(x, width, LIGHT_PAR_MIN_ROWS, |first, rows| {
            add(first, rows);
            lib(math::layer_norm(rows, &self.gamma, &self.beta, self.eps))
        })
    }

    /// Folds SmoothQuant's division by `scales` into a second output (see [`Norm::apply`]), with
    /// greenai's `smooth_norm`.
    pub fn fold(&mut self, scales: &[f32]) -> Result<()> {
        let (mut g, mut b) = (self.gamma.clone(), self.beta.clone());
        lib(greenai::quant::smoothquant::smooth_norm(&mut g, Some(&mut b), scales))?;
        self.folded = Some((g, b));
        Ok(())
    }
}

struct Layer {
    /// Query, key and value stacked (`3 hidden x hidden`): one product, one quantization of its input.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
    /// SmoothQuant's `1 / s` for the MLP's second layer, multiplied into the GELU's output.
    down_smoothing: Option<Vec<f32>>,
}

/// The linear layers of an encoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proj {
    /// Attention query.
    Query,
    /// Attention key.
    Key,
    /// Attention value.
    Value,
    /// Query, key and value stacked in that order (`3 hidden x hidden`), as the encoder runs them.
    Qkv,
    /// Attention output.
    AttnOut,
    /// The MLP's first layer (`intermediate.dense`).
    Up,
    /// The MLP's second layer (`output.dense`).
    Down,
}

impl Proj {
    /// Its input, shared by query, key and value.
    pub fn site(self) -> Site {
        match self {
            Proj::Query | Proj::Key | Proj::Value | Proj::Qkv => Site::Qkv,
            Proj::AttnOut => Site::AttnOut,
            Proj::Up => Site::Up,
            Proj::Down => Site::Down,
        }
    }
}

/// A calibration hook: a linear layer's input (`layer`, its [`Site`], `tokens x features`).
pub type Observer<'a> = dyn FnMut(usize, Site, &[f32]) -> Result<()> + 'a;

/// Where a linear layer's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The previous LayerNorm's output, read by query, key and value.
    Qkv,
    /// The attention's context, read by the attention output.
    AttnOut,
    /// The attention LayerNorm's output, read by the MLP's first layer.
    Up,
    /// The GELU's output, read by the MLP's second layer.
    Down,
}

impl Site {
    /// Its position in the order `Qkv, AttnOut, Up, Down`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One f32 linear layer of the model, handed to [`Encoder::load_with`]'s builder.
pub struct LinearSpec<'a> {
    /// Encoder layer.
    pub layer: usize,
    /// Which of its linear layers.
    pub proj: Proj,
    /// Output features.
    pub out: usize,
    /// Input features.
    pub inp: usize,
    /// `out x inp`, as PyTorch stores it.
    pub weight: &'a [f32],
    /// `out` values.
    pub bias: &'a [f32],
}

/// A BERT encoder with mean pooling, its linear layers in one [`Format`].
pub struct Encoder {
    /// The model's shape.
    pub config: Config,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
    /// Buffers of earlier forward passes, reused (one per forward pass running at once).
    spare: std::sync::Mutex<Vec<Scratch>>,
}

/// The f32 tensors of a safetensors file, by name.
pub struct Weights<'a>(SafeTensors<'a>);

impl<'a> Weights<'a> {
    /// The tensor names' prefix: `bert.` or none.
    fn prefix(&self) -> &'static str {
        if self.0.tensor("embeddings.word_embeddings.weight").is_ok() {
            ""
        } else {
            "bert."
        }
    }

    /// The f32 weight (`out x inp`) and bias of a linear layer: `(out, inp, weight, bias)`.
    pub fn linear(
        &self,
        config: &Config,
        layer: usize,
        proj: Proj,
    ) -> Result<(usize, usize, Vec<f32>, Vec<f32>)> {
        let (h, inter) = (config.hidden, config.intermediate);
        if proj == Proj::Qkv {
            let mut stacked = (3 * h, h, Vec::with_capacity(3 * h * h), Vec::with_capacity(3 * h));
            for part in [Proj::Query, Proj::Key, Proj::Value] {
                let (_, _, w, b) = self.linear(config, layer, part)?;
                stacked.2.extend(w);
                stacked.3.extend(b);
            }
            return Ok(stacked);
        }
        let (name, out, inp) = match proj {
            Proj::Query => ("attention.self.query", h, h),
            Proj::Key => ("attention.self.key", h, h),
            Proj::Value | Proj::Qkv => ("attention.self.value", h, h),
            Proj::AttnOut => ("attention.output.dense", h, h),
            Proj::Up => ("intermediate.dense", inter, h),
            Proj::Down => ("output.dense", h, inter),
        };
        let p = format!("{}encoder.layer.{layer}.{name}", self.prefix());
        Ok((out, inp, self.get(&format!("{p}.weight"), out * inp)?, self.get(&format!("{p}.bias"), out)?))
    }

    /// Reads the header of a safetensors file held in memory.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        SafeTensors::deserialize(bytes).map(Weights).map_err(|e| format!("model.safetensors: {e}"))
    }

    /// The tensor `name` as f32, checked to hold `len` values.
    pub fn get(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.0.tensor(name).map_err(|_| format!("model.safetensors: tensor `{name}` missing"))?;
        if t.dtype() != Dtype::F32 {
            return Err(format!("model.safetensors: `{name}` is {:?}, this encoder reads F32", t.dtype()));
        }
        let n: usize = t.shape().iter().product();
        if n != len {
            return Err(format!(
                "model.safetensors: `{name}` has shape {:?}, expected {len} values",
                t.shape()
            ));
        }
        Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

impl Encoder {
    /// Loads `model.safetensors` weights (with the `bert.` prefix or without) in `format`.
    pub fn load(config: &Config, weights: &Weights, format: Format) -> Result<Encoder> {
        Encoder::load_with(config, weights, &mut |s: &LinearSpec| {
            Linear::new(format, s.out, s.inp, s.weight, s.bias)
        })
    }

    /// Loads the weights, each linear layer made by `build` from its f32 weight and bias.
    pub fn load_with(
        config: &Config,
        weights: &Weights,
        build: &mut dyn FnMut(&LinearSpec) -> Result<Linear>,
    ) -> Result<Encoder> {
        let get = |name: &str, len: usize| weights.get(&format!("{}{name}", weights.prefix()), len);
        let h = config.hidden;
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                gamma: get(&format!("{name}.weight"), h)?,
                beta: get(&format!("{name}.bias"), h)?,
                eps: config.layer_norm_eps,
                folded: None,
            })
        };
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let p = format!("encoder.layer.{l}");
            let mut linear = |proj: Proj| -> Result<Linear> {
                let (out, inp, weight, bias) = weights.linear(config, l, proj)?;
                build(&LinearSpec { layer: l, proj, out, inp, weight: &weight, bias: &bias })
            };
            layers.push(Layer {
                qkv: linear(Proj::Qkv)?,
                attn_out: linear(Proj::AttnOut)?,
                up: linear(Proj::Up)?,
                down: linear(Proj::Down)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
                down_smoothing: None,
            });
        }
        Ok(Encoder {
            config: config.clone(),
            word: get("embeddings.word_embeddings.weight", config.vocab * h)?,
            position: get("embeddings.position_embeddings.weight", config.max_positions * h)?,
            token_type: get("embeddings.token_type_embeddings.weight", config.type_vocab * h)?,
            embed_norm: norm("embeddings.LayerNorm")?,
            layers,
            spare: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// SmoothQuant's activation side for `layer`, whose weights' input columns the builder already
    /// multiplied by the same scales: `qkv` folded into the LayerNorm before it, `up` into its attention
    /// LayerNorm, `down` multiplied (as `1 / s`) into its GELU's output. (The attention output's
    /// scales fold into the value layer's rows, a weight change the builder makes.)
    pub fn smooth(&mut self, layer: usize, qkv: &[f32], up: &[f32], down: &[f32]) -> Result<()> {
        if layer >= self.layers.len() {
            return Err(format!("smooth: layer {layer} of {}", self.layers.len()));
        }
        if down.len() != self.config.intermediate {
            return Err(format!("smooth: {} MLP scales for {}", down.len(), self.config.intermediate));
        }
        match layer {
            0 => self.embed_norm.fold(qkv)?,
            _ => self.layers[layer - 1].out_norm.fold(qkv)?,
        }
        self.layers[layer].attn_norm.fold(up)?;
        self.layers[layer].down_smoothing = Some(down.iter().map(|&s| 1.0 / s).collect());
        Ok(())
    }

    /// Bytes of the linear layers' weights in this format (the embeddings stay f32 and are shared).
    pub fn linear_bytes(&self) -> usize {
        self.layers.iter().flat_map(|l| [&l.qkv, &l.attn_out, &l.up, &l.down]).map(Linear::weight_bytes).sum()
    }

    /// Embeddings (`sequences x hidden`, L2-normalised) of token-id sequences (each already holding
    /// its special tokens and at most `max_positions` long).
    pub fn embed(&self, sequences: &[Vec<u32>]) -> Result<Vec<f32>> {
        let run = || self.embed_observed(sequences, &mut |_, _, _| Ok(()));
        // On one of rayon's threads: each parallel stage is then a fork from inside the pool (its
        // other threads find the work while they spin) instead of a job sent to the pool and a
        // wake-up of the calling thread when it is done, dozens of times a sentence.
        #[cfg(feature = "parallel")]
        return rayon::scope(|_| run());
        #[cfg(not(feature = "parallel"))]
        run()
    }

    /// [`Encoder::embed`], handing `observe` every linear layer's input (`layer`, its [`Site`],
    /// `tokens x features` row-major) as the forward pass meets it: calibration statistics.
    /// Sequences run through the layers together until they hold [`GROUP_TOKENS`] tokens, so a
    /// large batch's activations stay in cache while each layer's weights are reused.
    pub fn embed_observed(&self, sequences: &[Vec<u32>], observe: &mut Observer) -> Result<Vec<f32>> {
        if let Some(s) = sequences.iter().find(|s| s.is_empty() || s.len() > self.config.max_positions) {
            return Err(format!(
                "a sequence of {} tokens (1 to {} allowed)",
                s.len(),
                self.config.max_positions
            ));
        }
        let mut out = Vec::with_capacity(sequences.len() * self.config.hidden);
        let mut rest = sequences;
        while !rest.is_empty() {
            let mut tokens = rest[0].len();
            let count = 1 + rest[1..]
                .iter()
                .take_while(|s| {
                    tokens += s.len();
                    tokens <= GROUP_TOKENS
                })
                .count();
            out.extend(self.embed_group(&rest[..count], observe)?);
            rest = &rest[count..];
        }
        Ok(out)
    }

    /// [`Encoder::embed_observed`] of sequences run through the layers as one block of tokens.
    fn embed_group(&self, sequences: &[Vec<u32>], observe: &mut Observer) -> Result<Vec<f32>> {
        let h = self.config.hidden;
        let total: usize = sequences.iter().map(Vec::len).sum();
        // Every token of every sequence, stacked: the linear layers run on all of them at once.
        let mut tokens = Vec::with_capacity(total);
        for seq in sequences {
            for (pos, &id) in seq.iter().enumerate() {
                let id = id as usize;
                if id >= self.config.vocab {
                    return Err(format!("token id {id} outside the vocabulary ({})", self.config.vocab));
                }
                tokens.push((id, pos));
            }
        }
        let mut x = vec![0.0f32; total * h];
        par_rows(&mut x, h, LIGHT_PAR_MIN_ROWS, |first, rows| {
            for (out, &(id, pos)) in rows.chunks_exact_mut(h).zip(&tokens[first..]) {
                let (w, p, t) =
                    (&self.word[id * h..][..h], &self.position[pos * h..][..h], &self.token_type[..h]);
                for i in 0..h {
                    out[i] = w[i] + p[i] + t[i];
                }
            }
            Ok(())
        })?;
        let lens: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let spare = self.spare.lock().ok().and_then(|mut s| s.pop());
        let mut scratch = spare.unwrap_or_default();
        scratch.fit(total, h, self.config.intermediate);
        self.embed_norm.apply(&mut x, None, &mut scratch.smoothed)?;
        for (l, layer) in self.layers.iter().enumerate() {
            self.layer(l, layer, &lens, &mut x, &mut scratch, observe)?;
        }
        if let Ok(mut spare) = self.spare.lock() {
            spare.push(scratch);
        }
        // Mean over each sequence's tokens, then L2 normalisation.
        let mut out = vec![0.0f32; sequences.len() * h];
        let mut start = 0;
        for (s, &len) in lens.iter().enumerate() {
            let e = &mut out[s * h..(s + 1) * h];
            for t in start..start + len {
                e.iter_mut().zip(&x[t * h..(t + 1) * h]).for_each(|(a, v)| *a += v);
            }
            e.iter_mut().for_each(|a| *a /= len as f32);
            let norm = e.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>().sqrt().max(1e-12);
            e.iter_mut().for_each(|a| *a = (f64::from(*a) / norm) as f32);
            start += len;
        }
        Ok(out)
    }

    fn layer(
        &self,
        l: usize,
        layer: &Layer,
        lens: &[usize],
        x: &mut [f32],
        s: &mut Scratch,
        observe: &mut Observer,
    ) -> Result<()> {
        let rows = x.len() / self.config.hidden;
        observe(l, Site::Qkv, x)?;
        let before = if l == 0 { &self.embed_norm } else { &self.layers[l - 1].out_norm };
        let qkv_in: &[f32] = if before.folded.is_some() { &s.smoothed } else { x };
        layer.qkv.forward(qkv_in, rows, &mut s.qkv)?;
        self.attention(lens, s)?;
        observe(l, Site::AttnOut, &s.ctx)?;
        layer.attn_out.forward(&s.ctx, rows, &mut s.proj)?;
        layer.attn_norm.apply(x, Some(&s.proj), &mut s.smoothed)?;
        observe(l, Site::Up, x)?;
        let up_in: &[f32] = if layer.attn_norm.folded.is_some() { &s.smoothed } else { x };
        layer.up.forward(up_in, rows, &mut s.inter)?;
        par_rows(&mut s.inter, self.config.intermediate, PAR_MIN_ROWS, |_, rows| {
            math::gelu(rows);
            Ok(())
        })?;
        observe(l, Site::Down, &s.inter)?;
        if let Some(inv) = &layer.down_smoothing {
            for row in s.inter.chunks_exact_mut(inv.len()) {
                row.iter_mut().zip(inv).for_each(|(v, i)| *v *= i);
            }
        }
        layer.down.forward(&s.inter, rows, &mut s.proj)?;
        layer.out_norm.apply(x, Some(&s.proj), &mut s.smoothed)?;
        Ok(())
    }
}

impl Encoder {
    /// Each sequence's attention, one (sequence, head) pair a task: `s.heads` gets each pair's
    /// context (`len x dh`, contiguous), then `s.ctx` the heads side by side.
    fn attention(&self, lens: &[usize], s: &mut Scratch) -> Result<()> {
        let (h, heads) = (self.config.hidden, self.config.heads);
        let (dh, width) = (h / heads, 3 * h);
        let scale = 1.0 / (dh as f32).sqrt();
        let qkv = &s.qkv;
        let mut units = Vec::with_capacity(lens.len() * heads);
        let (mut start, mut rest) = (0, &mut s.heads[..]);
        for &len in lens {
            for head in 0..heads {
                let (out, tail) = std::mem::take(&mut rest).split_at_mut(len * dh);
                units.push((start, len, head * dh, out));
                rest = tail;
            }
            start += len;
        }
        let longest = lens.iter().copied().max().unwrap_or(0);
        let attend = |t: &mut AttnScratch,
                      (start, len, col, out): &mut (usize, usize, usize, &mut [f32])|
         -> Result<()> {
            let (len, col, rows) = (*len, *col, &qkv[*start * width..]);
            let (q, k, v) = (&rows[col..], &rows[h + col..], &rows[2 * h + col..]);
            // K_h^T (dh x len), so the scores are one GEMM reading its operands in place.
            let kt = &mut t.kt[..dh * len];
            transpose(k, width, len, dh, kt);
            let isa = greenai::kernels::Isa::active();
            let scores = &mut t.scores[..len * len];
            lib(gemm_float::gemm_in_place_on(isa, len, len, dh, q, width, kt, len, scores, len))?;
            // Softmax with the division left to the context rows (dh wide, not len): exp of each
            // score row's shifted values, then the product, then each row over its sum.
            let probs = &mut t.probs[..len * len];
            for ((row, exps), inv) in
                scores.chunks_exact(len).zip(probs.chunks_exact_mut(len)).zip(&mut t.inv)
            {
                let max = math::max_finite(row).ok_or("attention: a score is not finite")?;
                *inv = (1.0 / lib(math::exp_sum(row, max, scale, exps))?) as f32;
            }
            lib(gemm_float::gemm_in_place_on(isa, len, dh, len, probs, len, v, width, out, dh))?;
            for (row, &inv) in out.chunks_exact_mut(dh).zip(&t.inv) {
                row.iter_mut().for_each(|v| *v *= inv);
            }
            Ok(())
        };
        // Each thread's buffers are kept across calls (allocating and zeroing them per call cost
        // more than a small attention).
        let attend_kept = |unit: &mut (usize, usize, usize, &mut [f32])| {
            let mut t = ATTN_SCRATCH.take();
            t.fit(longest, dh);
            let result = attend(&mut t, unit);
            ATTN_SCRATCH.set(t);
            result
        };
        #[cfg(feature = "parallel")]
        let serial = rayon::current_num_threads() == 1;
        #[cfg(not(feature = "parallel"))]
        let serial = true;
        if serial {
            units.iter_mut().try_for_each(attend_kept)?;
        } else {
            #[cfg(feature = "parallel")]
            {
                use rayon::prelude::*;
                units.par_iter_mut().try_for_each(attend_kept)?;
            }
        }
        // The heads side by side, a row (token) at a time.
        let starts: Vec<usize> =
            lens.iter().scan(0, |first, &len| Some(std::mem::replace(first, *first + len))).collect();
        let head_major = &s.heads;
        par_rows(&mut s.ctx, h, LIGHT_PAR_MIN_ROWS, |first, rows| {
            for (token, row) in (first..).zip(rows.chunks_exact_mut(h)) {
                let seq = starts.partition_point(|&start| start <= token) - 1;
                let (start, len) = (starts[seq], lens[seq]);
                for (head, out) in row.chunks_exact_mut(dh).enumerate() {
                    out.copy_from_slice(&head_major[start * h + (head * len + token - start) * dh..][..dh]);
                }
            }
            Ok(())
        })
    }
}

/// `dst` (`cols x rows`, row-major) = the transpose of `rows x cols` of `src` (rows `ld` apart),
/// eight source rows at a time so each destination row is written in runs.
fn transpose(src: &[f32], ld: usize, rows: usize, cols: usize, dst: &mut [f32]) {
    const BLOCK: usize = 8;
    let mut r0 = 0;
    while r0 + BLOCK <= rows {
        let block: [&[f32]; BLOCK] = std::array::from_fn(|i| &src[(r0 + i) * ld..(r0 + i) * ld + cols]);
        for (c, run) in dst.chunks_exact_mut(rows).take(cols).enumerate() {
            let run: &mut [f32; BLOCK] = (&mut run[r0..r0 + BLOCK]).try_into().expect("BLOCK values");
            *run = std::array::from_fn(|i| block[i][c]);
        }
        r0 += BLOCK;
    }
    for r in r0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * ld + c];
        }
    }
}

/// Runs `f(first_row, rows)` on chunks of whole rows of `x` (`width` values a row), split across
/// rayon's threads when there are several (feature `parallel`).
fn par_rows(
    x: &mut [f32],
    width: usize,
    min_rows: usize,
    f: impl Fn(usize, &mut [f32]) -> Result<()> + Send + Sync,
) -> Result<()> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        let (rows, threads) = (x.len() / width.max(1), rayon::current_num_threads());
        if threads > 1 && rows >= 2 * min_rows {
            let chunk = rows.div_ceil(threads * 4).max(min_rows);
            return x.par_chunks_mut(chunk * width).enumerate().try_for_each(|(c, rows)| f(c * chunk, rows));
        }
    }
    let _ = (width, min_rows);
    f(0, x)
}

/// Tokens [`Encoder::embed_observed`] runs through the layers together (at least one sequence):
/// at 512, a layer's widest activations (512 x 1536 f32, 3 MiB) stay in cache.
const GROUP_TOKENS: usize = 512;

/// Rows below which [`par_rows`] stays on the calling thread (GELU: 32 rows of 1536).
const PAR_MIN_ROWS: usize = 32;

/// The same for the light passes over rows (LayerNorm, bias, embeddings, the heads' gather): with
/// the forward pass on one of rayon's threads ([`Encoder::embed`]) a hand-off costs little, and at
/// 128 rows (batch 1) two threads took the f32 LayerNorms from 0.34 to 0.09 ms a sentence.
const LIGHT_PAR_MIN_ROWS: usize = 32;

/// One attention task's buffers.
#[derive(Default)]
struct AttnScratch {
    kt: Vec<f32>,
    scores: Vec<f32>,
    probs: Vec<f32>,
    /// `1 / sum` of each row's exponentials.
    inv: Vec<f32>,
}

impl AttnScratch {
    /// Grows the buffers to hold a sequence of `max_len` tokens (each is written before it is read).
    fn fit(&mut self, max_len: usize, dh: usize) {
        for (v, len) in [
            (&mut self.kt, max_len * dh),
            (&mut self.scores, max_len * max_len),
            (&mut self.probs, max_len * max_len),
            (&mut self.inv, max_len),
        ] {
            if v.len() < len {
                v.resize(len, 0.0);
            }
        }
    }
}

thread_local! {
    /// Each thread's attention buffers, kept across calls.
    static ATTN_SCRATCH: std::cell::Cell<AttnScratch> = std::cell::Cell::new(AttnScratch::default());
}

/// Buffers one forward pass reuses across its layers.
#[derive(Default)]
struct Scratch {
    /// Query, key and value side by side, `3 h` a row.
    qkv: Vec<f32>,
    /// The attention output's and the MLP's `h`-wide results before the residual.
    proj: Vec<f32>,
    ctx: Vec<f32>,
    inter: Vec<f32>,
    /// Attention's context a (sequence, head) at a time, each `len x dh` contiguous.
    heads: Vec<f32>,
    /// The rows of the last LayerNorm through its folded smoothing, when it has one.
    smoothed: Vec<f32>,
}

impl Scratch {
    /// Sizes every buffer for `rows` tokens (each is written before it is read).
    fn fit(&mut self, rows: usize, h: usize, inter: usize) {
        self.qkv.resize(rows * 3 * h, 0.0);
        self.inter.resize(rows * inter, 0.0);
        for v in [&mut self.proj, &mut self.ctx, &mut self.heads, &mut self.smoothed] {
            v.resize(rows * h, 0.0);
        }
    }
}

/// Reads `config.json` and `model.safetensors` of a model directory.
pub fn read_model(dir: &Path) -> Result<(Config, Vec<u8>)> {
    let read =
        |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    let config = Config::parse(&String::from_utf8_lossy(&read("config.json")?))?;
    Ok((config, read("model.safetensors")?))
}
