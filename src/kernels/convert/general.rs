//! The general affine quantizer behind `quant`'s specs: `clamp(round(x op factor) + zero_point, lo,
//! hi)` with `op` a division (ONNX) or a multiplication by a reciprocal (PyTorch, TensorFlow Lite),
//! rounding half to even or half away from zero, one parameter pair for the whole run or one per
//! element (blocks and channels that run across a row). One portable body, compiled once per tier
//! with that tier's features so the compiler vectorizes it; every tier computes the same
//! IEEE operations in the same order, so the results are identical and the scalar build is the
//! reference.

use super::super::Isa;

/// The factor and zero point of a run: one pair for every element, or one per element.
#[derive(Clone, Copy, Debug)]
pub enum RunParams<'a> {
    /// One factor and zero point for the whole run.
    Broadcast {
        /// The divisor (scale) or multiplier (reciprocal of the scale).
        factor: f32,
        /// The zero point, as a float (exact: integer types up to 16 bits).
        zero_point: f32,
    },
    /// Element `i` uses `factors[i]` and `zero_points[i]` (each at least as long as the run).
    PerElement {
        /// Divisors or multipliers.
        factors: &'a [f32],
        /// Zero points as floats.
        zero_points: &'a [f32],
    },
}

/// How the value meets the factor and how it is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arithmetic {
    /// `x * factor` when true, `x / factor` when false.
    pub multiply: bool,
    /// Round half away from zero when true, half to even when false.
    pub half_away: bool,
}

#[inline(always)]
fn one<const MUL: bool, const AWAY: bool>(x: f32, factor: f32, zero_point: f32, lo: f32, hi: f32) -> i32 {
    let t = if MUL { x * factor } else { x / factor };
    let r = if AWAY { t.round() } else { t.round_ties_even() };
    // `r` is an integer; with |zero_point| <= 2^16 the sum is exact wherever it lands inside
    // [lo, hi], and out there any rounding keeps it out, so the clamp gives the exact result.
    (r + zero_point).max(lo).min(hi) as i32
}

#[inline(always)]
fn body<const MUL: bool, const AWAY: bool>(x: &[f32], p: RunParams<'_>, lo: f32, hi: f32, y: &mut [i32]) {
    match p {
        RunParams::Broadcast { factor, zero_point } => {
            for (d, &v) in y.iter_mut().zip(x) {
                *d = one::<MUL, AWAY>(v, factor, zero_point, lo, hi);
            }
        }
        RunParams::PerElement { factors, zero_points } => {
            for (((d, &v), &f), &z) in y.iter_mut().zip(x).zip(factors).zip(zero_points) {
                *d = one::<MUL, AWAY>(v, f, z, lo, hi);
            }
        }
    }
}

#[inline(always)]
fn generic(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: &mut [i32]) {
    match (a.multiply, a.half_away) {
        (false, false) => body::<false, false>(x, p, lo, hi, y),
        (false, true) => body::<false, true>(x, p, lo, hi, y),
        (true, false) => body::<true, false>(x, p, lo, hi, y),
        (true, true) => body::<true, true>(x, p, lo, hi, y),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn generic_avx2(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: &mut [i32]) {
    generic(x, p, a, lo, hi, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn generic_avx512(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: &mut [i32]) {
    generic(x, p, a, lo, hi, y)
}

/// Quantizes `x` (no NaN; `y` as long as `x`, parameters at least as long in the per-element
/// case) into integers clamped to `[lo, hi]`, on the path `isa` (already checked available).
pub(crate) fn quantize_run_on(
    isa: Isa,
    x: &[f32],
    p: RunParams<'_>,
    a: Arithmetic,
    (lo, hi): (i32, i32),
    y: &mut [i32],
) {
    let (lo, hi) = (lo as f32, hi as f32);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx2` available: the CPU has AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { generic_avx2(x, p, a, lo, hi, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx512` available: AVX-512 F/BW/VL/DQ and AVX2's set.
        Isa::Avx512 => unsafe { generic_avx512(x, p, a, lo, hi, y) },
        #[cfg(target_arch = "aarch64")]
        // NEON is part of aarch64's baseline: the portable body is already vectorized there.
        Isa::Neon | Isa::Dotprod | Isa::I8mm => generic(x, p, a, lo, hi, y),
        Isa::Scalar => generic(x, p, a, lo, hi, y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_rng::Rng;

    /// The definition in f64, as `quant`'s per-element quantizer computes it.
    fn reference(x: f32, factor: f32, zp: f32, a: Arithmetic, lo: i32, hi: i32) -> i32 {
        let t = if a.multiply { x * factor } else { x / factor };
        let r = if a.half_away { t.round() } else { t.round_ties_even() };
        (f64::from(r) + f64::from(zp)).clamp(f64::from(lo), f64::from(hi)) as i32
    }

    #[test]
    fn every_tier_matches_the_f64_definition() {
        let mut rng = Rng(11);
        let edges =
            [0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 127.5, -128.5, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY];
        for &n in &[0usize, 1, 7, 16, 31, 97, 1000] {
            let mut x = rng.floats(n, 300.0);
            for (i, e) in edges.iter().enumerate().take(n) {
                x[i * 5 % n.max(1)] = *e;
            }
            let factors: Vec<f32> = (0..n).map(|i| 0.37 + (i % 13) as f32 * 0.5).collect();
            let zps: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
            for a in [false, true]
                .iter()
                .flat_map(|&m| [false, true].map(|h| Arithmetic { multiply: m, half_away: h }))
            {
                for (lo, hi) in [(-128, 127), (0, 255), (-8, 7), (0, 65535), (-127, 127)] {
                    let want: Vec<i32> =
                        (0..n).map(|i| reference(x[i], factors[i], zps[i], a, lo, hi)).collect();
                    let want_b: Vec<i32> = (0..n).map(|i| reference(x[i], 0.75, 2.0, a, lo, hi)).collect();
                    for isa in Isa::available() {
                        let mut y = vec![i32::MIN; n];
                        let p = RunParams::PerElement { factors: &factors, zero_points: &zps };
                        quantize_run_on(isa, &x, p, a, (lo, hi), &mut y);
                        assert_eq!(y, want, "{isa} {a:?} [{lo}, {hi}] n={n}");
                        let p = RunParams::Broadcast { factor: 0.75, zero_point: 2.0 };
                        quantize_run_on(isa, &x, p, a, (lo, hi), &mut y);
                        assert_eq!(y, want_b, "{isa} {a:?} [{lo}, {hi}] n={n} broadcast");
                    }
                }
            }
        }
    }
}
