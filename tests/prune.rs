//! Pruning semantics against brute-force references: counts, ties, global thresholds, iterative
//! pruning on survivors, structured channels, N:M groups and Wanda scores.

use greenai::prune::{self, ActivationNormObserver, CountRounding, CountRule, Mask, Norm};
use proptest::prelude::*;

/// Round half to even by cases on the fractional part (independent of `round_ties_even`).
fn reference_count(amount: f64, n: usize) -> usize {
    let x = amount * n as f64;
    let f = x.floor();
    let d = x - f;
    let k = if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) { f + 1.0 } else { f };
    k as usize
}

/// Weight i is pruned iff fewer than k weights among `alive` rank strictly below it by (|w|, index).
fn reference_prune(scores: &[f64], alive: &[bool], k: usize) -> Vec<bool> {
    (0..scores.len())
        .map(|i| {
            if !alive[i] {
                return false;
            }
            let below = (0..scores.len())
                .filter(|&j| alive[j] && (scores[j] < scores[i] || (scores[j] == scores[i] && j < i)))
                .count();
            below >= k
        })
        .collect()
}

fn kept(mask: &Mask) -> Vec<bool> {
    mask.iter().collect()
}

fn weights(max: usize) -> impl Strategy<Value = Vec<f32>> {
    // Few distinct values so ties are common.
    prop::collection::vec(prop_oneof![(-4i8..=4).prop_map(|v| f32::from(v) * 0.5), -10.0f32..10.0], 0..max)
}

#[test]
fn count_rule_matches_torch_rounding_and_options() {
    let torch = CountRule::TORCH;
    assert_eq!(torch.count(0.5, 5).unwrap(), 2); // 2.5 -> 2
    assert_eq!(torch.count(0.5, 3).unwrap(), 2); // 1.5 -> 2
    assert_eq!(torch.count(0.3, 10).unwrap(), 3);
    assert_eq!(torch.count(1.0, 7).unwrap(), 7);
    let floor = CountRule { rounding: CountRounding::Floor, keep_at_least_one: false };
    assert_eq!(floor.count(0.39, 10).unwrap(), 3);
    let keep_one = CountRule { rounding: CountRounding::HalfEven, keep_at_least_one: true };
    assert_eq!(keep_one.count(1.0, 7).unwrap(), 6);
    assert_eq!(keep_one.count(1.0, 0).unwrap(), 0);
    for bad in [-0.1, 1.1, f64::NAN] {
        assert!(torch.count(bad, 4).is_err());
        assert!(prune::magnitude(&[1.0], bad, torch, None).is_err());
    }
}

