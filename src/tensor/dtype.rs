//! Element types: the [`DType`] tag and the [`Element`] trait of the Rust types behind it.

use half::{bf16, f16};
use std::fmt;

/// The element type of a tensor, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top half of a binary32).
    BF16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 4-bit integer, packed two per byte, first element in the low nibble.
    I4,
    /// Unsigned 4-bit integer, packed two per byte, first element in the low nibble.
    U4,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::I4,
        DType::U4,
    ];

    /// Bits per element.
    pub const fn bits(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 32,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 16,
            DType::I8 | DType::U8 => 8,
            DType::I4 | DType::U4 => 4,
        }
    }

    /// Whether two elements share a byte.
    pub const fn is_packed(self) -> bool {
        self.bits() < 8
    }

    /// Whether the type is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Bytes that `len` elements occupy (packed types round up to a whole byte), `None` on overflow.
    pub const fn storage_bytes(self, len: usize) -> Option<usize> {
        if self.is_packed() {
            Some(len.div_ceil(2))
        } else {
            len.checked_mul(self.bits() / 8)
        }
    }

    /// The lower-case name used in files and messages (`"f32"`, `"i4"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::I32 => "i32",
            DType::I4 => "i4",
            DType::U4 => "u4",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that can be a tensor element: plain old data with a [`DType`] tag.
pub trait Element:
    bytemuck::Pod
    + num_traits::Zero
    + num_traits::ToPrimitive
    + PartialOrd
    + Default
    + fmt::Debug
    + fmt::Display
    + Send
    + Sync
    + sealed::Sealed
    + 'static
{
    /// The tag of this type.
    const DTYPE: DType;
}

/// A floating-point element: f32, f16 or bf16, convertible to and from f32.
pub trait FloatElement: Element {
    /// Converts to f32; exact for every value of the type.
    fn to_f32(self) -> f32;
    /// Converts from f32, rounding to nearest even (NaN stays NaN, overflow goes to infinity).
    fn from_f32(value: f32) -> Self;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
        }
    )*};
}
element!(f32 => F32, f16 => F16, bf16 => BF16, i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32);

impl FloatElement for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(value: f32) -> Self {
        value
    }
}

impl FloatElement for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(value: f32) -> Self {
        f16::from_f32(value)
    }
}

impl FloatElement for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(value: f32) -> Self {
        bf16::from_f32(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_bytes_rounds_packed_types_up() {
        assert_eq!(DType::I4.storage_bytes(3), Some(2));
        assert_eq!(DType::U4.storage_bytes(4), Some(2));
        assert_eq!(DType::F32.storage_bytes(3), Some(12));
        assert_eq!(DType::F32.storage_bytes(usize::MAX), None);
    }

    #[test]
    fn element_tags_match_sizes() {
        fn bits<T: Element>() -> usize {
            std::mem::size_of::<T>() * 8
        }
        assert_eq!(bits::<f32>(), f32::DTYPE.bits());
        assert_eq!(bits::<f16>(), f16::DTYPE.bits());
        assert_eq!(bits::<bf16>(), bf16::DTYPE.bits());
        assert_eq!(bits::<i8>(), i8::DTYPE.bits());
        assert_eq!(bits::<u8>(), u8::DTYPE.bits());
        assert_eq!(bits::<i16>(), i16::DTYPE.bits());
        assert_eq!(bits::<u16>(), u16::DTYPE.bits());
        assert_eq!(bits::<i32>(), i32::DTYPE.bits());
    }
}
