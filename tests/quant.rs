//! The quantizer: float casts against `half`, quantize/dequantize properties, conventions against their
//! formulas computed here independently, calibration order independence, heavy-tailed calibration,
//! fake quantization, and bad input.

use greenai::kernels::{convert, Isa};
use greenai::quant::{
    self, Calibration, Convention, Granularity, Mode, Observer, Preset, QSliceMut, QTensor, QType,
    QuantParams, QuantSpec, Rounding, ScaleType,
};
use greenai::{Error, Tensor};
use half::{bf16, f16};
use proptest::prelude::*;

/// A small deterministic generator (xorshift64*), so that data do not depend on the code under test.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn laplace(&mut self, b: f64) -> f64 {
        let u = self.uniform() - 0.5;
        -b * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()
    }
}

// ---------------------------------------------------------------------------------------------
// Float casts: identical to `half` on every f16/bf16 pattern and on random f32, on every path.

#[test]
fn f16_and_bf16_casts_match_half_on_every_pattern() {
    let patterns: Vec<u16> = (0..=u16::MAX).collect();
    for isa in Isa::available() {
        let h: Vec<f16> = patterns.iter().map(|&b| f16::from_bits(b)).collect();
        let mut wide = vec![0f32; h.len()];
        convert::f16_to_f32_on(isa, &h, &mut wide).unwrap();
        let mut narrow = vec![f16::ZERO; h.len()];
        convert::f32_to_f16_on(isa, &wide, &mut narrow).unwrap();
        for (i, &b) in patterns.iter().enumerate() {
            let reference = f16::from_bits(b).to_f32();
            assert_eq!(wide[i].to_bits(), reference.to_bits(), "{isa:?} f16 {b:#06x} -> f32");
            assert_eq!(
                narrow[i].to_bits(),
                f16::from_f32(reference).to_bits(),
                "{isa:?} f16 {b:#06x} round trip"
            );
        }
        // Midpoints between neighbouring f16 values: exact ties, rounded to even.
        let mids: Vec<f32> = patterns[..0x7BFF]
            .iter()
            .map(|&b| {
                ((f64::from(f16::from_bits(b).to_f32()) + f64::from(f16::from_bits(b + 1).to_f32())) / 2.0)
                    as f32
            })
            .collect();
        let mut out = vec![f16::ZERO; mids.len()];
        convert::f32_to_f16_on(isa, &mids, &mut out).unwrap();
        for (m, o) in mids.iter().zip(&out) {
            assert_eq!(o.to_bits(), f16::from_f32(*m).to_bits(), "{isa:?} tie {m:e}");
        }
        let b16: Vec<bf16> = patterns.iter().map(|&b| bf16::from_bits(b)).collect();
        convert::bf16_to_f32_on(isa, &b16, &mut wide).unwrap();
        let mut back = vec![bf16::ZERO; b16.len()];
        convert::f32_to_bf16_on(isa, &wide, &mut back).unwrap();
        for (i, &b) in patterns.iter().enumerate() {
            let reference = bf16::from_bits(b).to_f32();
            assert_eq!(wide[i].to_bits(), reference.to_bits(), "{isa:?} bf16 {b:#06x} -> f32");
            assert_eq!(
                back[i].to_bits(),
                bf16::from_f32(reference).to_bits(),
                "{isa:?} bf16 {b:#06x} round trip"
            );
        }
    }
}

#[test]
fn f32_casts_match_half_on_random_bits() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let x: Vec<f32> = (0..1 << 18).map(|_| f32::from_bits(rng.next_u64() as u32)).collect();
    for isa in Isa::available() {
        let mut h = vec![f16::ZERO; x.len()];
        let mut b = vec![bf16::ZERO; x.len()];
        convert::f32_to_f16_on(isa, &x, &mut h).unwrap();
        convert::f32_to_bf16_on(isa, &x, &mut b).unwrap();
        for i in 0..x.len() {
            assert_eq!(
                h[i].to_bits(),
                f16::from_f32(x[i]).to_bits(),
                "{isa:?} f16 of {:#010x}",
                x[i].to_bits()
            );
            assert_eq!(
                b[i].to_bits(),
                bf16::from_f32(x[i]).to_bits(),
                "{isa:?} bf16 of {:#010x}",
                x[i].to_bits()
            );
        }
    }
    // The tensor helpers go through the same kernels.
    let t = Tensor::from_vec([4], vec![1.0f32, 65520.0, -0.0, 1e-8]).unwrap();
    let h = quant::float::to_f16(&t).unwrap();
    assert_eq!(
        h.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        [0x3C00, 0x7C00, 0x8000, 0x0000]
    );
    assert_eq!(quant::float::from_f16(&h).unwrap().as_slice()[0], 1.0);
    assert_eq!(quant::float::from_bf16(&quant::float::to_bf16(&t).unwrap()).unwrap().as_slice()[0], 1.0);
}

