//! Reading a compressed model tensor by tensor, whoever wrote it: what an inference engine needs to
//! load greenai's own files, compressed-tensors folders (llm-compressor, vLLM) and GGUF files
//! (llama.cpp) without the command.
//!
//! [`CompressedModel::open`] reads headers only and lists the logical tensors (a quantized weight
//! with its scales is one tensor, named as the model names it); each tensor's data is read when
//! asked: as f32 ([`read_f32`](CompressedModel::read_f32)), as an int8 linear layer ready to run
//! ([`read_int8`](CompressedModel::read_int8)), or as the ggml blocks it is stored in
//! ([`read_ggml`](CompressedModel::read_ggml)). Memory holds one tensor at a time.

use super::compress::{parse_changed, restore, stored_i8, Changed};
use super::compressed_tensors::{self as ct, DecodedModule, ModuleTensors};
use super::dir::Model;
use super::file::ModelFile;
use super::gguf::{GgufFile, TensorType};
use super::inspect::{logical_rows, unchanged_row, LogicalSummary};
use super::metadata_key;
use crate::kernels::gemm_int8::QuantLinear;
use crate::kernels::ggml::GgmlType;
use crate::quant::Granularity;
use crate::{Error, Result};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Who wrote a model, as [`CompressedModel::open`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// Plain safetensors: every tensor stored as it is.
    Safetensors,
    /// `greenai compress`'s convention (`greenai.format` in the metadata).
    Greenai,
    /// compressed-tensors (`quantization_config.quant_method` in `config.json`).
    CompressedTensors,
    /// A GGUF file.
    Gguf,
}

impl ModelFormat {
    /// Its name in messages and in `greenai inspect`: `safetensors`, `greenai`,
    /// `compressed-tensors`, `gguf`.
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Greenai => "greenai",
            ModelFormat::CompressedTensors => "compressed-tensors",
            ModelFormat::Gguf => "gguf",
        }
    }
}

/// Int8 weights with one scale and zero point per output channel, as stored: `w = (q - zero) * scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Weights {
    /// Output channels (rows).
    pub out_features: usize,
    /// Input channels (columns).
    pub in_features: usize,
    /// The values, `out_features x in_features`, row-major.
    pub values: Vec<i8>,
    /// One scale per output channel.
    pub scales: Vec<f32>,
    /// One zero point per output channel (all 0 when symmetric).
    pub zero_points: Vec<i32>,
}

impl Int8Weights {
    /// The int8 linear layer `y = x W^T + bias` these weights make, without going through f32.
    pub fn to_linear(&self, bias: Option<&[f32]>) -> Result<QuantLinear> {
        let zero = self.zero_points.iter().any(|&z| z != 0).then_some(&self.zero_points[..]);
        QuantLinear::from_int8(&self.values, self.out_features, self.in_features, &self.scales, zero, bias)
    }
}

impl std::fmt::Debug for CompressedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressedModel")
            .field("format", &self.format)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// How one logical tensor is read.
enum Plan {
    /// A tensor of the safetensors files, stored as it is or in greenai's convention.
    Stored,
    /// A compressed-tensors module: its prefix, and the config's bits and group size for it.
    Module { module: String, bits: Option<u32>, group_size: Option<usize> },
    /// A GGUF tensor, by its index in the file.
    Gguf(usize),
}

enum Source {
    Safetensors(Model),
    Gguf(GgufFile),
}

/// A compressed model (greenai's convention, compressed-tensors, GGUF or plain safetensors) opened
/// for reading tensor by tensor: its logical tensors listed from the headers, each read as f32, as
/// int8 weights or as ggml blocks when asked; memory holds one tensor at a time.
pub struct CompressedModel {
    format: ModelFormat,
    source: Source,
    tensors: Vec<LogicalSummary>,
    plans: Vec<Plan>,
    by_name: HashMap<String, usize>,
}

