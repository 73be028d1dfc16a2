//! Every available tier, plain and prepacked, against a float64 product. The bound: every f32
//! summation order of `k` exact products is within `gamma_k * sum_p |a_ip b_pj|` of the exact sum,
//! `gamma_k = k u / (1 - k u)`, `u = 2^-24`; products that underflow f32 add at most `2^-150` each.
//! So `|c - exact| <= k 2^-24 (1 + 2^-10) mag + k 2^-149` (for `k < 2^14`). Non-finite results must
//! be the same class as the IEEE float64 ones (NaN, or the same infinity; a one-signed sum beyond
//! f32's range is that sign's infinity).

use super::*;
use proptest::prelude::*;

/// Small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A bf16 in [-1, 1] (8 significant bits, every exponent down to 2^-24).
    fn value(&mut self) -> bf16 {
        let unit = (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        bf16::from_f32(unit)
    }
    fn vec(&mut self, len: usize) -> Vec<bf16> {
        (0..len).map(|_| self.value()).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks one output against the float64 sum `exact` with magnitude sum `mag` over `k` terms.
/// What a kernel that flushes subnormals may lose beyond the bound: the products with a subnormal
/// operand and `2^-126` per step of k.
fn flush_slack(kernel: Kernel, lost: f64, k: usize) -> f64 {
    if kernel.flushes_subnormals() {
        lost + k as f64 * 2f64.powi(-126)
    } else {
        0.0
    }
}

fn assert_close(got: f32, exact: f64, mag: f64, k: usize, slack: f64, what: &str) {
    if exact.is_nan() {
        assert!(got.is_nan(), "{what}: got {got}, expected NaN");
    } else if exact.is_infinite() {
        assert_eq!(got as f64, exact, "{what}");
    } else if exact.abs() == mag && mag > f32::MAX as f64 * (1.0 + 2f64.powi(-23)) {
        // Terms of one sign whose sum exceeds f32: every order overflows to that sign's infinity.
        assert_eq!(got as f64, exact.signum() * f64::INFINITY, "{what}: exact {exact}");
    } else {
        // Test data keeps partial sums inside f32 (else the class would depend on the order).
        assert!(mag <= f32::MAX as f64 / 2.0, "{what}: test data overflows f32 ({mag})");
        let k = k as f64;
        let bound = k * 2f64.powi(-24) * (1.0 + 2f64.powi(-10)) * mag + k * 2f64.powi(-149) + slack;
        assert!((got as f64 - exact).abs() <= bound, "{what}: got {got}, exact {exact}, bound {bound}");
    }
}

/// The float64 product, magnitude sums and the magnitude of the products with a subnormal
/// operand of `A (m x k) * B (k x n)`, row-major, IEEE semantics.
#[allow(clippy::too_many_arguments)]
fn exact_product(
    m: usize,
    n: usize,
    k: usize,
    a: &[bf16],
    lda: usize,
    b: &[bf16],
    ldb: usize,
) -> Vec<(f64, f64, f64)> {
    let subnormal = |v: bf16| v.to_bits() & 0x7f80 == 0 && v.to_bits() & 0x7f != 0;
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag, mut lost) = (0.0f64, 0.0f64, 0.0f64);
            for p in 0..k {
                let (x, y) = (a[i * lda + p], b[p * ldb + j]);
                let t = x.to_f64() * y.to_f64();
                s += t;
                mag += t.abs();
                if subnormal(x) || subnormal(y) {
                    lost += t.abs();
                }
            }
            out.push((s, mag, lost));
        }
    }
    out
}

const SENTINEL: f32 = -7.25;

