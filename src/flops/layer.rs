//! Layers: shape inference and the dense (uncompressed) count of each one.

use super::count::{prod, sum, Count, WeightMatrix};
use crate::{Error, Result};

/// A convolution over 1 or 2 (or more) spatial dimensions, or its transpose.
///
/// Input `[N, C_in, *spatial]`, output `[N, C_out, *spatial_out]`; the kernel, stride, padding and dilation
/// have one entry per spatial dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Conv {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size per spatial dimension.
    pub kernel: Vec<usize>,
    /// Stride per spatial dimension.
    pub stride: Vec<usize>,
    /// Zero padding on each side, per spatial dimension.
    pub padding: Vec<usize>,
    /// Dilation per spatial dimension.
    pub dilation: Vec<usize>,
    /// Extra size added to one side of a transposed convolution's output, per spatial dimension.
    pub output_padding: Vec<usize>,
    /// Channel groups (`in_channels` for a depthwise convolution).
    pub groups: usize,
    /// Whether the layer adds a bias per output channel.
    pub bias: bool,
    /// Whether this is a transposed convolution.
    pub transposed: bool,
}

impl Conv {
    fn new(in_channels: usize, out_channels: usize, kernel: Vec<usize>) -> Self {
        let n = kernel.len();
        Conv {
            in_channels,
            out_channels,
            kernel,
            stride: vec![1; n],
            padding: vec![0; n],
            dilation: vec![1; n],
            output_padding: vec![0; n],
            groups: 1,
            bias: true,
            transposed: false,
        }
    }

    /// A 1-d convolution (stride 1, no padding, dilation 1, one group, with bias).
    pub fn d1(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self::new(in_channels, out_channels, vec![kernel])
    }

    /// A 2-d convolution with a square kernel (stride 1, no padding, dilation 1, one group, with bias).
    pub fn d2(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self::new(in_channels, out_channels, vec![kernel, kernel])
    }

    /// A 2-d transposed convolution with a square kernel.
    pub fn transpose2d(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Conv { transposed: true, ..Self::d2(in_channels, out_channels, kernel) }
    }

    /// Sets the kernel per spatial dimension.
    pub fn kernel(mut self, kernel: &[usize]) -> Self {
        self.kernel = kernel.to_vec();
        self
    }
    /// Sets the same stride on every spatial dimension.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride.fill(s);
        self
    }
    /// Sets the same padding on every spatial dimension.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding.fill(p);
        self
    }
    /// Sets the same dilation on every spatial dimension.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation.fill(d);
        self
    }
    /// Sets the same output padding on every spatial dimension (transposed convolution).
    pub fn output_padding(mut self, p: usize) -> Self {
        self.output_padding.fill(p);
        self
    }
    /// Sets the number of channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// Sets whether a bias is added.
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
}

/// A fully connected layer on the last dimension: `[..., in] -> [..., out]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Linear {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether a bias is added.
    pub bias: bool,
    /// Whether the weight is another layer's (tied embeddings): its MACs count, its params do not.
    pub tied: bool,
}

impl Linear {
    /// A linear layer with bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Linear { in_features, out_features, bias: true, tied: false }
    }
    /// Sets whether a bias is added.
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    /// Marks the weight as shared with another layer.
    pub fn tied(mut self, t: bool) -> Self {
        self.tied = t;
        self
    }
}

/// Multi-head attention with its projections: `q = x Wq`, `k = c Wk`, `v = c Wv`,
/// `softmax(q k^T / sqrt(d)) v`, then `Wo`. Self-attention takes one input `[N, L, E]`; cross-attention
/// takes the query `[N, Lq, E]` and the context `[N, Lk, E]`. Key/value heads may be fewer than query
/// heads (grouped-query attention): each key/value head serves `num_heads / num_kv_heads` query heads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Attention {
    /// Model width `E` (input and output features).
    pub embed_dim: usize,
    /// Query heads `H`.
    pub num_heads: usize,
    /// Key/value heads `H_kv` (divides `H`).
    pub num_kv_heads: usize,
    /// Width of one head `d`.
    pub head_dim: usize,
    /// Whether the four projections have biases.
    pub bias: bool,
    /// Whether rotary position embeddings are applied to q and k.
    pub rope: bool,
}

