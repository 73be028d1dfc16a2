//! AWQ (Lin et al., 2023): activation-aware weight quantization, as llm-awq's `auto_scale` /
//! `auto_clip` and AutoAWQ's `_search_best_scale` / `_search_best_clip` do it for one linear layer.
//!
//! 1. Scale search: for `alpha = k / n_grid` (`k = 0 .. n_grid`), per-input-channel scales
//!    `s = mean|x|^alpha` (or AutoAWQ's `duo_scaling`: `mean|x|^alpha / (w_mean^(1 - alpha) + 1e-4)`, with
//!    `w_mean` the column mean of `|w|` divided by its group's max), clamped below at `1e-4`,
//!    normalised by `sqrt(max(s) * min(s))` (non-finite scales become 1); the weight `Q(W diag(s))
//!    diag(s)^-1` is scored by the mean squared error of the layer's outputs on the calibration
//!    inputs, and the lowest score wins (the first on ties).
//! 2. Clipping search, on the scaled weight and inputs `x / s`: per row and group, the clamp `±max|w|
//!    (1 - i / n_grid)` for `i = 0 .. max_shrink * n_grid` with the least mean squared error of the
//!    group's partial outputs over `clip_samples` evenly strided tokens.
//! 3. The scaled, clipped weight is quantized group-wise (AWQ's min-max quantizer: the range of the
//!    group without 0, `scale = max(max - min, 1e-5) / (2^bits - 1)`, `zero = clamp(-round(min /
//!    scale))`).
//!
//! The result holds `scales` (`s`): divide the previous layer's output channels by them (a norm's
//! weight and bias, or the previous linear layer's rows, as `smooth_norm` does), so the quantized
//! weight multiplies `x / s`. Arithmetic is f64; scales are rounded once to f32 and used as rounded.
//! Output errors use the inputs' Gram matrix `X^T X` when there are more samples than columns
//! (identical in exact arithmetic, cheaper), else `(W - W_hat) X^T` directly (faer products).

use super::gptq::{check_weight, GptqWeight};
use crate::error::{checked_product, Error, Result};
use crate::kernels::math::check_finite;
use faer::{Mat, Parallelism};

/// AWQ's options (AutoAWQ's defaults: 4 bits, group 128, zero point, duo scaling, 20-point grids,
/// clipping down to half the range on 512 tokens).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AwqOptions {
    /// Bits per weight, 2 to 8.
    pub bits: u32,
    /// Consecutive input channels per group (default 128); 0 is one group per row. A size that does
    /// not divide `cols` leaves a shorter last group.
    pub group_size: usize,
    /// Asymmetric min-max grid with a zero point (default) or symmetric (`zero = 2^(bits-1)`).
    pub zero_point: bool,
    /// AutoAWQ's `duo_scaling` (`s_x^a / s_w^(1-a)`, default) or llm-awq's `s_x^a`.
    pub duo_scaling: bool,
    /// Grid points of both searches, >= 1 (default 20).
    pub n_grid: u32,
    /// Run the clipping search (default true; llm-awq skips it for attention's query and key).
    pub clip: bool,
    /// Largest share of the range the clipping search cuts, in [0, 1) (default 0.5).
    pub max_shrink: f32,
    /// Tokens the clipping search uses (every `samples / clip_samples`-th), >= 1 (default 512).
    pub clip_samples: usize,
}

impl Default for AwqOptions {
    fn default() -> Self {
        AwqOptions {
            bits: 4,
            group_size: 128,
            zero_point: true,
            duo_scaling: true,
            n_grid: 20,
            clip: true,
            max_shrink: 0.5,
            clip_samples: 512,
        }
    }
}

/// An AWQ-quantized layer: the quantized weight is that of `W diag(scales)` (clipped), so the layer
/// computes `dequantize(weight) (x / scales)`.
#[derive(Clone, Debug, PartialEq)]
pub struct AwqWeight {
    /// Per-input-channel scales `s` (`cols`) to divide out of the inputs (fold into the previous layer).
    pub scales: Vec<f32>,
    /// The winning `alpha` of the scale search.
    pub alpha: f32,
    /// The clamp of each group of the scaled weight (`rows x groups`); `max|w|` where nothing is clipped.
    pub clip: Vec<f32>,
    /// The quantized scaled weight, GPTQ's layout (contiguous groups).
    pub weight: GptqWeight,
}

impl AwqWeight {
    /// The effective weight on the original inputs: `dequantize(weight)[r, c] / scales[c]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = self.weight.dequantize();
        let cols = self.weight.cols.max(1);
        for row in w.chunks_exact_mut(cols) {
            row.iter_mut().zip(&self.scales).for_each(|(v, &s)| *v /= s);
        }
        w
    }
}

