//! Sparse x dense products: `Y = A * X` with `A` in CSR or N:M compressed form, borrowed as raw
//! arrays ([`CsrRef`], [`NmRef`], checked once when made), and `X`, `Y` dense row-major (`X` is
//! `cols x ncols`, `Y` is `rows x ncols`, overwritten). `prune::sparse` builds the arrays from
//! dense weights (`Csr::view`, `NmCompressed::view`, or their `spmm`).
//!
//! Each output row is `sum_k a_k * X[col_k, :]`, accumulated in f32 in storage order by the
//! scalar reference ([`scalar`]); the SIMD paths keep 8 (AVX2, NEON: 4) or 16 (AVX-512) columns
//! per register with FMA (and gather for one column), so they agree with it to rounding. 2:4 with
//! `cols % 8 == 0` has its own x86 kernels: a permute selects the kept values' x entries times a
//! vector, and a GEMM-like blocked product (packed x micro-panels, register tiles) times several
//! columns.
//!
//! [`sparse_beats_dense`] says where this pays, from crossovers measured with `benches/sparse.rs`.

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
mod blocked;
pub mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_512;

use super::Isa;
use crate::{Error, Result};

/// Fails unless `actual == expected` elements.
fn exact_len(context: &'static str, actual: usize, expected: usize) -> Result<()> {
    if actual != expected {
        return Err(Error::ShapeMismatch { context, expected: vec![expected], actual: vec![actual] });
    }
    Ok(())
}

/// A CSR matrix of f32 values borrowed as its three arrays: row `r` holds
/// `values[row_ptr[r]..row_ptr[r + 1]]` at the columns `col_idx[..]` of the same range.
#[derive(Clone, Copy, Debug)]
pub struct CsrRef<'a> {
    rows: usize,
    cols: usize,
    row_ptr: &'a [u32],
    col_idx: &'a [u32],
    values: &'a [f32],
}

