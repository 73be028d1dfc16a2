//! `compress` and `decompress`: the compressed-file convention.
//!
//! A compressed file is a plain safetensors file that any reader opens:
//! - a quantized tensor `NAME` is stored as its integer data (`I8`, `U8`, `I16`, `U16`; 4-bit values
//!   packed two per byte, first element in the low nibble, as `U8` of shape `[ceil(numel / 2)]`), with
//!   `NAME.scale` (`F32`, the parameter shape: `[]` per tensor, `[shape[0]]` per channel, the tensor's
//!   shape with the last dimension divided into blocks per block) and, when affine, `NAME.zero_point`
//!   (one unpacked integer per parameter, `I8` or `U8`);
//! - an fp16/bf16 cast stores the tensor as `F16`/`BF16`;
//! - a ggml block type stores the rows (along the last dimension) as ggml's blocks, bit for bit, in
//!   one `U8` tensor of shape `[bytes]`;
//! - a pruned tensor that is not quantized is stored dense, with its zeros;
//! - `__metadata__` holds `greenai.version`, `greenai.format` (`1`) and, for every changed tensor,
//!   `greenai.tensor.NAME`: `key=value` pairs separated by `;` (`kind` = `quant` | `cast` | `pruned` |
//!   `ggml` (with `type`, ggml's name of the block type),
//!   `dtype` = the original dtype, `shape`, and for `quant`: `qtype`, `mode`, `granularity`, `axis`,
//!   `block`; `sparsity` and `prune` when pruned);
//! - a tensor quantized with `--method hqq` is a `quant` of qtype `u4` or `u8`, mode `affine`, granularity
//!   `block` on the last axis, whose `NAME.zero_point` holds real-valued zero points as `F32` (the scales'
//!   shape), marked `method=hqq;zero=f32`: `w = scale[g] * (q - zero_point[g])`.
//!
//! Everything else (integer tensors, 1-D tensors unless asked, tensors a pattern excludes) passes
//! through byte for byte. [`decompress`] restores every changed tensor to its original float dtype.

use super::dir::{Model, ModelWriter};
use super::file::{ModelFile, TensorEntry, TensorInfo, CHUNK};
use super::sparse_store::{self, Elem, Storage};
use super::write::{OutTensor, SafetensorsWriter};
use crate::kernels::ggml::{self, GgmlType};
use crate::prune::{self, CountRule};
use crate::quant::{self, Calibration, Granularity, Mode, QTensor, QType, QuantParams, QuantSpec};
use crate::{DynTensor, Error, Result, Tensor};
use half::{bf16, f16};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// What float tensors become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// i8, symmetric on [-127, 127].
    Int8,
    /// u8, affine.
    Uint8,
    /// i4, symmetric, packed two per byte.
    Int4,
    /// IEEE binary16.
    Fp16,
    /// bfloat16.
    Bf16,
    /// One of ggml's weight block types, quantized bit for bit as ggml does, rows along the last
    /// dimension. A tensor whose rows are not whole blocks takes llama.cpp's fallback: Q4_K becomes
    /// Q5_0 and Q6_K becomes Q8_0 (blocks of 32), and rows that are not whole 32-blocks become F16.
    Ggml(GgmlType),
}

/// Which weights share a scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// One scale per tensor.
    Tensor,
    /// One scale per output channel (dimension 0).
    Channel,
    /// One scale per block of this many consecutive weights along the last dimension.
    Block(usize),
}

/// How the quantization range is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibrate {
    /// The full range of the weights.
    MinMax,
    /// The range holding this percentage of the weights.
    Percentile(f64),
    /// The clipping threshold minimising the mean squared error.
    Mse,
    /// The clipping threshold minimising the KL divergence (TensorRT's entropy calibration).
    Entropy,
}

/// Which weights are pruned before quantization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pruning {
    /// This share of each tensor's weights, smallest magnitude first (torch's count rule).
    Amount(f64),
    /// Keep the `n` largest of every `m` consecutive weights along the last dimension.
    NOfM {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
}

/// How integer targets are quantized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// Round to nearest with the calibrated range (the default).
    #[default]
    Rtn,
    /// HQQ (calibration-free half-quadratic optimisation of each group's zero point, HQQ's published
    /// defaults): asymmetric unsigned levels (`int4` becomes u4, `int8`/`uint8` u8) with real-valued zero
    /// points, groups of `block:N` along the last dimension (`channel`: one group per row of the last
    /// dimension).
    Hqq,
}

/// What `compress` does.
#[derive(Clone, Debug)]
pub struct CompressOptions {
    /// The target type; `None` only prunes.
    pub target: Option<Target>,
    /// How integer targets are quantized.
    pub method: Method,
    /// Scale sharing for integer targets.
    pub grouping: Grouping,
    /// Range selection for integer targets.
    pub calibration: Calibrate,
    /// Pruning applied first, if any.
    pub pruning: Option<Pruning>,
    /// Also compress 1-D tensors (biases, norms), which otherwise pass through.
    pub include_1d: bool,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            target: Some(Target::Int8),
            method: Method::Rtn,
            grouping: Grouping::Channel,
            calibration: Calibrate::MinMax,
            pruning: None,
            include_1d: false,
        }
    }
}

/// What happened to one tensor.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TensorReport {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Stored dtype before (`"F32"`, ...).
    pub dtype_before: String,
    /// Stored dtype after (`"I8"`, `"I4"`, `"F16"`, ...; unchanged when passed through).
    pub dtype_after: String,
    /// Bytes before.
    pub bytes_before: usize,
    /// Bytes after, scales and zero points included.
    pub bytes_after: usize,
    /// Share of zero weights after pruning, before quantization (rounding zeros are not counted).
    pub sparsity: f64,
    /// How the tensor is laid out: `dense`, `csr`, or an N:M pattern such as `2:4`.
    pub storage: String,
    /// SQNR of the stored weights against the original, in dB (`None` when passed through): the total
    /// error, pruning and quantization together.
    pub sqnr_db: Option<f64>,
    /// SQNR of the pruned weights against the original, in dB (`None` when not pruned).
    pub prune_sqnr_db: Option<f64>,
    /// SQNR of the stored weights against the pruned ones, in dB: the quantization or cast alone
    /// (`None` when passed through or only pruned).
    pub quant_sqnr_db: Option<f64>,
    /// Largest absolute error against the original (`None` when passed through).
    pub max_abs_error: Option<f64>,
}

