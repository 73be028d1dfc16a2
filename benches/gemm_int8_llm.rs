//! int8 GEMM at language-model shapes, one thread, greenai beside its peers in each group.
//!
//! `llm_k4096_n{4096,11008}`: C (m x n) = A (m x 4096, u8) B (4096 x n, i8), full-range random
//! data, m = 1 (decode), 16, 128. Throughput "elem/s" is operations (2 m n k) per second.
//! - `greenai_plain`: `gemm_on` with row-major B as the user passes it (streams B for small m,
//!   packs it for large m); `greenai_prepacked`: `gemm_packed_on` on a `PackedI8` made once;
//! - `onednn_u8s8s32`: oneDNN's `dnnl_gemm_u8s8s32`, row-major B (its only form), one OpenMP
//!   thread (when `libdnnl-dev` is installed, see `build.rs`);
//! - `rten_plain` / `rten_prepacked`: rten-gemm's `GemmExecutor<u8, i8, i32>` with unpacked B and
//!   with `prepack_b`.
//!
//! oneDNN and rten-gemm use `vpmaddubsw` on AVX2 without VNNI and may saturate: each peer's result
//! is compared with greenai's exact one once per shape and the count of differing outputs printed.
//!
//! `stream_crossover_k4096_n4096`: the plain API's two paths (`stream`, `pack`) for m = 1..48, to
//! place `STREAM_MAX_ROWS`.
//!
//! `gemv_dram_k4096_n11008`: m = 1 with 45 MB of weights, held in as many copies as make up
//! `common::dram_bytes()` (four times the last-level cache; every call, GEMV or read, takes the next
//! copy, so none finds its B in cache), throughput in weight bytes per second, beside a plain
//! read of the same bytes (`read_bytes`) and rten-gemm's unpacked GEMV. Times there are the
//! thread's CPU time ([`CpuTime`]), so other jobs count only through the memory they share.

#[allow(dead_code, reason = "this bench uses only CpuTime and dram_bytes")]
mod common;

use common::CpuTime;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::gemm_int8::{gemm_packed_on, gemm_path_on, PackedI8, PlainPath, Update};
use greenai::kernels::Isa;
use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions};
use rten_tensor::NdTensorView;
use std::hint::black_box;
use std::time::Duration;

struct Rng(u64);
impl Rng {
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (self.0 >> 33) as u8
            })
            .collect()
    }
}

/// oneDNN's int8 GEMM, row-major.
#[cfg(greenai_onednn)]
#[path = "peers/onednn_int8.rs"]
mod onednn;

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a rayon pool")
}

fn report(name: &str, shape: &str, got: &[i32], exact: &[i32]) {
    let wrong = got.iter().zip(exact).filter(|(x, y)| x != y).count();
    eprintln!("{name} {shape}: {wrong} of {} outputs differ from the exact product", exact.len());
}

fn llm(c: &mut Criterion) {
    let one = one_thread();
    let isa = Isa::best();
    let k = 4096;
    let rten = GemmExecutor::<u8, i8, i32>::default();
    eprintln!("rten-gemm kernel: {} (may saturate: {})", rten.kernel_name(), rten.may_saturate());
    #[cfg(greenai_onednn)]
    onednn::one_thread();
    for n in [4096, 11008] {
        let mut rng = Rng(1);
        let b: Vec<i8> = rng.bytes(k * n).into_iter().map(|v| v as i8).collect();
        let packed = PackedI8::pack(k, n, &b, n).unwrap();
        let b_view = NdTensorView::from_data([k, n], &b[..]);
        let rten_packed = rten.prepack_b(b_view);
        let mut group = c.benchmark_group(format!("llm_k{k}_n{n}"));
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        for m in [1, 16, 128] {
            let a = rng.bytes(m * k);
            let a_view = NdTensorView::from_data([m, k], &a[..]);
            let mut ci = vec![0i32; m * n];
            let mut exact = vec![0i32; m * n];
            gemm_packed_on(isa, m, &a, k, &packed, &mut exact, n, Update::Overwrite).unwrap();
            let shape = format!("m{m}");
            gemm_path_on(isa, PlainPath::Auto, Update::Overwrite, m, n, k, &a, k, &b, n, &mut ci, n).unwrap();
            assert!(ci == exact, "the plain and prepacked paths differ at m = {m}");
            group.throughput(Throughput::Elements((2 * m * n * k) as u64));
            group.bench_function(BenchmarkId::new("greenai_plain", m), |bench| {
                one.install(|| {
                    bench.iter(|| {
                        gemm_path_on(
                            isa,
                            PlainPath::Auto,
                            Update::Overwrite,
                            m,
                            n,
                            k,
                            black_box(&a),
                            k,
                            &b,
                            n,
                            &mut ci,
                            n,
                        )
                        .unwrap()
                    })
                })
            });
            group.bench_function(BenchmarkId::new("greenai_prepacked", m), |bench| {
                one.install(|| {
                    bench.iter(|| {
                        gemm_packed_on(isa, m, black_box(&a), k, &packed, &mut ci, n, Update::Overwrite)
                            .unwrap()
                    })
                })
            });
            #[cfg(greenai_onednn)]
            {
                onednn::gemm(m, n, k, &a, &b, &mut ci);
                report("onednn_u8s8s32", &shape, &ci, &exact);
                group.bench_function(BenchmarkId::new("onednn_u8s8s32", m), |bench| {
                    bench.iter(|| onednn::gemm(m, n, k, black_box(&a), &b, &mut ci))
                });
            }
            let rten_run = |ci: &mut [i32], packed_b: bool| {
                let b_in =
                    if packed_b { GemmInputB::Packed(&rten_packed) } else { GemmInputB::Unpacked(b_view) };
                rten.gemm(ci, GemmInputA::Unpacked(a_view), b_in, GemmOptions::default()).unwrap()
            };
            one.install(|| rten_run(&mut ci, false));
            report("rten_plain", &shape, &ci, &exact);
            group.bench_function(BenchmarkId::new("rten_plain", m), |bench| {
                one.install(|| bench.iter(|| rten_run(black_box(&mut ci), false)))
            });
            group.bench_function(BenchmarkId::new("rten_prepacked", m), |bench| {
                one.install(|| bench.iter(|| rten_run(black_box(&mut ci), true)))
            });
        }
        group.finish();
    }
}