impl Attention {
    /// Standard multi-head attention: `head_dim = embed_dim / num_heads`, as many key/value heads, biases.
    pub fn new(embed_dim: usize, num_heads: usize) -> Self {
        Attention {
            embed_dim,
            num_heads,
            num_kv_heads: num_heads,
            head_dim: embed_dim.checked_div(num_heads).unwrap_or(0),
            bias: true,
            rope: false,
        }
    }
    /// Sets the number of key/value heads.
    pub fn kv_heads(mut self, h: usize) -> Self {
        self.num_kv_heads = h;
        self
    }
    /// Sets the head width.
    pub fn head_dim(mut self, d: usize) -> Self {
        self.head_dim = d;
        self
    }
    /// Sets whether the projections have biases.
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    /// Sets whether rotary position embeddings are applied.
    pub fn rope(mut self, r: bool) -> Self {
        self.rope = r;
        self
    }
}

/// Elementwise activation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * Phi(x)` with the exact erf.
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
    /// `x * sigmoid(x)`.
    Silu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// FLOPs per element (the module docs' table).
    pub const fn flops_per_element(self) -> u64 {
        match self {
            Activation::Relu | Activation::Tanh => 1,
            Activation::Relu6 => 2,
            Activation::Sigmoid => 3,
            Activation::Silu => 4,
            Activation::Gelu => 5,
            Activation::GeluTanh => 9,
        }
    }
}

/// Max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum PoolKind {
    /// Maximum over the window.
    Max,
    /// Mean over the window (padding counts in the divisor).
    Avg,
}

/// A layer: what it computes and its hyper-parameters. Shapes include the batch dimension first.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Layer {
    /// Convolution or transposed convolution, any number of spatial dimensions.
    Conv(Conv),
    /// Fully connected layer.
    Linear(Linear),
    /// Product of two inputs `[..., M, K] x [..., K, N] -> [..., M, N]` (equal batch dimensions).
    MatMul,
    /// Multi-head attention with projections.
    Attention(Attention),
    /// Batch normalisation (inference, running statistics) over dimension 1 of `[N, C, ...]`.
    BatchNorm {
        /// Channels `C`.
        channels: usize,
    },
    /// Layer normalisation over the last dimension.
    LayerNorm {
        /// Size of the last dimension.
        dim: usize,
        /// Whether the affine transform has a bias (it always has a scale).
        bias: bool,
    },
    /// Root-mean-square normalisation over the last dimension, with a scale.
    RmsNorm {
        /// Size of the last dimension.
        dim: usize,
    },
    /// Group normalisation of `[N, C, ...]` with an affine transform.
    GroupNorm {
        /// Groups (divides `channels`).
        groups: usize,
        /// Channels `C`.
        channels: usize,
    },
    /// Elementwise activation.
    Activation(Activation),
    /// Softmax over the last dimension.
    Softmax,
    /// Pooling window over the spatial dimensions of `[N, C, *spatial]`.
    Pool {
        /// Max or average.
        kind: PoolKind,
        /// Window per spatial dimension.
        kernel: Vec<usize>,
        /// Stride per spatial dimension.
        stride: Vec<usize>,
        /// Padding per spatial dimension.
        padding: Vec<usize>,
    },
    /// Adaptive pooling to a fixed output size (PyTorch's bins: `floor(i*In/Out) .. ceil((i+1)*In/Out)`).
    AdaptivePool {
        /// Max or average.
        kind: PoolKind,
        /// Output size per spatial dimension.
        output: Vec<usize>,
    },
    /// Elementwise sum of two inputs of the same shape (residual connections).
    Add,
    /// Elementwise product of two inputs of the same shape.
    Mul,
    /// Table lookup: `[N, L]` token ids -> `[N, L, dim]`.
    Embedding {
        /// Rows of the table (vocabulary).
        rows: usize,
        /// Width of a row.
        dim: usize,
    },
    /// Adds one row of a learned table to each token of `[N, L, dim]` (positions, token types).
    AddEmbedding {
        /// Rows of the table.
        rows: usize,
        /// Width of a row.
        dim: usize,
    },
    /// Prepends a learned token to `[N, L, dim]` -> `[N, L + 1, dim]` (ViT's class token).
    ClassToken {
        /// Width of the token.
        dim: usize,
    },
    /// Takes token `index` of `[N, L, E]` -> `[N, E]`.
    SelectToken {
        /// Token position.
        index: usize,
    },
    /// Flattens dimensions `start_dim..` into one.
    Flatten {
        /// First dimension flattened (1 keeps the batch).
        start_dim: usize,
    },
    /// Swaps two dimensions.
    Transpose {
        /// One dimension.
        a: usize,
        /// The other.
        b: usize,
    },
    /// Reshapes every dimension after the batch to `shape` (same element count).
    Reshape {
        /// The new shape without the batch dimension.
        shape: Vec<usize>,
    },
    /// An operation greenai does not count: reported as "not counted", never as a silent zero.
    Opaque {
        /// What it is.
        what: String,
    },
}

