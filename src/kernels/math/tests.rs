//! The scalar exp against f64, and every available path against the scalar reference.

use super::*;
use proptest::prelude::*;

/// Distance in f32 ulps between `y` and the exact value `exact`, the ulp being the spacing of
/// f32 at `exact` (2^-149 for subnormals). Infinity must match exactly.
fn ulp_error(y: f32, exact: f64) -> f64 {
    if exact > f64::from(f32::MAX) * (1.0 + f64::EPSILON) {
        // Rounds to infinity unless below MAX + half an ulp.
        let half_ulp_above = f64::from(f32::MAX) + 2f64.powi(103);
        return if (exact >= half_ulp_above) == y.is_infinite() { 0.0 } else { f64::INFINITY };
    }
    if y.is_infinite() {
        return f64::INFINITY;
    }
    let exponent = if exact < 2f64.powi(-126) { -126 } else { exact.log2().floor() as i32 };
    let ulp = 2f64.powi(exponent - 23);
    (f64::from(y) - exact).abs() / ulp
}

/// Inputs across the whole interesting range, both underflow and overflow edges included.
fn exp_inputs() -> Vec<f32> {
    let mut xs: Vec<f32> = Vec::new();
    // Every 301st float between -110 and 90 (about 7 million values).
    let lo = (-110.0f32).to_bits();
    let mut bits = lo;
    while bits > 0x8000_0000 {
        xs.push(f32::from_bits(bits));
        bits = bits.saturating_sub(301);
    }
    let hi = 90.0f32.to_bits();
    let mut bits = 0;
    while bits < hi {
        xs.push(f32::from_bits(bits));
        bits += 301;
    }
    // Dense around the thresholds: underflow to subnormal, to zero, overflow, the fast-path bounds.
    for edge in [-103.972_08f32, -87.336_55, -87.0, 88.0, 88.722_83, 0.0, -104.0, 88.8] {
        let b = edge.to_bits();
        for d in 0..2000u32 {
            xs.push(f32::from_bits(b.wrapping_add(d)));
            xs.push(f32::from_bits(b.wrapping_sub(d)));
        }
    }
    xs.extend([
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        f32::MIN,
        -0.0,
        f32::MIN_POSITIVE,
        1e-45,
    ]);
    xs
}

/// The largest scalar exp error over `xs`, in ulps, and where; NaN must give NaN.
fn worst_scalar_error(xs: &[f32], mut worst: (f64, f32)) -> (f64, f32) {
    for &x in xs {
        let y = scalar::exp(x);
        if x.is_nan() {
            assert!(y.is_nan());
            continue;
        }
        let err = ulp_error(y, f64::from(x).exp());
        if err > worst.0 {
            worst = (err, x);
        }
    }
    worst
}

