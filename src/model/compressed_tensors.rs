//! compressed-tensors: the layout llm-compressor writes and vLLM and transformers load, out and in.
//!
//! Written as compressed-tensors 0.20 lays it out (the rules re-implemented, not its code):
//! - W8A8 (`int-quantized`): `M.weight` int8, `M.weight_scale` `[rows, 1]` in the model's float dtype,
//!   input activations quantized per token at run time (only the config says so).
//! - W4A16 / W8A16 (`pack-quantized`): `M.weight_packed` int32 `[rows, ceil(cols * bits / 32)]`, the
//!   values offset by `2^(bits-1)` and packed densely LSB first along the input dimension,
//!   `M.weight_scale` `[rows, groups]`, `M.weight_shape` int64 `[rows, cols]`, and when asymmetric
//!   `M.weight_zero_point` int32 packed the same way along the output dimension (`[ceil(rows * bits /
//!   32), groups]`); `M.weight_g_idx` int32 `[cols]` with GPTQ's activation order (`actorder: group`).
//!
//! The quantization math is the library's round-to-nearest: min and max of each group with 0 kept in
//! range, symmetric scale `amax / ((qmax - qmin) / 2)`, asymmetric scale `(max - min) / (qmax - qmin)`
//! and zero point `qmin - min / scale` clamped and rounded half to even; every operation rounded to the
//! model's dtype as torch does, a zero scale replaced by the dtype's epsilon, and
//! `q = round_half_even(clamp(x / scale + zero_point, qmin, qmax))`. Dequantizing is
//! `(q - zero_point) * scale`, again in the model's dtype.
//!
//! The per-tensor functions ([`quantize_weight`], [`pack_gptq`], [`dequantize_module`]) do not depend on
//! how a model is walked; [`compress_model`] writes a whole model (a file or a folder, sharded or not)
//! as a compressed-tensors folder through a [`ModelWriter`], and [`decompress_model`] turns one back
//! into a float folder the same way, reading through [`CompressedModel`](super::CompressedModel).

use super::compress::copy_tensor;
use super::write::OutTensor;
use super::{Model, ModelWriter, TensorInfo, CONFIG_FILE};
use crate::error::try_vec;
use crate::quant::GptqWeight;
use crate::{Error, Result};
use half::{bf16, f16};
use safetensors::Dtype;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The compressed-tensors version whose layout and config greenai writes.
pub const COMPRESSED_TENSORS_VERSION: &str = "0.20.1";

/// A preset of llm-compressor (`quant_scheme.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// int8 weights per channel, int8 dynamic per-token activations (`int-quantized`).
    W8A8,
    /// 4-bit weights packed in int32, float activations (`pack-quantized`).
    W4A16,
    /// 8-bit weights packed in int32, float activations (`pack-quantized`).
    W8A16,
}

impl Scheme {
    /// The scheme named `w8a8`, `w4a16` or `w8a16` (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "w8a8" => Some(Scheme::W8A8),
            "w4a16" => Some(Scheme::W4A16),
            "w8a16" => Some(Scheme::W8A16),
            _ => None,
        }
    }

    /// Bits per weight.
    pub fn bits(self) -> u32 {
        match self {
            Scheme::W8A8 | Scheme::W8A16 => 8,
            Scheme::W4A16 => 4,
        }
    }

    /// The compression format name in the config.
    pub fn format(self) -> &'static str {
        match self {
            Scheme::W8A8 => "int-quantized",
            Scheme::W4A16 | Scheme::W8A16 => "pack-quantized",
        }
    }
}

/// How weights share a scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One scale per output channel.
    Channel,
    /// One scale per output channel and group of this many consecutive inputs.
    Group(usize),
}

/// GPTQ's activation ordering as the config names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActOrder {
    /// Columns quantized in activation order, groups still contiguous (`actorder: weight`, no g_idx).
    Weight,
    /// Groups follow the activation order; every module stores `weight_g_idx` (`actorder: group`).
    Group,
}

/// A complete weight quantization scheme: preset, strategy, symmetry and activation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtScheme {
    /// The preset.
    pub scheme: Scheme,
    /// Scale sharing.
    pub strategy: Strategy,
    /// Symmetric (no zero point) or not.
    pub symmetric: bool,
    /// GPTQ's activation order, `None` for round to nearest.
    pub act_order: Option<ActOrder>,
}

impl CtScheme {
    /// llm-compressor's preset: W8A8 per channel, W4A16 and W8A16 in groups of 128; symmetric.
    pub fn preset(scheme: Scheme) -> Self {
        let strategy = match scheme {
            Scheme::W8A8 => Strategy::Channel,
            Scheme::W4A16 | Scheme::W8A16 => Strategy::Group(128),
        };
        CtScheme { scheme, strategy, symmetric: true, act_order: None }
    }

    fn qrange(&self) -> (f32, f32) {
        let half = (1i32 << (self.scheme.bits() - 1)) as f32;
        (-half, half - 1.0)
    }
}

/// `x` rounded to `dtype` (F32, F16 or BF16, nearest even) and back: what torch stores.
fn round_to(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::F16 => f16::from_f32(x).to_f32(),
        Dtype::BF16 => bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// torch's `finfo(dtype).eps`, the scale that replaces a zero scale.
fn epsilon(dtype: Dtype) -> f32 {
    match dtype {
        Dtype::F16 => f32::from_bits(0x3a80_0000), // 2^-10
        Dtype::BF16 => 0.0078125,                  // 2^-7
        _ => f32::EPSILON,
    }
}

fn check_float_dtype(name: &str, dtype: Dtype) -> Result<()> {
    match dtype {
        Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(()),
        other => Err(Error::invalid(
            "dtype",
            format!("{other:?}"),
            format!("tensor `{name}`: compressed-tensors scales are F32, F16 or BF16"),
        )),
    }
}

fn float_bytes(dtype: Dtype, values: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        Dtype::BF16 => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
    }
}

