//! The high-level quantizer (`QTensor::quantize_min_max`: one pass for the range, one for the values)
//! beside the kernel path for the same job on a 2048^2 f32 tensor, one group per preset.
//!
//! Rows: `kernel_one_pass` is `kernels::convert::quantize_i8` with a known scale (one pass, the
//! ceiling); `kernel_range_then_values` is what a user writes from the kernels alone for the preset's
//! granularity (`min_max_finite` per group, then `quantize_i8`/`quantize_u8` per group); `qtensor` is
//! the high-level call. For blocks along axis 0 no public kernel takes a scale per element, so their
//! kernel row does one group per row: 64 times fewer groups, bytes instead of nibbles, a lower bound
//! on the work. Run with `RAYON_NUM_THREADS=1`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::convert::{min_max_finite, quantize_i8, quantize_u8};
use greenai::quant::{Granularity, Mode, Preset, QTensor, QType, QuantSpec};
use greenai::Tensor;

const N: usize = 2048;

fn data(n: usize) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

/// The kernel-only path: per row (axis 0, or the whole tensor) a range pass and a value pass.
fn kernel_path(x: &[f32], rows: usize, signed: bool, yi: &mut [i8], yu: &mut [u8]) {
    let cols = x.len() / rows;
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let (lo, hi, _) = min_max_finite(row);
        if signed {
            let scale = (hi.max(-lo) / 127.0).max(f32::MIN_POSITIVE);
            quantize_i8(row, scale, 0, &mut yi[r * cols..(r + 1) * cols]).unwrap();
        } else {
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let scale = ((hi - lo) / 255.0).max(f32::MIN_POSITIVE);
            let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
            quantize_u8(row, scale, zp, &mut yu[r * cols..(r + 1) * cols]).unwrap();
        }
    }
}

fn quantize(c: &mut Criterion) {
    let x = Tensor::from_vec([N, N], data(N * N)).unwrap();
    let mut yi = vec![0i8; N * N];
    let mut yu = vec![0u8; N * N];
    let per_axis = Granularity::PerAxis { axis: 0 };
    let mut cases: Vec<(String, QuantSpec)> =
        Preset::ALL.iter().map(|p| (format!("{p:?}"), QuantSpec::preset(*p))).collect();
    cases.push(("I8SymmetricPerTensor".into(), QuantSpec::new(QType::I8, Mode::Symmetric)));
    cases.push((
        "U8AffinePerChannel".into(),
        QuantSpec::new(QType::U8, Mode::Affine).with_granularity(per_axis),
    ));
    cases.push((
        "I4SymmetricPerChannel".into(),
        QuantSpec::new(QType::I4, Mode::Symmetric).with_granularity(per_axis),
    ));
    cases.push(("U4AffinePerTensor".into(), QuantSpec::new(QType::U4, Mode::Affine)));
    for (name, spec) in cases {
        let mut group = c.benchmark_group(format!("quantize_2048x2048/{name}"));
        group.throughput(Throughput::Elements((N * N) as u64));
        let rows = if spec.granularity == Granularity::PerTensor { 1 } else { N };
        let signed = spec.qtype.is_signed();
        group.bench_function("kernel_one_pass", |b| {
            b.iter(|| quantize_i8(black_box(x.as_slice()), 0.001, 0, &mut yi).unwrap())
        });
        group.bench_function(BenchmarkId::new("kernel_range_then_values", rows), |b| {
            b.iter(|| kernel_path(black_box(x.as_slice()), rows, signed, &mut yi, &mut yu))
        });
        group.bench_function("qtensor", |b| {
            b.iter(|| QTensor::quantize_min_max(black_box(&x), spec).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, quantize);
criterion_main!(benches);