/// The outcome of `compress`.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CompressReport {
    /// One row per input tensor, in file order.
    pub tensors: Vec<TensorReport>,
    /// Tensor bytes of the input.
    pub bytes_before: usize,
    /// Tensor bytes of the output.
    pub bytes_after: usize,
    /// `bytes_after / bytes_before`.
    pub size_ratio: f64,
    /// Estimated DRAM energy to read every weight once before compression, in joules (Horowitz 45 nm,
    /// a lower bound).
    pub read_energy_before_j: f64,
    /// The same after compression.
    pub read_energy_after_j: f64,
}

/// Metadata key of a changed tensor.
pub fn metadata_key(name: &str) -> String {
    format!("greenai.tensor.{name}")
}

fn dram_joules(bytes: usize) -> f64 {
    bytes as f64 / 4.0 * crate::energy::EnergyTable::HOROWITZ_45NM.dram_word * 1e-12
}

fn shape_text(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")
}

fn spec_for(target: Target, grouping: Grouping, ndim: usize) -> Result<QuantSpec> {
    let (qtype, mode) = match target {
        Target::Int8 => (QType::I8, Mode::Symmetric),
        Target::Uint8 => (QType::U8, Mode::Affine),
        Target::Int4 => (QType::I4, Mode::Symmetric),
        Target::Fp16 | Target::Bf16 | Target::Ggml(_) => {
            return Err(Error::invalid("target", format!("{target:?}"), "not an integer type"))
        }
    };
    let granularity = match grouping {
        Grouping::Tensor => Granularity::PerTensor,
        Grouping::Channel if ndim >= 1 => Granularity::PerAxis { axis: 0 },
        Grouping::Block(block) if ndim >= 1 => Granularity::PerBlock { axis: ndim - 1, block },
        _ => Granularity::PerTensor,
    };
    Ok(QuantSpec::new(qtype, mode).with_granularity(granularity))
}

/// The contiguous runs of `x` that share one parameter: the whole tensor, a row (axis 0), or a block of
/// a row (blocks along the last axis, the last block of a row possibly shorter); in parameter order.
fn groups<'a>(granularity: Granularity, x: &'a [f32], shape: &[usize]) -> Vec<&'a [f32]> {
    match granularity {
        Granularity::PerTensor => vec![x],
        Granularity::PerAxis { .. } => {
            let rows = shape.first().copied().unwrap_or(1).max(1);
            x.chunks(x.len() / rows).collect()
        }
        Granularity::PerBlock { block, .. } => {
            let row = shape.last().copied().unwrap_or(1).max(1);
            x.chunks(row).flat_map(|r| r.chunks(block)).collect()
        }
    }
}

/// The parameters of `spec` for `x`, calibrated by `calibration`.
///
/// Histogram methods run group by group, each group through its own per-tensor [`quant::Observer`]
/// that is dropped before the next: memory stays at one histogram whatever the number of channels
/// or blocks (one observer holding every group's 4096-bin histogram took 1 GB for a 30522-row
/// embedding), the ranges are bit-identical to a per-axis observer's (each group's histogram, grid
/// and search are its own either way), and per-block histogram calibration works too.
fn calibrated_params(
    spec: QuantSpec,
    calibration: Calibrate,
    x: &[f32],
    shape: &[usize],
) -> Result<QuantParams> {
    let method = match calibration {
        Calibrate::MinMax => return QuantParams::from_data(spec, x, shape),
        Calibrate::Percentile(percentile) => Calibration::Percentile { percentile },
        Calibrate::Mse => Calibration::Mse,
        Calibrate::Entropy => Calibration::Entropy,
    };
    let param_shape = spec.granularity.param_shape(shape)?;
    let per_group = QuantSpec { granularity: Granularity::PerTensor, ..spec };
    let range = |g: &[f32]| -> Result<(f32, f32)> {
        let mut observer = quant::Observer::new(method, per_group)?;
        observer.observe(g, &[g.len()])?;
        let (lo, hi) = observer.ranges()?;
        Ok((lo[0], hi[0]))
    };
    let groups = groups(spec.granularity, x, shape);
    #[cfg(feature = "parallel")]
    let ranges: Vec<(f32, f32)> = {
        use rayon::prelude::*;
        groups.par_iter().map(|g| range(g)).collect::<Result<_>>()?
    };
    #[cfg(not(feature = "parallel"))]
    let ranges: Vec<(f32, f32)> = groups.iter().map(|g| range(g)).collect::<Result<_>>()?;
    let (mins, maxs): (Vec<f32>, Vec<f32>) = ranges.into_iter().unzip();
    QuantParams::from_ranges(spec, param_shape, &mins, &maxs)
}

fn prune_in_place(weights: &mut [f32], shape: &[usize], pruning: Pruning) -> Result<()> {
    let mask = match pruning {
        Pruning::Amount(amount) => prune::magnitude(weights, amount, CountRule::default(), None)?,
        Pruning::NOfM { n, m } => {
            // Groups run along the last (input) dimension: view the tensor as rows of that length.
            let cols = *shape.last().unwrap_or(&1);
            let rows = weights.len().checked_div(cols).unwrap_or(0);
            prune::n_m(weights, &[rows, cols], n, m, false)?
        }
    };
    mask.bake(weights)
}

