//! Pruning criteria: how many weights to prune (the count rule) and which (magnitude, global
//! magnitude, random, Ln-structured, Wanda).
//!
//! Every criterion prunes the `k` lowest-scoring candidates, ties pruning the lower flat index
//! first, with `k` from a [`CountRule`] applied to the number of candidates. Given a prior mask,
//! the candidates are the weights (or channels) still alive and the result is the prior mask
//! combined with the new one: a new amount applies to the survivors, as `torch.nn.utils.prune`'s
//! `PruningContainer` does. NaN weights are refused.

use super::mask::Mask;
use crate::error::Result;
use crate::kernels::convert::check_no_nan;
use crate::tensor::{numel, split_at_axis};
use crate::Error;

/// How `amount * n` becomes a whole count (the quantizer's value rounding is [`crate::quant::Rounding`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CountRounding {
    /// Round half to even (Python's `round`, what torch uses).
    #[default]
    HalfEven,
    /// Round down.
    Floor,
}

/// Renamed: one `Rounding` in the crate, the quantizer's.
#[deprecated(since = "0.2.0", note = "use prune::CountRounding")]
pub type Rounding = CountRounding;

/// The count rule: `k = rounding(amount * n)`, optionally capped so at least one candidate survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountRule {
    /// How the product is rounded.
    pub rounding: CountRounding,
    /// Never prune every candidate (keep at least one when `n > 0`).
    pub keep_at_least_one: bool,
}

impl CountRule {
    /// torch's rule: round half to even, may prune everything.
    pub const TORCH: CountRule = CountRule { rounding: CountRounding::HalfEven, keep_at_least_one: false };

    /// The number of candidates to prune out of `n` for `amount` in [0, 1].
    pub fn count(&self, amount: f64, n: usize) -> Result<usize> {
        check_amount(amount)?;
        let exact = amount * n as f64;
        let k = match self.rounding {
            CountRounding::HalfEven => exact.round_ties_even(),
            CountRounding::Floor => exact.floor(),
        };
        let k = (k as usize).min(n);
        Ok(if self.keep_at_least_one && n > 0 { k.min(n - 1) } else { k })
    }
}

/// Fails unless `amount` is a number in [0, 1].
pub fn check_amount(amount: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&amount) {
        return Err(Error::invalid("amount", amount, "must be in [0, 1]"));
    }
    Ok(())
}

/// The all-kept mask, or the prior after checking its length.
fn prior_or_ones(prior: Option<&Mask>, len: usize) -> Result<Mask> {
    match prior {
        Some(p) if p.len() != len => {
            Err(Error::ShapeMismatch { context: "prior mask", expected: vec![len], actual: vec![p.len()] })
        }
        Some(p) => Ok(p.clone()),
        None => Mask::ones(len),
    }
}

/// Among `candidates`, the `k` with the lowest score (ties: lower index first).
fn lowest(scores: &[f64], candidates: &mut [usize], k: usize) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    let key = |&i: &usize| (scores[i], i);
    let cmp = |a: &usize, b: &usize| {
        let (sa, ia) = key(a);
        let (sb, ib) = key(b);
        sa.total_cmp(&sb).then(ia.cmp(&ib))
    };
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, cmp);
    }
    candidates[..k].to_vec()
}

/// Prunes by score: the `rule` count of the lowest scores among the weights `prior` keeps.
/// The scores must not hold NaN.
pub fn prune_by_score(scores: &[f64], amount: f64, rule: CountRule, prior: Option<&Mask>) -> Result<Mask> {
    check_amount(amount)?;
    let mut mask = prior_or_ones(prior, scores.len())?;
    if let Some(index) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::NonFinite { name: "scores", index, value: f64::NAN });
    }
    let mut alive: Vec<usize> = (0..scores.len()).filter(|&i| mask.get(i)).collect();
    let k = rule.count(amount, alive.len())?;
    for i in lowest(scores, &mut alive, k) {
        mask.set(i, false);
    }
    Ok(mask)
}

fn magnitudes(weights: &[f32]) -> Result<Vec<f64>> {
    check_no_nan("weights", weights)?;
    Ok(weights.iter().map(|w| f64::from(w.abs())).collect())
}

