//! Sparse storage that turns pruning into bytes: CSR (f32 or i8 values) and N:M compressed (the
//! kept values plus a few index bits per kept value). Both round-trip losslessly to dense
//! (a zero of either sign comes back as `+0`) and report their size in bytes.

use crate::error::Result;
use crate::kernels::sparse::{self as kernels, CsrRef, NmRef};
use crate::kernels::Isa;
use crate::prune::nm::check_pattern;
use crate::Error;

/// A value type CSR can store.
pub trait SparseValue: Copy + PartialEq + Default + std::fmt::Debug {}
impl SparseValue for f32 {}
impl SparseValue for i8 {}

/// Compressed sparse rows: the nonzeros of each row with their column indices (32-bit).
///
/// Invariants (kept by construction): `row_ptr` has `rows + 1` nondecreasing entries from 0 to
/// `nnz`, column indices are strictly increasing within a row and below `cols`.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr<T> {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
    values: Vec<T>,
}

fn check_dense(len: usize, rows: usize, cols: usize) -> Result<usize> {
    let n = crate::tensor::numel(&[rows, cols])?;
    if len != n {
        return Err(Error::ShapeMismatch {
            context: "dense matrix",
            expected: vec![rows, cols],
            actual: vec![len],
        });
    }
    Ok(n)
}

impl<T: SparseValue> Csr<T> {
    /// Compresses a row-major `rows x cols` matrix, keeping the entries not equal to zero.
    /// Fails when `cols` or the nonzero count exceed `i32::MAX` (the index width).
    pub fn from_dense(dense: &[T], rows: usize, cols: usize) -> Result<Self> {
        check_dense(dense.len(), rows, cols)?;
        if cols > i32::MAX as usize {
            return Err(Error::Overflow { context: "CSR column index", detail: format!("{cols} columns") });
        }
        let zero = T::default();
        let nnz = dense.iter().filter(|v| **v != zero).count();
        if nnz > i32::MAX as usize {
            return Err(Error::Overflow { context: "CSR row pointer", detail: format!("{nnz} nonzeros") });
        }
        let mut row_ptr = Vec::new();
        let mut col_idx = Vec::new();
        let mut values = Vec::new();
        let oom = |n: usize| Error::OutOfMemory { bytes: n };
        row_ptr.try_reserve_exact(rows + 1).map_err(|_| oom(4 * (rows + 1)))?;
        col_idx.try_reserve_exact(nnz).map_err(|_| oom(4 * nnz))?;
        values.try_reserve_exact(nnz).map_err(|_| oom(std::mem::size_of::<T>() * nnz))?;
        row_ptr.push(0);
        for r in 0..rows {
            for (c, &v) in dense[r * cols..(r + 1) * cols].iter().enumerate() {
                if v != zero {
                    col_idx.push(c as u32);
                    values.push(v);
                }
            }
            row_ptr.push(values.len() as u32);
        }
        Ok(Csr { rows, cols, row_ptr, col_idx, values })
    }

    /// The dense row-major matrix.
    pub fn to_dense(&self) -> Result<Vec<T>> {
        let mut out = crate::error::try_vec(self.rows * self.cols, T::default())?;
        for r in 0..self.rows {
            let (vals, cols) = self.row(r);
            for (&v, &c) in vals.iter().zip(cols) {
                out[r * self.cols + c as usize] = v;
            }
        }
        Ok(out)
    }

    /// The values and column indices of row `r` (`r < rows`).
    pub fn row(&self, r: usize) -> (&[T], &[u32]) {
        let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        (&self.values[a..b], &self.col_idx[a..b])
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// The row pointers (`rows + 1` offsets into the values).
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }

    /// The column index of each stored value.
    pub fn col_idx(&self) -> &[u32] {
        &self.col_idx
    }

    /// The stored values, row by row.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Bytes of the three arrays: values, 32-bit column indices and 32-bit row pointers.
    pub fn storage_bytes(&self) -> usize {
        self.nnz() * (std::mem::size_of::<T>() + 4) + 4 * (self.rows + 1)
    }

    /// Bytes of the same matrix stored dense.
    pub fn dense_bytes(&self) -> usize {
        self.rows * self.cols * std::mem::size_of::<T>()
    }
}

impl Csr<f32> {
    /// The arrays as the sparse kernels take them (checked again: `rows + nnz` reads).
    pub fn view(&self) -> Result<CsrRef<'_>> {
        CsrRef::new(self.rows, self.cols, &self.row_ptr, &self.col_idx, &self.values)
    }

    /// `y (rows x ncols) = self (rows x cols) * x (cols x ncols)`, row-major, on the active tier
    /// ([`crate::kernels::sparse::csr_spmm`]).
    pub fn spmm(&self, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
        kernels::csr_spmm(&self.view()?, x, ncols, y)
    }

    /// [`Csr::spmm`] on a chosen tier.
    pub fn spmm_on(&self, isa: Isa, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
        kernels::csr_spmm_on(isa, &self.view()?, x, ncols, y)
    }
}

