//! The GGUF container: metadata values, tensor types, a bounds-checked reader (versions 2 and 3) and
//! a streaming writer (version 3), as ggml's `gguf.cpp` and gguf-py's `GGUFWriter` lay files out:
//! little-endian header (`GGUF`, version, tensor count, metadata count), the metadata key/value
//! pairs, the tensor infos (name, dimensions innermost first, type, offset), padding to
//! `general.alignment` (32 by default), then each tensor's data at its aligned offset.

use super::super::bytes::Bytes;
use super::super::write::{Destination, StagedFile};
use crate::kernels::ggml::{self, GgmlType};
use crate::{Error, Result};
use half::{bf16, f16};
use std::borrow::Cow;

/// The file's first four bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// ggml's `GGML_MAX_DIMS`: the most dimensions a tensor can have.
pub const MAX_DIMS: usize = 4;

/// The element type of a GGUF tensor (ggml's `enum ggml_type` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorType {
    /// `GGML_TYPE_F32` (0).
    F32,
    /// `GGML_TYPE_F16` (1).
    F16,
    /// `GGML_TYPE_BF16` (30).
    BF16,
    /// `GGML_TYPE_F64` (28).
    F64,
    /// `GGML_TYPE_I8` (24).
    I8,
    /// `GGML_TYPE_I16` (25).
    I16,
    /// `GGML_TYPE_I32` (26).
    I32,
    /// `GGML_TYPE_I64` (27).
    I64,
    /// One of ggml's block types greenai implements.
    Ggml(GgmlType),
}

impl TensorType {
    /// ggml's `enum ggml_type` value.
    pub const fn ggml_id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::BF16 => 30,
            TensorType::F64 => 28,
            TensorType::I8 => 24,
            TensorType::I16 => 25,
            TensorType::I32 => 26,
            TensorType::I64 => 27,
            TensorType::Ggml(t) => t as u32,
        }
    }

    /// The type with ggml's value `id`, or an error naming the value.
    pub fn from_ggml_id(id: u32) -> Result<Self> {
        Ok(match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            30 => TensorType::BF16,
            28 => TensorType::F64,
            24 => TensorType::I8,
            25 => TensorType::I16,
            26 => TensorType::I32,
            27 => TensorType::I64,
            other => TensorType::Ggml(GgmlType::from_ggml(other)?),
        })
    }

    /// ggml's name of the type (`"f32"`, `"q4_K"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "f32",
            TensorType::F16 => "f16",
            TensorType::BF16 => "bf16",
            TensorType::F64 => "f64",
            TensorType::I8 => "i8",
            TensorType::I16 => "i16",
            TensorType::I32 => "i32",
            TensorType::I64 => "i64",
            TensorType::Ggml(t) => t.name(),
        }
    }

    /// Elements per block (1 for the plain types).
    pub const fn block_elems(self) -> usize {
        match self {
            TensorType::Ggml(t) => t.block_elems(),
            _ => 1,
        }
    }

    /// Bytes per block (the element size for the plain types).
    pub const fn block_bytes(self) -> usize {
        match self {
            TensorType::F32 | TensorType::I32 => 4,
            TensorType::F16 | TensorType::BF16 | TensorType::I16 => 2,
            TensorType::F64 | TensorType::I64 => 8,
            TensorType::I8 => 1,
            TensorType::Ggml(t) => t.block_bytes(),
        }
    }

    /// Bytes of a tensor with dimensions `dims` (innermost first): the innermost must hold whole
    /// blocks; overflow is an error.
    pub fn bytes(self, dims: &[usize]) -> Result<usize> {
        let cols = dims.first().copied().unwrap_or(1);
        let per = self.block_elems();
        if !cols.is_multiple_of(per) {
            return Err(Error::invalid(
                "cols",
                cols,
                format!("{} rows hold whole blocks of {per} elements", self.name()),
            ));
        }
        crate::error::checked_product("GGUF tensor elements", dims)?;
        let rows = crate::error::checked_product("GGUF tensor rows", dims.get(1..).unwrap_or(&[]))?;
        (cols / per)
            .checked_mul(self.block_bytes())
            .and_then(|r| r.checked_mul(rows))
            .ok_or_else(|| Error::Overflow { context: "GGUF tensor bytes", detail: format!("{dims:?}") })
    }
}