fn tensor(dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> OutTensor<'static> {
    OutTensor { dtype, shape, bytes: Cow::Owned(bytes) }
}

/// Whether llm-compressor's `targets: ["Linear"]` takes this tensor: a 2-D `*.weight` that is not an
/// embedding or the output head (`lm_head`, `embed_out`), which the presets leave in `ignore`.
pub fn is_linear_weight(name: &str, shape: &[usize]) -> bool {
    let Some(module) = name.strip_suffix(".weight") else { return false };
    let last = module.rsplit('.').next().unwrap_or(module);
    shape.len() == 2 && !module.contains("embed") && !matches!(last, "lm_head" | "embed_out" | "wte" | "wpe")
}

/// The dense bit stream of each row of `values` (`rows x cols`, signed `bits`-bit integers offset by
/// `2^(bits-1)`), LSB first, in `ceil(cols * bits / 32)` int32 words per row: compressed-tensors'
/// `pack_to_int32` along the last dimension.
pub fn pack_int32(values: &[i8], rows: usize, cols: usize, bits: u32) -> Vec<i32> {
    let words = (cols * bits as usize).div_ceil(32);
    let offset = 1i32 << (bits - 1);
    let mask = (1u32 << bits) - 1;
    let mut out = vec![0u32; rows * words];
    for r in 0..rows {
        let row = &mut out[r * words..(r + 1) * words];
        for (c, &v) in values[r * cols..(r + 1) * cols].iter().enumerate() {
            let u = ((i32::from(v) + offset) as u32) & mask;
            let bit = c * bits as usize;
            let (w, off) = (bit / 32, (bit % 32) as u32);
            row[w] |= u << off;
            if off + bits > 32 {
                row[w + 1] |= u >> (32 - off);
            }
        }
    }
    out.into_iter().map(|w| w as i32).collect()
}

/// The inverse of [`pack_int32`]: `rows x cols` signed values from `rows x ceil(cols * bits / 32)` words.
pub fn unpack_int32(words: &[i32], rows: usize, cols: usize, bits: u32) -> Vec<i8> {
    let per_row = (cols * bits as usize).div_ceil(32);
    let offset = 1i32 << (bits - 1);
    let mask = (1u32 << bits) - 1;
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let row = &words[r * per_row..(r + 1) * per_row];
        for c in 0..cols {
            let bit = c * bits as usize;
            let (w, off) = (bit / 32, (bit % 32) as u32);
            let mut u = (row[w] as u32) >> off;
            if off + bits > 32 {
                u |= (row[w + 1] as u32) << (32 - off);
            }
            out.push(((u & mask) as i32 - offset) as i8);
        }
    }
    out
}

fn transpose<T: Copy>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| values[r * cols + c])).collect()
}

/// Zero points `rows x groups` packed along the rows (compressed-tensors' `packed_dim=0`):
/// `ceil(rows * bits / 32) x groups` words.
pub fn pack_int32_dim0(values: &[i8], rows: usize, cols: usize, bits: u32) -> Vec<i32> {
    let packed = pack_int32(&transpose(values, rows, cols), cols, rows, bits);
    transpose(&packed, cols, (rows * bits as usize).div_ceil(32))
}

/// The inverse of [`pack_int32_dim0`].
pub fn unpack_int32_dim0(words: &[i32], rows: usize, cols: usize, bits: u32) -> Vec<i8> {
    let packed_rows = (rows * bits as usize).div_ceil(32);
    let unpacked = unpack_int32(&transpose(words, packed_rows, cols), cols, rows, bits);
    transpose(&unpacked, cols, rows)
}

/// Quantized weight of one module before encoding: signed levels, scales and zero points per group.
struct Levels {
    q: Vec<i8>,
    scales: Vec<f32>,
    zeros: Option<Vec<i8>>,
    groups: usize,
    g_idx: Option<Vec<i32>>,
}

fn groups_of(name: &str, cols: usize, strategy: Strategy) -> Result<(usize, usize)> {
    match strategy {
        Strategy::Channel => Ok((1, cols.max(1))),
        Strategy::Group(0) => Err(Error::invalid("group size", 0, "must be positive")),
        Strategy::Group(gs) if !cols.is_multiple_of(gs) => Err(Error::invalid(
            "group size",
            gs,
            format!(
                "tensor `{name}` has {cols} inputs, not a multiple of the group size (compressed-tensors \
                 requires it): choose another group size or leave the tensor out with --skip"
            ),
        )),
        Strategy::Group(gs) => Ok((cols / gs, gs)),
    }
}