fn bad(layer: &str, reason: impl Into<String>) -> Error {
    Error::invalid("layer", layer, reason)
}

fn one<'a>(layer: &str, inputs: &'a [Vec<usize>]) -> Result<&'a [usize]> {
    match inputs {
        [x] => Ok(x),
        _ => Err(bad(layer, format!("takes 1 input, got {}", inputs.len()))),
    }
}

fn two<'a>(layer: &str, inputs: &'a [Vec<usize>]) -> Result<(&'a [usize], &'a [usize])> {
    match inputs {
        [a, b] => Ok((a, b)),
        _ => Err(bad(layer, format!("takes 2 inputs, got {}", inputs.len()))),
    }
}

fn positive(layer: &str, field: &str, v: usize) -> Result<u64> {
    if v == 0 {
        return Err(bad(layer, format!("`{field}` must be positive")));
    }
    Ok(v as u64)
}

fn rank_at_least(layer: &str, x: &[usize], n: usize, what: &str) -> Result<()> {
    if x.len() < n {
        return Err(bad(layer, format!("expects {what}, got shape {x:?}")));
    }
    Ok(())
}

fn last_dim(layer: &str, x: &[usize], dim: usize, field: &str) -> Result<()> {
    rank_at_least(layer, x, 2, "at least [N, features]")?;
    if x[x.len() - 1] != dim {
        return Err(bad(
            layer,
            format!("`{field}` = {dim} but the input's last dimension is {} ({x:?})", x[x.len() - 1]),
        ));
    }
    Ok(())
}

/// `a + b` for shape arithmetic, or an error naming the layer.
fn add(layer: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or_else(|| bad(layer, format!("{a} + {b} overflows")))
}

/// `a * b` for shape arithmetic, or an error naming the layer.
fn mul(layer: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| bad(layer, format!("{a} * {b} overflows")))
}

fn elems(x: &[usize]) -> Result<u64> {
    prod(x.iter().map(|&d| d as u64))
}

/// The sum over the `out` cells of adaptive pooling of their bin widths (PyTorch's bins:
/// `[floor(i n/out), ceil((i+1) n/out))`) in closed form: `n + out - gcd(n, out)`
/// (the sum of `ceil((i+1)n/out)` exceeds that of `floor(i n/out)` by `n`, plus one for each of the
/// `out - gcd` cells whose right edge is not exact).
fn adaptive_window_sum(n: usize, out: usize) -> Result<u64> {
    let (mut a, mut b) = (n as u64, out as u64);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    sum([n as u64, out as u64 - a])
}

