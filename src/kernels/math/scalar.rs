//! The scalar reference: the definition the SIMD paths are tested against. Elementwise results
//! (exp) match bit for bit; sums are accumulated here in f64, element by element.

use super::{HardExp, KdRowSums, KdStore, EXP_HI, EXP_LO, EXP_POLY, LN2_HI, LN2_LO, LOG2E, ROUND_SHIFTER};

/// `2^n` for an integer-valued `n` in `[-126, 127]`.
fn pow2(n: f32) -> f32 {
    f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// exp(x) in f32, within a few ulp of the exact value over the whole range, subnormal results
/// included: `x = n ln2 + r` (Cody-Waite, ties-to-even `n` from a shifter), a degree-7 polynomial
/// for `exp(r)` in Estrin's scheme, and the scale `2^n` applied in two halves so that each product
/// is exact or rounded once.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(EXP_LO, EXP_HI);
    let n = x.mul_add(LOG2E, ROUND_SHIFTER) - ROUND_SHIFTER;
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let [a0, a1, a2, a3, a4, a5] = EXP_POLY;
    let (r2, q01, q23, q45) = (r * r, r.mul_add(a1, a0), r.mul_add(a3, a2), r.mul_add(a5, a4));
    let q = q45.mul_add(r2 * r2, q23.mul_add(r2, q01));
    let p = q.mul_add(r2, r) + 1.0;
    let n1 = (n * 0.5).round_ties_even();
    p * pow2(n1) * pow2(n - n1)
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
