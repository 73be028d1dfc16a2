//! C ABI: FLOPs, params and bytes of single layers (`#[repr(C)]` descriptors) and of models built layer by
//! layer through a `greenai_flops_model` handle.

use super::boundary::{out_ptr, slice_in, slice_out, str_in, FfiError, FfiResult};
use super::status::greenai_status;
use crate::flops::{
    zoo, Activation, Attention, Compression, Conv, Cost, Layer, Linear, Model, PoolKind, Precision, Sparsity,
};
use crate::Error;
use std::ffi::c_char;

/// The cost of a layer or model per inference (see the Rust `flops` module docs for every rule).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct greenai_cost {
    /// Multiply-accumulates executed.
    pub macs: u64,
    /// Operations: 2 x MACs plus every non-MAC operation.
    pub flops: u64,
    /// Parameters stored.
    pub params: u64,
    /// Bytes the weights occupy.
    pub weight_bytes: u64,
    /// Bytes of weights read per inference.
    pub weight_read_bytes: u64,
    /// Activation bytes read.
    pub act_read_bytes: u64,
    /// Activation bytes written.
    pub act_written_bytes: u64,
}

impl From<Cost> for greenai_cost {
    fn from(c: Cost) -> Self {
        greenai_cost {
            macs: c.macs,
            flops: c.flops,
            params: c.params,
            weight_bytes: c.weight_bytes,
            weight_read_bytes: c.weight_read_bytes,
            act_read_bytes: c.act_read_bytes,
            act_written_bytes: c.act_written_bytes,
        }
    }
}

impl From<greenai_cost> for Cost {
    fn from(c: greenai_cost) -> Self {
        Cost {
            macs: c.macs,
            flops: c.flops,
            params: c.params,
            weight_bytes: c.weight_bytes,
            weight_read_bytes: c.weight_read_bytes,
            act_read_bytes: c.act_read_bytes,
            act_written_bytes: c.act_written_bytes,
        }
    }
}

/// A 2-d convolution's hyper-parameters (input sizes come separately).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_conv2d_params {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero padding above and below.
    pub pad_h: usize,
    /// Zero padding left and right.
    pub pad_w: usize,
    /// Vertical dilation.
    pub dilation_h: usize,
    /// Horizontal dilation.
    pub dilation_w: usize,
    /// Channel groups (`in_channels` for depthwise).
    pub groups: usize,
    /// Nonzero when a bias is added.
    pub bias: u32,
}

/// A linear layer's hyper-parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_linear_params {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Nonzero when a bias is added.
    pub bias: u32,
}