impl CompressedModel {
    /// Opens a GGUF file, a safetensors file (plain or greenai's convention; with compressed-tensors'
    /// `config.json` beside it, a compressed-tensors model) or a model folder (sharded or not), and
    /// lists its logical tensors; a corrupt header, index or description is an error here, a corrupt
    /// tensor when it is read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_file() && super::gguf::is_gguf_file(path) {
            return Self::from_gguf(GgufFile::open(path)?);
        }
        let model = Model::open(path)?;
        // A folder's config.json, or one beside a lone file (ignored there when it is not JSON).
        let config = match model.config_json() {
            Some(text) => Some(ct::parse_config(text, super::CONFIG_FILE)?),
            None => ct::model_config(&model).ok(),
        };
        Self::from_model(model, config.as_ref())
    }

    /// Reads a safetensors model already opened (a folder, or a file held in memory:
    /// `ModelFile::from_bytes(..)?.into()`), whose `config.json` is `config` when it has one: a
    /// compressed-tensors `quantization_config` there makes it a compressed-tensors model.
    pub fn from_model(model: Model, config: Option<&Value>) -> Result<Self> {
        if let Some(qc) = config.and_then(ct::compressed_tensors_config) {
            return Self::from_compressed_tensors(model, qc);
        }
        let mut reader = CompressedModel::empty(ModelFormat::Safetensors, Source::Safetensors(model));
        let Source::Safetensors(model) = &reader.source else { unreachable!("just built") };
        let mut rows = Vec::new();
        for shard in model.shards() {
            match logical_rows(shard, false)? {
                Some(r) => {
                    reader.format = ModelFormat::Greenai;
                    rows.extend(r);
                }
                None => rows.extend(shard.tensors().iter().map(|t| unchanged_row(t, None))),
            }
        }
        for row in rows {
            reader.push(row, Plan::Stored);
        }
        Ok(reader)
    }

    fn empty(format: ModelFormat, source: Source) -> Self {
        CompressedModel { format, source, tensors: Vec::new(), plans: Vec::new(), by_name: HashMap::new() }
    }

    fn push(&mut self, row: LogicalSummary, plan: Plan) {
        self.by_name.insert(row.name.clone(), self.tensors.len());
        self.tensors.push(row);
        self.plans.push(plan);
    }

    fn from_gguf(file: GgufFile) -> Result<Self> {
        let mut reader = CompressedModel::empty(ModelFormat::Gguf, Source::Gguf(file));
        let Source::Gguf(file) = &reader.source else { unreachable!("just built") };
        let rows: Vec<LogicalSummary> = file
            .tensors
            .iter()
            .map(|t| {
                let (bits, scheme) = match t.ty {
                    TensorType::Ggml(g) => (
                        (g.block_bytes() * 8) as f64 / g.block_elems() as f64,
                        format!("ggml blocks of {}", g.block_elems()),
                    ),
                    other => ((other.block_bytes() * 8) as f64, "unchanged".to_string()),
                };
                let integer =
                    matches!(t.ty, TensorType::I8 | TensorType::I16 | TensorType::I32 | TensorType::I64);
                LogicalSummary {
                    name: t.name.clone(),
                    dtype: t.ty.name().to_ascii_lowercase(),
                    restores_to: if integer { t.ty.name().to_string() } else { "F32".to_string() },
                    shape: t.shape(),
                    params: t.len(),
                    bits,
                    scheme,
                    storage: "dense".into(),
                    sparsity: None,
                    bytes: t.size,
                }
            })
            .collect();
        for (i, row) in rows.into_iter().enumerate() {
            reader.push(row, Plan::Gguf(i));
        }
        Ok(reader)
    }

    fn from_compressed_tensors(model: Model, qc: &serde_json::Map<String, Value>) -> Result<Self> {
        let (int_args, pack_args) = (ct::config_args(qc, false)?, ct::config_args(qc, true)?);
        let mut reader = CompressedModel::empty(ModelFormat::CompressedTensors, Source::Safetensors(model));
        let Source::Safetensors(model) = &reader.source else { unreachable!("just built") };
        let mut consumed = BTreeSet::new();
        let mut rows = Vec::new();
        for info in model.tensors() {
            let Some(module) = info.name.strip_suffix(".weight_scale") else { continue };
            let packed = model.info(&format!("{module}.weight_packed")).is_some();
            let (bits, group_size) = if packed { pack_args } else { int_args };
            let parts = module_tensors(model, module, false)?;
            let m = ct::decode_module(module, &parts, bits, group_size, false)?;
            let names: Vec<String> = parts.names().map(str::to_string).collect();
            let bytes = names.iter().filter_map(|n| model.info(n)).map(|t| t.byte_len as usize).sum();
            consumed.extend(names);
            rows.push((
                module_row(module, &m, &parts, bytes),
                Plan::Module { module: module.to_string(), bits, group_size },
            ));
        }
        for info in model.tensors() {
            if let Some(m) = info.name.strip_suffix(".weight_packed") {
                if !consumed.contains(&info.name) {
                    return Err(ct::bad(m, "weight_packed without weight_scale"));
                }
            }
            if !consumed.contains(&info.name) && !ct::DROPPED.iter().any(|s| info.name.ends_with(s)) {
                rows.push((unchanged_row(info, None), Plan::Stored));
            }
        }
        for (row, plan) in rows {
            reader.push(row, plan);
        }
        Ok(reader)
    }

    /// The safetensors files read (`None` for a GGUF file).
    pub fn model(&self) -> Option<&Model> {
        match &self.source {
            Source::Safetensors(model) => Some(model),
            Source::Gguf(_) => None,
        }
    }

    /// The stored tensor that locates tensor `index` (a module's weight or packed weight, else the
    /// tensor itself), and whether it is a compressed-tensors module.
    pub(crate) fn home(&self, index: usize) -> (String, bool) {
        match (&self.source, &self.plans[index]) {
            (Source::Safetensors(model), Plan::Module { module, .. }) => {
                let weight = format!("{module}.weight");
                match model.info(&weight) {
                    Some(_) => (weight, true),
                    None => (format!("{module}.weight_packed"), true),
                }
            }
            _ => (self.tensors[index].name.clone(), false),
        }
    }

    /// Who wrote the model.
    pub fn format(&self) -> ModelFormat {
        self.format
    }

    /// The logical tensors, in file order (shards in order; compressed-tensors modules first).
    pub fn tensors(&self) -> &[LogicalSummary] {
        &self.tensors
    }

    /// The index of the tensor called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn get(&self, index: usize) -> Result<&LogicalSummary> {
        self.tensors.get(index).ok_or_else(|| {
            Error::invalid("index", index, format!("the model has {} tensors", self.tensors.len()))
        })
    }

    /// The tensor at `index` as f32 (row-major, its logical shape): dequantized as its format
    /// defines it; an integer tensor that is not a quantized weight is refused.
    pub fn read_f32(&self, index: usize) -> Result<Vec<f32>> {
        let row = self.get(index)?;
        let values = self.read_f32_unchecked(index, row)?;
        if values.len() != row.params {
            return Err(Error::format(
                &row.name,
                format!("{} values stored for shape {:?}", values.len(), row.shape),
            ));
        }
        Ok(values)
    }

    fn read_f32_unchecked(&self, index: usize, row: &LogicalSummary) -> Result<Vec<f32>> {
        match (&self.source, &self.plans[index]) {
            (Source::Gguf(file), Plan::Gguf(i)) => {
                file.to_f32(&file.tensors[*i]).map_err(|e| Error::invalid("tensor", &row.name, e.to_string()))
            }
            (Source::Safetensors(model), Plan::Module { module, bits, group_size }) => {
                let parts = module_tensors(model, module, true)?;
                ct::decode_module(module, &parts, *bits, *group_size, true)?.dequantize()
            }
            (Source::Safetensors(model), Plan::Stored) => {
                let (shard, changed) = greenai_tensor(model, &row.name)?;
                let entry = model.tensor(&row.name)?;
                match changed {
                    Some(changed) => restore(shard, &entry, &changed),
                    None => entry.to_f32(),
                }
            }
            _ => unreachable!("plans match their source"),
        }
    }

    /// The tensor at `index` as int8 weights with a scale per output channel, read as stored (no
    /// float round trip), when it is stored so: greenai's `int8` per-channel (axis 0) or per-tensor
    /// quantization of a 2-D weight, or a compressed-tensors 8-bit module with channel or tensor
    /// strategy. Any other tensor is refused with what it is.
    pub fn read_int8(&self, index: usize) -> Result<Int8Weights> {
        let row = self.get(index)?;
        let refuse = || {
            Error::invalid(
                "tensor",
                &row.name,
                format!(
                    "is stored as {} {}, not int8 with a scale per output channel: read it as f32",
                    row.dtype, row.scheme
                ),
            )
        };
        let Source::Safetensors(model) = &self.source else { return Err(refuse()) };
        match &self.plans[index] {
            Plan::Module { module, bits, group_size } => {
                let parts = module_tensors(model, module, true)?;
                let m = ct::decode_module(module, &parts, *bits, *group_size, true)?;
                if !m.is_int8_per_channel() {
                    return Err(refuse());
                }
                let per_row = |k: usize| if m.per_tensor { 0 } else { k };
                Ok(Int8Weights {
                    out_features: m.rows,
                    in_features: m.cols,
                    scales: (0..m.rows).map(|r| m.scales[per_row(r)]).collect(),
                    zero_points: (0..m.rows)
                        .map(|r| m.zeros.as_ref().map_or(0, |z| i32::from(z[per_row(r)])))
                        .collect(),
                    values: m.q,
                })
            }
            Plan::Stored => {
                let (shard, Some(changed)) = greenai_tensor(model, &row.name)? else { return Err(refuse()) };
                let [rows, cols] = changed.shape[..] else { return Err(refuse()) };
                let Some((values, params)) = stored_i8(shard, &model.tensor(&row.name)?, &changed)? else {
                    return Err(refuse());
                };
                let per_row = match params.spec().granularity {
                    Granularity::PerTensor => false,
                    Granularity::PerAxis { axis: 0 } => true,
                    _ => return Err(refuse()),
                };
                let k = |r: usize| if per_row { r } else { 0 };
                Ok(Int8Weights {
                    out_features: rows,
                    in_features: cols,
                    values,
                    scales: (0..rows).map(|r| params.scales()[k(r)]).collect(),
                    zero_points: (0..rows).map(|r| params.zero_points()[k(r)]).collect(),
                })
            }
            Plan::Gguf(_) => Err(refuse()),
        }
    }

    /// The tensor at `index` as the ggml blocks it is stored in (a GGUF tensor of a block type, or a
    /// greenai `kind=ggml` tensor stored dense): its type and bytes, `rows x cols` with `cols` its
    /// last dimension. Any other tensor is refused with what it is.
    pub fn read_ggml(&self, index: usize) -> Result<(GgmlType, Vec<u8>)> {
        let row = self.get(index)?;
        let refuse = || {
            Error::invalid(
                "tensor",
                &row.name,
                format!("is stored as {} {}, not in ggml blocks", row.dtype, row.scheme),
            )
        };
        match (&self.source, &self.plans[index]) {
            (Source::Gguf(file), Plan::Gguf(i)) => match file.tensors[*i].ty {
                TensorType::Ggml(ty) => Ok((ty, file.data(&file.tensors[*i])?.into_owned())),
                _ => Err(refuse()),
            },
            (Source::Safetensors(model), Plan::Stored) if row.storage == "dense" => {
                let ty = GgmlType::from_name(&row.dtype).ok_or_else(refuse)?;
                let bytes = model.tensor(&row.name)?.bytes.into_owned();
                let rows = row.params.checked_div(*row.shape.last().unwrap_or(&1)).unwrap_or(0);
                if bytes.len() != ty.matrix_bytes(rows, *row.shape.last().unwrap_or(&1))? {
                    return Err(Error::format(&row.name, "ggml blocks disagree with the shape"));
                }
                Ok((ty, bytes))
            }
            _ => Err(refuse()),
        }
    }
}

