//! Pruned tensors stored sparse in the compressed-file convention (format 2): CSR or N:M compressed,
//! whichever is smaller, else dense.
//!
//! Both encodings work on the tensor's stored elements (f32, f16/bf16, or the quantized integers, 4-bit
//! ones packed two per byte, first in the low nibble) viewed as rows along the last dimension:
//! - CSR: `NAME` holds the stored elements row by row, `NAME.row_ptr` (`rows + 1` offsets) and
//!   `NAME.col_idx` (one column per element), each in the smallest unsigned type that holds its largest
//!   value (`U8`, `U16`, `U32`, `U64`);
//! - N:M (`storage=nm;n=N;m=M`): for every group of `m` consecutive columns of a row, `n` elements in
//!   `NAME` and their positions in the group in `NAME.nm_index` (`U8`), each position in
//!   `ceil(log2 m)` bits, packed least significant bit first, positions increasing within a group: the
//!   layout of [`crate::prune::NmCompressed`].
//!
//! A reader scatters the stored elements into a dense array of the tensor's elements (the other
//! positions holding 0), decodes it as the dense kind is decoded, then sets every position that was not
//! stored to 0.0.

use super::file::{ModelFile, TensorEntry};
use super::write::OutTensor;
use crate::kernels::sparse::nm_index_bits;
use crate::prune::NmCompressed;
use crate::quant::{nibble_get, nibble_put};
use crate::{Error, Result};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;

/// How a tensor's elements are laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// Every element, in order.
    Dense,
    /// Compressed sparse rows.
    Csr,
    /// `n` elements of every `m` along the last dimension, with their positions.
    Nm {
        /// Elements kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
}

/// The width of one stored element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// 4 bits, two per byte, the first in the low nibble.
    Nibble,
    /// This many bytes.
    Bytes(usize),
}

impl Elem {
    /// Bytes that `count` elements take.
    pub(crate) fn bytes_for(self, count: usize) -> usize {
        match self {
            Elem::Nibble => count.div_ceil(2),
            Elem::Bytes(w) => count.saturating_mul(w),
        }
    }

    /// Copies element `from` of `src` to element `to` of `dst`.
    fn copy(self, src: &[u8], from: usize, dst: &mut [u8], to: usize) {
        match self {
            Elem::Nibble => nibble_put(dst, to, nibble_get(src, from, false)),
            Elem::Bytes(w) => dst[to * w..(to + 1) * w].copy_from_slice(&src[from * w..(from + 1) * w]),
        }
    }
}

/// Rows and columns of a tensor of `shape` seen as rows along its last dimension (a scalar is 1 x 1).
fn rows_cols(shape: &[usize], numel: usize) -> (usize, usize) {
    let cols = shape.last().copied().unwrap_or(1);
    (numel.checked_div(cols).unwrap_or(0), cols)
}

/// The smallest unsigned dtype holding `max`.
fn index_dtype(max: usize) -> Dtype {
    match max {
        m if m <= u8::MAX as usize => Dtype::U8,
        m if m <= u16::MAX as usize => Dtype::U16,
        m if m <= u32::MAX as usize => Dtype::U32,
        _ => Dtype::U64,
    }
}

fn index_bytes(values: impl Iterator<Item = usize>, dtype: Dtype) -> Vec<u8> {
    let w = dtype.size();
    values.flat_map(|v| (v as u64).to_le_bytes().into_iter().take(w)).collect()
}

/// A sparse encoding of one tensor.
pub(crate) struct Encoded {
    /// How it is stored.
    pub storage: Storage,
    /// The stored elements (the tensor `NAME`).
    pub values: OutTensor<'static>,
    /// The index companions, by suffix.
    pub companions: Vec<(&'static str, OutTensor<'static>)>,
    /// Which positions were stored (the others read back as 0.0).
    pub stored: Vec<bool>,
}

