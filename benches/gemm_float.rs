//! f32 x f32/f16/bf16 GEMM and f32/f16/bf16/int8 GEMV, one thread, against the `gemm` crate (its
//! f16 and f32 GEMM), `matrixmultiply::sgemm` and, when installed, OpenBLAS `cblas_sgemm` (one
//! thread), in the same groups. Throughput: GEMM in elements = flops (2 m n k), so criterion's
//! "Gelem/s" reads as GFLOPS; GEMV in weight bytes per call (GB/s).
//!
//! `cargo bench --bench gemm_float -- 'filter' --warm-up-time 1 --measurement-time 3`
//! Groups: `gemm_square_1thread` (256..1024 cubed), `gemm_m{1,16,128}_{k}x{n}_1thread` (the small-m
//! shapes of LLM layers), `gemm_crossover_f16` (in place against packing B, by m), `gemm_f16_threads`,
//! `gemv_*_dram_1thread`.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use greenai::kernels::gemm_float::{self, PackedB};
use greenai::kernels::Isa;
use half::{bf16, f16};
use std::hint::black_box;

/// OpenBLAS's CBLAS single-precision GEMM and its thread setting.
#[cfg(greenai_openblas)]
mod openblas {
    /// `CblasRowMajor`.
    pub const ROW_MAJOR: i32 = 101;
    /// `CblasNoTrans`.
    pub const NO_TRANS: i32 = 111;
    extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub fn cblas_sgemm(
            order: i32,
            trans_a: i32,
            trans_b: i32,
            m: i32,
            n: i32,
            k: i32,
            alpha: f32,
            a: *const f32,
            lda: i32,
            b: *const f32,
            ldb: i32,
            beta: f32,
            c: *mut f32,
            ldc: i32,
        );
        pub fn openblas_set_num_threads(threads: i32);
    }

    /// Row-major `C (m x n) = A (m x k) B (k x n)`, all dense, on one thread.
    pub fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        let d = |v: usize| i32::try_from(v).expect("bench dimensions fit an int");
        // SAFETY: the buffers hold the dense row-major matrices (asserted); one thread is asked
        // for on every call, so OpenBLAS's pool never grows.
        unsafe {
            openblas_set_num_threads(1);
            cblas_sgemm(
                ROW_MAJOR,
                NO_TRANS,
                NO_TRANS,
                d(m),
                d(n),
                d(k),
                1.0,
                a.as_ptr(),
                d(k),
                b.as_ptr(),
                d(n),
                0.0,
                c.as_mut_ptr(),
                d(n),
            )
        }
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool")
}

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        .collect()
}

/// The `gemm` crate's row-major `C = A B` (dense, one thread) for its element type `T`.
#[allow(clippy::too_many_arguments)]
fn gemm_crate<T: 'static + Copy>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
    zero: T,
    one: T,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: the buffers hold the dense row-major matrices (column stride 1, row stride = width).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            zero,
            one,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `matrixmultiply`'s row-major `C = A B` (dense; it runs on one thread without its feature).
fn mm_sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: the buffers hold the dense row-major matrices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// The peers of one `m x k x n` product, in the group: the `gemm` crate (f16 with f16 A, and f32),
/// `matrixmultiply` and OpenBLAS sgemm.
fn peers(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: usize,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b32: &[f32],
) {
    let mut out = vec![0.0f32; m * n];
    let a16: Vec<gemm::f16> = a.iter().map(|&v| gemm::f16::from_f32(v)).collect();
    let b16: Vec<gemm::f16> = b32.iter().map(|&v| gemm::f16::from_f32(v)).collect();
    let mut o16 = vec![gemm::f16::ZERO; m * n];
    group.bench_function(BenchmarkId::new("peer_gemm_crate_f16", id), |bench| {
        bench.iter(|| gemm_crate(m, n, k, &a16, &b16, &mut o16, gemm::f16::ZERO, gemm::f16::ONE))
    });
    drop(b16);
    group.bench_function(BenchmarkId::new("peer_gemm_crate_f32", id), |bench| {
        bench.iter(|| gemm_crate(m, n, k, a, b32, &mut out, 0.0, 1.0))
    });
    group.bench_function(BenchmarkId::new("peer_matrixmultiply_sgemm", id), |bench| {
        bench.iter(|| mm_sgemm(m, n, k, a, b32, &mut out))
    });
    #[cfg(greenai_openblas)]
    group.bench_function(BenchmarkId::new("peer_openblas_sgemm", id), |bench| {
        bench.iter(|| openblas::sgemm(m, n, k, a, b32, &mut out))
    });
    black_box((&out, &o16));
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
        peers(&mut group, s, s, s, s, &a, &b32);
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

/// greenai's plain and prepacked GEMM with weights `W` (converted from `b32`).
#[allow(clippy::too_many_arguments)]
fn greenai_pair<W: gemm_float::WeightElement>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    b32: &[f32],
    to_w: fn(f32) -> W,
    one: &rayon::ThreadPool,
) {
    let b: Vec<W> = b32.iter().map(|&v| to_w(v)).collect();
    let mut out = vec![0.0f32; m * n];
    group.bench_function(BenchmarkId::new(format!("greenai_{name}"), m), |bench| {
        one.install(|| {
            bench.iter(|| gemm_float::gemm_on(Isa::active(), m, n, k, a, k, &b, n, &mut out, n).unwrap())
        })
    });
    let packed = PackedB::pack(k, n, &b, n).unwrap();
    drop(b);
    group.bench_function(BenchmarkId::new(format!("greenai_{name}_prepacked"), m), |bench| {
        one.install(|| bench.iter(|| gemm_float::gemm_packed(m, a, k, &packed, &mut out, n).unwrap()))
    });
    black_box(&out);
}

