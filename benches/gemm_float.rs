//! f32 x f16/bf16 GEMM and f32/f16/bf16/int8 GEMV, one thread, against `gemm` (its f16 GEMM) and
//! `matrixmultiply::sgemm` in the same groups. Throughput: GEMM in elements = flops (2 m n k),
//! so criterion's "Gelem/s" reads as GFLOPS; GEMV in weight bytes per call (GB/s).
//!
//! `cargo bench --bench gemm_float -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::gemm_float::{self, PackedB};
use half::{bf16, f16};
use std::hint::black_box;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool")
}

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        .collect()
}

fn gemm_square(c: &mut Criterion) {
    let one = pool(1);
    let mut group = c.benchmark_group("gemm_square_1thread");
    group.sample_size(10);
    for s in [256usize, 512, 1024] {
        group.throughput(Throughput::Elements(2 * (s * s * s) as u64));
        let a = values(s * s, 1);
        let b32 = values(s * s, 2);
        let b16: Vec<f16> = b32.iter().map(|&v| f16::from_f32(v)).collect();
        let bb16: Vec<bf16> = b32.iter().map(|&v| bf16::from_f32(v)).collect();
        let mut out = vec![0.0f32; s * s];
        let packed = PackedB::pack(s, s, &b16, s).unwrap();
        let packed_bf = PackedB::pack(s, s, &bb16, s).unwrap();
        group.bench_function(BenchmarkId::new("greenai_f32_f16w_prepacked", s), |bench| {
            one.install(|| bench.iter(|| gemm_float::gemm_packed(s, &a, s, &packed, &mut out, s).unwrap()))
        });
        group.bench_function(BenchmarkId::new("greenai_f32_f16w", s), |bench| {
            one.install(|| {
                bench.iter(|| gemm_float::gemm_f32_f16w(s, s, s, &a, s, &b16, s, &mut out, s).unwrap())
            })
        });
        group.bench_function(BenchmarkId::new("greenai_f32_bf16w_prepacked", s), |bench| {
            one.install(|| bench.iter(|| gemm_float::gemm_packed(s, &a, s, &packed_bf, &mut out, s).unwrap()))
        });
        let a16: Vec<gemm::f16> = a.iter().map(|&v| gemm::f16::from_f32(v)).collect();
        let g16: Vec<gemm::f16> = b32.iter().map(|&v| gemm::f16::from_f32(v)).collect();
        let mut o16 = vec![gemm::f16::ZERO; s * s];
        group.bench_function(BenchmarkId::new("peer_gemm_crate_f16", s), |bench| {
            bench.iter(|| {
                // SAFETY: all three buffers are s x s row-major (column stride 1, row stride s).
                unsafe {
                    gemm::gemm(
                        s,
                        s,
                        s,
                        o16.as_mut_ptr(),
                        1,
                        s as isize,
                        false,
                        a16.as_ptr(),
                        1,
                        s as isize,
                        g16.as_ptr(),
                        1,
                        s as isize,
                        gemm::f16::ZERO,
                        gemm::f16::ONE,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            })
        });
        group.bench_function(BenchmarkId::new("peer_matrixmultiply_sgemm", s), |bench| {
            bench.iter(|| {
                // SAFETY: all three buffers are s x s row-major.
                unsafe {
                    matrixmultiply::sgemm(
                        s,
                        s,
                        s,
                        1.0,
                        a.as_ptr(),
                        s as isize,
                        1,
                        b32.as_ptr(),
                        s as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        s as isize,
                        1,
                    )
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("gemm_f16_threads");
    group.sample_size(10);
    let s = 1024;
    group.throughput(Throughput::Elements(2 * (s * s * s) as u64));
    let a = values(s * s, 1);
    let b16: Vec<f16> = values(s * s, 2).iter().map(|&v| f16::from_f32(v)).collect();
    let packed = PackedB::pack(s, s, &b16, s).unwrap();
    let mut out = vec![0.0f32; s * s];
    for threads in [1, 2] {
        let p = pool(threads);
        group.bench_function(BenchmarkId::new("greenai_f32_f16w_prepacked", threads), |bench| {
            p.install(|| bench.iter(|| gemm_float::gemm_packed(s, &a, s, &packed, &mut out, s).unwrap()))
        });
    }
    group.finish();
}

/// Enough copies of a weight matrix that cycling through them streams from DRAM (> 3x the 32 MiB L3).
fn copies(bytes: usize) -> usize {
    (96usize << 20).div_ceil(bytes).max(1)
}

/// Round-robin over `copies` of `w`, `y = W x` per iteration.
fn bench_gemv<T: Clone + Sync>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    w: Vec<T>,
    mut run: impl FnMut(&[T]) + Send,
) {
    let bytes = w.len() * std::mem::size_of::<T>();
    let ws: Vec<Vec<T>> = (0..copies(bytes)).map(|_| w.clone()).collect();
    drop(w);
    group.throughput(Throughput::Bytes(bytes as u64));
    let mut i = 0;
    let one = pool(1);
    group.bench_function(name, |bench| {
        one.install(|| {
            bench.iter(|| {
                i = (i + 1) % ws.len();
                run(&ws[i])
            })
        })
    });
}

fn gemv(c: &mut Criterion) {
    for (n, k) in [(4096usize, 4096usize), (11008, 4096)] {
        let mut group = c.benchmark_group(format!("gemv_{n}x{k}_dram_1thread"));
        group.sample_size(10);
        let x = values(k, 9);
        let mut y = vec![0.0f32; n];
        let base = values(n * k, 3);
        bench_gemv(&mut group, "greenai_f32", base.clone(), |w| {
            gemm_float::gemv_f32(n, k, w, k, &x, &mut y).unwrap()
        });
        bench_gemv(&mut group, "peer_matrixmultiply_sgemm_m1", base.clone(), |w| {
            // SAFETY: y^T (1 x n) = x^T (1 x k) * W^T (k x n), W^T read with strides (1, k).
            unsafe {
                matrixmultiply::sgemm(
                    1,
                    k,
                    n,
                    1.0,
                    x.as_ptr(),
                    k as isize,
                    1,
                    w.as_ptr(),
                    1,
                    k as isize,
                    0.0,
                    y.as_mut_ptr(),
                    n as isize,
                    1,
                )
            }
        });
        let w16 = base.iter().map(|&v| f16::from_f32(v)).collect();
        bench_gemv(&mut group, "greenai_f16", w16, |w| gemm_float::gemv_f16(n, k, w, k, &x, &mut y).unwrap());
        let wbf = base.iter().map(|&v| bf16::from_f32(v)).collect();
        bench_gemv(&mut group, "greenai_bf16", wbf, |w| {
            gemm_float::gemv_bf16(n, k, w, k, &x, &mut y).unwrap()
        });
        let scales = vec![1.0f32 / 127.0; n];
        let wi8 = base.iter().map(|&v| (v * 254.0) as i8).collect();
        bench_gemv(&mut group, "greenai_i8", wi8, |w| {
            gemm_float::gemv_i8(n, k, w, k, &scales, &x, &mut y).unwrap()
        });
        black_box(&y);
        group.finish();
    }
}

criterion_group!(benches, gemm_square, gemv);
criterion_main!(benches);
