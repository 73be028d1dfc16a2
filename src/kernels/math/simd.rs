//! The kernel bodies, written once over a vector of f32 lanes ([`Lanes`]) and instantiated by
//! `x86.rs` and `aarch64.rs` inside their `#[target_feature]` entry points.
//!
//! Every function here is `#[inline(always)]`, so that it is compiled with the features of the
//! entry point that calls it.

use super::{KdRowSums, KdStore, EXP_POLY, LN2_HI, LN2_LO, LOG2E, ROUND_SHIFTER};

/// A vector of `N` f32 lanes of one instruction set.
///
/// Values of an implementing type are only made inside entry points whose instruction set
/// `Isa` has found available; that is what makes the safe methods sound.
pub(super) trait Lanes: Copy {
    /// Lanes per vector (at most 8).
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
    /// Lanewise maximum (lanes are not NaN where it matters).
    fn max(self, o: Self) -> Self;
    /// Lanewise minimum (lanes are not NaN where it matters).
    fn min(self, o: Self) -> Self;
    /// Rounds each lane to the nearest integer, ties to even.
    fn round_even(self) -> Self;
    /// `2^n` for integer-valued lanes `n` in `[-126, 127]`.
    fn pow2(n: Self) -> Self;
    /// `2^n` for lanes `shifted = n + ROUND_SHIFTER` (exactly), `n` an integer in `[-126, 127]`.
    fn pow2_shifted(shifted: Self) -> Self;
    /// Whether any lane is NaN or outside `[lo, hi]`.
    fn any_outside(self, lo: f32, hi: f32) -> bool;
    /// `self`, with the lanes where `x` is NaN replaced by `x`.
    fn nan_from(self, x: Self) -> Self;
    /// `self` where `m > 0`, else `+0.0` (even when `self` is NaN).
    fn where_positive(self, m: Self) -> Self;
    /// Sum of the lanes.
    fn sum(self) -> f32;
    /// Maximum of the lanes.
    fn hmax(self) -> f32;
}

/// Loads the first `x.len() < N` floats of a tail, the other lanes `pad`.
#[inline(always)]
fn load_tail<V: Lanes>(x: &[f32], pad: f32) -> V {
    let mut buf = [pad; 8];
    buf[..x.len()].copy_from_slice(x);
    // SAFETY: buf holds 8 >= N floats.
    unsafe { V::load(buf.as_ptr()) }
}

