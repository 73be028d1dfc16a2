//! Distillation losses against a plain float64 reference written here, finite differences of
//! that reference, and the loss's invariances; on every available kernel path.

use greenai::distill::{
    attention_transfer_loss, cosine_embedding_loss, kd_loss, kd_loss_on, kd_loss_seq_on, mse_loss, KdParams,
    Reduction,
};
use greenai::kernels::Isa;
use greenai::Error;
use proptest::prelude::*;

/// log(sum(exp(x * scale))) in f64, max-subtracted.
fn lse(x: &[f64], scale: f64) -> f64 {
    let m = x.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b * scale));
    m + x.iter().map(|&v| (v * scale - m).exp()).sum::<f64>().ln()
}

/// The KD loss of one row, written from the definition in f64.
fn reference_row(s: &[f64], t: &[f64], y: Option<usize>, temp: f64, alpha: f64) -> (f64, Vec<f64>) {
    let (ls, lt, l1) = (lse(s, 1.0 / temp), lse(t, 1.0 / temp), lse(s, 1.0));
    let log_q: Vec<f64> = s.iter().map(|&v| v / temp - ls).collect();
    let log_p: Vec<f64> = t.iter().map(|&v| v / temp - lt).collect();
    let kl: f64 = log_p
        .iter()
        .zip(&log_q)
        .map(|(&lp, &lq)| if lp.exp() == 0.0 { 0.0 } else { lp.exp() * (lp - lq) })
        .sum();
    let mut loss = alpha * temp * temp * kl;
    let mut grad: Vec<f64> =
        log_q.iter().zip(&log_p).map(|(lq, lp)| alpha * temp * (lq.exp() - lp.exp())).collect();
    if let Some(y) = y {
        loss += (1.0 - alpha) * (l1 - s[y]);
        for (i, g) in grad.iter_mut().enumerate() {
            *g += (1.0 - alpha) * ((s[i] - l1).exp() - if i == y { 1.0 } else { 0.0 });
        }
    }
    (loss, grad)
}

/// The reduced KD loss and gradient over rows (kept rows only), in f64.
#[allow(clippy::too_many_arguments)]
fn reference(
    s: &[f32],
    t: &[f32],
    labels: Option<&[i32]>,
    mask: Option<&[u8]>,
    classes: usize,
    params: &KdParams,
) -> (f64, Vec<f64>) {
    let rows = s.len().checked_div(classes).unwrap_or(0);
    let kept: Vec<usize> = (0..rows).filter(|&r| mask.is_none_or(|m| m[r] != 0)).collect();
    let divisor = match params.reduction {
        Reduction::Mean => kept.len().max(1) as f64,
        Reduction::Sum => 1.0,
    };
    let mut grad = vec![0.0; s.len()];
    let mut total = 0.0;
    for &r in &kept {
        let row = r * classes..(r + 1) * classes;
        let s64: Vec<f64> = s[row.clone()].iter().map(|&v| f64::from(v)).collect();
        let t64: Vec<f64> = t[row.clone()].iter().map(|&v| f64::from(v)).collect();
        let y = if params.alpha < 1.0 { labels.map(|l| l[r] as usize) } else { None };
        let (loss, g) = reference_row(&s64, &t64, y, f64::from(params.temperature), f64::from(params.alpha));
        total += loss;
        for (d, v) in grad[row].iter_mut().zip(g) {
            *d = v / divisor;
        }
    }
    (total / divisor, grad)
}

