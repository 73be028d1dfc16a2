//! Sparse storage round trips and sparse kernels against a float64 dense product, on every path.

use greenai::kernels::sparse::{self, SparseFormat};
use greenai::kernels::Isa;
use greenai::prune::criteria::SplitMix64;
use greenai::prune::{self, Csr, NmCompressed};
use proptest::prelude::*;

fn sparse_matrix(rng: &mut SplitMix64, rows: usize, cols: usize, density_pct: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|_| if rng.below(100) < density_pct { rng.below(2001) as f32 / 100.0 - 10.0 } else { 0.0 })
        .collect()
}

/// `a (rows x cols) * x (cols x ncols)` in f64, with the sum of |terms| for the tolerance.
fn dense_reference(a: &[f32], x: &[f32], rows: usize, cols: usize, ncols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; rows * ncols];
    let mut mag = vec![0.0; rows * ncols];
    for r in 0..rows {
        for k in 0..cols {
            let av = f64::from(a[r * cols + k]);
            for c in 0..ncols {
                let t = av * f64::from(x[k * ncols + c]);
                y[r * ncols + c] += t;
                mag[r * ncols + c] += t.abs();
            }
        }
    }
    (y, mag)
}

fn assert_close(got: &[f32], want: &(Vec<f64>, Vec<f64>), what: &str) {
    assert_eq!(got.len(), want.0.len());
    for (i, (&g, (&w, &m))) in got.iter().zip(want.0.iter().zip(&want.1)).enumerate() {
        let tol = 1e-5 * m + f64::from(f32::MIN_POSITIVE);
        assert!((f64::from(g) - w).abs() <= tol, "{what}: element {i}: {g} vs {w} (tolerance {tol})");
    }
}

/// Values in [-10, 10] in steps of 0.01.
fn values(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.below(2001) as f32 / 100.0 - 10.0).collect()
}

/// Prunes random weights to N:M, compresses them and checks `nm_spmm` on every path against the
/// float64 product with a random x of `ncols` columns.
fn check_nm_product(rng: &mut SplitMix64, rows: usize, cols: usize, (n, m): (usize, usize), ncols: usize) {
    let w = values(rng, rows * cols);
    let a = prune::n_m(&w, &[rows, cols], n, m, false).unwrap().apply(&w).unwrap();
    let nm = NmCompressed::from_dense(&a, rows, cols, n, m).unwrap();
    let x = values(rng, cols * ncols);
    let want = dense_reference(&a, &x, rows, cols, ncols);
    for isa in Isa::available() {
        let mut y = vec![f32::NAN; rows * ncols];
        nm.spmm_on(isa, &x, ncols, &mut y).unwrap();
        assert_close(&y, &want, &format!("{n}:{m} {isa} {rows}x{cols}x{ncols}"));
    }
}

const SIZES: &[usize] = &[0, 1, 2, 7, 8, 9, 16, 17, 31, 64, 67, 128, 131];

#[test]
fn csr_products_match_f64_on_every_path() {
    let mut rng = SplitMix64::new(11);
    for &ncols in SIZES {
        for &(rows, cols) in &[(0, 5), (1, 1), (5, 0), (3, 17), (13, 40), (29, 131)] {
            let a = sparse_matrix(&mut rng, rows, cols, 30);
            let x = values(&mut rng, cols * ncols);
            let csr = Csr::from_dense(&a, rows, cols).unwrap();
            let want = dense_reference(&a, &x, rows, cols, ncols);
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; rows * ncols];
                sparse::csr_spmm_on(isa, &csr.view().unwrap(), &x, ncols, &mut y).unwrap();
                assert_close(&y, &want, &format!("csr {isa} {rows}x{cols}x{ncols}"));
                if ncols == 1 {
                    let mut v = vec![f32::NAN; rows];
                    sparse::csr_spmv_on(isa, &csr.view().unwrap(), &x, &mut v).unwrap();
                    assert_eq!(v, y);
                }
            }
        }
    }
}