fn zero_share(values: &[f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64
}

fn pass_through(info: &TensorInfo) -> TensorReport {
    TensorReport {
        name: info.name.clone(),
        shape: info.shape.clone(),
        dtype_before: format!("{:?}", info.dtype),
        dtype_after: format!("{:?}", info.dtype),
        bytes_before: info.byte_len as usize,
        bytes_after: info.byte_len as usize,
        sparsity: 0.0,
        storage: "dense".into(),
        sqnr_db: None,
        prune_sqnr_db: None,
        quant_sqnr_db: None,
        max_abs_error: None,
    }
}

/// Copies the tensor `info` of `shard` into `out` as it is, chunk by chunk.
pub(super) fn copy_tensor(shard: &ModelFile, info: &TensorInfo, out: &mut SafetensorsWriter) -> Result<()> {
    out.add_chunks(&info.name, info.dtype, &info.shape, &mut |sink| shard.read_chunks(info, CHUNK, sink))
}

/// The report row of a compressed tensor, its error split into pruning and quantization.
fn tensor_report(
    entry: &TensorInfo,
    options: &CompressOptions,
    original: &[f32],
    c: &Compressed,
) -> Result<TensorReport> {
    let total = quant::error_metrics(original, &c.restored)?;
    let (prune_sqnr_db, quant_sqnr_db) = match &c.pruned {
        Some(pruned) => (
            Some(quant::error_metrics(original, pruned)?.sqnr_db),
            options.target.map(|_| quant::error_metrics(pruned, &c.restored)).transpose()?.map(|m| m.sqnr_db),
        ),
        None => (None, Some(total.sqnr_db)),
    };
    Ok(TensorReport {
        name: entry.name.to_string(),
        shape: entry.shape.to_vec(),
        dtype_before: format!("{:?}", entry.dtype),
        dtype_after: c.dtype_after.clone(),
        bytes_before: entry.byte_len as usize,
        bytes_after: c.outputs.iter().map(|(_, t)| t.bytes.len()).sum(),
        sparsity: zero_share(c.pruned.as_deref().unwrap_or(original)),
        storage: c.storage.label(),
        sqnr_db: Some(total.sqnr_db),
        prune_sqnr_db,
        quant_sqnr_db,
        max_abs_error: Some(total.max_abs),
    })
}

struct Compressed {
    outputs: Vec<(String, OutTensor<'static>)>,
    restored: Vec<f32>,
    dtype_after: String,
    metadata: String,
    /// The pruned weights before quantization, when pruned.
    pruned: Option<Vec<f32>>,
    /// How the data tensor is laid out.
    storage: Storage,
}

fn compress_tensor(
    entry: &TensorInfo,
    options: &CompressOptions,
    original: &Tensor<f32>,
) -> Result<Compressed> {
    let Some(pruning) = options.pruning else {
        return compress_dense(entry, options, original);
    };
    let mut weights = original.clone();
    prune_in_place(weights.as_mut_slice(), &entry.shape, pruning)?;
    let mut c = compress_dense(entry, options, &weights)?;
    store_sparse(&mut c, weights.as_slice(), &entry.shape, pruning)?;
    c.pruned = Some(weights.into_vec());
    Ok(c)
}

/// Replaces the dense data tensor of `c` by its sparse encoding (the positions of the nonzero pruned
/// `weights`) when that is smaller; the restored values then read 0.0 wherever nothing is stored, as
/// `decompress` reads them. ggml blocks stay dense (a block is their smallest unit).
fn store_sparse(c: &mut Compressed, weights: &[f32], shape: &[usize], pruning: Pruning) -> Result<()> {
    if c.metadata.starts_with("kind=ggml") {
        return Ok(());
    }
    let Some((_, data)) = c.outputs.first() else { return Ok(()) };
    let elem = if matches!(c.dtype_after.as_str(), "I4" | "U4") {
        Elem::Nibble
    } else {
        Elem::Bytes(data.dtype.size())
    };
    let keep: Vec<bool> = weights.iter().map(|&w| w != 0.0).collect();
    let nm = match pruning {
        Pruning::NOfM { n, m } => Some((n, m)),
        Pruning::Amount(_) => None,
    };
    let Some(encoded) = sparse_store::encode(&data.bytes, data.dtype, elem, shape, &keep, nm)? else {
        return Ok(());
    };
    let name = c.outputs[0].0.clone();
    c.outputs[0].1 = encoded.values;
    c.outputs.extend(encoded.companions.into_iter().map(|(suffix, t)| (format!("{name}{suffix}"), t)));
    c.metadata.push_str(&encoded.storage.metadata());
    for (r, &stored) in c.restored.iter_mut().zip(&encoded.stored) {
        if !stored {
            *r = 0.0;
        }
    }
    c.storage = encoded.storage;
    Ok(())
}

/// One tensor compressed and stored dense (pruned first when `weights` are).
fn compress_dense(
    entry: &TensorInfo,
    options: &CompressOptions,
    weights: &Tensor<f32>,
) -> Result<Compressed> {
    let shape = entry.shape.to_vec();
    let mut meta = format!("dtype={:?};shape={}", entry.dtype, shape_text(&shape));
    if let Some(pruning) = options.pruning {
        let pattern = match pruning {
            Pruning::Amount(a) => format!("{a}"),
            Pruning::NOfM { n, m } => format!("{n}:{m}"),
        };
        write!(meta, ";prune={pattern}").expect("String writes");
    }
    write!(meta, ";sparsity={}", zero_share(weights.as_slice())).expect("String writes");
    let name = entry.name.clone();
    let to_bytes = |v: Vec<u8>| Cow::Owned(v);
    match options.target {
        None => {
            let bytes = weights.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect();
            let out = OutTensor { dtype: Dtype::F32, shape, bytes: to_bytes(bytes) };
            Ok(Compressed {
                outputs: vec![(name, out)],
                restored: weights.as_slice().to_vec(),
                dtype_after: "F32".into(),
                metadata: format!("kind=pruned;{meta}"),
                pruned: None,
                storage: Storage::Dense,
            })
        }
        Some(Target::Fp16) => cast_f16(name, shape, weights.as_slice(), &meta),
        Some(Target::Ggml(requested)) => {
            let cols = shape.last().copied().unwrap_or(1);
            let Some(ty) = ggml_type_for(requested, cols) else {
                return cast_f16(name, shape, weights.as_slice(), &meta);
            };
            let rows = weights.len() / cols;
            let mut bytes = crate::error::try_vec(ty.matrix_bytes(rows, cols)?, 0u8)?;
            ggml::quantize(ty, weights.as_slice(), rows, cols, &mut bytes)?;
            let mut restored = crate::error::try_vec(weights.len(), 0f32)?;
            ggml::dequantize(ty, &bytes, rows, cols, &mut restored)?;
            let out = OutTensor { dtype: Dtype::U8, shape: vec![bytes.len()], bytes: to_bytes(bytes) };
            Ok(Compressed {
                outputs: vec![(name, out)],
                restored,
                dtype_after: ty.name().to_ascii_uppercase(),
                metadata: format!("kind=ggml;{meta};type={}", ty.name()),
                pruned: None,
                storage: Storage::Dense,
            })
        }
        Some(Target::Bf16) => {
            let mut b = vec![bf16::ZERO; weights.len()];
            crate::kernels::convert::f32_to_bf16(weights.as_slice(), &mut b)?;
            let restored = b.iter().map(|v| v.to_f32()).collect();
            let out =
                OutTensor { dtype: Dtype::BF16, shape, bytes: to_bytes(bytemuck::cast_slice(&b).to_vec()) };
            Ok(Compressed {
                outputs: vec![(name, out)],
                restored,
                dtype_after: "BF16".into(),
                metadata: format!("kind=cast;{meta}"),
                pruned: None,
                storage: Storage::Dense,
            })
        }
        Some(target) if options.method == Method::Hqq => {
            hqq_tensor(name, shape, weights.as_slice(), target, options.grouping, &meta)
        }
        Some(target) => {
            let spec = spec_for(target, options.grouping, shape.len())?;
            let params = calibrated_params(spec, options.calibration, weights.as_slice(), &shape)?;
            let q = QTensor::quantize(weights, params)?;
            let restored = q.dequantize()?.into_vec();
            let (data, params) = q.into_parts();
            let (data_dtype, data_shape, dtype_after, bytes) = match data {
                DynTensor::I8(t) => {
                    (Dtype::I8, shape.clone(), "I8", bytemuck::allocation::cast_vec(t.into_vec()))
                }
                DynTensor::U8(t) => (Dtype::U8, shape.clone(), "U8", t.into_vec()),
                DynTensor::Packed4(p) => {
                    (Dtype::U8, vec![p.bytes.len()], if p.signed { "I4" } else { "U4" }, p.bytes)
                }
                other => return Err(Error::UnsupportedDType { dtype: other.dtype(), operation: "compress" }),
            };
            let mut outputs = vec![(
                name.clone(),
                OutTensor { dtype: data_dtype, shape: data_shape, bytes: to_bytes(bytes) },
            )];
            let scales = params.scales().iter().flat_map(|s| s.to_le_bytes()).collect();
            outputs.push((
                format!("{name}.scale"),
                OutTensor { dtype: Dtype::F32, shape: params.shape().to_vec(), bytes: to_bytes(scales) },
            ));
            if spec.mode == Mode::Affine {
                let (dtype, zps): (Dtype, Vec<u8>) = if spec.qtype.is_signed() {
                    (Dtype::I8, params.zero_points().iter().map(|&z| z as i8 as u8).collect())
                } else {
                    (Dtype::U8, params.zero_points().iter().map(|&z| z as u8).collect())
                };
                outputs.push((
                    format!("{name}.zero_point"),
                    OutTensor { dtype, shape: params.shape().to_vec(), bytes: to_bytes(zps) },
                ));
            }
            let (granularity, axis, block) = match spec.granularity {
                Granularity::PerTensor => ("tensor", 0, 0),
                Granularity::PerAxis { axis } => ("channel", axis, 0),
                Granularity::PerBlock { axis, block } => ("block", axis, block),
            };
            let mode = if spec.mode == Mode::Affine { "affine" } else { "symmetric" };
            let metadata = format!(
                "kind=quant;{meta};qtype={};mode={mode};granularity={granularity};axis={axis};block={block};narrow={}",
                dtype_after.to_lowercase(),
                u8::from(spec.narrow_range)
            );
            Ok(Compressed {
                outputs,
                restored,
                dtype_after: dtype_after.into(),
                metadata,
                pruned: None,
                storage: Storage::Dense,
            })
        }
    }
}

/// HQQ's group-wise levels of one tensor (rows along the last dimension): the levels (`U8`, 4-bit
/// packed two per byte, first in the low nibble), `NAME.scale` and `NAME.zero_point` (both `F32`, the
/// tensor's shape with the last dimension counting groups); `zero=f32` in the metadata.
fn hqq_tensor(
    name: String,
    shape: Vec<usize>,
    weights: &[f32],
    target: Target,
    grouping: Grouping,
    meta: &str,
) -> Result<Compressed> {
    let bits = match target {
        Target::Int4 => 4,
        Target::Int8 | Target::Uint8 => 8,
        other => {
            return Err(Error::invalid("method", "hqq", format!("quantizes to integers, not {other:?}")))
        }
    };
    let cols = shape.last().copied().unwrap_or(1).max(1);
    let rows = weights.len() / cols;
    let group_size = match grouping {
        Grouping::Block(n) => n,
        Grouping::Channel => cols,
        Grouping::Tensor => {
            return Err(Error::invalid(
                "granularity",
                "tensor",
                "hqq quantizes groups: use channel or block:N",
            ))
        }
    };
    let out = quant::hqq_quantize(
        weights,
        rows,
        cols,
        &quant::HqqOptions { group_size, ..quant::HqqOptions::with_bits(bits) },
    )?;
    let restored = out.dequantize();
    let (bytes, data_shape, qtype) = if bits == 4 {
        let mut packed = crate::error::try_vec(quant::packed_len(out.q.len()), 0u8)?;
        for (i, &q) in out.q.iter().enumerate() {
            quant::nibble_put(&mut packed, i, i32::from(q));
        }
        let len = packed.len();
        (packed, vec![len], "u4")
    } else {
        (out.q, shape.clone(), "u8")
    };
    let mut param_shape = shape.clone();
    if let Some(last) = param_shape.last_mut() {
        *last = out.groups;
    }
    let f32_bytes = |v: &[f32]| Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect());
    let outputs = vec![
        (name.clone(), OutTensor { dtype: Dtype::U8, shape: data_shape, bytes: Cow::Owned(bytes) }),
        (
            format!("{name}.scale"),
            OutTensor { dtype: Dtype::F32, shape: param_shape.clone(), bytes: f32_bytes(&out.scales) },
        ),
        (
            format!("{name}.zero_point"),
            OutTensor { dtype: Dtype::F32, shape: param_shape, bytes: f32_bytes(&out.zeros) },
        ),
    ];
    let axis = shape.len().saturating_sub(1);
    let metadata = format!(
        "kind=quant;{meta};qtype={qtype};mode=affine;granularity=block;axis={axis};block={group_size};narrow=0;method=hqq;zero=f32"
    );
    Ok(Compressed {
        outputs,
        restored,
        dtype_after: qtype.to_ascii_uppercase(),
        metadata,
        pruned: None,
        storage: Storage::Dense,
    })
}

/// Restores a tensor stored with real-valued zero points (`zero=f32`, as `--method hqq` writes):
/// `w = scale[g] * (q - zero[g])` with groups of `block` along the last dimension.
fn restore_float_zero(input: &ModelFile, entry: &TensorEntry<'_>, changed: &Changed<'_>) -> Result<Vec<f32>> {
    let (name, meta) = (entry.name, &changed.meta);
    let bad = |why: String| Error::format(metadata_key(name), why);
    let four = match field(meta, "qtype", name)? {
        "u4" => true,
        "u8" => false,
        other => return Err(bad(format!("real-valued zero points need qtype u4 or u8, not `{other}`"))),
    };
    let ndim = changed.shape.len();
    if field(meta, "mode", name)? != "affine"
        || field(meta, "granularity", name)? != "block"
        || number(meta, "axis", name)? != ndim.saturating_sub(1)
    {
        return Err(bad(
            "real-valued zero points need mode affine, granularity block on the last axis".into()
        ));
    }
    let block = number(meta, "block", name)?;
    if block == 0 {
        return Err(bad("`block` is 0".into()));
    }
    let numel = crate::tensor::numel(&changed.shape)?;
    let cols = changed.shape.last().copied().unwrap_or(1).max(1);
    let (rows, groups) = (numel / cols, cols.div_ceil(block));
    let mut param_shape = changed.shape.clone();
    if let Some(last) = param_shape.last_mut() {
        *last = groups;
    }
    let companion = |suffix: &str| -> Result<Vec<f32>> {
        let c = input.tensor(&format!("{name}{suffix}"))?;
        if c.dtype != Dtype::F32 || c.shape != param_shape.as_slice() {
            return Err(Error::format(
                name,
                format!("`{name}{suffix}` is {:?} {:?}, must be F32 {param_shape:?}", c.dtype, c.shape),
            ));
        }
        c.to_f32()
    };
    let (scales, zeros) = (companion(".scale")?, companion(".zero_point")?);
    let mut values = crate::error::try_vec(numel, 0f32)?;
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let q = if four { quant::nibble_get(&entry.bytes, i, false) } else { i32::from(entry.bytes[i]) };
            let g = r * groups + c / block;
            values[i] = scales[g] * (q as f32 - zeros[g]);
        }
    }
    Ok(values)
}