/// Relative error of the loss (floored at 1e-6 absolute) and of the gradient in the max norm.
/// The loss may also be off by `floor` absolutely: a KL computed from f32 probabilities cannot
/// resolve below a few f32 ulp of 1, times `alpha T^2` (and per row, before the mean).
/// Likewise the gradient's max norm is floored at `grad_floor`: its soft and hard parts can
/// cancel to far below the f32 rounding of each.
#[allow(clippy::too_many_arguments)]
fn assert_close(
    loss: f32,
    grad: &[f32],
    want: &(f64, Vec<f64>),
    tol: f64,
    floor: f64,
    grad_floor: f64,
    what: &str,
) {
    let loss_err = (f64::from(loss) - want.0).abs();
    assert!(loss_err <= tol * want.0.abs() + floor, "{what}: loss {loss} vs {} (err {loss_err:e})", want.0);
    let norm = want.1.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = grad.iter().zip(&want.1).fold(0.0f64, |m, (&g, w)| m.max((f64::from(g) - w).abs()));
    assert!(err <= tol * norm.max(grad_floor), "{what}: gradient max error {err:e} vs max |grad| {norm:e}");
}

/// Rows whose absolute errors add up under a reduction.
fn reduction_rows(reduction: Reduction, batch: usize) -> f64 {
    match reduction {
        Reduction::Mean => 1.0,
        Reduction::Sum => batch as f64,
    }
}

fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

fn labels_for(rows: usize, classes: usize, seed: u64) -> Vec<i32> {
    (0..rows).map(|r| ((r as u64 * 2654435761 + seed) % classes as u64) as i32).collect()
}

