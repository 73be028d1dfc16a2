//! Element conversion kernels: f32 <-> f16/bf16 casts and ONNX-exact linear quantization.
//!
//! `y = saturate(round_half_even(x / scale) + zero_point)` with `x / scale` computed in f32, and
//! `x = (y - zero_point) * scale`, exactly as ONNX QuantizeLinear / DequantizeLinear define them.
//! The scalar path in [`scalar`] is the definition; the AVX2+F16C (`x86.rs`), AVX-512
//! (`x86_512.rs`) and NEON (`aarch64.rs`) paths match it bit for bit, NaN payloads included: a NaN cast either way is
//! quieted and keeps its top payload bits, as `half` does. Quantize refuses NaN with one SIMD
//! pre-scan ([`first_nan`]) before writing anything, then converts in a second pass; the AVX-512
//! path instead converts up to 16 Ki elements and tests them for NaN in one pass, into a scratch
//! copied out once the whole input proved clean.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub(crate) mod general;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_512;

use super::Isa;
use crate::{Error, Result};
use half::{bf16, f16};

/// Runs kernel `$f` on the path `$isa` (already checked available with `Isa::ensure_available`).
macro_rules! dispatch {
    ($isa:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `ensure_available` passed for `Isa::Avx2`, so the CPU has AVX2, FMA and F16C.
            Isa::Avx2 => unsafe { x86::$f($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `ensure_available` passed for `Isa::Avx512`, so the CPU has AVX-512 F/BW/VL/DQ
            // and the AVX2 tier's features.
            Isa::Avx512 => unsafe { x86_512::$f($($arg),*) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: `ensure_available` passed for `Isa::Neon`, so the CPU has NEON.
            Isa::Neon | Isa::Dotprod | Isa::I8mm => unsafe { aarch64::$f($($arg),*) },
            Isa::Scalar => scalar::$f($($arg),*),
        }
    };
}

fn check_same_len(x: usize, y: usize) -> Result<()> {
    if x != y {
        return Err(Error::ShapeMismatch {
            context: "conversion output",
            expected: vec![x],
            actual: vec![y],
        });
    }
    Ok(())
}

/// Checks a quantization scale: positive, finite and normal.
pub fn check_scale(scale: f32) -> Result<()> {
    if !(scale.is_normal() && scale > 0.0) {
        return Err(Error::invalid("scale", scale, "must be positive, finite and normal"));
    }
    Ok(())
}

/// Minimum, maximum and whether every element is finite (`(inf, -inf, true)` when empty), on the
/// active SIMD path: the range a quantizer's parameters come from.
pub fn min_max_finite(x: &[f32]) -> (f32, f32, bool) {
    min_max_finite_on(Isa::active(), x)
}

/// [`min_max_finite`] on `isa` (available, as [`Isa::active`] and every tier below it are): the
/// AVX2 and AVX-512 paths keep the portable one's 16 lanes, so the results are the same.
pub(crate) fn min_max_finite_on(isa: Isa, x: &[f32]) -> (f32, f32, bool) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller passes an available tier: AVX-512 F/BW/VL/DQ and AVX2's features.
        Isa::Avx512 => unsafe { x86_512::min_max_finite(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { x86::min_max_finite(x) },
        _ => min_max_finite_portable(x),
    }
}

/// The portable [`min_max_finite`]: one pass that the compiler vectorises (independent lanes;
/// `v * 0` is NaN exactly for infinities and NaN, and NaN sticks in a sum).
fn min_max_finite_portable(x: &[f32]) -> (f32, f32, bool) {
    const LANES: usize = 16;
    let (mut lo, mut hi, mut bad) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES], [0.0f32; LANES]);
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..LANES {
            let v = chunk[i];
            lo[i] = if v < lo[i] { v } else { lo[i] };
            hi[i] = if v > hi[i] { v } else { hi[i] };
            bad[i] += v * 0.0;
        }
    }
    for (i, &v) in rest.iter().enumerate() {
        lo[i] = if v < lo[i] { v } else { lo[i] };
        hi[i] = if v > hi[i] { v } else { hi[i] };
        bad[i] += v * 0.0;
    }
    let min = lo.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let max = hi.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    (min, max, bad.iter().all(|&b| b == 0.0))
}

/// Converts f32 to IEEE binary16, round to nearest even (NaN stays NaN, overflow to infinity).
pub fn f32_to_f16(x: &[f32], y: &mut [f16]) -> Result<()> {
    f32_to_f16_on(Isa::active(), x, y)
}

