//! The kernel bodies, written once over a vector of f32 lanes ([`Lanes`]) and instantiated by
//! `x86.rs` and `aarch64.rs` inside their `#[target_feature]` entry points.
//!
//! Every function here is `#[inline(always)]`, so that it is compiled with the features of the
//! entry point that calls it.

use super::{KdRowSums, KdStore, EXP_FAST_MAX, EXP_POLY, LN2_8_HI, LN2_8_LO, LOG2E_8, ROUND_SHIFTER};

/// A vector of `N` f32 lanes of one instruction set.
///
/// Values of an implementing type are only made inside entry points whose instruction set
/// `Isa` has found available; that is what makes the safe methods sound.
pub(super) trait Lanes: Copy {
    /// Lanes per vector (at most [`MAX_LANES`]).
    const N: usize;
    /// Loads `N` floats.
    ///
    /// # Safety
    /// `p` must be valid for reading `N` f32.
    unsafe fn load(p: *const f32) -> Self;
    /// Stores `N` floats.
    ///
    /// # Safety
    /// `p` must be valid for writing `N` f32.
    unsafe fn store(self, p: *mut f32);
    /// Stores `N` floats with a non-temporal hint where the instruction set has one (the line
    /// goes to memory without being read first and without evicting cached data).
    ///
    /// # Safety
    /// `p` must be valid for writing `N` f32 and aligned to `4 N` bytes.
    unsafe fn stream(self, p: *mut f32);
    /// Orders earlier [`Lanes::stream`] stores before later stores.
    fn fence();
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// Lanewise `self + o`.
    fn add(self, o: Self) -> Self;
    /// Lanewise `self - o`.
    fn sub(self, o: Self) -> Self;
    /// Lanewise `self * o`.
    fn mul(self, o: Self) -> Self;
    /// Lanewise `self * b + c`, rounded once.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// Lanewise `self / o`, correctly rounded.
    fn div(self, o: Self) -> Self;
    /// Lanewise maximum (lanes are not NaN where it matters).
    fn max(self, o: Self) -> Self;
    /// Lanewise minimum (lanes are not NaN where it matters).
    fn min(self, o: Self) -> Self;
    /// `EXP2_EIGHTHS[n mod 8]` for lanes `shifted = n + ROUND_SHIFTER` (exactly), `|n| < 2^21`.
    fn exp2_eighths(shifted: Self) -> Self;
    /// `self * 2^(n >> 3)` for lanes `shifted = n + ROUND_SHIFTER`, by an add to the exponent
    /// field: exact when `self` and the product are normal.
    fn mul_pow2_eighths(self, shifted: Self) -> Self;
    /// `(2^(k >> 1), 2^(k - (k >> 1)))` with `k = n >> 3`, for lanes `shifted = n + ROUND_SHIFTER`
    /// and `k` in `[-252, 254]`.
    fn pow2_halves(shifted: Self) -> (Self, Self);
    /// Lanewise the larger of `self` and `|x|`, compared as bit patterns (`self` holds magnitudes),
    /// so that a NaN, whose magnitude bits exceed infinity's, wins.
    fn max_magnitude(self, x: Self) -> Self;
    /// Whether any lane (a magnitude from [`Lanes::max_magnitude`]) is above `bound` or NaN.
    fn any_magnitude_above(self, bound: f32) -> bool;
    /// `self`, with the lanes where `x` is NaN replaced by `x`.
    fn nan_from(self, x: Self) -> Self;
    /// `self` where `m > 0`, else `+0.0` (even when `self` is NaN).
    fn where_positive(self, m: Self) -> Self;
    /// Sum of the lanes.
    fn sum(self) -> f32;
    /// Maximum of the lanes.
    fn hmax(self) -> f32;
}

/// The widest [`Lanes`] type's lane count (AVX-512's sixteen).
pub(super) const MAX_LANES: usize = 16;

/// Loads the first `x.len() < N` floats of a tail, the other lanes `pad`.
#[inline(always)]
fn load_tail<V: Lanes>(x: &[f32], pad: f32) -> V {
    let mut buf = [pad; MAX_LANES];
    buf[..x.len()].copy_from_slice(x);
    // SAFETY: buf holds MAX_LANES >= N floats.
    unsafe { V::load(buf.as_ptr()) }
}

