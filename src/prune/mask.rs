//! A pruning mask: one bit per weight, 1 keeps and 0 prunes.

use crate::error::{try_vec, Result};
use crate::Error;

/// One bit per weight (1 keeps, 0 prunes), in the weights' flat row-major order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    words: Vec<u64>,
    len: usize,
}

impl Mask {
    /// A mask of `len` weights, all kept.
    pub fn ones(len: usize) -> Result<Self> {
        let mut words = try_vec(len.div_ceil(64), u64::MAX)?;
        if !len.is_multiple_of(64) {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (len % 64)) - 1;
            }
        }
        Ok(Mask { words, len })
    }

    /// A mask of `len` weights, all pruned.
    pub fn zeros(len: usize) -> Result<Self> {
        Ok(Mask { words: try_vec(len.div_ceil(64), 0)?, len })
    }

    /// A mask from one byte per weight (nonzero keeps).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut mask = Mask::zeros(bytes.len())?;
        for (i, &b) in bytes.iter().enumerate() {
            mask.set(i, b != 0);
        }
        Ok(mask)
    }

    /// Writes one byte per weight (1 keeps, 0 prunes) into `out`, which must have [`Mask::len`] bytes.
    pub fn write_bytes(&self, out: &mut [u8]) -> Result<()> {
        self.check_len("mask bytes", out.len())?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from(self.get(i));
        }
        Ok(())
    }

    /// Number of weights covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mask covers no weight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether weight `i` is kept (`false` past the end).
    pub fn get(&self, i: usize) -> bool {
        i < self.len && (self.words[i / 64] >> (i % 64)) & 1 == 1
    }

    /// Keeps (`true`) or prunes (`false`) weight `i`; ignored past the end.
    pub fn set(&mut self, i: usize, keep: bool) {
        if i < self.len {
            let bit = 1u64 << (i % 64);
            if keep {
                self.words[i / 64] |= bit;
            } else {
                self.words[i / 64] &= !bit;
            }
        }
    }

    /// Iterates the kept flags in order.
    pub fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.len).map(|i| self.get(i))
    }

    /// Number of kept weights.
    pub fn kept(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Number of pruned weights.
    pub fn pruned(&self) -> usize {
        self.len - self.kept()
    }

    /// The achieved sparsity: pruned / total (0 for an empty mask).
    pub fn sparsity(&self) -> f64 {
        if self.len == 0 {
            0.0
        } else {
            self.pruned() as f64 / self.len as f64
        }
    }

    /// Bytes this mask occupies (one bit per weight, rounded up to 64-bit words).
    pub fn storage_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Keeps only weights both masks keep (how a new pruning step combines with earlier ones).
    pub fn and(&self, other: &Mask) -> Result<Mask> {
        self.check_len("other mask", other.len)?;
        let words = self.words.iter().zip(&other.words).map(|(a, b)| a & b).collect();
        Ok(Mask { words, len: self.len })
    }

    /// The weights times the mask, as a new vector.
    pub fn apply(&self, weights: &[f32]) -> Result<Vec<f32>> {
        let mut out = weights.to_vec();
        self.bake(&mut out)?;
        Ok(out)
    }

    /// Zeroes the pruned weights in place (makes the pruning permanent).
    pub fn bake(&self, weights: &mut [f32]) -> Result<()> {
        self.check_len("weights", weights.len())?;
        for (i, w) in weights.iter_mut().enumerate() {
            if !self.get(i) {
                *w = 0.0;
            }
        }
        Ok(())
    }

    fn check_len(&self, context: &'static str, len: usize) -> Result<()> {
        if len != self.len {
            return Err(Error::ShapeMismatch { context, expected: vec![self.len], actual: vec![len] });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ones_zeros_and_counts() {
        for len in [0, 1, 63, 64, 65, 130] {
            let ones = Mask::ones(len).unwrap();
            assert_eq!(ones.kept(), len);
            assert_eq!(Mask::zeros(len).unwrap().pruned(), len);
            assert!(!ones.get(len));
        }
        let mut m = Mask::ones(70).unwrap();
        m.set(3, false);
        m.set(69, false);
        assert_eq!(m.kept(), 68);
        assert!((m.sparsity() - 2.0 / 70.0).abs() < 1e-15);
        let mut bytes = vec![9u8; 70];
        m.write_bytes(&mut bytes).unwrap();
        assert_eq!(Mask::from_bytes(&bytes).unwrap(), m);
        assert_eq!(bytes.iter().filter(|&&b| b == 0).count(), 2);
    }

    #[test]
    fn apply_bake_and_combine() {
        let m = Mask::from_bytes(&[1, 0, 1, 0]).unwrap();
        assert_eq!(m.apply(&[1.0, 2.0, 3.0, 4.0]).unwrap(), vec![1.0, 0.0, 3.0, 0.0]);
        let n = Mask::from_bytes(&[0, 1, 1, 0]).unwrap();
        assert_eq!(m.and(&n).unwrap(), Mask::from_bytes(&[0, 0, 1, 0]).unwrap());
        assert!(m.apply(&[1.0]).is_err());
        assert!(m.and(&Mask::ones(3).unwrap()).is_err());
    }
}