fn crossover(c: &mut Criterion) {
    let one = one_thread();
    let isa = Isa::best();
    let (n, k) = (4096, 4096);
    let mut rng = Rng(2);
    let b: Vec<i8> = rng.bytes(k * n).into_iter().map(|v| v as i8).collect();
    let mut group = c.benchmark_group(format!("stream_crossover_k{k}_n{n}"));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    for m in [1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128] {
        let a = rng.bytes(m * k);
        let mut ci = vec![0i32; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for (name, path) in [("stream", PlainPath::Stream), ("pack", PlainPath::Pack)] {
            group.bench_function(BenchmarkId::new(name, m), |bench| {
                one.install(|| {
                    bench.iter(|| {
                        gemm_path_on(
                            isa,
                            path,
                            Update::Overwrite,
                            m,
                            n,
                            k,
                            black_box(&a),
                            k,
                            &b,
                            n,
                            &mut ci,
                            n,
                        )
                        .unwrap()
                    })
                })
            });
        }
    }
    group.finish();
}

/// Reads every byte once (wrapping sum of u64 words): the bandwidth yardstick.
fn read_bytes(bytes: &[i8]) -> u64 {
    // SAFETY: any bit pattern is a valid u64.
    let (head, words, tail) = unsafe { bytes.align_to::<u64>() };
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, &w) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(w);
        }
    }
    let rest = chunks.remainder().iter().chain(&acc).fold(0u64, |s, &w| s.wrapping_add(w));
    head.iter().chain(tail).fold(rest, |s, &v| s.wrapping_add(v as u64))
}

/// Copies of `v` that together make at least `total` bytes (at least one).
fn copies<T: Clone>(v: &[T], total: usize) -> Vec<Vec<T>> {
    let bytes = std::mem::size_of_val(v).max(1);
    vec![v.to_vec(); total.div_ceil(bytes).max(1)]
}

/// The copy for the next call.
fn next<'a, T>(copies: &'a [T], turn: &mut usize) -> &'a T {
    *turn = (*turn + 1) % copies.len();
    &copies[*turn]
}

fn gemv_dram(c: &mut Criterion<CpuTime>) {
    let one = one_thread();
    let isa = Isa::best();
    let (n, k) = (11008, 4096);
    let mut rng = Rng(3);
    let b: Vec<i8> = rng.bytes(k * n).into_iter().map(|v| v as i8).collect();
    let packed = PackedI8::pack(k, n, &b, n).unwrap();
    let packed = vec![packed; common::dram_bytes().div_ceil(k * n).max(1)];
    let b = copies(&b, common::dram_bytes());
    let a = rng.bytes(k);
    let rten = GemmExecutor::<u8, i8, i32>::default();
    let a_view = NdTensorView::from_data([1, k], &a[..]);
    let mut ci = vec![0i32; n];
    let mut turn = 0;
    let mut group = c.benchmark_group(format!("gemv_dram_k{k}_n{n}"));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes((k * n) as u64));
    group.bench_function("read_bytes", |bench| {
        bench.iter(|| read_bytes(black_box(next::<Vec<i8>>(&b, &mut turn))))
    });
    group.bench_function("greenai_plain", |bench| {
        one.install(|| {
            bench.iter(|| {
                let b = next(&b[..], &mut turn);
                gemm_path_on(
                    isa,
                    PlainPath::Auto,
                    Update::Overwrite,
                    1,
                    n,
                    k,
                    black_box(&a),
                    k,
                    b,
                    n,
                    &mut ci,
                    n,
                )
                .unwrap()
            })
        })
    });
    group.bench_function("greenai_prepacked", |bench| {
        one.install(|| {
            bench.iter(|| {
                let packed = next(&packed[..], &mut turn);
                gemm_packed_on(isa, 1, black_box(&a), k, packed, &mut ci, n, Update::Overwrite).unwrap()
            })
        })
    });
    group.bench_function("rten_plain", |bench| {
        one.install(|| {
            bench.iter(|| {
                let b_view = NdTensorView::from_data([k, n], &next(&b[..], &mut turn)[..]);
                let b_in = GemmInputB::Unpacked(b_view);
                rten.gemm(&mut ci, GemmInputA::Unpacked(a_view), b_in, GemmOptions::default()).unwrap()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, llm, crossover);
criterion_group! {
    name = dram;
    config = Criterion::default().with_measurement(CpuTime);
    targets = gemv_dram
}
criterion_main!(benches, dram);