fn cast_f16(name: String, shape: Vec<usize>, weights: &[f32], meta: &str) -> Result<Compressed> {
    let mut h = crate::error::try_vec(weights.len(), f16::ZERO)?;
    crate::kernels::convert::f32_to_f16(weights, &mut h)?;
    let restored = h.iter().map(|v| v.to_f32()).collect();
    let out = OutTensor { dtype: Dtype::F16, shape, bytes: Cow::Owned(bytemuck::cast_slice(&h).to_vec()) };
    Ok(Compressed {
        outputs: vec![(name, out)],
        restored,
        dtype_after: "F16".into(),
        metadata: format!("kind=cast;{meta}"),
        pruned: None,
        storage: Storage::Dense,
    })
}

/// The block type rows of `cols` elements take when `requested` is asked for: `requested` when the
/// rows are whole blocks, else llama.cpp's fallback (`llama_tensor_get_type`: Q4_K -> Q5_0,
/// Q6_K -> Q8_0), else `None` (F16).
fn ggml_type_for(requested: GgmlType, cols: usize) -> Option<GgmlType> {
    let fallback = match requested {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q6K => GgmlType::Q8_0,
        other => other,
    };
    [requested, fallback].into_iter().find(|t| cols.is_multiple_of(t.block_elems()))
}

