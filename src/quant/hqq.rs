//! HQQ (Badri & Shaji, 2023): calibration-free half-quadratic quantization. Each group starts from
//! min-max parameters and its zero point is refined by a proximal solver of
//! `min_z ||W - dequantize(quantize(W))||_p^p` (p = 0.7 < 1: robust to the outliers a few weights
//! are), as mobiusml/hqq's `optimize_weights_proximal_legacy` (its default optimizer) does:
//!
//! ```text
//! repeat iters times:
//!     W_q = clamp(round(W * s + z), 0, 2^bits - 1);  W_r = (W_q - z) / s
//!     W_e = shrink_p(W - W_r, beta);  z = mean_group(W_q - (W - W_e) * s);  beta *= kappa
//!     stop early when mean|W - W_r| over the whole weight no longer falls
//! ```
//!
//! with the inverse scale `s = min((2^bits - 1) / (max - min), 2e4)` fixed and `z = -min * s` (rounded
//! for 4 bits, as HQQ's `BaseQuantizeConfig` asks). Groups run along each row (HQQ's default `axis =
//! 1`: `group_size` consecutive input channels). As in HQQ, the zero update of the iteration that
//! stops the loop is kept, and a group of equal weights takes the clamped inverse scale 2e4.
//! Arithmetic is f64 (HQQ runs f32 on CPUs); scales and zeros are rounded once to f32, and the
//! levels are found with those rounded values, so they dequantize exactly as stored.
//!
//! ```
//! use greenai::quant::{hqq_quantize, HqqOptions};
//! let w: Vec<f32> = (0..128).map(|i| ((i * 37 % 101) as f32 - 50.0) / 100.0).collect();
//! let out = hqq_quantize(&w, 2, 64, &HqqOptions::default())?;
//! assert_eq!((out.groups, out.q.len()), (1, 128));
//! # Ok::<(), greenai::Error>(())
//! ```

use super::gptq::{check_weight, GptqWeight};
use crate::error::{Error, Result};

/// HQQ's options, defaults as published (`BaseQuantizeConfig(nbits=4, group_size=64)` with the
/// proximal solver's `lp_norm 0.7, beta 10, kappa 1.01, iters 20, early_stop`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HqqOptions {
    /// Bits per weight, 2 to 8.
    pub bits: u32,
    /// Consecutive input channels per group (default 64); 0 is one group per row. A size that does not
    /// divide `cols` leaves a shorter last group.
    pub group_size: usize,
    /// The p of the lp norm minimised, in (0, 1] (default 0.7).
    pub lp_norm: f32,
    /// The penalty's start, finite and > 0 (default 10).
    pub beta: f32,
    /// The penalty's growth per iteration, finite and >= 1 (default 1.01).
    pub kappa: f32,
    /// Solver iterations (default 20); 0 is HQQ's round-to-nearest.
    pub iters: u32,
    /// Stop when the mean absolute weight error stops falling (default true).
    pub early_stop: bool,
    /// Round the starting zero point to an integer (HQQ does for 4 bits; default true).
    pub round_zero: bool,
}

impl Default for HqqOptions {
    fn default() -> Self {
        HqqOptions {
            bits: 4,
            group_size: 64,
            lp_norm: 0.7,
            beta: 10.0,
            kappa: 1.01,
            iters: 20,
            early_stop: true,
            round_zero: true,
        }
    }
}

impl HqqOptions {
    /// HQQ's published defaults for `bits` (the starting zero is rounded for 4 bits only).
    pub fn with_bits(bits: u32) -> Self {
        HqqOptions { bits, round_zero: bits == 4, ..HqqOptions::default() }
    }

    fn check(&self) -> Result<()> {
        if !(self.lp_norm > 0.0 && self.lp_norm <= 1.0) {
            return Err(Error::invalid("lp_norm", self.lp_norm, "must lie in (0, 1]"));
        }
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::invalid("beta", self.beta, "must be finite and > 0"));
        }
        if !(self.kappa.is_finite() && self.kappa >= 1.0) {
            return Err(Error::invalid("kappa", self.kappa, "must be finite and >= 1"));
        }
        Ok(())
    }
}

/// HQQ's shrinkage (the proximal operator of the lp norm): `sign(x) * relu(|x| - |x|^(p-1) / beta)`.
fn shrink(x: f64, beta: f64, p: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let a = x.abs();
    let t = if p == 1.0 { 1.0 / beta } else { a.powf(p - 1.0) / beta };
    x.signum() * (a - t).max(0.0)
}