// ---------------------------------------------------------------------------------------------
// Conventions: parameters against the published formulas, recomputed here.

#[test]
fn onnx_runtime_parameters() {
    let spec = QuantSpec::preset(Preset::OnnxActivationU8);
    // rmin = -1, rmax = 3: scale = 4 / 255 in f64, zero point round(0 + 1 / scale) = round(63.75) = 64.
    let (s, z) = spec.params_for_range(-1.0, 3.0).unwrap();
    assert_eq!((s, z), ((4.0f64 / 255.0) as f32, 64));
    // Positive-only range still includes zero.
    let (s, z) = spec.params_for_range(2.0, 5.0).unwrap();
    assert_eq!((s, z), ((5.0f64 / 255.0) as f32, 0));
    // A scale below f32's smallest normal becomes 1 with zero point 0.
    assert_eq!(spec.params_for_range(0.0, 0.0).unwrap(), (1.0, 0));
    assert_eq!(spec.params_for_range(-1e-37, 1e-37).unwrap(), (1.0, 0));
    // Symmetric i8 on [-127, 127]: scale = 2 * 3 / 254, zero point (127 - 127) / 2 = 0.
    let w = QuantSpec::preset(Preset::OnnxWeightI8);
    assert_eq!(w.qrange(), (-127, 127));
    assert_eq!(w.params_for_range(-1.0, 3.0).unwrap(), ((6.0f64 / 254.0) as f32, 0));
    // Symmetric u8 keeps [0, 255]: zero point round_half_even(127.5) = 128.
    let su = QuantSpec::new(QType::U8, Mode::Symmetric);
    assert_eq!(su.params_for_range(-2.0, 1.0).unwrap(), ((4.0f64 / 255.0) as f32, 128));
    // Reduced range: ONNX Runtime's table.
    let r = QuantSpec { reduced_range: true, ..QuantSpec::new(QType::I8, Mode::Affine) };
    assert_eq!(r.qrange(), (-64, 64));
    let r4 = QuantSpec { reduced_range: true, ..QuantSpec::new(QType::I4, Mode::Affine) };
    assert_eq!(r4.qrange(), (-4, 3));
    let ru = QuantSpec { reduced_range: true, ..QuantSpec::new(QType::U8, Mode::Affine) };
    assert_eq!(ru.qrange(), (0, 127));
}

#[test]
fn narrow_and_reduced_ranges_saturate_at_their_own_bounds() {
    // Long per-channel runs (the SIMD kernel path) with ties and values far outside the range; each
    // element against `clamp(round_half_even(x / s in f32) + z)` computed here, on the bounds ONNX
    // Runtime documents.
    let cases = [
        (QType::I8, true, false, (-127i64, 127i64), [0i32, 3]),
        (QType::I8, false, true, (-64, 64), [0, -2]),
        (QType::U8, false, true, (0, 127), [5, 60]),
    ];
    let mut rng = Rng(0x5EED);
    for (qtype, narrow_range, reduced_range, (qmin, qmax), zero_points) in cases {
        let spec = QuantSpec { narrow_range, reduced_range, ..QuantSpec::new(qtype, Mode::Affine) }
            .with_granularity(Granularity::PerAxis { axis: 0 });
        let scales = [0.5f32, 3.0];
        let cols = 70;
        let x: Vec<f32> = (0..2 * cols)
            .map(|i| match i % 5 {
                0 => (i as f32 - 70.0) * 0.25, // multiples of 1/4: exact ties at scale 0.5
                1 => 1e4,
                2 => -1e4,
                _ => (rng.uniform() as f32 - 0.5) * 900.0,
            })
            .collect();
        let params = QuantParams::new(spec, vec![2], scales.to_vec(), zero_points.to_vec()).unwrap();
        let q = QTensor::quantize(&Tensor::from_vec(vec![2, cols], x.clone()).unwrap(), params).unwrap();
        let got = q.values().unwrap();
        for (i, (&v, &g)) in x.iter().zip(&got).enumerate() {
            let c = i / cols;
            let t = f64::from((v / scales[c]).round_ties_even());
            let want = (t as i64 + i64::from(zero_points[c])).clamp(qmin, qmax);
            assert_eq!(
                i64::from(g),
                want,
                "{qtype:?} narrow={narrow_range} reduced={reduced_range} x[{i}]={v}"
            );
        }
    }
}

