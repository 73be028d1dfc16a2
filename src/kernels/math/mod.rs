//! Vectorised elementwise math: exp, max, exp-sum, softmax, and the two row kernels of the fused
//! knowledge-distillation pass.
//!
//! [`scalar`] is the definition: its [`scalar::exp`] is within one ulp of the exact value over
//! the whole f32 range (subnormal results and overflow to infinity included), and the SIMD paths
//! reproduce it bit for bit (all 2^32 inputs checked by an ignored test). Sums are accumulated in
//! f32 lanes over short blocks, then in f64.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod scalar;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod simd;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_512;

use super::Isa;
use crate::{Error, Result};

/// 8 log2(e): `x * LOG2E_8 + ROUND_SHIFTER`, rounded once by a fused multiply-add, holds
/// `n = round_ties_even(8 x log2 e)` in its low mantissa bits. `n mod 8` indexes
/// [`EXP2_EIGHTHS`] and `n >> 3` is the binary exponent of the result, so neither needs a rounding
/// or conversion instruction.
const LOG2E_8: f32 = 8.0 * std::f32::consts::LOG2_E;
/// 1.5 * 2^23: see [`LOG2E_8`].
const ROUND_SHIFTER: f32 = 12_582_912.0;
/// ln(2) / 8 split for Cody-Waite reduction: `LN2_8_HI` has 9 significant bits, so `n * LN2_8_HI`
/// is exact for every `n` the clamped range gives.
const LN2_8_HI: f32 = 0.693_359_4 / 8.0;
const LN2_8_LO: f32 = -2.121_944_4e-4 / 8.0;
/// `2^(j / 8)` for `j` in `0..8`, correctly rounded to f32 (bit patterns, so that the table is
/// exactly what a 60-digit computation of the powers rounds to).
const EXP2_EIGHTHS: [f32; 8] = [
    f32::from_bits(0x3f80_0000),
    f32::from_bits(0x3f8b_95c2),
    f32::from_bits(0x3f98_37f0),
    f32::from_bits(0x3fa5_fed7),
    f32::from_bits(0x3fb5_04f3),
    f32::from_bits(0x3fc5_672a),
    f32::from_bits(0x3fd7_44fd),
    f32::from_bits(0x3fea_c0c7),
];
/// Taylor coefficients of `(exp(r) - 1 - r) / r^2` for `|r| <= ln(2) / 16`: the truncated term is
/// below 2^-29 of the result.
const EXP_POLY: [f32; 3] = [0.5, 1.0 / 6.0, 1.0 / 24.0];
/// For `|x| <= EXP_FAST_MAX` exp is a normal f32, so `2^(n >> 3)` is applied by adding to the
/// exponent field.
const EXP_FAST_MAX: f32 = 87.0;
/// Below this exp is 0 in f32 (exp(-104) < 2^-150), above it infinity (exp(88.8) > f32::MAX).
const EXP_LO: f32 = -104.0;
const EXP_HI: f32 = 88.8;

/// The sums one row of the fused KD pass needs, for student logits `s`, teacher logits `t`,
/// their maxima `ms`, `mt` and `1/T`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KdRowSums {
    /// `sum exp((s - ms) / T)`.
    pub student: f64,
    /// `sum exp((t - mt) / T)`.
    pub teacher: f64,
    /// `sum exp(s - ms)` (equal to `student` when the hard part is not computed separately).
    pub hard: f64,
    /// `sum exp((t - mt) / T) * ((t - mt) / T - (s - ms) / T)`, terms with a zero exponential left out.
    pub cross: f64,
}

/// Where the fused KD pass gets `exp(s - ms)`, the numerators of the hard-label softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardExp {
    /// Not needed (no labels), or the soft student exponential itself (T = 1).
    Soft,
    /// One more exponential per logit, stored in [`KdStore::hard`].
    Exp,
    /// The soft student exponential squared `k` times, `k` in `1..=3`: for T = 2^k (1/T is then
    /// exact), with no exponential and nothing stored; accurate to about 2^k times the
    /// exponential's ulp.
    Square(u32),
}

impl HardExp {
    /// The cheapest exact-enough source for temperature `t` (`labels`: whether the hard part is needed).
    pub fn for_temperature(t: f32, labels: bool) -> HardExp {
        match t {
            _ if !labels || t == 1.0 => HardExp::Soft,
            2.0 => HardExp::Square(1),
            4.0 => HardExp::Square(2),
            8.0 => HardExp::Square(3),
            _ => HardExp::Exp,
        }
    }
}

/// Where [`kd_row_sums_on`] stores the row's exponentials, for [`kd_row_grad_on`].
#[derive(Debug)]
pub struct KdStore<'a> {
    /// Receives `exp((s - ms) / T)`.
    pub student: &'a mut [f32],
    /// Receives `exp((t - mt) / T)`.
    pub teacher: &'a mut [f32],
    /// Receives `exp(s - ms)` with [`HardExp::Exp`]; otherwise unused (may be empty).
    pub hard: &'a mut [f32],
}

