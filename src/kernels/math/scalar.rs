//! The scalar reference: the definition the SIMD paths are tested against. Elementwise results
//! (exp) match bit for bit; sums are accumulated here in f64, element by element.

use super::{
    HardExp, KdRowSums, KdStore, EXP2_EIGHTHS, EXP_HI, EXP_LO, EXP_POLY, GELU_ERF_P, GELU_ERF_POLY, LN2_8_HI,
    LN2_8_LO, LOG2E_8, ROUND_SHIFTER,
};

/// `2^k` for an integer `k` in `[-126, 127]`.
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// exp(x) in f32, within one ulp of the exact value over the whole range, subnormal results
/// included: `x = (n / 8) ln 2 + r` (Cody-Waite, ties-to-even `n` from a shifter), a degree-4
/// Taylor polynomial for `exp(r)` with `|r| <= ln(2) / 16`, times `2^((n mod 8) / 8)` from an
/// 8-entry table, and the scale `2^(n >> 3)` applied in two halves so that each product is exact
/// or rounded once.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(EXP_LO, EXP_HI);
    let n = x.mul_add(LOG2E_8, ROUND_SHIFTER) - ROUND_SHIFTER;
    let r = n.mul_add(-LN2_8_HI, x);
    let r = n.mul_add(-LN2_8_LO, r);
    let [a0, a1, a2] = EXP_POLY;
    let p = r.mul_add(a2, a1).mul_add(r, a0).mul_add(r * r, r);
    let n = n as i32;
    let table = EXP2_EIGHTHS[(n & 7) as usize];
    let k = n >> 3;
    table.mul_add(p, table) * pow2(k >> 1) * pow2(k - (k >> 1))
}

/// GELU, the erf form `x/2 (1 + erf(x / sqrt 2))` (BERT's `gelu`), with `erf(|z|) = 1 - p(t) exp(-z^2)`,
/// `t = 1 / (1 + P |z|)` (Abramowitz and Stegun 7.1.26: `|error| <= 1.5e-7`), written so that the
/// sign needs no branch in SIMD: `x/2 (tail + [x > 0] (2 - 2 tail))` with `tail = p(t) exp(-z^2)`.
/// `-inf` gives `-0`, `+inf` gives `+inf`, NaN stays NaN.
pub fn gelu(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.max(-f32::MAX);
    let z = x * core::f32::consts::FRAC_1_SQRT_2;
    let e = exp(-(z * z));
    let t = 1.0 / GELU_ERF_P.mul_add(z.abs(), 1.0);
    let a = GELU_ERF_POLY;
    let poly = a[4].mul_add(t, a[3]).mul_add(t, a[2]).mul_add(t, a[1]).mul_add(t, a[0]) * t;
    let tail = poly * e;
    let upper = if x > 0.0 { tail.mul_add(-2.0, 2.0) } else { 0.0 };
    x * 0.5 * (tail + upper)
}

/// GELU in place.
pub fn gelu_slice(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu(*v));
}

/// A LayerNorm row's mean and `1 / sqrt(var + eps)` as f32, from the row's sum and its sum of squared
/// deviations from the mean (`squares(mean)`), both in f64, over `n` values.
// Always inlined: `squares` is a SIMD closure, which outside its caller's target features
// would call its intrinsics out of line.
#[inline(always)]
pub(super) fn norm_stats(sum: f64, squares: impl FnOnce(f32) -> f64, n: usize, eps: f32) -> (f32, f32) {
    let mean = (sum / n as f64) as f32;
    let var = squares(mean) / n as f64;
    (mean, (1.0 / (var + f64::from(eps)).sqrt()) as f32)
}

/// LayerNorm of every row of `x` (rows of `gamma.len()` floats) in place: the mean, then the
/// variance around it, summed in f64; then `((x - mean) * inv_std) * gamma + beta`, the last step fused.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = gamma.len();
    for row in x.chunks_exact_mut(n) {
        let sum = row.iter().map(|&v| f64::from(v)).sum::<f64>();
        let squares = |mean: f32| row.iter().map(|&v| (f64::from(v) - f64::from(mean)).powi(2)).sum::<f64>();
        let (mean, inv) = norm_stats(sum, squares, n, eps);
        for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = ((*v - mean) * inv).mul_add(g, b);
        }
    }
}

/// `y = exp(x)` elementwise.
pub fn exp_slice(x: &[f32], y: &mut [f32]) {
    for (d, &v) in y.iter_mut().zip(x) {
        *d = exp(v);
    }
}

/// The maximum of `x` (`-inf` when empty) and whether every element is finite.
pub fn max_finite(x: &[f32]) -> (f32, bool) {
    let finite = x.iter().all(|v| v.is_finite());
    (x.iter().copied().fold(f32::NEG_INFINITY, f32::max), finite)
}

/// `y = exp((x - shift) * scale)` elementwise; returns the sum of `y`.
pub fn exp_sum(x: &[f32], shift: f32, scale: f32, y: &mut [f32]) -> f64 {
    let mut total = 0.0f64;
    for (d, &v) in y.iter_mut().zip(x) {
        *d = exp((v - shift) * scale);
        total += f64::from(*d);
    }
    total
}

/// `e` squared `k` times.
fn square(mut e: f32, k: u32) -> f32 {
    for _ in 0..k {
        e *= e;
    }
    e
}

/// The fused KD sums of one row (see [`KdRowSums`]).
#[allow(clippy::too_many_arguments)]
pub fn kd_row_sums(
    s: &[f32],
    t: &[f32],
    ms: f32,
    mt: f32,
    inv_t: f32,
    hard: HardExp,
    mut store: Option<KdStore<'_>>,
) -> KdRowSums {
    let mut sums = KdRowSums { student: 0.0, teacher: 0.0, hard: 0.0, cross: 0.0 };
    for (i, (&sv, &tv)) in s.iter().zip(t).enumerate() {
        let (ds, dt) = ((sv - ms) * inv_t, (tv - mt) * inv_t);
        let (es, et) = (exp(ds), exp(dt));
        sums.student += f64::from(es);
        sums.teacher += f64::from(et);
        if et > 0.0 {
            sums.cross += f64::from(et * (dt - ds));
        }
        let e1 = match hard {
            HardExp::Soft => es,
            HardExp::Exp => exp(sv - ms),
            HardExp::Square(k) => square(es, k),
        };
        sums.hard += f64::from(e1);
        if let Some(st) = store.as_mut() {
            st.student[i] = es;
            st.teacher[i] = et;
            if hard == HardExp::Exp {
                st.hard[i] = e1;
            }
        }
    }
    sums
}

/// `grad = cs * es + ct * et + ch * e1` (see [`super::kd_row_grad_on`]; `_stream` is a hint the
/// reference ignores).
#[allow(clippy::too_many_arguments)]
pub fn kd_row_grad(
    es: &[f32],
    et: &[f32],
    cs: f32,
    ct: f32,
    ch: f32,
    hard: HardExp,
    grad: &mut [f32],
    _stream: bool,
) {
    for ((g, &a), &b) in grad.iter_mut().zip(es).zip(et) {
        let base = match hard {
            HardExp::Soft => 0.0,
            HardExp::Exp => *g * ch,
            HardExp::Square(k) => square(a, k) * ch,
        };
        *g = a.mul_add(cs, b.mul_add(ct, base));
    }
}
