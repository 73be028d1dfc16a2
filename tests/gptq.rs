//! GPTQ against an independent float64 implementation of the paper's algorithm (plain loops, its own
//! Cholesky, column by column with no lazy batch), and against round-to-nearest with the same quantizer,
//! on the language-model-like layer of tests/support/llm_layer.rs.

// The reference is written as the paper's plain index loops on purpose.
#![allow(clippy::needless_range_loop)]

#[path = "support/llm_layer.rs"]
mod llm_layer;

use greenai::quant::{gptq_quantize, rtn_quantize, GptqOptions, GptqWeight, HessianAccumulator};
use llm_layer::{llm_layer, Layer};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The reference: Frantar et al. (2022), Algorithm 1, in f64, written from the paper.
// ---------------------------------------------------------------------------------------------

/// Lower Cholesky factor of a symmetric positive definite `n x n` matrix (row-major), or None.
fn ref_cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= l[j * n + k] * l[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        l[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = s / d;
        }
    }
    Some(l)
}

/// Inverse of an SPD matrix from its Cholesky factor: `(L L^T)^-1 = L^-T L^-1`.
fn ref_inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let l = ref_cholesky(a, n)?;
    // Forward substitution: m = L^-1, column by column of the identity.
    let mut m = vec![0.0; n * n];
    for c in 0..n {
        for i in c..n {
            let mut s = if i == c { 1.0 } else { 0.0 };
            for k in c..i {
                s -= l[i * n + k] * m[k * n + c];
            }
            m[i * n + c] = s / l[i * n + i];
        }
    }
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let mut s = 0.0;
            for k in i.max(j)..n {
                s += m[k * n + i] * m[k * n + j];
            }
            inv[i * n + j] = s;
        }
    }
    Some(inv)
}

/// AutoGPTQ's min-max quantizer parameters for one segment (written again here, from its rules).
fn ref_params(x: &[f64], bits: u32, sym: bool) -> (f64, f64) {
    let maxq = f64::from((1u32 << bits) - 1);
    let mut lo = x.iter().fold(0.0f64, |a, &b| a.min(b));
    let mut hi = x.iter().fold(0.0f64, |a, &b| a.max(b));
    if sym {
        hi = hi.max(-lo);
        if lo < 0.0 {
            lo = -hi;
        }
    }
    if lo == 0.0 && hi == 0.0 {
        (lo, hi) = (-1.0, 1.0);
    }
    let scale = ((hi - lo) / maxq) as f32 as f64;
    let zero = if sym { (maxq + 1.0) / 2.0 } else { (-lo / scale).round_ties_even() };
    (scale, zero)
}

fn ref_quant(x: f64, (scale, zero): (f64, f64), bits: u32) -> f64 {
    let maxq = f64::from((1u32 << bits) - 1);
    scale * (((x / scale).round_ties_even() + zero).clamp(0.0, maxq) - zero)
}