/// Generates the typed array enum, its element-type tag and its reader/writer arms.
macro_rules! arrays {
    ($($variant:ident($ty:ty) = $tag:literal, $size:literal;)*) => {
        /// A metadata array: every element of one type (nested arrays are not supported).
        #[derive(Clone, Debug, PartialEq)]
        pub enum Array {
            $(
                #[doc = concat!("Elements of GGUF value type ", stringify!($tag), ".")]
                $variant(Vec<$ty>),
            )*
            /// Strings (GGUF value type 8).
            String(Vec<String>),
        }

        impl Array {
            /// Number of elements.
            pub fn len(&self) -> usize {
                match self {
                    $(Array::$variant(v) => v.len(),)*
                    Array::String(v) => v.len(),
                }
            }

            /// Whether the array is empty.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            fn tag(&self) -> u32 {
                match self {
                    $(Array::$variant(_) => $tag,)*
                    Array::String(_) => 8,
                }
            }

            fn write(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.tag().to_le_bytes());
                out.extend_from_slice(&(self.len() as u64).to_le_bytes());
                match self {
                    $(Array::$variant(v) => v.iter().for_each(|x| out.extend_from_slice(&scalar_bytes(*x))),)*
                    Array::String(v) => v.iter().for_each(|s| put_string(out, s)),
                }
            }

            fn read(r: &mut Reader<'_>) -> Result<Self> {
                let tag = r.u32()?;
                let count = r.u64()?;
                Ok(match tag {
                    $($tag => {
                        let n = r.count(count, $size)?;
                        let mut v = Vec::with_capacity(n.min(PREALLOCATE));
                        for _ in 0..n {
                            v.push(<$ty as Scalar>::read(r)?);
                        }
                        Array::$variant(v)
                    })*
                    8 => {
                        let n = r.count(count, 8)?;
                        let mut v = Vec::with_capacity(n.min(PREALLOCATE));
                        for _ in 0..n {
                            v.push(r.string()?);
                        }
                        Array::String(v)
                    }
                    9 => return Err(r.error("nested metadata arrays are not supported")),
                    other => return Err(r.error(format!("unknown metadata value type {other}"))),
                })
            }
        }
    };
}

arrays! {
    U8(u8) = 0, 1;
    I8(i8) = 1, 1;
    U16(u16) = 2, 2;
    I16(i16) = 3, 2;
    U32(u32) = 4, 4;
    I32(i32) = 5, 4;
    F32(f32) = 6, 4;
    Bool(bool) = 7, 1;
    U64(u64) = 10, 8;
    I64(i64) = 11, 8;
    F64(f64) = 12, 8;
}

/// A fixed-size metadata scalar.
trait Scalar: Sized + Copy {
    fn read(r: &mut Reader<'_>) -> Result<Self>;
}

macro_rules! scalars {
    ($($ty:ty),*) => {$(
        impl Scalar for $ty {
            fn read(r: &mut Reader<'_>) -> Result<Self> {
                Ok(<$ty>::from_le_bytes(r.take(size_of::<$ty>())?.try_into().expect("took the size")))
            }
        }
    )*};
}
scalars!(u8, i8, u16, i16, u32, i32, f32, u64, i64, f64);

impl Scalar for bool {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        match r.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(r.error(format!("a bool holds {other}"))),
        }
    }
}

/// Little-endian bytes of a scalar (bool as one byte).
fn scalar_bytes<T: ScalarBytes>(x: T) -> Vec<u8> {
    x.le()
}

trait ScalarBytes {
    fn le(self) -> Vec<u8>;
}

macro_rules! scalar_bytes {
    ($($ty:ty),*) => {$(impl ScalarBytes for $ty { fn le(self) -> Vec<u8> { self.to_le_bytes().to_vec() } })*};
}
scalar_bytes!(u8, i8, u16, i16, u32, i32, f32, u64, i64, f64);

