//! Every available path against a float64 product: `|got - exact| <= k * 2^-23 * sum_p |a_ip b_pj|`
//! (twice the unit roundoff per term, a bound any f32 summation order meets), and
//! non-finite results of the same class as the exact ones.

use super::blocking::{IN_PLACE_MAX_M, KC, KU_IN_PLACE, MC};
use super::*;
use crate::kernels::Isa;

/// Small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.unit()).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks `got[i]` against the exact value `exact` with magnitude sum `mag` over `k` terms.
fn assert_close(got: f32, exact: f64, mag: f64, k: usize, what: &str) {
    if exact.is_nan() {
        assert!(got.is_nan(), "{what}: got {got}, expected NaN");
    } else if exact.is_infinite() {
        assert_eq!(got as f64, exact, "{what}");
    } else {
        let bound = k as f64 * f32::EPSILON as f64 * mag;
        assert!((got as f64 - exact).abs() <= bound, "{what}: got {got}, exact {exact}, bound {bound}");
    }
}

/// The float64 product and magnitude sums of `A (m x k) * B (k x n)`.
#[allow(clippy::too_many_arguments)]
fn exact_product(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = a[i * lda + p] as f64 * b[p * ldb + j] as f64;
                s += t;
                mag += t.abs();
            }
            out.push((s, mag));
        }
    }
    out
}

const SENTINEL: f32 = -7.25;
/// The widest tile of any kernel (the AVX2 and NEON `nr`), for shapes around panel edges.
const NR: usize = 16;

/// Runs one GEMM shape with weights `b` on every path and checks it; C's padding stays untouched.
#[allow(clippy::too_many_arguments)]
fn check_gemm<W: WeightElement>(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[W],
    ldb: usize,
    ldc: usize,
) {
    let b32: Vec<f32> = b.iter().map(|w| w.to_f32()).collect();
    let exact = exact_product(m, n, k, a, lda, &b32, ldb);
    let c_len = matrix_len("c", m, n, ldc).unwrap() + 3;
    for isa in Isa::available() {
        let kernel = Kernel::for_isa(isa).unwrap();
        // The plain entry point (in place or packed, by m), the prepacked one, and the in-place
        // driver called directly, so both paths meet every shape.
        let mut c = vec![SENTINEL; c_len];
        gemm_on(isa, m, n, k, a, lda, b, ldb, &mut c, ldc).unwrap();
        let packed = PackedB::pack_for(kernel, k, n, b, ldb).unwrap();
        let mut c2 = vec![SENTINEL; c_len];
        gemm_packed_on(isa, m, a, lda, &packed, &mut c2, ldc).unwrap();
        let c3 = if m * n * k > 0 {
            let mut c3 = vec![SENTINEL; c_len];
            let span = matrix_len("c", m, n, ldc).unwrap();
            gemm_in_place(kernel, m, n, k, a, lda, b, ldb, &mut c3[..span], ldc).unwrap();
            c3
        } else {
            c.clone()
        };
        for (idx, ((&v, &v2), &v3)) in c.iter().zip(&c2).zip(&c3).enumerate() {
            let (i, j) = (idx / ldc.max(1), idx % ldc.max(1));
            if i < m && j < n {
                let (s, mag) = exact[i * n + j];
                let what = format!("{kernel} {} m={m} n={n} k={k} at ({i},{j})", std::any::type_name::<W>());
                assert_close(v, s, mag, k, &what);
                assert_close(v2, s, mag, k, &format!("{what} packed"));
                assert_close(v3, s, mag, k, &format!("{what} in place"));
            } else {
                assert_eq!((v, v2, v3), (SENTINEL, SENTINEL, SENTINEL), "{kernel}: wrote outside C at {idx}");
            }
        }
    }
}