/// The decode and prefill shapes of a 7B-class layer: m = 1, 16, 128 rows of activations against
/// 4096 x 4096 and 4096 x 11008 weights (16-bit weights of these shapes stream from DRAM).
fn gemm_small_m(c: &mut Criterion) {
    let one = pool(1);
    for (k, n) in [(4096usize, 4096usize), (4096, 11008)] {
        let b32 = values(k * n, 2);
        for m in [1usize, 16, 128] {
            let mut group = c.benchmark_group(format!("gemm_m{m}_{k}x{n}_1thread"));
            group.sample_size(10);
            group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
            let a = values(m * k, 1);
            greenai_pair(&mut group, "f32_f32w", (m, n, k), &a, &b32, |v| v, &one);
            greenai_pair(&mut group, "f32_f16w", (m, n, k), &a, &b32, f16::from_f32, &one);
            greenai_pair(&mut group, "f32_bf16w", (m, n, k), &a, &b32, bf16::from_f32, &one);
            if m == 1 {
                // The same product with the weights stored transposed (n x k), as the GEMV takes them.
                let mut y = vec![0.0f32; n];
                let w32 = values(n * k, 3);
                let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
                let wbf: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
                group.bench_function(BenchmarkId::new("greenai_gemv_f32w_nxk", m), |bench| {
                    one.install(|| bench.iter(|| gemm_float::gemv_f32(n, k, &w32, k, &a, &mut y).unwrap()))
                });
                group.bench_function(BenchmarkId::new("greenai_gemv_f16w_nxk", m), |bench| {
                    one.install(|| bench.iter(|| gemm_float::gemv_f16(n, k, &w16, k, &a, &mut y).unwrap()))
                });
                group.bench_function(BenchmarkId::new("greenai_gemv_bf16w_nxk", m), |bench| {
                    one.install(|| bench.iter(|| gemm_float::gemv_bf16(n, k, &wbf, k, &a, &mut y).unwrap()))
                });
                black_box(&y);
            }
            peers(&mut group, m, m, n, k, &a, &b32);
            group.finish();
        }
    }
}

/// Where reading B in place stops paying against packing it, f16 weights 4096 x 4096, by m: the
/// threshold `blocking::IN_PLACE_MAX_M` comes from here.
fn gemm_crossover(c: &mut Criterion) {
    let one = pool(1);
    let (k, n) = (4096usize, 4096usize);
    let b: Vec<f16> = values(k * n, 2).iter().map(|&v| f16::from_f32(v)).collect();
    let mut group = c.benchmark_group("gemm_crossover_f16_4096x4096");
    group.sample_size(10);
    for m in [8usize, 16, 32, 48, 64, 96] {
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        let a = values(m * k, 1);
        let mut out = vec![0.0f32; m * n];
        group.bench_function(BenchmarkId::new("in_place", m), |bench| {
            one.install(|| {
                bench.iter(|| {
                    gemm_float::gemm_in_place_on(Isa::active(), m, n, k, &a, k, &b, n, &mut out, n).unwrap()
                })
            })
        });
        group.bench_function(BenchmarkId::new("pack_then_packed", m), |bench| {
            one.install(|| {
                bench.iter(|| {
                    let packed = PackedB::pack(k, n, &b, n).unwrap();
                    gemm_float::gemm_packed(m, &a, k, &packed, &mut out, n).unwrap()
                })
            })
        });
        black_box(&out);
    }
    group.finish();
}

/// Enough copies of a weight matrix that cycling through them streams from DRAM (> 3x the L3).
fn copies(bytes: usize) -> usize {
    (96usize << 20).div_ceil(bytes).max(1)
}

/// Round-robin over `copies` of `w`, `y = W x` per iteration.
fn bench_gemv<T: Clone + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
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

criterion_group!(benches, gemm_square, gemm_small_m, gemm_crossover, gemv);
criterion_main!(benches);