impl ScalarBytes for bool {
    fn le(self) -> Vec<u8> {
        vec![u8::from(self)]
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `GGUF_TYPE_UINT8`.
    U8(u8),
    /// `GGUF_TYPE_INT8`.
    I8(i8),
    /// `GGUF_TYPE_UINT16`.
    U16(u16),
    /// `GGUF_TYPE_INT16`.
    I16(i16),
    /// `GGUF_TYPE_UINT32`.
    U32(u32),
    /// `GGUF_TYPE_INT32`.
    I32(i32),
    /// `GGUF_TYPE_FLOAT32`.
    F32(f32),
    /// `GGUF_TYPE_BOOL`.
    Bool(bool),
    /// `GGUF_TYPE_STRING` (UTF-8).
    String(String),
    /// `GGUF_TYPE_ARRAY`.
    Array(Array),
    /// `GGUF_TYPE_UINT64`.
    U64(u64),
    /// `GGUF_TYPE_INT64`.
    I64(i64),
    /// `GGUF_TYPE_FLOAT64`.
    F64(f64),
}

impl Value {
    fn tag(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag().to_le_bytes());
        match self {
            Value::Array(a) => a.write(out),
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => out.push(u8::from(*x)),
            Value::String(s) => put_string(out, s),
            Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(match r.u32()? {
            0 => Value::U8(Scalar::read(r)?),
            1 => Value::I8(Scalar::read(r)?),
            2 => Value::U16(Scalar::read(r)?),
            3 => Value::I16(Scalar::read(r)?),
            4 => Value::U32(Scalar::read(r)?),
            5 => Value::I32(Scalar::read(r)?),
            6 => Value::F32(Scalar::read(r)?),
            7 => Value::Bool(Scalar::read(r)?),
            8 => Value::String(r.string()?),
            9 => Value::Array(Array::read(r)?),
            10 => Value::U64(Scalar::read(r)?),
            11 => Value::I64(Scalar::read(r)?),
            12 => Value::F64(Scalar::read(r)?),
            other => return Err(r.error(format!("unknown metadata value type {other}"))),
        })
    }

    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        }
    }

    /// The value as a string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A short human-readable form: scalars in full, strings up to 60 characters, arrays as their
    /// type and length.
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) if s.chars().count() > 60 => {
                format!("{:?}... ({} bytes)", s.chars().take(60).collect::<String>(), s.len())
            }
            Value::String(s) => format!("{s:?}"),
            Value::Array(a) => {
                let ty = match a {
                    Array::U8(_) => "u8",
                    Array::I8(_) => "i8",
                    Array::U16(_) => "u16",
                    Array::I16(_) => "i16",
                    Array::U32(_) => "u32",
                    Array::I32(_) => "i32",
                    Array::F32(_) => "f32",
                    Array::Bool(_) => "bool",
                    Array::U64(_) => "u64",
                    Array::I64(_) => "i64",
                    Array::F64(_) => "f64",
                    Array::String(_) => "string",
                };
                format!("[{ty}; {}]", a.len())
            }
            Value::U8(x) => x.to_string(),
            Value::I8(x) => x.to_string(),
            Value::U16(x) => x.to_string(),
            Value::I16(x) => x.to_string(),
            Value::U32(x) => x.to_string(),
            Value::I32(x) => x.to_string(),
            Value::F32(x) => x.to_string(),
            Value::Bool(x) => x.to_string(),
            Value::U64(x) => x.to_string(),
            Value::I64(x) => x.to_string(),
            Value::F64(x) => x.to_string(),
        }
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over the file's bytes; every read is bounds-checked.
struct Reader<'a> {
    /// The start of the file read so far.
    bytes: &'a [u8],
    pos: usize,
    context: &'a str,
    /// The whole file's size (at least `bytes.len()`).
    total: usize,
    /// Set when a read ran past `bytes` but not past the file: more of it must be read.
    short: bool,
}