/// The smaller sparse encoding of the elements `data` (`dtype`, `elem` wide, dense, of logical `shape`)
/// keeping the positions `keep` marks, when it is smaller than `data`; N:M is tried for `nm` only.
pub(crate) fn encode(
    data: &[u8],
    dtype: Dtype,
    elem: Elem,
    shape: &[usize],
    keep: &[bool],
    nm: Option<(usize, usize)>,
) -> Result<Option<Encoded>> {
    let numel = keep.len();
    let (rows, cols) = rows_cols(shape, numel);
    let nnz = keep.iter().filter(|&&k| k).count();
    let csr_bytes = elem.bytes_for(nnz)
        + index_dtype(nnz).size() * (rows + 1)
        + index_dtype(cols.saturating_sub(1)).size() * nnz;
    let nm = nm.filter(|&(n, m)| {
        m <= 256
            && n < m
            && cols.is_multiple_of(m)
            && keep.chunks(m).all(|g| g.iter().filter(|&&k| k).count() <= n)
    });
    let nm_bytes = nm.map(|(n, m)| {
        let slots = numel / m * n;
        elem.bytes_for(slots) + (slots * nm_index_bits(m) as usize).div_ceil(8)
    });
    let dense = data.len();
    match nm_bytes {
        Some(b) if b < dense && b <= csr_bytes => {
            let (n, m) = nm.unwrap_or((1, 1));
            encode_nm(data, dtype, elem, keep, rows, cols, n, m).map(Some)
        }
        _ if csr_bytes < dense => encode_csr(data, dtype, elem, keep, rows, cols, nnz).map(Some),
        _ => Ok(None),
    }
}

fn encode_csr(
    data: &[u8],
    dtype: Dtype,
    elem: Elem,
    keep: &[bool],
    rows: usize,
    cols: usize,
    nnz: usize,
) -> Result<Encoded> {
    let mut values = crate::error::try_vec(elem.bytes_for(nnz), 0u8)?;
    let mut row_ptr = Vec::with_capacity(rows + 1);
    let mut col_idx = Vec::with_capacity(nnz);
    row_ptr.push(0);
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            if keep[i] {
                elem.copy(data, i, &mut values, col_idx.len());
                col_idx.push(c);
            }
        }
        row_ptr.push(col_idx.len());
    }
    let (ptr_dtype, idx_dtype) = (index_dtype(nnz), index_dtype(cols.saturating_sub(1)));
    let values_shape = vec![if elem == Elem::Nibble { values.len() } else { nnz }];
    Ok(Encoded {
        storage: Storage::Csr,
        values: OutTensor { dtype, shape: values_shape, bytes: Cow::Owned(values) },
        companions: vec![
            (
                ".row_ptr",
                OutTensor {
                    dtype: ptr_dtype,
                    shape: vec![rows + 1],
                    bytes: Cow::Owned(index_bytes(row_ptr.into_iter(), ptr_dtype)),
                },
            ),
            (
                ".col_idx",
                OutTensor {
                    dtype: idx_dtype,
                    shape: vec![nnz],
                    bytes: Cow::Owned(index_bytes(col_idx.into_iter(), idx_dtype)),
                },
            ),
        ],
        stored: keep.to_vec(),
    })
}

#[allow(clippy::too_many_arguments)]
fn encode_nm(
    data: &[u8],
    dtype: Dtype,
    elem: Elem,
    keep: &[bool],
    rows: usize,
    cols: usize,
    n: usize,
    m: usize,
) -> Result<Encoded> {
    // The positions come from the prune module's own N:M layout, built on the mask.
    let mask: Vec<f32> = keep.iter().map(|&k| f32::from(u8::from(k))).collect();
    let layout = NmCompressed::from_dense(&mask, rows, cols, n, m)?;
    let slots = layout.values().len();
    let mut values = crate::error::try_vec(elem.bytes_for(slots), 0u8)?;
    let mut stored = crate::error::try_vec(keep.len(), false)?;
    for slot in 0..slots {
        let i = slot / n * m + layout.position(slot);
        elem.copy(data, i, &mut values, slot);
        stored[i] = true;
    }
    let values_shape = vec![if elem == Elem::Nibble { values.len() } else { slots }];
    let indices = layout.indices().to_vec();
    Ok(Encoded {
        storage: Storage::Nm { n, m },
        values: OutTensor { dtype, shape: values_shape, bytes: Cow::Owned(values) },
        companions: vec![(
            ".nm_index",
            OutTensor { dtype: Dtype::U8, shape: vec![indices.len()], bytes: Cow::Owned(indices) },
        )],
        stored,
    })
}

