//! 4-bit packing: two values per byte, the first in the low nibble (ONNX order).

use crate::error::{Error, Result};

/// Bytes that hold `n` packed 4-bit values.
pub const fn packed_len(n: usize) -> usize {
    n.div_ceil(2)
}

/// The value at element `i` of packed data, sign-extended when `signed`.
#[inline]
pub(crate) fn nibble_get(bytes: &[u8], i: usize, signed: bool) -> i32 {
    let nib = (bytes[i / 2] >> ((i % 2) * 4)) & 0x0F;
    if signed {
        i32::from(((nib << 4) as i8) >> 4)
    } else {
        i32::from(nib)
    }
}

/// Stores the low 4 bits of `q` at element `i` of packed data.
#[inline]
pub(crate) fn nibble_put(bytes: &mut [u8], i: usize, q: i32) {
    let shift = (i % 2) * 4;
    let b = &mut bytes[i / 2];
    *b = (*b & !(0x0F << shift)) | (((q as u8) & 0x0F) << shift);
}

fn check_nibbles(values: &[i8], signed: bool, packed: &[u8]) -> Result<()> {
    if packed.len() != packed_len(values.len()) {
        return Err(Error::ShapeMismatch {
            context: "packed 4-bit buffer",
            expected: vec![packed_len(values.len())],
            actual: vec![packed.len()],
        });
    }
    let (lo, hi) = if signed { (-8, 7) } else { (0, 15) };
    if let Some(i) = values.iter().position(|&v| v < lo || v > hi) {
        return Err(Error::invalid(
            "values",
            format!("[{i}] = {}", values[i]),
            format!("outside [{lo}, {hi}]"),
        ));
    }
    Ok(())
}

/// Packs 4-bit values (each in `[-8, 7]` when `signed`, else `[0, 15]`) into `ceil(n / 2)` bytes;
/// the unused high nibble of an odd count is zero. Nothing is written on error.
pub fn pack_4bit(values: &[i8], signed: bool, packed: &mut [u8]) -> Result<()> {
    check_nibbles(values, signed, packed)?;
    packed.fill(0);
    for (i, &v) in values.iter().enumerate() {
        nibble_put(packed, i, i32::from(v));
    }
    Ok(())
}

/// Unpacks `values.len()` 4-bit values from `packed` (sign-extended when `signed`).
pub fn unpack_4bit(packed: &[u8], signed: bool, values: &mut [i8]) -> Result<()> {
    if packed.len() != packed_len(values.len()) {
        return Err(Error::ShapeMismatch {
            context: "packed 4-bit buffer",
            expected: vec![packed_len(values.len())],
            actual: vec![packed.len()],
        });
    }
    for (i, v) in values.iter_mut().enumerate() {
        *v = nibble_get(packed, i, signed) as i8;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_element_is_the_low_nibble() {
        let mut p = [0u8; 2];
        pack_4bit(&[1, -1, 7], true, &mut p).unwrap();
        // 1 -> 0x1 low, -1 -> 0xF high; 7 -> 0x7 low, high nibble zero.
        assert_eq!(p, [0xF1, 0x07]);
        let mut v = [0i8; 3];
        unpack_4bit(&p, true, &mut v).unwrap();
        assert_eq!(v, [1, -1, 7]);
        pack_4bit(&[15, 0], false, &mut p[..1]).unwrap();
        assert_eq!(p[0], 0x0F);
    }

    #[test]
    fn out_of_range_values_are_refused_untouched() {
        let mut p = [0xAAu8; 1];
        assert!(pack_4bit(&[8], true, &mut p).is_err());
        assert!(pack_4bit(&[16], false, &mut p).is_err());
        assert!(pack_4bit(&[1, 2], true, &mut [0u8; 2]).is_err());
        assert_eq!(p, [0xAA]);
    }
}