impl<'a> Reader<'a> {
    fn error(&self, detail: impl Into<String>) -> Error {
        Error::format(self.context, format!("{} (at byte {})", detail.into(), self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            self.short = self.pos.checked_add(n).is_some_and(|e| e <= self.total);
            return Err(self.error(format!("truncated: {n} more bytes needed, {} left", self.remaining())));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn remaining(&self) -> usize {
        self.total - self.pos
    }

    fn u32(&mut self) -> Result<u32> {
        Scalar::read(self)
    }

    fn u64(&mut self) -> Result<u64> {
        Scalar::read(self)
    }

    /// A count of items at least `min_size` bytes each, refused when the rest of the file could not
    /// hold that many (so no length field can ask for a large allocation).
    fn count(&self, count: u64, min_size: usize) -> Result<usize> {
        match usize::try_from(count) {
            Ok(n) if n.checked_mul(min_size).is_some_and(|b| b <= self.remaining()) => Ok(n),
            _ => Err(self.error(format!(
                "a count of {count} items of at least {min_size} bytes exceeds the {} bytes left",
                self.remaining()
            ))),
        }
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        let len = self.count(len, 1)?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error("a string is not UTF-8"))
    }
}

/// One tensor's entry in a GGUF file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Its dimensions, innermost (contiguous) first, as ggml's `ne`.
    pub dims: Vec<usize>,
    /// Its element type.
    pub ty: TensorType,
    /// Its data's offset from the start of the data section.
    pub offset: usize,
    /// Its data's size in bytes.
    pub size: usize,
}

impl TensorInfo {
    /// The shape outermost first (row-major, as safetensors and numpy write it).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    /// Number of elements (`usize::MAX` if it overflows, which a parsed file's tensors never do).
    pub fn len(&self) -> usize {
        crate::error::checked_product("GGUF tensor elements", &self.dims).unwrap_or(usize::MAX)
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A GGUF file opened and checked: its header read, every tensor's data inside the file; the data
/// itself read tensor by tensor when asked ([`data`](Self::data)), so memory holds one tensor.
pub struct GgufFile {
    /// The format version (2 or 3).
    pub version: u32,
    /// The metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// The tensors in file order.
    pub tensors: Vec<TensorInfo>,
    /// The data alignment (`general.alignment`, else 32).
    pub alignment: usize,
    data_start: usize,
    bytes: Bytes,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.bytes.path())
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Items reserved ahead for a count read from the file (more grow as they are read).
const PREALLOCATE: usize = 4096;

/// Header bytes read first; the read grows fourfold while the header runs beyond them.
const FIRST_READ: usize = 1 << 20;

/// Whether `bytes` start like a GGUF file.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Whether the file at `path` starts with GGUF's magic (a file that cannot be read is not).
pub fn is_gguf_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && is_gguf(&magic)
}

impl GgufFile {
    /// Opens the GGUF file at `path` and checks its header; tensors are read when asked.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::parse(&path.display().to_string(), Bytes::open(path)?)
    }

    /// Parses and checks a GGUF file's bytes; `context` names it in errors. Versions 2 and 3 are
    /// read; a truncated file, an unknown value or tensor type, more than 4 dimensions, a duplicate
    /// name or key, misaligned or out-of-file data are format errors.
    pub fn from_bytes(context: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(context, Bytes::from_vec(std::path::Path::new(context), bytes))
    }

