use super::*;
use proptest::prelude::*;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn gauss(&mut self) -> f64 {
        let u1 = ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = ((self.next() >> 11) as f64) / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn as_i8(v: Vec<u8>) -> Vec<i8> {
    v.into_iter().map(|x| x as i8).collect()
}

/// The independent reference: i64 sums (no wrapping can occur at these sizes).
fn reference<A: Copy + Into<i64>>(
    m: usize,
    n: usize,
    k: usize,
    a: &[A],
    lda: usize,
    b: &[i8],
    ldb: usize,
) -> Vec<i64> {
    let mut c = vec![0i64; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|kk| a[i * lda + kk].into() * i64::from(b[kk * ldb + j])).sum();
        }
    }
    c
}

/// Runs every path, overwrite and accumulate, with padding in the leading dimensions, and
/// compares with the reference; the padding of C must stay untouched.
fn check_all_paths<A: AElement + Into<i64>>(
    m: usize,
    n: usize,
    k: usize,
    a: &[A],
    lda: usize,
    b: &[i8],
    ldb: usize,
) {
    let want = reference(m, n, k, a, lda, b, ldb);
    let ldc = n + 3;
    let c_len = matrix_len(m, n, ldc).unwrap() + 5;
    let packed = PackedI8::pack(k, n, b, ldb).unwrap();
    for isa in Isa::available() {
        for update in [Update::Overwrite, Update::Accumulate] {
            for path in [None, Some(PlainPath::Auto), Some(PlainPath::Stream), Some(PlainPath::Pack)] {
                let mut c = vec![7i32; c_len];
                match path {
                    None => gemm_packed_on(isa, m, a, lda, &packed, &mut c, ldc, update).unwrap(),
                    Some(path) => {
                        gemm_path_on(isa, path, update, m, n, k, a, lda, b, ldb, &mut c, ldc).unwrap()
                    }
                }
                for i in 0..m {
                    for j in (0..ldc).take_while(|j| i * ldc + j < c.len()) {
                        let got = i64::from(c[i * ldc + j]);
                        let expected = if j >= n {
                            7
                        } else {
                            want[i * n + j] + if update == Update::Accumulate { 7 } else { 0 }
                        };
                        assert_eq!(got, expected, "{isa} {update:?} {path:?} m={m} n={n} k={k} at ({i},{j})");
                    }
                }
                assert!(c[matrix_len(m, n, ldc).unwrap()..].iter().all(|&v| v == 7), "wrote past C");
            }
        }
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (0, 5, 3),
    (4, 0, 3),
    (3, 5, 0),
    (1, 17, 3),
    (7, 1, 13),
    (6, 16, 4),
    (13, 31, 37),
    (12, 32, 520),
    (125, 19, 9),
    (29, 47, 515),
    (2, 70, 1027),
    // Enough rows that the packed A block exceeds A_WHOLE_DEPTH_BYTES: depth-blocked, C accumulated.
    (130, 17, 1030),
    // The same past AVX-512's whole-depth limit (u8 A only: MC x 1638 bytes).
    (121, 70, 1700),
    // The plain API's blocks of B rows (PLAIN_BLOCK_BYTES / n rounded up to 64: 512 here), the
    // last one ending in a partial quad.
    (40, 2100, 1103),
    // Streaming: every row-group count up to STREAM_MAX_ROWS (32) and past it, odd k across a
    // STREAM_PAIRS block, column tails, several k blocks.
    (3, 16, 64),
    (5, 33, 65),
    (11, 48, 129),
    (23, 97, 131),
    (32, 64, 2),
    (33, 19, 7),
    (1, 257, 1001),
    // The AVX-512 banded path (m <= 6): bands of 16 rows of B (8 in the test below) with rows
    // past the last whole band, masked column tails, several column panels
    // (STREAM_BAND_SCRATCH_BYTES: 131072 columns at m = 1, 26176 at m = 5; the second panel
    // here has a tail), and at m = 1 enough work for threads to split the columns (their ranges
    // start past 0).
    (1, 63, 5),
    (2, 129, 14),
    (4, 65, 8),
    (6, 700, 35),
    (5, 26300, 3),
    (1, 131150, 2),
    (1, 1000, 2100),
    // Two banded row groups (m = 7, 8: up to STREAM_BAND_MAX_ROWS).
    (8, 100, 37),
];

#[test]
fn every_path_matches_reference_on_random_shapes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for &(m, n, k) in SHAPES {
        let (lda, ldb) = (k + 1, n + 2);
        let a = rng.bytes(matrix_len(m, k, lda).unwrap());
        let b = as_i8(rng.bytes(matrix_len(k, n, ldb).unwrap()));
        check_all_paths(m, n, k, &a, lda, &b, ldb);
        check_all_paths(m, n, k, &as_i8(a), lda, &b, ldb);
    }
}