fn shapes() -> Vec<(usize, usize, usize)> {
    let mut s = vec![
        (0, 0, 0),
        (0, 5, 3),
        (4, 0, 3),
        (3, 5, 0),
        (1, 1, 1),
        (1, 17, 9),
        (6, 16, 8),
        (7, 31, 13),
        (13, 3, 257),
        (MC + 7, NR * 2 + 5, KC + 3),
        (2 * MC + 11, 3 * NR + 1, 2 * KC + 5),
        (1, 5 * NR + 3, 2 * KU_IN_PLACE + 7),
        (2, NR, KC + 1),
        (5, 97, 31),
        (IN_PLACE_MAX_M, 2 * NR + 7, KU_IN_PLACE + 5),
        (IN_PLACE_MAX_M + 1, NR + 1, 41),
        (IN_PLACE_MAX_M, 1400 + 5, 21),
    ];
    let mut rng = Rng(42);
    for _ in 0..12 {
        s.push((rng.below(40), rng.below(70), rng.below(90)));
    }
    s
}

fn run_shapes<W: WeightElement>(to_w: fn(f32) -> W) {
    let mut rng = Rng(7);
    for (m, n, k) in shapes() {
        let (lda, ldb, ldc) = (k + rng.below(4), n + rng.below(4), n + rng.below(4));
        let a = rng.vec(matrix_len("a", m, k, lda).unwrap());
        let b: Vec<W> = rng.vec(matrix_len("b", k, n, ldb).unwrap()).into_iter().map(to_w).collect();
        check_gemm(m, n, k, &a, lda, &b, ldb, ldc);
    }
}

#[test]
fn gemm_f16_matches_exact_product_on_every_path() {
    run_shapes(f16::from_f32);
}

#[test]
fn gemm_bf16_matches_exact_product_on_every_path() {
    run_shapes(bf16::from_f32);
}

#[test]
fn gemm_f32_weights_match_exact_product_on_every_path() {
    run_shapes(|v| v);
}

#[test]
fn gemm_f16_edge_values() {
    let edges = [
        0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x3c00,
        0x3555,
    ];
    // m = 1 and 7 read B in place, m = IN_PLACE_MAX_M + 1 packs it in the plain call.
    for m in [1, 7, IN_PLACE_MAX_M + 1] {
        let (n, k) = (2 * NR + 3, 29);
        let mut rng = Rng(3);
        let a = rng.vec(m * k);
        let b: Vec<f16> = (0..k * n).map(|i| f16::from_bits(edges[(i * 7 + i / 5) % edges.len()])).collect();
        check_gemm(m, n, k, &a, k, &b, n, n);
        // Only finite weights, so every output is finite and the bound is exercised on large and tiny values.
        let finite: Vec<f16> =
            b.iter().map(|&w| if w.is_finite() { w } else { f16::from_bits(0x0001) }).collect();
        check_gemm(m, n, k, &a, k, &finite, n, n);
    }
}

#[test]
fn gemm_bf16_edge_values() {
    let edges = [0x0000, 0x8000, 0x0001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x7f80, 0xff80, 0x7fc0, 0x3f80];
    for m in [1, 8, IN_PLACE_MAX_M + 1] {
        let (n, k) = (NR + 9, 19);
        let mut rng = Rng(5);
        let a = rng.vec(m * k);
        let b: Vec<bf16> =
            (0..k * n).map(|i| bf16::from_bits(edges[(i * 5 + i / 3) % edges.len()])).collect();
        // 0x7f7f * 1 summed 19 times overflows f32 as it does f64 only if the signs agree; keep a small.
        let a: Vec<f32> = a.iter().map(|v| v * 1e-3).collect();
        check_gemm(m, n, k, &a, k, &b, n, n);
    }
}

fn check_gemv_all<W: GemvWeight + Copy>(
    n: usize,
    k: usize,
    w: &[W],
    ldw: usize,
    scales: &[f32],
    x: &[f32],
    run: impl Fn(Isa, &mut [f32]),
) {
    let w32: Vec<f32> = w.iter().map(|v| v.value()).collect();
    let exact = exact_product(n, 1, k, &w32, ldw, x, 1);
    for isa in Isa::available() {
        let mut y = vec![SENTINEL; n + 2];
        run(isa, &mut y);
        for i in 0..n {
            let (s, mag) = exact[i];
            let scale = scales[i] as f64;
            assert_close(
                y[i],
                s * scale,
                mag * scale.abs(),
                k + 1,
                &format!("{isa} gemv n={n} k={k} row {i}"),
            );
        }
        assert_eq!(&y[n..], &[SENTINEL; 2], "{isa}: wrote past y");
    }
}