/// Round-to-nearest quantization of one weight, exactly as compressed-tensors computes it for `scheme`
/// in the model dtype `dtype` (the values must be representable in it, as they are when read from it).
fn rtn_levels(
    name: &str,
    w: &[f32],
    rows: usize,
    cols: usize,
    dtype: Dtype,
    scheme: &CtScheme,
) -> Result<Levels> {
    let (groups, gs) = groups_of(name, cols, scheme.strategy)?;
    let (qmin, qmax) = scheme.qrange();
    let rd = |x: f32| round_to(dtype, x);
    let mut q = try_vec(rows * cols, 0i8)?;
    let mut scales = try_vec(rows * groups, 0f32)?;
    let mut zeros = (!scheme.symmetric).then(|| vec![0i8; rows * groups]);
    for r in 0..rows {
        for g in 0..groups {
            let seg = &w[r * cols + g * gs..r * cols + (g + 1) * gs];
            let (mn, mx) = seg.iter().fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
            let (scale, zp) = if scheme.symmetric {
                (rd(mn.abs().max(mx) / ((qmax - qmin) / 2.0)), 0.0)
            } else {
                let scale = rd(rd(mx - mn) / (qmax - qmin));
                let zp = rd(qmin - rd(mn / scale)).clamp(qmin, qmax).round_ties_even();
                // 0/0 when the group is all zero: torch's int8 cast of NaN; any level gives 0 back.
                (scale, if zp.is_nan() { 0.0 } else { zp })
            };
            let scale = if scale == 0.0 { epsilon(dtype) } else { scale };
            scales[r * groups + g] = scale;
            if let Some(z) = zeros.as_mut() {
                z[r * groups + g] = zp as i8;
            }
            for (k, &x) in seg.iter().enumerate() {
                let v = rd(rd(x / scale) + zp).clamp(qmin, qmax).round_ties_even();
                q[r * cols + g * gs + k] = v as i8;
            }
        }
    }
    Ok(Levels { q, scales, zeros, groups, g_idx: None })
}

fn encode(
    module: &str,
    rows: usize,
    cols: usize,
    dtype: Dtype,
    scheme: &CtScheme,
    lv: Levels,
) -> Vec<(String, OutTensor<'static>)> {
    let bits = scheme.scheme.bits();
    let mut out = Vec::with_capacity(5);
    let scale_shape = vec![rows, lv.groups];
    match scheme.scheme {
        Scheme::W8A8 => {
            out.push((
                format!("{module}.weight"),
                tensor(Dtype::I8, vec![rows, cols], lv.q.iter().map(|&v| v as u8).collect()),
            ));
            if let Some(z) = &lv.zeros {
                out.push((
                    format!("{module}.weight_zero_point"),
                    tensor(Dtype::I8, scale_shape.clone(), z.iter().map(|&v| v as u8).collect()),
                ));
            }
        }
        Scheme::W4A16 | Scheme::W8A16 => {
            let packed = pack_int32(&lv.q, rows, cols, bits);
            let words = (cols * bits as usize).div_ceil(32);
            out.push((
                format!("{module}.weight_packed"),
                tensor(Dtype::I32, vec![rows, words], packed.iter().flat_map(|w| w.to_le_bytes()).collect()),
            ));
            let shape_bytes = [rows as i64, cols as i64].iter().flat_map(|d| d.to_le_bytes()).collect();
            out.push((format!("{module}.weight_shape"), tensor(Dtype::I64, vec![2], shape_bytes)));
            if let Some(z) = &lv.zeros {
                let packed = pack_int32_dim0(z, rows, lv.groups, bits);
                let zrows = (rows * bits as usize).div_ceil(32);
                out.push((
                    format!("{module}.weight_zero_point"),
                    tensor(
                        Dtype::I32,
                        vec![zrows, lv.groups],
                        packed.iter().flat_map(|w| w.to_le_bytes()).collect(),
                    ),
                ));
            }
        }
    }
    out.push((format!("{module}.weight_scale"), tensor(dtype, scale_shape, float_bytes(dtype, &lv.scales))));
    if let Some(g) = &lv.g_idx {
        out.push((
            format!("{module}.weight_g_idx"),
            tensor(Dtype::I32, vec![cols], g.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ));
    }
    out
}

fn module_of(weight_name: &str) -> Result<&str> {
    weight_name
        .strip_suffix(".weight")
        .ok_or_else(|| Error::invalid("tensor", weight_name, "a quantized weight's name ends in `.weight`"))
}

fn check_values(name: &str, w: &[f32], rows: usize, cols: usize) -> Result<()> {
    if rows.checked_mul(cols) != Some(w.len()) {
        return Err(Error::ShapeMismatch {
            context: "compressed-tensors weight",
            expected: vec![rows, cols],
            actual: vec![w.len()],
        });
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid("tensor", name, format!("element {i} is {}: cannot quantize", w[i])));
    }
    Ok(())
}

/// The tensors that replace the Linear weight `name` (`rows x cols` values read from a tensor of the
/// model's float dtype `dtype`) under `scheme`, quantized with round to nearest as llm-compressor does.
pub fn quantize_weight(
    name: &str,
    w: &[f32],
    rows: usize,
    cols: usize,
    dtype: Dtype,
    scheme: &CtScheme,
) -> Result<Vec<(String, OutTensor<'static>)>> {
    check_float_dtype(name, dtype)?;
    check_values(name, w, rows, cols)?;
    if scheme.act_order == Some(ActOrder::Group) {
        return Err(Error::invalid("act order", "group", "needs GPTQ's g_idx: use pack_gptq"));
    }
    let module = module_of(name)?;
    let levels = rtn_levels(name, w, rows, cols, dtype, scheme)?;
    Ok(encode(module, rows, cols, dtype, scheme, levels))
}

