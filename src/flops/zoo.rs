//! Well-known models at their standard inputs, layer for layer as their reference implementations
//! (torchvision for the vision models, Hugging Face `transformers` for BERT and GPT-2).

use super::layer::{Activation, Attention, Conv, Layer, Linear, PoolKind};
use super::model::Model;
use crate::{Error, Result};

/// Names accepted by [`by_name`].
pub const NAMES: [&str; 10] = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "vgg16",
    "alexnet",
    "mobilenet_v2",
    "vit_b_16",
    "bert_base",
    "gpt2",
];

/// Builds a zoo model by name for `batch` inputs; `seq_len` is used by the language models
/// (default 128 for BERT, 1024 for GPT-2) and must be `None` or ignored for the others.
pub fn by_name(name: &str, batch: usize, seq_len: Option<usize>) -> Result<Model> {
    match name {
        "resnet18" => resnet(name, batch, false, [2, 2, 2, 2]),
        "resnet34" => resnet(name, batch, false, [3, 4, 6, 3]),
        "resnet50" => resnet(name, batch, true, [3, 4, 6, 3]),
        "resnet101" => resnet(name, batch, true, [3, 4, 23, 3]),
        "vgg16" => vgg16(batch),
        "alexnet" => alexnet(batch),
        "mobilenet_v2" => mobilenet_v2(batch),
        "vit_b_16" => vit_b_16(batch),
        "bert_base" => transformer(&TransformerConfig::bert_base(), batch, seq_len.unwrap_or(128)),
        "gpt2" => transformer(&TransformerConfig::gpt2(), batch, seq_len.unwrap_or(1024)),
        _ => Err(Error::invalid("model", name, format!("unknown model; known: {}", NAMES.join(", ")))),
    }
}

fn conv_bn(m: &mut Model, prefix: &str, conv: &str, bn: &str, c: Conv) -> Result<()> {
    let ch = c.out_channels;
    m.add(format!("{prefix}{conv}"), Layer::Conv(c.bias(false)))?;
    m.add(format!("{prefix}{bn}"), Layer::BatchNorm { channels: ch })?;
    Ok(())
}

fn relu(m: &mut Model, name: String) -> Result<()> {
    m.add(name, Layer::Activation(Activation::Relu)).map(|_| ())
}

fn classifier_pool(m: &mut Model, name: &str, kind: PoolKind, out: usize) -> Result<()> {
    m.add(name, Layer::AdaptivePool { kind, output: vec![out, out] })?;
    m.add("flatten", Layer::Flatten { start_dim: 1 })?;
    Ok(())
}

/// torchvision's ResNet (v1.5: the stride sits on the 3x3 convolution of a bottleneck) at 224x224.
fn resnet(name: &str, batch: usize, bottleneck: bool, blocks: [usize; 4]) -> Result<Model> {
    let mut m = Model::new(name, &[batch, 3, 224, 224])?;
    conv_bn(&mut m, "", "conv1", "bn1", Conv::d2(3, 64, 7).stride(2).padding(3))?;
    relu(&mut m, "relu".into())?;
    m.add(
        "maxpool",
        Layer::Pool { kind: PoolKind::Max, kernel: vec![3, 3], stride: vec![2, 2], padding: vec![1, 1] },
    )?;
    let expansion = if bottleneck { 4 } else { 1 };
    let mut inplanes = 64;
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = 64 << stage;
        for b in 0..n {
            let stride = if b == 0 && stage > 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}.", stage + 1);
            let block_in = m.last().to_string();
            if bottleneck {
                conv_bn(&mut m, &p, "conv1", "bn1", Conv::d2(inplanes, planes, 1))?;
                relu(&mut m, format!("{p}relu1"))?;
                conv_bn(&mut m, &p, "conv2", "bn2", Conv::d2(planes, planes, 3).stride(stride).padding(1))?;
                relu(&mut m, format!("{p}relu2"))?;
                conv_bn(&mut m, &p, "conv3", "bn3", Conv::d2(planes, planes * 4, 1))?;
            } else {
                conv_bn(&mut m, &p, "conv1", "bn1", Conv::d2(inplanes, planes, 3).stride(stride).padding(1))?;
                relu(&mut m, format!("{p}relu1"))?;
                conv_bn(&mut m, &p, "conv2", "bn2", Conv::d2(planes, planes, 3).padding(1))?;
            }
            let main = m.last().to_string();
            let shortcut = if stride != 1 || inplanes != planes * expansion {
                m.add_from(
                    format!("{p}downsample.0"),
                    Layer::Conv(Conv::d2(inplanes, planes * expansion, 1).stride(stride).bias(false)),
                    &[&block_in],
                )?;
                m.add(format!("{p}downsample.1"), Layer::BatchNorm { channels: planes * expansion })?;
                m.last().to_string()
            } else {
                block_in
            };
            m.add_from(format!("{p}add"), Layer::Add, &[&main, &shortcut])?;
            relu(&mut m, format!("{p}relu"))?;
            inplanes = planes * expansion;
        }
    }
    classifier_pool(&mut m, "avgpool", PoolKind::Avg, 1)?;
    m.add("fc", Layer::Linear(Linear::new(512 * expansion, 1000)))?;
    Ok(m)
}

