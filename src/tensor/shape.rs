//! Shape arithmetic: element counts and row-major strides, overflow-checked.

use crate::error::{checked_product, Result};

/// Number of elements of a tensor of this shape; an error if the product overflows.
pub fn numel(shape: &[usize]) -> Result<usize> {
    checked_product("shape", shape)
}

/// Row-major strides, in elements, of a tensor of this shape (its element count must fit in `usize`).
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Splits a row-major shape around `axis` into (outer, axis length, inner) element counts.
pub fn split_at_axis(shape: &[usize], axis: usize) -> Option<(usize, usize, usize)> {
    let len = *shape.get(axis)?;
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Some((outer, len, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides(&[]), Vec::<usize>::new());
        assert_eq!(strides(&[5]), vec![1]);
    }

    #[test]
    fn numel_detects_overflow() {
        assert_eq!(numel(&[2, 3]).unwrap(), 6);
        assert_eq!(numel(&[]).unwrap(), 1);
        assert!(numel(&[usize::MAX, 2]).is_err());
        assert_eq!(numel(&[usize::MAX, 0]).unwrap(), 0);
    }

    #[test]
    fn split_at_axis_counts() {
        assert_eq!(split_at_axis(&[2, 3, 4], 1), Some((2, 3, 4)));
        assert_eq!(split_at_axis(&[2, 3, 4], 3), None);
    }
}
