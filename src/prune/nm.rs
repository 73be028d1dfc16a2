//! N:M semi-structured pruning: in each group of M consecutive weights along the input dimension,
//! keep the N largest |w| (NVIDIA's 2:4 sparsity).
//!
//! The input dimension is axis 1 of a weight of two or more dims: the columns of a linear weight
//! (out, in), and the channels C of a conv weight (K, C, R, S), whose groups therefore run with
//! stride R*S, as NVIDIA's ASP permutes them. A one-dimensional weight is one row.

use super::mask::Mask;
use crate::error::Result;
use crate::kernels::convert::check_no_nan;
use crate::tensor::{numel, split_at_axis};
use crate::Error;

/// Checks an N:M pattern: `1 <= m` and `n <= m`.
pub fn check_pattern(n: usize, m: usize) -> Result<()> {
    if m == 0 {
        return Err(Error::invalid("m", m, "group size must be at least 1"));
    }
    if n > m {
        return Err(Error::invalid("n", n, format!("cannot keep more than the group size m = {m}")));
    }
    Ok(())
}

/// The N:M mask of a row-major weight of `shape`. A group dimension not divisible by `m` is an
/// error unless `pad` is set, in which case the last short group keeps its largest `min(n, len)`
/// (as if padded with pruned zeros). Ties prune the lower index first.
pub fn n_m(weights: &[f32], shape: &[usize], n: usize, m: usize, pad: bool) -> Result<Mask> {
    check_pattern(n, m)?;
    let total = numel(shape)?;
    if total != weights.len() {
        return Err(Error::ShapeMismatch {
            context: "weights vs shape",
            expected: vec![total],
            actual: vec![weights.len()],
        });
    }
    check_no_nan("weights", weights)?;
    let axis = usize::from(shape.len() >= 2);
    let (outer, len, inner) = split_at_axis(shape, axis).unwrap_or((1, weights.len(), 1));
    if len % m != 0 && !pad {
        return Err(Error::invalid(
            "shape",
            format!("{shape:?}"),
            format!("input dimension {len} is not divisible by m = {m} (ask for padding)"),
        ));
    }
    let mut mask = Mask::ones(weights.len())?;
    let mut group: Vec<usize> = Vec::with_capacity(m);
    for o in 0..outer {
        for i in 0..inner {
            for start in (0..len).step_by(m) {
                group.clear();
                group.extend((start..(start + m).min(len)).map(|c| (o * len + c) * inner + i));
                let prune = group.len().saturating_sub(n);
                // Sort ascending by (|w|, index): the first `prune` go.
                group.sort_by(|&a, &b| weights[a].abs().total_cmp(&weights[b].abs()).then(a.cmp(&b)));
                for &idx in &group[..prune] {
                    mask.set(idx, false);
                }
            }
        }
    }
    Ok(mask)
}