/// The tensors of a GPTQ result (AutoGPTQ's unsigned `q`, `scales`, `zeros`, `g_idx`) for the Linear
/// weight `name` under `scheme`: levels and zero points shifted by `2^(bits-1)`, scales rounded to the
/// model dtype `dtype`, `weight_g_idx` written when `scheme.act_order` is [`ActOrder::Group`] (a
/// `g_idx` out of column order is refused otherwise). The group count must match `scheme.strategy`;
/// a symmetric scheme needs every zero at `2^(bits-1)`.
pub fn pack_gptq(
    name: &str,
    w: &GptqWeight,
    dtype: Dtype,
    scheme: &CtScheme,
) -> Result<Vec<(String, OutTensor<'static>)>> {
    check_float_dtype(name, dtype)?;
    let module = module_of(name)?;
    let (rows, cols) = (w.rows, w.cols);
    let (groups, gs) = groups_of(name, cols, scheme.strategy)?;
    let bits = scheme.scheme.bits();
    let half = 1i32 << (bits - 1);
    if w.groups != groups
        || w.q.len() != rows * cols
        || w.scales.len() != rows * groups
        || w.zeros.len() != rows * groups
        || w.g_idx.len() != cols
    {
        return Err(Error::invalid(
            "GPTQ weight",
            name,
            format!("sizes do not match {rows} x {cols} in {groups} groups of the scheme"),
        ));
    }
    let mut q = try_vec(rows * cols, 0i8)?;
    for (d, &v) in q.iter_mut().zip(&w.q) {
        if i32::from(v) >= 2 * half {
            return Err(Error::invalid(
                "GPTQ weight",
                name,
                format!("level {v} needs more than {bits} bits"),
            ));
        }
        *d = (i32::from(v) - half) as i8;
    }
    let mut zeros = Vec::with_capacity(w.zeros.len());
    for &z in &w.zeros {
        if z.fract() != 0.0 || !(0.0..(2 * half) as f32).contains(&z) {
            return Err(Error::invalid(
                "GPTQ weight",
                name,
                format!("zero point {z} is not an integer level of {bits} bits"),
            ));
        }
        zeros.push((z as i32 - half) as i8);
    }
    if scheme.symmetric && zeros.iter().any(|&z| z != 0) {
        return Err(Error::invalid("GPTQ weight", name, "asymmetric zero points under a symmetric scheme"));
    }
    let in_order = w.g_idx.iter().enumerate().all(|(c, &g)| g as usize == c / gs);
    if let Some(c) = w.g_idx.iter().position(|&g| g < 0 || g as usize >= groups) {
        return Err(Error::invalid(
            "GPTQ weight",
            name,
            format!("g_idx[{c}] = {} is not a group", w.g_idx[c]),
        ));
    }
    if !in_order && scheme.act_order != Some(ActOrder::Group) {
        return Err(Error::invalid(
            "GPTQ weight",
            name,
            "g_idx is not in column order: the scheme needs act order `group`",
        ));
    }
    let scales = w
        .scales
        .iter()
        .map(|&s| match round_to(dtype, s) {
            0.0 => epsilon(dtype),
            s => s,
        })
        .collect();
    let levels = Levels {
        q,
        scales,
        zeros: (!scheme.symmetric).then_some(zeros),
        groups,
        g_idx: (scheme.act_order == Some(ActOrder::Group)).then(|| w.g_idx.clone()),
    };
    Ok(encode(module, rows, cols, dtype, scheme, levels))
}

fn args_json(scheme: &CtScheme) -> Value {
    let (group_size, strategy) = match scheme.strategy {
        Strategy::Channel => (Value::Null, "channel"),
        Strategy::Group(gs) => (json!(gs), "group"),
    };
    let mut args = json!({
        "num_bits": scheme.scheme.bits(),
        "type": "int",
        "symmetric": scheme.symmetric,
        "group_size": group_size,
        "strategy": strategy,
        "dynamic": false,
    });
    if let Some(order) = scheme.act_order {
        args["actorder"] = json!(match order {
            ActOrder::Weight => "weight",
            ActOrder::Group => "group",
        });
    }
    args
}

/// The `quantization_config` block llm-compressor writes for `scheme`, with `ignore` (module names
/// left unquantized) sorted.
pub fn quantization_config(scheme: &CtScheme, ignore: &BTreeSet<String>) -> Value {
    let input = match scheme.scheme {
        Scheme::W8A8 => json!({
            "num_bits": 8, "type": "int", "symmetric": true, "group_size": null,
            "strategy": "token", "dynamic": true,
        }),
        Scheme::W4A16 | Scheme::W8A16 => Value::Null,
    };
    json!({
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": args_json(scheme),
                "input_activations": input,
                "output_activations": null,
                "format": scheme.scheme.format(),
            }
        },
        "format": scheme.scheme.format(),
        "global_compression_ratio": null,
        "ignore": ignore.iter().collect::<Vec<_>>(),
        "kv_cache_scheme": null,
        "moe_sparsity_config": null,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "sparsity_config": {},
        "transform_config": {},
        "version": COMPRESSED_TENSORS_VERSION,
    })
}

/// What [`compress_model`] and [`decompress_model`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtReport {
    /// Modules quantized (compress) or dequantized (decompress).
    pub modules: usize,
    /// Modules left unquantized (the config's `ignore`).
    pub ignored: usize,
    /// Tensor bytes read.
    pub bytes_before: usize,
    /// Tensor bytes written.
    pub bytes_after: usize,
}

/// Parses a `config.json`'s text (`what` names it in messages); it must be a JSON object.
pub fn parse_config(text: &str, what: &str) -> Result<Value> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Error::format(what, format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::format(what, "not a JSON object"));
    }
    Ok(value)
}