impl<'a> CsrRef<'a> {
    /// Borrows a `rows x cols` CSR matrix after checking it whole (`rows + nnz` reads): `row_ptr`
    /// holds `rows + 1` nondecreasing offsets from 0 to `nnz = values.len() = col_idx.len()`, every
    /// column index is below `cols`, and `cols` fits an `i32` (the gather index). Column indices
    /// need not be sorted; repeated ones add up.
    pub fn new(
        rows: usize,
        cols: usize,
        row_ptr: &'a [u32],
        col_idx: &'a [u32],
        values: &'a [f32],
    ) -> Result<Self> {
        if cols > i32::MAX as usize {
            return Err(Error::Overflow { context: "CSR column index", detail: format!("{cols} columns") });
        }
        let pointers = rows
            .checked_add(1)
            .ok_or_else(|| Error::Overflow { context: "CSR row pointers", detail: format!("{rows} rows") })?;
        exact_len("csr row_ptr (rows + 1)", row_ptr.len(), pointers)?;
        exact_len("csr col_idx (one per value)", col_idx.len(), values.len())?;
        if row_ptr[0] != 0 {
            return Err(Error::invalid("row_ptr[0]", row_ptr[0], "the first row must start at offset 0"));
        }
        if row_ptr[rows] as usize != values.len() {
            return Err(Error::invalid(
                "row_ptr[rows]",
                row_ptr[rows],
                format!("the last offset must be the value count {}", values.len()),
            ));
        }
        if let Some(r) = row_ptr.windows(2).position(|w| w[0] > w[1]) {
            return Err(Error::invalid(
                "row_ptr",
                format!("[{r}] = {}, [{}] = {}", row_ptr[r], r + 1, row_ptr[r + 1]),
                "offsets must not decrease",
            ));
        }
        // A max reduction (vectorised) first; the position only when it fails.
        let widest = col_idx.iter().fold(0u32, |acc, &c| acc.max(c));
        if !col_idx.is_empty() && widest as usize >= cols {
            let k = col_idx.iter().position(|&c| c as usize >= cols).unwrap_or(0);
            return Err(Error::invalid(
                "col_idx",
                format!("[{k}] = {}", col_idx[k]),
                format!("column out of range for {cols} columns"),
            ));
        }
        Ok(CsrRef { rows, cols, row_ptr, col_idx, values })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Stored values.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// The values and column indices of row `r < rows` (the checks in [`CsrRef::new`] make the
    /// range valid).
    fn row(&self, r: usize) -> (&'a [f32], &'a [u32]) {
        let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        (&self.values[a..b], &self.col_idx[a..b])
    }
}

/// Bits per stored position of an N:M matrix with groups of `m` (`ceil(log2 m)`, 0 when m = 1).
pub fn nm_index_bits(m: usize) -> u32 {
    usize::BITS - m.saturating_sub(1).leading_zeros()
}

/// Checks an N:M pattern: `1 <= m <= 256` and `n <= m`.
pub fn check_nm_pattern(n: usize, m: usize) -> Result<()> {
    if m == 0 {
        return Err(Error::invalid("m", m, "group size must be at least 1"));
    }
    if m > 256 {
        return Err(Error::invalid("m", m, "group size above 256 is not supported"));
    }
    if n > m {
        return Err(Error::invalid("n", n, format!("cannot keep more than the group size m = {m}")));
    }
    Ok(())
}

/// Position in its group of stored value `slot`: `bits` bits from bit `slot * bits` of the packed
/// positions, least significant first. `positions` must hold those bits.
pub(crate) fn packed_position(positions: &[u8], bits: usize, slot: usize) -> usize {
    (0..bits).fold(0, |acc, b| {
        let bit = slot * bits + b;
        acc | ((usize::from(positions[bit / 8] >> (bit % 8)) & 1) << b)
    })
}

/// An N:M compressed f32 matrix borrowed as its two arrays: for each group of `m` consecutive
/// columns of a row, `n` kept values (`values`, row by row) and their positions in the group,
/// each in [`nm_index_bits`]`(m)` bits packed little-endian, least significant bits first
/// (`positions`). For 2:4 that is one byte per two groups: positions of the first group's two
/// values in bits 0-1 and 2-3, the second group's in bits 4-5 and 6-7.
#[derive(Clone, Copy, Debug)]
pub struct NmRef<'a> {
    rows: usize,
    cols: usize,
    n: usize,
    m: usize,
    values: &'a [f32],
    positions: &'a [u8],
}

