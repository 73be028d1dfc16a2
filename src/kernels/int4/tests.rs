//! Every tier against an f64 sum of the same quantized math, with the nibbles decoded here.

use super::*;
use crate::quant::GptqWeight;

use crate::kernels::test_rng::Rng;

/// Element `i` of packed data as two's-complement 4 bits: `(byte >> shift) & 15`, minus 16 above 7.
fn decode(packed: &[u8], i: usize) -> i64 {
    let n = i64::from((packed[i / 2] >> (4 * (i % 2))) & 15);
    if n > 7 {
        n - 16
    } else {
        n
    }
}

/// The f64 value of the quantized product and the sum of the magnitudes of its terms.
fn reference(w: &Int4Weights<'_>, act: &Activations) -> Vec<(f64, f64)> {
    let groups = w.groups();
    (0..w.rows)
        .map(|r| {
            let (mut y, mut mag) = (0.0f64, 0.0f64);
            for c in 0..w.cols {
                let g = c / w.group;
                let z = w.zero_points.map_or(0, |z| i64::from(z[r * groups + g]));
                let q = decode(w.packed, r * w.cols + c) - z;
                let t = f64::from(w.scales[r * groups + g])
                    * f64::from(act.scale[g])
                    * (q * i64::from(act.q[c])) as f64;
                y += t;
                mag += t.abs();
            }
            (y, mag)
        })
        .collect()
}

#[test]
fn activations_are_symmetric_int8_per_group() {
    let x = [0.0f32, 1.1, -2.0, 0.5, 4.0, -4.0, 0.0, 0.0];
    let act = Activations::quantize(&x, 4).unwrap();
    assert_eq!(act.scale, vec![2.0 / 127.0, 4.0 / 127.0]);
    assert_eq!(&act.q[..4], &[0, 70, -127, 32]); // 69.85 and 31.75 round to nearest
    assert_eq!(&act.q[4..], &[127, -127, 0, 0]);
    assert_eq!(act.sum, vec![-25, 0]);
    let zeros = Activations::quantize(&[0.0; 6], 4).unwrap();
    assert_eq!(zeros.scale, vec![0.0, 0.0]);
    assert!(zeros.q.iter().all(|&v| v == 0));
}

#[test]
fn every_tier_matches_the_f64_reference() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut tiers = Vec::new();
    let shapes = [
        (0usize, 64usize, 32usize),
        (3, 0, 32),
        (1, 2, 2),
        (2, 30, 6),
        (3, 32, 32),
        (5, 64, 32),
        (4, 96, 64),
        (7, 128, 128),
        (3, 160, 96),
        (17, 1024, 128),
        (2, 4096, 4096),
        (3, 384, 256),
        (2, 100, 128),
    ];
    for (rows, cols, group) in shapes {
        for affine in [false, true] {
            let groups = cols.div_ceil(group);
            let (packed, scales, zeros) = random_weights(&mut rng, rows, cols, group);
            let w = Int4Weights {
                rows,
                cols,
                group,
                packed: &packed,
                scales: &scales,
                zero_points: affine.then_some(&zeros[..]),
            };
            let mut x: Vec<f32> = (0..cols).map(|_| rng.uniform() * 3.0).collect();
            if cols > 40 {
                x[37] = 250.0; // an outlier in one group
                x[cols - 1] = -1e-30; // a tiny value
            }
            let act = Activations::quantize(&x, group).unwrap();
            let want = reference(&w, &act);
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; rows + 1];
                gemv_w4a8_on(isa, &w, &x, &mut y).unwrap();
                for (r, &(exact, mag)) in want.iter().enumerate() {
                    let tol = (groups as f64 + 4.0) * 4.0 * f64::from(f32::EPSILON) * mag + 1e-30;
                    let got = f64::from(y[r]);
                    assert!(
                        (got - exact).abs() <= tol,
                        "{isa} rows={rows} cols={cols} group={group} affine={affine} row {r}: {got} vs {exact}"
                    );
                }
                assert!(y[rows].is_nan(), "{isa}: wrote past y");
                if !tiers.contains(&isa) {
                    tiers.push(isa);
                }
            }
        }
    }
    println!("int4 W4A8 tiers exercised: {tiers:?}");
}

