//! Structured shrinking: drop the pruned output channels of one layer and the matching input
//! channels of the next, giving smaller dense tensors, for chains the caller declares
//! (Linear -> Linear, Conv -> BatchNorm -> Conv).
//!
//! The result computes the same function as the masked network when each removed channel's
//! output is zero, i.e. when its bias (and, through BatchNorm, its shift
//! `beta - gamma * mean / sqrt(var + eps)`) is zero or the activation maps it to zero. Otherwise the
//! removed channel's constant output is dropped, as torch-pruning tools do; fold it into the next
//! layer's bias first if it matters.

use crate::tensor::{numel, split_at_axis};
use crate::{Error, Result};

/// A linear layer: `weight` is row-major (out_features, in_features).
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Row-major weight, `out_features x in_features`.
    pub weight: Vec<f32>,
    /// Output features.
    pub out_features: usize,
    /// Input features.
    pub in_features: usize,
    /// Optional bias, one per output feature.
    pub bias: Option<Vec<f32>>,
}

/// A 2-d convolution: `weight` is row-major (K, C, R, S).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Row-major weight.
    pub weight: Vec<f32>,
    /// (K filters, C input channels, R, S).
    pub shape: [usize; 4],
    /// Optional bias, one per filter.
    pub bias: Option<Vec<f32>>,
}

/// BatchNorm parameters, one per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Scale.
    pub gamma: Vec<f32>,
    /// Shift.
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Epsilon added to the variance.
    pub eps: f32,
}

/// Keeps the indices along `dim` of a row-major tensor where `keep` is true; returns the data and
/// the new shape.
pub fn select_channels(
    data: &[f32],
    shape: &[usize],
    dim: usize,
    keep: &[bool],
) -> Result<(Vec<f32>, Vec<usize>)> {
    let n = numel(shape)?;
    if n != data.len() {
        return Err(Error::ShapeMismatch {
            context: "tensor vs shape",
            expected: vec![n],
            actual: vec![data.len()],
        });
    }
    let (outer, len, inner) = split_at_axis(shape, dim)
        .ok_or_else(|| Error::invalid("dim", dim, format!("out of range for a {}-d tensor", shape.len())))?;
    check_keep(keep, len)?;
    let kept = keep.iter().filter(|k| **k).count();
    let mut out = Vec::with_capacity(outer * kept * inner);
    for o in 0..outer {
        for (c, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            let base = (o * len + c) * inner;
            out.extend_from_slice(&data[base..base + inner]);
        }
    }
    let mut new_shape = shape.to_vec();
    new_shape[dim] = kept;
    Ok((out, new_shape))
}

fn check_keep(keep: &[bool], channels: usize) -> Result<()> {
    if keep.len() != channels {
        return Err(Error::ShapeMismatch {
            context: "kept channels",
            expected: vec![channels],
            actual: vec![keep.len()],
        });
    }
    Ok(())
}

fn select_vec(v: &[f32], keep: &[bool], context: &'static str) -> Result<Vec<f32>> {
    if v.len() != keep.len() {
        return Err(Error::ShapeMismatch { context, expected: vec![keep.len()], actual: vec![v.len()] });
    }
    Ok(v.iter().zip(keep).filter(|(_, k)| **k).map(|(x, _)| *x).collect())
}

/// Removes hidden features of `first -> second` where `keep` (one per `first` output) is false:
/// rows of `first` (and its bias), columns of `second`.
pub fn shrink_linear_pair(first: &Linear, second: &Linear, keep: &[bool]) -> Result<(Linear, Linear)> {
    if second.in_features != first.out_features {
        return Err(Error::ShapeMismatch {
            context: "second linear input features",
            expected: vec![first.out_features],
            actual: vec![second.in_features],
        });
    }
    let (w1, s1) = select_channels(&first.weight, &[first.out_features, first.in_features], 0, keep)?;
    let (w2, s2) = select_channels(&second.weight, &[second.out_features, second.in_features], 1, keep)?;
    let bias = first.bias.as_deref().map(|b| select_vec(b, keep, "first linear bias")).transpose()?;
    Ok((
        Linear { weight: w1, out_features: s1[0], in_features: s1[1], bias },
        Linear { weight: w2, out_features: s2[0], in_features: s2[1], bias: second.bias.clone() },
    ))
}

/// Removes filters of `first` where `keep` (one per filter) is false, with their BatchNorm
/// channels and the matching input channels of `second`.
pub fn shrink_conv_bn_conv(
    first: &Conv2d,
    bn: &BatchNorm,
    second: &Conv2d,
    keep: &[bool],
) -> Result<(Conv2d, BatchNorm, Conv2d)> {
    if second.shape[1] != first.shape[0] {
        return Err(Error::ShapeMismatch {
            context: "second conv input channels",
            expected: vec![first.shape[0]],
            actual: vec![second.shape[1]],
        });
    }
    let (w1, s1) = select_channels(&first.weight, &first.shape, 0, keep)?;
    let (w2, s2) = select_channels(&second.weight, &second.shape, 1, keep)?;
    let bias = first.bias.as_deref().map(|b| select_vec(b, keep, "first conv bias")).transpose()?;
    let bn = BatchNorm {
        gamma: select_vec(&bn.gamma, keep, "batchnorm gamma")?,
        beta: select_vec(&bn.beta, keep, "batchnorm beta")?,
        mean: select_vec(&bn.mean, keep, "batchnorm mean")?,
        var: select_vec(&bn.var, keep, "batchnorm var")?,
        eps: bn.eps,
    };
    let shape = |s: Vec<usize>| [s[0], s[1], s[2], s[3]];
    Ok((
        Conv2d { weight: w1, shape: shape(s1), bias },
        bn,
        Conv2d { weight: w2, shape: shape(s2), bias: second.bias.clone() },
    ))
}