fn per_spatial<'a>(layer: &str, field: &str, v: &'a [usize], n: usize) -> Result<&'a [usize]> {
    if v.len() != n {
        return Err(bad(layer, format!("`{field}` has {} entries for {n} spatial dimensions", v.len())));
    }
    Ok(v)
}

impl Layer {
    /// A short kind name for tables (`"conv2d"`, `"linear"`, ...).
    pub fn kind(&self) -> String {
        match self {
            Layer::Conv(c) => format!("{}conv{}d", if c.transposed { "t" } else { "" }, c.kernel.len()),
            Layer::Linear(_) => "linear".into(),
            Layer::MatMul => "matmul".into(),
            Layer::Attention(_) => "attention".into(),
            Layer::BatchNorm { .. } => "batchnorm".into(),
            Layer::LayerNorm { .. } => "layernorm".into(),
            Layer::RmsNorm { .. } => "rmsnorm".into(),
            Layer::GroupNorm { .. } => "groupnorm".into(),
            Layer::Activation(a) => format!("{a:?}").to_lowercase(),
            Layer::Softmax => "softmax".into(),
            Layer::Pool { kind, .. } => format!("{}pool", if *kind == PoolKind::Max { "max" } else { "avg" }),
            Layer::AdaptivePool { kind, .. } => {
                format!("adaptive{}pool", if *kind == PoolKind::Max { "max" } else { "avg" })
            }
            Layer::Add => "add".into(),
            Layer::Mul => "mul".into(),
            Layer::Embedding { .. } => "embedding".into(),
            Layer::AddEmbedding { .. } => "add_embedding".into(),
            Layer::ClassToken { .. } => "class_token".into(),
            Layer::SelectToken { .. } => "select_token".into(),
            Layer::Flatten { .. } => "flatten".into(),
            Layer::Transpose { .. } => "transpose".into(),
            Layer::Reshape { .. } => "reshape".into(),
            Layer::Opaque { .. } => "opaque".into(),
        }
    }