/// [`f32_to_f16`] on a chosen path.
pub fn f32_to_f16_on(isa: Isa, x: &[f32], y: &mut [f16]) -> Result<()> {
    isa.ensure_available()?;
    check_same_len(x.len(), y.len())?;
    dispatch!(isa, f32_to_f16(x, y));
    Ok(())
}

/// Converts IEEE binary16 to f32 (exact).
pub fn f16_to_f32(x: &[f16], y: &mut [f32]) -> Result<()> {
    f16_to_f32_on(Isa::active(), x, y)
}

/// [`f16_to_f32`] on a chosen path.
pub fn f16_to_f32_on(isa: Isa, x: &[f16], y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_same_len(x.len(), y.len())?;
    dispatch!(isa, f16_to_f32(x, y));
    Ok(())
}

/// Converts f32 to bfloat16, round to nearest even (NaN stays NaN).
pub fn f32_to_bf16(x: &[f32], y: &mut [bf16]) -> Result<()> {
    f32_to_bf16_on(Isa::active(), x, y)
}

/// [`f32_to_bf16`] on a chosen path.
pub fn f32_to_bf16_on(isa: Isa, x: &[f32], y: &mut [bf16]) -> Result<()> {
    isa.ensure_available()?;
    check_same_len(x.len(), y.len())?;
    dispatch!(isa, f32_to_bf16(x, y));
    Ok(())
}

/// Converts bfloat16 to f32 (exact).
pub fn bf16_to_f32(x: &[bf16], y: &mut [f32]) -> Result<()> {
    bf16_to_f32_on(Isa::active(), x, y)
}

/// [`bf16_to_f32`] on a chosen path.
pub fn bf16_to_f32_on(isa: Isa, x: &[bf16], y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_same_len(x.len(), y.len())?;
    dispatch!(isa, bf16_to_f32(x, y));
    Ok(())
}

/// Index of the first NaN in `x`, if any: a SIMD pass that runs at memory bandwidth.
pub fn first_nan(x: &[f32]) -> Option<usize> {
    // `Isa::active` is always available.
    dispatch!(Isa::active(), first_nan(x))
}

/// [`first_nan`] on a chosen path.
pub fn first_nan_on(isa: Isa, x: &[f32]) -> Result<Option<usize>> {
    isa.ensure_available()?;
    Ok(dispatch!(isa, first_nan(x)))
}

/// Fails with [`Error::NonFinite`] naming the first NaN in `data`, on the active SIMD path.
pub fn check_no_nan(name: &'static str, data: &[f32]) -> Result<()> {
    check_no_nan_on(Isa::active(), name, data)
}

/// [`check_no_nan`] on a chosen path.
pub fn check_no_nan_on(isa: Isa, name: &'static str, data: &[f32]) -> Result<()> {
    nan_error(name, first_nan_on(isa, data)?)
}

/// The error naming the first NaN of `name`, if there is one.
fn nan_error(name: &'static str, first_nan: Option<usize>) -> Result<()> {
    match first_nan {
        Some(index) => Err(Error::NonFinite { name, index, value: f64::NAN }),
        None => Ok(()),
    }
}

/// Runs quantizer `$f` (`quantize_i8` or `quantize_u8`) on `x` that may hold NaN, on the path
/// `$isa`: the first NaN's index with `y` untouched, or `None` with `y` written. The AVX-512 path
/// converts and tests in one pass (`$checked`); the others scan, then convert.
macro_rules! quantize_checked {
    ($isa:expr, $f:ident, $checked:ident, $x:expr, $scale:expr, $zero_point:expr, $y:expr) => {{
        let (isa, x, scale, zero_point, y) = ($isa, $x, $scale, $zero_point, $y);
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            // SAFETY: the caller checked `Isa::Avx512` available: AVX-512 F/BW/VL/DQ and AVX2's set.
            return nan_error("x", unsafe { x86_512::$checked(x, scale, zero_point, y) });
        }
        let first = dispatch!(isa, first_nan(x));
        if first.is_none() {
            dispatch!(isa, $f(x, scale, zero_point, y));
        }
        nan_error("x", first)
    }};
}

/// ONNX QuantizeLinear to i8. A NaN in `x` is an error naming its index, and `y` is left untouched.
pub fn quantize_i8(x: &[f32], scale: f32, zero_point: i8, y: &mut [i8]) -> Result<()> {
    quantize_i8_on(Isa::active(), x, scale, zero_point, y)
}

/// [`quantize_i8`] on a chosen path.
pub fn quantize_i8_on(isa: Isa, x: &[f32], scale: f32, zero_point: i8, y: &mut [i8]) -> Result<()> {
    isa.ensure_available()?;
    check_scale(scale)?;
    check_same_len(x.len(), y.len())?;
    quantize_checked!(isa, quantize_i8, quantize_i8_checked, x, scale, zero_point, y)
}