/// Unstructured magnitude pruning of one tensor: prunes the smallest |w| (torch's `l1_unstructured`).
pub fn magnitude(weights: &[f32], amount: f64, rule: CountRule, prior: Option<&Mask>) -> Result<Mask> {
    prune_by_score(&magnitudes(weights)?, amount, rule, prior)
}

/// Global magnitude pruning: one threshold across all tensors (torch's `global_unstructured`),
/// ties broken by position in the concatenation of the tensors in order. `priors`, when given,
/// has one mask per tensor.
pub fn global_magnitude(
    tensors: &[&[f32]],
    amount: f64,
    rule: CountRule,
    priors: Option<&[Mask]>,
) -> Result<Vec<Mask>> {
    if let Some(p) = priors {
        if p.len() != tensors.len() {
            return Err(Error::ShapeMismatch {
                context: "global pruning priors",
                expected: vec![tensors.len()],
                actual: vec![p.len()],
            });
        }
    }
    let mut scores = Vec::new();
    let mut joined = Vec::new();
    for (t, w) in tensors.iter().enumerate() {
        scores.extend(magnitudes(w)?);
        let prior = prior_or_ones(priors.map(|p| &p[t]), w.len())?;
        joined.extend(prior.iter());
    }
    let prior = Mask::from_bytes(&joined.iter().map(|&b| u8::from(b)).collect::<Vec<_>>())?;
    let mask = prune_by_score(&scores, amount, rule, Some(&prior))?;
    let mut start = 0;
    tensors
        .iter()
        .map(|w| {
            let bits: Vec<u8> = (start..start + w.len()).map(|i| u8::from(mask.get(i))).collect();
            start += w.len();
            Mask::from_bytes(&bits)
        })
        .collect()
}

/// SplitMix64: a small, well-mixed seeded generator (Steele, Lea, Flood 2014).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`), by Lemire's multiply-shift.
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }
}

/// Random unstructured pruning: `k` of the alive weights chosen uniformly, reproducible from `seed`.
pub fn random(len: usize, amount: f64, rule: CountRule, seed: u64, prior: Option<&Mask>) -> Result<Mask> {
    check_amount(amount)?;
    let mut mask = prior_or_ones(prior, len)?;
    let mut alive: Vec<usize> = (0..len).filter(|&i| mask.get(i)).collect();
    let k = rule.count(amount, alive.len())?;
    let mut rng = SplitMix64::new(seed);
    for j in 0..k {
        let pick = j + rng.below(alive.len() - j);
        alive.swap(j, pick);
        mask.set(alive[j], false);
    }
    Ok(mask)
}

/// The norm used to rank channels in [`ln_structured`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// Sum of absolute values.
    L1,
    /// Euclidean norm.
    L2,
    /// Largest absolute value.
    Inf,
}

impl Norm {
    /// torch's `n`: 1, 2 or infinity.
    pub fn from_p(p: f64) -> Result<Norm> {
        match p {
            1.0 => Ok(Norm::L1),
            2.0 => Ok(Norm::L2),
            p if p == f64::INFINITY => Ok(Norm::Inf),
            other => Err(Error::invalid("p", other, "supported norms are 1, 2 and inf")),
        }
    }
}

/// Which channels along `dim` of `shape` hold at least one kept weight.
pub fn channels_alive(mask: &Mask, shape: &[usize], dim: usize) -> Result<Vec<bool>> {
    let (outer, len, inner) = split_dim(shape, dim, mask.len())?;
    let mut alive = vec![false; len];
    for o in 0..outer {
        for (c, a) in alive.iter_mut().enumerate() {
            let base = (o * len + c) * inner;
            *a = *a || (base..base + inner).any(|i| mask.get(i));
        }
    }
    Ok(alive)
}

fn split_dim(shape: &[usize], dim: usize, len: usize) -> Result<(usize, usize, usize)> {
    let n = numel(shape)?;
    if n != len {
        return Err(Error::ShapeMismatch {
            context: "weights vs shape",
            expected: vec![n],
            actual: vec![len],
        });
    }
    split_at_axis(shape, dim)
        .ok_or_else(|| Error::invalid("dim", dim, format!("out of range for a {}-d tensor", shape.len())))
}

