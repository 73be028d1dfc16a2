//! The W4A8 int4 GEMM (`kernels::int4::gemm_w4a8_packed`, weights packed once) against looping
//! the int4 GEMV over the token rows, greenai's int8 `QuantLinear` (activations quantized per row)
//! and the f32 GEMM on packed weights, at all-MiniLM-L6-v2's shapes (m = 1, 128, 512 token rows;
//! 384 -> 1152, 384 -> 1536, 1536 -> 384), one thread, group 128 with zero points, all four
//! in one criterion group per shape. Times are the thread's CPU time ([`CpuTime`]), so other jobs
//! on a shared machine do not count; throughput is 2 m n k operations per second.

#[allow(dead_code, reason = "this bench uses only CpuTime")]
mod common;

use common::CpuTime;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::gemm_float::{gemm_packed, PackedB};
use greenai::kernels::gemm_int8::{ActivationQuant, QuantLinear};
use greenai::kernels::int4::{gemm_w4a8_packed, gemv_w4a8, Int4Weights, PackedInt4};
use std::hint::black_box;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn uniform(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
    }
}

const GROUP: usize = 128;

fn shape(c: &mut Criterion<CpuTime>, m: usize, out: usize, inp: usize) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a rayon pool");
    let mut rng = Rng(7);
    let groups = inp.div_ceil(GROUP);
    let packed: Vec<u8> = (0..out * inp / 2).map(|_| rng.next() as u8).collect();
    let scales: Vec<f32> = (0..out * groups).map(|_| rng.uniform().abs() * 0.01 + 1e-3).collect();
    let zeros: Vec<i8> = (0..out * groups).map(|_| (rng.next() % 16) as i8 - 8).collect();
    let w4 = Int4Weights {
        rows: out,
        cols: inp,
        group: GROUP,
        packed: &packed,
        scales: &scales,
        zero_points: Some(&zeros),
    };
    let p4 = PackedInt4::new(&w4).expect("int4 weights");
    let wf: Vec<f32> = (0..out * inp).map(|_| rng.uniform() * 0.1).collect();
    let q8 = QuantLinear::from_float(&wf, out, inp, None, false).expect("int8 layer");
    let mut wt = vec![0.0f32; inp * out];
    for o in 0..out {
        for i in 0..inp {
            wt[i * out + o] = wf[o * inp + i];
        }
    }
    let pf = PackedB::pack(inp, out, &wt, out).expect("f32 weights");
    let x: Vec<f32> = (0..m * inp).map(|_| rng.uniform() * 2.0).collect();
    let mut y = vec![0.0f32; m * out];

    let mut group = c.benchmark_group(format!("int4_minilm/{m}x{out}x{inp}"));
    group.throughput(Throughput::Elements((2 * m * out * inp) as u64));
    if m * out * inp >= 1 << 26 {
        group.sample_size(10);
    }
    let id = |name: &str| BenchmarkId::new(name, format!("{m}x{out}x{inp}"));
    group.bench_function(id("int4_gemm"), |b| {
        pool.install(|| b.iter(|| gemm_w4a8_packed(&p4, black_box(&x), m, &mut y).unwrap()))
    });
    group.bench_function(id("int4_gemv_loop"), |b| {
        pool.install(|| {
            b.iter(|| {
                for (xr, yr) in black_box(&x).chunks_exact(inp).zip(y.chunks_exact_mut(out)) {
                    gemv_w4a8(&w4, xr, yr).unwrap();
                }
            })
        })
    });
    group.bench_function(id("int8_quant_linear"), |b| {
        pool.install(|| b.iter(|| q8.forward(black_box(&x), m, ActivationQuant::U8Affine, &mut y).unwrap()))
    });
    group.bench_function(id("f32_packed"), |b| {
        pool.install(|| b.iter(|| gemm_packed(m, black_box(&x), inp, &pf, &mut y, out).unwrap()))
    });
    group.finish();
}

fn minilm(c: &mut Criterion<CpuTime>) {
    for m in [1usize, 128, 512] {
        for (out, inp) in [(1152usize, 384usize), (1536, 384), (384, 1536)] {
            shape(c, m, out, inp);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = minilm
}
criterion_main!(benches);