#[test]
fn scalar_exp_is_within_one_ulp_of_f64() {
    let worst = worst_scalar_error(&exp_inputs(), (0.0, 0.0));
    eprintln!("scalar exp: max error {:.3} ulp at x = {:e}", worst.0, worst.1);
    assert!(worst.0 <= 1.0, "max error {} ulp at x = {:e}", worst.0, worst.1);
    assert_eq!(scalar::exp(0.0), 1.0);
    assert_eq!(scalar::exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(scalar::exp(f32::INFINITY), f32::INFINITY);
    assert_eq!(scalar::exp(-103.0), f64::from(-103.0f32).exp() as f32, "subnormal result");
    assert!(scalar::exp(-103.0) > 0.0 && scalar::exp(-103.0) < f32::MIN_POSITIVE);
}

/// Every f32 input (about ten minutes in release): the scalar exp within one ulp of f64's, and every
/// SIMD path equal to it bit for bit. Run with `cargo test --release -- --ignored every_f32`.
#[test]
#[ignore]
fn exp_of_every_f32_is_within_one_ulp_and_every_path_agrees() {
    let mut worst = (0.0f64, 0.0f32);
    let chunk = 1usize << 20;
    let mut x = vec![0.0f32; chunk];
    let mut y = vec![0.0f32; chunk];
    for start in (0..1u64 << 32).step_by(chunk) {
        for (i, v) in x.iter_mut().enumerate() {
            *v = f32::from_bits((start + i as u64) as u32);
        }
        worst = worst_scalar_error(&x, worst);
        for isa in Isa::available() {
            exp_on(isa, &x, &mut y).unwrap();
            for (&v, &r) in x.iter().zip(&y) {
                let expected = scalar::exp(v);
                assert!(
                    r.to_bits() == expected.to_bits() || (v.is_nan() && r.is_nan()),
                    "{isa}: exp({v:e}) = {r:e}"
                );
            }
        }
    }
    eprintln!("scalar exp over every f32: max error {:.3} ulp at x = {:e}", worst.0, worst.1);
    assert!(worst.0 <= 1.0, "max error {} ulp at x = {:e}", worst.0, worst.1);
}

#[test]
fn every_path_exp_matches_scalar_bit_for_bit() {
    let xs = exp_inputs();
    let expected: Vec<u32> = xs.iter().map(|&x| scalar::exp(x).to_bits()).collect();
    for isa in Isa::available() {
        // Odd offsets so that vectors straddle every kind of value and tails are exercised.
        for offset in [0usize, 3] {
            let mut y = vec![0.0f32; xs.len() - offset];
            exp_on(isa, &xs[offset..], &mut y).unwrap();
            for (i, (a, b)) in y.iter().zip(&expected[offset..]).enumerate() {
                let x = xs[i + offset];
                assert!(a.to_bits() == *b || (x.is_nan() && a.is_nan()), "{isa}: exp({x:e}) = {a:e}");
            }
        }
    }
}

fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=2, 3usize..=40, Just(97usize), Just(263usize), 500usize..1100]
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(f64::MIN_POSITIVE)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn paths_match_scalar_on_max_and_exp_sum(
        n in lengths(), scale in prop_oneof![Just(1.0f32), Just(30.0), Just(1e4)],
        seed in any::<u64>(), inv_t in prop_oneof![Just(1.0f32), Just(0.5), Just(3.0)],
        poison in prop::option::of((0usize..1100, prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)])),
    ) {
        let mut x = data(n, seed, scale);
        let (max_ref, finite_ref) = scalar::max_finite(&x);
        let mut y_ref = vec![0.0f32; n];
        let sum_ref = scalar::exp_sum(&x, max_ref, inv_t, &mut y_ref);
        for isa in Isa::available() {
            prop_assert_eq!(max_finite_on(isa, &x).unwrap(), finite_ref.then_some(max_ref));
            let mut y = vec![0.0f32; n];
            let sum = exp_sum_on(isa, &x, max_ref, inv_t, &mut y).unwrap();
            prop_assert!(rel_close(sum, sum_ref, 2e-6), "{isa}: {sum} vs {sum_ref}");
            prop_assert_eq!(bits(&y), bits(&y_ref));
        }
        if let Some((i, v)) = poison.filter(|&(i, _)| i < n) {
            x[i] = v;
            for isa in Isa::available() {
                prop_assert_eq!(max_finite_on(isa, &x).unwrap(), None);
            }
        }
    }

    #[test]
    fn paths_match_scalar_on_kd_rows(
        n in lengths(), scale in prop_oneof![Just(1.0f32), Just(30.0), Just(1e4)], seed in any::<u64>(),
        inv_t in prop_oneof![Just(1.0f32), Just(0.5), Just(0.1), Just(4.0), Just(0.125)],
        hard in prop_oneof![Just(HardExp::Soft), Just(HardExp::Exp), (1u32..4).prop_map(HardExp::Square)],
        cs in -2.0f32..2.0, ct in -2.0f32..2.0, ch in -2.0f32..2.0,
    ) {
        let s = data(n, seed, scale);
        let t = data(n, seed ^ 0x5555, scale);
        let (ms, mt) = (scalar::max_finite(&s).0, scalar::max_finite(&t).0);
        let mut stored_ref = vec![vec![0.0f32; n]; 3];
        let [a, b, c] = &mut stored_ref[..] else { unreachable!() };
        let store = KdStore { student: a, teacher: b, hard: c };
        let sums_ref = scalar::kd_row_sums(&s, &t, ms, mt, inv_t, hard, Some(store));
        let mut grad_ref = stored_ref[2].clone();
        scalar::kd_row_grad(&stored_ref[0], &stored_ref[1], cs, ct, ch, hard, &mut grad_ref, false);
        for isa in Isa::available() {
            let mut stored = vec![vec![0.0f32; n]; 3];
            let [a, b, c] = &mut stored[..] else { unreachable!() };
            let store = KdStore { student: a, teacher: b, hard: c };
            let sums = kd_row_sums_on(isa, &s, &t, ms, mt, inv_t, hard, Some(store)).unwrap();
            let unstored = kd_row_sums_on(isa, &s, &t, ms, mt, inv_t, hard, None).unwrap();
            prop_assert_eq!(sums, unstored);
            for (got, want) in [(sums.student, sums_ref.student), (sums.teacher, sums_ref.teacher), (sums.hard, sums_ref.hard)] {
                prop_assert!(rel_close(got, want, 2e-6), "{isa}: {sums:?} vs {sums_ref:?}");
            }
            let cross_scale = sums_ref.teacher * (f64::from(scale) * f64::from(inv_t) * 2.0 + 1.0);
            prop_assert!((sums.cross - sums_ref.cross).abs() <= 2e-6 * cross_scale, "{isa}: {sums:?} vs {sums_ref:?}");
            for (got, want) in stored.iter().zip(&stored_ref).take(if hard == HardExp::Exp { 3 } else { 2 }) {
                prop_assert_eq!(bits(got), bits(want));
            }
            // Streamed or not, from every alignment: the same bits.
            for (stream, offset) in [(false, 0), (true, 0), (true, 1), (true, 5)] {
                let mut buf = vec![0.0f32; offset + n];
                buf[offset..].copy_from_slice(&stored[2]);
                kd_row_grad_on(isa, &stored[0], &stored[1], cs, ct, ch, hard, &mut buf[offset..], stream).unwrap();
                prop_assert_eq!(bits(&buf[offset..]), bits(&grad_ref), "{} stream {} offset {}", isa, stream, offset);
            }
        }
    }

    #[test]
    fn softmax_matches_f64(n in 1usize..300, seed in any::<u64>(), scale in prop_oneof![Just(0.5f32), Just(1.0), Just(2.0)]) {
        let x = data(n, seed, 40.0);
        let max = x.iter().copied().fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(v)));
        let sum: f64 = x.iter().map(|&v| ((f64::from(v) - max) * f64::from(scale)).exp()).sum();
        for isa in Isa::available() {
            let mut y = vec![0.0f32; n];
            let lse = softmax_on(isa, &x, scale, &mut y).unwrap();
            prop_assert!(rel_close(lse, max * f64::from(scale) + sum.ln(), 1e-6));
            for (&v, &p) in x.iter().zip(&y) {
                let arg = (f64::from(v) - max) * f64::from(scale);
                let want = arg.exp() / sum;
                // f32 rounding of the argument costs up to |arg| * 2^-24 relative, on top of a few ulp.
                prop_assert!((f64::from(p) - want).abs() <= (1e-6 + 1.2e-7 * arg.abs()) * want + 1e-30, "{p} vs {want}");
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let mut y = [0.0f32; 2];
    assert!(exp_on(Isa::Scalar, &[1.0; 3], &mut y).is_err());
    assert!(softmax_on(Isa::Scalar, &[1.0, f32::NAN], 1.0, &mut y).is_err());
    assert!(softmax_on(Isa::Scalar, &[1.0, 2.0], 0.0, &mut y).is_err());
    assert!(kd_row_sums_on(Isa::Scalar, &[1.0; 2], &[1.0; 3], 1.0, 1.0, 1.0, HardExp::Soft, None).is_err());
    for k in [0, 4] {
        let (s, mut g) = ([1.0f32; 2], [0.0f32; 2]);
        assert!(kd_row_sums_on(Isa::Scalar, &s, &s, 1.0, 1.0, 0.5, HardExp::Square(k), None).is_err());
        assert!(
            kd_row_grad_on(Isa::Scalar, &s, &s, 1.0, 1.0, 1.0, HardExp::Square(k), &mut g, false).is_err()
        );
        assert_eq!(g, [0.0; 2], "nothing written");
    }
    assert_eq!(softmax_on(Isa::Scalar, &[], 1.0, &mut []).unwrap(), f64::NEG_INFINITY);
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Deterministic pseudo-random values in `[-scale/2, scale/2)`.
fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

/// erfc in f64 for `x >= 0`: `1 - ` the Maclaurin series of erf below 2.5 (cancellation there costs
/// at most `e^(6.25) 1e-16`), Laplace's continued fraction above (200 terms, evaluated bottom up).
fn erfc_f64(x: f64) -> f64 {
    if x < 2.5 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-20 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        return 1.0 - sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    let mut fraction = x;
    for k in (1..=200).rev() {
        fraction = x + (k as f64 / 2.0) / fraction;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / fraction
}

/// GELU in f64: `x/2 erfc(-x / sqrt 2)`, from the side where erfc is not a difference of near-equals.
fn gelu_f64(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    if x < 0.0 {
        0.5 * x * erfc_f64(-z)
    } else {
        0.5 * x * (2.0 - erfc_f64(z))
    }
}

/// GELU's inputs: dense over the range where it bends, both tails, and the edge values.
fn gelu_inputs() -> Vec<f32> {
    let mut xs: Vec<f32> = (-60_000..=60_000).map(|i| i as f32 * 1e-4).collect();
    xs.extend((1..200).flat_map(|i| [i as f32 * 0.37, -(i as f32) * 0.37]));
    xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e-45, -1e-45, 1e10, -1e10, 3e38, -3e38, f32::MAX, -f32::MAX]);
    xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 5.0e-3, -5.0e-3, 9.0, -9.0, 13.5, -13.5]);
    xs
}