/// Stores the first `y.len() < N` lanes of `v` into a tail.
#[inline(always)]
fn store_tail<V: Lanes>(v: V, y: &mut [f32]) {
    let mut buf = [0.0f32; MAX_LANES];
    // SAFETY: buf holds MAX_LANES >= N floats.
    unsafe { v.store(buf.as_mut_ptr()) };
    let n = y.len();
    y.copy_from_slice(&buf[..n]);
}

#[inline(always)]
fn load<V: Lanes>(x: &[f32], i: usize) -> V {
    let x = &x[i..i + V::N];
    // SAFETY: the slice above holds N floats (its bounds are checked).
    unsafe { V::load(x.as_ptr()) }
}

#[inline(always)]
fn store<V: Lanes>(v: V, y: &mut [f32], i: usize) {
    let y = &mut y[i..i + V::N];
    // SAFETY: the slice above holds N floats (its bounds are checked).
    unsafe { v.store(y.as_mut_ptr()) }
}

/// Range reduction, polynomial and table for `K` vectors, stage by stage across them so that
/// their dependency chains overlap: `x = (n / 8) ln 2 + r`; returns `2^((n mod 8) / 8) exp(r)`
/// and `n + ROUND_SHIFTER`.
///
/// Plain loops over `k`, not closures through `array::map`: what is not inlined into the
/// `#[target_feature]` entry point would be compiled without its instruction set.
#[inline(always)]
fn exp_reduced<V: Lanes, const K: usize>(x: [V; K]) -> ([V; K], [V; K]) {
    let shifter = V::splat(ROUND_SHIFTER);
    let [a0, a1, a2] = [V::splat(EXP_POLY[0]), V::splat(EXP_POLY[1]), V::splat(EXP_POLY[2])];
    let (mut shifted, mut n, mut r, mut q) = (x, x, x, x);
    for k in 0..K {
        shifted[k] = x[k].mul_add(V::splat(LOG2E_8), shifter);
    }
    for k in 0..K {
        n[k] = shifted[k].sub(shifter);
    }
    for k in 0..K {
        r[k] = n[k].mul_add(V::splat(-LN2_8_HI), x[k]);
    }
    for k in 0..K {
        r[k] = n[k].mul_add(V::splat(-LN2_8_LO), r[k]);
    }
    for k in 0..K {
        q[k] = r[k].mul_add(a2, a1);
    }
    for k in 0..K {
        q[k] = q[k].mul_add(r[k], a0);
    }
    for k in 0..K {
        q[k] = q[k].mul_add(r[k].mul(r[k]), r[k]);
    }
    let mut m = q;
    for k in 0..K {
        let table = V::exp2_eighths(shifted[k]);
        m[k] = table.mul_add(q[k], table);
    }
    (m, shifted)
}

/// exp of every lane, as [`super::scalar::exp`] defines it (bit for bit).
#[inline(always)]
pub(super) fn exp<V: Lanes>(x: V) -> V {
    if V::splat(0.0).max_magnitude(x).any_magnitude_above(EXP_FAST_MAX) {
        return exp_wide(x);
    }
    let [y] = exp_fast([x]);
    y
}

/// exp of `K` vectors whose lanes all lie inside `[-EXP_FAST_MAX, EXP_FAST_MAX]`, where the
/// result is normal.
#[inline(always)]
fn exp_fast<V: Lanes, const K: usize>(x: [V; K]) -> [V; K] {
    let (mut m, shifted) = exp_reduced(x);
    for k in 0..K {
        m[k] = m[k].mul_pow2_eighths(shifted[k]);
    }
    m
}

/// exp for lanes that may underflow, overflow or be NaN: the scale `2^(n >> 3)` is applied in two
/// exact-or-once-rounded halves so that subnormal results are correctly rounded.
#[inline(always)]
fn exp_wide<V: Lanes>(x: V) -> V {
    let clamped = x.max(V::splat(super::EXP_LO)).min(V::splat(super::EXP_HI));
    let ([m], [shifted]) = exp_reduced([clamped]);
    let (half, rest) = V::pow2_halves(shifted);
    m.mul(half).mul(rest).nan_from(x)
}