/// N:M compressed: for each group of `m` consecutive columns of a row, `n` values and their
/// positions in the group, each position in `ceil(log2 m)` bits (2 bits for 2:4), packed
/// little-endian, least significant bits first. Positions within a group are increasing.
#[derive(Clone, Debug, PartialEq)]
pub struct NmCompressed {
    rows: usize,
    cols: usize,
    n: usize,
    m: usize,
    values: Vec<f32>,
    indices: Vec<u8>,
}

/// Bits per stored position for groups of `m` (0 when m = 1).
pub fn index_bits(m: usize) -> u32 {
    kernels::nm_index_bits(m)
}

impl NmCompressed {
    /// Compresses a row-major `rows x cols` matrix in which each group of `m` consecutive columns
    /// holds at most `n` nonzeros (what [`crate::prune::n_m`] plus [`crate::prune::Mask::bake`] give).
    /// `cols` must be divisible by `m`, and `m <= 256`.
    pub fn from_dense(dense: &[f32], rows: usize, cols: usize, n: usize, m: usize) -> Result<Self> {
        check_pattern(n, m)?;
        if m > 256 {
            return Err(Error::invalid("m", m, "group size above 256 is not supported"));
        }
        check_dense(dense.len(), rows, cols)?;
        if cols > i32::MAX as usize {
            return Err(Error::Overflow { context: "N:M column index", detail: format!("{cols} columns") });
        }
        if !cols.is_multiple_of(m) {
            return Err(Error::invalid("cols", cols, format!("not divisible by m = {m}")));
        }
        let groups = rows * (cols / m);
        let bits = index_bits(m) as usize;
        let mut values = crate::error::try_vec(groups * n, 0.0f32)?;
        let mut indices = crate::error::try_vec((groups * n * bits).div_ceil(8), 0u8)?;
        let mut chosen = Vec::with_capacity(m);
        for (g, group) in dense.chunks_exact(m).enumerate() {
            chosen.clear();
            chosen.extend((0..m).filter(|&j| group[j] != 0.0));
            if chosen.len() > n {
                return Err(Error::invalid(
                    "dense",
                    format!("group {g} (row {}, columns from {})", g / (cols / m), (g % (cols / m)) * m),
                    format!("holds {} nonzeros, more than n = {n}", chosen.len()),
                ));
            }
            // Fill up with the first zero positions, then keep positions increasing.
            let missing = n - chosen.len();
            chosen.extend(group.iter().enumerate().filter(|(_, v)| **v == 0.0).map(|(j, _)| j).take(missing));
            chosen.sort_unstable();
            for (s, &j) in chosen.iter().enumerate() {
                let slot = g * n + s;
                values[slot] = group[j];
                for b in 0..bits {
                    if (j >> b) & 1 == 1 {
                        let bit = slot * bits + b;
                        indices[bit / 8] |= 1 << (bit % 8);
                    }
                }
            }
        }
        Ok(NmCompressed { rows, cols, n, m, values, indices })
    }

    /// Position within its group of stored value `slot` (`slot < rows * cols / m * n`).
    pub fn position(&self, slot: usize) -> usize {
        kernels::packed_position(&self.indices, index_bits(self.m) as usize, slot)
    }

    /// Writes the column of each stored value of row `r` into `cols_out` (length `cols / m * n`).
    pub fn row_columns(&self, r: usize, cols_out: &mut [u32]) -> Result<()> {
        self.view()?.row_columns(r, cols_out)
    }

    /// The arrays as the sparse kernels take them (checked again, one read per value when `m` is
    /// not a power of two).
    pub fn view(&self) -> Result<NmRef<'_>> {
        NmRef::new(self.rows, self.cols, self.n, self.m, &self.values, &self.indices)
    }

    /// `y (rows x ncols) = self (rows x cols) * x (cols x ncols)`, row-major, on the active tier
    /// ([`crate::kernels::sparse::nm_spmm`]).
    pub fn spmm(&self, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
        kernels::nm_spmm(&self.view()?, x, ncols, y)
    }

    /// [`NmCompressed::spmm`] on a chosen tier.
    pub fn spmm_on(&self, isa: Isa, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
        kernels::nm_spmm_on(isa, &self.view()?, x, ncols, y)
    }

    /// The dense row-major matrix.
    pub fn to_dense(&self) -> Result<Vec<f32>> {
        let mut out = crate::error::try_vec(self.rows * self.cols, 0.0f32)?;
        for (slot, &v) in self.values.iter().enumerate() {
            let g = slot / self.n;
            out[g * self.m + self.position(slot)] = v;
        }
        Ok(out)
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Values kept per group.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Group size.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Bits per stored position.
    pub fn index_bits(&self) -> u32 {
        index_bits(self.m)
    }

    /// The stored values, `n` per group, row by row.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The packed positions.
    pub fn indices(&self) -> &[u8] {
        &self.indices
    }

    /// Bytes of the values and the packed positions.
    pub fn storage_bytes(&self) -> usize {
        self.values.len() * 4 + self.indices.len()
    }

    /// Bytes of the same matrix stored dense.
    pub fn dense_bytes(&self) -> usize {
        self.rows * self.cols * 4
    }
}