#[test]
fn nm_products_match_f64_on_every_path() {
    let mut rng = SplitMix64::new(12);
    for &(n, m) in &[(2, 4), (4, 8), (1, 4), (3, 8), (2, 3), (1, 1)] {
        for &ncols in SIZES {
            // 16 and 66 groups of four: the 2:4 vector kernel's whole steps and its odd-byte tail.
            for &(rows, groups) in &[(0, 2), (1, 1), (3, 5), (17, 9), (5, 16), (4, 66)] {
                check_nm_product(&mut rng, rows, groups * m, (n, m), ncols);
            }
        }
    }
}

#[test]
fn two_four_blocked_product_crosses_row_depth_and_column_blocks() {
    // 261 rows: past one 256-row block and not a multiple of the 3- or 4-row tiles; 136 and 264
    // columns: two and three depth blocks of 128, the last partial; column counts from a partial
    // 8-wide vector to several 32-wide blocks.
    let mut rng = SplitMix64::new(13);
    for &(rows, cols) in &[(261, 136), (7, 264), (3, 0), (0, 16)] {
        for ncols in [2, 5, 16, 24, 33, 96, 100] {
            check_nm_product(&mut rng, rows, cols, (2, 4), ncols);
        }
    }
}

#[test]
fn kernels_handle_edge_values() {
    let edge = [f32::MIN_POSITIVE, -f32::MIN_POSITIVE / 4.0, 1e18, -1e18, 0.0, -0.0, 3.0e-39, 1.0];
    let a: Vec<f32> = (0..8 * 8).map(|i| edge[(i * 3) % 8]).collect();
    let x: Vec<f32> = (0..8 * 9).map(|i| edge[(i * 5) % 8]).collect();
    let csr = Csr::from_dense(&a, 8, 8).unwrap();
    let want = dense_reference(&a, &x, 8, 8, 9);
    for isa in Isa::available() {
        let mut y = vec![0.0; 72];
        csr.spmm_on(isa, &x, 9, &mut y).unwrap();
        assert_close(&y, &want, &format!("edge {isa}"));
    }
}

#[test]
fn kernels_refuse_mismatched_shapes() {
    let csr = Csr::from_dense(&[1.0, 0.0, 0.0, 2.0], 2, 2).unwrap();
    let mut y = vec![0.0; 4];
    assert!(csr.spmm(&[1.0; 3], 2, &mut y).is_err());
    assert!(csr.spmm(&[1.0; 4], 2, &mut y[..3]).is_err());
    let nm = NmCompressed::from_dense(&[1.0, 0.0, 0.0, 2.0], 1, 4, 2, 4).unwrap();
    assert!(nm.spmm(&[1.0; 3], 1, &mut y[..1]).is_err());
    nm.spmm(&[1.0, 2.0, 3.0, 4.0], 1, &mut y[..1]).unwrap();
    assert_eq!(y[0], 9.0);
}

#[test]
fn nm_compression_refuses_dense_groups() {
    assert!(NmCompressed::from_dense(&[1.0, 2.0, 3.0, 0.0], 1, 4, 2, 4).is_err());
    assert!(NmCompressed::from_dense(&[1.0, 0.0, 0.0], 1, 3, 2, 4).is_err());
    assert!(NmCompressed::from_dense(&[1.0; 4], 1, 4, 5, 4).is_err());
    assert!(Csr::from_dense(&[1.0f32; 3], 2, 2).is_err());
}