/// `y = exp(x)` elementwise.
#[inline(always)]
pub(super) fn exp_slice<V: Lanes>(x: &[f32], y: &mut [f32]) {
    let body = x.len() - x.len() % V::N;
    let mut i = 0;
    while i < body {
        store(exp(load::<V>(x, i)), y, i);
        i += V::N;
    }
    if body < x.len() {
        store_tail(exp(load_tail::<V>(&x[body..], 0.0)), &mut y[body..]);
    }
}

/// Vectors per block whose f32 partial sums are then added into f64.
const BLOCK: usize = 32;

/// The maximum of `x` (`-inf` when empty) and whether every element is finite.
#[inline(always)]
pub(super) fn max_finite<V: Lanes>(x: &[f32]) -> (f32, bool) {
    let Some(&first) = x.first() else { return (f32::NEG_INFINITY, true) };
    let body = x.len() - x.len() % (2 * V::N);
    let (mut m0, mut m1) = (V::splat(first), V::splat(first));
    // x * 0 is 0 for finite x and NaN for infinities and NaN; the NaN sticks in the sum.
    let (mut bad0, mut bad1) = (V::splat(0.0), V::splat(0.0));
    let zero = V::splat(0.0);
    let mut i = 0;
    while i < body {
        let (a, b) = (load::<V>(x, i), load::<V>(x, i + V::N));
        m0 = m0.max(a);
        m1 = m1.max(b);
        bad0 = a.mul_add(zero, bad0);
        bad1 = b.mul_add(zero, bad1);
        i += 2 * V::N;
    }
    let mut m = m0.max(m1).hmax();
    let mut finite = bad0.add(bad1).sum() == 0.0;
    for &v in &x[body..] {
        m = if v > m { v } else { m };
        finite &= v.is_finite();
    }
    (m, finite)
}

/// `y = exp((x - shift) * scale)` elementwise; returns the sum of `y`.
#[inline(always)]
pub(super) fn exp_sum<V: Lanes>(x: &[f32], shift: f32, scale: f32, y: &mut [f32]) -> f64 {
    let (shift_v, scale_v) = (V::splat(shift), V::splat(scale));
    let f = |v: V| exp(v.sub(shift_v).mul(scale_v));
    let body = x.len() - x.len() % V::N;
    let mut total = 0.0f64;
    let mut i = 0;
    while i < body {
        let end = body.min(i + BLOCK * V::N);
        let mut acc = V::splat(0.0);
        while i < end {
            let e = f(load(x, i));
            store(e, y, i);
            acc = acc.add(e);
            i += V::N;
        }
        total += f64::from(acc.sum());
    }
    if body < x.len() {
        // Padding with shift + ... would be NaN-prone; pad with -inf so the padded lanes are 0.
        let e = f(load_tail(&x[body..], f32::NEG_INFINITY));
        store_tail(e, &mut y[body..]);
        total += f64::from(e.sum());
    }
    total
}

/// GELU of every lane, as [`super::scalar::gelu`] defines it (bit for bit): the erf form
/// `x/2 (1 + erf(x / sqrt 2))` with Abramowitz and Stegun's 7.1.26 for `erf(|z|) = 1 - p(t) exp(-z^2)`.
#[inline(always)]
fn gelu<V: Lanes>(x: V) -> V {
    use super::{GELU_ERF_P, GELU_ERF_POLY as A};
    // -inf becomes -MAX (GELU 0, not -inf * 0); a NaN lane stays NaN (max returns `x` for it).
    let x = V::splat(-f32::MAX).max(x);
    let z = x.mul(V::splat(core::f32::consts::FRAC_1_SQRT_2));
    let e = exp(z.mul(z).mul(V::splat(-1.0)));
    let abs_z = V::splat(0.0).max_magnitude(z);
    let t = V::splat(1.0).div(V::splat(GELU_ERF_P).mul_add(abs_z, V::splat(1.0)));
    let poly = V::splat(A[4]).mul_add(t, V::splat(A[3]));
    let poly = poly.mul_add(t, V::splat(A[2]));
    let poly = poly.mul_add(t, V::splat(A[1]));
    let poly = poly.mul_add(t, V::splat(A[0])).mul(t);
    let tail = poly.mul(e);
    let upper = tail.mul_add(V::splat(-2.0), V::splat(2.0)).where_positive(x);
    x.mul(V::splat(0.5)).mul(tail.add(upper))
}