#[test]
fn gelu_scalar_is_within_its_bound_of_the_exact_erf_form() {
    for x in gelu_inputs().into_iter().filter(|v| v.is_finite() && v.abs() < 1e6) {
        let xf = f64::from(x);
        let exact = gelu_f64(xf);
        let got = f64::from(scalar::gelu(x));
        // A&S 7.1.26's 1.5e-7 on erf, halved by x/2, plus a few roundings of the result.
        let bound = 0.8e-7 * xf.abs() + 4.0 * f64::from(f32::EPSILON) * exact.abs() + 1e-44;
        assert!((got - exact).abs() <= bound, "gelu({x}) = {got}, exact {exact}");
    }
    assert_eq!(scalar::gelu(f32::INFINITY), f32::INFINITY);
    assert_eq!(scalar::gelu(f32::NEG_INFINITY), 0.0);
    assert!(scalar::gelu(f32::NAN).is_nan());
}

#[test]
fn gelu_paths_equal_the_scalar_bit_for_bit() {
    let xs = gelu_inputs();
    let want: Vec<f32> = xs.iter().map(|&v| scalar::gelu(v)).collect();
    for isa in Isa::available() {
        for len in [xs.len(), 0, 1, 7, 15, 16, 17, 33] {
            for offset in [0, 3] {
                let end = (offset + len).min(xs.len());
                let mut y = xs[offset..end].to_vec();
                gelu_on(isa, &mut y).unwrap();
                assert_eq!(bits(&y), bits(&want[offset..end]), "{isa} len {len} offset {offset}");
            }
        }
    }
}

