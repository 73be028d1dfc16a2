//! Calibration throughput: observers against the floor of one min/max pass over the same data.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use greenai::quant::{Calibration, Mode, Observer, QType, QuantSpec};

fn data(n: usize) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            (-u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()) as f32
        })
        .collect()
}

fn calibrate(c: &mut Criterion) {
    let n = 1 << 20;
    let x = data(n);
    let spec = QuantSpec::new(QType::I8, Mode::Symmetric);
    let mut group = c.benchmark_group("calibrate_1M_f32");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("peer_min_max_fold", |b| {
        b.iter(|| {
            black_box(&x)
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        })
    });
    for (name, method) in
        [("observe_min_max", Calibration::MinMax), ("observe_histogram", Calibration::Entropy)]
    {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut obs = Observer::new(method, spec).unwrap();
                obs.observe(black_box(&x), &[n]).unwrap();
                obs
            })
        });
    }
    for (name, method) in [("params_entropy", Calibration::Entropy), ("params_mse", Calibration::Mse)] {
        let mut obs = Observer::new(method, spec).unwrap();
        obs.observe(&x, &[n]).unwrap();
        group.bench_function(name, |b| b.iter(|| black_box(&obs).params().unwrap()));
    }
    group.finish();
}

criterion_group!(benches, calibrate);
criterion_main!(benches);