/// Calls `$f` of the chosen path (which must have passed `ensure_available`).
macro_rules! dispatch {
    ($isa:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: ensure_available confirmed AVX2, FMA and F16C.
            Isa::Avx2 => unsafe { x86::$f($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: ensure_available confirmed AVX-512 F/BW/VL/DQ and the AVX2 tier's features.
            Isa::Avx512 => unsafe { x86_512::$f($($arg),*) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: ensure_available confirmed NEON.
            Isa::Neon | Isa::Dotprod | Isa::I8mm => unsafe { aarch64::$f($($arg),*) },
            Isa::Scalar => scalar::$f($($arg),*),
        }
    };
}

fn check_hard(hard: HardExp) -> Result<()> {
    match hard {
        HardExp::Square(k) if !(1..=3).contains(&k) => {
            Err(Error::invalid("hard squarings", k, "must be 1, 2 or 3 (T = 2, 4 or 8)"))
        }
        _ => Ok(()),
    }
}

fn check_same_len(context: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected != actual {
        return Err(Error::ShapeMismatch { context, expected: vec![expected], actual: vec![actual] });
    }
    Ok(())
}

/// `P` of Abramowitz and Stegun's 7.1.26 erf approximation (GELU's erf).
const GELU_ERF_P: f32 = 0.327_591_1;
/// Its coefficients `a1..a5` of `p(t) = t (a1 + t (a2 + ...))`.
const GELU_ERF_POLY: [f32; 5] = [0.254_829_6, -0.284_496_72, 1.421_413_8, -1.453_152, 1.061_405_4];

/// GELU in place, the erf form BERT's and PyTorch's default `gelu` use: `x/2 (1 + erf(x / sqrt 2))`,
/// within `1e-7 |x|` (plus rounding) of it; every path equals [`scalar::gelu`] bit for bit.
pub fn gelu(x: &mut [f32]) {
    dispatch!(Isa::active(), gelu_slice(x));
}

/// [`gelu`] on a chosen path.
pub fn gelu_on(isa: Isa, x: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    dispatch!(isa, gelu_slice(x));
    Ok(())
}

/// LayerNorm in place over rows of `gamma.len()` floats: `(x - mean) / sqrt(var + eps) * gamma + beta`
/// with the biased variance, as PyTorch's `LayerNorm`. Statistics are summed in f64 over f32 blocks
/// and the variance is taken around the mean (two passes), so a large common offset costs no
/// accuracy. `x` must hold whole rows, `beta` as many floats as `gamma`, `eps` be finite and >= 0.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) -> Result<()> {
    layer_norm_on(Isa::active(), x, gamma, beta, eps)
}

/// [`layer_norm`] on a chosen path.
pub fn layer_norm_on(isa: Isa, x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) -> Result<()> {
    isa.ensure_available()?;
    check_same_len("layer_norm beta", gamma.len(), beta.len())?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::invalid("eps", eps, "must be finite and >= 0"));
    }
    if gamma.is_empty() {
        return if x.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid("layer_norm gamma", 0, "a row holds at least one value"))
        };
    }
    if !x.len().is_multiple_of(gamma.len()) {
        return Err(Error::ShapeMismatch {
            context: "layer_norm rows",
            expected: vec![x.len() / gamma.len() * gamma.len(), gamma.len()],
            actual: vec![x.len()],
        });
    }
    dispatch!(isa, layer_norm(x, gamma, beta, eps));
    Ok(())
}

/// `y = exp(x)` elementwise.
pub fn exp(x: &[f32], y: &mut [f32]) -> Result<()> {
    exp_on(Isa::active(), x, y)
}

/// [`exp`] on a chosen path.
pub fn exp_on(isa: Isa, x: &[f32], y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_same_len("exp output", x.len(), y.len())?;
    dispatch!(isa, exp_slice(x, y));
    Ok(())
}

/// The maximum of `x` when every element is finite (`-inf` when `x` is empty); `None` when some
/// element is infinite or NaN.
pub fn max_finite(x: &[f32]) -> Option<f32> {
    let (max, finite) = dispatch!(Isa::active(), max_finite(x));
    finite.then_some(max)
}

/// Fails with [`Error::NonFinite`] naming the first infinity or NaN in `data` (found by the SIMD
/// finite scan of [`max_finite`]; the index is looked up only on failure).
pub fn check_finite(name: &'static str, data: &[f32]) -> Result<()> {
    match max_finite(data) {
        Some(_) => Ok(()),
        None => Err(non_finite(name, data)),
    }
}