#[test]
fn extreme_nibbles_and_activations_stay_exact() {
    // Every weight -8 (nibble 8), every activation -127: the largest products of the u8 path.
    let (rows, cols, group) = (2, 256, 128);
    let packed = vec![0x88u8; rows * cols / 2];
    let scales = vec![1.0f32; rows * 2];
    let x = vec![-1.0f32; cols];
    let w = Int4Weights { rows, cols, group, packed: &packed, scales: &scales, zero_points: None };
    for isa in Isa::available() {
        let mut y = vec![0.0f32; rows];
        gemv_w4a8_on(isa, &w, &x, &mut y).unwrap();
        // sum of (-8) * (-127) * (1 / 127) over 256 columns.
        for v in &y {
            assert!((f64::from(*v) - 2048.0).abs() < 1e-3, "{isa}: {v}");
        }
    }
}

#[test]
fn bad_input_is_refused_and_nothing_written() {
    let packed = vec![0u8; 64];
    let scales = vec![1.0f32; 4];
    let zeros = vec![0i8; 4];
    let x = vec![1.0f32; 64];
    let mut y = vec![3.0f32; 2];
    let ok = Int4Weights {
        rows: 2,
        cols: 64,
        group: 32,
        packed: &packed,
        scales: &scales,
        zero_points: Some(&zeros),
    };
    gemv_w4a8(&ok, &x, &mut y).unwrap();
    y.fill(3.0);
    let cases = [
        Int4Weights { cols: 63, ..ok },
        Int4Weights { group: 0, ..ok },
        Int4Weights { packed: &packed[..63], ..ok },
        Int4Weights { scales: &scales[..3], ..ok },
        Int4Weights { zero_points: Some(&zeros[..3]), ..ok },
    ];
    for w in &cases {
        assert!(gemv_w4a8(w, &x, &mut y).is_err(), "{w:?}");
    }
    let bad_zero = [0i8, 8, 0, 0];
    assert!(gemv_w4a8(&Int4Weights { zero_points: Some(&bad_zero), ..ok }, &x, &mut y).is_err());
    let bad_scale = [1.0f32, f32::NAN, 1.0, 1.0];
    assert!(gemv_w4a8(&Int4Weights { scales: &bad_scale, ..ok }, &x, &mut y).is_err());
    assert!(gemv_w4a8(&ok, &x[..63], &mut y).is_err());
    assert!(gemv_w4a8(&ok, &x, &mut y[..1]).is_err());
    let mut nan = x.clone();
    nan[9] = f32::INFINITY;
    assert!(gemv_w4a8(&ok, &nan, &mut y).is_err());
    assert!(y.iter().all(|&v| v == 3.0));
}

/// Random weights of a shape: packed bytes (every nibble value), scales, zero points.
fn random_weights(rng: &mut Rng, rows: usize, cols: usize, group: usize) -> (Vec<u8>, Vec<f32>, Vec<i8>) {
    let groups = cols.div_ceil(group);
    let packed: Vec<u8> = (0..rows * cols / 2).map(|_| rng.next() as u8).collect();
    let scales: Vec<f32> = (0..rows * groups).map(|_| rng.uniform().abs() * 0.1 + 1e-3).collect();
    let zeros: Vec<i8> = (0..rows * groups).map(|_| (rng.next() % 16) as i8 - 8).collect();
    (packed, scales, zeros)
}