fn mlp_head(m: &mut Model, prefix: &str, dims: &[usize]) -> Result<()> {
    for (i, w) in dims.windows(2).enumerate() {
        m.add(format!("{prefix}.{}", 3 * i), Layer::Linear(Linear::new(w[0], w[1])))?;
        if i + 2 < dims.len() {
            relu(m, format!("{prefix}.{}", 3 * i + 1))?;
        }
    }
    Ok(())
}

fn max_pool(k: usize, s: usize) -> Layer {
    Layer::Pool { kind: PoolKind::Max, kernel: vec![k, k], stride: vec![s, s], padding: vec![0, 0] }
}

/// torchvision's VGG-16 (configuration D, no batch norm) at 224x224.
fn vgg16(batch: usize) -> Result<Model> {
    let mut m = Model::new("vgg16", &[batch, 3, 224, 224])?;
    let cfg = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];
    let mut cin = 3;
    for (i, &c) in cfg.iter().enumerate() {
        if c == 0 {
            m.add(format!("features.{}", i * 2), max_pool(2, 2))?;
        } else {
            m.add(format!("features.{}", i * 2), Layer::Conv(Conv::d2(cin, c, 3).padding(1)))?;
            relu(&mut m, format!("features.{}", i * 2 + 1))?;
            cin = c;
        }
    }
    classifier_pool(&mut m, "avgpool", PoolKind::Avg, 7)?;
    mlp_head(&mut m, "classifier", &[512 * 49, 4096, 4096, 1000])?;
    Ok(m)
}

/// torchvision's AlexNet (the "one weird trick" variant) at 224x224.
fn alexnet(batch: usize) -> Result<Model> {
    let mut m = Model::new("alexnet", &[batch, 3, 224, 224])?;
    let convs = [
        (0, Conv::d2(3, 64, 11).stride(4).padding(2), true),
        (3, Conv::d2(64, 192, 5).padding(2), true),
        (6, Conv::d2(192, 384, 3).padding(1), false),
        (8, Conv::d2(384, 256, 3).padding(1), false),
        (10, Conv::d2(256, 256, 3).padding(1), true),
    ];
    for (i, c, pool) in convs {
        m.add(format!("features.{i}"), Layer::Conv(c))?;
        relu(&mut m, format!("features.{}", i + 1))?;
        if pool {
            m.add(format!("features.{}", i + 2), max_pool(3, 2))?;
        }
    }
    classifier_pool(&mut m, "avgpool", PoolKind::Avg, 6)?;
    m.add("classifier.1", Layer::Linear(Linear::new(256 * 36, 4096)))?;
    relu(&mut m, "classifier.2".into())?;
    m.add("classifier.4", Layer::Linear(Linear::new(4096, 4096)))?;
    relu(&mut m, "classifier.5".into())?;
    m.add("classifier.6", Layer::Linear(Linear::new(4096, 1000)))?;
    Ok(m)
}

