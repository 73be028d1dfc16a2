//! Sparse x dense products: `Y = A * X` with `A` in CSR or N:M compressed form (see
//! [`crate::prune::sparse`]) and `X`, `Y` dense row-major (`X` is `A.cols() x ncols`, `Y` is
//! `A.rows() x ncols`, overwritten).
//!
//! Each output row is `sum_k a_k * X[col_k, :]`, accumulated in f32 in storage order by the
//! scalar reference ([`scalar`]); the SIMD paths keep eight columns per register with FMA (and
//! gather for one column), so they agree with it to rounding. 2:4 with `cols % 8 == 0` has its own
//! AVX2 kernels: one `vpermps` selection per eight kept values times a vector, and a GEMM-like
//! blocked product (packed x micro-panels, register tiles) times several columns.
//!
//! [`sparse_beats_dense`] says where this pays, from crossovers measured on the reference
//! machine (AMD EPYC Zen 3, one core) with `benches/sparse.rs` against `matrixmultiply::sgemm`.

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use super::Isa;
use crate::prune::sparse::{Csr, NmCompressed};
use crate::{Error, Result};

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

/// One output row on a path: `y_row = sum_k values[k] * x[cols[k], :]`.
/// Callers guarantee every `cols[k] < x.len() / ncols`, `values.len() == cols.len()`,
/// `y_row.len() == ncols` and column indices below `i32::MAX`.
fn row_on(isa: Isa, values: &[f32], cols: &[u32], x: &[f32], ncols: usize, y_row: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked Isa::Avx2 is available; the index contract above holds.
        Isa::Avx2 | Isa::Avx512 => unsafe { x86::row_spmm(values, cols, x, ncols, y_row) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the caller checked Isa::Neon is available; the index contract above holds.
        Isa::Neon | Isa::Dotprod | Isa::I8mm => unsafe { aarch64::row_spmm(values, cols, x, ncols, y_row) },
        Isa::Scalar => scalar::row_spmm(values, cols, x, ncols, y_row),
    }
}

/// CSR x dense: `y (rows x ncols) = a (rows x cols) * x (cols x ncols)`, all row-major.
pub fn csr_spmm(a: &Csr<f32>, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
    csr_spmm_on(Isa::active(), a, x, ncols, y)
}

/// [`csr_spmm`] on a chosen path.
pub fn csr_spmm_on(isa: Isa, a: &Csr<f32>, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_operands(a.rows(), a.cols(), x.len(), ncols, y.len())?;
    if ncols == 0 {
        return Ok(());
    }
    for (r, y_row) in y.chunks_exact_mut(ncols).enumerate() {
        let (values, cols) = a.row(r);
        row_on(isa, values, cols, x, ncols, y_row);
    }
    Ok(())
}

/// CSR x vector: `y (rows) = a (rows x cols) * x (cols)`.
pub fn csr_spmv(a: &Csr<f32>, x: &[f32], y: &mut [f32]) -> Result<()> {
    csr_spmm_on(Isa::active(), a, x, 1, y)
}

/// [`csr_spmv`] on a chosen path.
pub fn csr_spmv_on(isa: Isa, a: &Csr<f32>, x: &[f32], y: &mut [f32]) -> Result<()> {
    csr_spmm_on(isa, a, x, 1, y)
}

/// N:M compressed x dense: `y (rows x ncols) = a (rows x cols) * x (cols x ncols)`, row-major.
pub fn nm_spmm(a: &NmCompressed, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
    nm_spmm_on(Isa::active(), a, x, ncols, y)
}

