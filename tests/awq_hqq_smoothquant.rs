//! AWQ, HQQ and SmoothQuant on the language-model-like layer of tests/support/llm_layer.rs: each
//! against an independent float64 implementation of its reference's formulas (plain loops, written
//! from llm-awq / AutoAWQ, mobiusml/hqq and mit-han-lab/smoothquant), and against round-to-nearest.
//! Run with `--nocapture` to see the error ratios quoted in the README.

// The references are written as plain index loops on purpose.
#![allow(clippy::needless_range_loop)]

#[path = "support/llm_layer.rs"]
mod llm_layer;

use greenai::quant::smoothquant::{channel_absmax, smooth_activations, smooth_weight, smoothquant_scales};
use greenai::quant::{awq_quantize, hqq_quantize, rtn_quantize, AwqOptions, GptqOptions, HqqOptions};
use llm_layer::{llm_layer, Layer};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// SmoothQuant: closed-form scales, and W8A8 (int8 weights per channel, int8 activations) error.
// ---------------------------------------------------------------------------------------------

/// `smooth_ln_fcs`'s scales in f64.
fn ref_smooth_scales(layer: &Layer, alpha: f64) -> Vec<f64> {
    let n = layer.cols;
    (0..n)
        .map(|c| {
            let act = (0..layer.samples).map(|t| f64::from(layer.x[t * n + c]).abs()).fold(0.0, f64::max);
            let wmax = (0..layer.rows).map(|r| f64::from(layer.w[r * n + c]).abs()).fold(0.0, f64::max);
            (act.powf(alpha) / wmax.max(1e-5).powf(1.0 - alpha)).max(1e-5)
        })
        .collect()
}

/// Symmetric int8 fake quantization of `v` by its absolute maximum (SmoothQuant's `fake_quant.py`:
/// `scale = max|v| / 127`, `round(v / scale) * scale`).
fn fake_int8(v: &mut [f64]) {
    let scale = v.iter().fold(0.0f64, |a, &x| a.max(x.abs())).max(1e-5) / 127.0;
    v.iter_mut().for_each(|x| *x = (*x / scale).round_ties_even().clamp(-128.0, 127.0) * scale);
}

/// `||X W^T - Q(X) Q(W)^T||_F` for int8 weights per output channel and int8 activations per tensor
/// (`per_token = false`) or per token, in f64.
fn w8a8_error(
    w: &[f32],
    x: &[f32],
    rows: usize,
    cols: usize,
    samples: usize,
    per_token: bool,
    orig: &Layer,
) -> f64 {
    let mut wq: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
    wq.chunks_mut(cols).for_each(fake_int8);
    let mut xq: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    if per_token {
        xq.chunks_mut(cols).for_each(fake_int8);
    } else {
        fake_int8(&mut xq);
    }
    let mut total = 0.0;
    for t in 0..samples {
        for r in 0..rows {
            let y: f64 =
                (0..cols).map(|c| f64::from(orig.x[t * cols + c]) * f64::from(orig.w[r * cols + c])).sum();
            let yq: f64 = (0..cols).map(|c| xq[t * cols + c] * wq[r * cols + c]).sum();
            total += (y - yq).powi(2);
        }
    }
    total.sqrt()
}

#[test]
fn smoothquant_scales_are_the_closed_form_and_w8a8_error_falls() {
    let layer = llm_layer(64, 256, 512, 11);
    let (rows, cols, samples) = (layer.rows, layer.cols, layer.samples);
    let act = channel_absmax(&layer.x, samples, cols).unwrap();
    for alpha in [0.5f32, 0.0, 0.8, 1.0] {
        let s = smoothquant_scales(&act, &layer.w, rows, cols, alpha).unwrap();
        let r = ref_smooth_scales(&layer, f64::from(alpha));
        for (a, b) in s.iter().zip(&r) {
            assert_eq!(*a, *b as f32, "alpha {alpha}: {a} vs {b}");
        }
    }
    let s = smoothquant_scales(&act, &layer.w, rows, cols, 0.5).unwrap();
    let (mut ws, mut xs) = (layer.w.clone(), layer.x.clone());
    smooth_weight(&mut ws, rows, cols, &s).unwrap();
    smooth_activations(&mut xs, samples, cols, &s).unwrap();
    for per_token in [false, true] {
        let plain = w8a8_error(&layer.w, &layer.x, rows, cols, samples, per_token, &layer);
        let smooth = w8a8_error(&ws, &xs, rows, cols, samples, per_token, &layer);
        let ratio = smooth / plain;
        println!(
            "SmoothQuant a=0.5 W8A8 (activations per {}): output error / RTN {ratio:.4}",
            if per_token { "token" } else { "tensor" }
        );
        assert!(ratio < 0.8, "per_token {per_token}: {smooth} vs {plain}");
    }
}