impl Storage {
    /// The storage a tensor's metadata names (`storage` absent: dense).
    pub(crate) fn parse(meta: &HashMap<&str, &str>, key: &str) -> Result<Storage> {
        let bad = |why: String| Error::format(key, why);
        let number = |k: &str| -> Result<usize> {
            let text = meta.get(k).ok_or_else(|| bad(format!("storage=nm without `{k}`")))?;
            text.parse().map_err(|_| bad(format!("`{k}` is not a number")))
        };
        match meta.get("storage").copied() {
            None | Some("dense") => Ok(Storage::Dense),
            Some("csr") => Ok(Storage::Csr),
            Some("nm") => {
                let (n, m) = (number("n")?, number("m")?);
                if m == 0 || m > 256 || n == 0 || n > m {
                    return Err(bad(format!("storage=nm needs 0 < n <= m <= 256, has {n}:{m}")));
                }
                Ok(Storage::Nm { n, m })
            }
            Some(other) => Err(bad(format!("unknown storage `{other}`"))),
        }
    }

    /// The metadata that names this storage (empty when dense).
    pub(crate) fn metadata(self) -> String {
        match self {
            Storage::Dense => String::new(),
            Storage::Csr => ";storage=csr".into(),
            Storage::Nm { n, m } => format!(";storage=nm;n={n};m={m}"),
        }
    }

    /// The companion tensors this storage adds to `name`.
    pub(crate) fn companions(self, name: &str) -> Vec<String> {
        match self {
            Storage::Dense => vec![],
            Storage::Csr => vec![format!("{name}.row_ptr"), format!("{name}.col_idx")],
            Storage::Nm { .. } => vec![format!("{name}.nm_index")],
        }
    }

    /// A short name: `dense`, `csr`, `2:4`.
    pub(crate) fn label(self) -> String {
        match self {
            Storage::Dense => "dense".into(),
            Storage::Csr => "csr".into(),
            Storage::Nm { n, m } => format!("{n}:{m}"),
        }
    }
}

/// Most elements a sparse tensor may decode to per byte it stores (values and indices): far beyond
/// what pruning gives (99.9% sparsity stores at least one byte per thousand elements), and a bound on
/// what a corrupt or hostile header can make a reader allocate.
pub(crate) const MAX_EXPANSION: usize = 4096;

/// A sparse tensor read back: its dense elements and which positions were stored.
pub(crate) struct Densified {
    /// The dense elements (positions not stored hold 0).
    pub bytes: Vec<u8>,
    /// Which positions were stored.
    pub stored: Vec<bool>,
}

fn unsigned(entry: &TensorEntry<'_>) -> Result<Vec<usize>> {
    let w = entry.dtype.size();
    if !matches!(entry.dtype, Dtype::U8 | Dtype::U16 | Dtype::U32 | Dtype::U64) {
        return Err(Error::format(entry.name, format!("is {:?}, not an unsigned integer type", entry.dtype)));
    }
    entry
        .bytes
        .chunks_exact(w)
        .map(|b| {
            let mut v = [0u8; 8];
            v[..w].copy_from_slice(b);
            usize::try_from(u64::from_le_bytes(v))
                .map_err(|_| Error::format(entry.name, "an index overflows"))
        })
        .collect()
}