#[test]
fn streaming_with_rows_of_b_a_page_apart_matches_reference() {
    // ldb a multiple of 4 KiB: the AVX-512 banded path takes 8-row bands (16 rows elsewhere);
    // k = 8 (one whole band), 19 (two and three rows), 16 + 5.
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for (m, n, k, ldb) in [(1, 130, 8, 4096), (3, 64, 19, 4096), (6, 77, 21, 2048), (2, 200, 16, 8192)] {
        let lda = k + 3;
        let a = rng.bytes(matrix_len(m, k, lda).unwrap());
        let b = as_i8(rng.bytes(matrix_len(k, n, ldb).unwrap()));
        check_all_paths(m, n, k, &a, lda, &b, ldb);
        check_all_paths(m, n, k, &as_i8(a), lda, &b, ldb);
    }
}

#[test]
fn saturation_patterns_are_exact() {
    let (m, n, k) = (13, 21, 260);
    // all 255 x all -128, alternating extremes, and the i8 edges.
    let patterns: Vec<(Vec<u8>, Vec<i8>)> = vec![
        (vec![255; m * k], vec![-128; k * n]),
        (vec![255; m * k], vec![127; k * n]),
        (
            (0..m * k).map(|i| if i % 2 == 0 { 255 } else { 0 }).collect(),
            (0..k * n).map(|i| if i % 3 == 0 { -128 } else { 127 }).collect(),
        ),
        (
            (0..m * k).map(|i| if (i / 2) % 2 == 0 { 255 } else { 128 }).collect(),
            (0..k * n).map(|i| if (i / 2) % 2 == 0 { -128 } else { -127 }).collect(),
        ),
    ];
    for (a, b) in &patterns {
        check_all_paths(m, n, k, a, k, b, n);
        check_all_paths(m, n, k, &as_i8(a.clone()), k, b, n);
        // i8 A = -128 everywhere (shifts to 0) and 127 everywhere (shifts to 255).
        check_all_paths(m, n, k, &vec![-128i8; m * k], k, b, n);
        check_all_paths(m, n, k, &vec![127i8; m * k], k, b, n);
    }
}

#[test]
fn seven_bit_operands_take_the_fast_path_and_stay_exact() {
    let mut rng = Rng(42);
    let (m, n, k) = (19, 35, 133);
    let b_small: Vec<i8> = rng.bytes(k * n).into_iter().map(|v| (v % 128) as i8 - 64).collect();
    assert!(PackedI8::pack(k, n, &b_small, n).unwrap().is_seven_bit());
    let a_full = rng.bytes(m * k);
    check_all_paths(m, n, k, &a_full, k, &b_small, n);
    let a_small: Vec<u8> = rng.bytes(m * k).into_iter().map(|v| v & 127).collect();
    let b_full = as_i8(rng.bytes(k * n));
    assert!(!PackedI8::pack(k, n, &b_full, n).unwrap().is_seven_bit());
    check_all_paths(m, n, k, &a_small, k, &b_full, n);
}

#[test]
fn large_products_split_across_threads_stay_exact() {
    let mut rng = Rng(7);
    // above PARALLEL_MIN_MACS: split by column panels, then (n small) by rows.
    for (m, n, k) in [(70, 100, 300), (301, 20, 400)] {
        let a = rng.bytes(m * k);
        let b = as_i8(rng.bytes(k * n));
        let want = reference(m, n, k, &a, k, &b, n);
        for isa in Isa::available() {
            let mut c = vec![0i32; m * n];
            gemm_on(isa, Update::Overwrite, m, n, k, &a, k, &b, n, &mut c, n).unwrap();
            assert!(c.iter().zip(&want).all(|(&g, &w)| i64::from(g) == w), "{isa} {m}x{n}x{k}");
        }
    }
}