/// AWQ's group quantizer: `(scale, zero)` of one segment, levels `clamp(round(x / scale) + zero, 0,
/// maxq)`. The scale is rounded to f32, as stored.
fn group_params(x: &[f64], bits: u32, zero_point: bool) -> (f64, f64) {
    if zero_point {
        let maxq = f64::from((1u32 << bits) - 1);
        let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let scale = f64::from(((hi - lo).max(1e-5) / maxq) as f32);
        (scale, (-(lo / scale).round_ties_even()).clamp(0.0, maxq))
    } else {
        let amax = x.iter().fold(0.0f64, |a, &v| a.max(v.abs())).max(1e-5);
        let half = f64::from(1u32 << (bits - 1));
        (f64::from((amax / (half - 1.0)) as f32), half)
    }
}

fn level(x: f64, scale: f64, zero: f64, maxq: f64) -> f64 {
    ((x / scale).round_ties_even() + zero).clamp(0.0, maxq)
}

/// Fake-quantizes `seg` in place with AWQ's group quantizer.
fn fake_quant(seg: &mut [f64], bits: u32, zero_point: bool) {
    let maxq = f64::from((1u32 << bits) - 1);
    let (scale, zero) = group_params(seg, bits, zero_point);
    seg.iter_mut().for_each(|v| *v = scale * (level(*v, scale, zero, maxq) - zero));
}

/// Mean squared output error of weight differences `d` (`rows x cols`) on the inputs.
enum OutputError {
    /// `X^T X`, `cols x cols`.
    Gram(Mat<f64>),
    /// `X`, `samples x cols`.
    Direct(Mat<f64>),
}

impl OutputError {
    fn new(x: &[f32], samples: usize, cols: usize) -> Self {
        let xm = Mat::<f64>::from_fn(samples, cols, |t, c| f64::from(x[t * cols + c]));
        if samples > cols {
            let mut g = Mat::<f64>::zeros(cols, cols);
            faer::linalg::matmul::matmul(
                g.as_mut(),
                xm.transpose(),
                xm.as_ref(),
                None,
                1.0,
                Parallelism::None,
            );
            OutputError::Gram(g)
        } else {
            OutputError::Direct(xm)
        }
    }

    /// `sum ((W - W_hat) x_t)^2 / (rows * samples)` up to the constant `1 / samples` shared by all calls.
    fn score(&self, d: &Mat<f64>) -> f64 {
        match self {
            OutputError::Gram(g) => {
                let mut dg = Mat::<f64>::zeros(d.nrows(), d.ncols());
                faer::linalg::matmul::matmul(
                    dg.as_mut(),
                    d.as_ref(),
                    g.as_ref(),
                    None,
                    1.0,
                    Parallelism::None,
                );
                let mut s = 0.0;
                for j in 0..d.ncols() {
                    for i in 0..d.nrows() {
                        s += dg.read(i, j) * d.read(i, j);
                    }
                }
                s
            }
            OutputError::Direct(x) => {
                let mut y = Mat::<f64>::zeros(d.nrows(), x.nrows());
                faer::linalg::matmul::matmul(
                    y.as_mut(),
                    d.as_ref(),
                    x.transpose(),
                    None,
                    1.0,
                    Parallelism::None,
                );
                y.squared_norm_l2()
            }
        }
    }
}