/// The shard holding the stored tensor `name`, and how greenai's convention changed it (`None` when
/// it is stored as it came).
fn greenai_tensor<'m>(model: &'m Model, name: &str) -> Result<(&'m ModelFile, Option<Changed<'m>>)> {
    let missing = || Error::format(model.path().display().to_string(), format!("no tensor named `{name}`"));
    let shard = model.shard_of(name).ok_or_else(missing)?;
    let info = shard.info(name).ok_or_else(missing)?;
    let changed = match shard.metadata().get(&metadata_key(name)) {
        Some(text) => Some(parse_changed(shard, info, text)?),
        None => None,
    };
    Ok((shard, changed))
}

/// The tensors of the compressed-tensors module `module`; the weight's bytes only `with_weight`.
fn module_tensors<'m>(model: &'m Model, module: &str, with_weight: bool) -> Result<ModuleTensors<'m>> {
    let get = |suffix: &str| -> Result<Option<super::TensorEntry<'m>>> {
        let name = format!("{module}.{suffix}");
        match model.info(&name) {
            None => Ok(None),
            Some(info) if !with_weight && matches!(suffix, "weight" | "weight_packed") => {
                Ok(Some(super::TensorEntry {
                    name: &info.name,
                    dtype: info.dtype,
                    shape: &info.shape,
                    bytes: Vec::new().into(),
                }))
            }
            Some(info) => model.read(info).map(Some),
        }
    };
    let weight = match (get("weight")?, get("weight_packed")?) {
        (Some(w), None) | (None, Some(w)) => w,
        (Some(_), Some(_)) => return Err(ct::bad(module, "has both weight and weight_packed")),
        (None, None) => return Err(ct::bad(module, "weight_scale without weight or weight_packed")),
    };
    Ok(ModuleTensors {
        weight,
        scale: get("weight_scale")?.ok_or_else(|| ct::bad(module, "no weight_scale"))?,
        zero_point: get("weight_zero_point")?,
        shape: get("weight_shape")?,
        g_idx: get("weight_g_idx")?,
    })
}

fn module_row(module: &str, m: &DecodedModule, parts: &ModuleTensors<'_>, bytes: usize) -> LogicalSummary {
    let strategy = if m.per_tensor {
        "per-tensor".to_string()
    } else if m.groups == 1 {
        "per-channel".to_string()
    } else {
        format!("group {}", m.group_size)
    };
    let mode = if parts.zero_point.is_some() { "asymmetric" } else { "symmetric" };
    let order = if parts.g_idx.is_some() { " act-order" } else { "" };
    let layout = if m.packed { "pack-quantized" } else { "int-quantized" };
    LogicalSummary {
        name: format!("{module}.weight"),
        dtype: format!("int{}", m.bits),
        restores_to: format!("{:?}", m.dtype),
        shape: vec![m.rows, m.cols],
        params: m.rows * m.cols,
        bits: f64::from(m.bits),
        scheme: format!("{strategy} {mode}{order} {layout}"),
        storage: "dense".into(),
        sparsity: None,
        bytes,
    }
}