#[test]
fn the_plain_apis_reused_packing_buffer_never_leaks_an_earlier_b() {
    let mut rng = Rng(99);
    // Covered shapes (n a multiple of 64, k of 4) skip zeroing; a shape with padding follows a
    // larger one, then the larger one comes back with other data.
    for (m, n, k) in [(40, 128, 64), (40, 128, 64), (37, 70, 33), (37, 64, 8), (40, 128, 64), (41, 17, 5)] {
        let a = rng.bytes(m * k);
        let b = as_i8(rng.bytes(k * n));
        let want = reference(m, n, k, &a, k, &b, n);
        for isa in Isa::available() {
            let mut c = vec![7i32; m * n];
            gemm_path_on(isa, PlainPath::Pack, Update::Overwrite, m, n, k, &a, k, &b, n, &mut c, n).unwrap();
            assert!(c.iter().zip(&want).all(|(&g, &w)| i64::from(g) == w), "{isa} {m}x{n}x{k}");
        }
    }
}

#[test]
fn packing_the_transpose_agrees_and_column_sums_are_exact() {
    let mut rng = Rng(11);
    // Below, at and past the AVX-512 packer's 64-column strips, k with and without a partial quad,
    // B full-range and 7-bit.
    for (k, n, seven) in
        [(37, 23, false), (37, 130, false), (64, 64, true), (130, 200, false), (131, 64, true)]
    {
        let ldb = n + 3;
        let b: Vec<i8> =
            as_i8(rng.bytes(k * ldb)).into_iter().map(|v| if seven { v / 2 } else { v }).collect();
        let w: Vec<i8> = (0..n * k).map(|i| b[(i % k) * ldb + i / k]).collect();
        let p = PackedI8::pack(k, n, &b, ldb).unwrap();
        let t = PackedI8::pack_transposed(n, k, &w, k).unwrap();
        assert_eq!((p.k(), p.n(), t.k(), t.n()), (k, n, k, n));
        let sums: Vec<i32> = (0..n).map(|j| (0..k).map(|kk| i32::from(b[kk * ldb + j])).sum()).collect();
        assert_eq!(p.col_sums(), &sums[..], "{k}x{n}");
        assert_eq!(t.col_sums(), &sums[..], "{k}x{n}");
        let in_range = (0..k).all(|kk| b[kk * ldb..kk * ldb + n].iter().all(|v| (-64..=63).contains(v)));
        assert_eq!(p.is_seven_bit(), in_range, "{k}x{n}");
        assert_eq!(t.is_seven_bit(), in_range, "{k}x{n}");
        for isa in Isa::available() {
            let a = rng.bytes(5 * k);
            let (mut c1, mut c2) = (vec![0; 5 * n], vec![0; 5 * n]);
            gemm_packed_on(isa, 5, &a, k, &p, &mut c1, n, Update::Overwrite).unwrap();
            gemm_packed_on(isa, 5, &a, k, &t, &mut c2, n, Update::Overwrite).unwrap();
            assert_eq!(c1, c2, "{isa} {k}x{n}");
            let want = reference(5, n, k, &a, k, &b, ldb);
            assert!(c1.iter().zip(&want).all(|(&g, &w)| i64::from(g) == w), "{isa} {k}x{n}");
        }
    }
}

#[test]
fn empty_dimensions_are_valid_and_k_zero_overwrite_zeroes_c() {
    let mut c = vec![5i32; 6];
    gemm_u8i8_i32(2, 3, 0, &[], 0, &[], 3, &mut c, 3).unwrap();
    assert_eq!(c, vec![0; 6]);
    let mut c = vec![5i32; 6];
    gemm_u8i8_i32_acc(2, 3, 0, &[], 0, &[], 3, &mut c, 3).unwrap();
    assert_eq!(c, vec![5; 6]);
    gemm_i8i8_i32(0, 3, 4, &[], 4, &[0; 12], 3, &mut [], 3).unwrap();
    gemm_i8i8_i32_acc(2, 0, 4, &[0; 8], 4, &[], 0, &mut [], 0).unwrap();
}

