//! SmoothQuant (Xiao et al., 2022): per-input-channel migration scales that move the activations'
//! outliers into the weights, `s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`, so that both quantize
//! well to int8 (W8A8). The weights' columns are multiplied by `s`; the activations are divided by it,
//! which costs nothing when it is folded into the previous LayerNorm's weight and bias. The rules are
//! those of mit-han-lab/smoothquant's `smooth_ln_fcs`: `max|W_j|` over every linear layer fed by the
//! same activations (stack their rows), both clamped below at `1e-5`.
//!
//! ```
//! use greenai::quant::smoothquant::{channel_absmax, smooth_weight, smoothquant_scales};
//! // Two samples of 3 input channels (channel 1 an outlier) into a 2 x 3 weight.
//! let x = [0.5f32, 40.0, -1.0, -0.2, -60.0, 0.8];
//! let mut w = [0.1f32, 0.02, -0.3, -0.2, 0.01, 0.25];
//! let act = channel_absmax(&x, 2, 3)?;
//! assert_eq!(act, vec![0.5, 60.0, 1.0]);
//! let s = smoothquant_scales(&act, &w, 2, 3, 0.5)?;
//! assert!((s[1] - (60.0f32 / 0.02).sqrt()).abs() < 1e-3);
//! smooth_weight(&mut w, 2, 3, &s)?;
//! # Ok::<(), greenai::Error>(())
//! ```

use crate::error::{checked_product, Error, Result};
use crate::kernels::math::check_finite;

/// SmoothQuant's lower clamp of the weight maxima and of the scales.
const CLAMP: f64 = 1e-5;

fn check_matrix(context: &'static str, x: &[f32], rows: usize, cols: usize) -> Result<()> {
    let len = checked_product(context, &[rows, cols])?;
    if x.len() != len {
        return Err(Error::ShapeMismatch { context, expected: vec![rows, cols], actual: vec![x.len()] });
    }
    check_finite(context, x)
}

fn check_scales(scales: &[f32], cols: usize) -> Result<()> {
    if scales.len() != cols {
        return Err(Error::ShapeMismatch {
            context: "scales",
            expected: vec![cols],
            actual: vec![scales.len()],
        });
    }
    match scales.iter().position(|&s| !(s.is_finite() && s > 0.0)) {
        Some(i) => Err(Error::invalid("scales", scales[i], format!("scale {i} must be finite and > 0"))),
        None => Ok(()),
    }
}

/// The per-channel maximum of `|x|` over `samples` rows of `cols` channels (`x` row-major): the
/// activation statistic SmoothQuant calibrates (`act_scales`). Merge batches with an elementwise max.
pub fn channel_absmax(x: &[f32], samples: usize, cols: usize) -> Result<Vec<f32>> {
    check_matrix("x", x, samples, cols)?;
    let mut out = vec![0.0f32; cols];
    for row in x.chunks_exact(cols.max(1)).take(samples) {
        for (m, &v) in out.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    Ok(out)
}

/// SmoothQuant's migration scales for the weight `w` (`rows x cols` row-major, rows = output channels;
/// stack the rows of every layer that reads the same activations) given the activations' per-channel
/// `act_absmax` (`cols`): `s_j = (act_j^alpha / max(max_r |w_rj|, 1e-5)^(1 - alpha))`, clamped below at
/// `1e-5`. `alpha` (default 0.5) lies in `[0, 1]`. Computed in f64, rounded once to f32.
pub fn smoothquant_scales(
    act_absmax: &[f32],
    w: &[f32],
    rows: usize,
    cols: usize,
    alpha: f32,
) -> Result<Vec<f32>> {
    check_matrix("w", w, rows, cols)?;
    if act_absmax.len() != cols {
        return Err(Error::ShapeMismatch {
            context: "act_absmax",
            expected: vec![cols],
            actual: vec![act_absmax.len()],
        });
    }
    check_finite("act_absmax", act_absmax)?;
    if let Some(i) = act_absmax.iter().position(|&a| a < 0.0) {
        return Err(Error::invalid(
            "act_absmax",
            act_absmax[i],
            format!("entry {i} is a maximum of |x|: >= 0"),
        ));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::invalid("alpha", alpha, "must lie in [0, 1]"));
    }
    let mut wmax = vec![0.0f64; cols];
    for row in w.chunks_exact(cols.max(1)).take(rows) {
        for (m, &v) in wmax.iter_mut().zip(row) {
            *m = m.max(f64::from(v).abs());
        }
    }
    let alpha = f64::from(alpha);
    Ok(act_absmax
        .iter()
        .zip(&wmax)
        .map(|(&a, &m)| {
            let s = f64::from(a).powf(alpha) / m.max(CLAMP).powf(1.0 - alpha);
            s.max(CLAMP) as f32
        })
        .collect())
}