#[test]
fn ties_prune_the_lower_index_first() {
    let m = prune::magnitude(&[1.0, -1.0, 1.0, 1.0], 0.5, CountRule::TORCH, None).unwrap();
    assert_eq!(kept(&m), vec![false, false, true, true]);
    assert_eq!(m.sparsity(), 0.5);
    assert!(prune::magnitude(&[1.0, f32::NAN], 0.5, CountRule::TORCH, None).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn magnitude_matches_brute_force(w in weights(80), amount in 0.0f64..=1.0) {
        let m = prune::magnitude(&w, amount, CountRule::TORCH, None).unwrap();
        let k = reference_count(amount, w.len());
        let scores: Vec<f64> = w.iter().map(|v| f64::from(v.abs())).collect();
        prop_assert_eq!(m.pruned(), k);
        prop_assert_eq!(kept(&m), reference_prune(&scores, &vec![true; w.len()], k));
    }

    #[test]
    fn pruning_again_applies_to_survivors(w in weights(80), a in 0.0f64..=1.0, b in 0.0f64..=1.0) {
        let first = prune::magnitude(&w, a, CountRule::TORCH, None).unwrap();
        let second = prune::magnitude(&w, b, CountRule::TORCH, Some(&first)).unwrap();
        let alive = kept(&first);
        let k1 = reference_count(a, w.len());
        let k2 = reference_count(b, w.len() - k1);
        let scores: Vec<f64> = w.iter().map(|v| f64::from(v.abs())).collect();
        prop_assert_eq!(second.pruned(), k1 + k2);
        prop_assert_eq!(kept(&second), reference_prune(&scores, &alive, k2));
    }

    #[test]
    fn global_magnitude_is_one_threshold(a in weights(40), b in weights(40), c in weights(10), amount in 0.0f64..=1.0) {
        let masks = prune::global_magnitude(&[&a, &b, &c], amount, CountRule::TORCH, None).unwrap();
        let all: Vec<f32> = a.iter().chain(&b).chain(&c).copied().collect();
        let scores: Vec<f64> = all.iter().map(|v| f64::from(v.abs())).collect();
        let expect = reference_prune(&scores, &vec![true; all.len()], reference_count(amount, all.len()));
        let got: Vec<bool> = masks.iter().flat_map(kept).collect();
        prop_assert_eq!(&got, &expect);
        let max_pruned = all.iter().zip(&got).filter(|(_, k)| !**k).map(|(v, _)| v.abs()).fold(0.0f32, f32::max);
        let min_kept = all.iter().zip(&got).filter(|(_, k)| **k).map(|(v, _)| v.abs()).fold(f32::INFINITY, f32::min);
        prop_assert!(max_pruned <= min_kept);
    }

    #[test]
    fn random_prunes_the_count_among_survivors(len in 0usize..200, a in 0.0f64..=1.0, b in 0.0f64..=1.0, seed: u64) {
        let first = prune::random(len, a, CountRule::TORCH, seed, None).unwrap();
        prop_assert_eq!(first.pruned(), reference_count(a, len));
        prop_assert_eq!(&first, &prune::random(len, a, CountRule::TORCH, seed, None).unwrap());
        let second = prune::random(len, b, CountRule::TORCH, seed ^ 1, Some(&first)).unwrap();
        prop_assert_eq!(second.pruned(), first.pruned() + reference_count(b, first.kept()));
        prop_assert!(first.iter().zip(second.iter()).all(|(f, s)| f || !s));
    }

    #[test]
    fn n_m_keeps_the_largest_in_every_group(rows in 0usize..6, groups in 0usize..6, (n, m) in (1usize..=8).prop_flat_map(|m| (0..=m, Just(m))), seed: u64) {
        let cols = groups * m;
        let mut rng = prune::criteria::SplitMix64::new(seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| (rng.below(9) as f32) - 4.0).collect();
        let mask = prune::n_m(&w, &[rows, cols], n, m, false).unwrap();
        for (g, chunk) in w.chunks(m).enumerate() {
            let keep: Vec<bool> = (0..m).map(|j| mask.get(g * m + j)).collect();
            prop_assert_eq!(keep.iter().filter(|k| !**k).count(), m - n);
            let scores: Vec<f64> = chunk.iter().map(|v| f64::from(v.abs())).collect();
            prop_assert_eq!(keep, reference_prune(&scores, &vec![true; m], m - n));
        }
    }
}

#[test]
fn n_m_on_conv_groups_along_channels() {
    // (K, C, R, S) = (2, 8, 1, 2): groups of 4 along C at stride R*S = 2.
    let shape = [2, 8, 1, 2];
    let w: Vec<f32> = (0..32).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let mask = prune::n_m(&w, &shape, 2, 4, false).unwrap();
    for k in 0..2 {
        for s in 0..2 {
            for g in 0..2 {
                let idx: Vec<usize> = (0..4).map(|c| ((k * 8 + g * 4 + c) * 2) + s).collect();
                let scores: Vec<f64> = idx.iter().map(|&i| f64::from(w[i].abs())).collect();
                let expect = reference_prune(&scores, &[true; 4], 2);
                let got: Vec<bool> = idx.iter().map(|&i| mask.get(i)).collect();
                assert_eq!(got, expect);
            }
        }
    }
    assert_eq!(mask.sparsity(), 0.5);
}

#[test]
fn n_m_rejects_bad_patterns_and_pads_on_request() {
    let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    assert!(prune::n_m(&w, &[1, 6], 3, 2, false).is_err());
    assert!(prune::n_m(&w, &[1, 6], 0, 0, false).is_err());
    assert!(prune::n_m(&w, &[1, 6], 2, 4, false).is_err());
    assert!(prune::n_m(&w, &[2, 6], 2, 4, false).is_err());
    assert!(prune::n_m(&[f32::NAN, 1.0], &[1, 2], 1, 2, false).is_err());
    let padded = prune::n_m(&w, &[1, 6], 1, 4, true).unwrap();
    assert_eq!(kept(&padded), vec![false, false, false, true, false, true]);
}

/// Norm of channel c along `dim` of a (K, C, R, S) tensor, by four nested loops in f64.
fn conv_channel_norm(w: &[f32], shape: [usize; 4], dim: usize, c: usize, norm: Norm) -> f64 {
    let [k, ch, r, s] = shape;
    let mut acc = 0.0f64;
    for a in 0..k {
        for b in 0..ch {
            for x in 0..r {
                for y in 0..s {
                    if [a, b][dim] != c {
                        continue;
                    }
                    let v = f64::from(w[((a * ch + b) * r + x) * s + y]).abs();
                    acc = match norm {
                        Norm::L1 => acc + v,
                        Norm::L2 => acc + v * v,
                        Norm::Inf => acc.max(v),
                    };
                }
            }
        }
    }
    acc
}

#[test]
fn ln_structured_removes_whole_channels_by_norm() {
    let shape = [6, 5, 3, 2];
    let n: usize = shape.iter().product();
    let mut rng = prune::criteria::SplitMix64::new(7);
    let w: Vec<f32> = (0..n).map(|_| rng.below(2001) as f32 / 100.0 - 10.0).collect();
    for dim in 0..2 {
        for norm in [Norm::L1, Norm::L2, Norm::Inf] {
            for amount in [0.0, 0.34, 0.5, 1.0] {
                let mask =
                    prune::ln_structured(&w, &shape, dim, norm, amount, CountRule::TORCH, None).unwrap();
                let channels = shape[dim];
                let k = reference_count(amount, channels);
                let scores: Vec<f64> =
                    (0..channels).map(|c| conv_channel_norm(&w, shape, dim, c, norm)).collect();
                let expect = reference_prune(&scores, &vec![true; channels], k);
                let alive = prune::criteria::channels_alive(&mask, &shape, dim).unwrap();
                assert_eq!(alive, expect, "dim {dim} {norm:?} amount {amount}");
                assert_eq!(mask.pruned(), k * n / channels);
                // Again on the survivors: the count applies to channels still alive.
                let again =
                    prune::ln_structured(&w, &shape, dim, norm, 0.5, CountRule::TORCH, Some(&mask)).unwrap();
                let now = prune::criteria::channels_alive(&again, &shape, dim).unwrap();
                assert_eq!(now.iter().filter(|a| !**a).count(), k + reference_count(0.5, channels - k));
            }
        }
    }
    assert!(prune::ln_structured(&w, &shape, 4, Norm::L1, 0.5, CountRule::TORCH, None).is_err());
    assert!(prune::ln_structured(&w, &[6, 5], 0, Norm::L1, 0.5, CountRule::TORCH, None).is_err());
    assert!(Norm::from_p(3.0).is_err());
}

#[test]
fn wanda_scores_weights_by_activation_norms_per_row() {
    let (rows, cols) = (3, 8);
    let mut rng = prune::criteria::SplitMix64::new(3);
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.below(41) as f32 / 4.0 - 5.0).collect();
    let x: Vec<f32> = (0..5 * cols).map(|_| rng.below(21) as f32 / 2.0 - 5.0).collect();
    let mut obs = ActivationNormObserver::new(cols);
    obs.observe(&x[..2 * cols]).unwrap();
    obs.observe(&x[2 * cols..]).unwrap();
    assert_eq!(obs.tokens(), 5);
    assert!(obs.observe(&x[..3]).is_err());
    let norms: Vec<f64> =
        (0..cols).map(|j| (0..5).map(|t| f64::from(x[t * cols + j]).powi(2)).sum::<f64>().sqrt()).collect();
    for (a, b) in obs.norms().iter().zip(&norms) {
        assert!((a - b).abs() <= 1e-12 * b.max(1.0));
    }
    let mask = prune::wanda(&w, rows, cols, &obs.norms(), 0.5, CountRule::TORCH).unwrap();
    for r in 0..rows {
        let scores: Vec<f64> = (0..cols).map(|j| f64::from(w[r * cols + j].abs()) * norms[j]).collect();
        let expect = reference_prune(&scores, &vec![true; cols], 4);
        let got: Vec<bool> = (0..cols).map(|j| mask.get(r * cols + j)).collect();
        assert_eq!(got, expect);
    }
    assert!(prune::wanda(&w, rows, cols, &norms[1..], 0.5, CountRule::TORCH).is_err());
}