// ---------------------------------------------------------------------------------------------
// AWQ: the f64 reference (llm-awq's auto_scale + auto_clip, AutoAWQ's duo scaling), outputs direct.
// ---------------------------------------------------------------------------------------------

/// AWQ's pseudo-quantization of a group (f32-rounded scale, as stored).
fn ref_awq_fake(v: &[f64], bits: u32) -> Vec<f64> {
    let maxq = f64::from((1u32 << bits) - 1);
    let hi = v.iter().fold(f64::MIN, |a, &x| a.max(x));
    let lo = v.iter().fold(f64::MAX, |a, &x| a.min(x));
    let scale = ((hi - lo).max(1e-5) / maxq) as f32 as f64;
    let zero = (-(lo / scale).round_ties_even()).clamp(0.0, maxq);
    v.iter()
        .map(|&x| ((x / scale).round_ties_even() + zero).clamp(0.0, maxq) * scale - zero * scale)
        .collect()
}

struct RefAwq {
    alpha: f64,
    scales: Vec<f64>,
    w_hat: Vec<f64>,
}

fn ref_awq(layer: &Layer, bits: u32, gs: usize, duo: bool) -> RefAwq {
    let (rows, n, samples) = (layer.rows, layer.cols, layer.samples);
    let w = |r: usize, c: usize| f64::from(layer.w[r * n + c]);
    let x = |t: usize, c: usize| f64::from(layer.x[t * n + c]);
    let x_mean: Vec<f64> =
        (0..n).map(|c| (0..samples).map(|t| x(t, c).abs()).sum::<f64>() / samples as f64).collect();
    let mut w_mean = vec![0.0; n];
    for r in 0..rows {
        for g0 in (0..n).step_by(gs) {
            let m = (g0..g0 + gs).map(|c| w(r, c).abs()).fold(0.0, f64::max) + 1e-6;
            for c in g0..g0 + gs {
                w_mean[c] += w(r, c).abs() / m / rows as f64;
            }
        }
    }
    let quantize_scaled = |ws: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; rows * n];
        for r in 0..rows {
            for g0 in (0..n).step_by(gs) {
                let q = ref_awq_fake(&ws[r * n + g0..r * n + g0 + gs], bits);
                out[r * n + g0..r * n + g0 + gs].copy_from_slice(&q);
            }
        }
        out
    };
    let (mut best, mut best_alpha, mut best_s) = (f64::INFINITY, 0.0, vec![]);
    for k in 0..20 {
        let a = f64::from(k) / 20.0;
        let mut s: Vec<f64> = (0..n)
            .map(|c| {
                let v = if duo {
                    x_mean[c].powf(a) / (w_mean[c].powf(1.0 - a) + 1e-4)
                } else {
                    x_mean[c].powf(a)
                };
                v.max(1e-4)
            })
            .collect();
        let norm =
            (s.iter().fold(0.0f64, |p, &v| p.max(v)) * s.iter().fold(f64::MAX, |p, &v| p.min(v))).sqrt();
        s.iter_mut().for_each(|v| *v = (*v / norm) as f32 as f64);
        let ws: Vec<f64> = (0..rows * n).map(|k| w(k / n, k % n) * s[k % n]).collect();
        let q = quantize_scaled(&ws);
        let mut loss = 0.0;
        for t in 0..samples {
            for r in 0..rows {
                let d: f64 = (0..n).map(|c| (w(r, c) - q[r * n + c] / s[c]) * x(t, c)).sum();
                loss += d * d;
            }
        }
        loss /= (rows * samples) as f64;
        if loss < best {
            (best, best_alpha, best_s) = (loss, a, s);
        }
    }
    // Clipping: on W diag(s) and x / s, tokens 0, step, 2 step, ... (step = samples / 512).
    let s = best_s;
    let mut ws: Vec<f64> = (0..rows * n).map(|k| w(k / n, k % n) * s[k % n]).collect();
    let step = (samples / 512).max(1);
    let tokens: Vec<usize> = (0..samples).step_by(step).collect();
    for r in 0..rows {
        for g0 in (0..n).step_by(gs) {
            let orig: Vec<f64> = ws[r * n + g0..r * n + g0 + gs].to_vec();
            let org_max = orig.iter().fold(0.0f64, |p, &v| p.max(v.abs()));
            let (mut min_err, mut best_max) = (1e9, org_max);
            for i_s in 0..10 {
                let mv = org_max * (1.0 - f64::from(i_s) / 20.0);
                let cur: Vec<f64> = orig.iter().map(|&v| v.clamp(-mv, mv)).collect();
                let q = ref_awq_fake(&cur, bits);
                let mut err = 0.0;
                for &t in &tokens {
                    let d: f64 = (0..gs).map(|j| (q[j] - orig[j]) * x(t, g0 + j) / s[g0 + j]).sum();
                    err += d * d;
                }
                err /= tokens.len() as f64;
                if err < min_err {
                    (min_err, best_max) = (err, mv);
                }
            }
            for j in 0..gs {
                ws[r * n + g0 + j] = orig[j].clamp(-best_max, best_max);
            }
        }
    }
    let q = quantize_scaled(&ws);
    let w_hat = (0..rows * n).map(|k| q[k] / s[k % n]).collect();
    RefAwq { alpha: best_alpha, scales: s, w_hat }
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn awq_matches_the_f64_reference_and_beats_round_to_nearest() {
    let layer = llm_layer(64, 256, 600, 23);
    let (rows, cols, samples) = (layer.rows, layer.cols, layer.samples);
    for (duo, bits, gs) in [(true, 4, 128), (false, 4, 128), (true, 3, 64)] {
        let opts = AwqOptions { bits, group_size: gs, duo_scaling: duo, ..AwqOptions::default() };
        let ours = awq_quantize(&layer.w, rows, cols, &layer.x, samples, &opts).unwrap();
        let reference = ref_awq(&layer, bits, gs, duo);
        assert_eq!(ours.alpha, reference.alpha as f32, "duo {duo}: alpha");
        for (a, b) in ours.scales.iter().zip(&reference.scales) {
            assert!((f64::from(*a) - b).abs() <= 1e-6 * b, "{a} vs {b}");
        }
        let e_ours = layer.output_error(&ours.dequantize());
        let e_ref = layer.output_error(&to_f32(&reference.w_hat));
        let rtn = rtn_quantize(
            &layer.w,
            rows,
            cols,
            &GptqOptions { bits, group_size: gs, ..GptqOptions::default() },
        )
        .unwrap()
        .dequantize();
        let e_rtn = layer.output_error(&rtn);
        println!(
            "AWQ {bits}-bit g{gs} duo {duo}: alpha {:.2}, output error / RTN {:.4} (reference {:.4})",
            ours.alpha,
            e_ours / e_rtn,
            e_ref / e_rtn
        );
        assert!((e_ours / e_ref - 1.0).abs() <= 0.01, "within 1% of the reference: {e_ours} vs {e_ref}");
        assert!(e_ours < 0.9 * e_rtn, "AWQ below RTN: {e_ours} vs {e_rtn}");
    }
    // Without clipping, alpha 0 of llm-awq's grid is AWQ's own round-to-nearest: never worse.
    let opts = AwqOptions { duo_scaling: false, clip: false, ..AwqOptions::default() };
    let no_clip = awq_quantize(&layer.w, rows, cols, &layer.x, samples, &opts).unwrap();
    let plain =
        awq_quantize(&layer.w, rows, cols, &layer.x, samples, &AwqOptions { n_grid: 1, ..opts }).unwrap();
    assert_eq!(plain.alpha, 0.0);
    assert!(plain.scales.iter().all(|&s| s == 1.0));
    assert!(layer.output_error(&no_clip.dequantize()) <= layer.output_error(&plain.dequantize()));
}