/// Compresses every float tensor of `input` that `should_compress(name)` accepts (and that is at
/// least 2-D unless `include_1d`), writes the result to `output` atomically, and reports per tensor.
///
/// A file gives a file; a folder gives a folder that mirrors it ([`ModelWriter`]): each shard
/// rewritten under its own name with its own metadata carried over (a quantized tensor's companions in
/// its shard), the index's `weight_map` covering the companions, every other file copied. The work
/// goes tensor by tensor: memory holds one tensor and what it becomes, never the model, and tensors
/// passed through are copied in chunks. `progress(bytes done, bytes in all)` is called after each
/// tensor.
pub fn compress(
    input: &Model,
    output: &Path,
    options: &CompressOptions,
    should_compress: &dyn Fn(&str) -> bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CompressReport> {
    if let Some(Pruning::Amount(a)) = options.pruning {
        prune::criteria::check_amount(a)?;
    }
    if let Some(Pruning::NOfM { n, m }) = options.pruning {
        if n == 0 || n > m {
            return Err(Error::invalid("prune", format!("{n}:{m}"), "N:M needs 0 < N <= M"));
        }
    }
    if matches!(options.target, Some(Target::Ggml(_))) && options.calibration != Calibrate::MinMax {
        return Err(Error::invalid(
            "calibration",
            format!("{:?}", options.calibration),
            "ggml block types choose their scales as ggml does: leave the calibration at minmax",
        ));
    }
    if options.method == Method::Hqq {
        if !matches!(options.target, Some(Target::Int4 | Target::Int8 | Target::Uint8)) {
            return Err(Error::invalid(
                "method",
                "hqq",
                format!("quantizes to int4, int8 or uint8, not {:?}", options.target),
            ));
        }
        if options.calibration != Calibrate::MinMax {
            return Err(Error::invalid(
                "calibration",
                format!("{:?}", options.calibration),
                "hqq optimises its own zero points: leave the calibration at minmax",
            ));
        }
        if options.grouping == Grouping::Tensor {
            return Err(Error::invalid(
                "granularity",
                "tensor",
                "hqq quantizes groups: use channel or block:N",
            ));
        }
    }
    if let Grouping::Block(0) = options.grouping {
        return Err(Error::invalid("block", 0, "a block holds at least one weight"));
    }
    let file = input.path().display().to_string();
    if input
        .shards()
        .iter()
        .any(|s| s.metadata().keys().any(|k| k == "greenai.format" || k.starts_with("greenai.tensor.")))
    {
        return Err(Error::format(
            file,
            "already compressed by greenai: decompress it first (`greenai decompress`), then compress that",
        ));
    }
    let eligible = |info: &TensorInfo| {
        info.is_float()
            && !info.is_empty()
            && (info.shape.len() >= 2 || options.include_1d)
            && should_compress(&info.name)
    };
    // A quantized tensor's companions must not take the name of a tensor of the model: refused before
    // any work, naming both (nothing is ever silently dropped or overwritten).
    let integer = matches!(options.target, Some(Target::Int8 | Target::Uint8 | Target::Int4));
    if integer {
        let suffixes: &[&str] = if options.target == Some(Target::Uint8) || options.method == Method::Hqq {
            &[".scale", ".zero_point"]
        } else {
            &[".scale"]
        };
        for info in input.tensors().filter(|e| eligible(e)) {
            if let Some(taken) =
                suffixes.iter().map(|s| format!("{}{s}", info.name)).find(|c| input.info(c).is_some())
            {
                return Err(Error::format(
                    file,
                    format!(
                        "quantizing `{}` needs the companion name `{taken}`, which a tensor of the model already \
                         has: rename it, or leave `{}` unquantized with --skip",
                        info.name, info.name
                    ),
                ));
            }
        }
    }
    let mut writer = ModelWriter::create(input, output)?;
    let (mut done, total) = (0u64, input.data_bytes());
    let mut reports = Vec::with_capacity(input.len());
    for shard in input.shards() {
        let mut out = writer.shard(shard)?;
        let mut metadata = shard.metadata().clone();
        metadata.insert("greenai.version".to_string(), env!("CARGO_PKG_VERSION").to_string());
        metadata.insert("greenai.format".to_string(), FORMAT.to_string());
        for info in shard.tensors() {
            done += info.byte_len;
            if !eligible(info) {
                copy_tensor(shard, info, &mut out)?;
                reports.push(pass_through(info));
                progress(done, total);
                continue;
            }
            let original = Tensor::from_vec(info.shape.clone(), shard.read_f32(info)?)?;
            crate::kernels::math::check_finite("weights", original.as_slice())
                .map_err(|e| Error::format(&info.name, e.to_string()))?;
            let c = compress_tensor(info, options, &original)?;
            reports.push(tensor_report(info, options, original.as_slice(), &c)?);
            drop(original);
            metadata.insert(metadata_key(&info.name), c.metadata);
            for (name, t) in &c.outputs {
                out.add(name, t)?;
            }
            progress(done, total);
        }
        writer.finish_shard(shard, out, &metadata)?;
    }
    writer.commit()?;
    let bytes_before: usize = reports.iter().map(|r| r.bytes_before).sum();
    let bytes_after: usize = reports.iter().map(|r| r.bytes_after).sum();
    Ok(CompressReport {
        tensors: reports,
        bytes_before,
        bytes_after,
        size_ratio: if bytes_before == 0 { 1.0 } else { bytes_after as f64 / bytes_before as f64 },
        read_energy_before_j: dram_joules(bytes_before),
        read_energy_after_j: dram_joules(bytes_after),
    })
}

/// The format version this greenai writes (2: sparse storage of pruned tensors).
const FORMAT: &str = "2";

/// Every format version this greenai reads (a version 1 file is a version 2 file without sparse storage).
const READS: [&str; 2] = ["1", "2"];

fn parse_meta<'a>(name: &str, text: &'a str) -> Result<HashMap<&'a str, &'a str>> {
    let mut meta = HashMap::new();
    for kv in text.split(';') {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::format(metadata_key(name), format!("`{kv}` is not key=value")))?;
        if meta.insert(k, v).is_some() {
            return Err(Error::format(metadata_key(name), format!("`{k}` appears twice")));
        }
    }
    Ok(meta)
}