/// torchvision's MobileNetV2 (width 1.0) at 224x224.
fn mobilenet_v2(batch: usize) -> Result<Model> {
    let mut m = Model::new("mobilenet_v2", &[batch, 3, 224, 224])?;
    let relu6 = |m: &mut Model, name: String| m.add(name, Layer::Activation(Activation::Relu6)).map(|_| ());
    conv_bn(&mut m, "features.0.", "0", "1", Conv::d2(3, 32, 3).stride(2).padding(1))?;
    relu6(&mut m, "features.0.2".into())?;
    let settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let (mut cin, mut idx) = (32, 1);
    for (t, c, n, s) in settings {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{idx}.conv.");
            let block_in = m.last().to_string();
            let hidden = cin * t;
            if t != 1 {
                conv_bn(&mut m, &p, "0.0", "0.1", Conv::d2(cin, hidden, 1))?;
                relu6(&mut m, format!("{p}0.2"))?;
            }
            let j = if t != 1 { 1 } else { 0 };
            conv_bn(
                &mut m,
                &p,
                &format!("{j}.0"),
                &format!("{j}.1"),
                Conv::d2(hidden, hidden, 3).stride(stride).padding(1).groups(hidden),
            )?;
            relu6(&mut m, format!("{p}{j}.2"))?;
            conv_bn(&mut m, &p, &format!("{}", j + 1), &format!("{}", j + 2), Conv::d2(hidden, c, 1))?;
            if stride == 1 && cin == c {
                let main = m.last().to_string();
                m.add_from(format!("features.{idx}.add"), Layer::Add, &[&block_in, &main])?;
            }
            cin = c;
            idx += 1;
        }
    }
    conv_bn(&mut m, "features.18.", "0", "1", Conv::d2(320, 1280, 1))?;
    relu6(&mut m, "features.18.2".into())?;
    classifier_pool(&mut m, "avgpool", PoolKind::Avg, 1)?;
    m.add("classifier.1", Layer::Linear(Linear::new(1280, 1000)))?;
    Ok(m)
}

/// Pre-norm encoder block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
fn pre_norm_block(m: &mut Model, p: &str, norm: &Layer, attn: Attention, mlp: &[Layer]) -> Result<()> {
    let x = m.last().to_string();
    m.add(format!("{p}ln_1"), norm.clone())?;
    m.add(format!("{p}attn"), Layer::Attention(attn))?;
    m.add_from(format!("{p}add_1"), Layer::Add, &[&x, &format!("{p}attn")])?;
    let x = m.last().to_string();
    m.add(format!("{p}ln_2"), norm.clone())?;
    for (i, l) in mlp.iter().enumerate() {
        m.add(format!("{p}mlp.{i}"), l.clone())?;
    }
    let y = m.last().to_string();
    m.add_from(format!("{p}add_2"), Layer::Add, &[&x, &y])?;
    Ok(())
}

/// torchvision's ViT-B/16 at 224x224.
fn vit_b_16(batch: usize) -> Result<Model> {
    let (e, layers) = (768, 12);
    let mut m = Model::new("vit_b_16", &[batch, 3, 224, 224])?;
    m.add("conv_proj", Layer::Conv(Conv::d2(3, e, 16).stride(16)))?
        .add("flatten", Layer::Flatten { start_dim: 2 })?
        .add("transpose", Layer::Transpose { a: 1, b: 2 })?
        .add("class_token", Layer::ClassToken { dim: e })?
        .add("encoder.pos_embedding", Layer::AddEmbedding { rows: 197, dim: e })?;
    let norm = Layer::LayerNorm { dim: e, bias: true };
    let mlp = [
        Layer::Linear(Linear::new(e, 3072)),
        Layer::Activation(Activation::Gelu),
        Layer::Linear(Linear::new(3072, e)),
    ];
    for l in 0..layers {
        pre_norm_block(&mut m, &format!("encoder.layers.{l}."), &norm, Attention::new(e, 12), &mlp)?;
    }
    m.add("encoder.ln", norm)?
        .add("cls", Layer::SelectToken { index: 0 })?
        .add("heads.head", Layer::Linear(Linear::new(e, 1000)))?;
    Ok(m)
}

