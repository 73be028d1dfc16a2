//! Whole models: one safetensors file, or a Hugging Face model folder (`config.json` with one
//! `model.safetensors`, or shards and their `model.safetensors.index.json`), read tensor by tensor
//! across shards ([`Model`]) and written back as a folder that mirrors the input ([`ModelWriter`]).
//!
//! ```no_run
//! # fn main() -> greenai::Result<()> {
//! use greenai::model::Model;
//! let model = Model::open("all-MiniLM-L6-v2")?; // a file or a folder
//! let config = model.config_json(); // config.json's text, if any
//! for info in model.tensors() {
//!     let tensor = model.read(info)?; // this tensor's bytes, from whichever shard holds it
//!     println!("{} {:?} {:?} {} bytes", info.name, info.dtype, info.shape, tensor.bytes.len());
//! }
//! # let _ = config; Ok(()) }
//! ```
//!
//! Every output format writes through a [`ModelWriter`]: one [`SafetensorsWriter`] per input shard
//! (under the shard's own name), [`ModelWriter::write_file`] for files it rewrites (a `config.json`
//! with a quantization block), and [`ModelWriter::commit`] copies every other file of the input
//! (tokenizer, configs, README, subfolders), rewrites the index (its `weight_map` naming every tensor
//! written, `total_size` their bytes) and renames the temporary folder to the destination.

use super::file::{ModelFile, TensorEntry, TensorInfo};
use super::write::{check_distinct, Destination, SafetensorsWriter, StagedDir, StagedFile};
use crate::{Error, Result};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The weights of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The model's configuration.
pub const CONFIG_FILE: &str = "config.json";

/// Folders deeper than this in a model folder are refused (a loop of symbolic links ends here).
const MAX_DEPTH: usize = 16;

/// A model opened for reading: one safetensors file or a model folder, its tensors served across
/// shards, each read only when asked (memory bounded by the largest tensor, see [`ModelFile`]).
pub struct Model {
    path: PathBuf,
    is_dir: bool,
    config: Option<String>,
    shards: Vec<ModelFile>,
    /// The input's index, when sharded.
    index: Option<serde_json::Map<String, Value>>,
    /// Every other file of the folder, relative to it, sorted.
    others: Vec<PathBuf>,
    /// Tensor name to shard.
    shard_of: HashMap<String, usize>,
}

fn bad(path: &Path, why: impl Into<String>) -> Error {
    Error::format(path.display().to_string(), why)
}

impl From<ModelFile> for Model {
    fn from(file: ModelFile) -> Self {
        let shard_of = file.tensors().iter().map(|t| (t.name.clone(), 0)).collect();
        Model {
            path: file.path().to_path_buf(),
            is_dir: false,
            config: None,
            shards: vec![file],
            index: None,
            others: Vec::new(),
            shard_of,
        }
    }
}

