//! Every tier's dot products and GEMV against the scalar reference (ggml's `_generic` code), and
//! the reference against an independent f64 sum of the dequantized rows.

use super::*;
use crate::kernels::Isa;

use crate::kernels::test_rng::Rng;
use proptest::prelude::*;

const TYPES: [GgmlType; 4] = [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K];

/// `rows x cols` weights of `ty`: quantized random floats, then every value byte (not the f16
/// scales) overwritten with random bytes so that every nibble, 6-bit code, sub-block scale and
/// -128 occurs.
fn weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let x = rng.floats(rows * cols, 3.0);
    let mut w = vec![0u8; ty.matrix_bytes(rows, cols).unwrap()];
    quantize(ty, &x, rows, cols, &mut w).unwrap();
    let size = ty.block_bytes();
    // The bytes of a block that hold its f16 scales.
    let scale_bytes: std::ops::Range<usize> = match ty {
        GgmlType::Q4_0 | GgmlType::Q8_0 => 0..2,
        GgmlType::Q4K => 0..4,
        GgmlType::Q6K => 208..210,
        _ => unreachable!("only the GEMV types"),
    };
    for block in w.chunks_exact_mut(size) {
        for (i, b) in block.iter_mut().enumerate() {
            if !scale_bytes.contains(&i) {
                *b = rng.next() as u8;
            }
        }
    }
    w
}

/// An f64 reference of `w . x` from the dequantized weights and activations, and the sum of
/// `|w_i x_i|` (the scale of the f32 rounding).
fn f64_reference(ty: GgmlType, w: &[u8], x: &[f32]) -> (f64, f64) {
    let n = x.len();
    let mut wf = vec![0.0f32; n];
    dequantize(ty, w, 1, n, &mut wf).unwrap();
    let act = if matches!(ty, GgmlType::Q4K | GgmlType::Q6K) { GgmlType::Q8K } else { GgmlType::Q8_0 };
    let mut q = vec![0u8; act.row_bytes(n).unwrap()];
    quantize(act, x, 1, n, &mut q).unwrap();
    let mut xf = vec![0.0f32; n];
    dequantize(act, &q, 1, n, &mut xf).unwrap();
    let dot = wf.iter().zip(&xf).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
    let mag = wf.iter().zip(&xf).map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs()).sum();
    (dot, mag)
}

/// The f32 summation bound for `blocks` blocks of magnitude `mag`: the Q4_K minima and Q6_K's
/// offset of 32 are subtracted in f32 from terms up to four times the magnitude of the result's.
fn bound(blocks: usize, mag: f64) -> f64 {
    (blocks as f64 + 16.0) * 8.0 * f64::from(f32::EPSILON) * mag + 1e-30
}

#[test]
fn every_tier_matches_the_reference_dot_products() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tiers = Vec::new();
    for ty in TYPES {
        let per = ty.block_elems();
        for blocks in [0usize, 1, 2, 3, 4, 5, 7, 13, 31, 64] {
            let n = blocks * per;
            let w = weights(ty, 1, n, &mut rng);
            for scale in [1.0f32, 1e-3, 300.0] {
                let mut x = rng.floats(n, scale);
                if n > 0 && scale == 1.0 {
                    x[n / 2] = 40.0; // one outlier
                }
                let want = vec_dot_on(Isa::Scalar, ty, &w, &x).unwrap();
                let (exact, mag) = f64_reference(ty, &w, &x);
                let tol = bound(blocks, mag);
                assert!(
                    (f64::from(want) - exact).abs() <= tol,
                    "{ty:?} reference {want} vs f64 {exact} (n={n}, tol {tol})"
                );
                for isa in Isa::available() {
                    let got = vec_dot_on(isa, ty, &w, &x).unwrap();
                    assert!(
                        (f64::from(got) - f64::from(want)).abs() <= tol,
                        "{ty:?} {isa}: {got} vs reference {want} (n={n}, tol {tol})"
                    );
                    if !tiers.contains(&isa) {
                        tiers.push(isa);
                    }
                }
            }
        }
    }
    println!("ggml dot tiers exercised: {tiers:?}");
}

#[test]
fn zero_activations_and_weights_give_zero() {
    for ty in TYPES {
        let n = 4 * ty.block_elems();
        let mut rng = Rng(7);
        let w = weights(ty, 1, n, &mut rng);
        let zero_w = vec![0u8; w.len()];
        for isa in Isa::available() {
            assert_eq!(vec_dot_on(isa, ty, &w, &vec![0.0; n]).unwrap(), 0.0, "{ty:?} {isa}");
            assert_eq!(vec_dot_on(isa, ty, &zero_w, &rng.floats(n, 1.0)).unwrap(), 0.0, "{ty:?} {isa}");
        }
    }
}

#[test]
fn gemv_is_the_dot_product_per_row_on_every_tier() {
    let mut rng = Rng(42);
    for ty in TYPES {
        let per = ty.block_elems();
        for (rows, blocks) in [(0usize, 3usize), (1, 1), (3, 5), (67, 9), (5, 0)] {
            let cols = blocks * per;
            let w = weights(ty, rows, cols, &mut rng);
            let x = rng.floats(cols, 2.0);
            let row_bytes = ty.row_bytes(cols).unwrap();
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; rows + 2];
                gemv_on(isa, ty, &w, rows, cols, &x, &mut y).unwrap();
                for r in 0..rows {
                    let wr = &w[r * row_bytes..(r + 1) * row_bytes];
                    let want = vec_dot_on(isa, ty, wr, &x).unwrap();
                    assert_eq!(y[r].to_bits(), want.to_bits(), "{ty:?} {isa} row {r}");
                }
                assert!(y[rows..].iter().all(|v| v.is_nan()), "{ty:?} {isa}: wrote past y");
            }
        }
    }
}