/// The `config.json` of `model`: the folder's, or for a single file the one beside it (a format
/// error when there is none: compressed-tensors needs the model's config).
pub fn model_config(model: &Model) -> Result<Value> {
    if let Some(text) = model.config_json() {
        return parse_config(text, CONFIG_FILE);
    }
    let beside = model.path().parent().map(|dir| dir.join(CONFIG_FILE));
    match beside.filter(|p| !model.is_dir() && p.is_file()) {
        Some(path) => read_config(&path),
        None => Err(Error::format(
            model.path().display().to_string(),
            "no config.json (in the folder, or beside the file): compressed-tensors needs the model's config",
        )),
    }
}

/// The tensors [`quantize_weight`] writes for a module beside its weight.
const COMPANIONS: [&str; 5] =
    ["weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx"];

/// Writes `input` (a file or a folder, sharded or not; `config` its `config.json`, see
/// [`model_config`]) as the compressed-tensors model folder `output`: every Linear weight kept by
/// `keep` (called with module names) quantized under `scheme`, its tensors in the shard of its
/// weight; other tensors copied unchanged; `config.json` with the `quantization_config` block (2-D
/// weights left in float, and `lm_head` of a causal LM, in its `ignore`); the index and every other
/// file mirrored. The output is written tensor by tensor through a [`ModelWriter`] (memory bounded
/// by the largest tensor; all or nothing, also on a signal); `progress` gets the input bytes done
/// and their total.
pub fn compress_model(
    input: &Model,
    config: &Value,
    output: &Path,
    scheme: &CtScheme,
    keep: &dyn Fn(&str) -> bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CtReport> {
    let mut config = config.clone();
    let object = config.as_object_mut().ok_or_else(|| Error::format(CONFIG_FILE, "not a JSON object"))?;
    if object.contains_key("quantization_config") {
        return Err(Error::format(
            CONFIG_FILE,
            "the model is already quantized (it has a quantization_config)",
        ));
    }
    let quantized = |info: &TensorInfo| {
        is_linear_weight(&info.name, &info.shape)
            && info.is_float()
            && info.dtype != Dtype::F64
            && info.name.strip_suffix(".weight").is_some_and(keep)
    };
    // Refused before any work: a group size that does not divide a weight's inputs, a name taken.
    for info in input.tensors().filter(|i| quantized(i)) {
        groups_of(&info.name, info.shape[1], scheme.strategy)?;
        let module = module_of(&info.name)?;
        if let Some(taken) =
            COMPANIONS.iter().map(|c| format!("{module}.{c}")).find(|c| input.info(c).is_some())
        {
            return Err(Error::format(
                input.path().display().to_string(),
                format!(
                    "quantizing `{}` writes `{taken}`, which the model already has: is it quantized already? \
                     Leave `{module}` in float with --skip",
                    info.name
                ),
            ));
        }
    }
    let mut writer = ModelWriter::create_folder(input, output)?;
    let (mut done, total) = (0u64, input.data_bytes());
    let mut ignore = BTreeSet::new();
    let mut report = CtReport::default();
    for shard in input.shards() {
        let mut out = writer.shard(shard)?;
        for info in shard.tensors() {
            report.bytes_before += info.byte_len as usize;
            if quantized(info) {
                let values = shard.read_f32(info)?;
                let tensors =
                    quantize_weight(&info.name, &values, info.shape[0], info.shape[1], info.dtype, scheme)?;
                drop(values);
                report.modules += 1;
                for (name, t) in &tensors {
                    report.bytes_after += t.bytes.len();
                    out.add(name, t)?;
                }
            } else {
                if let (Some(m), 2) = (info.name.strip_suffix(".weight"), info.shape.len()) {
                    ignore.insert(m.to_string());
                }
                report.bytes_after += info.byte_len as usize;
                copy_tensor(shard, info, &mut out)?;
            }
            done += info.byte_len;
            progress(done, total);
        }
        writer.finish_shard(shard, out, &torch_metadata())?;
    }
    let causal = object
        .get("architectures")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v.as_str().is_some_and(|s| s.ends_with("ForCausalLM"))));
    if causal {
        ignore.insert("lm_head".to_string());
    }
    report.ignored = ignore.len();
    object.insert("quantization_config".into(), quantization_config(scheme, &ignore));
    write_config(&mut writer, &config)?;
    writer.commit()?;
    Ok(report)
}

/// The safetensors metadata transformers expects of a PyTorch checkpoint.
pub fn torch_metadata() -> HashMap<String, String> {
    HashMap::from([("format".to_string(), "pt".to_string())])
}

/// Writes `config` as the output folder's `config.json` (pretty, keys sorted as llm-compressor
/// writes them).
pub fn write_config(writer: &mut ModelWriter, config: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(config).map_err(|e| Error::format(CONFIG_FILE, e.to_string()))?;
    writer.write_file(Path::new(CONFIG_FILE), text.as_bytes())
}

/// The tensors of one compressed module, as read from a file: names are local (`weight_packed`,
/// `weight_scale`, ...).
#[derive(Clone, Debug)]
pub struct ModuleTensors<'a> {
    /// `weight` (int-quantized, int8) or `weight_packed` (pack-quantized, int32).
    pub weight: super::TensorEntry<'a>,
    /// `weight_scale`, float.
    pub scale: super::TensorEntry<'a>,
    /// `weight_zero_point`, when asymmetric.
    pub zero_point: Option<super::TensorEntry<'a>>,
    /// `weight_shape`, with `weight_packed`.
    pub shape: Option<super::TensorEntry<'a>>,
    /// `weight_g_idx`, with activation order `group`.
    pub g_idx: Option<super::TensorEntry<'a>>,
}

