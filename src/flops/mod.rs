//! FLOPs, parameters and bytes moved, per layer and per model, aware of dtype, sparsity and low rank.
//!
//! Every layer infers its output shape from its inputs and reports its cost: **MACs** (multiply-accumulates,
//! each a multiply and an add) and **FLOPs** (every arithmetic operation: `2 x MACs` plus the operations
//! below), params, weight bytes, and activation bytes read and written. The two units are never mixed.
//! What greenai does not count is listed as a "not counted" note in the [`Report`], never a silent zero.
//!
//! ## MAC rules
//! | layer | MACs |
//! | --- | --- |
//! | convolution | `N * prod(out spatial) * C_out * (C_in / groups) * prod(kernel)`; output size `floor((in + 2p - d(k-1) - 1) / s) + 1` |
//! | transposed convolution | `N * prod(in spatial) * C_in * (C_out / groups) * prod(kernel)`; output `(in-1)s - 2p + d(k-1) + output_padding + 1` |
//! | linear | `tokens * in * out` (tied weights: MACs counted, params not) |
//! | matmul | `batch * M * N * K` |
//! | attention | projections `N Lq E (H d) + 2 N Lk E (H_kv d) + N Lq (H d) E`, plus `q k^T` and `p v`: `2 N H Lq Lk d` |
//!
//! ## FLOP rules for everything that is not a MAC
//! Transcendental functions (exp, erf, tanh, sqrt, reciprocal square root) count as one FLOP each, and so
//! does a comparison. `n` is the length of the normalised or softmaxed row.
//!
//! | operation | FLOPs |
//! | --- | --- |
//! | bias add (conv, linear, attention projections) | 1 per output element |
//! | ReLU | 1 per element (max) |
//! | ReLU6 | 2 per element (max, min) |
//! | sigmoid | 3 per element (exp, add, divide) |
//! | SiLU | 4 per element (sigmoid, multiply) |
//! | tanh | 1 per element |
//! | GELU (erf) | 5 per element (`0.5 x (1 + erf(x / sqrt 2))`: divide, erf, add, 2 multiplies) |
//! | GELU (tanh approximation) | 9 per element (`x^3`: 2, `* 0.044715`, `+ x`, `* sqrt(2/pi)`, tanh, `+ 1`, `* 0.5`, `* x`) |
//! | softmax | `5n - 2` per row (max `n-1`, subtract `n`, exp `n`, sum `n-1`, divide `n`) |
//! | attention scores | 1 per score (scale by `1/sqrt(d)`) plus softmax over each row of `Lk`; RoPE 3 per q and k element |
//! | BatchNorm (inference) | 2 per element (per-channel scale and shift precomputed from the running statistics) |
//! | LayerNorm | `8n + 2` per row with bias, `7n + 2` without (mean `n`, variance `3n`, `+eps` and rsqrt 2, normalise `2n`, scale `n`, shift `n`) |
//! | RMSNorm | `4n + 2` per row (square `n`, sum and divide `n`, `+eps` and rsqrt 2, normalise `n`, scale `n`) |
//! | GroupNorm | 8 per element plus 2 per group (as LayerNorm over each group, affine per channel) |
//! | max pooling | `window - 1` comparisons per output element (adaptive: per bin) |
//! | average pooling | `window` per output element (`window - 1` adds and a divide; padding counts in the window) |
//! | add, multiply (elementwise) | 1 per output element |
//! | learned position / token-type embedding | 1 add per element |
//! | embedding lookup, class token, flatten, reshape, transpose, token selection | 0: data movement only (bytes are counted) |
//!
//! ## Bytes
//! Weight bytes are what the weights occupy under the layer's [`Compression`] (unstructured sparsity adds a
//! 1-bit mask per weight, N:M sparsity `ceil(log2 M)` bits per kept weight; biases and norm parameters stay
//! f32 next to integer weights). Weight read bytes are what an inference reads (an embedding reads only its
//! rows). Activation bytes are the layer's inputs read and output written once, at the activation precision.

mod count;
#[cfg(feature = "serde")]
pub mod hf_config;
mod layer;
mod model;
pub mod zoo;

pub use count::{Compression, Cost, Count, Precision, Sparsity, WeightMatrix};
pub use layer::{Activation, Attention, Conv, Layer, Linear, PoolKind};
pub use model::{human_bytes, si, si_unit, Comparison, Model, Node, Report, Row, INPUT};