#[test]
fn gemv_every_weight_type_matches_exact_product() {
    let mut rng = Rng(11);
    let mut shapes =
        vec![(0, 0), (0, 7), (5, 0), (1, 1), (3, 15), (4, 16), (9, 33), (17, 257), (300, 70), (5, 1031)];
    for _ in 0..10 {
        shapes.push((rng.below(50), rng.below(200)));
    }
    for (n, k) in shapes {
        let ldw = k + rng.below(5);
        let len = matrix_len("w", n, k, ldw).unwrap();
        let w = rng.vec(len);
        let x = rng.vec(k);
        let ones = vec![1.0f32; n];
        check_gemv_all(n, k, &w, ldw, &ones, &x, |isa, y| gemv_on(isa, n, k, &w, ldw, &x, y).unwrap());
        let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        check_gemv_all(n, k, &h, ldw, &ones, &x, |isa, y| gemv_on(isa, n, k, &h, ldw, &x, y).unwrap());
        let bh: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
        check_gemv_all(n, k, &bh, ldw, &ones, &x, |isa, y| gemv_on(isa, n, k, &bh, ldw, &x, y).unwrap());
        let q: Vec<i8> = (0..len).map(|i| [-128i8, 127, 0, -1, (rng.next() >> 56) as i8][i % 5]).collect();
        let scales: Vec<f32> = (0..n).map(|_| rng.unit() * 0.01).collect();
        check_gemv_all(n, k, &q, ldw, &scales, &x, |isa, y| {
            gemv_i8_on(isa, n, k, &q, ldw, &scales, &x, y).unwrap()
        });
    }
}

#[test]
fn gemv_large_enough_to_split_across_threads() {
    let (n, k) = (1030, 1100);
    let mut rng = Rng(13);
    let w: Vec<f16> = rng.vec(n * k).into_iter().map(f16::from_f32).collect();
    let x = rng.vec(k);
    check_gemv_all(n, k, &w, k, &vec![1.0; n], &x, |isa, y| gemv_on(isa, n, k, &w, k, &x, y).unwrap());
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let a = vec![1.0f32; 12];
    let b = vec![f16::ONE; 12];
    for isa in Isa::available() {
        let mut c = vec![SENTINEL; 16];
        let bad = [
            gemm_on(isa, 3, 4, 4, &a, 3, &b, 4, &mut c, 4),       // lda < k
            gemm_on(isa, 3, 4, 3, &a, 3, &b, 3, &mut c, 4),       // ldb < n
            gemm_on(isa, 3, 4, 3, &a, 3, &b, 4, &mut c, 3),       // ldc < n
            gemm_on(isa, 4, 4, 3, &a[..11], 3, &b, 4, &mut c, 4), // a too short
            gemm_on(isa, 3, 4, 4, &a, 4, &b, 4, &mut c, 4),       // b too short
            gemm_on(isa, 3, 6, 3, &a, 3, &b[..0], 6, &mut c, 6),  // b empty
            gemm_on(isa, 5, 4, 3, &a, 3, &b, 4, &mut c, 4),       // c and a too short
            gemm_on(isa, usize::MAX, 4, 3, &a, usize::MAX / 2, &b, 4, &mut c, 4), // overflow
        ];
        for (i, r) in bad.iter().enumerate() {
            assert!(r.is_err(), "{isa}: case {i} accepted");
        }
        assert!(matches!(bad[7], Err(Error::Overflow { .. })));
        assert!(matches!(bad[3], Err(Error::BufferTooSmall { .. })));
        assert!(c.iter().all(|&v| v == SENTINEL), "{isa}: C written on error");
        let mut y = vec![SENTINEL; 4];
        assert!(gemv_on(isa, 4, 3, &a, 2, &a, &mut y).is_err());
        assert!(gemv_on(isa, 4, 4, &a, 4, &a, &mut y).is_err());
        assert!(gemv_on(isa, 4, 3, &a, 3, &a[..2], &mut y).is_err());
        assert!(gemv_on(isa, 5, 2, &a, 2, &a, &mut y).is_err());
        assert!(gemv_i8_on(isa, 4, 3, &[0i8; 12], 3, &a[..3], &a, &mut y).is_err());
        assert!(y.iter().all(|&v| v == SENTINEL), "{isa}: y written on error");
    }
    assert!(PackedB::pack(3, 5, &b, 4).is_err());
}