/// Multi-head attention's hyper-parameters (with the q, k, v and output projections).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_attention_params {
    /// Model width.
    pub embed_dim: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (divides `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Nonzero when the projections have biases.
    pub bias: u32,
    /// Nonzero when rotary position embeddings are applied.
    pub rope: u32,
}

/// Weight precision code, one of the `GREENAI_PRECISION_*` values.
pub type greenai_precision = u32;
/// fp32.
pub const GREENAI_PRECISION_F32: greenai_precision = 0;
/// fp16.
pub const GREENAI_PRECISION_F16: greenai_precision = 1;
/// bfloat16.
pub const GREENAI_PRECISION_BF16: greenai_precision = 2;
/// int8.
pub const GREENAI_PRECISION_INT8: greenai_precision = 3;
/// int4 (activations int8).
pub const GREENAI_PRECISION_INT4: greenai_precision = 4;

pub(crate) fn precision_from_c(code: greenai_precision) -> Result<Precision, Error> {
    Ok(match code {
        GREENAI_PRECISION_F32 => Precision::F32,
        GREENAI_PRECISION_F16 => Precision::F16,
        GREENAI_PRECISION_BF16 => Precision::BF16,
        GREENAI_PRECISION_INT8 => Precision::Int8,
        GREENAI_PRECISION_INT4 => Precision::Int4,
        other => return Err(Error::invalid("precision", other, "not a GREENAI_PRECISION_* value")),
    })
}

/// How the weights are stored and run.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_compression {
    /// Weight precision (`GREENAI_PRECISION_*`).
    pub precision: greenai_precision,
    /// Unstructured sparsity in [0, 1); used when `nm_m` is 0.
    pub sparsity: f64,
    /// N of N:M sparsity (kept per group); 0 with `nm_m` 0 for none.
    pub nm_n: u32,
    /// M of N:M sparsity (group size); 0 for none.
    pub nm_m: u32,
    /// Low-rank factorisation rank; 0 for none.
    pub rank: u64,
}

fn compression_from_c(c: Option<&greenai_compression>) -> Result<Compression, Error> {
    let Some(c) = c else { return Ok(Compression::default()) };
    let sparsity = if c.nm_m != 0 || c.nm_n != 0 {
        Sparsity::NM { n: c.nm_n, m: c.nm_m }
    } else if c.sparsity == 0.0 {
        Sparsity::Dense
    } else {
        Sparsity::Unstructured(c.sparsity)
    };
    let comp = Compression {
        rank: (c.rank != 0).then_some(c.rank),
        ..Compression::dense(precision_from_c(c.precision)?).with_sparsity(sparsity)
    };
    comp.check()?;
    Ok(comp)
}

/// Refuses a convolution whose size arithmetic overflows: the kernel extent `dilation * (kernel - 1) + 1`
/// and the padded extent `input + 2 * padding` must fit in `size_t` (`input` when known), so that no
/// size wraps around into a plausible one.
fn check_conv_sizes(p: &greenai_conv2d_params, input: Option<[usize; 2]>) -> FfiResult<()> {
    let dims = [(p.kernel_h, p.dilation_h, p.pad_h, "height"), (p.kernel_w, p.dilation_w, p.pad_w, "width")];
    for (i, (k, d, pad, what)) in dims.into_iter().enumerate() {
        let extent = k.saturating_sub(1).checked_mul(d).and_then(|e| e.checked_add(1));
        let padded = pad.checked_mul(2).and_then(|p2| p2.checked_add(input.map_or(0, |x| x[i])));
        if extent.is_none() || padded.is_none() {
            return Err(Error::Overflow {
                context: "conv2d sizes",
                detail: format!(
                    "{what}: kernel {k}, dilation {d}, padding {pad}, input {:?}",
                    input.map(|x| x[i])
                ),
            }
            .into());
        }
    }
    Ok(())
}

impl From<&greenai_conv2d_params> for Layer {
    fn from(p: &greenai_conv2d_params) -> Self {
        Layer::Conv(Conv {
            in_channels: p.in_channels,
            out_channels: p.out_channels,
            kernel: vec![p.kernel_h, p.kernel_w],
            stride: vec![p.stride_h, p.stride_w],
            padding: vec![p.pad_h, p.pad_w],
            dilation: vec![p.dilation_h, p.dilation_w],
            output_padding: vec![0, 0],
            groups: p.groups,
            bias: p.bias != 0,
            transposed: false,
        })
    }
}

impl From<&greenai_linear_params> for Layer {
    fn from(p: &greenai_linear_params) -> Self {
        Layer::Linear(Linear::new(p.in_features, p.out_features).bias(p.bias != 0))
    }
}

impl From<&greenai_attention_params> for Layer {
    fn from(p: &greenai_attention_params) -> Self {
        Layer::Attention(
            Attention::new(p.embed_dim, p.num_heads)
                .kv_heads(p.num_kv_heads)
                .head_dim(p.head_dim)
                .bias(p.bias != 0)
                .rope(p.rope != 0),
        )
    }
}

/// # Safety
/// `ptr`, when non-NULL, must point to a valid `T` for the call.
unsafe fn ref_in<'a, T>(ptr: *const T, name: &'static str) -> FfiResult<&'a T> {
    // SAFETY: the caller guarantees a non-NULL ptr points to a valid T.
    unsafe { ptr.as_ref() }.ok_or(FfiError::Null(name))
}

fn layer_cost(layer: &Layer, inputs: &[Vec<usize>]) -> FfiResult<(Vec<usize>, greenai_cost)> {
    let (out, count) = layer.analyse("layer", inputs)?;
    Ok((out, count.dense_cost()?.into()))
}

/// Dense f32 cost of a 2-d convolution on `[batch, in_channels, in_h, in_w]`; writes the output shape
/// `[N, C, H, W]` to `out_shape[4]` and the cost to `*cost`.
///
/// # Safety
/// `params` must point to a valid descriptor; `out_shape` to 4 writable `size_t`; `cost` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_conv2d(
    params: *const greenai_conv2d_params,
    batch: usize,
    in_h: usize,
    in_w: usize,
    out_shape: *mut usize,
    cost: *mut greenai_cost,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (p, shape, out) = unsafe { (ref_in(params, "params")?, slice_out(out_shape, 4, "out_shape")?, out_ptr(cost, "cost")?) };
        check_conv_sizes(p, Some([in_h, in_w]))?;
        let (o, c) = layer_cost(&Layer::from(p), &[vec![batch, p.in_channels, in_h, in_w]])?;
        shape.copy_from_slice(&o);
        out.write(c);
        Ok(())
    }
}

/// Dense f32 cost of a linear layer applied to `tokens` vectors.
///
/// # Safety
/// `params` must point to a valid descriptor; `cost` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_linear(
    params: *const greenai_linear_params,
    tokens: usize,
    cost: *mut greenai_cost,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (p, out) = unsafe { (ref_in(params, "params")?, out_ptr(cost, "cost")?) };
        out.write(layer_cost(&Layer::from(p), &[vec![tokens, p.in_features]])?.1);
        Ok(())
    }
}

/// Dense f32 cost of attention: `batch` queries of `q_len` tokens attending to `kv_len` tokens
/// (`kv_len == q_len` is self-attention).
///
/// # Safety
/// `params` must point to a valid descriptor; `cost` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_attention(
    params: *const greenai_attention_params,
    batch: usize,
    q_len: usize,
    kv_len: usize,
    cost: *mut greenai_cost,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (p, out) = unsafe { (ref_in(params, "params")?, out_ptr(cost, "cost")?) };
        let inputs = [vec![batch, q_len, p.embed_dim], vec![batch, kv_len, p.embed_dim]];
        out.write(layer_cost(&Layer::from(p), &inputs)?.1);
        Ok(())
    }
}

/// A model built layer by layer; made by `greenai_flops_model_new` or `greenai_flops_zoo`, released by
/// `greenai_flops_model_free`.
pub struct greenai_flops_model {
    model: Model,
}

/// # Safety
/// `ptr`, when non-NULL, must be a live handle, not used elsewhere during the call.
unsafe fn model_mut<'a>(ptr: *mut greenai_flops_model) -> FfiResult<&'a mut Model> {
    // SAFETY: the caller guarantees a non-NULL ptr is a live, unaliased handle.
    Ok(&mut unsafe { ptr.as_mut() }.ok_or(FfiError::Null("model"))?.model)
}

/// Creates an empty model whose input has shape `input_shape[ndim]` (batch first).
///
/// # Safety
/// `input_shape` must point to `ndim` `size_t`; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_model_new(
    input_shape: *const usize,
    ndim: usize,
    out: *mut *mut greenai_flops_model,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (shape, out) = unsafe { (slice_in(input_shape, ndim, "input_shape")?, out_ptr(out, "out")?) };
        let model = Model::new("model", shape)?;
        out.write(Box::into_raw(Box::new(greenai_flops_model { model })));
        Ok(())
    }
}

/// Builds a zoo model (`"resnet50"`, `"bert_base"`, ...) for `batch` inputs; `seq_len` 0 takes the default.
///
/// # Safety
/// `name` must be a NUL-terminated string; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_zoo(
    name: *const c_char,
    batch: usize,
    seq_len: usize,
    out: *mut *mut greenai_flops_model,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (name, out) = unsafe { (str_in(name, "name")?.ok_or(FfiError::Null("name"))?, out_ptr(out, "out")?) };
        let model = zoo::by_name(name, batch, (seq_len != 0).then_some(seq_len))?;
        out.write(Box::into_raw(Box::new(greenai_flops_model { model })));
        Ok(())
    }
}

/// Releases a model; NULL is ignored.
///
/// # Safety
/// `model` must be NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_model_free(model: *mut greenai_flops_model) {
    if !model.is_null() {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, released once.
        drop(unsafe { Box::from_raw(model) });
    }
}

/// # Safety
/// As for every `greenai_flops_model_add_*`.
unsafe fn add(
    model: *mut greenai_flops_model,
    name: *const c_char,
    layer: FfiResult<Layer>,
    from: &[*const c_char],
) -> FfiResult<()> {
    // SAFETY: the caller guarantees the handle and strings.
    let (m, name) = unsafe { (model_mut(model)?, str_in(name, "name")?.ok_or(FfiError::Null("name"))?) };
    let mut inputs = Vec::new();
    for &f in from {
        // SAFETY: as above.
        if let Some(s) = unsafe { str_in(f, "from")? } {
            inputs.push(s.to_string());
        }
    }
    if inputs.is_empty() {
        inputs.push(m.last().to_string());
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    m.add_from(name, layer?, &refs)?;
    Ok(())
}

/// Appends a 2-d convolution named `name` reading the node `from` (NULL: the last layer).
///
/// # Safety
/// `model` must be a live handle; `name` (and `from` when not NULL) NUL-terminated strings; `params` valid.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_model_add_conv2d(
    model: *mut greenai_flops_model,
    name: *const c_char,
    params: *const greenai_conv2d_params,
    from: *const c_char,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let layer = unsafe { ref_in(params, "params") }
            .and_then(|p| check_conv_sizes(p, None).map(|()| Layer::from(p)));
        // SAFETY: the caller guarantees the pointers as documented.
        unsafe { add(model, name, layer, &[from]) }
    }
}

/// Appends a linear layer named `name` reading `from` (NULL: the last layer).
///
/// # Safety
/// As for `greenai_flops_model_add_conv2d`.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_model_add_linear(
    model: *mut greenai_flops_model,
    name: *const c_char,
    params: *const greenai_linear_params,
    from: *const c_char,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        unsafe { add(model, name, ref_in(params, "params").map(Layer::from), &[from]) }
    }
}

/// Appends self-attention named `name` reading `from` (NULL: the last layer), shape `[N, L, embed_dim]`.
///
/// # Safety
/// As for `greenai_flops_model_add_conv2d`.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_model_add_attention(
    model: *mut greenai_flops_model,
    name: *const c_char,
    params: *const greenai_attention_params,
    from: *const c_char,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        unsafe { add(model, name, ref_in(params, "params").map(Layer::from), &[from]) }
    }
}

/// A parameter-light operation for `greenai_flops_model_add_op`, one of the `GREENAI_OP_*` values.
pub type greenai_op = u32;
/// ReLU.
pub const GREENAI_OP_RELU: greenai_op = 0;
/// GELU (erf).
pub const GREENAI_OP_GELU: greenai_op = 1;
/// SiLU.
pub const GREENAI_OP_SILU: greenai_op = 2;
/// Sigmoid.
pub const GREENAI_OP_SIGMOID: greenai_op = 3;
/// Tanh.
pub const GREENAI_OP_TANH: greenai_op = 4;
/// Softmax over the last dimension.
pub const GREENAI_OP_SOFTMAX: greenai_op = 5;
/// Elementwise sum of `from` and `from2` (residual).
pub const GREENAI_OP_ADD: greenai_op = 6;
/// Elementwise product of `from` and `from2`.
pub const GREENAI_OP_MUL: greenai_op = 7;
/// BatchNorm; `arg` = channels.
pub const GREENAI_OP_BATCHNORM: greenai_op = 8;
/// LayerNorm with bias; `arg` = last dimension.
pub const GREENAI_OP_LAYERNORM: greenai_op = 9;
/// RMSNorm; `arg` = last dimension.
pub const GREENAI_OP_RMSNORM: greenai_op = 10;
/// Flatten from dimension `arg`.
pub const GREENAI_OP_FLATTEN: greenai_op = 11;
/// Max pooling 2-d, square window and stride `arg`.
pub const GREENAI_OP_MAXPOOL2D: greenai_op = 12;
/// Global average pooling 2-d (adaptive, output 1x1).
pub const GREENAI_OP_GLOBAL_AVGPOOL2D: greenai_op = 13;
/// Matrix product of `from` and `from2`.
pub const GREENAI_OP_MATMUL: greenai_op = 14;

fn op_layer(op: greenai_op, arg: usize) -> Result<Layer, Error> {
    Ok(match op {
        GREENAI_OP_RELU => Layer::Activation(Activation::Relu),
        GREENAI_OP_GELU => Layer::Activation(Activation::Gelu),
        GREENAI_OP_SILU => Layer::Activation(Activation::Silu),
        GREENAI_OP_SIGMOID => Layer::Activation(Activation::Sigmoid),
        GREENAI_OP_TANH => Layer::Activation(Activation::Tanh),
        GREENAI_OP_SOFTMAX => Layer::Softmax,
        GREENAI_OP_ADD => Layer::Add,
        GREENAI_OP_MUL => Layer::Mul,
        GREENAI_OP_BATCHNORM => Layer::BatchNorm { channels: arg },
        GREENAI_OP_LAYERNORM => Layer::LayerNorm { dim: arg, bias: true },
        GREENAI_OP_RMSNORM => Layer::RmsNorm { dim: arg },
        GREENAI_OP_FLATTEN => Layer::Flatten { start_dim: arg },
        GREENAI_OP_MAXPOOL2D => Layer::Pool {
            kind: PoolKind::Max,
            kernel: vec![arg; 2],
            stride: vec![arg; 2],
            padding: vec![0; 2],
        },
        GREENAI_OP_GLOBAL_AVGPOOL2D => Layer::AdaptivePool { kind: PoolKind::Avg, output: vec![1, 1] },
        GREENAI_OP_MATMUL => Layer::MatMul,
        other => return Err(Error::invalid("op", other, "not a GREENAI_OP_* value")),
    })
}

/// Appends operation `op` (with its one argument `arg`, ignored by most) named `name`, reading `from`
/// (NULL: the last layer) and, for two-input operations, `from2`.
///
/// # Safety
/// `model` must be a live handle; `name`, and `from`/`from2` when not NULL, NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_model_add_op(
    model: *mut greenai_flops_model,
    name: *const c_char,
    op: greenai_op,
    arg: usize,
    from: *const c_char,
    from2: *const c_char,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (m, first) = unsafe { (model_mut(model)?, str_in(from, "from")?) };
        let first = first.map_or_else(|| m.last().to_string(), str::to_string);
        let first = std::ffi::CString::new(first).map_err(|_| Error::invalid("from", "", "contains NUL"))?;
        let inputs: &[*const c_char] = if from2.is_null() { &[first.as_ptr()] } else { &[first.as_ptr(), from2] };
        // SAFETY: as above; `first` lives until the end of the call.
        unsafe { add(model, name, op_layer(op, arg).map_err(FfiError::from), inputs) }
    }
}

/// Writes the model's output shape to `shape[capacity]` and its rank to `*ndim`
/// (`GREENAI_ERR_BUFFER_TOO_SMALL` when `capacity` is smaller than the rank).
///
/// # Safety
/// `model` must be a live handle; `shape` must point to `capacity` writable `size_t`; `ndim` writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_model_output_shape(
    model: *mut greenai_flops_model,
    shape: *mut usize,
    capacity: usize,
    ndim: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (m, shape, ndim) = unsafe { (model_mut(model)?, slice_out(shape, capacity, "shape")?, out_ptr(ndim, "ndim")?) };
        let out = m.output();
        crate::error::check_len("shape", capacity, out.len())?;
        shape[..out.len()].copy_from_slice(out);
        ndim.write(out.len());
        Ok(())
    }
}

/// Writes the model's total cost under `compression` (NULL: dense f32) to `*cost`.
///
/// # Safety
/// `model` must be a live handle; `compression` NULL or valid; `cost` writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_flops_model_cost(
    model: *mut greenai_flops_model,
    compression: *const greenai_compression,
    cost: *mut greenai_cost,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (m, comp, out) = unsafe { (model_mut(model)?, compression.as_ref(), out_ptr(cost, "cost")?) };
        let comp = compression_from_c(comp)?;
        out.write(m.report(&comp)?.total.into());
        Ok(())
    }
}