    /// The output shape for these input shapes, or an error naming `name` and what does not fit.
    pub fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(self.analyse(name, inputs)?.0)
    }

    /// The dense count of this layer on these inputs (see [`Count`]).
    pub fn count(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Count> {
        Ok(self.analyse(name, inputs)?.1)
    }

    /// Shape inference and count together.
    pub fn analyse(&self, name: &str, inputs: &[Vec<usize>]) -> Result<(Vec<usize>, Count)> {
        for x in inputs {
            if x.is_empty() || x.contains(&0) {
                return Err(bad(name, format!("input shape {x:?} has no dimensions or a zero dimension")));
            }
        }
        let mut c = Count::default();
        let out = match self {
            Layer::Conv(conv) => conv_analyse(name, conv, one(name, inputs)?, &mut c)?,
            Layer::Linear(l) => {
                let x = one(name, inputs)?;
                positive(name, "out_features", l.out_features)?;
                last_dim(name, x, l.in_features, "in_features")?;
                let tokens = elems(&x[..x.len() - 1])?;
                c.matrices.push(WeightMatrix {
                    rows: l.out_features as u64,
                    cols: l.in_features as u64,
                    copies: 1,
                    uses: tokens,
                    shared: l.tied,
                });
                if l.bias {
                    c.small_params = l.out_features as u64;
                    c.other_flops = prod([tokens, l.out_features as u64])?;
                }
                let mut out = x.to_vec();
                *out.last_mut().expect("rank checked") = l.out_features;
                out
            }
            Layer::MatMul => {
                let (a, b) = two(name, inputs)?;
                rank_at_least(name, a, 2, "[..., M, K]")?;
                if a.len() != b.len()
                    || a[..a.len() - 2] != b[..b.len() - 2]
                    || a[a.len() - 1] != b[b.len() - 2]
                {
                    return Err(bad(name, format!("cannot multiply {a:?} by {b:?}")));
                }
                let (m, k, n) = (a[a.len() - 2], a[a.len() - 1], b[b.len() - 1]);
                let batch = elems(&a[..a.len() - 2])?;
                c.act_macs = prod([batch, m as u64, n as u64, k as u64])?;
                let mut out = a.to_vec();
                *out.last_mut().expect("rank checked") = n;
                out
            }
            Layer::Attention(att) => attention_analyse(name, att, inputs, &mut c)?,
            Layer::BatchNorm { channels } => {
                let x = one(name, inputs)?;
                rank_at_least(name, x, 2, "[N, C, ...]")?;
                if x[1] != *channels {
                    return Err(bad(
                        name,
                        format!("`channels` = {channels} but the input has {} ({x:?})", x[1]),
                    ));
                }
                c.small_params = prod([2, *channels as u64])?;
                c.other_flops = prod([2, elems(x)?])?;
                x.to_vec()
            }
            Layer::LayerNorm { dim, bias } => {
                let x = one(name, inputs)?;
                last_dim(name, x, *dim, "dim")?;
                let rows = elems(&x[..x.len() - 1])?;
                let per_row = sum([prod([if *bias { 8 } else { 7 }, *dim as u64])?, 2])?;
                c.small_params = prod([if *bias { 2 } else { 1 }, *dim as u64])?;
                c.other_flops = prod([rows, per_row])?;
                x.to_vec()
            }
            Layer::RmsNorm { dim } => {
                let x = one(name, inputs)?;
                last_dim(name, x, *dim, "dim")?;
                let rows = elems(&x[..x.len() - 1])?;
                c.small_params = *dim as u64;
                c.other_flops = prod([rows, sum([prod([4, *dim as u64])?, 2])?])?;
                x.to_vec()
            }
            Layer::GroupNorm { groups, channels } => {
                let x = one(name, inputs)?;
                rank_at_least(name, x, 2, "[N, C, ...]")?;
                positive(name, "groups", *groups)?;
                if x[1] != *channels || channels % groups != 0 {
                    return Err(bad(
                        name,
                        format!(
                            "`groups` = {groups} must divide `channels` = {channels}, which must match {x:?}"
                        ),
                    ));
                }
                let n = elems(x)?;
                let groups_total = prod([x[0] as u64, *groups as u64])?;
                c.small_params = prod([2, *channels as u64])?;
                c.other_flops = sum([prod([8, n])?, prod([2, groups_total])?])?;
                x.to_vec()
            }
            Layer::Activation(a) => {
                let x = one(name, inputs)?;
                c.other_flops = prod([a.flops_per_element(), elems(x)?])?;
                x.to_vec()
            }
            Layer::Softmax => {
                let x = one(name, inputs)?;
                let n = x[x.len() - 1] as u64; // inputs have at least one dimension, none zero
                c.other_flops = prod([elems(&x[..x.len() - 1])?, prod([5, n])? - 2])?;
                x.to_vec()
            }
            Layer::Pool { kind, kernel, stride, padding } => {
                let x = one(name, inputs)?;
                rank_at_least(name, x, 3, "[N, C, *spatial]")?;
                let sp = x.len() - 2;
                let (kernel, stride, padding) = (
                    per_spatial(name, "kernel", kernel, sp)?,
                    per_spatial(name, "stride", stride, sp)?,
                    per_spatial(name, "padding", padding, sp)?,
                );
                let mut out = x[..2].to_vec();
                for i in 0..sp {
                    let (k, s) = (positive(name, "kernel", kernel[i])?, positive(name, "stride", stride[i])?);
                    if padding[i] > kernel[i] / 2 {
                        return Err(bad(
                            name,
                            format!("padding {} exceeds half the kernel {}", padding[i], k),
                        ));
                    }
                    let padded = add(name, x[i + 2], mul(name, 2, padding[i])?)?;
                    if kernel[i] > padded {
                        return Err(bad(
                            name,
                            format!("kernel {k} larger than padded input {padded} ({x:?})"),
                        ));
                    }
                    out.push((padded - kernel[i]) / s as usize + 1);
                }
                let window = prod(kernel.iter().map(|&k| k as u64))?;
                let per_out = if *kind == PoolKind::Max { window - 1 } else { window }; // window >= 1
                c.other_flops = prod([elems(&out)?, per_out])?;
                out
            }
            Layer::AdaptivePool { kind, output } => {
                let x = one(name, inputs)?;
                rank_at_least(name, x, 3, "[N, C, *spatial]")?;
                let sp = x.len() - 2;
                per_spatial(name, "output", output, sp)?;
                // Sum over output cells of the window size; separable, so a product of per-dim sums.
                let mut window_sum = 1u64;
                let mut cells = 1u64;
                for (i, &o) in output.iter().enumerate() {
                    positive(name, "output", o)?;
                    window_sum = prod([window_sum, adaptive_window_sum(x[i + 2], o)?])?;
                    cells = prod([cells, o as u64])?;
                }
                let planes = prod([x[0] as u64, x[1] as u64])?;
                let per_plane = if *kind == PoolKind::Max { window_sum - cells } else { window_sum };
                c.other_flops = prod([planes, per_plane])?;
                let mut out = x[..2].to_vec();
                out.extend_from_slice(output);
                out
            }
            Layer::Add | Layer::Mul => {
                let (a, b) = two(name, inputs)?;
                if a != b {
                    return Err(bad(name, format!("inputs {a:?} and {b:?} differ")));
                }
                c.other_flops = elems(a)?;
                a.to_vec()
            }
            Layer::Embedding { rows, dim } => {
                let x = one(name, inputs)?;
                positive(name, "rows", *rows)?;
                positive(name, "dim", *dim)?;
                c.table_params = prod([*rows as u64, *dim as u64])?;
                c.table_rows_read = elems(x)?;
                c.table_row_width = *dim as u64;
                c.elems_read_override = Some(elems(x)?);
                let mut out = x.to_vec();
                out.push(*dim);
                out
            }
            Layer::AddEmbedding { rows, dim } => {
                let x = one(name, inputs)?;
                positive(name, "rows", *rows)?;
                rank_at_least(name, x, 3, "[N, L, dim]")?;
                last_dim(name, x, *dim, "dim")?;
                c.table_params = prod([*rows as u64, *dim as u64])?;
                c.table_rows_read = elems(&x[..x.len() - 1])?;
                c.table_row_width = *dim as u64;
                c.other_flops = elems(x)?;
                x.to_vec()
            }
            Layer::ClassToken { dim } => {
                let x = one(name, inputs)?;
                rank_at_least(name, x, 3, "[N, L, dim]")?;
                last_dim(name, x, *dim, "dim")?;
                c.table_params = *dim as u64;
                c.table_rows_read = x[0] as u64;
                c.table_row_width = *dim as u64;
                let mut out = x.to_vec();
                out[1] = add(name, out[1], 1)?;
                out
            }
            Layer::SelectToken { index } => {
                let x = one(name, inputs)?;
                rank_at_least(name, x, 3, "[N, L, E]")?;
                if *index >= x[1] {
                    return Err(bad(name, format!("token {index} out of range for {x:?}")));
                }
                let out = vec![x[0], x[2]];
                c.elems_read_override = Some(elems(&out)?);
                out
            }
            Layer::Flatten { start_dim } => {
                let x = one(name, inputs)?;
                if *start_dim == 0 || *start_dim >= x.len() {
                    return Err(bad(name, format!("`start_dim` {start_dim} out of range for {x:?}")));
                }
                let mut out = x[..*start_dim].to_vec();
                out.push(elems(&x[*start_dim..])? as usize);
                c.view = true;
                out
            }
            Layer::Transpose { a, b } => {
                let x = one(name, inputs)?;
                if *a >= x.len() || *b >= x.len() {
                    return Err(bad(name, format!("dimensions {a}, {b} out of range for {x:?}")));
                }
                let mut out = x.to_vec();
                out.swap(*a, *b);
                out
            }
            Layer::Reshape { shape } => {
                let x = one(name, inputs)?;
                if shape.contains(&0) || elems(shape)? != elems(&x[1..])? {
                    return Err(bad(name, format!("cannot reshape {x:?} to [{}, {shape:?}]", x[0])));
                }
                let mut out = vec![x[0]];
                out.extend_from_slice(shape);
                c.view = true;
                out
            }
            Layer::Opaque { what } => {
                let x = one(name, inputs)?;
                c.notes.push(format!("not counted: {what}"));
                x.to_vec()
            }
        };
        if !c.view {
            let read = match c.elems_read_override {
                Some(n) => n,
                None => sum(inputs.iter().map(|x| elems(x)).collect::<Result<Vec<_>>>()?)?,
            };
            c.elems_read = read;
            c.elems_written = elems(&out)?;
        }
        Ok((out, c))
    }
}