impl<'a> NmRef<'a> {
    /// Borrows a `rows x cols` N:M matrix after checking it: the pattern ([`check_nm_pattern`]),
    /// `cols` divisible by `m` and fitting an `i32`, `values.len() = rows * cols / m * n`,
    /// `positions.len()` = those slots' bits in bytes (rounded up), and, when `m` is not a power of
    /// two, every position below `m` (one read per slot).
    pub fn new(
        rows: usize,
        cols: usize,
        n: usize,
        m: usize,
        values: &'a [f32],
        positions: &'a [u8],
    ) -> Result<Self> {
        check_nm_pattern(n, m)?;
        if cols > i32::MAX as usize {
            return Err(Error::Overflow { context: "N:M column index", detail: format!("{cols} columns") });
        }
        if !cols.is_multiple_of(m) {
            return Err(Error::invalid("cols", cols, format!("not divisible by m = {m}")));
        }
        let slots = crate::error::checked_product("N:M kept values", &[rows, cols / m, n])?;
        let bits = nm_index_bits(m) as usize;
        let bytes = crate::error::checked_product("N:M position bits", &[slots, bits])?.div_ceil(8);
        exact_len("n:m values (rows * cols / m * n)", values.len(), slots)?;
        exact_len("n:m positions (bytes of the packed position bits)", positions.len(), bytes)?;
        if !m.is_power_of_two() {
            if let Some(slot) = (0..slots).find(|&s| packed_position(positions, bits, s) >= m) {
                return Err(Error::invalid(
                    "positions",
                    format!("slot {slot} = {}", packed_position(positions, bits, slot)),
                    format!("position out of range for groups of {m}"),
                ));
            }
        }
        Ok(NmRef { rows, cols, n, m, values, positions })
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

    /// Kept values per row.
    fn per_row(&self) -> usize {
        self.cols / self.m * self.n
    }

    /// Writes the column of each kept value of row `r` into `cols_out` (length `cols / m * n`).
    pub fn row_columns(&self, r: usize, cols_out: &mut [u32]) -> Result<()> {
        let per_row = self.per_row();
        exact_len("cols_out (cols / m * n)", cols_out.len(), per_row)?;
        if r >= self.rows {
            return Err(Error::invalid("row", r, format!("out of range for {} rows", self.rows)));
        }
        let bits = nm_index_bits(self.m) as usize;
        if (bits, self.n) == (2, 2) {
            // 2:4: one nibble per group.
            for (g, pair) in cols_out.chunks_exact_mut(2).enumerate() {
                let slot = r * per_row + 2 * g;
                let byte = self.positions[slot / 4] >> (2 * (slot % 4));
                pair[0] = (self.m * g) as u32 + u32::from(byte & 3);
                pair[1] = (self.m * g) as u32 + u32::from((byte >> 2) & 3);
            }
        } else {
            for (s, c) in cols_out.iter_mut().enumerate() {
                let position = packed_position(self.positions, bits, r * per_row + s);
                *c = ((s / self.n) * self.m + position) as u32;
            }
        }
        Ok(())
    }
}

/// Checks `x` (`cols x ncols`) and `y` (`rows x ncols`) against the matrix's shape.
fn check_operands(rows: usize, cols: usize, x: usize, ncols: usize, y: usize) -> Result<()> {
    let need_x = crate::tensor::numel(&[cols, ncols])?;
    let need_y = crate::tensor::numel(&[rows, ncols])?;
    if x != need_x {
        return Err(Error::ShapeMismatch {
            context: "spmm x (cols x ncols)",
            expected: vec![cols, ncols],
            actual: vec![x],
        });
    }
    if y != need_y {
        return Err(Error::ShapeMismatch {
            context: "spmm y (rows x ncols)",
            expected: vec![rows, ncols],
            actual: vec![y],
        });
    }
    Ok(())
}

/// One output row on a tier: `y_row = sum_k values[k] * x[cols[k], :]`.
/// Callers guarantee `isa` is available, every `cols[k] < x.len() / ncols`,
/// `values.len() == cols.len()`, `y_row.len() == ncols` and column indices below `i32::MAX`.
fn row_on(isa: Isa, values: &[f32], cols: &[u32], x: &[f32], ncols: usize, y_row: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked Isa::Avx2 is available; the index contract above holds.
        Isa::Avx2 => unsafe { x86::row_spmm(values, cols, x, ncols, y_row) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked Isa::Avx512 is available; the index contract above holds.
        Isa::Avx512 => unsafe { x86_512::row_spmm(values, cols, x, ncols, y_row) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the caller checked Isa::Neon is available; the index contract above holds.
        Isa::Neon | Isa::Dotprod | Isa::I8mm => unsafe { aarch64::row_spmm(values, cols, x, ncols, y_row) },
        Isa::Scalar => scalar::row_spmm(values, cols, x, ncols, y_row),
    }
}

/// CSR x dense: `y (rows x ncols) = a (rows x cols) * x (cols x ncols)`, all row-major.
pub fn csr_spmm(a: &CsrRef<'_>, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
    csr_spmm_on(Isa::active(), a, x, ncols, y)
}

/// [`csr_spmm`] on a chosen tier.
pub fn csr_spmm_on(isa: Isa, a: &CsrRef<'_>, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_operands(a.rows, a.cols, x.len(), ncols, y.len())?;
    if ncols == 0 {
        return Ok(());
    }
    for (r, y_row) in y.chunks_exact_mut(ncols).enumerate() {
        let (values, cols) = a.row(r);
        // CsrRef::new checked every column against a.cols, and x holds a.cols rows of ncols.
        row_on(isa, values, cols, x, ncols, y_row);
    }
    Ok(())
}

/// CSR x vector: `y (rows) = a (rows x cols) * x (cols)`.
pub fn csr_spmv(a: &CsrRef<'_>, x: &[f32], y: &mut [f32]) -> Result<()> {
    csr_spmm_on(Isa::active(), a, x, 1, y)
}

/// [`csr_spmv`] on a chosen tier.
pub fn csr_spmv_on(isa: Isa, a: &CsrRef<'_>, x: &[f32], y: &mut [f32]) -> Result<()> {
    csr_spmm_on(isa, a, x, 1, y)
}

/// N:M compressed x dense: `y (rows x ncols) = a (rows x cols) * x (cols x ncols)`, row-major.
pub fn nm_spmm(a: &NmRef<'_>, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
    nm_spmm_on(Isa::active(), a, x, ncols, y)
}

/// [`nm_spmm`] on a chosen tier.
pub fn nm_spmm_on(isa: Isa, a: &NmRef<'_>, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_operands(a.rows, a.cols, x.len(), ncols, y.len())?;
    if ncols == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if (a.n, a.m) == (2, 4) && a.cols.is_multiple_of(8) {
        let (values, fields) = (a.values, a.positions);
        let (rows, cols) = (a.rows, a.cols);
        // SAFETY (both arms): the tier passed ensure_available; NmRef::new checked that a 2:4
        // matrix with cols % 8 == 0 holds rows * cols / 2 values and rows * cols / 8 field bytes
        // (each row's fields start on a byte); x and y were checked against the shape.
        match isa {
            Isa::Avx512 => return unsafe { x86_512::spmm_2_4(values, fields, rows, cols, x, ncols, y) },
            Isa::Avx2 => return unsafe { x86::spmm_2_4(values, fields, rows, cols, x, ncols, y) },
            Isa::Scalar => {}
        }
    }
    let mut cols = crate::error::try_vec(a.per_row(), 0u32)?;
    for (r, y_row) in y.chunks_exact_mut(ncols).enumerate() {
        a.row_columns(r, &mut cols)?;
        // NmRef::new checked every position below m, so every column is below a.cols.
        row_on(isa, &a.values[r * cols.len()..][..cols.len()], &cols, x, ncols, y_row);
    }
    Ok(())
}

/// A sparse format [`sparse_beats_dense`] can judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseFormat {
    /// [`CsrRef`] (f32 values).
    Csr,
    /// [`NmRef`] (its sparsity is `1 - n/m`).
    NM,
    /// [`NmRef`] with n = 2, m = 4, which has its own x86 kernels when `cols % 8 == 0`.
    TwoFour,
}

/// Sparsities from which CSR beats the dense f32 product on a tier, with 1, 2 to 16 and more
/// columns.
struct CsrCrossovers {
    one: f64,
    sixteen: f64,
    many: f64,
}

/// Whether the sparse product beats greenai's dense f32 product for a `rows x cols` weight of
/// this `sparsity` times `ncols` activation columns, on one core of the active tier
/// ([`sparse_beats_dense_on`]).
pub fn sparse_beats_dense(
    format: SparseFormat,
    rows: usize,
    cols: usize,
    ncols: usize,
    sparsity: f64,
) -> bool {
    sparse_beats_dense_on(Isa::active(), format, rows, cols, ncols, sparsity)
}

/// [`sparse_beats_dense`] for a chosen tier.
///
/// The CSR thresholds are the crossovers measured by `cargo bench --bench sparse -- crossover`
/// (1024 x 1024 weights, sparsity swept in steps of 10% and 5%, one thread):
/// - `avx512` (Intel Xeon, 2 cores, KVM, loaded by other jobs; 2026-12-05) against greenai's
///   `gemv_on` (one column) and `gemm_on` (f32 x f32, 16 and 128 columns) on the same tier:
///   CSR won from 40% with one column, from 10% with 16 and from 30% with 128.
/// - the other tiers: the AVX2 crossovers measured on an AMD EPYC Zen 3 core against
///   `matrixmultiply::sgemm`: CSR first won at 20% with one column (lost at 10%), at 40% with 16
///   columns (lost at 30%) and at 70% with 128 (lost at 60%).
///
/// More than 16 columns take the 128-column threshold. The N:M kernel reuses the CSR row kernel:
/// on Zen 3 it lost to dense at 1024 x 1024 (0.65x with one column, 0.4-0.7x with 16 and 128) and
/// won only with one column on a weight too large for the caches (1.7x at 4096 x 4096). 2:4 with
/// `cols` a multiple of 8 has its own kernels on x86 and beat dense at every column count measured
/// on both tiers (figures in the README).
pub fn sparse_beats_dense_on(
    isa: Isa,
    format: SparseFormat,
    rows: usize,
    cols: usize,
    ncols: usize,
    sparsity: f64,
) -> bool {
    if rows == 0 || cols == 0 || ncols == 0 || !(0.0..=1.0).contains(&sparsity) {
        return false;
    }
    let csr = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &AVX512_CSR,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => &ZEN3_CSR,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => &ZEN3_CSR,
        Isa::Scalar => &ZEN3_CSR,
    };
    let own_2_4 = cfg!(target_arch = "x86_64") && isa > Isa::Scalar && cols.is_multiple_of(8);
    match (format, ncols) {
        (SparseFormat::Csr, 1) => sparsity >= csr.one,
        (SparseFormat::Csr, 2..=16) => sparsity >= csr.sixteen,
        (SparseFormat::Csr, _) => sparsity >= csr.many,
        (SparseFormat::TwoFour, _) if own_2_4 => true,
        (SparseFormat::NM | SparseFormat::TwoFour, 1) => {
            sparsity >= 0.5 && rows.saturating_mul(cols) >= NM_MIN_WEIGHTS_ONE_COLUMN
        }
        (SparseFormat::NM | SparseFormat::TwoFour, _) => false,
    }
}