#[test]
fn gemv_refuses_bad_input_and_writes_nothing() {
    let mut rng = Rng(3);
    let (rows, cols) = (4, 64);
    let w = weights(GgmlType::Q4_0, rows, cols, &mut rng);
    let x = rng.floats(cols, 1.0);
    let mut y = vec![5.0f32; rows];
    let bad = |r: crate::Result<()>, what: &str| assert!(r.is_err(), "{what} was accepted");
    bad(gemv(GgmlType::Q4_1, &w, rows, cols, &x, &mut y), "q4_1");
    bad(gemv(GgmlType::Q8K, &w, rows, cols, &x, &mut y), "q8_K");
    bad(gemv(GgmlType::Q4_0, &w, rows, 48, &x, &mut y), "cols 48");
    bad(gemv(GgmlType::Q4K, &w, 1, 64, &x, &mut y), "q4_K cols 64");
    bad(gemv(GgmlType::Q4_0, &w[..w.len() - 1], rows, cols, &x, &mut y), "short w");
    bad(gemv(GgmlType::Q4_0, &w, rows, cols, &x[..cols - 1], &mut y), "short x");
    bad(gemv(GgmlType::Q4_0, &w, rows, cols, &x, &mut y[..rows - 1]), "short y");
    let mut nan = x.clone();
    nan[5] = f32::NAN;
    bad(gemv(GgmlType::Q4_0, &w, rows, cols, &nan, &mut y), "NaN x");
    nan[5] = f32::INFINITY;
    bad(gemv(GgmlType::Q4_0, &w, rows, cols, &nan, &mut y), "infinite x");
    assert!(y.iter().all(|&v| v == 5.0));
    let message = gemv(GgmlType::Q4_0, &w, rows, 48, &x, &mut y).unwrap_err().to_string();
    assert!(message.contains("multiple of 32"), "{message}");
    assert!(vec_dot_on(Isa::Scalar, GgmlType::Q4_0, &w[..17], &x[..32]).is_err());
}

#[test]
fn branch_free_scale_unpacking_is_ggml_get_scale_min_k4() {
    let mut rng = Rng(99);
    for _ in 0..2000 {
        let q: [u8; 12] = std::array::from_fn(|_| rng.next() as u8);
        let (scales, mins) = super::dot::scales_mins_k4(&q);
        for j in 0..8 {
            let (sc, m) = super::quantize::scale_min_k4(j, &q);
            assert_eq!(((scales >> (8 * j)) & 0xFF) as u8, sc, "{q:?} scale {j}");
            assert_eq!(((mins >> (8 * j)) & 0xFF) as u8, m, "{q:?} min {j}");
        }
    }
}

/// One Q8_0 block of `x` by ggml's reference quantizer and by each tier's activation quantizer.
fn q8_0_both_ways(x: &[f32]) {
    let mut want = vec![0u8; GgmlType::Q8_0.row_bytes(x.len()).unwrap()];
    quantize(GgmlType::Q8_0, x, 1, x.len(), &mut want).unwrap();
    for isa in Isa::available() {
        let got = super::dot::Activations::quantize(isa, GgmlType::Q8_0, x).unwrap();
        let super::dot::Activations::Q8_0 { blocks, d, .. } = got else { panic!("Q8_0 activations") };
        assert_eq!(bytemuck::cast_slice::<_, u8>(&blocks), &want[..], "{isa} {x:?}");
        for (b, d) in blocks.iter().zip(&d) {
            assert_eq!(f16_get(b.d).to_f32().to_bits(), d.to_bits(), "{isa}");
        }
    }
}

#[test]
fn activation_quantizer_is_the_reference_on_ties_and_extremes() {
    // amax 127 makes d = 1 and id = 1: every k + 0.5 is a tie, rounded away from zero.
    let ties: Vec<f32> = (0..64).map(|i| if i == 0 { 127.0 } else { (i as f32 - 32.0) + 0.5 }).collect();
    q8_0_both_ways(&ties);
    let extremes = [0.0, -0.0, f32::MIN_POSITIVE, -1e-45, f32::MAX, -f32::MAX, 1e-38, 3.4e38, 65504.0, 7e-8];
    let x: Vec<f32> =
        (0..96).map(|i| extremes[i % extremes.len()] * if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
    q8_0_both_ways(&x);
    q8_0_both_ways(&[0.0; 32]);
}

proptest! {
    #[test]
    fn activation_quantizer_is_the_reference(
        x in (1..4usize).prop_flat_map(|blocks| proptest::collection::vec(
            prop_oneof![
                proptest::num::f32::NORMAL | proptest::num::f32::SUBNORMAL | proptest::num::f32::ZERO,
                (-254i32..=254).prop_map(|k| k as f32 * 0.5),
            ],
            32 * blocks,
        ))
    ) {
        q8_0_both_ways(&x);
    }
}
