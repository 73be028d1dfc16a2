//! ggml's quantized block types, laid out byte for byte as `ggml-common.h` declares them.
//!
//! Every field is a byte array (f16 scales as little-endian `[u8; 2]`), so a block has alignment 1
//! and any byte buffer of whole blocks can be viewed as blocks without a copy; the sizes equal
//! ggml's `sizeof` (checked at compile time below).

use crate::{Error, Result};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements in one block of the 32-element types (`QK4_0`, `QK8_0`, ...).
pub const QK: usize = 32;
/// Elements in one super-block of the K types (`QK_K`).
pub const QK_K: usize = 256;

/// A ggml quantized type, with ggml's `enum ggml_type` value as its discriminant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    /// 4-bit, one f16 scale per 32 (`GGML_TYPE_Q4_0`).
    Q4_0 = 2,
    /// 4-bit, f16 scale and minimum per 32 (`GGML_TYPE_Q4_1`).
    Q4_1 = 3,
    /// 5-bit, one f16 scale per 32 (`GGML_TYPE_Q5_0`).
    Q5_0 = 6,
    /// 5-bit, f16 scale and minimum per 32 (`GGML_TYPE_Q5_1`).
    Q5_1 = 7,
    /// 8-bit, one f16 scale per 32 (`GGML_TYPE_Q8_0`).
    Q8_0 = 8,
    /// 8-bit with the f16 scale and the scaled block sum (`GGML_TYPE_Q8_1`, activations).
    Q8_1 = 9,
    /// 4-bit K-quant: 256 per super-block, 6-bit scales and minima per 32 (`GGML_TYPE_Q4_K`).
    Q4K = 12,
    /// 6-bit K-quant: 256 per super-block, 8-bit scales per 16 (`GGML_TYPE_Q6_K`).
    Q6K = 14,
    /// 8-bit K-quant with f32 scale and 16-element sums (`GGML_TYPE_Q8_K`, activations).
    Q8K = 15,
}

impl GgmlType {
    /// Every block type, in ggml's order.
    pub const ALL: [GgmlType; 9] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q4K,
        GgmlType::Q6K,
        GgmlType::Q8K,
    ];

    /// The type with ggml's `enum ggml_type` value `value`, or an error naming the supported ones.
    pub fn from_ggml(value: u32) -> Result<Self> {
        Self::ALL.into_iter().find(|t| *t as u32 == value).ok_or_else(|| {
            Error::invalid(
                "type",
                value,
                "not a ggml block type greenai supports (Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, \
                 Q8_0 = 8, Q8_1 = 9, Q4_K = 12, Q6_K = 14, Q8_K = 15)",
            )
        })
    }

    /// ggml's name of the type (`"q4_0"`, `"q4_K"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q8_1 => "q8_1",
            GgmlType::Q4K => "q4_K",
            GgmlType::Q6K => "q6_K",
            GgmlType::Q8K => "q8_K",
        }
    }

    /// The type ggml names `name` (`"q4_0"`, `"Q4_K"`: case does not matter).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Whether the type stores weights (ggml's activation-only types Q8_1 and Q8_K do not).
    pub const fn is_weight_type(self) -> bool {
        !matches!(self, GgmlType::Q8_1 | GgmlType::Q8K)
    }

    /// Elements per block.
    pub const fn block_elems(self) -> usize {
        match self {
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 => QK,
            GgmlType::Q8_0 | GgmlType::Q8_1 => QK,
            GgmlType::Q4K | GgmlType::Q6K | GgmlType::Q8K => QK_K,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub const fn block_bytes(self) -> usize {
        match self {
            GgmlType::Q4_0 => size_of::<BlockQ4_0>(),
            GgmlType::Q4_1 => size_of::<BlockQ4_1>(),
            GgmlType::Q5_0 => size_of::<BlockQ5_0>(),
            GgmlType::Q5_1 => size_of::<BlockQ5_1>(),
            GgmlType::Q8_0 => size_of::<BlockQ8_0>(),
            GgmlType::Q8_1 => size_of::<BlockQ8_1>(),
            GgmlType::Q4K => size_of::<BlockQ4K>(),
            GgmlType::Q6K => size_of::<BlockQ6K>(),
            GgmlType::Q8K => size_of::<BlockQ8K>(),
        }
    }

    /// Bytes of one row of `cols` elements (ggml's `ggml_row_size`); ggml requires `cols` to be a
    /// multiple of the block, and so does this.
    pub fn row_bytes(self, cols: usize) -> Result<usize> {
        let per = self.block_elems();
        if !cols.is_multiple_of(per) {
            return Err(Error::invalid(
                "cols",
                cols,
                format!(
                    "{} rows hold whole blocks of {per} elements: cols must be a multiple of {per}",
                    self.name()
                ),
            ));
        }
        Ok((cols / per) * self.block_bytes())
    }

    /// Bytes of `rows` rows of `cols` elements, with overflow checked.
    pub fn matrix_bytes(self, rows: usize, cols: usize) -> Result<usize> {
        let row = self.row_bytes(cols)?;
        row.checked_mul(rows).ok_or_else(|| Error::Overflow {
            context: "ggml matrix bytes",
            detail: format!("{rows} rows of {row} bytes"),
        })
    }
}

/// An f16 stored as ggml stores `ggml_half`: two little-endian bytes.
pub type F16Bytes = [u8; 2];

/// Reads a stored f16.
#[inline]
pub fn f16_get(bytes: F16Bytes) -> f16 {
    f16::from_le_bytes(bytes)
}

/// Stores an f16.
#[inline]
pub fn f16_put(value: f16) -> F16Bytes {
    value.to_le_bytes()
}

/// `block_q4_0`: `x = d * (q - 8)`, element `j` in the low nibble of `qs[j]`, element `j + 16` in its
/// high nibble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: F16Bytes,
    /// Nibbles.
    pub qs: [u8; QK / 2],
}