/// A few rows of A (one row takes the whole-row sweep of B): widths around the vector steps (8, 16
/// and 32 columns, then the scalar tail), depths around the sweep's groups of rows of B (4 or 8,
/// the rest one at a time), B's rows padded or not; every tier, every weight format.
#[test]
fn few_rows_of_a_match_exact_product_around_the_sweep_steps() {
    let mut rng = Rng(11);
    for m in 1..=8 {
        for n in [1, 7, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 97] {
            for k in [0, 1, 3, 4, 7, 8, 9, 12, 17] {
                let (lda, ldb, ldc) = (k + m % 2, n + (n + k) % 3, n + m % 3);
                let a = rng.vec(matrix_len("a", m, k, lda).unwrap());
                let b = rng.vec(matrix_len("b", k, n, ldb).unwrap());
                check_gemm(m, n, k, &a, lda, &b, ldb, ldc);
                let b16: Vec<f16> = b.iter().map(|&v| f16::from_f32(v)).collect();
                check_gemm(m, n, k, &a, lda, &b16, ldb, ldc);
                let bb16: Vec<bf16> = b.iter().map(|&v| bf16::from_f32(v)).collect();
                check_gemm(m, n, k, &a, lda, &bb16, ldb, ldc);
            }
        }
    }
}

#[test]
fn zero_depth_zeroes_c_and_empty_products_are_valid() {
    for isa in Isa::available() {
        let mut c = vec![SENTINEL; 11];
        gemm_on::<f16>(isa, 3, 3, 0, &[], 0, &[], 3, &mut c, 4).unwrap();
        for (i, &v) in c.iter().enumerate() {
            let inside = i < 11 && i / 4 < 3 && i % 4 < 3;
            assert_eq!(v, if inside { 0.0 } else { SENTINEL }, "{isa} at {i}");
        }
        gemm_on::<bf16>(isa, 0, 0, 5, &[], 5, &[], 0, &mut [], 0).unwrap();
        let mut y = [SENTINEL; 3];
        gemv_i8_on(isa, 3, 0, &[], 0, &[1.0; 3], &[], &mut y).unwrap();
        assert_eq!(y, [0.0; 3]);
    }
}

#[test]
fn kernels_exist_per_available_tier_and_own_their_tiles() {
    for isa in Isa::available() {
        let kernel = Kernel::for_isa(isa).unwrap();
        assert!(kernel.mr() >= 1 && kernel.nr() >= 1 && MC.is_multiple_of(kernel.mr()), "{kernel}");
        assert_eq!(kernel.layout().panel_cols(), kernel.nr());
        assert!(kernel.in_place_max_m() >= 1);
    }
    assert_eq!(Kernel::for_isa(Isa::Scalar).unwrap().layout().panel_cols(), 8);
    for &isa in Isa::ALL.iter().filter(|isa| !isa.is_available()) {
        assert!(Kernel::for_isa(isa).is_err(), "{isa} is not on this machine");
    }
    assert_eq!(Kernel::active(), Kernel::for_isa(Isa::active()).unwrap());
}

#[test]
fn packed_weights_are_read_only_by_a_kernel_of_their_layout() {
    let (m, n, k) = (5, 37, 23);
    let mut rng = Rng(17);
    let a = rng.vec(m * k);
    let b: Vec<f16> = rng.vec(k * n).into_iter().map(f16::from_f32).collect();
    for packer in Isa::available() {
        let packed = PackedB::pack_for(Kernel::for_isa(packer).unwrap(), k, n, &b, n).unwrap();
        for p in 0..k {
            for j in 0..n {
                assert_eq!(packed.get(p, j), Some(b[p * n + j]));
            }
        }
        assert_eq!((packed.get(k, 0), packed.get(0, n)), (None, None));
        for runner in Isa::available() {
            let kernel = Kernel::for_isa(runner).unwrap();
            let mut c = vec![SENTINEL; m * n];
            let got = gemm_packed_on(runner, m, &a, k, &packed, &mut c, n);
            if packed.layout() == kernel.layout() {
                got.unwrap();
            } else {
                assert!(matches!(got, Err(Error::InvalidArgument { name: "b", .. })), "{packer} -> {runner}");
                assert!(c.iter().all(|&v| v == SENTINEL), "{packer} -> {runner}: C written on a refusal");
            }
            // Repacked for the runner, the product is the one of weights packed for it directly.
            let repacked = packed.repack_for(kernel).unwrap();
            assert_eq!(repacked.layout(), kernel.layout());
            let direct = PackedB::pack_for(kernel, k, n, &b, n).unwrap();
            let mut c2 = vec![SENTINEL; m * n];
            gemm_packed_on(runner, m, &a, k, &repacked, &mut c, n).unwrap();
            gemm_packed_on(runner, m, &a, k, &direct, &mut c2, n).unwrap();
            assert_eq!(c, c2, "{packer} -> {runner}");
        }
    }
}

