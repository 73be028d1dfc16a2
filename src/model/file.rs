//! Reading safetensors files: the file is read into memory, checked, and served one tensor at a time.
//!
//! The file is read, not memory-mapped: a mapped file that another process truncates while greenai
//! reads it kills the process with SIGBUS, and no check of the length beforehand can close that race.
//! A read file is a snapshot: a file that changes size while it is read is an error. The cost is
//! that the whole file is resident while it is open.

use crate::error::try_vec;
use crate::{Error, Result};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An open safetensors file: read whole, the header parsed and checked.
pub struct ModelFile {
    path: PathBuf,
    map: Vec<u8>,
    header_len: usize,
    entries: Vec<(String, safetensors::tensor::TensorInfo)>,
    metadata: HashMap<String, String>,
}

/// One tensor of a [`ModelFile`], borrowing its bytes from the map.
#[derive(Clone, Copy, Debug)]
pub struct TensorEntry<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// Its safetensors dtype (every dtype of the format is readable as bytes).
    pub dtype: Dtype,
    /// Its shape.
    pub shape: &'a [usize],
    /// Its raw little-endian bytes.
    pub bytes: &'a [u8],
}

fn format_error(path: &Path, e: safetensors::SafeTensorError) -> Error {
    Error::format(path.display().to_string(), format!("not a valid safetensors file: {e:?}"))
}

impl ModelFile {
    /// Opens and validates a safetensors file: a truncated file, a corrupt header or offsets that
    /// disagree with the file's size are format errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_bytes(path, read_whole(path)?)
    }

    /// Validates the bytes of a safetensors file already in memory, as [`open`](Self::open) does a
    /// file's; `path` names it in messages and is the path [`compress`](fn@super::compress) and
    /// [`decompress`](fn@super::decompress) keep distinct from their output.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        let path = path.as_ref();
        let (header_len, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| format_error(path, e))?;
        let mut entries: Vec<_> = metadata.tensors().into_iter().map(|(n, info)| (n, info.clone())).collect();
        entries.sort_by_key(|(_, info)| info.data_offsets.0);
        let metadata = metadata.metadata().clone().unwrap_or_default();
        Ok(ModelFile { path: path.to_path_buf(), map: bytes, header_len, entries, metadata })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header's `__metadata__` entries.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Size of the JSON header in bytes.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensors in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorEntry<'_>> {
        let data = &self.map[8 + self.header_len..];
        self.entries.iter().map(move |(name, info)| TensorEntry {
            name,
            dtype: info.dtype,
            shape: &info.shape,
            bytes: &data[info.data_offsets.0..info.data_offsets.1],
        })
    }

    /// Says that a tensor will not be read again soon. The file is held in memory (see the module
    /// documentation), so this does nothing today; callers keep calling it so that a streaming reader
    /// can release the tensor's memory.
    pub fn release(&self, entry: &TensorEntry<'_>) {
        let _ = entry;
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<TensorEntry<'_>> {
        self.tensors().find(|t| t.name == name)
    }
}

/// Reads the regular file at `path` whole; a file whose size changes while it is read is an error.
fn read_whole(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::invalid("input", path.display(), "is not a regular file"));
    }
    let expected = usize::try_from(meta.len())
        .map_err(|_| Error::format(path.display().to_string(), "larger than this machine's address space"))?;
    let mut bytes = try_vec(expected, 0u8)?;
    let mut filled = 0;
    while filled < expected {
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let mut probe = [0u8; 1];
    let grew = loop {
        match file.read(&mut probe) {
            Ok(n) => break n > 0,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    };
    if filled != expected || grew {
        return Err(Error::format(
            path.display().to_string(),
            format!("the file changed size while it was read ({expected} bytes when opened)"),
        ));
    }
    Ok(bytes)
}

impl TensorEntry<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the elements are floating point (F16, BF16, F32, F64; not the FP8 formats).
    pub fn is_float(&self) -> bool {
        matches!(self.dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    /// The elements converted to f32 (F64 rounds to nearest); other dtypes are refused.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let mut out = try_vec(self.len(), 0f32)?;
        self.read_f32_into(&mut out)?;
        Ok(out)
    }

    /// Converts the elements to f32 into `out` (`out.len()` must equal the element count).
    pub fn read_f32_into(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.len() {
            return Err(Error::ShapeMismatch {
                context: "TensorEntry::read_f32_into",
                expected: vec![self.len()],
                actual: vec![out.len()],
            });
        }
        let width = self.dtype.size();
        let chunks = self.bytes.chunks_exact(width);
        match self.dtype {
            Dtype::F32 => out
                .iter_mut()
                .zip(chunks)
                .for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Dtype::F16 => {
                out.iter_mut().zip(chunks).for_each(|(o, b)| *o = f16::from_le_bytes([b[0], b[1]]).to_f32())
            }
            Dtype::BF16 => {
                out.iter_mut().zip(chunks).for_each(|(o, b)| *o = bf16::from_le_bytes([b[0], b[1]]).to_f32())
            }
            Dtype::F64 => out
                .iter_mut()
                .zip(chunks)
                .for_each(|(o, b)| *o = f64::from_le_bytes(b.try_into().expect("chunks_exact(8)")) as f32),
            other => {
                return Err(Error::invalid(
                    "dtype",
                    format!("{other:?}"),
                    format!("tensor `{}` is not floating point", self.name),
                ))
            }
        }
        Ok(())
    }
}