/// [`quantize_i8_on`] for `x` the caller has already found free of NaN (with [`check_no_nan`]):
/// each run of a per-channel or per-block quantization, after one scan of the whole tensor.
pub(crate) fn quantize_i8_scanned_on(
    isa: Isa,
    x: &[f32],
    scale: f32,
    zero_point: i8,
    y: &mut [i8],
) -> Result<()> {
    check_scale(scale)?;
    check_same_len(x.len(), y.len())?;
    dispatch!(isa, quantize_i8(x, scale, zero_point, y));
    Ok(())
}

/// ONNX QuantizeLinear to u8. A NaN in `x` is an error naming its index, and `y` is left untouched.
pub fn quantize_u8(x: &[f32], scale: f32, zero_point: u8, y: &mut [u8]) -> Result<()> {
    quantize_u8_on(Isa::active(), x, scale, zero_point, y)
}

/// [`quantize_u8`] on a chosen path.
pub fn quantize_u8_on(isa: Isa, x: &[f32], scale: f32, zero_point: u8, y: &mut [u8]) -> Result<()> {
    isa.ensure_available()?;
    check_scale(scale)?;
    check_same_len(x.len(), y.len())?;
    quantize_checked!(isa, quantize_u8, quantize_u8_checked, x, scale, zero_point, y)
}

/// [`quantize_u8_on`] for `x` the caller has already found free of NaN (see
/// [`quantize_i8_scanned_on`]).
pub(crate) fn quantize_u8_scanned_on(
    isa: Isa,
    x: &[f32],
    scale: f32,
    zero_point: u8,
    y: &mut [u8],
) -> Result<()> {
    check_scale(scale)?;
    check_same_len(x.len(), y.len())?;
    dispatch!(isa, quantize_u8(x, scale, zero_point, y));
    Ok(())
}

/// ONNX DequantizeLinear from i8: `x = (y - zero_point) * scale`.
pub fn dequantize_i8(y: &[i8], scale: f32, zero_point: i8, x: &mut [f32]) -> Result<()> {
    dequantize_i8_on(Isa::active(), y, scale, zero_point, x)
}

/// [`dequantize_i8`] on a chosen path.
pub fn dequantize_i8_on(isa: Isa, y: &[i8], scale: f32, zero_point: i8, x: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_scale(scale)?;
    check_same_len(y.len(), x.len())?;
    dispatch!(isa, dequantize_i8(y, scale, zero_point, x));
    Ok(())
}

/// ONNX DequantizeLinear from u8: `x = (y - zero_point) * scale`.
pub fn dequantize_u8(y: &[u8], scale: f32, zero_point: u8, x: &mut [f32]) -> Result<()> {
    dequantize_u8_on(Isa::active(), y, scale, zero_point, x)
}

/// [`dequantize_u8`] on a chosen path.
pub fn dequantize_u8_on(isa: Isa, y: &[u8], scale: f32, zero_point: u8, x: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    check_scale(scale)?;
    check_same_len(y.len(), x.len())?;
    dispatch!(isa, dequantize_u8(y, scale, zero_point, x));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_rng::Rng;

    /// The range by a plain fold: exact, and finite exactly when every element is.
    fn reference(x: &[f32]) -> (f32, f32, bool) {
        let min = x.iter().fold(f32::INFINITY, |a, &b| if b < a { b } else { a });
        let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
        (min, max, x.iter().all(|v| v.is_finite()))
    }

    #[test]
    fn min_max_finite_matches_a_fold_on_every_tier() {
        let mut rng = Rng(0x5eed_4a11);
        for len in (0..=80).chain([127, 128, 129, 1000]) {
            let clean = rng.floats(len, 3.0);
            let mut cases = vec![clean.clone()];
            // A NaN or an infinity at every position of the short rows (tails, whole vectors, pairs),
            // and at a few of the long ones.
            let positions: Vec<usize> =
                if len <= 80 { (0..len).collect() } else { vec![0, len / 2, len - 1] };
            for &at in &positions {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut x = clean.clone();
                    x[at] = bad;
                    cases.push(x);
                }
            }
            for x in &cases {
                let want = reference(x);
                for isa in Isa::available() {
                    let got = min_max_finite_on(isa, x);
                    assert_eq!(got.2, want.2, "{isa:?} len {len}: finite flag of {x:?}");
                    if !x.iter().any(|v| v.is_nan()) {
                        assert_eq!((got.0, got.1), (want.0, want.1), "{isa:?} len {len}: range");
                    }
                }
            }
        }
    }
}