#[test]
fn bad_arguments_are_errors_and_nothing_is_written() {
    let a = [1u8; 12];
    let b = [1i8; 12];
    let mut c = [9i32; 9];
    let cases: Vec<(usize, usize, usize, usize, usize, usize)> = vec![
        (3, 3, 4, 3, 3, 3),          // lda < k
        (3, 3, 4, 4, 2, 3),          // ldb < n
        (3, 3, 4, 4, 3, 2),          // ldc < n
        (4, 3, 4, 4, 3, 3),          // A too short
        (3, 4, 4, 4, 4, 4),          // B and C too short
        (3, 3, 4, usize::MAX, 3, 3), // A extent overflows
        (usize::MAX, 3, 4, 4, 3, 3), // rows overflow
    ];
    for (m, n, k, lda, ldb, ldc) in cases {
        assert!(
            gemm_u8i8_i32(m, n, k, &a, lda, &b, ldb, &mut c, ldc).is_err(),
            "{m} {n} {k} {lda} {ldb} {ldc}"
        );
        assert!(gemm_i8i8_i32_acc(m, n, k, &b, lda, &b, ldb, &mut c, ldc).is_err());
        for isa in Isa::available() {
            for path in [PlainPath::Stream, PlainPath::Pack] {
                let r = gemm_path_on(isa, path, Update::Overwrite, m, n, k, &a, lda, &b, ldb, &mut c, ldc);
                assert!(r.is_err(), "{isa} {path:?}");
            }
        }
    }
    assert_eq!(c, [9; 9]);
    let packed = PackedI8::pack(4, 3, &b, 3).unwrap();
    assert!(gemm_packed(3, &a, 3, &packed, &mut c, 3, Update::Overwrite).is_err());
    assert!(gemm_packed(3, &a, 4, &packed, &mut c[..8], 3, Update::Overwrite).is_err());
    assert_eq!(c, [9; 9]);
    assert!(PackedI8::pack(4, 4, &b, 4).is_err());
    // Empty matrices with any leading dimension pack (and hold nothing).
    assert_eq!(PackedI8::pack_transposed(3, 0, &[], 5).unwrap().col_sums(), &[0, 0, 0]);
    assert_eq!(PackedI8::pack(2, 0, &[], 7).unwrap().n(), 0);
    assert!(PackedI8::pack_transposed(3, 5, &b, 4).is_err());
}

fn relative_frobenius_error(
    layer: &QuantLinear,
    mode: ActivationQuant,
    w: &[f32],
    bias: &[f32],
    x: &[f32],
    batch: usize,
) -> f64 {
    let (n, k) = (layer.out_features(), layer.in_features());
    let mut y = vec![0f32; batch * n];
    layer.forward(x, batch, mode, &mut y).unwrap();
    let (mut err, mut norm) = (0f64, 0f64);
    for i in 0..batch {
        for j in 0..n {
            let exact: f64 =
                (0..k).map(|kk| f64::from(x[i * k + kk]) * f64::from(w[j * k + kk])).sum::<f64>()
                    + f64::from(bias[j]);
            err += (f64::from(y[i * n + j]) - exact).powi(2);
            norm += exact.powi(2);
        }
    }
    (err / norm).sqrt()
}

#[test]
fn quantized_linear_is_within_one_percent_of_the_f32_product() {
    let mut rng = Rng(2024);
    let (batch, k, n) = (33, 96, 70);
    let w: Vec<f32> = (0..n * k).map(|_| rng.gauss() as f32).collect();
    let x: Vec<f32> = (0..batch * k).map(|_| rng.gauss() as f32 + 0.3).collect();
    let bias: Vec<f32> = (0..n).map(|_| rng.gauss() as f32 * 0.1).collect();
    let layer = QuantLinear::from_float(&w, n, k, Some(&bias), false).unwrap();
    for mode in [ActivationQuant::U8Affine, ActivationQuant::I8Symmetric] {
        let e = relative_frobenius_error(&layer, mode, &w, &bias, &x, batch);
        assert!(e < 0.01, "{mode:?}: relative error {e}");
        assert!(e > 1e-5, "{mode:?}: suspiciously exact {e}");
    }
    // 7-bit weights: every product on the fast path, error about twice as large.
    let reduced = QuantLinear::from_float(&w, n, k, Some(&bias), true).unwrap();
    let e = relative_frobenius_error(&reduced, ActivationQuant::U8Affine, &w, &bias, &x, batch);
    assert!(e < 0.03, "reduced range: relative error {e}");
}