/// GELU in place.
#[inline(always)]
pub(super) fn gelu_slice<V: Lanes>(x: &mut [f32]) {
    let body = x.len() - x.len() % V::N;
    let mut i = 0;
    while i < body {
        let y = gelu(load::<V>(x, i));
        store(y, x, i);
        i += V::N;
    }
    if body < x.len() {
        let y = gelu(load_tail::<V>(&x[body..], 0.0));
        store_tail(y, &mut x[body..]);
    }
}

/// `sum (x - center)^k` for `k` = 1 or 2 (`SQUARE`): f32 lanes within blocks of [`BLOCK`] vectors,
/// the blocks added in f64.
#[inline(always)]
fn centered_sum<V: Lanes, const SQUARE: bool>(x: &[f32], center: f32) -> f64 {
    let c = V::splat(center);
    let term = |v: V| {
        let d = v.sub(c);
        if SQUARE {
            d.mul(d)
        } else {
            d
        }
    };
    let body = x.len() - x.len() % V::N;
    let mut total = 0.0f64;
    let mut i = 0;
    while i < body {
        let end = body.min(i + BLOCK * V::N);
        let mut acc = V::splat(0.0);
        while i < end {
            acc = acc.add(term(load(x, i)));
            i += V::N;
        }
        total += f64::from(acc.sum());
    }
    for &v in &x[body..] {
        let d = f64::from(v) - f64::from(center);
        total += if SQUARE { d * d } else { d };
    }
    total
}

/// LayerNorm of every row of `x` (rows of `gamma.len()` floats) in place: mean and variance (two
/// passes, sums as [`centered_sum`]), then `((x - mean) * inv_std) * gamma + beta` per lane.
#[inline(always)]
pub(super) fn layer_norm<V: Lanes>(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = gamma.len();
    for row in x.chunks_exact_mut(n) {
        let (mean, inv) = super::scalar::norm_stats(
            centered_sum::<V, false>(row, 0.0),
            |mean| centered_sum::<V, true>(row, mean),
            n,
            eps,
        );
        let (m, s) = (V::splat(mean), V::splat(inv));
        let body = n - n % V::N;
        let mut i = 0;
        while i < body {
            let y = load::<V>(row, i).sub(m).mul(s).mul_add(load(gamma, i), load(beta, i));
            store(y, row, i);
            i += V::N;
        }
        for j in body..n {
            row[j] = ((row[j] - mean) * inv).mul_add(gamma[j], beta[j]);
        }
    }
}

/// [`HardExp`](super::HardExp) as a const parameter of the KD bodies: `Soft`.
pub(super) const HARD_SOFT: u8 = 0;
/// `Exp`: one more exponential per logit.
pub(super) const HARD_EXP: u8 = 1;
/// `Square(k)` is `HARD_SQUARE + k - 1`, for `k` in `1..=3`: the soft student exponential squared
/// `k` times, with `k` a constant so that the squarings are straight-line code.
pub(super) const HARD_SQUARE: u8 = 2;

/// The squarings of `HARD` (0 unless `HARD >= HARD_SQUARE`).
const fn squarings(hard: u8) -> u32 {
    if hard >= HARD_SQUARE {
        (hard - HARD_SQUARE + 1) as u32
    } else {
        0
    }
}

#[inline(always)]
fn square<V: Lanes>(mut e: V, k: u32) -> V {
    for _ in 0..k {
        e = e.mul(e);
    }
    e
}