#[test]
fn in_place_entry_point_checks_its_arguments() {
    let a = vec![1.0f32; 12];
    let b = vec![bf16::ONE; 12];
    for isa in Isa::available() {
        let mut c = vec![SENTINEL; 16];
        assert!(gemm_in_place_on(isa, 3, 4, 4, &a, 3, &b, 4, &mut c, 4).is_err());
        assert!(gemm_in_place_on(isa, 3, 4, 3, &a, 3, &b, 4, &mut c[..10], 4).is_err());
        assert!(gemm_in_place_on(isa, 3, 4, 4, &a, 4, &b, 4, &mut c, 4).is_err());
        assert!(c.iter().all(|&v| v == SENTINEL), "{isa}: C written on error");
        // Any m is accepted, well past the plain GEMM's threshold.
        let m = IN_PLACE_MAX_M + 3;
        let a = rng_vec(m * 9, 23);
        let b: Vec<bf16> = rng_vec(9 * 21, 29).into_iter().map(bf16::from_f32).collect();
        let b32: Vec<f32> = b.iter().map(|w| w.to_f32()).collect();
        let exact = exact_product(m, 21, 9, &a, 9, &b32, 21);
        let mut c = vec![0.0f32; m * 21];
        gemm_in_place_on(isa, m, 21, 9, &a, 9, &b, 21, &mut c, 21).unwrap();
        for (got, (s, mag)) in c.iter().zip(exact) {
            assert_close(*got, s, mag, 9, &format!("{isa} in place m={m}"));
        }
    }
}

fn rng_vec(len: usize, seed: u64) -> Vec<f32> {
    Rng(seed).vec(len)
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Random shapes (around the in-place threshold and the panel widths), leading-dimension
        /// padding and weight format: every tier, plain and prepacked, within the f32 bound.
        #[test]
        fn random_shapes_match_the_exact_product(
            m in 0usize..(IN_PLACE_MAX_M + 12),
            n in 0usize..70,
            k in 0usize..(KU_IN_PLACE * 3 + 5),
            pads in (0usize..5, 0usize..5, 0usize..5),
            format in 0u8..3,
            seed in any::<u64>(),
        ) {
            let (lda, ldb, ldc) = (k + pads.0, n + pads.1, n + pads.2);
            let mut rng = Rng(seed | 1);
            let a = rng.vec(matrix_len("a", m, k, lda).unwrap());
            let b = rng.vec(matrix_len("b", k, n, ldb).unwrap());
            match format {
                0 => check_gemm(m, n, k, &a, lda, &b, ldb, ldc),
                1 => check_gemm(m, n, k, &a, lda, &b.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(), ldb, ldc),
                _ => check_gemm(m, n, k, &a, lda, &b.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>(), ldb, ldc),
            }
        }
    }
}

#[test]
fn gemv_i8_refuses_non_finite_scales_and_writes_nothing() {
    let (n, k) = (3, 5);
    let w = vec![1i8; n * k];
    let x = vec![1.0f32; k];
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for isa in Isa::available() {
            let mut y = vec![7.0f32; n];
            let scales = [1.0, bad, 1.0];
            assert!(gemv_i8_on(isa, n, k, &w, k, &scales, &x, &mut y).is_err(), "{isa} {bad}");
            assert_eq!(y, vec![7.0; n]);
        }
    }
    let mut y = vec![0.0f32; n];
    gemv_i8_on(Isa::Scalar, n, k, &w, k, &[0.5; 3], &x, &mut y).unwrap();
    assert_eq!(y, vec![2.5; n]);
}