fn conv_analyse(name: &str, conv: &Conv, x: &[usize], c: &mut Count) -> Result<Vec<usize>> {
    let sp = conv.kernel.len();
    if sp == 0 {
        return Err(bad(name, "`kernel` has no spatial dimension"));
    }
    for (field, v) in [
        ("stride", &conv.stride),
        ("padding", &conv.padding),
        ("dilation", &conv.dilation),
        ("output_padding", &conv.output_padding),
    ] {
        per_spatial(name, field, v, sp)?;
    }
    if x.len() != sp + 2 {
        return Err(bad(name, format!("expects [N, C, {sp} spatial dims], got {x:?}")));
    }
    let g = positive(name, "groups", conv.groups)?;
    positive(name, "in_channels", conv.in_channels)?;
    positive(name, "out_channels", conv.out_channels)?;
    if x[1] != conv.in_channels {
        return Err(bad(
            name,
            format!("`in_channels` = {} but the input has {} ({x:?})", conv.in_channels, x[1]),
        ));
    }
    if !conv.in_channels.is_multiple_of(conv.groups) || !conv.out_channels.is_multiple_of(conv.groups) {
        return Err(bad(
            name,
            format!(
                "`groups` = {} must divide in_channels {} and out_channels {}",
                conv.groups, conv.in_channels, conv.out_channels
            ),
        ));
    }
    let mut out = vec![x[0], conv.out_channels];
    for i in 0..sp {
        let k = positive(name, "kernel", conv.kernel[i])? as usize;
        let s = positive(name, "stride", conv.stride[i])? as usize;
        let d = positive(name, "dilation", conv.dilation[i])? as usize;
        let (p, op, n) = (conv.padding[i], conv.output_padding[i], x[i + 2]);
        let span = add(name, mul(name, d, k - 1)?, 1)?;
        if conv.transposed {
            if op >= s && op >= d {
                return Err(bad(
                    name,
                    format!("`output_padding` {op} must be smaller than stride or dilation"),
                ));
            }
            let full = add(name, add(name, mul(name, n - 1, s)?, span)?, op)?;
            let trimmed = mul(name, 2, p)?;
            if full <= trimmed {
                return Err(bad(name, format!("padding {p} removes the whole output ({full})")));
            }
            out.push(full - trimmed);
        } else {
            let padded = add(name, n, mul(name, 2, p)?)?;
            if span > padded {
                return Err(bad(
                    name,
                    format!(
                        "kernel extent {span} (kernel {k}, dilation {d}) larger than padded input {padded} ({x:?})"
                    ),
                ));
            }
            out.push((padded - span) / s + 1);
        }
    }
    let kernel = prod(conv.kernel.iter().map(|&k| k as u64))?;
    let (cin_g, cout_g) = ((conv.in_channels / conv.groups) as u64, (conv.out_channels / conv.groups) as u64);
    let batch = x[0] as u64;
    let matrix = if conv.transposed {
        // Each input pixel scatters (C_in/g) x (C_out/g * K) products.
        WeightMatrix {
            rows: cout_g * kernel,
            cols: cin_g,
            copies: g,
            uses: prod([batch, elems(&x[2..])?])?,
            shared: false,
        }
    } else {
        WeightMatrix {
            rows: cout_g,
            cols: cin_g * kernel,
            copies: g,
            uses: prod([batch, elems(&out[2..])?])?,
            shared: false,
        }
    };
    c.matrices.push(matrix);
    if conv.bias {
        c.small_params = conv.out_channels as u64;
        c.other_flops = elems(&out)?;
    }
    Ok(out)
}