/// The paper's GPTQ, column by column: returns the dequantized weight.
#[allow(clippy::too_many_arguments)]
fn ref_gptq(
    w: &[f32],
    rows: usize,
    n: usize,
    h_in: &[f64],
    bits: u32,
    gs: usize,
    sym: bool,
    act: bool,
) -> Vec<f64> {
    let mut h = h_in.to_vec();
    let mut w: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
    let row_params: Vec<(f64, f64)> =
        (0..rows).map(|r| ref_params(&w[r * n..(r + 1) * n], bits, sym)).collect();
    for i in 0..n {
        if h[i * n + i] == 0.0 {
            h[i * n + i] = 1.0;
            for r in 0..rows {
                w[r * n + i] = 0.0;
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    if act {
        order.sort_by(|&a, &b| h[b * n + b].partial_cmp(&h[a * n + a]).unwrap());
    }
    let damp = 0.01 * (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let mut hp = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            hp[i * n + j] = h[order[i] * n + order[j]] + if i == j { damp } else { 0.0 };
        }
    }
    let hinv = ref_inverse(&hp, n).expect("PD");
    let lu = ref_cholesky(&hinv, n).expect("PD"); // H^-1 = L L^T, U = L^T
    let u = |i: usize, j: usize| lu[j * n + i];
    let mut out = vec![0.0; rows * n];
    for r in 0..rows {
        let mut x: Vec<f64> = order.iter().map(|&c| w[r * n + c]).collect();
        let mut p = row_params[r];
        for i in 0..n {
            if gs > 0 && i % gs == 0 {
                p = ref_params(&x[i..(i + gs).min(n)], bits, sym);
            }
            let qv = ref_quant(x[i], p, bits);
            let e = (x[i] - qv) / u(i, i);
            for j in i + 1..n {
                x[j] -= e * u(i, j);
            }
            out[r * n + order[i]] = qv;
        }
    }
    out
}

/// Round-to-nearest with the same quantizer.
fn ref_rtn(w: &[f32], rows: usize, n: usize, bits: u32, gs: usize, sym: bool) -> Vec<f64> {
    let gs = if gs == 0 { n } else { gs };
    let mut out = vec![0.0; rows * n];
    for r in 0..rows {
        let row: Vec<f64> = w[r * n..(r + 1) * n].iter().map(|&v| f64::from(v)).collect();
        for g0 in (0..n).step_by(gs) {
            let seg = &row[g0..(g0 + gs).min(n)];
            let p = ref_params(seg, bits, sym);
            for (k, &v) in seg.iter().enumerate() {
                out[r * n + g0 + k] = ref_quant(v, p, bits);
            }
        }
    }
    out
}

/// `||(W - W_hat) X^T||_F` through the Hessian: `sqrt(N/2 sum_r d_r^T H d_r)` (f64).
fn output_error(layer: &Layer, h: &[f64], w_hat: &[f64]) -> f64 {
    let n = layer.cols;
    let mut total = 0.0;
    for r in 0..layer.rows {
        let d: Vec<f64> = (0..n).map(|c| f64::from(layer.w[r * n + c]) - w_hat[r * n + c]).collect();
        for i in 0..n {
            let hd: f64 = (0..n).map(|j| h[i * n + j] * d[j]).sum();
            total += d[i] * hd;
        }
    }
    (total * layer.samples as f64 / 2.0).max(0.0).sqrt()
}

fn deq64(q: &GptqWeight) -> Vec<f64> {
    q.dequantize().iter().map(|&v| f64::from(v)).collect()
}

#[test]
fn gptq_matches_the_f64_reference_and_beats_round_to_nearest() {
    let (rows, cols, samples) = (128, 512, 2048);
    let layer = llm_layer(rows, cols, samples, 17);
    let h64 = layer.hessian_f64();
    let mut acc = HessianAccumulator::new(cols).unwrap();
    for chunk in layer.x.chunks(cols * 300) {
        acc.add(chunk, chunk.len() / cols).unwrap();
    }
    let h32 = acc.finish().unwrap();
    for (a, b) in h32.iter().zip(&h64) {
        assert!((f64::from(*a) - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} vs {b}");
    }
    // The Hessian form of the error equals the direct one.
    let rtn4 = ref_rtn(&layer.w, rows, cols, 4, 0, false);
    let direct = layer.output_error(&rtn4.iter().map(|&v| v as f32).collect::<Vec<_>>());
    let via_h = output_error(&layer, &h64, &rtn4);
    assert!((direct - via_h).abs() <= 1e-6 * direct, "{direct} vs {via_h}");

    let configs = [
        (4, 0, false, false),
        (4, 0, true, false),
        (4, 128, false, false),
        (4, 128, true, false),
        (3, 0, false, false),
        (3, 0, true, false),
        (3, 128, false, false),
        (3, 128, true, false),
        (4, 128, false, true),
    ];
    println!("bits group act_order sym | GPTQ/ref  GPTQ/RTN  ref/RTN");
    for (bits, gs, act, sym) in configs {
        let opts =
            GptqOptions { bits, group_size: gs, symmetric: sym, act_order: act, ..GptqOptions::default() };
        let ours = gptq_quantize(&layer.w, rows, cols, &h32, &opts).unwrap();
        let reference = ref_gptq(&layer.w, rows, cols, &h64, bits, gs, sym, act);
        let rtn = ref_rtn(&layer.w, rows, cols, bits, gs, sym);
        let crate_rtn = rtn_quantize(&layer.w, rows, cols, &opts).unwrap();
        // rtn_quantize equals the reference RTN (its dequantization is f32 arithmetic: one rounding).
        let worst = deq64(&crate_rtn)
            .iter()
            .zip(&rtn)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0.0, f64::max);
        assert!(worst <= 1e-6, "rtn_quantize differs from the reference RTN by {worst}");
        let (e_ours, e_ref, e_rtn) = (
            output_error(&layer, &h64, &deq64(&ours)),
            output_error(&layer, &h64, &reference),
            output_error(&layer, &h64, &rtn),
        );
        println!(
            "{bits} {gs:4} {act:5} {sym:5} | {:.6}  {:.4}  {:.4}",
            e_ours / e_ref,
            e_ours / e_rtn,
            e_ref / e_rtn
        );
        assert!((e_ours / e_ref - 1.0).abs() <= 0.01, "GPTQ within 1% of the reference: {e_ours} vs {e_ref}");
        assert!(e_ours <= 0.8 * e_rtn, "GPTQ at most 0.8x RTN: {e_ours} vs {e_rtn}");
    }
}

#[test]
fn act_order_with_static_groups_beats_round_to_nearest() {
    let (rows, cols, samples) = (64, 256, 1024);
    let layer = llm_layer(rows, cols, samples, 5);
    let h64 = layer.hessian_f64();
    let h32 = layer.hessian_f32();
    let opts = GptqOptions {
        bits: 4,
        group_size: 64,
        act_order: true,
        static_groups: true,
        ..GptqOptions::default()
    };
    let ours = gptq_quantize(&layer.w, rows, cols, &h32, &opts).unwrap();
    assert!(ours.g_idx.iter().enumerate().all(|(c, &g)| g as usize == c / 64));
    let rtn = ref_rtn(&layer.w, rows, cols, 4, 64, false);
    let ratio = output_error(&layer, &h64, &deq64(&ours)) / output_error(&layer, &h64, &rtn);
    println!("4-bit g64 act order + static groups: GPTQ/RTN {ratio:.4}");
    assert!(ratio <= 0.8, "{ratio}");
}

#[test]
fn block_size_does_not_change_the_result() {
    let layer = llm_layer(16, 200, 400, 3);
    let h = layer.hessian_f32();
    for gs in [0, 32, 50] {
        let base = GptqOptions { group_size: gs, act_order: gs == 50, ..GptqOptions::default() };
        let a = gptq_quantize(&layer.w, 16, 200, &h, &GptqOptions { block_size: 200, ..base }).unwrap();
        for block in [1, 7, 64, 128] {
            let b = gptq_quantize(&layer.w, 16, 200, &h, &GptqOptions { block_size: block, ..base }).unwrap();
            let differ = a.q.iter().zip(&b.q).filter(|(x, y)| x != y).count();
            // Only f64 rounding differs: a level may flip at an exact tie, nothing more.
            assert!(differ <= 2, "group {gs} block {block}: {differ} levels differ");
        }
    }
}

#[test]
fn a_singular_hessian_without_damping_is_an_error_not_nan() {
    // Rank one: x = (1, 1, 1, 1) only.
    let h = vec![2.0f32; 16];
    let w = [0.1f32, 0.2, 0.3, 0.4];
    let opts = GptqOptions { damp: 0.0, group_size: 0, ..GptqOptions::default() };
    let e = gptq_quantize(&w, 1, 4, &h, &opts).unwrap_err().to_string();
    assert!(e.contains("not positive definite"), "{e}");
    // With the default damping the same Hessian works.
    let ok = gptq_quantize(&w, 1, 4, &h, &GptqOptions { group_size: 0, ..GptqOptions::default() }).unwrap();
    assert!(ok.scales.iter().all(|s| s.is_finite()));
}

fn hessian_of(x: &[f32], samples: usize, cols: usize, split: &[usize]) -> Vec<f32> {
    let mut acc = HessianAccumulator::new(cols).unwrap();
    let mut start = 0;
    for &s in split.iter().chain(std::iter::once(&samples)) {
        let end = s.clamp(start, samples);
        acc.add(&x[start * cols..end * cols], end - start).unwrap();
        start = end;
    }
    acc.finish().unwrap()
}

fn close_f32(a: &[f32], b: &[f32]) -> bool {
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= scale * 4.0 * f32::EPSILON)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn accumulator_is_independent_of_batching_order_and_merging(
        cols in 1usize..12,
        samples in 1usize..40,
        seed in any::<u64>(),
        mut split in proptest::collection::vec(0usize..40, 0..4),
    ) {
        let mut rng = llm_layer::Rng::new(seed);
        let x: Vec<f32> = (0..samples * cols).map(|_| (rng.gauss() * 3.0) as f32).collect();
        split.sort_unstable();
        let whole = hessian_of(&x, samples, cols, &[]);
        let batched = hessian_of(&x, samples, cols, &split);
        prop_assert!(close_f32(&whole, &batched));
        // Reversed sample order, and two accumulators merged (as two threads would).
        let mut rev = Vec::with_capacity(x.len());
        for t in (0..samples).rev() {
            rev.extend_from_slice(&x[t * cols..(t + 1) * cols]);
        }
        prop_assert!(close_f32(&whole, &hessian_of(&rev, samples, cols, &[])));
        let half = samples / 2;
        let mut a = HessianAccumulator::new(cols).unwrap();
        let mut b = HessianAccumulator::new(cols).unwrap();
        a.add(&x[..half * cols], half).unwrap();
        b.add(&x[half * cols..], samples - half).unwrap();
        b.merge(&a).unwrap();
        prop_assert_eq!(b.samples(), samples as u64);
        prop_assert!(close_f32(&whole, &b.finish().unwrap()));
    }

    #[test]
    fn outputs_are_in_range_and_consistent(
        rows in 1usize..6,
        cols in 1usize..40,
        bits in 2u32..=8,
        gs in prop_oneof![Just(0usize), 1usize..16],
        sym in any::<bool>(),
        act in any::<bool>(),
        stat in any::<bool>(),
        dead in proptest::collection::vec(any::<bool>(), 40),
        seed in any::<u64>(),
    ) {
        let mut rng = llm_layer::Rng::new(seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gauss() as f32).collect();
        let samples = cols + 3;
        let mut x: Vec<f32> = (0..samples * cols).map(|_| rng.gauss() as f32).collect();
        for t in 0..samples {
            for c in 0..cols {
                if dead[c] {
                    x[t * cols + c] = 0.0;
                }
            }
        }
        let h = hessian_of(&x, samples, cols, &[]);
        let opts = GptqOptions { bits, group_size: gs, symmetric: sym, act_order: act, static_groups: stat, ..GptqOptions::default() };
        let out = gptq_quantize(&w, rows, cols, &h, &opts).unwrap();
        let groups = if gs == 0 { 1 } else { cols.div_ceil(gs) };
        prop_assert_eq!(out.groups, groups);
        prop_assert!(out.q.iter().all(|&q| u32::from(q) < (1u32 << bits)));
        prop_assert!(out.g_idx.iter().all(|&g| g >= 0 && (g as usize) < groups));
        if gs == 0 {
            prop_assert!(out.g_idx.iter().all(|&g| g == 0));
        } else if stat || !act {
            prop_assert!(out.g_idx.iter().enumerate().all(|(c, &g)| g as usize == c / gs));
        } else {
            // Act order without static groups: group g holds the g-th run of gs columns by descending diag(H).
            let mut order: Vec<usize> = (0..cols).collect();
            let d = |c: usize| if h[c * cols + c] == 0.0 { 1.0 } else { h[c * cols + c] };
            order.sort_by(|&a, &b| d(b).total_cmp(&d(a)));
            for (j, &c) in order.iter().enumerate() {
                prop_assert_eq!(out.g_idx[c] as usize, j / gs);
            }
        }
        if sym {
            prop_assert!(out.zeros.iter().all(|&z| z == (1u32 << (bits - 1)) as f32));
        }
        let w_hat = out.dequantize();
        for r in 0..rows {
            for c in 0..cols {
                let g = r * groups + out.g_idx[c] as usize;
                let expect = out.scales[g] * (f32::from(out.q[r * cols + c]) - out.zeros[g]);
                prop_assert_eq!(w_hat[r * cols + c], expect);
                if dead[c] {
                    prop_assert_eq!(w_hat[r * cols + c], 0.0);
                }
            }
        }
    }
}
