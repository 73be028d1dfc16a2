//! Pruning schedules against Zhu & Gupta's formula and TF-MOT's step rule, at every step.

use greenai::prune::{ConstantSparsity, PolynomialDecay, Schedule};

#[test]
fn polynomial_decay_matches_the_formula_at_every_step() {
    let (si, sf, begin, end, freq) = (0.1, 0.8, 100u64, 1100u64, 100u64);
    let s = PolynomialDecay::new(si, sf, begin, end, 3.0, freq).unwrap();
    for t in 0..1500u64 {
        // s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, held at s_i before and s_f after.
        let expect = if t < begin {
            si
        } else if t > end {
            sf
        } else {
            let frac = (t - begin) as f64 / (end - begin) as f64;
            sf + (si - sf) * (1.0 - frac) * (1.0 - frac) * (1.0 - frac)
        };
        let got = s.at(t);
        assert!((got.sparsity - expect).abs() < 1e-12, "step {t}: {} vs {expect}", got.sparsity);
        let prune = (100..=1100).contains(&t) && t % 100 == 0;
        assert_eq!(got.prune, prune, "step {t}");
    }
    assert!((s.at(begin).sparsity - si).abs() < 1e-15);
    assert_eq!(s.at(end).sparsity, sf);
}

#[test]
fn constant_sparsity_prunes_on_its_steps() {
    let s = ConstantSparsity::new(0.5, 10, None, 5).unwrap();
    for t in 0..100u64 {
        let got = s.at(t);
        assert_eq!(got.sparsity, 0.5);
        assert_eq!(got.prune, t >= 10 && t % 5 == 0, "step {t}");
    }
    let bounded = ConstantSparsity::new(0.5, 0, Some(20), 1).unwrap();
    assert!(bounded.at(20).prune && !bounded.at(21).prune);
}

#[test]
fn schedules_refuse_bad_arguments() {
    assert!(PolynomialDecay::new(0.0, 1.0, 0, 10, 3.0, 1).is_err());
    assert!(PolynomialDecay::new(-0.1, 0.5, 0, 10, 3.0, 1).is_err());
    assert!(PolynomialDecay::new(0.0, 0.5, 10, 10, 3.0, 1).is_err());
    assert!(PolynomialDecay::new(0.0, 0.5, 0, 10, 3.0, 0).is_err());
    assert!(PolynomialDecay::new(0.0, 0.5, 0, 10, f64::NAN, 1).is_err());
    assert!(ConstantSparsity::new(f64::NAN, 0, None, 1).is_err());
    assert!(ConstantSparsity::new(0.5, 10, Some(5), 1).is_err());
}