fn field<'a>(meta: &HashMap<&str, &'a str>, key: &str, name: &str) -> Result<&'a str> {
    meta.get(key).copied().ok_or_else(|| Error::format(metadata_key(name), format!("missing `{key}`")))
}

fn number(meta: &HashMap<&str, &str>, key: &str, name: &str) -> Result<usize> {
    field(meta, key, name)?
        .parse()
        .map_err(|_| Error::format(metadata_key(name), format!("`{key}` is not a number")))
}

/// The original float dtype of a changed tensor: one of the four greenai compresses.
fn original_dtype(name: &str, text: &str) -> Result<Dtype> {
    Ok(match text {
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "F32" => Dtype::F32,
        "F64" => Dtype::F64,
        other => return Err(Error::format(metadata_key(name), format!("unknown original dtype `{other}`"))),
    })
}

/// The values in `dtype`; a value that does not fit (infinite there) is refused.
fn encode(name: &str, values: &[f32], dtype: Dtype) -> Result<Vec<u8>> {
    let overflow = || Error::format(name, format!("a restored value overflows {dtype:?}"));
    Ok(match dtype {
        Dtype::F16 => {
            let h: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            if h.iter().any(|v| !v.is_finite()) {
                return Err(overflow());
            }
            h.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Dtype::BF16 => {
            let b: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
            if b.iter().any(|v| !v.is_finite()) {
                return Err(overflow());
            }
            b.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        Dtype::F64 => values.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}

/// A changed tensor's entry, checked against the format: what it is, its original dtype and shape, and
/// the companion tensors it owns.
pub(crate) struct Changed<'m> {
    pub(crate) meta: HashMap<&'m str, &'m str>,
    pub(crate) kind: &'m str,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) companions: Vec<String>,
    /// How the data tensor is laid out.
    pub(crate) storage: Storage,
    /// The dtype and shape the data tensor has when stored dense.
    pub(crate) dense: (Dtype, Vec<usize>),
}

impl Changed<'_> {
    /// The width of one stored element of the data tensor.
    pub(crate) fn elem(&self) -> Elem {
        match self.meta.get("qtype").copied() {
            Some("i4" | "u4") if self.kind == "quant" => Elem::Nibble,
            _ => Elem::Bytes(self.dense.0.size()),
        }
    }
}

pub(crate) fn parse_changed<'m>(input: &ModelFile, entry: &TensorInfo, text: &'m str) -> Result<Changed<'m>> {
    let name = entry.name.as_str();
    let bad = |why: String| Error::format(metadata_key(name), why);
    let meta = parse_meta(name, text)?;
    let shape: Vec<usize> = field(&meta, "shape", name)?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|d| d.parse().map_err(|_| bad("bad `shape`".into())))
        .collect::<Result<_>>()?;
    let numel = crate::tensor::numel(&shape)?;
    let dtype = original_dtype(name, field(&meta, "dtype", name)?)?;
    let kind = field(&meta, "kind", name)?;
    let storage = Storage::parse(&meta, &metadata_key(name))?;
    let sparse = storage != Storage::Dense;
    // A sparse tensor's data shape is checked when it is read (against its index companions).
    let shape_ok = |want: &[usize]| sparse || entry.shape == want;
    let stored = format!("stored as {:?} {:?}", entry.dtype, entry.shape);
    let (mut companions, dense) = match kind {
        "cast" => {
            if !matches!(entry.dtype, Dtype::F16 | Dtype::BF16) || !shape_ok(&shape) {
                return Err(bad(format!("a cast to F16 or BF16 of shape {shape:?} is {stored}")));
            }
            (vec![], (entry.dtype, shape.clone()))
        }
        "pruned" => {
            if entry.dtype != Dtype::F32 || !shape_ok(&shape) {
                return Err(bad(format!("a pruned F32 {shape:?} is {stored}")));
            }
            (vec![], (Dtype::F32, shape.clone()))
        }
        "ggml" if sparse => return Err(bad("ggml blocks are stored dense".into())),
        "ggml" => {
            let ty = ggml_type(&meta, name)?;
            let cols = shape.last().copied().unwrap_or(1);
            let want = ty
                .matrix_bytes(numel.checked_div(cols).unwrap_or(0), cols)
                .map_err(|e| bad(e.to_string()))?;
            if entry.dtype != Dtype::U8 || entry.shape != [want] {
                return Err(bad(format!(
                    "{} blocks of shape {shape:?} must be U8 [{want}], are {stored}",
                    ty.name()
                )));
            }
            (vec![], (Dtype::U8, vec![want]))
        }
        "quant" => {
            let (qtype, want) = match field(&meta, "qtype", name)? {
                "i8" => (QType::I8, Dtype::I8),
                "u8" => (QType::U8, Dtype::U8),
                "i4" => (QType::I4, Dtype::U8),
                "u4" => (QType::U4, Dtype::U8),
                other => return Err(bad(format!("unknown qtype `{other}`"))),
            };
            let want_shape = if qtype.bits() == 4 { vec![numel.div_ceil(2)] } else { shape.clone() };
            if entry.dtype != want || !shape_ok(&want_shape) {
                return Err(bad(format!(
                    "{qtype:?} data of shape {shape:?} must be {want:?} {want_shape:?}, is {stored}"
                )));
            }
            let affine = match field(&meta, "mode", name)? {
                "affine" => true,
                "symmetric" => false,
                other => return Err(bad(format!("unknown mode `{other}`"))),
            };
            let mut companions = vec![format!("{name}.scale")];
            if affine {
                companions.push(format!("{name}.zero_point"));
            }
            for c in &companions {
                if input.info(c).is_none() {
                    return Err(Error::format(name, format!("missing `{c}`")));
                }
                if input.metadata().contains_key(&metadata_key(c)) {
                    return Err(Error::format(
                        name,
                        format!("its companion `{c}` is itself a changed tensor"),
                    ));
                }
            }
            (companions, (want, want_shape))
        }
        other => return Err(bad(format!("unknown kind `{other}`"))),
    };
    companions.extend(storage.companions(name));
    for c in &companions {
        if input.info(c).is_none() {
            return Err(Error::format(name, format!("missing `{c}`")));
        }
        if input.metadata().contains_key(&metadata_key(c)) {
            return Err(Error::format(name, format!("its companion `{c}` is itself a changed tensor")));
        }
    }
    Ok(Changed { meta, kind, dtype, shape, companions, storage, dense })
}