/// Runs one shape on every tier, plain and prepacked, and checks every output; C's padding (and
/// three elements past its end) stay untouched. The scalar tier must also equal the in-order f32 sum.
#[allow(clippy::too_many_arguments)]
fn check_gemm(m: usize, n: usize, k: usize, a: &[bf16], lda: usize, b: &[bf16], ldb: usize, ldc: usize) {
    let exact = exact_product(m, n, k, a, lda, b, ldb);
    let c_len = matrix_len("c", m, n, ldc).unwrap() + 3;
    for kernel in Kernel::available() {
        let isa = format!("{kernel:?}");
        let mut c = vec![SENTINEL; c_len];
        gemm_with(kernel, m, n, k, a, lda, b, ldb, &mut c, ldc).unwrap();
        let packed = PackedB::pack_for(kernel, k, n, b, ldb).unwrap();
        assert_eq!(packed.layout(), kernel.layout());
        let mut c2 = vec![SENTINEL; c_len];
        gemm_packed_with(kernel, m, a, lda, &packed, &mut c2, ldc).unwrap();
        for (idx, (&v, &v2)) in c.iter().zip(&c2).enumerate() {
            let (i, j) = (idx / ldc.max(1), idx % ldc.max(1));
            if i < m && j < n {
                let (s, mag, lost) = exact[i * n + j];
                let slack = flush_slack(kernel, lost, k);
                let what = format!("{isa} m={m} n={n} k={k} lda={lda} ldb={ldb} ldc={ldc} at ({i},{j})");
                assert_close(v, s, mag, k, slack, &what);
                assert_close(v2, s, mag, k, slack, &format!("{what} prepacked"));
                if kernel == Kernel::Scalar {
                    let mut acc = 0.0f32;
                    for p in 0..k {
                        acc += a[i * lda + p].to_f32() * b[p * ldb + j].to_f32();
                    }
                    assert_eq!(v.to_bits(), acc.to_bits(), "{what}: scalar is not the in-order sum");
                    assert_eq!(v2.to_bits(), acc.to_bits(), "{what}: scalar packed is not the in-order sum");
                }
            } else {
                assert_eq!(
                    (v.to_bits(), v2.to_bits()),
                    (SENTINEL.to_bits(), SENTINEL.to_bits()),
                    "{isa}: wrote outside C at {idx}"
                );
            }
        }
    }
}

/// Random matrices with leading dimensions `pad` (< 5) past their row lengths.
fn run_shape(rng: &mut Rng, m: usize, n: usize, k: usize) {
    let (lda, ldb, ldc) = (k + rng.below(5), n + rng.below(5), n + rng.below(5));
    let a = rng.vec(matrix_len("a", m, k, lda).unwrap());
    let b = rng.vec(matrix_len("b", k, n, ldb).unwrap());
    check_gemm(m, n, k, &a, lda, &b, ldb, ldc);
}

#[test]
fn every_tier_matches_the_exact_product_on_edge_shapes() {
    let strip = STRIP_PANELS * 16;
    let shapes = [
        (0, 0, 0),
        (0, 5, 3),
        (4, 0, 3),
        (3, 5, 0),
        (1, 1, 1),
        (1, 17, 9),
        (6, 16, 8),
        (8, 12, 8),
        (7, 31, 13),
        (13, 3, 257),
        (2, 37, 1031),
        (STREAM_MAX_M, strip + 13, KC + 7),
        (STREAM_MAX_M + 1, 29, 61),
        (5, 2 * strip + 1, 2 * KC + 3),
        (MC + 7, 16 * 2 + 5, KC + 3),
        (2 * MC + 11, 3 * 16 + 1, 2 * KC + 5),
    ];
    let mut rng = Rng(42);
    for (m, n, k) in shapes {
        run_shape(&mut rng, m, n, k);
    }
}

#[test]
fn large_enough_to_split_across_threads() {
    // Above PARALLEL_MIN_MACS on both paths (streamed m <= STREAM_MAX_M and packed).
    let mut rng = Rng(9);
    run_shape(&mut rng, 131, 203, 167);
    run_shape(&mut rng, STREAM_MAX_M, 401, 233);
}

#[test]
fn bf16_edge_values_and_subnormals() {
    // zeros, the smallest and largest subnormals, the smallest normal, one, a third, 2^-100.
    let tiny = [0x0000, 0x8000, 0x0001, 0x8001, 0x007f, 0x0080, 0x3f80, 0xbeab, 0x0d80];
    let (m, n, k) = (9, 16 + 9, 23);
    let a: Vec<bf16> = (0..m * k).map(|i| bf16::from_bits(tiny[(i * 7 + i / 4) % tiny.len()])).collect();
    let b: Vec<bf16> = (0..k * n).map(|i| bf16::from_bits(tiny[(i * 5 + i / 3) % tiny.len()])).collect();
    check_gemm(m, n, k, &a, k, &b, n, n);
    // Largest finite magnitudes against small values: partial sums stay finite.
    let big = [0x7f7f, 0xff7f, 0x3f80, 0x0001, 0x0000];
    let small: Vec<bf16> = (0..m * k).map(|i| bf16::from_f32(((i % 13) as f32 - 6.0) * 1e-3)).collect();
    let b: Vec<bf16> = (0..k * n).map(|i| bf16::from_bits(big[(i * 3 + i / 7) % big.len()])).collect();
    check_gemm(m, n, k, &small, k, &b, n, n);
}