/// Ln-structured pruning (torch's `ln_structured`): removes whole channels along `dim` of a
/// row-major `shape` (dim 0 of a conv weight (K, C, R, S) is filters, dim 1 input channels; of a
/// linear (out, in), rows and columns), those with the smallest `norm` over all other dims.
/// The count applies to the channels still alive under `prior`.
pub fn ln_structured(
    weights: &[f32],
    shape: &[usize],
    dim: usize,
    norm: Norm,
    amount: f64,
    rule: CountRule,
    prior: Option<&Mask>,
) -> Result<Mask> {
    check_amount(amount)?;
    check_no_nan("weights", weights)?;
    let (outer, len, inner) = split_dim(shape, dim, weights.len())?;
    let mut mask = prior_or_ones(prior, weights.len())?;
    let mut scores = vec![0.0f64; len];
    for o in 0..outer {
        for (c, s) in scores.iter_mut().enumerate() {
            let base = (o * len + c) * inner;
            for &w in &weights[base..base + inner] {
                let a = f64::from(w.abs());
                *s = match norm {
                    Norm::L1 => *s + a,
                    Norm::L2 => *s + a * a,
                    Norm::Inf => s.max(a),
                };
            }
        }
    }
    let mut alive: Vec<usize> =
        channels_alive(&mask, shape, dim)?.iter().enumerate().filter_map(|(c, &a)| a.then_some(c)).collect();
    let k = rule.count(amount, alive.len())?;
    for c in lowest(&scores, &mut alive, k) {
        for o in 0..outer {
            let base = (o * len + c) * inner;
            for i in base..base + inner {
                mask.set(i, false);
            }
        }
    }
    Ok(mask)
}

/// Gathers per-input-feature activation statistics for [`wanda`]: the running sum of squares of
/// each feature over every calibration token, so `norms()[j]` is `||X_j||_2`.
#[derive(Clone, Debug, Default)]
pub struct ActivationNormObserver {
    sum_squares: Vec<f64>,
    tokens: u64,
}

impl ActivationNormObserver {
    /// An observer for `features` input features.
    pub fn new(features: usize) -> Self {
        ActivationNormObserver { sum_squares: vec![0.0; features], tokens: 0 }
    }

    /// Adds a batch of activations, row-major (tokens, features). NaN is refused.
    pub fn observe(&mut self, activations: &[f32]) -> Result<()> {
        let features = self.sum_squares.len();
        if features == 0 || !activations.len().is_multiple_of(features) {
            return Err(Error::ShapeMismatch {
                context: "activations (tokens x features)",
                expected: vec![features],
                actual: vec![activations.len()],
            });
        }
        check_no_nan("activations", activations)?;
        for row in activations.chunks_exact(features) {
            for (s, &x) in self.sum_squares.iter_mut().zip(row) {
                *s += f64::from(x) * f64::from(x);
            }
        }
        self.tokens += (activations.len() / features) as u64;
        Ok(())
    }

    /// Tokens observed so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The L2 norm of each input feature over all observed tokens.
    pub fn norms(&self) -> Vec<f64> {
        self.sum_squares.iter().map(|s| s.sqrt()).collect()
    }
}

/// Wanda (Sun et al. 2023): scores `|W_ij| * ||X_j||_2` for a linear weight (rows = outputs,
/// cols = inputs) and prunes the rule's count in each output row separately, as the paper does.
pub fn wanda(
    weights: &[f32],
    rows: usize,
    cols: usize,
    feature_norms: &[f64],
    amount: f64,
    rule: CountRule,
) -> Result<Mask> {
    check_amount(amount)?;
    split_dim(&[rows, cols], 1, weights.len())?;
    if feature_norms.len() != cols {
        return Err(Error::ShapeMismatch {
            context: "feature norms",
            expected: vec![cols],
            actual: vec![feature_norms.len()],
        });
    }
    if let Some(index) = feature_norms.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::NonFinite { name: "feature_norms", index, value: feature_norms[index] });
    }
    let scores: Vec<f64> =
        magnitudes(weights)?.iter().enumerate().map(|(i, a)| a * feature_norms[i % cols.max(1)]).collect();
    let mut mask = Mask::ones(weights.len())?;
    let k = rule.count(amount, cols)?;
    for r in 0..rows {
        let mut row: Vec<usize> = (r * cols..(r + 1) * cols).collect();
        for i in lowest(&scores, &mut row, k) {
            mask.set(i, false);
        }
    }
    Ok(mask)
}