/// `K` vectors of the fused KD sums: updates the four accumulators, returns the exponentials.
/// One range test covers every exponential of the step; the maxima make the arguments `<= 0`, so
/// it fails only where a logit lies more than 87 T below its row's maximum (or is not finite).
/// `M = 2 K`: the student and teacher exponentials go through [`exp_fast`] together.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn kd_step<V: Lanes, const HARD: u8, const K: usize, const M: usize>(
    sv: [V; K],
    tv: [V; K],
    ms: V,
    mt: V,
    inv_t: V,
    acc: &mut [V; 4],
) -> [[V; K]; 3] {
    const { assert!(M == 2 * K) };
    let (mut ss, mut ts, mut ds, mut dt) = (sv, tv, sv, tv);
    for k in 0..K {
        (ss[k], ts[k]) = (sv[k].sub(ms), tv[k].sub(mt));
        (ds[k], dt[k]) = (ss[k].mul(inv_t), ts[k].mul(inv_t));
    }
    let mut magnitude = V::splat(0.0);
    for k in 0..K {
        magnitude = magnitude.max_magnitude(ds[k]).max_magnitude(dt[k]);
        if HARD == HARD_EXP {
            magnitude = magnitude.max_magnitude(ss[k]);
        }
    }
    let wide = magnitude.any_magnitude_above(EXP_FAST_MAX);
    let (mut es, mut et) = (ds, dt);
    if wide {
        for k in 0..K {
            (es[k], et[k]) = (exp_wide(ds[k]), exp_wide(dt[k]));
        }
    } else {
        let mut both = [ds[0]; M];
        for k in 0..K {
            (both[k], both[K + k]) = (ds[k], dt[k]);
        }
        let both = exp_fast(both);
        for k in 0..K {
            (es[k], et[k]) = (both[k], both[K + k]);
        }
    }
    let mut e1 = es;
    match HARD {
        HARD_EXP if wide => {
            for k in 0..K {
                e1[k] = exp_wide(ss[k]);
            }
        }
        HARD_EXP => e1 = exp_fast(ss),
        HARD_SOFT => {}
        _ => {
            for k in 0..K {
                e1[k] = square(es[k], squarings(HARD));
            }
        }
    }
    for k in 0..K {
        acc[0] = acc[0].add(es[k]);
        acc[1] = acc[1].add(et[k]);
        let diff = dt[k].sub(ds[k]);
        // p_t = 0 contributes 0, even where dt - ds is not finite (only possible when wide).
        acc[3] = if wide {
            et[k].mul(diff).where_positive(et[k]).add(acc[3])
        } else {
            et[k].mul_add(diff, acc[3])
        };
        if HARD != HARD_SOFT {
            acc[2] = acc[2].add(e1[k]);
        }
    }
    [es, et, e1]
}

/// `K` consecutive vectors of `x` from `i`.
#[inline(always)]
fn vectors<V: Lanes, const K: usize>(x: &[f32], i: usize) -> [V; K] {
    let mut out = [V::splat(0.0); K];
    for (k, v) in out.iter_mut().enumerate() {
        *v = load(x, i + k * V::N);
    }
    out
}

/// Stores the exponentials of one [`kd_step`] at `i`, when asked.
#[inline(always)]
fn keep<V: Lanes, const HARD: u8, const K: usize>(to: &mut Option<KdStore<'_>>, i: usize, out: [[V; K]; 3]) {
    let Some(st) = to.as_mut() else { return };
    let [es, et, e1] = out;
    for k in 0..K {
        store(es[k], st.student, i + k * V::N);
        store(et[k], st.teacher, i + k * V::N);
        if HARD == HARD_EXP {
            store(e1[k], st.hard, i + k * V::N);
        }
    }
}

/// The fused KD sums over one row (see [`KdRowSums`]), storing the exponentials when asked.
/// Two vectors per step, then at most one more vector and a tail.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn kd_row_sums<V: Lanes, const HARD: u8>(
    s: &[f32],
    t: &[f32],
    ms: f32,
    mt: f32,
    inv_t: f32,
    mut store_to: Option<KdStore<'_>>,
) -> KdRowSums {
    let (msv, mtv, inv) = (V::splat(ms), V::splat(mt), V::splat(inv_t));
    let mut total = [0.0f64; 4];
    let mut flush = |acc: &[V; 4]| {
        for (tot, a) in total.iter_mut().zip(acc) {
            *tot += f64::from(a.sum());
        }
    };
    let pair = 2 * V::N;
    let pairs_end = s.len() - s.len() % pair;
    let mut i = 0;
    while i < pairs_end {
        // BLOCK is even, so `end` stays on a pair boundary.
        let end = pairs_end.min(i + BLOCK * V::N);
        let mut acc = [V::splat(0.0); 4];
        while i < end {
            let (sv, tv) = (vectors::<V, 2>(s, i), vectors::<V, 2>(t, i));
            let out = kd_step::<V, HARD, 2, 4>(sv, tv, msv, mtv, inv, &mut acc);
            keep::<V, HARD, 2>(&mut store_to, i, out);
            i += pair;
        }
        flush(&acc);
    }
    let mut acc = [V::splat(0.0); 4];
    if i + V::N <= s.len() {
        let (sv, tv) = (vectors::<V, 1>(s, i), vectors::<V, 1>(t, i));
        let out = kd_step::<V, HARD, 1, 2>(sv, tv, msv, mtv, inv, &mut acc);
        keep::<V, HARD, 1>(&mut store_to, i, out);
        i += V::N;
    }
    if i < s.len() {
        let sv = load_tail(&s[i..], f32::NEG_INFINITY);
        let tv = load_tail(&t[i..], f32::NEG_INFINITY);
        let [[es], [et], [e1]] = kd_step::<V, HARD, 1, 2>([sv], [tv], msv, mtv, inv, &mut acc);
        if let Some(st) = store_to.as_mut() {
            store_tail(es, &mut st.student[i..]);
            store_tail(et, &mut st.teacher[i..]);
            if HARD == HARD_EXP {
                store_tail(e1, &mut st.hard[i..]);
            }
        }
    }
    flush(&acc);
    let [student, teacher, hard, cross] = total;
    KdRowSums { student, teacher, hard: if HARD == HARD_SOFT { student } else { hard }, cross }
}