fn attention_analyse(name: &str, a: &Attention, inputs: &[Vec<usize>], c: &mut Count) -> Result<Vec<usize>> {
    let (q, kv) = match inputs {
        [x] => (x.as_slice(), x.as_slice()),
        [x, ctx] => (x.as_slice(), ctx.as_slice()),
        _ => return Err(bad(name, format!("takes 1 or 2 inputs, got {}", inputs.len()))),
    };
    let e = positive(name, "embed_dim", a.embed_dim)?;
    let h = positive(name, "num_heads", a.num_heads)?;
    let hkv = positive(name, "num_kv_heads", a.num_kv_heads)?;
    let d = positive(name, "head_dim", a.head_dim)?;
    if !a.num_heads.is_multiple_of(a.num_kv_heads) {
        return Err(bad(name, format!("`num_kv_heads` = {hkv} must divide `num_heads` = {h}")));
    }
    for x in [q, kv] {
        if x.len() != 3 || x[2] != a.embed_dim || x[0] != q[0] {
            return Err(bad(
                name,
                format!("expects [N, L, {e}] inputs with one batch size, got {q:?} and {kv:?}"),
            ));
        }
    }
    let (n, lq, lk) = (q[0] as u64, q[1] as u64, kv[1] as u64);
    let (q_tokens, k_tokens) = (prod([n, lq])?, prod([n, lk])?);
    let (q_width, kv_width) = (prod([h, d])?, prod([hkv, d])?);
    let qm = WeightMatrix { rows: q_width, cols: e, copies: 1, uses: q_tokens, shared: false };
    let kvm = WeightMatrix { rows: kv_width, cols: e, copies: 1, uses: k_tokens, shared: false };
    let om = WeightMatrix { rows: e, cols: q_width, copies: 1, uses: q_tokens, shared: false };
    c.matrices.extend([qm, kvm, kvm, om]);
    let scores = prod([n, h, lq, lk])?;
    c.act_macs = prod([2, scores, d])?; // q k^T and p v, both H * Lq * Lk * d per sample
    let mut flops = vec![
        scores,                                // scale by 1/sqrt(d)
        prod([n, h, lq, prod([5, lk])? - 2])?, // softmax rows of length Lk (Lk >= 1)
    ];
    if a.bias {
        c.small_params = sum([q_width, prod([2, kv_width])?, e])?;
        flops.push(prod([q_tokens, sum([q_width, e])?])?);
        flops.push(prod([k_tokens, 2, kv_width])?);
    }
    if a.rope {
        flops.push(prod([3, sum([prod([q_tokens, q_width])?, prod([k_tokens, kv_width])?])?])?);
    }
    c.other_flops = sum(flops)?;
    c.notes.push("attention: masks and the intermediate q, k, v, scores tensors not in activation bytes (fused kernel assumed)".into());
    Ok(q.to_vec())
}
