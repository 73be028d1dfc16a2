use super::*;
use crate::kernels::gemm_int8::{ActivationQuant, Kernel, QuantLinear};
use crate::kernels::test_rng::Rng;
use crate::kernels::Isa;
use proptest::prelude::*;

/// Random 2:4 integers (`n x k`): each group of four has 0, 1 or 2 nonzeros at random positions,
/// values over the whole range `lo ..= 127` (the extremes often), zero groups and rows included.
fn two_four_ints(rng: &mut Rng, n: usize, k: usize, lo: i8) -> Vec<i8> {
    let mut w = vec![0i8; n * k];
    for group in w.chunks_exact_mut(4) {
        let count = rng.below(3);
        for _ in 0..count {
            let pos = rng.below(4) as usize;
            let v = match rng.below(5) {
                0 => 127,
                1 => lo,
                _ => (rng.below(256) as i64 - 128).clamp(i64::from(lo), 127) as i8,
            };
            group[pos] = if v == 0 { 1 } else { v };
        }
    }
    // One all-zero row and one all-extreme pattern where the shape allows.
    if n > 2 {
        w[k..2 * k].fill(0);
        for g in w[2 * k..3 * k].chunks_exact_mut(4) {
            g.copy_from_slice(&[127, 0, 0, lo]);
        }
    }
    w
}

/// Activations whose rows reach both ends of their range (u8 0 and 255, i8 -127 and 127), one
/// all-zero row, one all-negative row.
fn activations(rng: &mut Rng, batch: usize, k: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..batch * k).map(|_| rng.gauss() as f32).collect();
    if batch > 1 {
        x[k..2 * k].fill(0.0);
    }
    if batch > 3 {
        x[3 * k..4 * k].iter_mut().for_each(|v| *v = -v.abs() - 0.25);
    }
    x
}

/// The independent reference of the integer product: i64 sums over the dense integers.
fn product_reference(w: &[i8], n: usize, k: usize, q: &[u8], rows: usize, signed: bool) -> Vec<i64> {
    let mut c = vec![0i64; rows * n];
    for i in 0..rows {
        for o in 0..n {
            c[i * n + o] = (0..k)
                .map(|kk| {
                    let a = if signed { i64::from(q[i * k + kk] as i8) } else { i64::from(q[i * k + kk]) };
                    a * i64::from(w[o * k + kk])
                })
                .sum();
        }
    }
    c
}

/// `y` of the 2:4 layer equals the dense layer's bit for bit on every tier and in both modes.
fn assert_same_y(sparse: &QuantLinear, dense: &QuantLinear, x: &[f32], batch: usize, what: &str) {
    let n = dense.out_features();
    for isa in Isa::available() {
        for mode in [ActivationQuant::U8Affine, ActivationQuant::I8Symmetric] {
            let mut want = vec![f32::NAN; batch * n];
            dense.forward_on(isa, x, batch, mode, &mut want).unwrap();
            let mut got = vec![f32::NAN; batch * n];
            sparse.forward_on(isa, x, batch, mode, &mut got).unwrap();
            let (want, got): (Vec<u32>, Vec<u32>) =
                (want.iter().map(|v| v.to_bits()).collect(), got.iter().map(|v| v.to_bits()).collect());
            if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i]) {
                panic!(
                    "{what} {isa} {mode:?}: y[{i}] = {} (dense {})",
                    f32::from_bits(got[i]),
                    f32::from_bits(want[i])
                );
            }
        }
    }
}