/// The GEMM on every tier: each token row bit for bit the scalar GEMV's and the tier's own GEMV's,
/// and within f32 rounding of the f64 sum.
fn check_gemm(rng: &mut Rng, m: usize, rows: usize, cols: usize, group: usize, with_reference: bool) {
    for affine in [false, true] {
        let (packed, scales, zeros) = random_weights(rng, rows, cols, group);
        let w = Int4Weights {
            rows,
            cols,
            group,
            packed: &packed,
            scales: &scales,
            zero_points: affine.then_some(&zeros[..]),
        };
        let mut x: Vec<f32> = (0..m * cols).map(|_| rng.uniform() * 3.0).collect();
        if m > 1 && cols > 40 {
            x[cols + 37] = 250.0; // an outlier in one group of row 1
            x[cols - 1] = -1e-30;
        }
        if m > 2 {
            x[2 * cols..3 * cols].fill(0.0); // a row of zeros: activation scale 0
        }
        let packed_w = PackedInt4::new(&w).unwrap();
        let groups = w.groups();
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; m * rows + 1];
            gemm_w4a8_packed_on(isa, &packed_w, &x, m, &mut y).unwrap();
            assert!(y[m * rows].is_nan(), "{isa}: wrote past y");
            let mut y2 = vec![f32::NAN; m * rows];
            gemm_w4a8_on(isa, &w, &x, m, &mut y2).unwrap();
            for t in 0..m {
                let xr = &x[t * cols..(t + 1) * cols];
                let (mut scalar, mut tier) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                gemv_w4a8_on(Isa::Scalar, &w, xr, &mut scalar).unwrap();
                gemv_w4a8_on(isa, &w, xr, &mut tier).unwrap();
                let act = Activations::quantize(xr, group).unwrap();
                let want = if with_reference { reference(&w, &act) } else { Vec::new() };
                let got = &y[t * rows..(t + 1) * rows];
                for r in 0..rows {
                    let at = format!(
                        "{isa} m={m} rows={rows} cols={cols} group={group} affine={affine} [{t}, {r}]"
                    );
                    assert_eq!(
                        got[r].to_bits(),
                        scalar[r].to_bits(),
                        "{at}: {} vs scalar GEMV {}",
                        got[r],
                        scalar[r]
                    );
                    assert_eq!(got[r].to_bits(), y2[t * rows + r].to_bits(), "{at}: packed once vs per call");
                    assert_eq!(
                        got[r].to_bits(),
                        tier[r].to_bits(),
                        "{at}: {} vs tier GEMV {}",
                        got[r],
                        tier[r]
                    );
                    let tol = (groups as f64 + 4.0)
                        * 4.0
                        * f64::from(f32::EPSILON)
                        * want.get(r).map_or(0.0, |w| w.1)
                        + 1e-30;
                    if let Some(&(exact, _)) = want.get(r) {
                        assert!((f64::from(got[r]) - exact).abs() <= tol, "{at}: {} vs f64 {exact}", got[r]);
                    }
                }
            }
        }
    }
}

#[test]
fn gemm_matches_the_scalar_gemv_bit_for_bit_on_every_tier() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let groups = [32usize, 128, 64, 96, 24];
    let mut k = 0;
    for m in [0usize, 1, 2, 5, 16, 33, 130] {
        for cols in [32usize, 64, 96, 384, 1536] {
            for rows in [1usize, 15, 16, 17] {
                let group = groups[k % groups.len()].min(cols);
                k += 1;
                check_gemm(&mut rng, m, rows, cols, group, m * rows * cols <= 1 << 20);
            }
        }
    }
    for (m, rows, cols, group) in
        [(1, 384, 384, 128), (5, 384, 1536, 128), (33, 384, 384, 64), (130, 384, 384, 128)]
    {
        check_gemm(&mut rng, m, rows, cols, group, m <= 5);
    }
    // Shapes the GEMV runs on its scalar path: group 24, cols 40 (blocked here: multiples of 8),
    // and a shape that is not (cols 30, group 6: the row-major layout, scalar on every tier).
    for (m, rows, cols, group) in [(5, 17, 384, 24), (9, 33, 40, 40), (7, 19, 30, 6), (3, 5, 2, 2)] {
        check_gemm(&mut rng, m, rows, cols, group, true);
    }
}