impl Model {
    /// Opens a safetensors file or a model folder and checks it whole before anything is read:
    /// a folder without weights, an index that is not JSON, names a shard that is missing or a
    /// tensor that its shard lacks, a shard holding a tensor the index does not list, a tensor in two
    /// shards, or a `config.json` that is not JSON are format errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_dir() {
            return Ok(ModelFile::open(path)?.into());
        }
        let mut files = Vec::new();
        list_files(path, Path::new(""), 0, &mut files)?;
        files.sort();
        let config = match std::fs::read_to_string(path.join(CONFIG_FILE)) {
            Ok(text) => {
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| bad(&path.join(CONFIG_FILE), format!("not JSON: {e}")))?;
                Some(text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(path.join(CONFIG_FILE), e)),
        };
        let (shards, index) = if files.iter().any(|f| f == Path::new(INDEX_FILE)) {
            let (shards, index) = open_shards(path)?;
            (shards, Some(index))
        } else if files.iter().any(|f| f == Path::new(SINGLE_FILE)) {
            (vec![ModelFile::open(path.join(SINGLE_FILE))?], None)
        } else {
            return Err(bad(
                path,
                format!("a model folder without weights: neither {SINGLE_FILE} nor {INDEX_FILE}"),
            ));
        };
        let mut shard_of = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            for t in shard.tensors() {
                if let Some(j) = shard_of.insert(t.name.clone(), i) {
                    return Err(bad(
                        path,
                        format!(
                            "tensor `{}` is in two shards, {} and {}",
                            t.name,
                            file_name(shards[j].path()),
                            file_name(shard.path())
                        ),
                    ));
                }
            }
        }
        let weights: HashSet<PathBuf> = shards.iter().map(|s| PathBuf::from(file_name(s.path()))).collect();
        let others =
            files.into_iter().filter(|f| !weights.contains(f) && f != Path::new(INDEX_FILE)).collect();
        Ok(Model { path: path.to_path_buf(), is_dir: true, config, shards, index, others, shard_of })
    }

    /// The path opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the model is a folder (else one safetensors file).
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    /// The text of `config.json` (checked to be JSON), when the model is a folder that has one.
    pub fn config_json(&self) -> Option<&str> {
        self.config.as_deref()
    }

    /// The safetensors files, in the index's order of shard names (sorted).
    pub fn shards(&self) -> &[ModelFile] {
        &self.shards
    }

    /// Every tensor, shard after shard, each shard in file order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.shards.iter().flat_map(|s| s.tensors())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.shards.iter().map(ModelFile::len).sum()
    }

    /// Whether the model holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of tensor data over all shards.
    pub fn data_bytes(&self) -> u64 {
        self.tensors().map(|t| t.byte_len).sum()
    }

    /// The tensor called `name`, if the model has it.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.shard_of.get(name).and_then(|&i| self.shards[i].info(name))
    }

    /// The shard holding the tensor called `name`.
    pub fn shard_of(&self, name: &str) -> Option<&ModelFile> {
        self.shard_of.get(name).map(|&i| &self.shards[i])
    }

    /// Reads one tensor (`info` from [`tensors`](Self::tensors) or [`info`](Self::info)) from its shard.
    pub fn read<'a>(&'a self, info: &'a TensorInfo) -> Result<TensorEntry<'a>> {
        let shard = self
            .shard_of(&info.name)
            .ok_or_else(|| bad(&self.path, format!("no tensor named `{}`", info.name)))?;
        shard.read(info)
    }

    /// Reads the tensor called `name` (an error when the model has none).
    pub fn tensor(&self, name: &str) -> Result<TensorEntry<'_>> {
        let info = self.info(name).ok_or_else(|| bad(&self.path, format!("no tensor named `{name}`")))?;
        self.read(info)
    }

    /// The folder's other files (not weights, not the index), relative to it, sorted.
    pub fn other_files(&self) -> &[PathBuf] {
        &self.others
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Lists the regular files under `root/relative` (links followed, `.git` left out) into `out`.
fn list_files(root: &Path, relative: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(relative);
    if depth > MAX_DEPTH {
        return Err(bad(&dir, format!("folders nested deeper than {MAX_DEPTH} (a loop of links?)")));
    }
    for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        if entry.file_name() == ".git" {
            continue;
        }
        let rel = relative.join(entry.file_name());
        let meta = std::fs::metadata(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        if meta.is_dir() {
            list_files(root, &rel, depth + 1, out)?;
        } else if meta.is_file() {
            out.push(rel);
        } else {
            return Err(bad(&entry.path(), "neither a file nor a folder (a device, FIFO or socket)"));
        }
    }
    Ok(())
}

/// Opens the shards `dir`'s index names and checks the index against them.
fn open_shards(dir: &Path) -> Result<(Vec<ModelFile>, serde_json::Map<String, Value>)> {
    let index_path = dir.join(INDEX_FILE);
    let text = std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
    let index: serde_json::Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| bad(&index_path, format!("not a JSON object: {e}")))?;
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(&index_path, "no `weight_map` object"))?;
    let mut listed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tensor, shard) in map {
        let shard = shard.as_str().ok_or_else(|| {
            bad(&index_path, format!("`weight_map` gives `{tensor}` a shard that is not a string"))
        })?;
        let plain = Path::new(shard).file_name().is_some_and(|n| n == std::ffi::OsStr::new(shard));
        if !plain || shard == INDEX_FILE {
            return Err(bad(&index_path, format!("shard `{shard}` is not a file name of the folder")));
        }
        listed.entry(shard).or_default().push(tensor);
    }
    let mut shards = Vec::with_capacity(listed.len());
    for (shard, tensors) in &listed {
        let path = dir.join(shard);
        if !path.is_file() {
            return Err(bad(&index_path, format!("names shard `{shard}`, which is missing")));
        }
        let file = ModelFile::open(&path)?;
        for tensor in tensors {
            if file.info(tensor).is_none() {
                return Err(bad(
                    &index_path,
                    format!("puts `{tensor}` in `{shard}`, which does not hold it"),
                ));
            }
        }
        for t in file.tensors() {
            match map.get(&t.name).and_then(Value::as_str) {
                Some(s) if s == *shard => {}
                Some(other) => {
                    return Err(bad(
                        &index_path,
                        format!("puts `{}` in `{other}`, but `{shard}` holds it", t.name),
                    ))
                }
                None => {
                    return Err(bad(
                        &index_path,
                        format!("does not list `{}`, which `{shard}` holds", t.name),
                    ))
                }
            }
        }
        shards.push(file);
    }
    Ok((shards, index))
}