#[test]
fn pytorch_parameters() {
    let spec = QuantSpec::preset(Preset::PyTorchActivationU8);
    // f32: scale = 4 / 255, zero point = 0 - round(-1 / scale) = 64.
    let scale = 4.0f32 / 255.0;
    let (s, z) = spec.params_for_range(-1.0, 3.0).unwrap();
    assert_eq!((s, z), (scale, -((-1.0f32 / scale).round_ties_even() as i32)));
    assert_eq!(z, 64);
    // eps floor.
    assert_eq!(spec.params_for_range(0.0, 0.0).unwrap(), (f32::EPSILON, 0));
    // Symmetric qint8 per channel: scale = max|x| / ((127 - -128) / 2) = max|x| / 127.5, zero point 0.
    let w = QuantSpec::preset(Preset::PyTorchWeightI8PerChannel);
    assert_eq!(w.params_for_range(-2.0, 1.0).unwrap(), (2.0f32 / 127.5, 0));
    // Symmetric quint8: zero point 128.
    let su = QuantSpec { mode: Mode::Symmetric, ..spec };
    assert_eq!(su.params_for_range(-2.0, 1.0).unwrap().1, 128);
    // Reduced range: qint8 [-64, 63], quint8 [0, 127].
    assert_eq!(QuantSpec { reduced_range: true, ..w }.qrange(), (-64, 63));
    assert_eq!(QuantSpec { reduced_range: true, ..spec }.qrange(), (0, 127));
    // Quantize multiplies by the reciprocal: a case (found by a numpy search) where that rounds
    // differently from the division.
    let x = 6.3927517f32;
    let s = 0.2841223f32;
    assert_ne!(
        (x * (1.0 / s)).round_ties_even(),
        (x / s).round_ties_even(),
        "a case that tells the two apart"
    );
    let torch = QuantParams::new(
        QuantSpec { narrow_range: false, ..w }.with_granularity(Granularity::PerTensor),
        vec![],
        vec![s],
        vec![0],
    )
    .unwrap();
    let onnx = QuantParams::new(QuantSpec::new(QType::I8, Mode::Affine), vec![], vec![s], vec![0]).unwrap();
    let t = Tensor::from_vec([1], vec![x]).unwrap();
    assert_eq!(
        QTensor::quantize(&t, torch).unwrap().values().unwrap(),
        [(x * (1.0 / s)).round_ties_even() as i32]
    );
    assert_eq!(QTensor::quantize(&t, onnx).unwrap().values().unwrap(), [(x / s).round_ties_even() as i32]);
}

#[test]
fn tflite_parameters_and_ties_away() {
    let spec = QuantSpec::preset(Preset::TfLiteActivationI8);
    // scale = 4 / 255, zero point = round_away(-128 - (-1) / scale) = round(-64.25) = -64.
    let scale = 4.0f32 / 255.0;
    let (s, z) = spec.params_for_range(-1.0, 3.0).unwrap();
    assert_eq!((s, z), (scale, (-128.0f32 - (-1.0) / scale).round() as i32));
    let w = QuantSpec::preset(Preset::TfLiteWeightI8PerChannel);
    assert_eq!(w.qrange(), (-127, 127));
    assert_eq!(w.params_for_range(-2.0, 1.0).unwrap(), (2.0 / 127.0, 0));
    // Ties away from zero: 2.5 -> 3, -2.5 -> -3 (half-even would give 2 and -2).
    let params =
        QuantParams::new(w.with_granularity(Granularity::PerTensor), vec![], vec![0.5], vec![0]).unwrap();
    let t = Tensor::from_vec([4], vec![1.25f32, -1.25, 0.25, 100.0]).unwrap();
    assert_eq!(QTensor::quantize(&t, params).unwrap().values().unwrap(), [3, -3, 1, 127]);
}