/// [`Error::NonFinite`] for the first infinity or NaN in `data` (index 0 when there is none).
pub fn non_finite(name: &'static str, data: &[f32]) -> Error {
    let index = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
    Error::NonFinite { name, index, value: data.get(index).map_or(f64::NAN, |&v| f64::from(v)) }
}

/// [`max_finite`] on a chosen path.
pub fn max_finite_on(isa: Isa, x: &[f32]) -> Result<Option<f32>> {
    isa.ensure_available()?;
    let (max, finite) = dispatch!(isa, max_finite(x));
    Ok(finite.then_some(max))
}

/// `y = exp((x - shift) * scale)` elementwise; returns the sum of `y` (accumulated in f64).
pub fn exp_sum(x: &[f32], shift: f32, scale: f32, y: &mut [f32]) -> Result<f64> {
    exp_sum_on(Isa::active(), x, shift, scale, y)
}

/// [`exp_sum`] on a chosen path.
pub fn exp_sum_on(isa: Isa, x: &[f32], shift: f32, scale: f32, y: &mut [f32]) -> Result<f64> {
    isa.ensure_available()?;
    check_same_len("exp_sum output", x.len(), y.len())?;
    Ok(dispatch!(isa, exp_sum(x, shift, scale, y)))
}

/// `y = softmax(x * scale)` (max-subtracted); returns `log(sum(exp(x * scale)))`. `x` must be
/// finite and `scale` positive and finite; an empty `x` gives `-inf`.
pub fn softmax(x: &[f32], scale: f32, y: &mut [f32]) -> Result<f64> {
    softmax_on(Isa::active(), x, scale, y)
}

/// [`softmax`] on a chosen path.
pub fn softmax_on(isa: Isa, x: &[f32], scale: f32, y: &mut [f32]) -> Result<f64> {
    isa.ensure_available()?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::invalid("scale", scale, "must be positive and finite"));
    }
    check_same_len("softmax output", x.len(), y.len())?;
    let Some(max) = max_finite_on(isa, x)? else {
        return Err(non_finite("x", x));
    };
    if x.is_empty() {
        return Ok(f64::NEG_INFINITY);
    }
    let total = dispatch!(isa, exp_sum(x, max, scale, y));
    let inv = (1.0 / total) as f32;
    y.iter_mut().for_each(|v| *v *= inv);
    Ok(f64::from(max) * f64::from(scale) + total.ln())
}

/// The fused KD sums of one row of student logits `s` and teacher logits `t`, given their maxima
/// `ms`, `mt` (as [`max_finite`] gives them) and `inv_t = 1/T`; `hard` says how `exp(s - ms)` is
/// summed. With `store`, the exponentials are written for [`kd_row_grad_on`]. Lengths that differ
/// and [`HardExp::Square`] outside `1..=3` are errors, and then nothing is written.
#[allow(clippy::too_many_arguments)]
pub fn kd_row_sums_on(
    isa: Isa,
    s: &[f32],
    t: &[f32],
    ms: f32,
    mt: f32,
    inv_t: f32,
    hard: HardExp,
    store: Option<KdStore<'_>>,
) -> Result<KdRowSums> {
    isa.ensure_available()?;
    check_hard(hard)?;
    check_same_len("kd teacher row", s.len(), t.len())?;
    if let Some(st) = &store {
        check_same_len("kd student store", s.len(), st.student.len())?;
        check_same_len("kd teacher store", s.len(), st.teacher.len())?;
        if hard == HardExp::Exp {
            check_same_len("kd hard store", s.len(), st.hard.len())?;
        }
    }
    Ok(dispatch!(isa, kd_row_sums(s, t, ms, mt, inv_t, hard, store)))
}

/// The KD gradient of one row from the stored exponentials: `grad = cs * es + ct * et + ch * e1`,
/// where `e1 = exp(s - ms)` comes as `hard` says (with [`HardExp::Exp`], `grad` holds it on entry;
/// with [`HardExp::Soft`] the term is left out). `stream` writes `grad` with non-temporal stores
/// where the path has them, for gradients larger than the caches; the values are the same. Errors
/// as for [`kd_row_sums_on`].
#[allow(clippy::too_many_arguments)]
pub fn kd_row_grad_on(
    isa: Isa,
    es: &[f32],
    et: &[f32],
    cs: f32,
    ct: f32,
    ch: f32,
    hard: HardExp,
    grad: &mut [f32],
    stream: bool,
) -> Result<()> {
    isa.ensure_available()?;
    check_hard(hard)?;
    check_same_len("kd teacher exponentials", es.len(), et.len())?;
    check_same_len("kd gradient row", es.len(), grad.len())?;
    dispatch!(isa, kd_row_grad(es, et, cs, ct, ch, hard, grad, stream));
    Ok(())
}

#[cfg(test)]
mod tests;