#[test]
fn quantized_linear_paths_agree_and_refuse_bad_input() {
    let mut rng = Rng(5);
    let (batch, k, n) = (7, 50, 21);
    let w: Vec<f32> = (0..n * k).map(|_| rng.gauss() as f32).collect();
    let x: Vec<f32> = (0..batch * k).map(|_| rng.gauss() as f32).collect();
    let layer = QuantLinear::from_float(&w, n, k, None, false).unwrap();
    for mode in [ActivationQuant::U8Affine, ActivationQuant::I8Symmetric] {
        let mut first = vec![0f32; batch * n];
        layer.forward_on(Isa::Scalar, &x, batch, mode, &mut first).unwrap();
        for isa in Isa::available() {
            let mut y = vec![0f32; batch * n];
            layer.forward_on(isa, &x, batch, mode, &mut y).unwrap();
            assert_eq!(y, first, "{isa} {mode:?}");
        }
    }
    let mut y = vec![1f32; batch * n];
    let mut bad = x.clone();
    bad[3] = f32::NAN;
    assert!(layer.forward(&bad, batch, ActivationQuant::U8Affine, &mut y).is_err());
    assert!(layer.forward(&x[..batch * k - 1], batch, ActivationQuant::U8Affine, &mut y).is_err());
    assert!(layer.forward(&x, batch, ActivationQuant::I8Symmetric, &mut y[..batch * n - 1]).is_err());
    assert!(y.iter().all(|&v| v == 1.0));
    assert!(QuantLinear::from_int8(&[1, 2, 3, 4], 2, 2, &[1.0, 0.0], None, None).is_err());
    assert!(QuantLinear::from_float(&[1.0, 2.0, 3.0], 2, 2, None, false).is_err());
    assert!(QuantLinear::from_int8(&[1, 2, 3, 4], 2, 2, &[1.0, 1.0], Some(&[0, 128]), None).is_err());
    assert!(QuantLinear::from_int8(&[1, 2, 3, 4], 2, 2, &[1.0, 1.0], Some(&[0]), None).is_err());
}

#[test]
fn affine_weights_give_the_product_of_their_centred_values() {
    // Weights q with zero points z per channel against the symmetric layer of q - z (which fits i8
    // here): the integer sums are the same, so the outputs must be equal to the bit, on every path.
    let mut rng = Rng(77);
    let (batch, k, n) = (5, 67, 19);
    let zero_points: Vec<i32> = (0..n).map(|j| (j as i32 * 13) % 41 - 20).collect();
    let q: Vec<i8> = (0..n * k).map(|_| ((rng.gauss() * 30.0).clamp(-100.0, 100.0)) as i8).collect();
    let centred: Vec<i8> =
        q.iter().enumerate().map(|(i, &v)| (i32::from(v) - zero_points[i / k]) as i8).collect();
    let scales: Vec<f32> = (0..n).map(|j| 0.01 + j as f32 * 1e-3).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.5).collect();
    let affine = QuantLinear::from_int8(&q, n, k, &scales, Some(&zero_points), Some(&bias)).unwrap();
    let symmetric = QuantLinear::from_int8(&centred, n, k, &scales, None, Some(&bias)).unwrap();
    let x: Vec<f32> = (0..batch * k).map(|_| rng.gauss() as f32 + 0.2).collect();
    for mode in [ActivationQuant::U8Affine, ActivationQuant::I8Symmetric] {
        for isa in Isa::available() {
            let (mut ya, mut ys) = (vec![0f32; batch * n], vec![0f32; batch * n]);
            affine.forward_on(isa, &x, batch, mode, &mut ya).unwrap();
            symmetric.forward_on(isa, &x, batch, mode, &mut ys).unwrap();
            assert_eq!(ya, ys, "{isa} {mode:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn every_path_matches_reference_on_arbitrary_data(
        m in 0usize..20, n in 0usize..40, k in 0usize..80, pad in 0usize..3, seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed | 1);
        let (lda, ldb) = (k + pad, n + pad);
        let a = rng.bytes(matrix_len(m, k, lda).unwrap());
        let b = as_i8(rng.bytes(matrix_len(k, n, ldb).unwrap()));
        check_all_paths(m, n, k, &a, lda, &b, ldb);
        check_all_paths(m, n, k, &as_i8(a), lda, &b, ldb);
    }
}