/// `block_q4_1`: `x = d * q + m`, nibbles as in Q4_0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: F16Bytes,
    /// Minimum.
    pub m: F16Bytes,
    /// Nibbles.
    pub qs: [u8; QK / 2],
}

/// `block_q5_0`: `x = d * (q - 16)`, low nibbles as in Q4_0, bit 4 of element `j` in bit `j` of `qh`
/// (read as a little-endian u32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: F16Bytes,
    /// Fifth bits.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}

/// `block_q5_1`: `x = d * q + m`, bits as in Q5_0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: F16Bytes,
    /// Minimum.
    pub m: F16Bytes,
    /// Fifth bits.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}

/// `block_q8_0`: `x = d * q`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: F16Bytes,
    /// Values.
    pub qs: [i8; QK],
}

/// `block_q8_1`: `x = d * q`, with `s = d * sum(q)` for the minimum terms of Q4_1/Q5_1 dot products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: F16Bytes,
    /// `d * sum(qs)`.
    pub s: F16Bytes,
    /// Values.
    pub qs: [i8; QK],
}

/// `block_q4_K`: 8 sub-blocks of 32, `x = d * sc * q - dmin * m` with 6-bit `sc` and `m` packed
/// in `scales` as ggml's `get_scale_min_k4` reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the sub-block scales.
    pub d: F16Bytes,
    /// Super-block scale of the sub-block minima.
    pub dmin: F16Bytes,
    /// Packed 6-bit scales and minima.
    pub scales: [u8; 12],
    /// Nibbles.
    pub qs: [u8; QK_K / 2],
}

/// `block_q6_K`: 16 sub-blocks of 16, `x = d * scales[i] * (q - 32)` with 6-bit `q` split into
/// low nibbles `ql` and high bit pairs `qh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// 8-bit sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: F16Bytes,
}

/// `block_q8_K`: `x = d * q` with an f32 scale and the sums of each 16 values (activations of the
/// K-quant dot products).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8K {
    /// Scale, an f32 as four little-endian bytes.
    pub d: [u8; 4],
    /// Values.
    pub qs: [i8; QK_K],
    /// Sums of each 16 values, i16 as two little-endian bytes each.
    pub bsums: [[u8; 2]; QK_K / 16],
}

// ggml-common.h's static_asserts, restated.
const _: () = assert!(size_of::<BlockQ4_0>() == 2 + QK / 2);
const _: () = assert!(size_of::<BlockQ4_1>() == 4 + QK / 2);
const _: () = assert!(size_of::<BlockQ5_0>() == 2 + 4 + QK / 2);
const _: () = assert!(size_of::<BlockQ5_1>() == 4 + 4 + QK / 2);
const _: () = assert!(size_of::<BlockQ8_0>() == 2 + QK);
const _: () = assert!(size_of::<BlockQ8_1>() == 4 + QK);
const _: () = assert!(size_of::<BlockQ4K>() == 4 + 12 + QK_K / 2);
const _: () = assert!(size_of::<BlockQ6K>() == 2 + QK_K / 16 + 3 * QK_K / 4);
const _: () = assert!(size_of::<BlockQ8K>() == 4 + QK_K + QK_K / 16 * 2);
