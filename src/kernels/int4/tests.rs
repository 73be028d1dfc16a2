//! Every tier against an f64 sum of the same quantized math, with the nibbles decoded here.

use super::*;

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
            let packed: Vec<u8> = (0..rows * cols / 2).map(|_| rng.next() as u8).collect();
            let scales: Vec<f32> = (0..rows * groups).map(|_| rng.uniform().abs() * 0.1 + 1e-3).collect();
            let zeros: Vec<i8> = (0..rows * groups).map(|_| (rng.next() % 16) as i8 - 8).collect();
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
