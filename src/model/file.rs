//! Reading safetensors files tensor by tensor.
//!
//! [`ModelFile::open`] reads and checks the header only; each tensor's bytes are read when asked, by
//! positioned reads (`read_exact_at`) into a buffer of their own ([`ModelFile::read`]) or in chunks
//! ([`ModelFile::read_chunks`]), so memory is bounded by the largest tensor read whole, not by the
//! file. Offsets are `u64` throughout: tensors beyond 4 GiB are read like any other.
//!
//! The file is read, not memory-mapped (see [`Bytes`]): a file that changes size while it is open is
//! refused, never half read.

use super::bytes::Bytes;
use crate::error::try_vec;
use crate::{Error, Result};
use half::{bf16, f16};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Largest header the safetensors format allows (its reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;

/// Bytes read at a time by [`ModelFile::read_chunks`].
pub const CHUNK: usize = 1 << 20;

/// An open safetensors file: the header parsed and checked, the tensors read on demand.
pub struct ModelFile {
    bytes: Bytes,
    header_len: usize,
    entries: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    metadata: HashMap<String, String>,
}

/// What the header says of one tensor: name, dtype, shape and where its bytes lie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Its safetensors dtype.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Offset of its first byte from the start of the data section.
    pub offset: u64,
    /// Its size in bytes.
    pub byte_len: u64,
}

impl TensorInfo {
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
}

/// One tensor read from a [`ModelFile`]: its description and its bytes (owned when read from a file,
/// borrowed from a file held in memory).
#[derive(Clone, Debug)]
pub struct TensorEntry<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// Its safetensors dtype (every dtype of the format is readable as bytes).
    pub dtype: Dtype,
    /// Its shape.
    pub shape: &'a [usize],
    /// Its raw little-endian bytes.
    pub bytes: Cow<'a, [u8]>,
}

fn format_error(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::format(path.display().to_string(), format!("not a valid safetensors file: {detail}"))
}