fn check_shape(rng: &mut Rng, batch: usize, k: usize, n: usize) {
    let q = two_four_ints(rng, n, k, -127);
    let scales: Vec<f32> = (0..n).map(|j| 1e-3 + j as f32 * 1e-5).collect();
    let bias: Vec<f32> = (0..n).map(|_| rng.gauss() as f32).collect();
    let sparse = QuantLinear::from_int8_2_4(&q, n, k, &scales, Some(&bias)).unwrap();
    let dense = QuantLinear::from_int8(&q, n, k, &scales, None, Some(&bias)).unwrap();
    assert!(sparse.is_2_4() && !dense.is_2_4());
    let x = activations(rng, batch, k);
    assert_same_y(&sparse, &dense, &x, batch, &format!("int8 {batch}x{k}x{n}"));
    // From f32 weights: the same scales and integers as from_float.
    let w: Vec<f32> = q.iter().map(|&v| f32::from(v) * (0.01 + rng.gauss().abs() as f32)).collect();
    let w = &w;
    let sparse = QuantLinear::from_float_2_4(w, n, k, Some(&bias), false).unwrap();
    let dense = QuantLinear::from_float(w, n, k, Some(&bias), false).unwrap();
    assert_eq!(sparse.scales(), dense.scales());
    assert_same_y(&sparse, &dense, &x, batch, &format!("f32 {batch}x{k}x{n}"));
}

#[test]
fn two_four_layer_gives_the_dense_layers_y_bit_for_bit() {
    let mut rng = Rng(0x5eed_2424);
    for &k in &[8, 24, 64, 72, 384, 1544] {
        for &n in &[1, 15, 16, 17, 63, 384] {
            for &batch in &[0, 1, 7, 33, 130] {
                // The largest products only once per depth (the scalar tiers are slow).
                if batch == 130 && n == 384 && k > 384 {
                    continue;
                }
                check_shape(&mut rng, batch, k, n);
            }
        }
    }
    check_shape(&mut rng, 130, 1544, 384);
}

#[test]
fn two_four_products_equal_the_i64_reference_at_the_extremes() {
    // -128 weights (from_int8 allows them), activations at 0, 255 and -128, 127.
    let mut rng = Rng(77);
    for &(rows, k, n) in &[(1, 8, 1), (7, 24, 17), (13, 1544, 33), (6, 72, 32), (12, 16, 16)] {
        let w = two_four_ints(&mut rng, n, k, -128);
        let sparse = Sparse24::pack(&w, n, k).unwrap();
        assert_eq!(sparse.unpack().unwrap(), w);
        for signed in [false, true] {
            for fill in [None, Some(0u8), Some(255), Some(0x80), Some(0x7f)] {
                let q: Vec<u8> = (0..rows * k).map(|_| fill.unwrap_or_else(|| rng.next() as u8)).collect();
                let want = product_reference(&w, n, k, &q, rows, signed);
                for isa in Isa::available() {
                    let mut c = vec![7i32; rows * n];
                    sparse.product(Kernel::new(isa).unwrap(), &q, rows, signed, &mut c);
                    let got: Vec<i64> = c.iter().map(|&v| i64::from(v)).collect();
                    assert_eq!(got, want, "{isa} signed {signed} fill {fill:?} {rows}x{k}x{n}");
                }
            }
        }
    }
}

#[test]
fn column_sums_and_decompression_match_the_dense_packing() {
    let mut rng = Rng(5);
    let (n, k) = (37, 72);
    let w = two_four_ints(&mut rng, n, k, -128);
    let sparse = Sparse24::pack(&w, n, k).unwrap();
    let dense = PackedI8::pack_transposed(n, k, &w, k).unwrap();
    assert_eq!(sparse.col_sums(), dense.col_sums());
    assert_eq!(sparse.dense().unwrap().col_sums(), dense.col_sums());
    assert_eq!(sparse.unpack().unwrap(), w);
}