/// LayerNorm of one row in f64, the definition.
fn layer_norm_f64(row: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f64> {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + f64::from(eps)).sqrt();
    row.iter()
        .zip(gamma)
        .zip(beta)
        .map(|((&v, &g), &b)| (f64::from(v) - mean) * inv * f64::from(g) + f64::from(b))
        .collect()
}

proptest! {
    #[test]
    fn layer_norm_matches_f64(
        n in 1usize..400,
        rows in 1usize..4,
        seed in any::<u64>(),
        offset in prop_oneof![Just(0.0f32), Just(3.0), Just(1e4)],
        eps in prop_oneof![Just(1e-12f32), Just(1e-5)],
    ) {
        let x: Vec<f32> = data(n * rows, seed, 8.0).into_iter().map(|v| v + offset).collect();
        let gamma = data(n, seed ^ 1, 4.0);
        let beta = data(n, seed ^ 2, 2.0);
        for isa in Isa::available() {
            let mut y = x.clone();
            layer_norm_on(isa, &mut y, &gamma, &beta, eps).unwrap();
            for (r, (row, out)) in x.chunks_exact(n).zip(y.chunks_exact(n)).enumerate() {
                let want = layer_norm_f64(row, &gamma, &beta, eps);
                // The input's own f32 spacing at the offset, relative to the row's spread, bounds how
                // well the centred values are known; then a few roundings.
                let spread = (want.iter().zip(&gamma).map(|(w, &g)| (w.abs() + 1.0) * f64::from(g.abs()).max(1.0)).fold(0.0, f64::max)).max(1.0);
                let input_ulp = f64::from(offset.abs().max(4.0)) * f64::from(f32::EPSILON);
                let tol = 8.0 * f64::from(f32::EPSILON) * spread + 4.0 * input_ulp * spread;
                for (j, (&got, &w)) in out.iter().zip(&want).enumerate() {
                    prop_assert!((f64::from(got) - w).abs() <= tol, "{isa} row {r} col {j}: {got} vs {w} (tol {tol})");
                }
            }
        }
    }
}

#[test]
fn layer_norm_edges() {
    for isa in Isa::available() {
        // A constant row has zero variance: the output is beta.
        let (gamma, beta) = (vec![2.0f32; 19], (0..19).map(|i| i as f32).collect::<Vec<_>>());
        let mut x = vec![7.5f32; 19];
        layer_norm_on(isa, &mut x, &gamma, &beta, 1e-5).unwrap();
        assert_eq!(x, beta, "{isa}");
        let mut x = [1.0f32; 6];
        assert!(layer_norm_on(isa, &mut x, &[1.0; 4], &[0.0; 4], 1e-5).is_err(), "not whole rows");
        assert!(layer_norm_on(isa, &mut x, &[1.0; 3], &[0.0; 2], 1e-5).is_err(), "beta's length");
        assert!(layer_norm_on(isa, &mut x, &[1.0; 3], &[0.0; 3], -1.0).is_err(), "negative eps");
        assert!(layer_norm_on(isa, &mut x, &[1.0; 3], &[0.0; 3], f32::NAN).is_err(), "NaN eps");
        assert!(layer_norm_on(isa, &mut x, &[], &[], 1e-5).is_err(), "empty rows");
        assert_eq!(x, [1.0; 6], "nothing written on failure");
        layer_norm_on(isa, &mut [], &[], &[], 1e-5).unwrap();
    }
}