impl ModuleTensors<'_> {
    /// The names of the module's tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        [
            Some(&self.weight),
            Some(&self.scale),
            self.zero_point.as_ref(),
            self.shape.as_ref(),
            self.g_idx.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|t| t.name)
    }
}

fn ints(t: &super::TensorEntry<'_>, module: &str) -> Result<Vec<i64>> {
    let w = t.dtype.size();
    let read = |b: &[u8]| -> i64 {
        match t.dtype {
            Dtype::I8 => i64::from(b[0] as i8),
            Dtype::U8 => i64::from(b[0]),
            Dtype::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            Dtype::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
        }
    };
    match t.dtype {
        Dtype::I8 | Dtype::U8 | Dtype::I16 | Dtype::I32 | Dtype::I64 => {
            Ok(t.bytes.chunks_exact(w).map(read).collect())
        }
        other => Err(Error::format(
            format!("module `{module}`"),
            format!("`{}` is {other:?}, expected integers", t.name),
        )),
    }
}

pub(crate) fn bad(module: &str, detail: impl Into<String>) -> Error {
    Error::format(format!("compressed-tensors module `{module}`"), detail)
}

/// One compressed module's weight as stored: its layout and, when read, its integer values and
/// quantization parameters (one scale per row and group, or one for the tensor).
#[derive(Clone, Debug)]
pub struct DecodedModule {
    /// Output channels.
    pub rows: usize,
    /// Input channels.
    pub cols: usize,
    /// Bits per value (8 for `int-quantized`, 4 or 8 packed).
    pub bits: u32,
    /// Scale groups per row (1 for channel or tensor strategy).
    pub groups: usize,
    /// Columns per group (`cols` for channel or tensor strategy).
    pub group_size: usize,
    /// Whether one scale serves the whole tensor.
    pub per_tensor: bool,
    /// Whether the weight is packed into int32 (`pack-quantized`).
    pub packed: bool,
    /// The dtype of the scales, which is the restored weight's.
    pub dtype: Dtype,
    /// The values, `rows x cols` row-major (empty when only the layout was read).
    pub q: Vec<i8>,
    /// The scales as f32 (exact: they are F32, F16 or BF16), `rows x groups` or one.
    pub scales: Vec<f32>,
    /// The zero points, one per scale, when asymmetric.
    pub zeros: Option<Vec<i8>>,
    /// Each column's group, with activation order `group`.
    pub g_idx: Option<Vec<usize>>,
}

impl DecodedModule {
    /// The float weight (`rows x cols`, row-major, values representable in [`dtype`](Self::dtype)),
    /// as compressed-tensors dequantizes it: `(q - zero_point[g]) * scale[g]`, rounding to the dtype
    /// after each step, with `g` from `g_idx` or the column's group.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        let (rows, cols, groups, gs) = (self.rows, self.cols, self.groups, self.group_size);
        let rd = |x: f32| round_to(self.dtype, x);
        let mut out = try_vec(rows * cols, 0f32)?;
        for r in 0..rows {
            for c in 0..cols {
                let g = self.g_idx.as_ref().map_or(c / gs, |g| g[c]);
                let k = if self.per_tensor { 0 } else { r * groups + g };
                let zp = self.zeros.as_ref().map_or(0.0, |z| f32::from(z[k]));
                out[r * cols + c] = rd(rd(f32::from(self.q[r * cols + c]) - zp) * self.scales[k]);
            }
        }
        Ok(out)
    }

    /// Whether the values are 8-bit with one scale per output channel (or one for the tensor) and
    /// columns in order: an int8 linear layer as [`QuantLinear`](crate::kernels::gemm_int8::QuantLinear) runs it.
    pub fn is_int8_per_channel(&self) -> bool {
        self.bits == 8 && (self.groups == 1 || self.per_tensor) && self.g_idx.is_none()
    }
}