/// The decoder/encoder family of a [`TransformerConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// BERT: learned positions and token types, post-norm LayerNorm, GELU MLP, optional pooler.
    Bert,
    /// GPT-2: learned positions, pre-norm LayerNorm, GELU (tanh) MLP, LM head tied to the embedding.
    Gpt2,
    /// LLaMA-style: rotary positions, RMSNorm, gated SiLU MLP, grouped key/value heads.
    Llama,
}

/// The hyper-parameters of a transformer (what a Hugging Face `config.json` holds).
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerConfig {
    /// Architecture family.
    pub family: Family,
    /// Model width.
    pub hidden: usize,
    /// Blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Longest sequence (learned position table size).
    pub max_positions: usize,
    /// Token types (BERT).
    pub type_vocab: usize,
    /// MLP activation.
    pub activation: Activation,
    /// Whether the LM head shares the token embedding.
    pub tie_embeddings: bool,
    /// Whether the attention projections have biases.
    pub attention_bias: bool,
    /// Whether the MLP projections have biases.
    pub mlp_bias: bool,
    /// BERT's pooler (`tanh(W h_cls)`).
    pub pooler: bool,
    /// Whether an LM head is added (GPT-2, LLaMA).
    pub lm_head: bool,
}

impl TransformerConfig {
    /// `bert-base-uncased`.
    pub fn bert_base() -> Self {
        TransformerConfig {
            family: Family::Bert,
            hidden: 768,
            layers: 12,
            heads: 12,
            kv_heads: 12,
            head_dim: 64,
            intermediate: 3072,
            vocab: 30522,
            max_positions: 512,
            type_vocab: 2,
            activation: Activation::Gelu,
            tie_embeddings: false,
            attention_bias: true,
            mlp_bias: true,
            pooler: true,
            lm_head: false,
        }
    }

    /// `gpt2` (124M).
    pub fn gpt2() -> Self {
        TransformerConfig {
            family: Family::Gpt2,
            vocab: 50257,
            max_positions: 1024,
            type_vocab: 0,
            activation: Activation::GeluTanh,
            tie_embeddings: true,
            pooler: false,
            lm_head: true,
            ..Self::bert_base()
        }
    }
}

/// The most layers [`transformer`] builds: every layer is a set of nodes held in memory.
pub const MAX_LAYERS: usize = 1 << 14;