#[test]
fn refuses_weights_that_are_not_two_four_and_bad_arguments() {
    let (n, k) = (4, 16);
    let mut w = vec![0f32; n * k];
    // Row 2, group 3: three nonzeros.
    w[2 * k + 12..2 * k + 15].copy_from_slice(&[1.0, -2.0, 3.0]);
    let err = QuantLinear::from_float_2_4(&w, n, k, None, false).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("row 2, group 3"), "{text}");
    let q: Vec<i8> = w.iter().map(|&v| v as i8).collect();
    let err = QuantLinear::from_int8_2_4(&q, n, k, &[1.0; 4], None).unwrap_err();
    assert!(err.to_string().contains("row 2, group 3"), "{err}");
    // A tiny f32 nonzero counts (the f32 weights must be 2:4, whatever quantization makes of them).
    let mut w = vec![0f32; n * k];
    w[..3].copy_from_slice(&[1.0, 1e-30, 1.0]);
    assert!(QuantLinear::from_float_2_4(&w, n, k, None, false)
        .unwrap_err()
        .to_string()
        .contains("row 0, group 0"));
    // Inputs not a multiple of 8.
    for k in [4, 12, 20] {
        let err = QuantLinear::from_float_2_4(&vec![0.0; n * k], n, k, None, false).unwrap_err();
        assert!(err.to_string().contains("multiple of 8"), "{err}");
    }
    // Non-finite weights, bad scales, short buffers, bad bias.
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut w = vec![0f32; n * k];
        w[5] = bad;
        assert!(matches!(
            QuantLinear::from_float_2_4(&w, n, k, None, false),
            Err(crate::Error::NonFinite { .. })
        ));
    }
    let q = vec![0i8; n * k];
    assert!(QuantLinear::from_int8_2_4(&q, n, k, &[1.0, 1.0, 0.0, 1.0], None).is_err());
    assert!(QuantLinear::from_int8_2_4(&q, n, k, &[1.0; 3], None).is_err());
    assert!(QuantLinear::from_int8_2_4(&q[1..], n, k, &[1.0; 4], None).is_err());
    assert!(QuantLinear::from_int8_2_4(&q, n, k, &[1.0; 4], Some(&[0.0, f32::NAN, 0.0, 0.0])).is_err());
    assert!(QuantLinear::from_float_2_4(&[0.0; 7], 1, 8, None, false).is_err());
}

#[test]
fn forward_refuses_bad_input_without_writing() {
    let mut rng = Rng(9);
    let (batch, k, n) = (5, 24, 17);
    let q = two_four_ints(&mut rng, n, k, -127);
    let layer = QuantLinear::from_int8_2_4(&q, n, k, &vec![0.01; n], None).unwrap();
    let mut x = activations(&mut rng, batch, k);
    x[3 * k + 2] = f32::NAN;
    for isa in Isa::available() {
        let mut y = vec![2f32; batch * n];
        assert!(layer.forward_on(isa, &x, batch, ActivationQuant::U8Affine, &mut y).is_err());
        assert!(layer.forward_on(isa, &x[..k], batch, ActivationQuant::U8Affine, &mut y).is_err());
        assert!(y.iter().all(|&v| v == 2.0));
        let mut short = vec![2f32; batch * n - 1];
        let x = activations(&mut rng, batch, k);
        assert!(layer.forward_on(isa, &x, batch, ActivationQuant::I8Symmetric, &mut short).is_err());
        assert!(short.iter().all(|&v| v == 2.0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn two_four_matches_dense_on_random_shapes(
        seed in any::<u64>(),
        batch in 0usize..40,
        blocks in 1usize..24,
        n in 1usize..70,
    ) {
        let mut rng = Rng(seed | 1);
        check_shape(&mut rng, batch, 8 * blocks, n);
    }
}

#[test]
fn two_four_layer_split_across_threads_gives_the_dense_layers_y() {
    // Above PARALLEL_MIN_MACS: chunks of rows on pools of 1, 2 and 3 threads, chunks ending
    // mid-tile (301 rows), a partial last panel (n = 130).
    let mut rng = Rng(41);
    let (batch, k, n) = (301, 384, 130);
    let q = two_four_ints(&mut rng, n, k, -127);
    let scales: Vec<f32> = (0..n).map(|j| 2e-3 + j as f32 * 1e-5).collect();
    let sparse = QuantLinear::from_int8_2_4(&q, n, k, &scales, None).unwrap();
    let dense = QuantLinear::from_int8(&q, n, k, &scales, None, None).unwrap();
    let x = activations(&mut rng, batch, k);
    for threads in [1, 2, 3] {
        #[cfg(feature = "parallel")]
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        #[cfg(feature = "parallel")]
        pool.install(|| assert_same_y(&sparse, &dense, &x, batch, &format!("threads {threads}")));
        #[cfg(not(feature = "parallel"))]
        assert_same_y(&sparse, &dense, &x, batch, &format!("threads {threads}"));
    }
}