/// Reads and checks one compressed module: its layout from the tensors' shapes (and the small
/// `weight_shape`), and with `values` also its integer values and parameters. `bits` and
/// `group_size` come from the config (`None` when it does not say; they are then read from the
/// shapes). Without `values` the weight's bytes are not looked at.
pub fn decode_module(
    module: &str,
    t: &ModuleTensors<'_>,
    bits: Option<u32>,
    group_size: Option<usize>,
    values: bool,
) -> Result<DecodedModule> {
    let dtype = t.scale.dtype;
    if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(bad(module, format!("weight_scale is {dtype:?}: expected F32, F16 or BF16")));
    }
    let scales = t.scale.to_f32()?;
    let (rows, cols, bits, q): (usize, usize, u32, Vec<i8>) = match t.weight.dtype {
        Dtype::I8 => {
            let [rows, cols] = t.weight.shape else {
                return Err(bad(module, format!("weight has shape {:?}, expected 2-D", t.weight.shape)));
            };
            let q = if values { t.weight.bytes.iter().map(|&b| b as i8).collect() } else { Vec::new() };
            (*rows, *cols, bits.unwrap_or(8), q)
        }
        Dtype::I32 => {
            let shape = t.shape.as_ref().ok_or_else(|| bad(module, "weight_packed without weight_shape"))?;
            let dims = ints(shape, module)?;
            let [rows, cols] = dims[..] else {
                return Err(bad(module, format!("weight_shape holds {dims:?}, expected [rows, cols]")));
            };
            let (rows, cols) = (
                usize::try_from(rows).map_err(|_| bad(module, "negative weight_shape"))?,
                usize::try_from(cols).map_err(|_| bad(module, "negative weight_shape"))?,
            );
            // Every count below (values, packed bits) fits in a usize.
            crate::error::checked_product("weight_shape", &[rows, cols, 32])
                .map_err(|_| bad(module, format!("weight_shape [{rows}, {cols}] is too large")))?;
            let [prows, words] = t.weight.shape else {
                return Err(bad(
                    module,
                    format!("weight_packed has shape {:?}, expected 2-D", t.weight.shape),
                ));
            };
            let fits = |b: u32| (cols * b as usize).div_ceil(32) == *words;
            let bits = match bits {
                Some(b) if (1..=8).contains(&b) => b,
                Some(b) => return Err(bad(module, format!("num_bits {b} cannot be packed (1 to 8)"))),
                None => match (1..=8).filter(|&b| fits(b)).collect::<Vec<_>>()[..] {
                    [b] => b,
                    _ => {
                        return Err(bad(
                            module,
                            "the config does not say num_bits and the packed width does not tell",
                        ))
                    }
                },
            };
            if *prows != rows || !fits(bits) {
                return Err(bad(module, format!(
                    "weight_packed has shape {:?}; a {rows} x {cols} weight of {bits} bits packs into [{rows}, {}]",
                    t.weight.shape, (cols * bits as usize).div_ceil(32)
                )));
            }
            if !values {
                (rows, cols, bits, Vec::new())
            } else {
                let words: Vec<i32> = t
                    .weight
                    .bytes
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (rows, cols, bits, unpack_int32(&words, rows, cols, bits))
            }
        }
        Dtype::F8_E4M3 | Dtype::F8_E5M2 => return Err(bad(
            module,
            "float-quantized (FP8) weights are not supported: greenai reads int-quantized and pack-quantized",
        )),
        other => return Err(bad(module, format!("weight is {other:?}: expected int8 or packed int32"))),
    };
    // Scales: [rows, groups], [rows] or one for the tensor.
    let groups = match t.scale.shape {
        [r, g] if *r == rows => *g,
        [r] if *r == rows => 1,
        [] | [1] | [1, 1] => 1,
        s => return Err(bad(module, format!("weight_scale has shape {s:?} for a {rows} x {cols} weight"))),
    };
    let per_tensor = scales.len() == 1 && rows != 1;
    if groups == 0 && cols > 0 {
        return Err(bad(module, "weight_scale has no groups"));
    }
    let zeros: Option<Vec<i8>> = match &t.zero_point {
        None => None,
        Some(z) if t.weight.dtype == Dtype::I32 && z.dtype == Dtype::I32 => {
            let zrows = (rows * bits as usize).div_ceil(32);
            if z.shape != [zrows, groups] {
                return Err(bad(module, format!("weight_zero_point has shape {:?}; {rows} x {groups} zero points of {bits} bits pack into [{zrows}, {groups}]", z.shape)));
            }
            let words: Vec<i32> =
                z.bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            Some(unpack_int32_dim0(&words, rows, groups, bits))
        }
        Some(z) => {
            let v = ints(z, module)?;
            if v.len() != scales.len() {
                return Err(bad(
                    module,
                    format!("weight_zero_point has {} values for {} scales", v.len(), scales.len()),
                ));
            }
            v.iter()
                .map(|&x| {
                    i8::try_from(x).map_err(|_| bad(module, format!("zero point {x} is out of int8 range")))
                })
                .collect::<Result<_>>()
                .map(Some)?
        }
    };
    let g_idx: Option<Vec<usize>> = match &t.g_idx {
        None => None,
        Some(g) => {
            let v = ints(g, module)?;
            if v.len() != cols {
                return Err(bad(module, format!("weight_g_idx has {} entries for {cols} columns", v.len())));
            }
            if v.iter().any(|&x| x < 0) {
                None // uninitialised (-1): column order, as compressed-tensors reads it
            } else {
                Some(v.into_iter().map(|x| x as usize).collect())
            }
        }
    };
    let gs = match (group_size, groups) {
        (_, 1) => cols.max(1),
        (Some(gs), g) if gs > 0 && cols.div_ceil(gs) == g => gs,
        (_, g) if cols.is_multiple_of(g) => cols / g,
        _ => return Err(bad(module, format!("{cols} columns do not split into {groups} groups"))),
    };
    if let Some(c) = g_idx.as_ref().and_then(|g| g.iter().position(|&x| x >= groups)) {
        return Err(bad(module, format!("weight_g_idx[{c}] names a group beyond {groups}")));
    }
    if values && q.len() != rows * cols {
        return Err(bad(module, format!("weight holds {} values for a {rows} x {cols} weight", q.len())));
    }
    Ok(DecodedModule {
        rows,
        cols,
        bits,
        groups,
        group_size: gs,
        per_tensor,
        packed: t.weight.dtype == Dtype::I32,
        dtype,
        q,
        scales,
        zeros,
        g_idx,
    })
}