/// Builds a transformer for `batch` sequences of `seq_len` tokens (at most [`MAX_LAYERS`] layers).
pub fn transformer(cfg: &TransformerConfig, batch: usize, seq_len: usize) -> Result<Model> {
    if seq_len == 0 || (cfg.family != Family::Llama && seq_len > cfg.max_positions) {
        return Err(Error::invalid(
            "seq_len",
            seq_len,
            format!("must be in 1..={} (max_position_embeddings)", cfg.max_positions),
        ));
    }
    if cfg.layers > MAX_LAYERS {
        return Err(Error::invalid(
            "layers",
            cfg.layers,
            format!("more than {MAX_LAYERS} layers (the largest published models have a few hundred)"),
        ));
    }
    let (e, name) = (cfg.hidden, format!("{:?}", cfg.family).to_lowercase());
    let mut m = Model::new(name, &[batch, seq_len])?;
    let attn = Attention::new(e, cfg.heads)
        .kv_heads(cfg.kv_heads)
        .head_dim(cfg.head_dim)
        .bias(cfg.attention_bias)
        .rope(cfg.family == Family::Llama);
    let lin = |i, o| Layer::Linear(Linear::new(i, o).bias(cfg.mlp_bias));
    let act = Layer::Activation(cfg.activation);
    m.add("embed_tokens", Layer::Embedding { rows: cfg.vocab, dim: e })?;
    match cfg.family {
        Family::Bert => {
            let ln = Layer::LayerNorm { dim: e, bias: true };
            m.add("embed_positions", Layer::AddEmbedding { rows: cfg.max_positions, dim: e })?
                .add("embed_token_types", Layer::AddEmbedding { rows: cfg.type_vocab, dim: e })?
                .add("embed_ln", ln.clone())?;
            for l in 0..cfg.layers {
                let p = format!("layer.{l}.");
                let x = m.last().to_string();
                m.add(format!("{p}attn"), Layer::Attention(attn.clone()))?
                    .add_from(format!("{p}add_1"), Layer::Add, &[&x, &format!("{p}attn")])?
                    .add(format!("{p}ln_1"), ln.clone())?;
                let x = m.last().to_string();
                m.add(format!("{p}mlp.0"), lin(e, cfg.intermediate))?
                    .add(format!("{p}mlp.1"), act.clone())?
                    .add(format!("{p}mlp.2"), lin(cfg.intermediate, e))?
                    .add_from(format!("{p}add_2"), Layer::Add, &[&x, &format!("{p}mlp.2")])?
                    .add(format!("{p}ln_2"), ln.clone())?;
            }
            if cfg.pooler {
                m.add("pooler.cls", Layer::SelectToken { index: 0 })?
                    .add("pooler.dense", Layer::Linear(Linear::new(e, e)))?
                    .add("pooler.tanh", Layer::Activation(Activation::Tanh))?;
            }
        }
        Family::Gpt2 => {
            m.add("embed_positions", Layer::AddEmbedding { rows: cfg.max_positions, dim: e })?;
            let ln = Layer::LayerNorm { dim: e, bias: true };
            for l in 0..cfg.layers {
                let mlp = [lin(e, cfg.intermediate), act.clone(), lin(cfg.intermediate, e)];
                pre_norm_block(&mut m, &format!("h.{l}."), &ln, attn.clone(), &mlp)?;
            }
            m.add("ln_f", ln)?;
        }
        Family::Llama => {
            let norm = Layer::RmsNorm { dim: e };
            for l in 0..cfg.layers {
                let p = format!("layers.{l}.");
                let x = m.last().to_string();
                m.add(format!("{p}input_layernorm"), norm.clone())?
                    .add(format!("{p}self_attn"), Layer::Attention(attn.clone()))?
                    .add_from(format!("{p}add_1"), Layer::Add, &[&x, &format!("{p}self_attn")])?
                    .add(format!("{p}post_attention_layernorm"), norm.clone())?;
                let (x, h) = (format!("{p}add_1"), format!("{p}post_attention_layernorm"));
                m.add(format!("{p}mlp.gate_proj"), lin(e, cfg.intermediate))?
                    .add(format!("{p}mlp.act"), act.clone())?
                    .add_from(format!("{p}mlp.up_proj"), lin(e, cfg.intermediate), &[&h])?
                    .add_from(
                        format!("{p}mlp.mul"),
                        Layer::Mul,
                        &[&format!("{p}mlp.act"), &format!("{p}mlp.up_proj")],
                    )?
                    .add(format!("{p}mlp.down_proj"), lin(cfg.intermediate, e))?
                    .add_from(format!("{p}add_2"), Layer::Add, &[&x, &format!("{p}mlp.down_proj")])?;
            }
            m.add("norm", norm)?;
        }
    }
    if cfg.lm_head {
        m.add("lm_head", Layer::Linear(Linear::new(e, cfg.vocab).bias(false).tied(cfg.tie_embeddings)))?;
    }
    Ok(m)
}
