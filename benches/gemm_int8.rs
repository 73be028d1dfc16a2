//! int8 GEMM throughput against `matrixmultiply::sgemm` (f32) at the same shapes, one thread,
//! plus two-thread scaling. Throughput is in operations (2 m n k) per second: "Gelem/s" = GOPS.
//!
//! Paths: `packed_7bit` (B prepacked with values in [-64, 63]: the `vpmaddubsw` path),
//! `packed_exact` (full-range u8 x i8, the widened exact path), `unpacked_exact` (packs B per call),
//! `scalar` (portable kernel, small sizes only).
//!
//! `onednn_u8s8s32_{7bit,full}`: oneDNN's `dnnl_gemm_u8s8s32` on the same data, one OpenMP thread,
//! compiled in when `libdnnl-dev` is installed (see `build.rs`); its result is checked against the
//! exact product once per shape and the verdict printed (on AVX2 without VNNI it may saturate).
//!
//! `quant_linear_*`: the layer an engine calls (`QuantLinear::forward`, x quantized per row on the
//! fly, int8 weights prepacked) at language-model shapes, m = 1 (decode: a GEMV whose weights come
//! from DRAM), 16 and 128, against the f32 product of the same shape (greenai's f32 GEMV for m = 1,
//! `matrixmultiply::sgemm` otherwise). Throughput in weight bytes read per call is not comparable
//! across formats, so it is 2 m n k operations here too.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::gemm_float;
use greenai::kernels::gemm_int8::{gemm_on, gemm_packed_on, ActivationQuant, PackedI8, QuantLinear, Update};
use greenai::kernels::Isa;
use std::hint::black_box;

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

/// oneDNN's int8 GEMM, row-major, as the peer of the packed paths.
#[cfg(greenai_onednn)]
#[path = "peers/onednn_int8.rs"]
mod onednn;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool")
}

fn bench_shape(c: &mut Criterion, group_name: &str, m: usize, n: usize, k: usize, with_scalar: bool) {
    let one = pool(1);
    let mut rng = Rng(1);
    let a = rng.bytes(m * k);
    let b_full: Vec<i8> = rng.bytes(k * n).into_iter().map(|v| v as i8).collect();
    let b_7bit: Vec<i8> = b_full.iter().map(|&v| v >> 1).collect();
    let packed_full = PackedI8::pack(k, n, &b_full, n).unwrap();
    let packed_7bit = PackedI8::pack(k, n, &b_7bit, n).unwrap();
    let af: Vec<f32> = a.iter().map(|&v| f32::from(v)).collect();
    let bf: Vec<f32> = b_full.iter().map(|&v| f32::from(v)).collect();
    let mut ci = vec![0i32; m * n];
    let mut cf = vec![0f32; m * n];
    let isa = Isa::best();

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements((2 * m * n * k) as u64));
    if m * n * k >= 1 << 27 {
        group.sample_size(10);
    }
    let shape = format!("{m}x{n}x{k}");
    group.bench_function(BenchmarkId::new("packed_7bit", &shape), |bench| {
        one.install(|| {
            bench.iter(|| {
                gemm_packed_on(isa, m, black_box(&a), k, &packed_7bit, &mut ci, n, Update::Overwrite).unwrap()
            })
        })
    });
    group.bench_function(BenchmarkId::new("packed_exact", &shape), |bench| {
        one.install(|| {
            bench.iter(|| {
                gemm_packed_on(isa, m, black_box(&a), k, &packed_full, &mut ci, n, Update::Overwrite).unwrap()
            })
        })
    });
    let a_i8: Vec<i8> = a.iter().map(|&v| v as i8).collect();
    group.bench_function(BenchmarkId::new("packed_exact_i8i8", &shape), |bench| {
        one.install(|| {
            bench.iter(|| {
                gemm_packed_on(isa, m, black_box(&a_i8), k, &packed_full, &mut ci, n, Update::Overwrite)
                    .unwrap()
            })
        })
    });
    #[cfg(target_arch = "x86_64")]
    if isa > Isa::Avx2 {
        group.bench_function(BenchmarkId::new("packed_exact_avx2_tier", &shape), |bench| {
            one.install(|| {
                bench.iter(|| {
                    gemm_packed_on(
                        Isa::Avx2,
                        m,
                        black_box(&a),
                        k,
                        &packed_full,
                        &mut ci,
                        n,
                        Update::Overwrite,
                    )
                    .unwrap()
                })
            })
        });
    }
    group.bench_function(BenchmarkId::new("unpacked_exact", &shape), |bench| {
        one.install(|| {
            bench.iter(|| {
                gemm_on(isa, Update::Overwrite, m, n, k, black_box(&a), k, &b_full, n, &mut ci, n).unwrap()
            })
        })
    });
    #[cfg(greenai_onednn)]
    {
        onednn::one_thread();
        for (name, b, packed) in
            [("onednn_u8s8s32_7bit", &b_7bit, &packed_7bit), ("onednn_u8s8s32_full", &b_full, &packed_full)]
        {
            let mut exact = vec![0i32; m * n];
            gemm_packed_on(isa, m, &a, k, packed, &mut exact, n, Update::Overwrite).unwrap();
            onednn::gemm(m, n, k, &a, b, &mut ci);
            let wrong = ci.iter().zip(&exact).filter(|(x, y)| x != y).count();
            eprintln!("{name} {shape}: {wrong} of {} outputs differ from the exact product", m * n);
            group.bench_function(BenchmarkId::new(name, &shape), |bench| {
                bench.iter(|| onednn::gemm(m, n, k, black_box(&a), b, &mut ci))
            });
        }
    }
    if with_scalar {
        group.bench_function(BenchmarkId::new("scalar", &shape), |bench| {
            one.install(|| {
                bench.iter(|| {
                    gemm_packed_on(
                        Isa::Scalar,
                        m,
                        black_box(&a),
                        k,
                        &packed_full,
                        &mut ci,
                        n,
                        Update::Overwrite,
                    )
                    .unwrap()
                })
            })
        });
    }
    group.bench_function(BenchmarkId::new("matrixmultiply_sgemm_f32", &shape), |bench| {
        bench.iter(|| {
            // SAFETY: the slices hold m x k, k x n and m x n row-major f32 with the strides given.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    black_box(af.as_ptr()),
                    k as isize,
                    1,
                    bf.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    cf.as_mut_ptr(),
                    n as isize,
                    1,
                )
            }
        })
    });
    group.finish();
}