    fn parse(context: &str, bytes: Bytes) -> Result<Self> {
        let total = usize::try_from(bytes.size())
            .map_err(|_| Error::format(context, "larger than this machine's address space"))?;
        let mut read = FIRST_READ.min(total);
        loop {
            let prefix = bytes.read_range(0, read as u64)?;
            let mut r = Reader { bytes: &prefix, pos: 0, context, total, short: false };
            match Self::parse_header(&mut r) {
                Ok((version, metadata, tensors, alignment, data_start)) => {
                    drop(prefix);
                    return Ok(GgufFile { version, metadata, tensors, alignment, data_start, bytes });
                }
                Err(_) if r.short && read < total => read = read.saturating_mul(4).min(total),
                Err(e) => return Err(e),
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn parse_header(
        r: &mut Reader<'_>,
    ) -> Result<(u32, Vec<(String, Value)>, Vec<TensorInfo>, usize, usize)> {
        let context = r.context;
        if r.take(4).ok() != Some(&MAGIC[..]) {
            return Err(Error::format(context, "not a GGUF file (no `GGUF` magic)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(r.error(format!("GGUF version {version} (greenai reads versions 2 and 3)")));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        // A key/value pair takes at least 8 + 4 bytes, a tensor info at least 8 + 4 + 4 + 8.
        let n_kv = r.count(n_kv, 12)?;
        let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv.min(PREALLOCATE));
        let mut keys = std::collections::HashSet::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let value = Value::read(r)?;
            if !keys.insert(key.clone()) {
                return Err(r.error(format!("the key `{key}` appears twice")));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => *a as usize,
            Some((_, v)) => {
                return Err(
                    r.error(format!("general.alignment is {}: it must be a u32 power of two", v.summary()))
                )
            }
        };
        let n_tensors = r.count(n_tensors, 24)?;
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors.min(PREALLOCATE));
        let mut names = std::collections::HashSet::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            if n_dims > MAX_DIMS {
                return Err(r.error(format!("tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = r.u64()?;
                dims.push(
                    usize::try_from(d).map_err(|_| r.error(format!("tensor `{name}`: dimension {d}")))?,
                );
            }
            let ty =
                TensorType::from_ggml_id(r.u32()?).map_err(|e| r.error(format!("tensor `{name}`: {e}")))?;
            let offset = r.u64()?;
            let size = ty.bytes(&dims).map_err(|e| r.error(format!("tensor `{name}`: {e}")))?;
            let offset =
                usize::try_from(offset).ok().filter(|o| o.is_multiple_of(alignment)).ok_or_else(|| {
                    r.error(format!("tensor `{name}`: offset {offset} is not aligned to {alignment}"))
                })?;
            if !names.insert(name.clone()) {
                return Err(r.error(format!("the tensor `{name}` appears twice")));
            }
            tensors.push(TensorInfo { name, dims, ty, offset, size });
        }
        // A file may end before its padding when every tensor is empty.
        let data_start = r.pos.div_ceil(alignment).saturating_mul(alignment).min(r.total);
        let data_len = r.total - data_start;
        for t in &tensors {
            if t.offset.checked_add(t.size).is_none_or(|end| end > data_len) {
                return Err(Error::format(
                    context,
                    format!(
                        "truncated: tensor `{}` needs bytes {}..{} of the data section, which has {data_len}",
                        t.name,
                        t.offset,
                        t.offset.saturating_add(t.size)
                    ),
                ));
            }
        }
        Ok((version, metadata, tensors, alignment, data_start))
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Reads the bytes of `tensor` (one of [`tensors`](Self::tensors)); a file that changed size
    /// since it was opened is an error.
    pub fn data(&self, tensor: &TensorInfo) -> Result<Cow<'_, [u8]>> {
        self.bytes.read_range((self.data_start + tensor.offset) as u64, tensor.size as u64)
    }

    /// The tensor's elements as f32: float types converted, ggml block types dequantized with
    /// greenai's dequantizers; integer types are refused.
    pub fn to_f32(&self, tensor: &TensorInfo) -> Result<Vec<f32>> {
        let data = self.data(tensor)?;
        let data = &data[..];
        let n = tensor.len();
        let mut out = crate::error::try_vec(n, 0f32)?;
        match tensor.ty {
            TensorType::F32 => out
                .iter_mut()
                .zip(data.chunks_exact(4))
                .for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            TensorType::F16 => out
                .iter_mut()
                .zip(data.chunks_exact(2))
                .for_each(|(o, b)| *o = f16::from_le_bytes([b[0], b[1]]).to_f32()),
            TensorType::BF16 => out
                .iter_mut()
                .zip(data.chunks_exact(2))
                .for_each(|(o, b)| *o = bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            TensorType::F64 => out
                .iter_mut()
                .zip(data.chunks_exact(8))
                .for_each(|(o, b)| *o = f64::from_le_bytes(b.try_into().expect("chunks_exact(8)")) as f32),
            TensorType::Ggml(ty) => {
                let cols = tensor.dims.first().copied().unwrap_or(1);
                let rows = n.checked_div(cols).unwrap_or(0);
                ggml::dequantize(ty, data, rows, cols, &mut out)?;
            }
            TensorType::I8 | TensorType::I16 | TensorType::I32 | TensorType::I64 => {
                return Err(Error::invalid(
                    "tensor",
                    &tensor.name,
                    format!("is {}: an integer tensor, not dequantizable to f32", tensor.ty.name()),
                ))
            }
        }
        Ok(out)
    }
}

/// A tensor to write: its info (offset and size are filled in by the writer) and a function making
/// its bytes when its turn comes, so that only one tensor's data is in memory at a time.
pub struct PlannedTensor<'a> {
    /// Name, dimensions (innermost first) and type.
    pub name: String,
    /// Dimensions, innermost first.
    pub dims: Vec<usize>,
    /// Element type.
    pub ty: TensorType,
    /// Makes the tensor's bytes (exactly `ty.bytes(dims)` of them).
    pub bytes: Box<dyn FnOnce() -> Result<Vec<u8>> + 'a>,
}

/// The header, metadata and tensor infos of a GGUF v3 file, padded to `alignment`.
pub fn header_bytes(
    metadata: &[(String, Value)],
    tensors: &[(String, Vec<usize>, TensorType, usize)],
    alignment: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut out, key);
        value.write(&mut out);
    }
    for (name, dims, ty, offset) in tensors {
        put_string(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        out.extend_from_slice(&ty.ggml_id().to_le_bytes());
        out.extend_from_slice(&(*offset as u64).to_le_bytes());
    }
    out.resize(out.len().next_multiple_of(alignment), 0);
    out
}

/// Writes a GGUF v3 file at `destination` through a [`StagedFile`] (the file appears whole or not
/// at all): `metadata` in order, then `tensors` in order, each tensor's bytes made when written.
/// The alignment is `general.alignment` when `metadata` sets it, else 32. `progress(done, total)` is
/// called after each tensor.
pub fn write_gguf(
    destination: &Destination,
    metadata: &[(String, Value)],
    tensors: Vec<PlannedTensor<'_>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<u64> {
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if a.is_power_of_two() => *a as usize,
        Some((_, v)) => {
            return Err(Error::invalid("general.alignment", v.summary(), "must be a u32 power of two"))
        }
    };
    let mut names = std::collections::HashSet::new();
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for t in &tensors {
        if t.dims.len() > MAX_DIMS {
            return Err(Error::invalid(
                "tensor",
                &t.name,
                format!("has {} dimensions (at most {MAX_DIMS})", t.dims.len()),
            ));
        }
        if !names.insert(t.name.as_str()) {
            return Err(Error::invalid("tensor", &t.name, "two tensors have this name"));
        }
        let size = t.ty.bytes(&t.dims).map_err(|e| Error::invalid("tensor", &t.name, e.to_string()))?;
        infos.push((t.name.clone(), t.dims.clone(), t.ty, offset));
        offset = offset
            .checked_add(size)
            .map(|o| o.next_multiple_of(alignment))
            .ok_or_else(|| Error::Overflow { context: "GGUF data size", detail: t.name.clone() })?;
    }
    let header = header_bytes(metadata, &infos, alignment);
    let mut staged = StagedFile::create(destination)?;
    staged.write_all(&header)?;
    let total = tensors.len();
    let mut written = 0usize;
    for (i, t) in tensors.into_iter().enumerate() {
        let expected = t.ty.bytes(&t.dims)?;
        let name = t.name;
        let bytes = (t.bytes)()?;
        if bytes.len() != expected {
            return Err(Error::invalid(
                "tensor",
                &name,
                format!("made {} bytes, its type and dimensions need {expected}", bytes.len()),
            ));
        }
        staged.write_all(&bytes)?;
        let padded = expected.next_multiple_of(alignment);
        staged.write_all(&vec![0u8; padded - expected])?;
        written += padded;
        progress(i + 1, total);
    }
    staged.commit()?;
    Ok((header.len() + written) as u64)
}