/// Quantizes `w` (`rows x cols` row-major, rows = output channels) with HQQ. Returns GPTQ's layout
/// (`w ~ scales[r, g] * (q - zeros[r, g])`, contiguous groups, `g_idx[c] = c / group_size`) with
/// real-valued zero points. Errors: non-finite weights, a wrong length, bits outside 2-8, options out
/// of range.
pub fn hqq_quantize(w: &[f32], rows: usize, cols: usize, opts: &HqqOptions) -> Result<GptqWeight> {
    let groups = check_weight(w, rows, cols, opts.bits, opts.group_size)?;
    opts.check()?;
    let mut out = GptqWeight::contiguous(rows, cols, opts.group_size, groups)?;
    if rows == 0 || cols == 0 {
        return Ok(out);
    }
    let gs = if opts.group_size == 0 { cols } else { opts.group_size };
    let maxq = f64::from((1u32 << opts.bits) - 1);
    let group = |r: usize, g: usize| r * cols + g * gs..r * cols + ((g + 1) * gs).min(cols);
    // Inverse scales and zeros, min-max start.
    let mut inv = vec![0.0f64; rows * groups];
    let mut zero = vec![0.0f64; rows * groups];
    for r in 0..rows {
        for g in 0..groups {
            let seg = &w[group(r, g)];
            let lo = seg.iter().fold(f64::INFINITY, |a, &v| a.min(f64::from(v)));
            let hi = seg.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let s = f64::from(((maxq / (hi - lo)).min(2e4)) as f32);
            let z = -lo * s;
            inv[r * groups + g] = s;
            zero[r * groups + g] = if opts.round_zero { z.round_ties_even() } else { z };
        }
    }
    let (p, kappa) = (f64::from(opts.lp_norm), f64::from(opts.kappa));
    let mut beta = f64::from(opts.beta);
    let mut best = 1e4f64;
    let level = |x: f64, s: f64, z: f64| (x * s + z).round_ties_even().clamp(0.0, maxq);
    for _ in 0..opts.iters {
        let mut abs_err = 0.0f64;
        for r in 0..rows {
            for g in 0..groups {
                let (s, z) = (inv[r * groups + g], zero[r * groups + g]);
                let seg = &w[group(r, g)];
                let mut sum = 0.0f64;
                for &v in seg {
                    let x = f64::from(v);
                    let q = level(x, s, z);
                    let e = x - (q - z) / s;
                    abs_err += e.abs();
                    sum += q - (x - shrink(e, beta, p)) * s;
                }
                zero[r * groups + g] = sum / seg.len() as f64;
            }
        }
        beta *= kappa;
        let current = abs_err / w.len() as f64;
        if opts.early_stop {
            if current < best {
                best = current;
            } else {
                break;
            }
        }
    }
    for r in 0..rows {
        for g in 0..groups {
            let k = r * groups + g;
            let (s, z) = (inv[k], f64::from(zero[k] as f32));
            out.scales[k] = (1.0 / s) as f32;
            out.zeros[k] = z as f32;
            for c in group(r, g) {
                out.q[c] = level(f64::from(w[c]), s, z) as u8;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_is_the_lp_proximal_step() {
        assert_eq!(shrink(0.0, 10.0, 0.7), 0.0);
        assert_eq!(shrink(0.05, 10.0, 1.0), 0.0);
        assert!((shrink(0.5, 10.0, 1.0) - 0.4).abs() < 1e-15);
        let x: f64 = -0.3;
        assert!((shrink(x, 10.0, 0.7) - (x + 0.3f64.powf(-0.3) / 10.0)).abs() < 1e-15);
    }

    #[test]
    fn no_iterations_is_hqq_round_to_nearest() {
        let w = [-1.0f32, -0.5, 0.25, 2.0];
        let out = hqq_quantize(&w, 1, 4, &HqqOptions { iters: 0, ..HqqOptions::default() }).unwrap();
        // s = 15 / 3 = 5, z = round(5) = 5: levels round(5w + 5).
        assert_eq!(out.q, vec![0, 2, 6, 15]);
        assert_eq!((out.scales[0], out.zeros[0]), (0.2, 5.0));
    }

    #[test]
    fn constant_groups_and_bad_options() {
        let out = hqq_quantize(&[0.5f32; 8], 2, 4, &HqqOptions::with_bits(3)).unwrap();
        assert!(out.dequantize().iter().all(|&v| (v - 0.5).abs() < 1e-4));
        let w = [0.0f32; 4];
        for bad in [
            HqqOptions { bits: 1, ..HqqOptions::default() },
            HqqOptions { bits: 9, ..HqqOptions::default() },
            HqqOptions { lp_norm: 0.0, ..HqqOptions::default() },
            HqqOptions { lp_norm: 1.5, ..HqqOptions::default() },
            HqqOptions { beta: f32::NAN, ..HqqOptions::default() },
            HqqOptions { kappa: 0.5, ..HqqOptions::default() },
        ] {
            assert!(hqq_quantize(&w, 1, 4, &bad).is_err(), "{bad:?}");
        }
        assert!(hqq_quantize(&[f32::INFINITY, 0.0], 1, 2, &HqqOptions::default()).is_err());
        assert!(hqq_quantize(&w, 2, 4, &HqqOptions::default()).is_err());
        assert!(hqq_quantize(&[], 0, 4, &HqqOptions::default()).unwrap().q.is_empty());
    }
}