fn square(c: &mut Criterion) {
    for s in [256, 512, 1024] {
        bench_shape(c, "gemm_int8_square", s, s, s, s == 256);
    }
}

fn language_model(c: &mut Criterion) {
    for m in [16, 128] {
        bench_shape(c, "gemm_int8_llm", m, 4096, 4096, false);
    }
}

/// Deterministic values in [-0.5, 0.5).
fn floats(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    rng.bytes(len).into_iter().map(|v| f32::from(v) / 256.0 - 0.5).collect()
}

fn quant_linear(c: &mut Criterion) {
    let one = pool(1);
    for (out_f, in_f) in [(4096, 4096), (11008, 4096)] {
        let w = floats(out_f * in_f, 3);
        let layer = QuantLinear::from_float(&w, out_f, in_f, None, false).unwrap();
        let mut group = c.benchmark_group(format!("quant_linear_{out_f}x{in_f}_1thread"));
        group.sample_size(10);
        for m in [1, 16, 128] {
            let x = floats(m * in_f, 4);
            let mut y = vec![0f32; m * out_f];
            group.throughput(Throughput::Elements((2 * m * out_f * in_f) as u64));
            group.bench_function(BenchmarkId::new("greenai_int8_u8_dynamic", m), |bench| {
                one.install(|| {
                    bench.iter(|| layer.forward(black_box(&x), m, ActivationQuant::U8Affine, &mut y).unwrap())
                })
            });
            if m == 1 {
                group.bench_function(BenchmarkId::new("greenai_f32_gemv", m), |bench| {
                    one.install(|| {
                        bench.iter(|| {
                            gemm_float::gemv_f32(out_f, in_f, black_box(&w), in_f, &x, &mut y).unwrap()
                        })
                    })
                });
            } else {
                group.bench_function(BenchmarkId::new("matrixmultiply_sgemm_f32", m), |bench| {
                    bench.iter(|| {
                        // SAFETY: x is m x in_f, w is out_f x in_f (read as its transpose, in_f x out_f,
                        // with strides 1 and in_f), y is m x out_f; all row-major.
                        unsafe {
                            matrixmultiply::sgemm(
                                m,
                                in_f,
                                out_f,
                                1.0,
                                black_box(x.as_ptr()),
                                in_f as isize,
                                1,
                                w.as_ptr(),
                                1,
                                in_f as isize,
                                0.0,
                                y.as_mut_ptr(),
                                out_f as isize,
                                1,
                            )
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

fn threads(c: &mut Criterion) {
    let s = 1024;
    let mut rng = Rng(2);
    let a = rng.bytes(s * s);
    let b: Vec<i8> = rng.bytes(s * s).into_iter().map(|v| (v as i8) >> 1).collect();
    let packed = PackedI8::pack(s, s, &b, s).unwrap();
    let mut ci = vec![0i32; s * s];
    let mut group = c.benchmark_group("gemm_int8_threads");
    group.throughput(Throughput::Elements((2 * s * s * s) as u64));
    group.sample_size(10);
    for t in [1, 2] {
        let p = pool(t);
        group.bench_function(BenchmarkId::new("packed_7bit_1024", t), |bench| {
            p.install(|| {
                bench.iter(|| {
                    gemm_packed_on(Isa::best(), s, black_box(&a), s, &packed, &mut ci, s, Update::Overwrite)
                        .unwrap()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, square, language_model, quant_linear, threads);
criterion_main!(benches);