/// Writes a model as its input was laid out: a file for a file, a folder mirroring a folder (see the
/// module documentation), all or nothing.
pub struct ModelWriter {
    output: PathBuf,
    staged: Option<StagedDir>,
    index: Option<serde_json::Map<String, Value>>,
    others: Vec<PathBuf>,
    input_dir: PathBuf,
    weight_map: BTreeMap<String, String>,
    total_size: u64,
    written: HashSet<PathBuf>,
    /// A single-file input written as a folder: its tensors go to [`SINGLE_FILE`].
    file_as_folder: bool,
}

impl ModelWriter {
    /// Checks `output` against `input` and prepares it: for a file, a replaceable destination
    /// distinct from the input; for a folder, a path that does not exist and is not inside the input
    /// folder, staged as a temporary folder beside it.
    pub fn create(input: &Model, output: &Path) -> Result<Self> {
        let mut writer = ModelWriter::unstaged(input, output);
        if !input.is_dir {
            Destination::check(output)?;
            check_distinct(&[("input", input.path()), ("output", output)])?;
            return Ok(writer);
        }
        let inside = match (std::fs::canonicalize(&input.path), resolve_new(output)) {
            (Ok(i), Some(o)) => o.starts_with(i),
            _ => false,
        };
        if inside {
            return Err(Error::invalid(
                "output",
                output.display(),
                format!("is inside the input folder `{}`", input.path.display()),
            ));
        }
        writer.staged = Some(StagedDir::create(output)?);
        Ok(writer)
    }

    /// Like [`create`](Self::create), but the output is a folder even for a single-file input (its
    /// tensors then go to [`SINGLE_FILE`]): for formats that need files beside the weights.
    pub fn create_folder(input: &Model, output: &Path) -> Result<Self> {
        if input.is_dir {
            return ModelWriter::create(input, output);
        }
        let mut writer = ModelWriter::unstaged(input, output);
        writer.staged = Some(StagedDir::create(output)?);
        writer.file_as_folder = true;
        Ok(writer)
    }