#[test]
fn gemm_extreme_nibbles_and_zero_points_stay_exact() {
    // Nibble -8 with zero point 7 (q - zero = -15) and nibble 7 with zero point -8 (15) against
    // activations of +-127: the largest integer sums of the u8 paths.
    let (m, rows, cols, group) = (9, 33, 1536, 1536);
    for (nibble, zero) in [(0x88u8, 7i8), (0x77, -8)] {
        let packed = vec![nibble; rows * cols / 2];
        let scales = vec![1.0f32; rows];
        let zeros = vec![zero; rows];
        let w =
            Int4Weights { rows, cols, group, packed: &packed, scales: &scales, zero_points: Some(&zeros) };
        let x: Vec<f32> = (0..m * cols).map(|i| if (i / cols) % 2 == 0 { -1.0 } else { 1.0 }).collect();
        for isa in Isa::available() {
            let mut y = vec![0.0f32; m * rows];
            gemm_w4a8_on(isa, &w, &x, m, &mut y).unwrap();
            let q = if nibble == 0x88 { -15.0 } else { 15.0 };
            for (i, v) in y.iter().enumerate() {
                let sign = if (i / rows) % 2 == 0 { -1.0 } else { 1.0 };
                // cols * q * (+-127) * (1 / 127), the scale product rounded once in f32.
                let want = f64::from(1.0f32 / 127.0) * (cols as f64 * q * sign * 127.0);
                assert!((f64::from(*v) - want).abs() <= want.abs() * 1e-6, "{isa} [{i}]: {v} vs {want}");
            }
        }
    }
}

#[test]
fn gemm_bad_input_is_refused_and_nothing_written() {
    let (packed, scales, zeros) = (vec![0u8; 64], vec![1.0f32; 4], vec![0i8; 4]);
    let w = Int4Weights {
        rows: 2,
        cols: 64,
        group: 32,
        packed: &packed,
        scales: &scales,
        zero_points: Some(&zeros),
    };
    let p = PackedInt4::new(&w).unwrap();
    let x = vec![1.0f32; 3 * 64];
    let mut y = vec![5.0f32; 3 * 2];
    assert!(gemm_w4a8_packed(&p, &x[..3 * 64 - 1], 3, &mut y).is_err());
    assert!(gemm_w4a8_packed(&p, &x, 3, &mut y[..5]).is_err());
    assert!(gemm_w4a8_packed(&p, &x, usize::MAX, &mut y).is_err());
    let mut nan = x.clone();
    nan[2 * 64 + 5] = f32::NAN;
    assert!(gemm_w4a8_packed(&p, &nan, 3, &mut y).is_err());
    assert!(gemm_w4a8(&Int4Weights { cols: 63, ..w }, &x, 3, &mut y).is_err());
    assert!(gemm_w4a8(&Int4Weights { scales: &scales[..3], ..w }, &x, 3, &mut y).is_err());
    assert!(PackedInt4::new(&Int4Weights { zero_points: Some(&[0, 0, 9, 0]), ..w }).is_err());
    assert!(y.iter().all(|&v| v == 5.0));
}

/// A GPTQ-layout weight with levels, scales and (possibly fractional) zero points.
fn gptq_weight(rng: &mut Rng, rows: usize, cols: usize, group: usize, fractional: bool) -> GptqWeight {
    let groups = cols.div_ceil(group);
    GptqWeight {
        rows,
        cols,
        groups,
        q: (0..rows * cols).map(|_| (rng.next() % 16) as u8).collect(),
        scales: (0..rows * groups).map(|_| rng.uniform().abs() * 0.05 + 1e-3).collect(),
        zeros: (0..rows * groups)
            .map(|_| {
                let z = (rng.next() % 16) as f32;
                if fractional {
                    (z + rng.uniform() * 0.5).clamp(0.0, 15.0)
                } else {
                    z
                }
            })
            .collect(),
        g_idx: (0..cols).map(|c| (c / group) as i32).collect(),
    }
}