// ---------------------------------------------------------------------------------------------
// HQQ: the f64 reference of optimize_weights_proximal_legacy, axis 1.
// ---------------------------------------------------------------------------------------------

/// HQQ's dequantized weight, written from `Quantizer.quantize` and `optimize_weights_proximal_legacy`.
fn ref_hqq(w: &[f32], bits: u32, gs: usize, iters: u32) -> Vec<f64> {
    let maxq = f64::from((1u32 << bits) - 1);
    let groups: Vec<Vec<f64>> = w.chunks(gs).map(|g| g.iter().map(|&v| f64::from(v)).collect()).collect();
    let mut scale: Vec<f64> = Vec::new();
    let mut zero: Vec<f64> = Vec::new();
    for g in &groups {
        let (lo, hi) = (g.iter().fold(f64::MAX, |a, &v| a.min(v)), g.iter().fold(f64::MIN, |a, &v| a.max(v)));
        let s = (maxq / (hi - lo)).min(2e4) as f32 as f64;
        scale.push(s);
        let z = -lo * s;
        zero.push(if bits == 4 { z.round_ties_even() } else { z });
    }
    let q = |v: f64, s: f64, z: f64| (v * s + z).round_ties_even().clamp(0.0, maxq);
    let (mut beta, mut best) = (10.0f64, 1e4f64);
    for _ in 0..iters {
        let mut err = 0.0;
        for (k, g) in groups.iter().enumerate() {
            let mut acc = 0.0;
            for &v in g {
                let wq = q(v, scale[k], zero[k]);
                let e = v - (wq - zero[k]) / scale[k];
                err += e.abs();
                let shrunk =
                    if e == 0.0 { 0.0 } else { e.signum() * (e.abs() - e.abs().powf(-0.3) / beta).max(0.0) };
                acc += wq - (v - shrunk) * scale[k];
            }
            zero[k] = acc / g.len() as f64;
        }
        beta *= 1.01;
        let current = err / w.len() as f64;
        if current < best {
            best = current;
        } else {
            break;
        }
    }
    let mut out = Vec::with_capacity(w.len());
    for (k, g) in groups.iter().enumerate() {
        let (s, z) = (scale[k], zero[k] as f32 as f64);
        out.extend(g.iter().map(|&v| (q(v, s, z) - z) * ((1.0 / s) as f32 as f64)));
    }
    out
}