/// Multiplies column `j` of `w` (`rows x cols` row-major) by `scales[j]`: the smoothed weight.
pub fn smooth_weight(w: &mut [f32], rows: usize, cols: usize, scales: &[f32]) -> Result<()> {
    check_matrix("w", w, rows, cols)?;
    check_scales(scales, cols)?;
    for row in w.chunks_exact_mut(cols.max(1)).take(rows) {
        row.iter_mut().zip(scales).for_each(|(v, &s)| *v *= s);
    }
    Ok(())
}

/// Divides channel `j` of `x` (`samples x cols` row-major) by `scales[j]`: the smoothed activations,
/// for a layer whose input is not produced by a norm that can absorb the scales.
pub fn smooth_activations(x: &mut [f32], samples: usize, cols: usize, scales: &[f32]) -> Result<()> {
    check_matrix("x", x, samples, cols)?;
    check_scales(scales, cols)?;
    for row in x.chunks_exact_mut(cols.max(1)).take(samples) {
        row.iter_mut().zip(scales).for_each(|(v, &s)| *v /= s);
    }
    Ok(())
}

/// Folds the division by `scales` into the previous LayerNorm (or RMSNorm): its `weight` and, when
/// present, its `bias` (each `scales.len()` long) divided elementwise, as `smooth_ln_fcs` does.
pub fn smooth_norm(weight: &mut [f32], bias: Option<&mut [f32]>, scales: &[f32]) -> Result<()> {
    let cols = scales.len();
    check_scales(scales, cols)?;
    check_matrix("norm weight", weight, 1, cols)?;
    if let Some(b) = &bias {
        check_matrix("norm bias", b, 1, cols)?;
    }
    weight.iter_mut().zip(scales).for_each(|(v, &s)| *v /= s);
    if let Some(b) = bias {
        b.iter_mut().zip(scales).for_each(|(v, &s)| *v /= s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_and_alpha_edges() {
        // A dead input channel (act 0) and a zero weight column both hit the clamps.
        let act = [0.0f32, 4.0, 9.0];
        let w = [0.0f32, 0.5, -2.0, 0.0, -0.25, 1.0];
        let s = smoothquant_scales(&act, &w, 2, 3, 0.5).unwrap();
        assert_eq!(s[0], 1e-5);
        assert_eq!(s[1], (4.0f64.sqrt() / 0.5f64.sqrt()) as f32);
        assert_eq!(s[2], (3.0 / 2.0f64.sqrt()) as f32);
        // alpha 1: s = act (clamped); alpha 0: s = 1 / max|w|.
        assert_eq!(smoothquant_scales(&act, &w, 2, 3, 1.0).unwrap(), vec![1e-5, 4.0, 9.0]);
        assert_eq!(smoothquant_scales(&act, &w, 2, 3, 0.0).unwrap()[2], 0.5);
    }

    #[test]
    fn smoothing_keeps_the_product() {
        let x = [1.0f32, -30.0, 0.5, 2.0, 10.0, -0.25];
        let w = [0.5f32, 0.25, -1.0, 0.125, -0.5, 0.75];
        let s = smoothquant_scales(&channel_absmax(&x, 2, 3).unwrap(), &w, 2, 3, 0.5).unwrap();
        let (mut xs, mut ws) = (x, w);
        smooth_activations(&mut xs, 2, 3, &s).unwrap();
        smooth_weight(&mut ws, 2, 3, &s).unwrap();
        for t in 0..2 {
            for r in 0..2 {
                let y: f32 = (0..3).map(|c| x[t * 3 + c] * w[r * 3 + c]).sum();
                let ys: f32 = (0..3).map(|c| xs[t * 3 + c] * ws[r * 3 + c]).sum();
                assert!((y - ys).abs() < 1e-5 * y.abs().max(1.0));
            }
        }
        let (mut g, mut b) = ([1.0f32; 3], [0.5f32; 3]);
        smooth_norm(&mut g, Some(&mut b), &s).unwrap();
        assert_eq!(g[1], 1.0 / s[1]);
        assert_eq!(b[1], 0.5 / s[1]);
    }

    #[test]
    fn bad_input_is_refused() {
        let w = [1.0f32; 6];
        assert!(smoothquant_scales(&[1.0; 2], &w, 2, 3, 0.5).is_err());
        assert!(smoothquant_scales(&[1.0; 3], &w, 2, 3, 1.5).is_err());
        assert!(smoothquant_scales(&[1.0; 3], &w, 2, 3, f32::NAN).is_err());
        assert!(smoothquant_scales(&[1.0, -1.0, 1.0], &w, 2, 3, 0.5).is_err());
        assert!(smoothquant_scales(&[1.0, f32::INFINITY, 1.0], &w, 2, 3, 0.5).is_err());
        assert!(smoothquant_scales(&[1.0; 3], &w[..5], 2, 3, 0.5).is_err());
        let mut w2 = w;
        assert!(smooth_weight(&mut w2, 2, 3, &[1.0, 0.0, 1.0]).is_err());
        assert_eq!(w2, w);
        assert!(channel_absmax(&[f32::NAN, 0.0], 1, 2).is_err());
        assert!(smooth_norm(&mut [1.0; 2], None, &[1.0; 3]).is_err());
    }
}