/// The weight block type a `kind=ggml` entry names.
fn ggml_type(meta: &HashMap<&str, &str>, name: &str) -> Result<GgmlType> {
    let text = field(meta, "type", name)?;
    GgmlType::from_name(text)
        .filter(|t| t.is_weight_type())
        .ok_or_else(|| Error::format(metadata_key(name), format!("unknown ggml weight type `{text}`")))
}

/// The restored values of a changed tensor: a sparse one is made dense, decoded as its kind is, and
/// every position it does not store set to 0.0.
pub(crate) fn restore(input: &ModelFile, entry: &TensorEntry<'_>, changed: &Changed<'_>) -> Result<Vec<f32>> {
    if changed.storage == Storage::Dense {
        return restore_dense(input, entry, changed);
    }
    let d = sparse_store::densify(input, entry, changed.storage, changed.elem(), &changed.shape)?;
    let dense = TensorEntry {
        name: entry.name,
        dtype: changed.dense.0,
        shape: &changed.dense.1,
        bytes: Cow::Borrowed(&d.bytes),
    };
    let mut values = restore_dense(input, &dense, changed)?;
    for (v, &stored) in values.iter_mut().zip(&d.stored) {
        if !stored {
            *v = 0.0;
        }
    }
    Ok(values)
}

fn restore_dense(input: &ModelFile, entry: &TensorEntry<'_>, changed: &Changed<'_>) -> Result<Vec<f32>> {
    let (name, meta) = (entry.name, &changed.meta);
    let values = match changed.kind {
        "quant" if meta.get("zero").copied() == Some("f32") => restore_float_zero(input, entry, changed)?,
        "quant" => {
            let params = quant_params(input, name, changed)?;
            let data = DynTensor::from_bytes(params.spec().qtype.dtype(), &changed.shape, &entry.bytes)?;
            QTensor::from_parts(data, params)?.dequantize().map(Tensor::into_vec)?
        }
        "ggml" => {
            let ty = ggml_type(meta, name)?;
            let cols = changed.shape.last().copied().unwrap_or(1);
            let mut values = crate::error::try_vec(crate::tensor::numel(&changed.shape)?, 0f32)?;
            ggml::dequantize(ty, &entry.bytes, values.len() / cols, cols, &mut values)
                .map_err(|e| Error::format(name, e.to_string()))?;
            values
        }
        _ => entry.to_f32()?,
    };
    if values.len() != crate::tensor::numel(&changed.shape)? {
        return Err(Error::format(
            metadata_key(name),
            format!("`shape` {:?} disagrees with the stored {:?}", changed.shape, entry.shape),
        ));
    }
    crate::kernels::math::check_finite("restored weights", &values)
        .map_err(|e| Error::format(name, format!("{e} (a corrupt scale or data)")))?;
    Ok(values)
}

/// The quantization parameters of a tensor stored with `kind=quant` and integer zero points, read
/// from its metadata and companions and checked against them.
fn quant_params(input: &ModelFile, name: &str, changed: &Changed<'_>) -> Result<QuantParams> {
    let meta = &changed.meta;
    let bad = |why: String| Error::format(metadata_key(name), why);
    let qtype = match field(meta, "qtype", name)? {
        "i8" => QType::I8,
        "u8" => QType::U8,
        "i4" => QType::I4,
        _ => QType::U4,
    };
    let mode = if field(meta, "mode", name)? == "affine" { Mode::Affine } else { Mode::Symmetric };
    let ndim = changed.shape.len();
    let axis = number(meta, "axis", name)?;
    let granularity = match field(meta, "granularity", name)? {
        "tensor" => Granularity::PerTensor,
        "channel" if axis < ndim => Granularity::PerAxis { axis },
        "block" if axis < ndim => Granularity::PerBlock { axis, block: number(meta, "block", name)? },
        "channel" | "block" => return Err(bad(format!("axis {axis} of a {ndim}-D tensor"))),
        other => return Err(bad(format!("unknown granularity `{other}`"))),
    };
    let mut spec = QuantSpec::new(qtype, mode).with_granularity(granularity);
    spec.narrow_range = match meta.get("narrow").copied() {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => return Err(bad(format!("`narrow` is `{other}`, not 0 or 1"))),
    };
    let companion = |suffix: &str| input.tensor(&format!("{name}{suffix}"));
    let scale_entry = companion(".scale")?;
    if scale_entry.dtype != Dtype::F32 {
        return Err(Error::format(name, format!("`{name}.scale` is {:?}, not F32", scale_entry.dtype)));
    }
    let scales = scale_entry.to_f32()?;
    let zero_points: Vec<i32> = match mode {
        Mode::Affine => {
            let zp = companion(".zero_point")?;
            let want = if qtype.is_signed() { Dtype::I8 } else { Dtype::U8 };
            if zp.dtype != want || zp.shape != scale_entry.shape {
                return Err(Error::format(
                    name,
                    format!(
                        "`{name}.zero_point` is {:?} {:?}, must be {want:?} {:?} (the scales' shape)",
                        zp.dtype, zp.shape, scale_entry.shape
                    ),
                ));
            }
            match zp.dtype {
                Dtype::I8 => zp.bytes.iter().map(|&b| i32::from(b as i8)).collect(),
                _ => zp.bytes.iter().map(|&b| i32::from(b)).collect(),
            }
        }
        Mode::Symmetric => vec![0; scales.len()],
    };
    QuantParams::new(spec, scale_entry.shape.to_vec(), scales, zero_points)
}