fn lp_error(w: &[f32], w_hat: &[f32], p: f64) -> f64 {
    w.iter().zip(w_hat).map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs().powf(p)).sum()
}

#[test]
fn hqq_matches_the_f64_reference_and_lowers_the_weight_error() {
    let layer = llm_layer(128, 256, 8, 29);
    let (rows, cols) = (layer.rows, layer.cols);
    for (bits, gs) in [(4, 64), (4, 128), (3, 64), (2, 64)] {
        let ours =
            hqq_quantize(&layer.w, rows, cols, &HqqOptions { group_size: gs, ..HqqOptions::with_bits(bits) })
                .unwrap()
                .dequantize();
        let reference = ref_hqq(&layer.w, bits, gs, 20);
        let differ = ours.iter().zip(&reference).filter(|(a, b)| (f64::from(**a) - **b).abs() > 1e-6).count();
        assert!(differ <= ours.len() / 1000, "{bits}-bit g{gs}: {differ} weights differ from the reference");
        let hqq_rtn = hqq_quantize(
            &layer.w,
            rows,
            cols,
            &HqqOptions { group_size: gs, iters: 0, ..HqqOptions::with_bits(bits) },
        )
        .unwrap()
        .dequantize();
        let rtn = rtn_quantize(
            &layer.w,
            rows,
            cols,
            &GptqOptions { bits, group_size: gs, ..GptqOptions::default() },
        )
        .unwrap()
        .dequantize();
        let (f_hqq, f_rtn, f_own) =
            (layer.weight_error(&ours), layer.weight_error(&rtn), layer.weight_error(&hqq_rtn));
        let (p_hqq, p_rtn, p_own) = (
            lp_error(&layer.w, &ours, 0.7),
            lp_error(&layer.w, &rtn, 0.7),
            lp_error(&layer.w, &hqq_rtn, 0.7),
        );
        println!(
            "HQQ {bits}-bit g{gs}: Frobenius / RTN {:.4} (/ HQQ's RTN {:.4}), l0.7 / RTN {:.4} (/ HQQ's RTN {:.4})",
            f_hqq / f_rtn,
            f_hqq / f_own,
            p_hqq / p_rtn,
            p_hqq / p_own
        );
        assert!(p_hqq < p_rtn && p_hqq < p_own, "{bits}-bit g{gs}: lp {p_hqq} vs {p_rtn} / {p_own}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any shape (short last group included), any bits: levels in range, positive finite scales, and
    /// the layout's rule `w_hat = scale * (q - zero)` with contiguous groups.
    #[test]
    fn hqq_and_awq_outputs_are_consistent(
        rows in 0usize..6,
        cols in 1usize..40,
        gs in 0usize..12,
        bits in 2u32..=8,
        seed in 0u64..1000,
    ) {
        let layer = llm_layer(rows, cols, 7, seed);
        let groups = if gs == 0 { 1 } else { cols.div_ceil(gs) };
        let hqq = hqq_quantize(&layer.w, rows, cols, &HqqOptions { group_size: gs, ..HqqOptions::with_bits(bits) }).unwrap();
        let awq = awq_quantize(&layer.w, rows, cols, &layer.x, 7, &AwqOptions { bits, group_size: gs, ..AwqOptions::default() }).unwrap();
        for out in [&hqq, &awq.weight] {
            prop_assert_eq!(out.groups, groups);
            prop_assert!(out.q.iter().all(|&q| u32::from(q) < (1u32 << bits)));
            prop_assert!(out.scales.iter().all(|s| s.is_finite() && *s > 0.0));
            let w_hat = out.dequantize();
            for r in 0..rows {
                for c in 0..cols {
                    let g = r * groups + out.g_idx[c] as usize;
                    prop_assert_eq!(out.g_idx[c] as usize, c.checked_div(gs).unwrap_or(0));
                    prop_assert_eq!(w_hat[r * cols + c], out.scales[g] * (f32::from(out.q[r * cols + c]) - out.zeros[g]));
                }
            }
        }
        prop_assert!(awq.scales.iter().all(|s| s.is_finite() && *s > 0.0));
        prop_assert!(awq.dequantize().iter().all(|v| v.is_finite()));
    }
}