#[test]
fn kd_matches_the_f64_reference() {
    let mut seed = 1;
    for isa in Isa::available() {
        for &(batch, classes) in &[(1usize, 1usize), (1, 2), (3, 5), (2, 17), (7, 100), (4, 1000), (2, 4099)]
        {
            for &scale in &[1.0f32, 30.0, 2e4] {
                for &temperature in &[0.5f32, 1.0, 2.0, 3.0, 4.0, 8.0, 10.0] {
                    for &alpha in &[0.0f32, 0.3, 0.5, 1.0] {
                        seed += 1;
                        let s = data(batch * classes, seed, scale);
                        let t = data(batch * classes, seed + 1000, scale);
                        let labels = labels_for(batch, classes, seed);
                        for reduction in [Reduction::Mean, Reduction::Sum] {
                            let params = KdParams::new(temperature, alpha).with_reduction(reduction);
                            let want = reference(&s, &t, Some(&labels), None, classes, &params);
                            let mut grad = vec![f32::NAN; s.len()];
                            let loss = kd_loss_on(
                                isa,
                                &s,
                                &t,
                                Some(&labels),
                                batch,
                                classes,
                                &params,
                                Some(&mut grad),
                            )
                            .unwrap();
                            let what = format!("{isa} B={batch} C={classes} scale={scale} T={temperature} a={alpha} {reduction:?}");
                            let floor = 8.0
                                * f64::from(f32::EPSILON)
                                * f64::from(alpha * temperature * temperature)
                                * reduction_rows(reduction, batch);
                            // One tenth of the scale of the gradient's terms, alpha T + (1 - alpha), per row.
                            let divisor = if reduction == Reduction::Mean { batch as f64 } else { 1.0 };
                            let grad_floor = 0.1 * f64::from(alpha * temperature + 1.0 - alpha) / divisor;
                            assert_close(loss, &grad, &want, 1e-5, floor, grad_floor, &what);
                            let loss_only =
                                kd_loss_on(isa, &s, &t, Some(&labels), batch, classes, &params, None)
                                    .unwrap();
                            assert_eq!(loss_only, loss, "{what}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn huge_logits_give_finite_results() {
    let (batch, classes) = (3, 50);
    let mut s = data(batch * classes, 7, 2e4);
    let t = data(batch * classes, 8, 2e4);
    s[0] = 1e4;
    s[1] = -1e4;
    let labels = vec![1, 0, 49];
    for isa in Isa::available() {
        let mut grad = vec![0.0; s.len()];
        let params = KdParams::new(1.0, 0.5);
        let loss = kd_loss_on(isa, &s, &t, Some(&labels), batch, classes, &params, Some(&mut grad)).unwrap();
        assert!(loss.is_finite() && grad.iter().all(|g| g.is_finite()), "{isa}: {loss}");
        assert_close(
            loss,
            &grad,
            &reference(&s, &t, Some(&labels), None, classes, &params),
            1e-5,
            0.0,
            0.0,
            "huge",
        );
    }
}

#[test]
fn sequence_form_masks_tokens_and_means_over_kept_ones() {
    let (batch, seq, classes) = (2, 5, 33);
    let s = data(batch * seq * classes, 11, 8.0);
    let t = data(batch * seq * classes, 12, 8.0);
    let mut labels = labels_for(batch * seq, classes, 3);
    let mask = [1u8, 1, 0, 1, 0, 1, 0, 0, 1, 1];
    labels[2] = -100; // padding labels are not read
    let params = KdParams::new(2.0, 0.4);
    for isa in Isa::available() {
        let mut grad = vec![f32::NAN; s.len()];
        let loss = kd_loss_seq_on(
            isa,
            &s,
            &t,
            Some(&labels),
            Some(&mask),
            batch,
            seq,
            classes,
            &params,
            Some(&mut grad),
        )
        .unwrap();
        let want = reference(&s, &t, Some(&labels), Some(&mask), classes, &params);
        assert_close(loss, &grad, &want, 1e-5, 0.0, 0.0, "masked sequence");
        assert!(grad[2 * classes..3 * classes].iter().all(|&g| g == 0.0));
        // No kept token: loss and gradient 0.
        let loss = kd_loss_seq_on(
            isa,
            &s,
            &t,
            Some(&labels),
            Some(&[0; 10]),
            batch,
            seq,
            classes,
            &params,
            Some(&mut grad),
        )
        .unwrap();
        assert_eq!(loss, 0.0);
        assert!(grad.iter().all(|&g| g == 0.0));
        // Unmasked, the sequence form is the batch form over batch*seq rows.
        let mut labels = labels.clone();
        labels[2] = 0;
        let seq_loss =
            kd_loss_seq_on(isa, &s, &t, Some(&labels), None, batch, seq, classes, &params, None).unwrap();
        let flat_loss = kd_loss_on(isa, &s, &t, Some(&labels), batch * seq, classes, &params, None).unwrap();
        assert_eq!(seq_loss, flat_loss);
    }
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let (batch, classes) = (3, 4);
    let s = data(12, 1, 4.0);
    let t = data(12, 2, 4.0);
    let labels = [0, 3, 2];
    let ok = KdParams::new(2.0, 0.5);
    let run = |s: &[f32], t: &[f32], labels: Option<&[i32]>, batch, classes, params: &KdParams| {
        let mut grad = vec![-7.0f32; s.len()];
        let result = kd_loss(s, t, labels, batch, classes, params, Some(&mut grad));
        assert!(grad.iter().all(|&g| g == -7.0), "gradient written on error");
        result.unwrap_err()
    };
    for temperature in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            run(&s, &t, Some(&labels), batch, classes, &KdParams::new(temperature, 0.5)),
            Error::InvalidArgument { .. }
        ));
    }
    for alpha in [-0.1, 1.1, f32::NAN] {
        assert!(matches!(
            run(&s, &t, Some(&labels), batch, classes, &KdParams::new(1.0, alpha)),
            Error::InvalidArgument { .. }
        ));
    }
    assert!(matches!(run(&s, &t, Some(&[0, 4, 1]), batch, classes, &ok), Error::InvalidArgument { .. }));
    assert!(matches!(run(&s, &t, Some(&[0, -1, 1]), batch, classes, &ok), Error::InvalidArgument { .. }));
    assert!(matches!(run(&s, &t, None, batch, classes, &ok), Error::InvalidArgument { .. }));
    assert!(matches!(run(&s, &t, Some(&[0, 1]), batch, classes, &ok), Error::ShapeMismatch { .. }));
    assert!(matches!(run(&s, &t[..11], Some(&labels), batch, classes, &ok), Error::ShapeMismatch { .. }));
    assert!(matches!(run(&s, &t, Some(&labels), batch, 5, &ok), Error::ShapeMismatch { .. }));
    for bad in [f32::NAN, f32::INFINITY] {
        let mut s_bad = s.clone();
        s_bad[11] = bad; // in the last row: earlier rows must not have been written either
        assert!(matches!(
            run(&s_bad, &t, Some(&labels), batch, classes, &ok),
            Error::NonFinite { index: 11, .. }
        ));
        let mut t_bad = t.clone();
        t_bad[5] = bad;
        assert!(matches!(
            run(&s, &t_bad, Some(&labels), batch, classes, &ok),
            Error::NonFinite { name: "teacher", index: 5, .. }
        ));
        // Both bad: the student's first non-finite logit is named, whatever order the rows are read in.
        assert!(matches!(
            run(&s_bad, &t_bad, Some(&labels), batch, classes, &ok),
            Error::NonFinite { name: "student", index: 11, .. }
        ));
    }
    let mut short = vec![0.0f32; 5];
    assert!(kd_loss(&s, &t, Some(&labels), batch, classes, &ok, Some(&mut short)).is_err());
    // alpha == 1 needs no labels.
    assert!(kd_loss(&s, &t, None, batch, classes, &KdParams::new(2.0, 1.0), None).is_ok());
    assert_eq!(kd_loss(&[], &[], Some(&[]), 0, 7, &ok, None).unwrap(), 0.0);
}

/// Logits on a 1/64 grid, so that adding an integer is exact.
fn grid_logits(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-640i32..=640).prop_map(|k| k as f32 / 64.0), n)
}

fn case() -> impl Strategy<Value = (usize, usize, f32, f32)> {
    (
        1usize..4,
        1usize..40,
        prop_oneof![Just(0.5f32), Just(1.0), Just(2.0), Just(5.0)],
        prop_oneof![Just(0.0f32), Just(0.5), Just(1.0)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The analytic gradient against central differences of the f64 reference loss
    /// (h = 1e-4 in f64: truncation ~h^2 * L''' and cancellation ~1e-16 / h are both far below 1e-5).
    #[test]
    fn gradient_matches_finite_differences(
        (batch, classes, temperature, alpha) in case(),
        seed in any::<u64>(), scale in prop_oneof![Just(2.0f32), Just(20.0)],
    ) {
        let n = batch * classes;
        let s = data(n, seed, scale);
        let t = data(n, seed ^ 99, scale);
        let labels = labels_for(batch, classes, seed);
        let params = KdParams::new(temperature, alpha);
        for isa in Isa::available() {
            let mut grad = vec![0.0f32; n];
            kd_loss_on(isa, &s, &t, Some(&labels), batch, classes, &params, Some(&mut grad)).unwrap();
            let loss_at = |i: usize, h: f64| {
                let rows: f64 = (0..batch).map(|r| {
                    let mut s64: Vec<f64> = s[r * classes..(r + 1) * classes].iter().map(|&v| f64::from(v)).collect();
                    let t64: Vec<f64> = t[r * classes..(r + 1) * classes].iter().map(|&v| f64::from(v)).collect();
                    if i / classes == r { s64[i % classes] += h; }
                    let y = (alpha < 1.0).then(|| labels[r] as usize);
                    reference_row(&s64, &t64, y, f64::from(temperature), f64::from(alpha)).0
                }).sum();
                rows / batch as f64
            };
            let h = 1e-4;
            // The gradient sums terms of size up to (alpha T + 1 - alpha) / batch, each rounded to
            // f32: that size is the scale of the comparison even where the sum cancels to about 0
            // (one class, whose softmax is 1 whatever the logits).
            let terms = f64::from(alpha * temperature + 1.0 - alpha) / batch as f64;
            let norm = grad.iter().fold(terms, |m, g| m.max(f64::from(g.abs())));
            for (i, &g) in grad.iter().enumerate() {
                let fd = (loss_at(i, h) - loss_at(i, -h)) / (2.0 * h);
                prop_assert!((f64::from(g) - fd).abs() <= 1e-5 * norm, "{isa}: d/ds[{i}] = {g} vs {fd}");
            }
        }
    }

    #[test]
    fn kl_part_is_nonnegative_zero_on_equal_logits_and_rows_sum_to_zero(
        (batch, classes, temperature, _) in case(), seed in any::<u64>(),
        scale in prop_oneof![Just(1.0f32), Just(30.0), Just(1e4)],
    ) {
        let n = batch * classes;
        let s = data(n, seed, scale);
        let t = data(n, seed ^ 7, scale);
        let params = KdParams::new(temperature, 1.0);
        for isa in Isa::available() {
            let mut grad = vec![0.0f32; n];
            let loss = kd_loss_on(isa, &s, &t, None, batch, classes, &params, Some(&mut grad)).unwrap();
            prop_assert!(loss >= 0.0);
            // Each row is T (q - p) / B; q and p each sum to 1, so the scale is 2 T / B.
            let scale = 2.0 * f64::from(temperature) / batch as f64;
            for row in grad.chunks(classes) {
                let sum: f64 = row.iter().map(|&g| f64::from(g)).sum();
                prop_assert!(sum.abs() <= 1e-6 * scale, "{isa}: row sums to {sum}");
            }
            let same = kd_loss_on(isa, &s, &s, None, batch, classes, &params, Some(&mut grad)).unwrap();
            prop_assert_eq!(same, 0.0);
            prop_assert!(grad.iter().all(|g| g.abs() <= 1e-7));
        }
    }

    #[test]
    fn adding_a_constant_to_a_row_changes_nothing(
        (batch, classes, temperature, alpha) in case(), s in grid_logits(120), t in grid_logits(120),
        shifts in prop::collection::vec((-1000i32..1000, -1000i32..1000), 4), seed in any::<u64>(),
    ) {
        let n = batch * classes;
        let (s, t) = (&s[..n], &t[..n]);
        let labels = labels_for(batch, classes, seed);
        let (mut s2, mut t2) = (s.to_vec(), t.to_vec());
        for r in 0..batch {
            s2[r * classes..(r + 1) * classes].iter_mut().for_each(|v| *v += shifts[r].0 as f32);
            t2[r * classes..(r + 1) * classes].iter_mut().for_each(|v| *v += shifts[r].1 as f32);
        }
        let params = KdParams::new(temperature, alpha);
        for isa in Isa::available() {
            let (mut g1, mut g2) = (vec![0.0f32; n], vec![0.0f32; n]);
            let l1 = kd_loss_on(isa, s, t, Some(&labels), batch, classes, &params, Some(&mut g1)).unwrap();
            let l2 = kd_loss_on(isa, &s2, &t2, Some(&labels), batch, classes, &params, Some(&mut g2)).unwrap();
            prop_assert_eq!(l1, l2);
            prop_assert_eq!(g1, g2);
        }
    }

    #[test]
    fn feature_losses_match_f64_and_finite_differences(
        batch in 1usize..4, cs in 1usize..4, ct in 1usize..4, spatial in 1usize..9, seed in any::<u64>(),
    ) {
        let dim = cs * spatial;
        let s = data(batch * dim, seed, 4.0);
        let t = data(batch * dim, seed ^ 3, 4.0);
        let ta = data(batch * ct * spatial, seed ^ 5, 4.0);
        let f64s = |x: &[f32]| x.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let h = 1e-5;
        // Each loss: the library's value and gradient, and the f64 reference as a function of s.
        type Reference<'a> = Box<dyn Fn(&[f64]) -> f64 + 'a>;
        let mse_ref: Reference = Box::new(|x| x.iter().zip(&t).map(|(a, &b)| (a - f64::from(b)).powi(2)).sum::<f64>() / x.len() as f64);
        let cos_ref: Reference = Box::new(|x| {
            (0..batch).map(|b| {
                let (xs, ts) = (&x[b * dim..(b + 1) * dim], f64s(&t[b * dim..(b + 1) * dim]));
                let dot: f64 = xs.iter().zip(&ts).map(|(a, b)| a * b).sum();
                let (nx, nt): (f64, f64) = (xs.iter().map(|a| a * a).sum(), ts.iter().map(|a| a * a).sum());
                1.0 - dot / ((nx + 1e-12) * (nt + 1e-12)).sqrt()
            }).sum::<f64>() / batch as f64
        });
        let at_map = |x: &[f64], c: usize| {
            let a: Vec<f64> = (0..spatial).map(|j| (0..c).map(|k| x[k * spatial + j].powi(2)).sum::<f64>() / c as f64).collect();
            let norm = a.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            a.into_iter().map(|v| v / norm).collect::<Vec<f64>>()
        };
        let ta64 = f64s(&ta);
        let at_ref: Reference = Box::new(|x| {
            (0..batch).map(|b| {
                let qs = at_map(&x[b * dim..(b + 1) * dim], cs);
                let qt = at_map(&ta64[b * ct * spatial..(b + 1) * ct * spatial], ct);
                qs.iter().zip(&qt).map(|(a, b)| (a - b).powi(2)).sum::<f64>()
            }).sum::<f64>() / batch as f64
        });
        let mut results = Vec::new();
        let mut g = vec![0.0f32; s.len()];
        results.push(("mse", mse_loss(&s, &t, Reduction::Mean, Some(&mut g)).unwrap(), g.clone(), mse_ref));
        results.push(("cosine", cosine_embedding_loss(&s, &t, batch, dim, Reduction::Mean, Some(&mut g)).unwrap(), g.clone(), cos_ref));
        results.push(("attention", attention_transfer_loss(&s, &ta, batch, cs, ct, spatial, Reduction::Mean, Some(&mut g)).unwrap(), g.clone(), at_ref));
        let s64 = f64s(&s);
        for (name, loss, grad, reference) in results {
            let want = reference(&s64);
            prop_assert!((f64::from(loss) - want).abs() <= 1e-5 * want.abs().max(1e-6), "{name}: {loss} vs {want}");
            let norm = grad.iter().fold(1e-6f64, |m, g| m.max(f64::from(g.abs())));
            for i in 0..s.len() {
                let (mut up, mut down) = (s64.clone(), s64.clone());
                up[i] += h;
                down[i] -= h;
                let fd = (reference(&up) - reference(&down)) / (2.0 * h);
                // The difference quotient itself carries rounding noise of about eps |L| / h.
                let fd_noise = 8.0 * f64::EPSILON * want.abs().max(1.0) / h;
                prop_assert!((f64::from(grad[i]) - fd).abs() <= 1e-5 * norm + fd_noise, "{name}: d/ds[{i}] = {} vs {fd}", grad[i]);
            }
        }
    }
}

#[test]
fn feature_losses_vanish_on_matching_inputs_and_refuse_bad_ones() {
    let x = data(24, 5, 3.0);
    let scaled: Vec<f32> = x.iter().map(|v| v * 4.0).collect();
    assert_eq!(mse_loss(&x, &x, Reduction::Mean, None).unwrap(), 0.0);
    assert!(cosine_embedding_loss(&x, &scaled, 4, 6, Reduction::Mean, None).unwrap().abs() < 1e-6);
    // Attention maps are invariant to scaling and compare across channel counts.
    let doubled: Vec<f32> = x[..12].iter().chain(&x[..12]).copied().collect();
    assert!(
        attention_transfer_loss(&x[..12], &doubled, 1, 4, 8, 3, Reduction::Mean, None).unwrap().abs() < 1e-6
    );
    let mut grad = vec![-7.0f32; 24];
    let mut bad = x.clone();
    bad[23] = f32::NAN;
    assert!(matches!(
        mse_loss(&x, &bad, Reduction::Mean, Some(&mut grad)),
        Err(Error::NonFinite { index: 23, .. })
    ));
    assert!(matches!(
        cosine_embedding_loss(&x, &x, 5, 5, Reduction::Mean, Some(&mut grad)),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        attention_transfer_loss(&x, &x, 2, 3, 3, 5, Reduction::Mean, Some(&mut grad)),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(grad.iter().all(|&g| g == -7.0));
    assert!(attention_transfer_loss(&[], &[], 1, 0, 2, 3, Reduction::Mean, None).is_err());
}
