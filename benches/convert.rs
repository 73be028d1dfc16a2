//! Conversion kernels against their peers: `half`'s slice conversions and our scalar reference in
//! cache (4096 elements) for the four casts, quantize f32 -> i8 / u8 and dequantize in cache (a
//! few sizes), and quantize from DRAM (256 MiB of input) against `copy_from_slice` of the same
//! input and against the least traffic its NaN rule allows. Times are the thread's CPU time
//! ([`CpuTime`]), so a shared machine's other jobs do not count against a kernel.

mod common;

use common::{sum_lanes, CpuTime};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::convert as cv;
use greenai::kernels::Isa;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

const IN_CACHE: usize = 4096;
const DRAM_BYTES: usize = 256 << 20;

fn input(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i as f32) * 0.618_034).sin() * 100.0).collect()
}

fn simd_paths() -> impl Iterator<Item = Isa> {
    Isa::available().into_iter().filter(|&isa| isa != Isa::Scalar)
}

fn casts(c: &mut Criterion<CpuTime>) {
    let x = input(IN_CACHE);
    let mut h = vec![f16::ZERO; IN_CACHE];
    let mut b = vec![bf16::ZERO; IN_CACHE];
    let mut back = vec![0.0f32; IN_CACHE];

    let mut g = c.benchmark_group("f32_to_f16");
    g.throughput(Throughput::Elements(IN_CACHE as u64));
    g.bench_function("half_slice", |bn| bn.iter(|| h.convert_from_f32_slice(black_box(&x))));
    for isa in Isa::available() {
        g.bench_function(isa.name(), |bn| bn.iter(|| cv::f32_to_f16_on(isa, black_box(&x), &mut h).unwrap()));
    }
    g.finish();

    cv::f32_to_f16(&x, &mut h).unwrap();
    let mut g = c.benchmark_group("f16_to_f32");
    g.throughput(Throughput::Elements(IN_CACHE as u64));
    g.bench_function("half_slice", |bn| bn.iter(|| black_box(&h).convert_to_f32_slice(&mut back)));
    for isa in Isa::available() {
        g.bench_function(isa.name(), |bn| {
            bn.iter(|| cv::f16_to_f32_on(isa, black_box(&h), &mut back).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("f32_to_bf16");
    g.throughput(Throughput::Elements(IN_CACHE as u64));
    g.bench_function("half_slice", |bn| bn.iter(|| b.convert_from_f32_slice(black_box(&x))));
    for isa in Isa::available() {
        g.bench_function(isa.name(), |bn| {
            bn.iter(|| cv::f32_to_bf16_on(isa, black_box(&x), &mut b).unwrap())
        });
    }
    g.finish();

    cv::f32_to_bf16(&x, &mut b).unwrap();
    let mut g = c.benchmark_group("bf16_to_f32");
    g.throughput(Throughput::Elements(IN_CACHE as u64));
    g.bench_function("half_slice", |bn| bn.iter(|| black_box(&b).convert_to_f32_slice(&mut back)));
    for isa in Isa::available() {
        g.bench_function(isa.name(), |bn| {
            bn.iter(|| cv::bf16_to_f32_on(isa, black_box(&b), &mut back).unwrap())
        });
    }
    g.finish();
}

fn quantize_in_cache(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("quantize_i8_in_cache");
    for len in [1024, IN_CACHE, 16384] {
        let x = input(len);
        let mut y = vec![0i8; len];
        g.throughput(Throughput::Elements(len as u64));
        for isa in Isa::available() {
            g.bench_function(BenchmarkId::new(isa.name(), len), |bn| {
                bn.iter(|| cv::quantize_i8_on(isa, black_box(&x), 0.8, 3, &mut y).unwrap())
            });
        }
    }
    // The NaN pre-scan alone: the part of quantize that reads the input a first time.
    let x = input(IN_CACHE);
    g.throughput(Throughput::Elements(IN_CACHE as u64));
    for isa in Isa::available() {
        g.bench_function(BenchmarkId::new("nan_scan", isa), |bn| {
            bn.iter(|| cv::first_nan_on(isa, black_box(&x)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("quantize_u8_in_cache");
    g.throughput(Throughput::Elements(IN_CACHE as u64));
    let mut y = vec![0u8; IN_CACHE];
    for isa in Isa::available() {
        g.bench_function(isa.name(), |bn| {
            bn.iter(|| cv::quantize_u8_on(isa, black_box(&x), 0.8, 128, &mut y).unwrap())
        });
    }
    g.finish();

    let mut y = vec![0i8; IN_CACHE];
    cv::quantize_i8(&x, 0.8, 3, &mut y).unwrap();
    let mut back = vec![0.0f32; IN_CACHE];
    let mut g = c.benchmark_group("dequantize_i8_in_cache");
    g.throughput(Throughput::Elements(IN_CACHE as u64));
    for isa in Isa::available() {
        g.bench_function(isa.name(), |bn| {
            bn.iter(|| cv::dequantize_i8_on(isa, black_box(&y), 0.8, 3, &mut back).unwrap())
        });
    }
    g.finish();
}

fn quantize_from_dram(c: &mut Criterion<CpuTime>) {
    let len = DRAM_BYTES / std::mem::size_of::<f32>();
    let x = input(len);
    let mut y = vec![0i8; len];
    let mut copy = vec![0.0f32; len];
    let mut g = c.benchmark_group("quantize_i8_from_dram");
    g.sample_size(10);
    g.throughput(Throughput::Elements(len as u64));
    g.bench_function("copy_from_slice", |bn| bn.iter(|| copy.copy_from_slice(black_box(&x))));
    // What "a NaN leaves y untouched" costs at least: x read twice (a sum, then its top bytes), y
    // written once.
    g.bench_function("read_twice_floor", |bn| {
        bn.iter(|| {
            let checked = sum_lanes(black_box(&x));
            y.iter_mut().zip(&x).for_each(|(q, &v)| *q = (v.to_bits() >> 24) as i8);
            checked
        })
    });
    for isa in simd_paths() {
        g.bench_function(isa.name(), |bn| {
            bn.iter(|| cv::quantize_i8_on(isa, black_box(&x), 0.8, 3, &mut y).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = casts, quantize_in_cache, quantize_from_dram
}
criterion_main!(benches);