/// Checks the stored elements `values` (`elem` wide) and the companions of `storage` against a tensor
/// of logical `shape`, and scatters them into the dense elements.
pub(crate) fn densify(
    input: &ModelFile,
    values: &TensorEntry<'_>,
    storage: Storage,
    elem: Elem,
    shape: &[usize],
) -> Result<Densified> {
    let name = values.name;
    let numel = crate::tensor::numel(shape)?;
    let (rows, cols) = rows_cols(shape, numel);
    let companion = |suffix: &str| {
        let info = input
            .info(&format!("{name}{suffix}"))
            .ok_or_else(|| Error::format(name, format!("missing `{name}{suffix}`")))?;
        input.read(info)
    };
    let check_count = |count: usize| -> Result<()> {
        let want = if elem == Elem::Nibble { count.div_ceil(2) } else { count };
        if values.shape != [want] || values.bytes.len() != elem.bytes_for(count) {
            return Err(Error::format(
                name,
                format!("{count} stored elements must be of shape [{want}], are {:?}", values.shape),
            ));
        }
        Ok(())
    };
    let index_bytes: usize =
        storage.companions(name).iter().filter_map(|c| input.info(c)).map(|t| t.byte_len as usize).sum();
    let file_bytes = values.bytes.len() + index_bytes;
    if numel / MAX_EXPANSION > file_bytes {
        return Err(Error::format(
            name,
            format!("{numel} elements from {file_bytes} stored bytes: more than {MAX_EXPANSION} per byte"),
        ));
    }
    let mut bytes = crate::error::try_vec(elem.bytes_for(numel), 0u8)?;
    let mut stored = crate::error::try_vec(numel, false)?;
    match storage {
        Storage::Dense => return Err(Error::format(name, "dense storage has nothing to densify")),
        Storage::Csr => {
            let (ptr, idx) = (companion(".row_ptr")?, companion(".col_idx")?);
            let row_ptr = unsigned(&ptr)?;
            let col_idx = unsigned(&idx)?;
            let nnz = col_idx.len();
            if ptr.shape != [rows + 1] || idx.shape != [nnz] {
                return Err(Error::format(
                    name,
                    format!(
                        "`.row_ptr` {:?} and `.col_idx` {:?} do not fit {rows} rows",
                        ptr.shape, idx.shape
                    ),
                ));
            }
            if row_ptr.first() != Some(&0)
                || row_ptr.last() != Some(&nnz)
                || row_ptr.windows(2).any(|w| w[0] > w[1])
            {
                return Err(Error::format(name, "`.row_ptr` must rise from 0 to the element count"));
            }
            check_count(nnz)?;
            for r in 0..rows {
                let row = &col_idx[row_ptr[r]..row_ptr[r + 1]];
                if row.iter().any(|&c| c >= cols) || row.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::format(
                        name,
                        format!("row {r}'s columns are not increasing below {cols}"),
                    ));
                }
                for (k, &c) in row.iter().enumerate() {
                    let i = r * cols + c;
                    elem.copy(&values.bytes, row_ptr[r] + k, &mut bytes, i);
                    stored[i] = true;
                }
            }
        }
        Storage::Nm { n, m } => {
            if !cols.is_multiple_of(m) {
                return Err(Error::format(name, format!("rows of {cols} are not whole groups of {m}")));
            }
            let index = companion(".nm_index")?;
            let slots = numel / m * n;
            let bits = nm_index_bits(m) as usize;
            let want = (slots * bits).div_ceil(8);
            if index.dtype != Dtype::U8 || index.shape != [want] {
                return Err(Error::format(
                    name,
                    format!("`.nm_index` must be U8 [{want}], is {:?} {:?}", index.dtype, index.shape),
                ));
            }
            check_count(slots)?;
            let mut previous = 0;
            for slot in 0..slots {
                let position = crate::kernels::sparse::packed_position(&index.bytes, bits, slot);
                if position >= m || (slot % n != 0 && position <= previous) {
                    return Err(Error::format(
                        name,
                        format!("group {}'s positions are not increasing below {m}", slot / n),
                    ));
                }
                previous = position;
                let i = slot / n * m + position;
                elem.copy(&values.bytes, slot, &mut bytes, i);
                stored[i] = true;
            }
        }
    }
    Ok(Densified { bytes, stored })
}