#[test]
fn a_handle_in_a_layout_the_kernel_does_not_read_is_refused() {
    let b = [3i8; 12];
    let packed = PackedI8::pack(4, 3, &b, 3).unwrap();
    assert_eq!(packed.layout(), BLayout::Quad16x4);
    let foreign = packed.relabelled(BLayout::Unread);
    let a = [1u8; 8];
    let mut c = [9i32; 6];
    for isa in Isa::available() {
        let kernel = Kernel::new(isa).unwrap();
        assert_eq!(kernel.b_layout(), BLayout::Quad16x4, "{isa}");
        assert_eq!((kernel.mr(), kernel.nr(), kernel.ku()), (MR, NR, KU));
        let err = gemm_packed_on(isa, 2, &a, 4, &foreign, &mut c, 3, Update::Overwrite).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { name: "packed", .. }), "{isa}: {err}");
        assert!(err.to_string().contains("unread"), "{err}");
    }
    assert_eq!(c, [9; 6]);
}

#[test]
fn kernels_exist_only_for_available_tiers_and_state_their_properties() {
    for &isa in Isa::ALL {
        let kernel = Kernel::new(isa);
        assert_eq!(kernel.is_ok(), isa.is_available(), "{isa}");
        if let Ok(kernel) = kernel {
            assert!(kernel.a_layouts().contains(&ALayout::Narrow));
            // Only a kernel with a wide exact path may need the 7-bit condition on its narrow one.
            assert!(!kernel.narrow_needs_seven_bit() || kernel.a_layouts().contains(&ALayout::Wide));
        }
    }
    assert!(!Kernel::new(Isa::Scalar).unwrap().narrow_needs_seven_bit());
}

#[test]
fn streaming_is_exact_at_the_extremes_with_long_depth() {
    // k = 4097 (odd, many blocks), the sums reach 255 * 128 * 4097 ~ 1.3e8 per output.
    let (m, n, k) = (3, 40, 4097);
    for (av, bv) in [(255u8, -128i8), (255, 127), (0, -128)] {
        let a = vec![av; m * k];
        let b = vec![bv; k * n];
        let want = i64::from(av) * i64::from(bv) * k as i64;
        for isa in Isa::available() {
            let mut c = vec![0i32; m * n];
            gemm_path_on(isa, PlainPath::Stream, Update::Overwrite, m, n, k, &a, k, &b, n, &mut c, n)
                .unwrap();
            assert!(c.iter().all(|&v| i64::from(v) == want), "{isa} {av} {bv}");
            let ai: Vec<i8> = vec![-128; m * k];
            gemm_path_on(isa, PlainPath::Stream, Update::Overwrite, m, n, k, &ai, k, &b, n, &mut c, n)
                .unwrap();
            assert!(c.iter().all(|&v| i64::from(v) == -128 * i64::from(bv) * k as i64), "{isa} i8");
        }
    }
}

/// The layer's output computed the plain way: ONNX's per-row parameters, the scalar quantizer,
/// i64 sums and the i64 epilogue, with the layer's f32 operations in the same order.
#[allow(clippy::too_many_arguments)]
fn linear_reference(
    q: &[i8],
    scales: &[f32],
    zero_points: &[i32],
    bias: &[f32],
    x: &[f32],
    batch: usize,
    (k, n): (usize, usize),
    mode: ActivationQuant,
) -> Vec<f32> {
    let mut y = vec![0f32; batch * n];
    for i in 0..batch {
        let row = &x[i * k..(i + 1) * k];
        let lo = row.iter().fold(0f32, |a, &v| a.min(v));
        let hi = row.iter().fold(0f32, |a, &v| a.max(v));
        let (xq, scale, zero): (Vec<i64>, f32, i64) = match mode {
            ActivationQuant::U8Affine => {
                let s = (hi - lo) / 255.0;
                let s = if s.is_normal() { s } else { 1.0 };
                let z = (-lo / s).round_ties_even().clamp(0.0, 255.0) as u8;
                let mut out = vec![0u8; k];
                crate::kernels::convert::scalar::quantize_u8(row, s, z, &mut out);
                (out.into_iter().map(i64::from).collect(), s, i64::from(z))
            }
            ActivationQuant::I8Symmetric => {
                let s = hi.max(-lo) / 127.0;
                let s = if s.is_normal() { s } else { 1.0 };
                let mut out = vec![0i8; k];
                crate::kernels::convert::scalar::quantize_i8(row, s, 0, &mut out);
                (out.into_iter().map(i64::from).collect(), s, 0)
            }
        };
        for j in 0..n {
            let zw = zero_points.get(j).map_or(0, |&z| i64::from(z));
            let centred: i64 =
                (0..k).map(|kk| (xq[kk] - zero) * (i64::from(q[j * k + kk]) - zw)).sum::<i64>();
            y[i * n + j] = centred as f32 * (scale * scales[j]) + bias[j];
        }
    }
    y
}