/// Measured on Zen 3 (AVX2) against `matrixmultiply::sgemm`: see [`sparse_beats_dense_on`].
const ZEN3_CSR: CsrCrossovers = CsrCrossovers { one: 0.2, sixteen: 0.4, many: 0.7 };
/// Measured on the Intel Xeon of 2026-12-05 (avx512 tier, one thread, machine loaded by other
/// jobs: load average near 15 on 2 cores, so single points moved by up to 20%) against greenai's
/// `gemv_on` / `gemm_on` on the same tier, 1024 x 1024: with one column CSR won from 40% (560 vs
/// 603 us, a near tie; 780 us at 30%); with 16 columns already at 10% (6.16 vs 6.85 ms: the dense
/// GEMM is weak at n = 16, 6.7 GFLOPS); with 128 columns from 30% (9.0 vs 11.3 ms; 11.2 at 20%, a tie).
#[cfg(target_arch = "x86_64")]
const AVX512_CSR: CsrCrossovers = CsrCrossovers { one: 0.4, sixteen: 0.1, many: 0.3 };
/// Weights (f32 count, 32 MiB) from which N:M x vector beats dense: measured winning at 4096 x
/// 4096 (64 MiB) and losing at 1024 x 1024; the threshold sits where f32 weights leave the caches.
const NM_MIN_WEIGHTS_ONE_COLUMN: usize = 1 << 23;