#[test]
fn f16_scales_are_f16_values() {
    let spec = QuantSpec { scale_type: ScaleType::F16, ..QuantSpec::new(QType::U8, Mode::Affine) };
    let (s, _) = spec.params_for_range(-1.0, 3.0).unwrap();
    assert_eq!(f16::from_f32(s).to_f32(), s);
    assert_eq!(s, f16::from_f64(4.0 / 255.0).to_f32());
    // A scale that is not an f16 value is refused for an f16 spec.
    assert!(QuantParams::new(spec, vec![], vec![0.1], vec![0]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Granularity and 4-bit packing.

#[test]
fn per_block_uses_a_short_last_block_and_packs_low_nibble_first() {
    // [2, 5] in blocks of 2 along axis 1: parameter shape [2, 3], the third block holds one column.
    let spec = QuantSpec::new(QType::I4, Mode::Symmetric)
        .with_granularity(Granularity::PerBlock { axis: 1, block: 2 });
    let x = Tensor::from_vec([2, 5], vec![1.0f32, -2.0, 3.0, 0.5, 7.0, 0.0, 0.0, -4.0, 1.0, -1.0]).unwrap();
    let q = QTensor::quantize_min_max(&x, spec).unwrap();
    assert_eq!(q.params().shape(), &[2, 3]);
    // Symmetric int4 on [-8, 7]: scale = 2 max|x| / 15 per block.
    let expect_scales: Vec<f32> = [2.0f64, 3.0, 7.0, 0.0, 4.0, 1.0]
        .iter()
        .map(|&m| if m == 0.0 { 1.0 } else { (2.0 * m / 15.0) as f32 })
        .collect();
    assert_eq!(q.params().scales(), expect_scales.as_slice());
    let values = q.values().unwrap();
    for (i, &v) in values.iter().enumerate() {
        let s = expect_scales[(i / 5) * 3 + (i % 5) / 2];
        let reference = (f64::from(x.as_slice()[i]) / f64::from(s)).round_ties_even().clamp(-8.0, 7.0) as i32;
        assert_eq!(v, reference, "element {i}");
    }
    let bytes = q.data().as_bytes();
    assert_eq!(bytes.len(), 5);
    assert_eq!(i32::from(bytes[0] & 0x0F), values[0] & 0x0F);
    assert_eq!(i32::from(bytes[0] >> 4), values[1] & 0x0F);
    let back = q.dequantize().unwrap();
    for (i, (&a, &b)) in x.as_slice().iter().zip(back.as_slice()).enumerate() {
        let s = expect_scales[(i / 5) * 3 + (i % 5) / 2];
        assert!((a - b).abs() <= s / 2.0 + 1e-6, "{i}: {a} vs {b}");
    }
}

#[test]
fn per_block_along_a_leading_axis() {
    // [5, 2] in blocks of 2 along axis 0: parameter shape [3, 2]; element (r, c) uses (r / 2, c).
    let spec =
        QuantSpec::new(QType::U8, Mode::Affine).with_granularity(Granularity::PerBlock { axis: 0, block: 2 });
    let data: Vec<f32> = (0..10).map(|i| (i as f32 - 4.5) * 1.5).collect();
    let x = Tensor::from_vec([5, 2], data.clone()).unwrap();
    let q = QTensor::quantize_min_max(&x, spec).unwrap();
    assert_eq!(q.params().shape(), &[3, 2]);
    let (s, z) = (q.params().scales(), q.params().zero_points());
    for (i, &v) in q.values().unwrap().iter().enumerate() {
        let g = (i / 2 / 2) * 2 + i % 2;
        let reference = ((data[i] / s[g]).round_ties_even() as i32 + z[g]).clamp(0, 255);
        assert_eq!(v, reference);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

fn qtypes() -> impl Strategy<Value = QType> {
    prop::sample::select(QType::ALL.to_vec())
}

fn conventions() -> impl Strategy<Value = Convention> {
    prop::sample::select(vec![Convention::Onnx, Convention::PyTorch, Convention::TfLite])
}

fn specs() -> impl Strategy<Value = QuantSpec> {
    (qtypes(), any::<bool>(), any::<bool>(), conventions(), 0usize..3, 1usize..5, any::<bool>()).prop_map(
        |(qtype, symmetric, narrow, convention, g, block, away)| {
            let granularity = match g {
                0 => Granularity::PerTensor,
                1 => Granularity::PerAxis { axis: 1 },
                _ => Granularity::PerBlock { axis: 1, block },
            };
            QuantSpec {
                qtype,
                mode: if symmetric { Mode::Symmetric } else { Mode::Affine },
                narrow_range: narrow,
                reduced_range: false,
                granularity,
                rounding: if away { Rounding::HalfAway } else { Rounding::HalfEven },
                scale_type: ScaleType::F32,
                convention,
            }
        },
    )
}

fn tensors() -> impl Strategy<Value = Tensor<f32>> {
    (1usize..4, 1usize..7).prop_flat_map(|(r, c)| {
        prop::collection::vec(-100.0f32..100.0, r * c).prop_map(move |v| Tensor::from_vec([r, c], v).unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_error_is_at_most_half_a_step(spec in specs(), x in tensors()) {
        let q = QTensor::quantize_min_max(&x, spec).unwrap();
        let back = q.dequantize().unwrap();
        let (qmin, qmax) = spec.qrange();
        let p = q.params();
        let layout_shape = p.shape().to_vec();
        for (i, (&a, &b)) in x.as_slice().iter().zip(back.as_slice()).enumerate() {
            let (r, c) = (i / x.shape()[1], i % x.shape()[1]);
            let g = match spec.granularity {
                Granularity::PerTensor => 0,
                Granularity::PerAxis { .. } => c,
                Granularity::PerBlock { block, .. } => r * layout_shape[1] + c / block,
            };
            let (s, z) = (f64::from(p.scales()[g]), f64::from(p.zero_points()[g]));
            let a64 = f64::from(a);
            // Inside the representable range only (symmetric and narrow ranges may clip the other end).
            if a64 >= (f64::from(qmin) - z) * s && a64 <= (f64::from(qmax) - z) * s {
                let err = (a64 - f64::from(b)).abs();
                let tolerance = s / 2.0 + 4.0 * f64::from(f32::EPSILON) * a64.abs().max(s);
                prop_assert!(err <= tolerance, "x[{}] = {} -> {}: error {} > {} (scale {})", i, a, b, err, tolerance, s);
            }
        }
    }

    #[test]
    fn quantize_is_monotonic(spec in specs(), mut v in prop::collection::vec(-1e4f32..1e4, 1..80), scale in 1e-3f32..10.0, z in -3i32..4) {
        v.sort_by(f32::total_cmp);
        let spec = spec.with_granularity(Granularity::PerTensor);
        let (lo, hi) = spec.qtype.range();
        let zp = (if spec.qtype.is_signed() { 0 } else { (hi + 1) / 2 } + z).clamp(lo, hi);
        let params = QuantParams::new(spec, vec![], vec![scale], vec![zp]).unwrap();
        let x = Tensor::from_vec([v.len()], v).unwrap();
        let q = QTensor::quantize(&x, params).unwrap().values().unwrap();
        prop_assert!(q.windows(2).all(|w| w[0] <= w[1]), "{:?}", q);
    }

    #[test]
    fn quantizing_a_dequantized_tensor_gives_it_back(spec in specs(), seed in any::<u64>(), scale in 1e-4f32..100.0) {
        let spec = spec.with_granularity(Granularity::PerTensor);
        let (qmin, qmax) = spec.qrange();
        let (lo, hi) = spec.qtype.range();
        let mut rng = Rng(seed | 1);
        let zp = lo + (rng.next_u64() % (hi - lo + 1) as u64) as i32;
        let values: Vec<i32> = (0..50).map(|_| qmin + (rng.next_u64() % (qmax - qmin + 1) as u64) as i32).collect();
        let params = QuantParams::new(spec, vec![], vec![scale], vec![zp]).unwrap();
        // Dequantize by the definition, then quantize with the library.
        let x: Vec<f32> = values.iter().map(|&q| (q - zp) as f32 * scale).collect();
        let t = Tensor::from_vec([x.len()], x).unwrap();
        let q = QTensor::quantize(&t, params.clone()).unwrap();
        prop_assert_eq!(q.values().unwrap(), values);
        let back = q.dequantize().unwrap();
        prop_assert_eq!(back.as_slice(), t.as_slice());
    }

    #[test]
    fn calibration_ignores_batch_order_and_split(
        seed in any::<u64>(),
        method in 0usize..4,
        per_axis in any::<bool>(),
        cuts in prop::collection::vec(0usize..40, 0..5),
        workers in 1usize..4,
    ) {
        let method = [Calibration::MinMax, Calibration::Percentile { percentile: 99.0 }, Calibration::Entropy, Calibration::Mse][method];
        let granularity = if per_axis { Granularity::PerAxis { axis: 1 } } else { Granularity::PerTensor };
        let spec = QuantSpec::new(QType::I8, Mode::Symmetric).with_granularity(granularity);
        // 40 rows of 3 channels; channel scales differ by powers of ten.
        let mut rng = Rng(seed | 1);
        let rows: Vec<[f32; 3]> = (0..40).map(|_| [rng.laplace(0.5) as f32, rng.laplace(5.0) as f32, rng.laplace(0.01) as f32 + 0.2]).collect();
        let whole: Vec<f32> = rows.iter().flatten().copied().collect();
        let mut reference = Observer::new(method, spec).unwrap();
        reference.observe(&whole, &[40, 3]).unwrap();
        // Split into batches at the cuts, shuffle their order, deal them to several observers, merge.
        let mut bounds: Vec<usize> = cuts.clone();
        bounds.extend([0, 40]);
        bounds.sort();
        bounds.dedup();
        let mut batches: Vec<Vec<f32>> = bounds.windows(2).map(|w| rows[w[0]..w[1]].iter().flatten().copied().collect()).collect();
        for i in (1..batches.len()).rev() {
            batches.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut observers = vec![Observer::new(method, spec).unwrap(); workers];
        for (i, b) in batches.iter().enumerate() {
            observers[i % workers].observe(b, &[b.len() / 3, 3]).unwrap();
        }
        let mut merged = observers.pop().unwrap();
        for o in observers.iter().rev() {
            merged.merge(o).unwrap();
        }
        prop_assert_eq!(merged.params().unwrap(), reference.params().unwrap());
    }
}

#[test]
fn stochastic_rounding_is_unbiased_and_reproducible() {
    let spec =
        QuantSpec { rounding: Rounding::Stochastic { seed: 7 }, ..QuantSpec::new(QType::I8, Mode::Affine) };
    let params = QuantParams::new(spec, vec![], vec![1.0], vec![0]).unwrap();
    let x = Tensor::from_vec([20000], vec![0.3f32; 20000]).unwrap();
    let a = QTensor::quantize(&x, params.clone()).unwrap().values().unwrap();
    assert!(a.iter().all(|&v| v == 0 || v == 1));
    let mean = a.iter().sum::<i32>() as f64 / a.len() as f64;
    // Binomial(20000, 0.3): standard deviation of the mean 0.0032; 5 sigma.
    assert!((mean - 0.3).abs() < 0.017, "mean {mean}");
    assert_eq!(QTensor::quantize(&x, params).unwrap().values().unwrap(), a);
    let other = QuantSpec { rounding: Rounding::Stochastic { seed: 8 }, ..spec };
    let b = QTensor::quantize(&x, QuantParams::new(other, vec![], vec![1.0], vec![0]).unwrap()).unwrap();
    assert_ne!(b.values().unwrap(), a);
}

// ---------------------------------------------------------------------------------------------
// Calibration on heavy-tailed data.

fn sqnr_with(method: Calibration, qtype: QType, data: &[f32]) -> f64 {
    let spec = QuantSpec::new(qtype, Mode::Symmetric);
    let mut obs = Observer::new(method, spec).unwrap();
    for batch in data.chunks(4096) {
        obs.observe(batch, &[batch.len()]).unwrap();
    }
    let x = Tensor::from_vec([data.len()], data.to_vec()).unwrap();
    let q = QTensor::quantize(&x, obs.params().unwrap()).unwrap();
    quant::error_metrics(data, q.dequantize().unwrap().as_slice()).unwrap().sqnr_db
}

/// Laplace(1) samples with a few large outliers spread through them.
fn heavy_tailed(n: usize, outliers: &[f32]) -> Vec<f32> {
    let mut rng = Rng(42);
    let mut data: Vec<f32> = (0..n).map(|_| rng.laplace(1.0) as f32).collect();
    for (i, &v) in outliers.iter().enumerate() {
        data[(i * 7919 + 13) % n] = v;
    }
    data
}

#[test]
fn entropy_and_mse_beat_min_max_on_heavy_tails() {
    // Clipping an outlier costs (o - t)^2 while min-max spreads (max / qmax)^2 / 12 of noise over every
    // element, so the gain needs enough data per outlier: 4-bit weights show it on 20k values, 8-bit on 2M.
    for (qtype, n, outliers) in [
        (QType::I4, 20_000, vec![40.0f32, -55.0, 70.0, -35.0, 60.0]),
        (QType::I8, 1 << 21, vec![300.0f32, -250.0]),
    ] {
        let data = heavy_tailed(n, &outliers);
        let min_max = sqnr_with(Calibration::MinMax, qtype, &data);
        let entropy = sqnr_with(Calibration::Entropy, qtype, &data);
        let mse = sqnr_with(Calibration::Mse, qtype, &data);
        let pct = sqnr_with(Calibration::Percentile { percentile: 99.99 }, qtype, &data);
        println!(
            "{qtype:?} symmetric, Laplace(1) x {n} + {} outliers: SQNR min-max {min_max:.2} dB, entropy {entropy:.2} dB \
             ({:+.2}), MSE {mse:.2} dB ({:+.2}), percentile 99.99 {pct:.2} dB ({:+.2})",
            outliers.len(),
            entropy - min_max,
            mse - min_max,
            pct - min_max
        );
        assert!(mse > min_max + 1.0, "{qtype:?}: MSE {mse} vs min-max {min_max}");
        assert!(entropy > min_max, "{qtype:?}: entropy {entropy} vs min-max {min_max}");
    }
}

#[test]
fn moving_average_follows_pytorch() {
    let spec = QuantSpec::new(QType::U8, Mode::Affine);
    let mut obs = Observer::new(Calibration::MovingAverageMinMax { averaging_constant: 0.5 }, spec).unwrap();
    obs.observe(&[-1.0, 1.0], &[2]).unwrap();
    obs.observe(&[-3.0, 5.0], &[2]).unwrap();
    // min = -1 + 0.5 (-3 - -1) = -2; max = 1 + 0.5 (5 - 1) = 3.
    assert_eq!(obs.ranges().unwrap(), (vec![-2.0], vec![3.0]));
    assert!(obs.clone().merge(&obs).is_err());
}

#[test]
fn percentile_and_per_axis_ranges() {
    let spec = QuantSpec::new(QType::U8, Mode::Affine).with_granularity(Granularity::PerAxis { axis: 0 });
    let mut obs = Observer::new(Calibration::Percentile { percentile: 90.0 }, spec).unwrap();
    // Channel 0 holds 0..99 (|x| < 128: grid [-128, 128), bins of 1/16); channel 1 holds -50..49
    // (|x| < 64: bins of 1/32).
    let mut x: Vec<f32> = (0..100).map(|v| v as f32).collect();
    x.extend((0..100).map(|v| v as f32 - 50.0));
    obs.observe(&x, &[2, 100]).unwrap();
    let (lo, hi) = obs.ranges().unwrap();
    // 90th percentile of 0..99 is 89 (its bin's upper edge 89 + 1/16); 10th is 9.
    assert_eq!((lo[0], hi[0]), (9.0, 89.0625));
    assert_eq!((lo[1], hi[1]), (-41.0, 39.03125));
}

// ---------------------------------------------------------------------------------------------
// Fake quantization.

#[test]
fn fake_quant_forward_and_straight_through_gradient() {
    let spec = QuantSpec::new(QType::I8, Mode::Affine);
    let params = QuantParams::new(spec, vec![], vec![0.5], vec![0]).unwrap();
    let x = [0.26f32, -0.75, 63.5, 63.8, 64.0, -64.0, -64.3, 1000.0];
    let mut out = [0f32; 8];
    quant::fake_quantize(&x, &[8], &params, &mut out).unwrap();
    // round(x / 0.5) clamped to [-128, 127], times 0.5.
    assert_eq!(out, [0.5, -1.0, 63.5, 63.5, 63.5, -64.0, -64.0, 63.5]);
    let mut g = [0f32; 8];
    quant::fake_quantize_grad(&x, &[8], &params, &[1.0; 8], &mut g).unwrap();
    // Inside where round(x / 0.5) lies in [-128, 127]: 63.8 -> 128, 64 -> 128, -64.3 -> -129 are outside.
    assert_eq!(g, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    let t = Tensor::from_vec([8], x.to_vec()).unwrap();
    assert_eq!(QTensor::quantize(&t, params.clone()).unwrap().dequantize().unwrap().as_slice(), &out);
    let mut untouched = [9.0f32; 8];
    let mut bad = x;
    bad[3] = f32::NAN;
    assert!(matches!(
        quant::fake_quantize(&bad, &[8], &params, &mut untouched),
        Err(Error::NonFinite { index: 3, .. })
    ));
    assert_eq!(untouched, [9.0; 8]);
}

// ---------------------------------------------------------------------------------------------
// Bad input: clear errors, nothing written.

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let spec = QuantSpec::new(QType::I8, Mode::Affine).with_granularity(Granularity::PerAxis { axis: 1 });
    let params = QuantParams::new(spec, vec![3], vec![1.0, 0.5, 0.25], vec![0, 1, 2]).unwrap();
    let mut x = vec![0.5f32; 6];
    x[4] = f32::NAN;
    let mut y = [7i8; 6];
    let err = quant::quantize_into(&x, &[2, 3], &params, QSliceMut::I8(&mut y)).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index: 4, .. }), "{err}");
    assert!(err.to_string().contains("index 4"));
    assert_eq!(y, [7; 6]);
    // Per tensor through the kernel path too.
    let p1 = QuantParams::new(QuantSpec::new(QType::U8, Mode::Affine), vec![], vec![1.0], vec![0]).unwrap();
    let mut u = [7u8; 6];
    assert!(matches!(
        quant::quantize_into(&x, &[6], &p1, QSliceMut::U8(&mut u)),
        Err(Error::NonFinite { index: 4, .. })
    ));
    assert_eq!(u, [7; 6]);
    let mut long = vec![0.5f32; 40];
    long[33] = f32::NAN;
    let mut u = [7u8; 40];
    assert!(matches!(
        quant::quantize_into(&long, &[40], &p1, QSliceMut::U8(&mut u)),
        Err(Error::NonFinite { index: 33, .. })
    ));
    assert_eq!(u, [7; 40]);

    let base = QuantSpec::new(QType::I8, Mode::Affine);
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY, 1e-40] {
        assert!(
            matches!(QuantParams::new(base, vec![], vec![s], vec![0]), Err(Error::InvalidArgument { .. })),
            "{s}"
        );
    }
    assert!(matches!(
        QuantParams::new(base, vec![], vec![1.0], vec![128]),
        Err(Error::InvalidArgument { .. })
    ));
    let u4 = QuantSpec::new(QType::U4, Mode::Affine);
    assert!(QuantParams::new(u4, vec![], vec![1.0], vec![16]).is_err());
    assert!(QuantParams::new(u4, vec![], vec![1.0], vec![-1]).is_err());
    assert!(matches!(
        QuantParams::new(base, vec![], vec![1.0, 1.0], vec![0, 0]),
        Err(Error::ShapeMismatch { .. })
    ));
    // Axis out of range, block size 0, parameters that do not fit the shape, data that does not fit it.
    let mut y = [7i8; 6];
    let x = [0.5f32; 6];
    assert!(matches!(
        quant::quantize_into(&x, &[6], &params, QSliceMut::I8(&mut y)),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        quant::quantize_into(&x, &[3, 2], &params, QSliceMut::I8(&mut y)),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        quant::quantize_into(&x, &[2, 4], &params, QSliceMut::I8(&mut y)),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut short = [7i8; 5];
    assert!(matches!(
        quant::quantize_into(&x, &[2, 3], &params, QSliceMut::I8(&mut short)),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut wrong = [7u8; 6];
    assert!(quant::quantize_into(&x, &[2, 3], &params, QSliceMut::U8(&mut wrong)).is_err());
    assert_eq!((y, short, wrong), ([7; 6], [7; 5], [7; 6]));
    let block0 = base.with_granularity(Granularity::PerBlock { axis: 0, block: 0 });
    assert!(matches!(QuantParams::from_data(block0, &x, &[6]), Err(Error::InvalidArgument { .. })));
    assert!(QuantParams::new(block0, vec![1], vec![1.0], vec![0]).is_err());
    let bad_axis = base.with_granularity(Granularity::PerAxis { axis: 2 });
    let err = QuantParams::from_data(bad_axis, &x, &[2, 3]).unwrap_err();
    assert!(err.to_string().contains("axis"), "{err}");
    // Observers: NaN and infinity name their index and leave the observer as it was.
    let mut obs = Observer::new(Calibration::Entropy, base).unwrap();
    obs.observe(&[1.0, 2.0], &[2]).unwrap();
    let before = obs.clone();
    assert!(matches!(obs.observe(&[0.0, f32::INFINITY], &[2]), Err(Error::NonFinite { index: 1, .. })));
    assert!(matches!(obs.observe(&[f32::NAN], &[1]), Err(Error::NonFinite { index: 0, .. })));
    assert_eq!(obs, before);
    assert!(Observer::new(
        Calibration::Entropy,
        base.with_granularity(Granularity::PerBlock { axis: 0, block: 4 })
    )
    .is_err());
    assert!(Observer::new(Calibration::Percentile { percentile: 0.0 }, base).is_err());
    // Dynamic quantization refuses NaN and infinity without writing.
    let mut d = [5u8; 3];
    assert!(matches!(
        quant::onnx::dynamic_quantize_linear(&[0.0, 1.0, f32::NAN], &mut d),
        Err(Error::NonFinite { index: 2, .. })
    ));
    assert!(quant::onnx::dynamic_quantize_linear(&[0.0, 1.0, f32::INFINITY], &mut d).is_err());
    assert_eq!(d, [5; 3]);
}

#[test]
fn entropy_threshold_matches_pytorch_quantization() {
    // |x| histograms and the thresholds an independent numpy transcription of pytorch-quantization's
    // `_compute_amax_entropy` chose (tests/data/make_entropy_vectors.py).
    let text = include_str!("data/entropy_vectors.txt");
    let mut cases = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let qtype = if f[0] == "8" { QType::I8 } else { QType::I4 };
        let chosen: usize = f[2].parse().unwrap();
        // Values at bin centres of the grid [0, 1) in 2048 bins (the observer's grid for max |x| in [0.5, 1)).
        let w = 1.0f64 / 2048.0;
        let mut data = Vec::new();
        for pair in f[1].split_whitespace() {
            let (j, c) = pair.split_once(':').unwrap();
            let (j, c): (usize, usize) = (j.parse().unwrap(), c.parse().unwrap());
            data.extend(std::iter::repeat_n(((j as f64 + 0.5) * w) as f32, c));
        }
        let max = data.iter().copied().fold(0.0f32, f32::max);
        let mut obs = Observer::new(Calibration::Entropy, QuantSpec::new(qtype, Mode::Symmetric)).unwrap();
        obs.observe(&data, &[data.len()]).unwrap();
        let (_, hi) = obs.ranges().unwrap();
        assert_eq!(hi[0], ((chosen as f64 * w) as f32).min(max), "{qtype:?}: reference bin {chosen}");
        cases += 1;
    }
    assert_eq!(cases, 4);
}