impl ModelFile {
    /// Opens a safetensors file and checks its header: a truncated file, a corrupt header or offsets
    /// that disagree with the file's size are format errors. No tensor is read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(Bytes::open(path.as_ref())?)
    }

    /// Checks the bytes of a safetensors file already in memory, as [`open`](Self::open) does a
    /// file's; `path` names it in messages and is the path [`compress`](fn@super::compress) and
    /// [`decompress`](fn@super::decompress) keep distinct from their output.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        Self::new(Bytes::from_vec(path.as_ref(), bytes))
    }

    fn new(bytes: Bytes) -> Result<Self> {
        let (path, size) = (bytes.path().to_path_buf(), bytes.size());
        let path = path.as_path();
        let mut file = ModelFile {
            bytes,
            header_len: 0,
            entries: Vec::new(),
            by_name: HashMap::new(),
            metadata: HashMap::new(),
        };
        if size < 8 {
            return Err(format_error(path, format!("{size} bytes, shorter than the 8-byte header length")));
        }
        let mut prefix = [0u8; 8];
        file.bytes.read_at(0, &mut prefix)?;
        let n = u64::from_le_bytes(prefix);
        if n > MAX_HEADER || n > size - 8 {
            return Err(format_error(
                path,
                format!("a header of {n} bytes in a file of {size} bytes (at most {MAX_HEADER})"),
            ));
        }
        let mut header = try_vec(n as usize, 0u8)?;
        file.bytes.read_at(8, &mut header)?;
        let parsed: safetensors::tensor::Metadata =
            serde_json::from_slice(&header).map_err(|e| format_error(path, format!("header: {e}")))?;
        let mut raw: Vec<(TensorInfo, (usize, usize))> = parsed
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let (s, e) = info.data_offsets;
                let byte_len = e.wrapping_sub(s) as u64;
                let t = TensorInfo {
                    name,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    offset: s as u64,
                    byte_len,
                };
                (t, (s, e))
            })
            .collect();
        raw.sort_by(|(a, x), (b, y)| (x, &a.name).cmp(&(y, &b.name)));
        // The data section is exactly the tensors, back to back, each of its shape's size.
        let mut end = 0u64;
        for (info, (s, e)) in &raw {
            if *s as u64 != end || e < s {
                return Err(format_error(path, format!("tensor `{}` has offsets [{s}, {e}]", info.name)));
            }
            let want = info.shape.iter().try_fold(info.dtype.size(), |acc, &d| acc.checked_mul(d));
            if want.map(|w| w as u64) != Some(info.byte_len) {
                return Err(format_error(
                    path,
                    format!("tensor `{}` holds {} bytes, not its shape's", info.name, info.byte_len),
                ));
            }
            end += info.byte_len;
        }
        let entries: Vec<TensorInfo> = raw.into_iter().map(|(t, _)| t).collect();
        if 8 + n + end != size {
            return Err(format_error(
                path,
                format!("the header describes {} bytes, the file has {size}", 8 + n + end),
            ));
        }
        file.header_len = n as usize;
        file.by_name = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        file.entries = entries;
        file.metadata = parsed.metadata().clone().unwrap_or_default();
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.bytes.path()
    }

    /// The header's `__metadata__` entries.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Size of the JSON header in bytes.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Size of the file in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.size()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensors in file order (their data's order).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.entries
    }

    /// The tensor called `name`, if the file has it.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// Reads the tensor called `name` (an error when the file has none).
    pub fn tensor(&self, name: &str) -> Result<TensorEntry<'_>> {
        let info = self.info(name).ok_or_else(|| {
            Error::format(self.path().display().to_string(), format!("no tensor named `{name}`"))
        })?;
        self.read(info)
    }

    /// Reads one tensor's bytes (`info` from [`tensors`](Self::tensors)) into a buffer of its own.
    pub fn read<'a>(&'a self, info: &'a TensorInfo) -> Result<TensorEntry<'a>> {
        let bytes = self.bytes.read_range(self.data_start() + info.offset, info.byte_len)?;
        Ok(TensorEntry { name: &info.name, dtype: info.dtype, shape: &info.shape, bytes })
    }

    /// Reads one tensor's bytes in chunks of at most `chunk` bytes (whole elements; 0 means
    /// [`CHUNK`]), passing each to `f`: memory stays at one chunk whatever the tensor's size.
    pub fn read_chunks(
        &self,
        info: &TensorInfo,
        chunk: usize,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let width = info.dtype.size().max(1);
        let chunk = (if chunk == 0 { CHUNK } else { chunk }).max(width) / width * width;
        let mut buf = try_vec(chunk.min(usize::try_from(info.byte_len).unwrap_or(chunk)), 0u8)?;
        let mut done = 0u64;
        while done < info.byte_len {
            let n = (info.byte_len - done).min(buf.len() as u64) as usize;
            self.read_data(info.offset + done, &mut buf[..n])?;
            f(&buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Reads a float tensor's elements as f32 (F64 rounds to nearest), holding no more than the
    /// result and one chunk; other dtypes are refused.
    pub fn read_f32(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        if !info.is_float() {
            return Err(not_float(&info.name, info.dtype));
        }
        let mut out = try_vec(info.len(), 0f32)?;
        if info.dtype == Dtype::F32 && !self.bytes.in_memory() {
            self.read_data(info.offset, bytemuck::cast_slice_mut(&mut out))?;
            out.iter_mut().for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
            return Ok(out);
        }
        let width = info.dtype.size();
        let mut filled = 0;
        self.read_chunks(info, CHUNK, &mut |bytes| {
            let n = bytes.len() / width;
            convert_f32(info.dtype, bytes, &mut out[filled..filled + n]);
            filled += n;
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads `buf.len()` bytes at `offset` from the start of the data section.
    fn read_data(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.bytes.read_at(self.data_start() + offset, buf)
    }

    fn data_start(&self) -> u64 {
        8 + self.header_len as u64
    }
}

fn not_float(name: &str, dtype: Dtype) -> Error {
    Error::invalid("dtype", format!("{dtype:?}"), format!("tensor `{name}` is not floating point"))
}

/// Converts little-endian float elements of `dtype` to f32 (`out.len()` elements).
fn convert_f32(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    let chunks = bytes.chunks_exact(dtype.size().max(1));
    match dtype {
        Dtype::F32 => {
            out.iter_mut().zip(chunks).for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        Dtype::F16 => {
            out.iter_mut().zip(chunks).for_each(|(o, b)| *o = f16::from_le_bytes([b[0], b[1]]).to_f32())
        }
        Dtype::BF16 => {
            out.iter_mut().zip(chunks).for_each(|(o, b)| *o = bf16::from_le_bytes([b[0], b[1]]).to_f32())
        }
        _ => out.iter_mut().zip(chunks).for_each(|(o, b)| {
            *o = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
    }
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
        if !self.is_float() {
            return Err(not_float(self.name, self.dtype));
        }
        convert_f32(self.dtype, &self.bytes, out);
        Ok(())
    }
}
