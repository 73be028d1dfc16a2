//! The fused, vectorised KD pass against a plain scalar implementation (per-row softmax with
//! f32 `exp`) and against the memory traffic it cannot avoid, and the SIMD exp against `f32::exp`.
//! Throughput in logits per second.

mod common;

use common::sum_lanes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::distill::{kd_loss_on, KdParams};
use greenai::kernels::{math, Isa};

/// Straightforward KD loss and gradient (batch mean): per row, three softmaxes with `f32::exp`.
fn plain_kd(
    s: &[f32],
    t: &[f32],
    labels: &[i32],
    classes: usize,
    temperature: f32,
    alpha: f32,
    grad: &mut [f32],
) -> f32 {
    let batch = s.len() / classes;
    let softmax = |x: &[f32], scale: f32, out: &mut Vec<f32>| {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        out.clear();
        out.extend(x.iter().map(|&v| ((v - max) * scale).exp()));
        let sum: f32 = out.iter().sum();
        out.iter_mut().for_each(|v| *v /= sum);
    };
    let (mut ps, mut pt, mut p1) = (Vec::new(), Vec::new(), Vec::new());
    let mut total = 0.0f32;
    for (r, &label) in labels.iter().enumerate().take(batch) {
        let row = r * classes..(r + 1) * classes;
        softmax(&s[row.clone()], 1.0 / temperature, &mut ps);
        softmax(&t[row.clone()], 1.0 / temperature, &mut pt);
        softmax(&s[row.clone()], 1.0, &mut p1);
        let kl: f32 = pt.iter().zip(&ps).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p.ln() - q.ln())).sum();
        let y = label as usize;
        total += alpha * temperature * temperature * kl - (1.0 - alpha) * p1[y].ln();
        for (i, g) in grad[row].iter_mut().enumerate() {
            let onehot = if i == y { 1.0 } else { 0.0 };
            *g = (alpha * temperature * (ps[i] - pt[i]) + (1.0 - alpha) * (p1[i] - onehot)) / batch as f32;
        }
    }
    total / batch as f32
}

/// `grad = s - t`, written with non-temporal stores where the target has them, as the fused pass
/// writes a gradient larger than the caches.
fn write_difference(s: &[f32], t: &[f32], grad: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_sfence, _mm_stream_ps, _mm_sub_ps};
        let head = grad.as_ptr().align_offset(16).min(grad.len());
        let body = head + (grad.len() - head) / 4 * 4;
        for ((g, a), b) in grad[..head].iter_mut().zip(s).zip(t) {
            *g = a - b;
        }
        for i in (head..body).step_by(4) {
            // SAFETY: i + 4 <= body <= the length of all three slices; grad + i is 16-byte aligned
            // (head above); SSE is part of every x86_64 target.
            unsafe {
                let v = _mm_sub_ps(_mm_loadu_ps(s.as_ptr().add(i)), _mm_loadu_ps(t.as_ptr().add(i)));
                _mm_stream_ps(grad.as_mut_ptr().add(i), v);
            }
        }
        for ((g, a), b) in grad[body..].iter_mut().zip(&s[body..]).zip(&t[body..]) {
            *g = a - b;
        }
        // SAFETY: SSE is part of every x86_64 target.
        unsafe { _mm_sfence() };
    }
    #[cfg(not(target_arch = "x86_64"))]
    for ((g, a), b) in grad.iter_mut().zip(s).zip(t) {
        *g = a - b;
    }
}

/// The memory traffic a KD pass cannot avoid when nothing may be written before every logit is
/// checked: both logit arrays read twice, the gradient written once. No exponential: its time is
/// the floor the memory system sets for the fused pass on this machine.
fn memory_floor(s: &[f32], t: &[f32], grad: &mut [f32]) -> f32 {
    let checked = sum_lanes(s) + sum_lanes(t);
    write_difference(s, t, grad);
    checked
}

fn logits(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

fn bench_kd(c: &mut Criterion) {
    // 512 x 32000: the shape, 65 MB per operand, so from DRAM. 32 x 32000: 4 MB per
    // operand, 12 MB in all, beyond the ~8 MB of last-level cache a core of this VM gets in
    // practice. 4 x 32000: 1.5 MB in all, in the last-level cache. 64 x 4000: rows of 16 KB, so
    // each row's passes run in L1 and L2 and this one measures the arithmetic.
    for (batch, classes) in [(512, 32000), (32, 32000), (4, 32000), (64, 4000)] {
        bench_kd_shape(c, batch, classes);
    }
}

fn bench_kd_shape(c: &mut Criterion, batch: usize, classes: usize) {
    let s = logits(batch * classes, 1, 20.0);
    let t = logits(batch * classes, 2, 20.0);
    let labels: Vec<i32> = (0..batch).map(|r| (r * 7919 % classes) as i32).collect();
    let mut grad = vec![0.0f32; batch * classes];
    let params = KdParams::new(2.0, 0.5);
    let mut group = c.benchmark_group("kd_loss_grad");
    group.sample_size(10).throughput(Throughput::Elements((batch * classes) as u64));
    let id = format!("{batch}x{classes}");
    for isa in Isa::available().into_iter().filter(|&isa| isa != Isa::Scalar) {
        group.bench_function(BenchmarkId::new(format!("fused_{isa}"), &id), |b| {
            b.iter(|| {
                kd_loss_on(isa, &s, &t, Some(&labels), batch, classes, &params, Some(&mut grad)).unwrap()
            })
        });
    }
    group.bench_function(BenchmarkId::new("plain_scalar", &id), |b| {
        b.iter(|| plain_kd(black_box(&s), &t, &labels, classes, 2.0, 0.5, &mut grad))
    });
    group.bench_function(BenchmarkId::new("memory_floor", &id), |b| {
        b.iter(|| memory_floor(black_box(&s), &t, &mut grad))
    });
    group.finish();
}

fn bench_exp(c: &mut Criterion) {
    let n = 1 << 16;
    let x = logits(n, 3, 60.0);
    let mut y = vec![0.0f32; n];
    let mut group = c.benchmark_group("exp");
    group.throughput(Throughput::Elements(n as u64));
    for isa in Isa::available() {
        group.bench_function(BenchmarkId::new(format!("greenai_{isa}"), n), |b| {
            b.iter(|| math::exp_on(isa, black_box(&x), &mut y).unwrap())
        });
    }
    group.bench_function(BenchmarkId::new("std_f32_exp", n), |b| {
        b.iter(|| black_box(&x).iter().zip(y.iter_mut()).for_each(|(&v, o)| *o = v.exp()))
    });
    group.finish();
}

criterion_group!(benches, bench_kd, bench_exp);
criterion_main!(benches);