#[test]
fn int4_linear_matches_the_dequantized_f64_product_and_any_batch() {
    let mut rng = Rng(0x0bad_5eed_0000_0001);
    for (batch, rows, cols, group) in [(1, 17, 128, 128), (7, 40, 384, 128), (12, 33, 96, 32), (3, 5, 30, 10)]
    {
        for fractional in [false, true] {
            let w = gptq_weight(&mut rng, rows, cols, group, fractional);
            let bias: Vec<f32> = (0..rows).map(|_| rng.uniform()).collect();
            let layer = Int4Linear::from_gptq(&w, Some(&bias)).unwrap();
            assert_eq!((layer.in_features(), layer.out_features(), layer.group()), (cols, rows, group));
            let x: Vec<f32> = (0..batch * cols).map(|_| rng.uniform() * 2.0).collect();
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; batch * rows];
                layer.forward_on(isa, &x, batch, &mut y).unwrap();
                for t in 0..batch {
                    let xr = &x[t * cols..(t + 1) * cols];
                    // One row alone gives the same bits as in the batch.
                    let mut one = vec![0.0f32; rows];
                    layer.forward_on(isa, xr, 1, &mut one).unwrap();
                    let act = Activations::quantize(xr, group).unwrap();
                    for r in 0..rows {
                        assert_eq!(y[t * rows + r].to_bits(), one[r].to_bits(), "{isa} [{t}, {r}]");
                        // w = scale * (level - zero) against the quantized activations; the offsets'
                        // share uses x itself (what the layer subtracts).
                        let (mut exact, mut mag) = (f64::from(bias[r]), f64::from(bias[r]).abs());
                        for (c, &xc) in xr.iter().enumerate() {
                            let g = c / group;
                            let (s, z) =
                                (f64::from(w.scales[r * w.groups + g]), f64::from(w.zeros[r * w.groups + g]));
                            let whole = z.round();
                            let deq = s * (f64::from(w.q[r * cols + c]) - whole);
                            let term = deq * f64::from(act.scale[g]) * f64::from(act.q[c])
                                - f64::from((s * (z - whole)) as f32) * f64::from(xc);
                            exact += term;
                            mag += term.abs();
                        }
                        let tol = 16.0 * (w.groups as f64 + 4.0) * f64::from(f32::EPSILON) * mag + 1e-6;
                        let got = f64::from(y[t * rows + r]);
                        assert!(
                            (got - exact).abs() <= tol,
                            "{isa} frac={fractional} [{t}, {r}]: {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn int4_linear_refuses_bad_weights_and_input() {
    let mut rng = Rng(77);
    let w = gptq_weight(&mut rng, 4, 64, 32, true);
    let bias = vec![0.5f32; 4];
    assert!(Int4Linear::from_gptq(&w, Some(&bias[..3])).is_err());
    let mut bad = w.clone();
    bad.q[5] = 16;
    assert!(Int4Linear::from_gptq(&bad, None).is_err());
    let mut bad = w.clone();
    bad.g_idx.swap(0, 40);
    assert!(Int4Linear::from_gptq(&bad, None).is_err());
    let mut bad = w.clone();
    bad.zeros[1] = f32::NAN;
    assert!(Int4Linear::from_gptq(&bad, None).is_err());
    let mut bad = w.clone();
    bad.scales.pop();
    assert!(Int4Linear::from_gptq(&bad, None).is_err());
    let odd = gptq_weight(&mut rng, 2, 33, 33, false);
    assert!(Int4Linear::from_gptq(&odd, None).is_err());
    let layer = Int4Linear::from_gptq(&w, Some(&bias)).unwrap();
    let x = vec![1.0f32; 2 * 64];
    let mut y = vec![9.0f32; 2 * 4];
    assert!(layer.forward(&x[..127], 2, &mut y).is_err());
    assert!(layer.forward(&x, 2, &mut y[..7]).is_err());
    let mut inf = x.clone();
    inf[100] = f32::NEG_INFINITY;
    assert!(layer.forward(&inf, 2, &mut y).is_err());
    assert!(y.iter().all(|&v| v == 9.0));
    layer.forward(&x, 2, &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_finite() && *v != 9.0));
}

#[cfg(feature = "parallel")]
#[test]
fn gemm_split_across_threads_gives_the_same_bits() {
    // Above the parallel size: one token splits by blocks of output rows, more split by tokens.
    let mut rng = Rng(0x5eed_0003);
    let (rows, cols, group) = (1000, 4096, 128);
    let (packed, scales, zeros) = random_weights(&mut rng, rows, cols, group);
    let w = Int4Weights { rows, cols, group, packed: &packed, scales: &scales, zero_points: Some(&zeros) };
    let p = PackedInt4::new(&w).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    for m in [1usize, 13] {
        let x: Vec<f32> = (0..m * cols).map(|_| rng.uniform()).collect();
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; m * rows];
            pool.install(|| gemm_w4a8_packed_on(isa, &p, &x, m, &mut y)).unwrap();
            for t in 0..m {
                let mut want = vec![0.0f32; rows];
                gemv_w4a8_on(Isa::Scalar, &w, &x[t * cols..(t + 1) * cols], &mut want).unwrap();
                for r in 0..rows {
                    assert_eq!(y[t * rows + r].to_bits(), want[r].to_bits(), "{isa} m={m} [{t}, {r}]");
                }
            }
        }
    }
}

#[test]
fn activation_quantization_is_the_same_on_every_tier() {
    let mut rng = Rng(0x9a_b1e5);
    // Ties: amax 127 makes the scale 1, so k + 0.5 rounds to the even neighbour.
    let mut x: Vec<f32> = (0..300).map(|i| (i % 254) as f32 - 127.0 + 0.5).collect();
    x[0] = 127.0;
    x.extend((0..1000).map(|_| rng.uniform() * 10.0));
    x.extend([1e-38f32, -3e-39, 0.0, 5e-45, -1e-30, 1e30, -2e30]);
    for group in [1usize, 7, 24, 128, 2000] {
        let want = Activations::quantize(&x, group).unwrap();
        for isa in Isa::available() {
            let got = Activations::quantize_on(isa, &x, group).unwrap();
            assert_eq!((&got.q, &got.sum), (&want.q, &want.sum), "{isa} group {group}");
            assert!(
                got.scale.iter().zip(&want.scale).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa} group {group}"
            );
            // The reordered copy written out: per step of each group its even columns, then
            // its odd ones (an odd last column stays zero).
            let mut want_split = vec![0i8; if split_step(isa).is_some() { x.len() } else { 0 }];
            let step = split_step(isa).unwrap_or(1);
            for g0 in (0..want_split.len()).step_by(group) {
                let end = (g0 + group).min(x.len());
                for s0 in (g0..end).step_by(step) {
                    let half = ((s0 + step).min(end) - s0) / 2;
                    for j in 0..half {
                        want_split[s0 + j] = want.q[s0 + 2 * j];
                        want_split[s0 + half + j] = want.q[s0 + 2 * j + 1];
                    }
                }
            }
            assert_eq!(got.split, want_split, "{isa} group {group}");
        }
    }
    // The ties themselves, against round half to even written out.
    let act = Activations::quantize(&x[..300], 300).unwrap();
    for (i, &v) in x[1..300].iter().enumerate() {
        let (fl, frac) = (v.floor(), v - v.floor());
        let want = if frac == 0.5 && fl % 2.0 == 0.0 {
            fl
        } else if frac == 0.5 {
            fl + 1.0
        } else {
            v.round()
        };
        assert_eq!(f32::from(act.q[i + 1]), want.clamp(-127.0, 127.0), "{v}");
    }
}

