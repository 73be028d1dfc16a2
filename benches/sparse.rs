//! Sparse x dense against greenai's own dense f32 product in the same group, on the avx512 and
//! avx2 tiers: CSR at 90% sparsity and 2:4 compressed, weights 1024 x 1024 and 4096 x 4096,
//! activations with 1, 16 and 128 columns (`spmm`); plus a sparsity sweep to find the CSR
//! crossovers on each tier (`crossover`). The dense product is `gemv_on` for one column (and
//! `gemm_in_place_on` with n = 1, to show which is faster) and `gemm_on` (f32 x f32) for more.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench sparse -- --sample-size 10 --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::gemm_float::{gemm_in_place_on, gemm_on, gemv_on};
use greenai::kernels::sparse::{self, CsrRef};
use greenai::kernels::Isa;
use greenai::prune::criteria::SplitMix64;
use greenai::prune::{self, CountRule, Csr, NmCompressed};
use std::hint::black_box;

fn random_matrix(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.below(2_000_001) as f32 / 1e6 - 1.0).collect()
}

/// The x86 tiers this machine has, highest first.
fn tiers() -> Vec<Isa> {
    Isa::available().into_iter().rev().filter(|&isa| isa != Isa::Scalar).collect()
}

/// greenai's dense f32 product `y (rows x ncols) = w (rows x cols) * x (cols x ncols)`: the GEMV
/// for one column, the GEMM (f32 weights) for more.
fn dense(isa: Isa, rows: usize, cols: usize, ncols: usize, w: &[f32], x: &[f32], y: &mut [f32]) {
    if ncols == 1 {
        gemv_on(isa, rows, cols, w, cols, x, y).unwrap();
    } else {
        gemm_on(isa, rows, ncols, cols, w, cols, x, ncols, y, ncols).unwrap();
    }
}

fn bench_shape(c: &mut Criterion, rows: usize, cols: usize) {
    let mut rng = SplitMix64::new(42);
    let w = random_matrix(&mut rng, rows * cols);
    let csr_w = prune::magnitude(&w, 0.9, CountRule::TORCH, None).unwrap().apply(&w).unwrap();
    let csr = Csr::from_dense(&csr_w, rows, cols).unwrap();
    let csr = csr.view().unwrap();
    let nm_w = prune::n_m(&w, &[rows, cols], 2, 4, false).unwrap().apply(&w).unwrap();
    let nm = NmCompressed::from_dense(&nm_w, rows, cols, 2, 4).unwrap();
    let nm = nm.view().unwrap();
    for ncols in [1usize, 16, 128] {
        let mut group = c.benchmark_group(format!("spmm_{rows}x{cols}x{ncols}"));
        let x = random_matrix(&mut rng, cols * ncols);
        let mut y = vec![0.0f32; rows * ncols];
        // Throughput in dense-equivalent multiply-adds, so the figures compare directly.
        group.throughput(Throughput::Elements((rows * cols * ncols) as u64));
        for isa in tiers() {
            group.bench_function(BenchmarkId::new("dense_f32", isa), |b| {
                b.iter(|| dense(isa, rows, cols, ncols, black_box(&w), black_box(&x), &mut y))
            });
            if ncols == 1 {
                group.bench_function(BenchmarkId::new("dense_gemm_n1", isa), |b| {
                    b.iter(|| {
                        gemm_in_place_on(isa, rows, 1, cols, black_box(&w), cols, black_box(&x), 1, &mut y, 1)
                            .unwrap()
                    })
                });
            }
            group.bench_function(BenchmarkId::new("csr_90", isa), |b| {
                b.iter(|| sparse::csr_spmm_on(isa, black_box(&csr), black_box(&x), ncols, &mut y).unwrap())
            });
            group.bench_function(BenchmarkId::new("nm_2_4", isa), |b| {
                b.iter(|| sparse::nm_spmm_on(isa, black_box(&nm), black_box(&x), ncols, &mut y).unwrap())
            });
        }
        group.finish();
    }
}

fn spmm(c: &mut Criterion) {
    bench_shape(c, 1024, 1024);
    bench_shape(c, 4096, 4096);
}

fn crossover(c: &mut Criterion) {
    let (rows, cols) = (1024, 1024);
    let mut rng = SplitMix64::new(7);
    let w = random_matrix(&mut rng, rows * cols);
    let pruned: Vec<(u32, Csr<f32>)> = [10u32, 20, 30, 40, 50, 60, 70, 80, 90]
        .into_iter()
        .map(|pct| {
            let a = prune::magnitude(&w, f64::from(pct) / 100.0, CountRule::TORCH, None)
                .unwrap()
                .apply(&w)
                .unwrap();
            (pct, Csr::from_dense(&a, rows, cols).unwrap())
        })
        .collect();
    let views: Vec<(u32, CsrRef<'_>)> = pruned.iter().map(|(pct, csr)| (*pct, csr.view().unwrap())).collect();
    for isa in tiers() {
        for ncols in [1usize, 16, 128] {
            let x = random_matrix(&mut rng, cols * ncols);
            let mut y = vec![0.0f32; rows * ncols];
            let mut group = c.benchmark_group(format!("crossover_{isa}_1024x1024x{ncols}"));
            group.throughput(Throughput::Elements((rows * cols * ncols) as u64));
            group.bench_function("dense_f32", |b| {
                b.iter(|| dense(isa, rows, cols, ncols, black_box(&w), black_box(&x), &mut y))
            });
            for (pct, csr) in &views {
                group.bench_function(BenchmarkId::new("csr", pct), |b| {
                    b.iter(|| sparse::csr_spmm_on(isa, black_box(csr), black_box(&x), ncols, &mut y).unwrap())
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = spmm, crossover
}
criterion_main!(benches);