/// [`nm_spmm`] on a chosen path.
pub fn nm_spmm_on(isa: Isa, a: &NmCompressed, x: &[f32], ncols: usize, y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_operands(a.rows(), a.cols(), x.len(), ncols, y.len())?;
    if ncols == 0 {
        return Ok(());
    }
    let per_row = a.cols() / a.m() * a.n();
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2 && (a.n(), a.m()) == (2, 4) && a.cols().is_multiple_of(8) {
        // SAFETY: a tier with AVX2 passed ensure_available; a 2:4 matrix with cols % 8 == 0 holds rows * cols / 2
        // values and rows * cols / 8 field bytes (each row's fields start on a byte); x and y
        // were checked against the shape.
        return unsafe { x86::spmm_2_4(a.values(), a.indices(), a.rows(), a.cols(), x, ncols, y) };
    }
    let mut cols = crate::error::try_vec(per_row, 0u32)?;
    for (r, y_row) in y.chunks_exact_mut(ncols).enumerate() {
        a.row_columns(r, &mut cols)?;
        row_on(isa, &a.values()[r * per_row..(r + 1) * per_row], &cols, x, ncols, y_row);
    }
    Ok(())
}

/// A sparse format [`sparse_beats_dense`] can judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseFormat {
    /// [`Csr`] with f32 values.
    Csr,
    /// [`NmCompressed`] (its sparsity is `1 - n/m`).
    NM,
    /// [`NmCompressed`] with n = 2, m = 4, which has its own AVX2 kernels when `cols % 8 == 0`.
    TwoFour,
}

/// Whether the sparse product beats the dense f32 product (`matrixmultiply::sgemm`) for a
/// `rows x cols` weight of this `sparsity` times `ncols` activation columns, on one core.
///
/// The CSR thresholds are the crossovers measured by `cargo bench --bench sparse -- crossover`
/// (1024 x 1024 weights, sparsity swept in steps of 10% and 5%, quiet Zen 3 core): CSR first won
/// at 20% with one column (lost at 10%), at 40% with 16 columns (lost at 30%) and at 70% with 128
/// (lost at 60%); more than 16 columns take the 128-column threshold. The N:M kernel reuses the
/// CSR row kernel: it lost to dense at 1024 x 1024 (0.65x with one column, 0.4-0.7x with 16 and
/// 128) and won only with one column on a weight too large for the caches (1.7x at 4096 x 4096).
/// 2:4 with `cols` a multiple of 8 has its own AVX2 kernels: times a vector 4.9x dense at
/// 1024 x 1024 and 5.4x at 4096 x 4096; times 2 to 128 columns, blocked like a dense GEMM, 1.8-2.3x
/// at 1024 x 1024 (1.4x with 128 columns) and 2.5x / 1.5x with 16 / 128 columns at 4096 x 4096.
pub fn sparse_beats_dense(
    format: SparseFormat,
    rows: usize,
    cols: usize,
    ncols: usize,
    sparsity: f64,
) -> bool {
    if rows == 0 || cols == 0 || ncols == 0 || !(0.0..=1.0).contains(&sparsity) {
        return false;
    }
    match (format, ncols) {
        (SparseFormat::Csr, 1) => sparsity >= CSR_CROSSOVER_ONE_COLUMN,
        (SparseFormat::Csr, 2..=16) => sparsity >= CSR_CROSSOVER_16_COLUMNS,
        (SparseFormat::Csr, _) => sparsity >= CSR_CROSSOVER_128_COLUMNS,
        (SparseFormat::TwoFour, _) if cols.is_multiple_of(8) => true,
        (SparseFormat::NM | SparseFormat::TwoFour, 1) => {
            sparsity >= 0.5 && rows.saturating_mul(cols) >= NM_MIN_WEIGHTS_ONE_COLUMN
        }
        (SparseFormat::NM | SparseFormat::TwoFour, _) => false,
    }
}

/// Measured: the sparsity from which CSR x vector beats dense.
const CSR_CROSSOVER_ONE_COLUMN: f64 = 0.2;
/// Measured: the sparsity from which CSR x 16 columns beats dense.
const CSR_CROSSOVER_16_COLUMNS: f64 = 0.4;
/// Measured: the sparsity from which CSR x 128 columns beats dense.
const CSR_CROSSOVER_128_COLUMNS: f64 = 0.7;
/// Weights (f32 count, 32 MiB) from which N:M x vector beats dense: measured winning at 4096 x
/// 4096 (64 MiB) and losing at 1024 x 1024; the threshold sits where f32 weights leave the caches.
const NM_MIN_WEIGHTS_ONE_COLUMN: usize = 1 << 23;