/// One vector of the KD gradient: `cs * a + ct * b + ch * e1`, `e1` as `HARD` says (`g` for
/// [`HARD_EXP`]).
#[inline(always)]
fn grad_value<V: Lanes, const HARD: u8>(a: V, b: V, g: V, coefficients: [V; 3]) -> V {
    let [cs, ct, ch] = coefficients;
    let base = match HARD {
        HARD_SOFT => V::splat(0.0),
        HARD_EXP => g.mul(ch),
        _ => square(a, squarings(HARD)).mul(ch),
    };
    a.mul_add(cs, b.mul_add(ct, base))
}

/// `grad = cs * es + ct * et + ch * e1`, `e1` as `HARD` says (read from `grad` for [`HARD_EXP`]);
/// with `stream`, the aligned body of `grad` is written with [`Lanes::stream`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn kd_row_grad<V: Lanes, const HARD: u8>(
    es: &[f32],
    et: &[f32],
    cs: f32,
    ct: f32,
    ch: f32,
    grad: &mut [f32],
    stream: bool,
) {
    let coefficients = [V::splat(cs), V::splat(ct), V::splat(ch)];
    let old = |grad: &[f32], i: usize| if HARD == HARD_EXP { load(grad, i) } else { V::splat(0.0) };
    // Fewer than N elements, through a buffer.
    let part = |range: std::ops::Range<usize>, grad: &mut [f32]| {
        if range.is_empty() {
            return;
        }
        let g = if HARD == HARD_EXP { load_tail(&grad[range.clone()], 0.0) } else { V::splat(0.0) };
        let (a, b) = (load_tail(&es[range.clone()], 0.0), load_tail(&et[range.clone()], 0.0));
        store_tail(grad_value::<V, HARD>(a, b, g, coefficients), &mut grad[range]);
    };
    let len = es.len();
    // align_offset may refuse (usize::MAX): then nothing is streamed.
    let offset = grad.as_ptr().align_offset(4 * V::N);
    let stream = stream && offset < V::N;
    let head = if stream { offset.min(len) } else { 0 };
    part(0..head, grad);
    let body = head + (len - head) / V::N * V::N;
    let mut i = head;
    if stream {
        while i < body {
            let v = grad_value::<V, HARD>(load(es, i), load(et, i), old(grad, i), coefficients);
            let out = &mut grad[i..i + V::N];
            // SAFETY: `out` holds N floats; i - head is a multiple of N and grad + head is aligned
            // to 4 N bytes, so `out` is too.
            unsafe { v.stream(out.as_mut_ptr()) };
            i += V::N;
        }
        V::fence();
    } else {
        while i < body {
            let v = grad_value::<V, HARD>(load(es, i), load(et, i), old(grad, i), coefficients);
            store(v, grad, i);
            i += V::N;
        }
    }
    part(body..len, grad);
}