/// Quantizes the linear layer `w` (`rows x cols` row-major, rows = output channels) with AWQ given
/// `samples` calibration inputs `x` (`samples x cols` row-major). Errors: non-finite values, wrong
/// lengths, no samples, bits outside 2-8, options out of range, a search whose every score is NaN.
pub fn awq_quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    samples: usize,
    opts: &AwqOptions,
) -> Result<AwqWeight> {
    let groups = check_weight(w, rows, cols, opts.bits, opts.group_size)?;
    let xlen = checked_product("x", &[samples, cols])?;
    if x.len() != xlen {
        return Err(Error::ShapeMismatch {
            context: "x",
            expected: vec![samples, cols],
            actual: vec![x.len()],
        });
    }
    check_finite("x", x)?;
    if samples == 0 {
        return Err(Error::invalid("samples", 0, "AWQ needs at least one calibration input"));
    }
    if opts.n_grid == 0 {
        return Err(Error::invalid("n_grid", 0, "must be >= 1"));
    }
    if !(0.0..1.0).contains(&opts.max_shrink) {
        return Err(Error::invalid("max_shrink", opts.max_shrink, "must lie in [0, 1)"));
    }
    if opts.clip_samples == 0 {
        return Err(Error::invalid("clip_samples", 0, "must be >= 1"));
    }
    let gs = if opts.group_size == 0 { cols.max(1) } else { opts.group_size };
    let bounds = |g: usize| g * gs..((g + 1) * gs).min(cols);
    let n_grid = f64::from(opts.n_grid);

    // Activation and weight statistics.
    let mut x_mean = vec![0.0f64; cols];
    for row in x.chunks_exact(cols.max(1)) {
        x_mean.iter_mut().zip(row).for_each(|(m, &v)| *m += f64::from(v).abs());
    }
    x_mean.iter_mut().for_each(|m| *m /= samples as f64);
    let mut w_mean = vec![0.0f64; cols];
    for row in w.chunks_exact(cols.max(1)) {
        for g in 0..groups {
            let seg = &row[bounds(g)];
            let amax = seg.iter().fold(0.0f64, |a, &v| a.max(f64::from(v).abs())) + 1e-6;
            for (m, &v) in w_mean[bounds(g)].iter_mut().zip(seg) {
                *m += f64::from(v).abs() / amax;
            }
        }
    }
    w_mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);

    // 1. Scale search.
    let err = OutputError::new(x, samples, cols);
    let scales_for = |alpha: f64| -> Vec<f64> {
        let mut s: Vec<f64> = x_mean
            .iter()
            .zip(&w_mean)
            .map(|(&xm, &wm)| {
                let s = if opts.duo_scaling {
                    xm.powf(alpha) / (wm.powf(1.0 - alpha) + 1e-4)
                } else {
                    xm.powf(alpha)
                };
                s.max(1e-4)
            })
            .collect();
        let hi = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
        let norm = (hi * lo).sqrt();
        s.iter_mut().for_each(|v| {
            let n = *v / norm;
            *v = if n.is_finite() { f64::from(n as f32) } else { 1.0 };
        });
        s
    };
    let mut best: Option<(f64, f64, Vec<f64>)> = None;
    let mut seg = vec![0.0f64; gs];
    for k in 0..opts.n_grid {
        let alpha = f64::from(k) / n_grid;
        let s = scales_for(alpha);
        let mut d = Mat::<f64>::zeros(rows, cols);
        for r in 0..rows {
            for g in 0..groups {
                let b = bounds(g);
                let seg = &mut seg[..b.len()];
                for (v, c) in seg.iter_mut().zip(b.clone()) {
                    *v = f64::from(w[r * cols + c]) * s[c];
                }
                fake_quant(seg, opts.bits, opts.zero_point);
                for (v, c) in seg.iter().zip(b) {
                    d.write(r, c, f64::from(w[r * cols + c]) - v / s[c]);
                }
            }
        }
        let loss = err.score(&d);
        if best.as_ref().is_none_or(|(l, _, _)| loss < *l) && !loss.is_nan() {
            best = Some((loss, alpha, s));
        }
    }
    let Some((_, alpha, s)) = best else {
        return Err(Error::invalid("x", format!("{samples}x{cols}"), "every AWQ scale scored NaN"));
    };
    drop(err);

    // 2. Clipping search on the scaled weight and inputs.
    let mut ws: Vec<f64> = (0..rows * cols).map(|k| f64::from(w[k]) * s[k % cols.max(1)]).collect();
    let mut clip = vec![0.0f32; rows * groups];
    let step = (samples / opts.clip_samples).max(1);
    let tokens: Vec<usize> = (0..samples).step_by(step).collect();
    let shrinks = (f64::from(opts.max_shrink) * n_grid) as u32;
    let mut cur = vec![0.0f64; gs];
    for g in 0..groups {
        let b = bounds(g);
        let n = b.len();
        // The group's Gram matrix over the sampled tokens, on x / s.
        let mut gram = vec![0.0f64; n * n];
        let mut xt = vec![0.0f64; n];
        for &t in &tokens {
            for (v, c) in xt.iter_mut().zip(b.clone()) {
                *v = f64::from(x[t * cols + c]) / s[c];
            }
            for i in 0..n {
                for j in 0..n {
                    gram[i * n + j] += xt[i] * xt[j];
                }
            }
        }
        for r in 0..rows {
            let orig = &mut ws[r * cols + b.start..r * cols + b.end];
            let org_max = orig.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
            let mut best_max = org_max;
            if opts.clip {
                let mut min_err = 1e9f64;
                let cur = &mut cur[..n];
                for i_s in 0..shrinks {
                    let max_val = org_max * (1.0 - f64::from(i_s) / n_grid);
                    cur.iter_mut().zip(orig.iter()).for_each(|(c, &v)| *c = v.clamp(-max_val, max_val));
                    fake_quant(cur, opts.bits, opts.zero_point);
                    cur.iter_mut().zip(orig.iter()).for_each(|(c, &v)| *c -= v);
                    let mut e = 0.0;
                    for i in 0..n {
                        let gi = &gram[i * n..(i + 1) * n];
                        e += cur[i] * gi.iter().zip(cur.iter()).map(|(a, b)| a * b).sum::<f64>();
                    }
                    let e = e / tokens.len() as f64;
                    if e < min_err {
                        min_err = e;
                        best_max = max_val;
                    }
                }
                orig.iter_mut().for_each(|v| *v = v.clamp(-best_max, best_max));
            }
            clip[r * groups + g] = best_max as f32;
        }
    }

    // 3. Quantize the scaled, clipped weight.
    let mut weight = GptqWeight::contiguous(rows, cols, opts.group_size, groups)?;
    let maxq = f64::from((1u32 << opts.bits) - 1);
    for r in 0..rows {
        for g in 0..groups {
            let b = bounds(g);
            let seg = &ws[r * cols + b.start..r * cols + b.end];
            let (scale, zero) = group_params(seg, opts.bits, opts.zero_point);
            weight.scales[r * groups + g] = scale as f32;
            weight.zeros[r * groups + g] = zero as f32;
            for (k, &v) in seg.iter().enumerate() {
                weight.q[r * cols + b.start + k] = level(v, scale, zero, maxq) as u8;
            }
        }
    }
    Ok(AwqWeight { scales: s.iter().map(|&v| v as f32).collect(), alpha: alpha as f32, clip, weight })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_quantizer_follows_awq() {
        // 4-bit on [0.5, 2]: the range excludes 0; zero = clamp(-round(0.5 / 0.1), 0, 15) = 0.
        let (s, z) = group_params(&[0.5, 1.0, 2.0], 4, true);
        assert!((s - 0.1).abs() < 1e-8 && z == 0.0);
        // [-1, 2]: scale 0.2, zero 5. Symmetric: amax / 7, zero 8.
        assert_eq!(group_params(&[-1.0, 2.0], 4, true).1, 5.0);
        let (s, z) = group_params(&[-1.0, 2.0], 4, false);
        assert!((s - 2.0 / 7.0).abs() < 1e-7 && z == 8.0);
        let mut seg = [0.0f64; 3];
        fake_quant(&mut seg, 4, true);
        assert_eq!(seg, [0.0; 3]);
    }

    #[test]
    fn bad_input_is_refused() {
        let w = [0.5f32; 8];
        let x = [1.0f32; 12];
        let ok = AwqOptions { group_size: 2, ..AwqOptions::default() };
        assert!(awq_quantize(&w, 2, 4, &x, 3, &ok).is_ok());
        assert!(awq_quantize(&w, 2, 4, &x[..11], 3, &ok).is_err());
        assert!(awq_quantize(&w, 2, 4, &[], 0, &ok).is_err());
        let mut nan = x;
        nan[5] = f32::NAN;
        assert!(matches!(awq_quantize(&w, 2, 4, &nan, 3, &ok), Err(Error::NonFinite { .. })));
        for bad in [
            AwqOptions { bits: 1, ..ok },
            AwqOptions { bits: 9, ..ok },
            AwqOptions { n_grid: 0, ..ok },
            AwqOptions { max_shrink: 1.0, ..ok },
            AwqOptions { max_shrink: f32::NAN, ..ok },
            AwqOptions { clip_samples: 0, ..ok },
        ] {
            assert!(awq_quantize(&w, 2, 4, &x, 3, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dead_channels_and_empty_rows() {
        // Input channel 1 is always 0: its scale is finite, the output is exact there anyway.
        let w = [0.3f32, -0.2, 0.1, 0.4, 0.25, -0.5];
        let x = [1.0f32, 0.0, -2.0, 0.5, 0.0, 1.5, -1.0, 0.0, 0.25];
        let out = awq_quantize(&w, 2, 3, &x, 3, &AwqOptions::default()).unwrap();
        assert!(out.scales.iter().all(|s| s.is_finite() && *s > 0.0));
        assert!(out.dequantize().iter().all(|v| v.is_finite()));
        let none = awq_quantize(&[], 0, 3, &x, 3, &AwqOptions::default()).unwrap();
        assert!(none.weight.q.is_empty() && none.scales.len() == 3);
    }
}