/// The float weight of one compressed module (`rows x cols`, row-major, in the scale's dtype, returned
/// as f32 values representable in it): [`decode_module`] then [`DecodedModule::dequantize`].
pub fn dequantize_module(
    module: &str,
    t: &ModuleTensors<'_>,
    bits: Option<u32>,
    group_size: Option<usize>,
) -> Result<(Vec<f32>, Vec<usize>, Dtype)> {
    let m = decode_module(module, t, bits, group_size, true)?;
    Ok((m.dequantize()?, vec![m.rows, m.cols], m.dtype))
}

/// Tensors of a compressed model that a dense model does not have: quantization parameters of
/// activations and the KV cache.
pub(crate) const DROPPED: [&str; 7] = [
    ".input_scale",
    ".input_zero_point",
    ".output_scale",
    ".output_zero_point",
    ".k_scale",
    ".v_scale",
    ".input_global_scale",
];

/// The model's `quantization_config` when it is a compressed-tensors one (`None` otherwise).
pub fn compressed_tensors_config(config: &Value) -> Option<&Map<String, Value>> {
    let qc = config.get("quantization_config")?.as_object()?;
    (qc.get("quant_method")?.as_str()? == "compressed-tensors").then_some(qc)
}

/// The weight args (`num_bits`, `group_size`) the config gives for modules of `format`, when every
/// group of that format agrees; refuses float weights and formats greenai cannot read.
pub(crate) fn config_args(qc: &Map<String, Value>, packed: bool) -> Result<(Option<u32>, Option<usize>)> {
    let top = qc.get("format").and_then(Value::as_str).unwrap_or("dense");
    let readable = |f: &str| {
        matches!(f, "int-quantized" | "naive-quantized" | "pack-quantized" | "dense" | "mixed-precision")
    };
    if !readable(top) {
        return Err(Error::format(
            "quantization_config",
            format!(
            "format `{top}` is not supported: greenai reads int-quantized, naive-quantized and pack-quantized"
        ),
        ));
    }
    let mut found: Vec<(Option<u32>, Option<usize>)> = Vec::new();
    for (name, group) in qc.get("config_groups").and_then(Value::as_object).into_iter().flatten() {
        let Some(w) = group.get("weights").filter(|w| w.is_object()) else { continue };
        if w.get("type").and_then(Value::as_str).is_some_and(|t| t != "int") {
            return Err(Error::format(
                "quantization_config",
                format!("config group `{name}` has float weights: only integer weights are supported"),
            ));
        }
        let format = group.get("format").and_then(Value::as_str).unwrap_or(top);
        if !readable(format) {
            return Err(Error::format(
                "quantization_config",
                format!("config group `{name}` has format `{format}`, which greenai cannot read"),
            ));
        }
        if format != "mixed-precision" && (format == "pack-quantized") != packed {
            continue;
        }
        let bits = w.get("num_bits").and_then(Value::as_u64).map(|b| b as u32);
        let gs = w.get("group_size").and_then(Value::as_i64).filter(|&g| g > 0).map(|g| g as usize);
        if !found.contains(&(bits, gs)) {
            found.push((bits, gs));
        }
    }
    Ok(match found[..] {
        [one] => one,
        _ => (None, None), // none or several: read from the shapes
    })
}

/// Dequantizes the compressed-tensors model `input` (a folder, sharded or not, or one file with its
/// `config.json` beside it) into the float model folder `output`, mirrored as [`ModelWriter`] mirrors
/// one: every module's weight restored in its scale's dtype as compressed-tensors dequantizes it
/// (into the shard of its weight), activation and KV-cache scales dropped, other tensors copied byte
/// for byte, `quantization_config` removed from `config.json`. Memory holds one tensor at a time;
/// `progress(bytes done, bytes in all)` after each tensor.
pub fn decompress_model(input: &Path, output: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<CtReport> {
    let reader = super::CompressedModel::open(input)?;
    let model = reader.model().filter(|_| reader.format() == super::ModelFormat::CompressedTensors);
    let model = model.ok_or_else(|| {
        Error::format(
            input.display().to_string(),
            "not a compressed-tensors model (no quantization_config with quant_method compressed-tensors)",
        )
    })?;
    let mut config = model_config(model)?;
    let mut writer = ModelWriter::create_folder(model, output)?;
    let mut report = CtReport { bytes_before: model.data_bytes() as usize, ..CtReport::default() };
    let (mut done, total) = (0u64, model.data_bytes());
    let homes: Vec<(String, bool)> = (0..reader.tensors().len()).map(|i| reader.home(i)).collect();
    for shard in model.shards() {
        let mut out = writer.shard(shard)?;
        for (i, (home, module)) in homes.iter().enumerate() {
            let Some(info) = shard.info(home) else { continue };
            let row = &reader.tensors()[i];
            if *module {
                let dtype = match row.restores_to.as_str() {
                    "F16" => Dtype::F16,
                    "BF16" => Dtype::BF16,
                    _ => Dtype::F32,
                };
                let bytes = float_bytes(dtype, &reader.read_f32(i)?);
                report.modules += 1;
                report.bytes_after += bytes.len();
                out.add(&row.name, &tensor(dtype, row.shape.clone(), bytes))?;
            } else {
                report.bytes_after += info.byte_len as usize;
                super::compress::copy_tensor(shard, info, &mut out)?;
            }
            done += row.bytes as u64;
            progress(done.min(total), total);
        }
        writer.finish_shard(shard, out, &torch_metadata())?;
    }
    if let Some(o) = config.as_object_mut() {
        o.remove("quantization_config");
    }
    write_config(&mut writer, &config)?;
    writer.commit()?;
    Ok(report)
}

/// Reads and parses a `config.json`.
pub fn read_config(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_config(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests;