// The SIMD tiers of the GEMV and GEMM against the scalar reference's bits (h-neon4: the aarch64
// tiers; the GEMM tiers of every architecture).

/// The scalar reference's bits written out: per group the exact integer sum of `(q - zero) * a`
/// (nibbles decoded here), then `y += (scale * activation scale) * dot` in f32, group after group.
fn reference_bits(w: &Int4Weights<'_>, act: &Activations) -> Vec<f32> {
    let groups = w.groups();
    (0..w.rows)
        .map(|r| {
            let mut y = 0.0f32;
            for g in 0..groups {
                let z = w.zero_points.map_or(0, |z| i64::from(z[r * groups + g]));
                let dot: i64 = (g * w.group..((g + 1) * w.group).min(w.cols))
                    .map(|c| (decode(w.packed, r * w.cols + c) - z) * i64::from(act.q[c]))
                    .sum();
                let s = w.scales[r * groups + g] * act.scale[g];
                y += s * dot as f32;
            }
            y
        })
        .collect()
}

/// Random weights (see `random_weights`) with about half of the nibbles and zero points at the
/// ends of their range, -8 and 7.
fn extreme_weights(rng: &mut Rng, rows: usize, cols: usize, group: usize) -> (Vec<u8>, Vec<f32>, Vec<i8>) {
    let (mut packed, scales, mut zeros) = random_weights(rng, rows, cols, group);
    for b in &mut packed {
        match rng.below(8) {
            0 => *b = 0x88,
            1 => *b = 0x77,
            2 => *b = 0x78,
            3 => *b = 0x87,
            _ => {}
        }
    }
    for z in &mut zeros {
        match rng.below(4) {
            0 => *z = -8,
            1 => *z = 7,
            _ => {}
        }
    }
    (packed, scales, zeros)
}

