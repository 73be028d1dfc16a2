//! The int8 2:4 layer (`QuantLinear::from_float_2_4`, the 2:4 kernel) against the dense int8 layer
//! of the same pruned weights (`QuantLinear::from_float`), one thread, in one group so each shape's
//! two runs sit side by side. Throughput is the dense product's operations (2 m n k) for both, so
//! the ratio of the figures is the speedup and the 2:4 figure compares with the dense-equivalent
//! `vpdpbusd` ceiling (one Zen 4 core: ~456 GOPS dense, ~1.37x that for the `vpshufb` design).
//!
//! Shapes: MiniLM's four linear layers at 128 and 512 tokens (384 -> 1152, 384 -> 384, 384 -> 1536,
//! 1536 -> 384) and the decode step m = 1 at 4096 x 4096.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::gemm_int8::{ActivationQuant, QuantLinear};
use std::hint::black_box;
use std::time::Duration;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn gauss(&mut self) -> f32 {
        // Sum of four uniforms, centred: close enough to a bell for timing.
        (0..4).map(|_| (self.next() % 1000) as f32 / 1000.0).sum::<f32>() - 2.0
    }
}

/// `n x k` weights, the two largest |w| of every aligned four kept.
fn pruned(rng: &mut Rng, n: usize, k: usize) -> Vec<f32> {
    let mut w: Vec<f32> = (0..n * k).map(|_| rng.gauss()).collect();
    for g in w.chunks_exact_mut(4) {
        let mut order = [0usize, 1, 2, 3];
        order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        g[order[2]] = 0.0;
        g[order[3]] = 0.0;
    }
    w
}

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a rayon pool");
    let mut rng = Rng(7);
    let mut group = c.benchmark_group("quant_linear_2_4");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let shapes = [
        (128, 1152, 384),
        (128, 384, 384),
        (128, 1536, 384),
        (128, 384, 1536),
        (512, 1152, 384),
        (512, 384, 384),
        (512, 1536, 384),
        (512, 384, 1536),
        (1, 4096, 4096),
    ];
    for (m, n, k) in shapes {
        let w = pruned(&mut rng, n, k);
        let bias: Vec<f32> = (0..n).map(|_| rng.gauss()).collect();
        let dense = QuantLinear::from_float(&w, n, k, Some(&bias), false).expect("dense layer");
        let sparse = QuantLinear::from_float_2_4(&w, n, k, Some(&bias), false).expect("2:4 layer");
        let x: Vec<f32> = (0..m * k).map(|_| rng.gauss()).collect();
        let mut y = vec![0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let shape = format!("m{m}_n{n}_k{k}");
        for mode in [ActivationQuant::U8Affine, ActivationQuant::I8Symmetric] {
            let tag = match mode {
                ActivationQuant::U8Affine => "u8",
                ActivationQuant::I8Symmetric => "i8",
            };
            if m == 1 && mode == ActivationQuant::I8Symmetric {
                continue;
            }
            for (name, layer) in [("dense", &dense), ("sparse24", &sparse)] {
                group.bench_with_input(BenchmarkId::new(format!("{name}_{tag}"), &shape), &(), |b, _| {
                    pool.install(|| {
                        b.iter(|| layer.forward(black_box(&x), m, mode, &mut y).expect("forward"))
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