    /// A writer for `input` to `output`, nothing checked or staged yet.
    fn unstaged(input: &Model, output: &Path) -> Self {
        ModelWriter {
            output: output.to_path_buf(),
            staged: None,
            index: input.index.clone(),
            others: input.others.clone(),
            input_dir: input.path.clone(),
            weight_map: BTreeMap::new(),
            total_size: 0,
            written: HashSet::new(),
            file_as_folder: false,
        }
    }

    /// The name in the output folder of the input shard `shard`.
    fn shard_name(&self, shard: &ModelFile) -> String {
        if self.file_as_folder {
            SINGLE_FILE.to_string()
        } else {
            file_name(shard.path())
        }
    }

    /// Where the output of the input shard `shard` goes.
    fn shard_path(&self, shard: &ModelFile) -> PathBuf {
        match &self.staged {
            Some(staged) => staged.path().join(self.shard_name(shard)),
            None => self.output.clone(),
        }
    }

    /// A writer for the output of the input shard `shard` (same name in the output folder; the
    /// output path itself for a file).
    pub fn shard(&self, shard: &ModelFile) -> Result<SafetensorsWriter> {
        SafetensorsWriter::create(&self.shard_path(shard))
    }

    /// Finishes `writer`, the output of `shard`, with `metadata`, and records its tensors for the index.
    pub fn finish_shard(
        &mut self,
        shard: &ModelFile,
        writer: SafetensorsWriter,
        metadata: &HashMap<String, String>,
    ) -> Result<()> {
        let name = self.shard_name(shard);
        for tensor in writer.names() {
            self.weight_map.insert(tensor.to_string(), name.clone());
        }
        self.total_size += writer.data_len();
        self.written.insert(PathBuf::from(&name));
        writer.finish(metadata)
    }

    /// Writes `bytes` as the folder's file `relative` (instead of the input's copy, if any); refused
    /// when the output is a single file.
    pub fn write_file(&mut self, relative: &Path, bytes: &[u8]) -> Result<()> {
        let staged = self.staged.as_ref().ok_or_else(|| {
            Error::invalid("output", self.output.display(), "is a single file: it holds no other files")
        })?;
        if let Some(parent) = relative.parent() {
            staged.create_dir(parent)?;
        }
        let mut file = StagedFile::create(&Destination::check(&staged.path().join(relative))?)?;
        file.write_all(bytes)?;
        file.commit()?;
        self.written.insert(relative.to_path_buf());
        Ok(())
    }

    /// Completes the output: copies the input folder's other files, writes the index, and renames
    /// the folder into place (a file output is already in place).
    pub fn commit(mut self) -> Result<()> {
        let Some(staged) = self.staged.take() else { return Ok(()) };
        for relative in &self.others {
            if self.written.contains(relative) {
                continue;
            }
            if let Some(parent) = relative.parent() {
                staged.create_dir(parent)?;
            }
            let source = self.input_dir.join(relative);
            let mut reader = std::fs::File::open(&source).map_err(|e| Error::io(&source, e))?;
            let mut file = StagedFile::create(&Destination::check(&staged.path().join(relative))?)?;
            file.copy_from(&mut reader)?;
            file.commit()?;
        }
        if let Some(mut index) = self.index.take() {
            let map = self.weight_map.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            index.insert("weight_map".into(), Value::Object(map));
            let metadata = index.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
            if let Some(m) = metadata.as_object_mut() {
                m.insert("total_size".into(), Value::from(self.total_size));
            }
            let mut text = serde_json::to_string_pretty(&Value::Object(index))
                .map_err(|e| Error::format(INDEX_FILE, e.to_string()))?;
            text.push('\n');
            let mut file = StagedFile::create(&Destination::check(&staged.path().join(INDEX_FILE))?)?;
            file.write_all(text.as_bytes())?;
            file.commit()?;
        }
        staged.commit()
    }
}

/// A path that may not exist yet, with links resolved: its resolved folder joined with its name.
fn resolve_new(path: &Path) -> Option<PathBuf> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(std::fs::canonicalize(parent).ok()?.join(path.file_name()?))
}