/// Stores the first `y.len() < N` lanes of `v` into a tail.
#[inline(always)]
fn store_tail<V: Lanes>(v: V, y: &mut [f32]) {
    let mut buf = [0.0f32; 8];
    // SAFETY: buf holds 8 >= N floats.
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

/// Range reduction and polynomial: `x = n ln2 + r`; returns `exp(r)`, `n` and `n + ROUND_SHIFTER`.
#[inline(always)]
fn exp_reduced<V: Lanes>(x: V) -> (V, V, V) {
    let shifter = V::splat(ROUND_SHIFTER);
    let shifted = x.mul_add(V::splat(LOG2E), shifter);
    let n = shifted.sub(shifter);
    let r = n.mul_add(V::splat(-LN2_HI), x);
    let r = n.mul_add(V::splat(-LN2_LO), r);
    let [a0, a1, a2, a3, a4, a5] = EXP_POLY.map(V::splat);
    let r2 = r.mul(r);
    let (q01, q23, q45) = (r.mul_add(a1, a0), r.mul_add(a3, a2), r.mul_add(a5, a4));
    let q = q45.mul_add(r2.mul(r2), q23.mul_add(r2, q01));
    (q.mul_add(r2, r).add(V::splat(1.0)), n, shifted)
}

/// exp of every lane, as [`super::scalar::exp`] defines it (bit for bit).
#[inline(always)]
pub(super) fn exp<V: Lanes>(x: V) -> V {
    if x.any_outside(-87.0, 88.0) {
        return exp_wide(x);
    }
    let (p, _, shifted) = exp_reduced(x);
    p.mul(V::pow2_shifted(shifted))
}

/// exp for lanes that may underflow, overflow or be NaN: the scale `2^n` is applied in two
/// exact-or-once-rounded halves so that subnormal results are correctly rounded.
#[inline(always)]
fn exp_wide<V: Lanes>(x: V) -> V {
    let clamped = x.max(V::splat(super::EXP_LO)).min(V::splat(super::EXP_HI));
    let (p, n, _) = exp_reduced(clamped);
    let n1 = n.mul(V::splat(0.5)).round_even();
    let n2 = n.sub(n1);
    p.mul(V::pow2(n1)).mul(V::pow2(n2)).nan_from(x)
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

/// [`HardExp`](super::HardExp) as a const parameter of the KD bodies.
pub(super) const HARD_SOFT: u8 = 0;
/// One more exponential per logit.
pub(super) const HARD_EXP: u8 = 1;
/// The soft student exponential squared `k` times.
pub(super) const HARD_SQUARE: u8 = 2;

#[inline(always)]
fn square<V: Lanes>(mut e: V, k: u32) -> V {
    for _ in 0..k {
        e = e.mul(e);
    }
    e
}

/// One vector of the fused KD sums: updates the four accumulators, returns the exponentials.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn kd_step<V: Lanes, const HARD: u8>(
    sv: V,
    tv: V,
    ms: V,
    mt: V,
    inv_t: V,
    squarings: u32,
    acc: &mut [V; 4],
) -> (V, V, V) {
    let (ss, ts) = (sv.sub(ms), tv.sub(mt));
    let (ds, dt) = (ss.mul(inv_t), ts.mul(inv_t));
    let (es, et) = (exp(ds), exp(dt));
    acc[0] = acc[0].add(es);
    acc[1] = acc[1].add(et);
    // p_t = 0 contributes 0, even where dt - ds is not finite.
    acc[3] = et.mul(dt.sub(ds)).where_positive(et).add(acc[3]);
    let e1 = match HARD {
        HARD_EXP => exp(ss),
        HARD_SQUARE => square(es, squarings),
        _ => es,
    };
    if HARD != HARD_SOFT {
        acc[2] = acc[2].add(e1);
    }
    (es, et, e1)
}

/// The fused KD sums over one row (see [`KdRowSums`]), storing the exponentials when asked.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn kd_row_sums<V: Lanes, const HARD: u8>(
    s: &[f32],
    t: &[f32],
    ms: f32,
    mt: f32,
    inv_t: f32,
    squarings: u32,
    mut store_to: Option<KdStore<'_>>,
) -> KdRowSums {
    let (msv, mtv, inv) = (V::splat(ms), V::splat(mt), V::splat(inv_t));
    let body = s.len() - s.len() % V::N;
    let mut total = [0.0f64; 4];
    let mut flush = |acc: &[V; 4]| {
        for (tot, a) in total.iter_mut().zip(acc) {
            *tot += f64::from(a.sum());
        }
    };
    let step = |sv, tv, acc: &mut [V; 4]| kd_step::<V, HARD>(sv, tv, msv, mtv, inv, squarings, acc);
    let mut i = 0;
    while i < body {
        let end = body.min(i + BLOCK * V::N);
        let mut acc = [V::splat(0.0); 4];
        while i < end {
            let (es, et, e1) = step(load(s, i), load(t, i), &mut acc);
            if let Some(st) = store_to.as_mut() {
                store(es, st.student, i);
                store(et, st.teacher, i);
                if HARD == HARD_EXP {
                    store(e1, st.hard, i);
                }
            }
            i += V::N;
        }
        flush(&acc);
    }
    if body < s.len() {
        let mut acc = [V::splat(0.0); 4];
        let sv = load_tail(&s[body..], f32::NEG_INFINITY);
        let tv = load_tail(&t[body..], f32::NEG_INFINITY);
        let (es, et, e1) = step(sv, tv, &mut acc);
        if let Some(st) = store_to.as_mut() {
            store_tail(es, &mut st.student[body..]);
            store_tail(et, &mut st.teacher[body..]);
            if HARD == HARD_EXP {
                store_tail(e1, &mut st.hard[body..]);
            }
        }
        flush(&acc);
    }
    let [student, teacher, hard, cross] = total;
    KdRowSums { student, teacher, hard: if HARD == HARD_SOFT { student } else { hard }, cross }
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
    squarings: u32,
    grad: &mut [f32],
    stream: bool,
) {
    let (csv, ctv, chv) = (V::splat(cs), V::splat(ct), V::splat(ch));
    let f = |a: V, b: V, g: V| {
        let base = match HARD {
            HARD_EXP => g.mul(chv),
            HARD_SQUARE => square(a, squarings).mul(chv),
            _ => V::splat(0.0),
        };
        a.mul_add(csv, b.mul_add(ctv, base))
    };
    // Fewer than N elements, through a buffer.
    let part = |range: std::ops::Range<usize>, grad: &mut [f32]| {
        if range.is_empty() {
            return;
        }
        let g = if HARD == HARD_EXP { load_tail(&grad[range.clone()], 0.0) } else { V::splat(0.0) };
        let v = f(load_tail(&es[range.clone()], 0.0), load_tail(&et[range.clone()], 0.0), g);
        store_tail(v, &mut grad[range]);
    };
    let len = es.len();
    // align_offset may refuse (usize::MAX): then nothing is streamed.
    let offset = grad.as_ptr().align_offset(4 * V::N);
    let stream = stream && offset < V::N;
    let head = if stream { offset.min(len) } else { 0 };
    part(0..head, grad);
    let body = head + (len - head) / V::N * V::N;
    let mut i = head;
    while i < body {
        let g = if HARD == HARD_EXP { load(grad, i) } else { V::splat(0.0) };
        let v = f(load(es, i), load(et, i), g);
        if stream {
            let out = &mut grad[i..i + V::N];
            // SAFETY: `out` holds N floats; i - head is a multiple of N and grad + head is aligned
            // to 4 N bytes, so `out` is too.
            unsafe { v.stream(out.as_mut_ptr()) };
        } else {
            store(v, grad, i);
        }
        i += V::N;
    }
    part(body..len, grad);
    if stream {
        V::fence();
    }
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
                HardExp::Soft => simd::kd_row_sums::<$lanes, HARD_SOFT>(s, t, ms, mt, inv_t, 0, store),
                HardExp::Exp => simd::kd_row_sums::<$lanes, HARD_EXP>(s, t, ms, mt, inv_t, 0, store),
                HardExp::Square(k) => simd::kd_row_sums::<$lanes, HARD_SQUARE>(s, t, ms, mt, inv_t, k, store),
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
                HardExp::Soft => simd::kd_row_grad::<$lanes, HARD_SOFT>(es, et, cs, ct, ch, 0, grad, stream),
                HardExp::Exp => simd::kd_row_grad::<$lanes, HARD_EXP>(es, et, cs, ct, ch, 0, grad, stream),
                HardExp::Square(k) => {
                    simd::kd_row_grad::<$lanes, HARD_SQUARE>(es, et, cs, ct, ch, k, grad, stream)
                }
            }
        }
    };
}
pub(super) use entry_points;