/// The `#[target_feature]` entry points of one instruction set over its [`Lanes`] type: written
/// once here, instantiated by `x86.rs` and `aarch64.rs`. Each is `unsafe` because the CPU must
/// have the features (`Isa::ensure_available`); lengths are checked by the callers in `mod.rs`.
macro_rules! entry_points {
    ($lanes:ty, $features:literal) => {
        use super::simd::{HARD_EXP, HARD_SOFT, HARD_SQUARE};
        use super::{HardExp, KdRowSums, KdStore};

        /// `y = exp(x)`; lengths equal.
        ///
        /// # Safety
        /// The CPU must support the features enabled here.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn exp_slice(x: &[f32], y: &mut [f32]) {
            simd::exp_slice::<$lanes>(x, y)
        }

        /// GELU in place.
        ///
        /// # Safety
        /// The CPU must support the features enabled here.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn gelu_slice(x: &mut [f32]) {
            simd::gelu_slice::<$lanes>(x)
        }

        /// LayerNorm of the rows of `x` in place; `beta` as long as `gamma`, `x` whole rows.
        ///
        /// # Safety
        /// The CPU must support the features enabled here.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
            simd::layer_norm::<$lanes>(x, gamma, beta, eps)
        }

        /// Maximum and finiteness of `x`.
        ///
        /// # Safety
        /// The CPU must support the features enabled here.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn max_finite(x: &[f32]) -> (f32, bool) {
            simd::max_finite::<$lanes>(x)
        }

        /// `y = exp((x - shift) * scale)`, returns the sum; lengths equal.
        ///
        /// # Safety
        /// The CPU must support the features enabled here.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn exp_sum(x: &[f32], shift: f32, scale: f32, y: &mut [f32]) -> f64 {
            simd::exp_sum::<$lanes>(x, shift, scale, y)
        }

        /// The fused KD sums of one row.
        ///
        /// # Safety
        /// The CPU must support the features enabled here.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn kd_row_sums(
            s: &[f32],
            t: &[f32],
            ms: f32,
            mt: f32,
            inv_t: f32,
            hard: HardExp,
            store: Option<KdStore<'_>>,
        ) -> KdRowSums {
            match hard {
                HardExp::Soft => simd::kd_row_sums::<$lanes, HARD_SOFT>(s, t, ms, mt, inv_t, store),
                HardExp::Exp => simd::kd_row_sums::<$lanes, HARD_EXP>(s, t, ms, mt, inv_t, store),
                HardExp::Square(1) => simd::kd_row_sums::<$lanes, HARD_SQUARE>(s, t, ms, mt, inv_t, store),
                HardExp::Square(2) => {
                    simd::kd_row_sums::<$lanes, { HARD_SQUARE + 1 }>(s, t, ms, mt, inv_t, store)
                }
                HardExp::Square(3) => {
                    simd::kd_row_sums::<$lanes, { HARD_SQUARE + 2 }>(s, t, ms, mt, inv_t, store)
                }
                // Refused by the caller; the reference keeps this arm total.
                HardExp::Square(_) => super::scalar::kd_row_sums(s, t, ms, mt, inv_t, hard, store),
            }
        }

        /// The KD gradient combination of one row.
        ///
        /// # Safety
        /// The CPU must support the features enabled here.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn kd_row_grad(
            es: &[f32],
            et: &[f32],
            cs: f32,
            ct: f32,
            ch: f32,
            hard: HardExp,
            grad: &mut [f32],
            stream: bool,
        ) {
            match hard {
                HardExp::Soft => simd::kd_row_grad::<$lanes, HARD_SOFT>(es, et, cs, ct, ch, grad, stream),
                HardExp::Exp => simd::kd_row_grad::<$lanes, HARD_EXP>(es, et, cs, ct, ch, grad, stream),
                HardExp::Square(1) => {
                    simd::kd_row_grad::<$lanes, HARD_SQUARE>(es, et, cs, ct, ch, grad, stream)
                }
                HardExp::Square(2) => {
                    simd::kd_row_grad::<$lanes, { HARD_SQUARE + 1 }>(es, et, cs, ct, ch, grad, stream)
                }
                HardExp::Square(3) => {
                    simd::kd_row_grad::<$lanes, { HARD_SQUARE + 2 }>(es, et, cs, ct, ch, grad, stream)
                }
                // Refused by the caller; the reference keeps this arm total.
                HardExp::Square(_) => super::scalar::kd_row_grad(es, et, cs, ct, ch, hard, grad, stream),
            }
        }
    };
}
pub(super) use entry_points;