/// The int8 values and parameters of a tensor stored with `kind=quant`, `qtype=i8` and integer zero
/// points (a sparse layout made dense, which needs zero points of 0); `None` for any other kind.
#[cfg(feature = "serde")]
pub(crate) fn stored_i8(
    input: &ModelFile,
    entry: &TensorEntry<'_>,
    changed: &Changed<'_>,
) -> Result<Option<(Vec<i8>, QuantParams)>> {
    if changed.kind != "quant"
        || changed.meta.get("qtype") != Some(&"i8")
        || changed.meta.contains_key("zero")
    {
        return Ok(None);
    }
    let params = quant_params(input, entry.name, changed)?;
    let bytes = if changed.storage == Storage::Dense {
        entry.bytes.to_vec()
    } else {
        if params.zero_points().iter().any(|&z| z != 0) {
            return Ok(None);
        }
        sparse_store::densify(input, entry, changed.storage, changed.elem(), &changed.shape)?.bytes
    };
    if bytes.len() != crate::tensor::numel(&changed.shape)? {
        return Err(Error::format(entry.name, "stored int8 values disagree with the shape"));
    }
    Ok(Some((bytemuck::cast_slice(&bytes).to_vec(), params)))
}

/// Turns a file or folder written by [`compress`] back into plain float safetensors, laid out as the
/// input is (a folder mirrored as [`compress`] mirrors one): every changed tensor restored to its
/// original dtype, companions dropped (and left out of the index), everything else copied byte for byte.
///
/// Everything read is checked against the format: each file must carry `greenai.format` = `1` (a plain
/// safetensors file, or one from a future greenai, is refused); every `greenai.tensor.NAME` entry must
/// name a tensor, with known `kind`, `dtype`, `qtype`, `mode` and `granularity`, a stored dtype and
/// shape that match them, and companions of the right dtype and shape in the same file; a restored
/// value that is not finite in the original dtype is refused. Only a quantized tensor's companions are
/// dropped: a user tensor called `NAME.scale` beside a cast or pruned `NAME` is kept. Memory holds one
/// tensor at a time; `progress(bytes done, bytes in all)` is called after each tensor.
pub fn decompress(input: &Model, output: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    for shard in input.shards() {
        check_format(shard)?;
    }
    let mut writer = ModelWriter::create(input, output)?;
    let (mut done, total) = (0u64, input.data_bytes());
    for shard in input.shards() {
        let mut out = writer.shard(shard)?;
        let metadata = decompress_shard(
            shard,
            &mut |piece| {
                match piece {
                    Piece::Same(info) => copy_tensor(shard, info, &mut out)?,
                    Piece::Restored(name, t) => out.add(&name, &t)?,
                }
                Ok(())
            },
            &mut |bytes| {
                done += bytes;
                progress(done, total);
            },
        )?;
        writer.finish_shard(shard, out, &metadata)?;
    }
    writer.commit()
}

/// One tensor of [`decompress`]'s output: an input tensor kept as it is, or a restored one.
enum Piece<'a> {
    Same(&'a TensorInfo),
    Restored(String, OutTensor<'static>),
}

fn check_format(input: &ModelFile) -> Result<()> {
    let file = input.path().display().to_string();
    match input.metadata().get("greenai.format").map(String::as_str) {
        Some(version) if READS.contains(&version) => Ok(()),
        Some(other) => Err(Error::format(
            file,
            format!("greenai format `{other}`: this greenai reads formats {}", READS.join(" and ")),
        )),
        None => Err(Error::format(file, "not a file written by `greenai compress` (no greenai.format)")),
    }
}

/// The tensors and metadata [`decompress`] writes for one file, checked as it checks them, without
/// writing anything (every tensor read into memory).
#[allow(clippy::type_complexity)]
pub fn decompress_tensors<'a>(
    input: &'a ModelFile,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<(String, OutTensor<'a>)>, HashMap<String, String>)> {
    check_format(input)?;
    let mut outputs = Vec::new();
    let (mut done, total) = (0, input.len());
    let metadata = decompress_shard(
        input,
        &mut |piece| {
            outputs.push(match piece {
                Piece::Same(info) => {
                    let entry = input.read(info)?;
                    let out =
                        OutTensor { dtype: entry.dtype, shape: entry.shape.to_vec(), bytes: entry.bytes };
                    (info.name.clone(), out)
                }
                Piece::Restored(name, t) => (name, t),
            });
            Ok(())
        },
        &mut |_| {
            done += 1;
            progress(done, total);
        },
    )?;
    Ok((outputs, metadata))
}

/// Checks one file written by [`compress`] and passes each tensor of its output to `sink`, in file
/// order; `progress(bytes)` after each input tensor. Returns the output's metadata.
fn decompress_shard<'a>(
    input: &'a ModelFile,
    sink: &mut dyn FnMut(Piece<'a>) -> Result<()>,
    progress: &mut dyn FnMut(u64),
) -> Result<HashMap<String, String>> {
    let file = input.path().display().to_string();
    let mut changed = HashMap::new();
    for info in input.tensors() {
        if let Some(text) = input.metadata().get(&metadata_key(&info.name)) {
            changed.insert(info.name.as_str(), parse_changed(input, info, text)?);
        }
    }
    if let Some(key) = input
        .metadata()
        .keys()
        .filter_map(|k| k.strip_prefix("greenai.tensor."))
        .find(|name| !changed.contains_key(name))
    {
        return Err(Error::format(file, format!("`{}` describes no tensor of the file", metadata_key(key))));
    }
    let companions: std::collections::HashSet<&str> =
        changed.values().flat_map(|c| c.companions.iter().map(String::as_str)).collect();
    for info in input.tensors() {
        if !companions.contains(info.name.as_str()) {
            match changed.get(info.name.as_str()) {
                None => sink(Piece::Same(info))?,
                Some(c) => {
                    let entry = input.read(info)?;
                    let values = restore(input, &entry, c)?;
                    drop(entry);
                    let bytes = encode(&info.name, &values, c.dtype)?;
                    let out = OutTensor { dtype: c.dtype, shape: c.shape.clone(), bytes: Cow::Owned(bytes) };
                    sink(Piece::Restored(info.name.clone(), out))?;
                }
            }
        }
        progress(info.byte_len);
    }
    Ok(input
        .metadata()
        .iter()
        .filter(|(k, _)| !k.starts_with("greenai."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}