#[test]
fn sparse_beats_dense_follows_the_measured_crossovers() {
    // Every tier: nothing to gain from an empty product or an impossible sparsity.
    for isa in Isa::available() {
        assert!(!sparse::sparse_beats_dense_on(isa, SparseFormat::Csr, 0, 1024, 16, 0.9));
        assert!(!sparse::sparse_beats_dense_on(isa, SparseFormat::Csr, 1024, 1024, 16, -0.1));
        assert!(sparse::sparse_beats_dense_on(isa, SparseFormat::Csr, 1024, 1024, 16, 0.9));
        assert!(!sparse::sparse_beats_dense_on(isa, SparseFormat::NM, 1024, 1024, 128, 0.5));
    }
    assert_eq!(
        sparse::sparse_beats_dense(SparseFormat::Csr, 1024, 1024, 16, 0.5),
        sparse::sparse_beats_dense_on(Isa::active(), SparseFormat::Csr, 1024, 1024, 16, 0.5)
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn sparse_beats_dense_keeps_each_x86_tiers_measured_crossovers() {
    use SparseFormat::{Csr as C, TwoFour, NM};
    let avx2 = |format, rows, cols, ncols, sparsity| {
        sparse::sparse_beats_dense_on(Isa::Avx2, format, rows, cols, ncols, sparsity)
    };
    // Zen 3 against sgemm: CSR won from 20% (one column), 40% (16) and 70% (128).
    assert!(avx2(C, 1024, 1024, 1, 0.2) && !avx2(C, 1024, 1024, 1, 0.1));
    assert!(avx2(C, 1024, 1024, 16, 0.4) && !avx2(C, 1024, 1024, 16, 0.3));
    assert!(avx2(C, 1024, 1024, 128, 0.7) && !avx2(C, 1024, 1024, 128, 0.6));
    assert!(avx2(NM, 4096, 4096, 1, 0.5) && !avx2(NM, 1024, 1024, 1, 0.5));
    assert!(avx2(TwoFour, 1024, 1024, 1, 0.5) && avx2(TwoFour, 4096, 4096, 128, 0.5));
    // Without its own kernel (columns not a multiple of 8), 2:4 is the N:M kernel.
    assert!(!avx2(TwoFour, 1024, 1020, 16, 0.5));
    let avx512 = |format, ncols, sparsity| {
        sparse::sparse_beats_dense_on(Isa::Avx512, format, 1024, 1024, ncols, sparsity)
    };
    // The Xeon against greenai's dense f32 product: CSR won from 40% (1 column), 10% (16), 30% (128).
    assert!(avx512(C, 1, 0.4) && !avx512(C, 1, 0.3));
    assert!(avx512(C, 16, 0.1) && !avx512(C, 16, 0.05));
    assert!(avx512(C, 128, 0.3) && !avx512(C, 128, 0.2));
    assert!(avx512(TwoFour, 1, 0.5) && avx512(TwoFour, 16, 0.5) && avx512(TwoFour, 128, 0.5));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn csr_round_trips_exactly(rows in 0usize..12, cols in 0usize..40, density in 0usize..=100, seed: u64) {
        let mut rng = SplitMix64::new(seed);
        let a = sparse_matrix(&mut rng, rows, cols, density);
        let csr = Csr::from_dense(&a, rows, cols).unwrap();
        let nnz = a.iter().filter(|v| **v != 0.0).count();
        prop_assert_eq!(csr.nnz(), nnz);
        prop_assert_eq!(csr.storage_bytes(), 8 * nnz + 4 * (rows + 1));
        prop_assert_eq!(csr.to_dense().unwrap(), a.clone());
        let q: Vec<i8> = a.iter().map(|v| (*v * 12.0) as i8).collect();
        let qcsr = Csr::from_dense(&q, rows, cols).unwrap();
        let qnnz = q.iter().filter(|v| **v != 0).count();
        prop_assert_eq!(qcsr.storage_bytes(), 5 * qnnz + 4 * (rows + 1));
        prop_assert_eq!(qcsr.to_dense().unwrap(), q);
    }

    #[test]
    fn two_four_products_match_f64_on_every_path(rows in 0usize..20, octets in 0usize..40, ncols in 1usize..72, seed: u64) {
        // cols a multiple of 8 (the 2:4 kernels' own case), past one 128-column depth block.
        check_nm_product(&mut SplitMix64::new(seed), rows, 8 * octets, (2, 4), ncols);
    }

    #[test]
    fn nm_round_trips_exactly(rows in 0usize..8, groups in 0usize..8, (n, m) in (1usize..=16).prop_flat_map(|m| (0..=m, Just(m))), seed: u64) {
        let mut rng = SplitMix64::new(seed);
        let cols = groups * m;
        let w = sparse_matrix(&mut rng, rows, cols, 70);
        let a = prune::n_m(&w, &[rows, cols], n, m, false).unwrap().apply(&w).unwrap();
        let nm = NmCompressed::from_dense(&a, rows, cols, n, m).unwrap();
        prop_assert_eq!(nm.to_dense().unwrap(), a);
        let stored = rows * groups * n;
        let bits = (m as f64).log2().ceil() as usize;
        prop_assert_eq!(nm.storage_bytes(), 4 * stored + (stored * bits).div_ceil(8));
    }
}
