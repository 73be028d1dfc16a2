//! Sparse x dense against the dense f32 product (`matrixmultiply::sgemm`) in the same group:
//! CSR at 90% sparsity and 2:4 compressed, weights 1024x1024 (and 4096x4096 for one column),
//! activations with 1, 16 and 128 columns; plus a sparsity sweep to find the CSR crossover.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::sparse;
use greenai::prune::criteria::SplitMix64;
use greenai::prune::{self, CountRule, Csr, NmCompressed};
use std::hint::black_box;

fn random_matrix(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.below(2_000_001) as f32 / 1e6 - 1.0).collect()
}

fn sgemm(rows: usize, cols: usize, ncols: usize, a: &[f32], x: &[f32], y: &mut [f32]) {
    // SAFETY: a is rows x cols, x is cols x ncols, y is rows x ncols, all row-major and in bounds.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            cols,
            ncols,
            1.0,
            a.as_ptr(),
            cols as isize,
            1,
            x.as_ptr(),
            ncols as isize,
            1,
            0.0,
            y.as_mut_ptr(),
            ncols as isize,
            1,
        )
    }
}

fn bench_shape(c: &mut Criterion, rows: usize, cols: usize, column_counts: &[usize], with_nm: bool) {
    let mut rng = SplitMix64::new(42);
    let w = random_matrix(&mut rng, rows * cols);
    let csr_w = prune::magnitude(&w, 0.9, CountRule::TORCH, None).unwrap().apply(&w).unwrap();
    let csr = Csr::from_dense(&csr_w, rows, cols).unwrap();
    let nm_w = prune::n_m(&w, &[rows, cols], 2, 4, false).unwrap().apply(&w).unwrap();
    let nm = NmCompressed::from_dense(&nm_w, rows, cols, 2, 4).unwrap();
    let mut group = c.benchmark_group(format!("spmm_{rows}x{cols}"));
    for &ncols in column_counts {
        let x = random_matrix(&mut rng, cols * ncols);
        let mut y = vec![0.0f32; rows * ncols];
        // Throughput in dense-equivalent multiply-adds, so the figures compare directly.
        group.throughput(Throughput::Elements((rows * cols * ncols) as u64));
        group.bench_function(BenchmarkId::new("dense_sgemm", ncols), |b| {
            b.iter(|| sgemm(rows, cols, ncols, black_box(&w), black_box(&x), &mut y))
        });
        group.bench_function(BenchmarkId::new("csr_90", ncols), |b| {
            b.iter(|| sparse::csr_spmm(black_box(&csr), black_box(&x), ncols, &mut y).unwrap())
        });
        if with_nm {
            group.bench_function(BenchmarkId::new("nm_2_4", ncols), |b| {
                b.iter(|| sparse::nm_spmm(black_box(&nm), black_box(&x), ncols, &mut y).unwrap())
            });
        }
    }
    group.finish();
}

fn spmm(c: &mut Criterion) {
    bench_shape(c, 1024, 1024, &[1, 2, 4, 8, 16, 128], true);
    bench_shape(c, 4096, 4096, &[1, 16, 128], true);
}

fn crossover(c: &mut Criterion) {
    let (rows, cols) = (1024, 1024);
    let mut rng = SplitMix64::new(7);
    let w = random_matrix(&mut rng, rows * cols);
    for ncols in [1usize, 16, 128] {
        let x = random_matrix(&mut rng, cols * ncols);
        let mut y = vec![0.0f32; rows * ncols];
        let mut group = c.benchmark_group(format!("crossover_1024x1024x{ncols}"));
        group.throughput(Throughput::Elements((rows * cols * ncols) as u64));
        group.bench_function("dense_sgemm", |b| {
            b.iter(|| sgemm(rows, cols, ncols, black_box(&w), black_box(&x), &mut y))
        });
        for pct in [10u32, 20, 30, 40, 50, 60, 70, 75, 80] {
            let a = prune::magnitude(&w, f64::from(pct) / 100.0, CountRule::TORCH, None)
                .unwrap()
                .apply(&w)
                .unwrap();
            let csr = Csr::from_dense(&a, rows, cols).unwrap();
            group.bench_function(BenchmarkId::new("csr", pct), |b| {
                b.iter(|| sparse::csr_spmm(black_box(&csr), black_box(&x), ncols, &mut y).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = spmm, crossover
}
criterion_main!(benches);