/// `n` activations: runs of +-1 (quantized to +-127 where 1 is the group's largest magnitude), a
/// group-sized run of zeros, otherwise uniform in [-1, 1).
fn extreme_activations(rng: &mut Rng, n: usize, group: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n)
        .map(|_| match rng.below(3) {
            0 => 1.0,
            1 => -1.0,
            _ => rng.uniform(),
        })
        .collect();
    if n >= 3 * group {
        x[group..2 * group].fill(0.0);
        for (i, v) in x[2 * group..3 * group].iter_mut().enumerate() {
            *v = if i % 2 == 0 { -1.0 } else { 1.0 };
        }
    }
    x
}

#[test]
fn gemv_tiers_give_the_scalar_reference_bits() {
    let mut rng = Rng(0x4e30_4e34_0000_0017);
    let mut exercised = Vec::new();
    // (rows, cols, group): several groups, a shorter last group (320 = 128 + 128 + 64), odd row
    // counts, groups of 32 to 256, one group per row, and shapes the SIMD rows leave to the scalar
    // row (group 40, cols 200).
    let shapes = [
        (1usize, 32usize, 32usize),
        (3, 64, 32),
        (17, 256, 64),
        (5, 320, 128),
        (7, 768, 256),
        (33, 512, 128),
        (3, 160, 96),
        (9, 1024, 256),
        (2, 2048, 2048),
        (4, 200, 40),
        // Around the AVX-512 16-row tile, with steps of 128 + 64 and 64 + 32 columns.
        (16, 384, 128),
        (40, 640, 192),
        (31, 96, 96),
        // More than 16 groups a row (the AVX-512 tile takes its parameters 16 groups at a time):
        // two whole sets and a part, and a part only.
        (20, 2304, 64),
        (45, 1600, 32),
        // Enough weights for parallel row tasks, the last task's rows not a whole tile.
        (300, 4096, 128),
    ];
    for (rows, cols, group) in shapes {
        for affine in [false, true] {
            let (packed, scales, zeros) = extreme_weights(&mut rng, rows, cols, group);
            let w = Int4Weights {
                rows,
                cols,
                group,
                packed: &packed,
                scales: &scales,
                zero_points: affine.then_some(&zeros[..]),
            };
            let x = extreme_activations(&mut rng, cols, group);
            let want = reference_bits(&w, &Activations::quantize(&x, group).unwrap());
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; rows + 1];
                gemv_w4a8_on(isa, &w, &x, &mut y).unwrap();
                for (r, (got, want)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{isa} rows={rows} cols={cols} group={group} affine={affine} row {r}: {got} vs {want}"
                    );
                }
                assert!(y[rows].is_nan(), "{isa}: wrote past y");
                if !exercised.contains(&isa) {
                    exercised.push(isa);
                }
            }
        }
    }
    println!("int4 GEMV tiers checked bit for bit: {exercised:?}");
}