#[test]
fn quantized_linear_split_across_threads_matches_the_plain_computation() {
    // Above PARALLEL_MIN_MACS: rows quantized, multiplied and finished in chunks on several
    // threads (pools of 1, 2 and 3), chunks ending mid-tile; a depth beyond the i32 epilogue's
    // bound takes the i64 one. Symmetric weights on AVX-512 are dequantized in the kernel: A packed
    // (k = 131, 7) or read where it lies (k a multiple of four), tiles of four, two and one
    // panels and a partial last panel (n = 67, 112, 40, 3); a depth too long for one block
    // (k = 1700 at 120 rows) keeps the i32 buffer and reads A in depth blocks. Up to 256 rows on
    // AVX-512 the threads split the columns instead (tiles of four panels, the last partial).
    let mut rng = Rng(31);
    for (batch, k, n, affine) in [
        (301, 131, 67, false),
        (257, 96, 90, true),
        (3, 33_001, 5, true),
        (1, 7, 3, false),
        (203, 384, 112, false),
        (45, 64, 40, false),
        (240, 1700, 20, false),
        (128, 384, 1000, false),
        (100, 1536, 72, false),
    ] {
        let q: Vec<i8> = as_i8(rng.bytes(n * k));
        let zero_points: Vec<i32> =
            if affine { (0..n).map(|j| (j as i32 * 29) % 255 - 127).collect() } else { Vec::new() };
        let scales: Vec<f32> = (0..n).map(|j| 1e-3 + j as f32 * 1e-5).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.gauss() as f32).collect();
        let zp = Some(&zero_points[..]).filter(|z| !z.is_empty());
        let layer = QuantLinear::from_int8(&q, n, k, &scales, zp, Some(&bias)).unwrap();
        // Rows of different ranges, one all zero, one all negative.
        let mut x: Vec<f32> =
            (0..batch * k).map(|i| (rng.gauss() * (1.0 + (i / k % 7) as f64)) as f32).collect();
        x[..k].fill(0.0);
        if batch > 2 {
            x[2 * k..3 * k].iter_mut().for_each(|v| *v = -v.abs() - 0.5);
        }
        for mode in [ActivationQuant::U8Affine, ActivationQuant::I8Symmetric] {
            let want = linear_reference(&q, &scales, &zero_points, &bias, &x, batch, (k, n), mode);
            for threads in [1, 2, 3] {
                for isa in Isa::available() {
                    let mut y = vec![f32::NAN; batch * n];
                    on_threads(threads, || layer.forward_on(isa, &x, batch, mode, &mut y)).unwrap();
                    assert_eq!(y, want, "{isa} {mode:?} {batch}x{k}x{n} threads {threads}");
                }
            }
        }
    }
}

/// `f` on a rayon pool of `threads` threads (feature `parallel`), else on the calling thread.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "parallel")]
    return rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f);
    #[cfg(not(feature = "parallel"))]
    {
        let _ = threads;
        f()
    }
}

#[test]
fn quantized_linear_refuses_a_bad_row_of_a_large_batch_before_writing() {
    let (batch, k, n) = (400, 64, 80);
    let layer = QuantLinear::from_float(&vec![0.5f32; n * k], n, k, None, false).unwrap();
    let mut x = vec![1f32; batch * k];
    x[350 * k + 3] = -3e38;
    x[350 * k + 4] = 3e38;
    let mut y = vec![2f32; batch * n];
    let err = layer.forward(&x, batch, ActivationQuant::U8Affine, &mut y).unwrap_err();
    assert!(err.to_string().contains("row 350"), "{err}");
    // A NaN is reported before a too-wide row, whichever comes first.
    x[390 * k] = f32::NAN;
    let err = layer.forward(&x, batch, ActivationQuant::U8Affine, &mut y).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index, .. } if index == 390 * k), "{err}");
    assert!(y.iter().all(|&v| v == 2.0));
}