#[test]
fn infinities_and_nan_propagate_like_the_reference() {
    let (m, n, k) = (7, 16 + 5, 11);
    let mut rng = Rng(5);
    let mut a = rng.vec(m * k);
    let mut b = rng.vec(k * n);
    // Row 1 of A holds a NaN: row 1 of C is NaN. Row 2 holds +inf at p = 3 and row 3 of B has a
    // zero at column 4: C(2, 4) is NaN (inf * 0), the rest of row 2 is +-inf by B's sign.
    a[k + 5] = bf16::NAN;
    a[2 * k + 3] = bf16::INFINITY;
    b[3 * n + 4] = bf16::ZERO;
    // Column 7 of B holds -inf at p = 0: column 7 is -+inf by A's sign, NaN where A(i, 0) = 0
    // and where row 2's +inf meets it with the wrong sign.
    b[7] = bf16::NEG_INFINITY;
    a[4 * k] = bf16::ZERO;
    // max * max overflows f32 in every order: C(5, 9) = +inf (and max meets only zeros elsewhere).
    (0..m).for_each(|i| a[i * k + 8] = bf16::ZERO);
    b[8 * n..9 * n].fill(bf16::ZERO);
    a[5 * k + 8] = bf16::MAX;
    b[8 * n + 9] = bf16::MAX;
    check_gemm(m, n, k, &a, k, &b, n, n);
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let a = vec![bf16::ONE; 12];
    let b = vec![bf16::ONE; 12];
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
        let packed = PackedB::pack_on(isa, 3, 4, &b, 4).unwrap();
        assert!(gemm_packed_on(isa, 5, &a, 3, &packed, &mut c, 4).is_err()); // a and c too short
        assert!(gemm_packed_on(isa, 3, &a, 2, &packed, &mut c, 4).is_err()); // lda < k
        assert!(c.iter().all(|&v| v == SENTINEL), "{isa}: C written on error");
        assert!(PackedB::pack_on(isa, 3, 5, &b, 4).is_err());
        assert!(PackedB::pack_on(isa, 4, 4, &b, 4).is_err());
    }
}

#[test]
fn a_packed_b_is_refused_by_a_tier_with_another_layout() {
    let (k, n) = (5, 21);
    let mut rng = Rng(3);
    let b = rng.vec(k * n);
    let a = rng.vec(2 * k);
    for pack_isa in Isa::available() {
        let packed = PackedB::pack_on(pack_isa, k, n, &b, n).unwrap();
        for p in 0..k {
            for j in 0..n {
                assert_eq!(packed.get(p, j).to_bits(), b[p * n + j].to_bits(), "{pack_isa} ({p},{j})");
            }
        }
        for run_isa in Isa::available() {
            let mut c = vec![SENTINEL; 2 * n];
            let result = gemm_packed_on(run_isa, 2, &a, k, &packed, &mut c, n);
            let same = Kernel::for_isa(run_isa).layout() == packed.layout();
            assert_eq!(result.is_ok(), same, "packed for {pack_isa}, run on {run_isa}");
            if !same {
                assert!(c.iter().all(|&v| v == SENTINEL));
            }
        }
    }
}

#[test]
fn zero_depth_zeroes_c_and_empty_products_are_valid() {
    for isa in Isa::available() {
        let mut c = vec![SENTINEL; 11];
        gemm_on(isa, 3, 3, 0, &[], 0, &[], 3, &mut c, 4).unwrap();
        for (i, &v) in c.iter().enumerate() {
            let inside = i / 4 < 3 && i % 4 < 3;
            assert_eq!(v, if inside { 0.0 } else { SENTINEL }, "{isa} at {i}");
        }
        let packed = PackedB::pack_on(isa, 0, 3, &[], 3).unwrap();
        let mut c = vec![SENTINEL; 11];
        gemm_packed_on(isa, 3, &[], 0, &packed, &mut c, 4).unwrap();
        assert_eq!(c[8..], [0.0, 0.0, 0.0]);
        gemm_on(isa, 0, 0, 5, &[], 5, &[], 0, &mut [], 0).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_shapes_match_the_exact_product(m in 0usize..70, n in 0usize..90, k in 0usize..80, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        run_shape(&mut rng, m, n, k);
    }
}