#[test]
fn gemm_tiers_give_the_reference_bits_on_extreme_values() {
    let mut rng = Rng(0x4e30_4e34_0000_0018);
    // (m, rows, cols, group): token counts around the tiles (1 to 9), odd row counts, groups of 8
    // to 256 (24 and 40: an odd count of 8-column steps), a shorter last group (320, 120).
    let shapes = [
        (1usize, 17usize, 256usize, 32usize),
        (2, 15, 64, 64),
        (3, 33, 384, 128),
        (4, 16, 512, 256),
        (5, 31, 320, 128),
        (7, 17, 96, 32),
        (9, 5, 120, 24),
        (6, 19, 40, 40),
        (5, 16, 1024, 256),
        (3, 1, 8, 8),
        (8, 49, 256, 64),
    ];
    for (m, rows, cols, group) in shapes {
        for affine in [false, true] {
            let (packed, scales, zeros) = extreme_weights(&mut rng, rows, cols, group);
            let w = Int4Weights {
                rows,
                cols,
                group,
                packed: &packed,
                scales: &scales,
                zero_points: affine.then_some(&zeros[..]),
            };
            let x = extreme_activations(&mut rng, m * cols, group);
            let p = PackedInt4::new(&w).unwrap();
            let want: Vec<Vec<f32>> = x
                .chunks_exact(cols)
                .map(|xr| reference_bits(&w, &Activations::quantize(xr, group).unwrap()))
                .collect();
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; m * rows + 1];
                gemm_w4a8_packed_on(isa, &p, &x, m, &mut y).unwrap();
                for (t, want) in want.iter().enumerate() {
                    for (r, want) in want.iter().enumerate() {
                        let got = y[t * rows + r];
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{isa} m={m} rows={rows} cols={cols} group={group} affine={affine} [{t}, {r}]: \
                             {got} vs {want}"
                        );
                    }
                }
                assert!(y[m * rows].is_nan(), "{isa}: wrote past y");
            }
        }
    }
}

#[cfg(feature = "parallel")]
#[test]
fn gemv_and_gemm_split_across_threads_give_the_reference_bits() {
    // Above the parallel sizes: the GEMV by runs of rows, the GEMM by output blocks (one token)
    // and by tokens.
    let mut rng = Rng(0x4e30_4e34_0000_0019);
    let (rows, cols, group) = (263, 8192, 256);
    let (packed, scales, zeros) = extreme_weights(&mut rng, rows, cols, group);
    let w = Int4Weights { rows, cols, group, packed: &packed, scales: &scales, zero_points: Some(&zeros) };
    let p = PackedInt4::new(&w).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    for m in [1usize, 5] {
        let x = extreme_activations(&mut rng, m * cols, group);
        let want: Vec<f32> = x
            .chunks_exact(cols)
            .flat_map(|xr| reference_bits(&w, &Activations::quantize(xr, group).unwrap()))
            .collect();
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; m * rows];
            pool.install(|| gemm_w4a8_packed_on(isa, &p, &x, m, &mut y)).unwrap();
            for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                assert_eq!(got.to_bits(), want.to_bits(), "{isa} GEMM m={m} [{i}]: {got} vs {want}");
            }
            if m == 1 {
                let mut y = vec![f32::NAN; rows];
                pool.install(|| gemv_w4a8_on(isa, &w, &x, &mut y)).unwrap();
                for (r, (got, want)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(got.to_bits(), want.to_bits(), "{isa} GEMV row {r}: {got} vs {want}");
                }
            }
        }
    }
}
