//! [`DynTensor`]: a tensor whose element type is known only at run time (files, the C ABI).

use super::dtype::DType;
use super::shape::numel;
use super::tensor::Tensor;
use crate::error::{try_vec, Error, Result};
use half::{bf16, f16};

/// Packed 4-bit data: two elements per byte, the first in the low nibble (ONNX order).
#[derive(Clone, Debug, PartialEq)]
pub struct Packed4 {
    /// `true` for [`DType::I4`], `false` for [`DType::U4`].
    pub signed: bool,
    /// Logical shape, in 4-bit elements.
    pub shape: Vec<usize>,
    /// `ceil(numel / 2)` bytes.
    pub bytes: Vec<u8>,
}

/// A tensor of any [`DType`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DynTensor {
    /// f32 elements.
    F32(Tensor<f32>),
    /// f16 elements.
    F16(Tensor<f16>),
    /// bf16 elements.
    BF16(Tensor<bf16>),
    /// i8 elements.
    I8(Tensor<i8>),
    /// u8 elements.
    U8(Tensor<u8>),
    /// i16 elements.
    I16(Tensor<i16>),
    /// u16 elements.
    U16(Tensor<u16>),
    /// i32 elements.
    I32(Tensor<i32>),
    /// Packed i4 or u4 elements.
    Packed4(Packed4),
}

macro_rules! each_typed {
    ($self:expr, $t:ident => $body:expr, $p:ident => $packed:expr) => {
        match $self {
            DynTensor::F32($t) => $body,
            DynTensor::F16($t) => $body,
            DynTensor::BF16($t) => $body,
            DynTensor::I8($t) => $body,
            DynTensor::U8($t) => $body,
            DynTensor::I16($t) => $body,
            DynTensor::U16($t) => $body,
            DynTensor::I32($t) => $body,
            DynTensor::Packed4($p) => $packed,
        }
    };
}

fn typed_from_bytes<T: super::Element>(shape: &[usize], bytes: &[u8]) -> Result<Tensor<T>> {
    let mut t = Tensor::<T>::zeros(shape.to_vec())?;
    bytemuck::cast_slice_mut::<T, u8>(t.as_mut_slice()).copy_from_slice(bytes);
    Ok(t)
}

impl DynTensor {
    /// A zero-filled tensor of `dtype` and `shape`.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Self> {
        let len = numel(shape)?;
        let bytes = dtype
            .storage_bytes(len)
            .ok_or_else(|| Error::Overflow { context: "tensor bytes", detail: format!("{len} x {dtype}") })?;
        Self::from_bytes(dtype, shape, &try_vec(bytes, 0u8)?)
    }

    /// Copies raw native-endian bytes into a tensor of `dtype` and `shape`; the byte count must match.
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Self> {
        let len = numel(shape)?;
        let expected = dtype
            .storage_bytes(len)
            .ok_or_else(|| Error::Overflow { context: "tensor bytes", detail: format!("{len} x {dtype}") })?;
        if bytes.len() != expected {
            return Err(Error::ShapeMismatch {
                context: "DynTensor::from_bytes (bytes)",
                expected: vec![expected],
                actual: vec![bytes.len()],
            });
        }
        Ok(match dtype {
            DType::F32 => DynTensor::F32(typed_from_bytes(shape, bytes)?),
            DType::F16 => DynTensor::F16(typed_from_bytes(shape, bytes)?),
            DType::BF16 => DynTensor::BF16(typed_from_bytes(shape, bytes)?),
            DType::I8 => DynTensor::I8(typed_from_bytes(shape, bytes)?),
            DType::U8 => DynTensor::U8(typed_from_bytes(shape, bytes)?),
            DType::I16 => DynTensor::I16(typed_from_bytes(shape, bytes)?),
            DType::U16 => DynTensor::U16(typed_from_bytes(shape, bytes)?),
            DType::I32 => DynTensor::I32(typed_from_bytes(shape, bytes)?),
            DType::I4 | DType::U4 => {
                let mut packed = try_vec(bytes.len(), 0u8)?;
                packed.copy_from_slice(bytes);
                DynTensor::Packed4(Packed4 {
                    signed: dtype == DType::I4,
                    shape: shape.to_vec(),
                    bytes: packed,
                })
            }
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            DynTensor::F32(_) => DType::F32,
            DynTensor::F16(_) => DType::F16,
            DynTensor::BF16(_) => DType::BF16,
            DynTensor::I8(_) => DType::I8,
            DynTensor::U8(_) => DType::U8,
            DynTensor::I16(_) => DType::I16,
            DynTensor::U16(_) => DType::U16,
            DynTensor::I32(_) => DType::I32,
            DynTensor::Packed4(p) if p.signed => DType::I4,
            DynTensor::Packed4(_) => DType::U4,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        each_typed!(self, t => t.shape(), p => &p.shape)
    }

    /// Number of (logical) elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored bytes (native endianness; packed types two elements per byte).
    pub fn as_bytes(&self) -> &[u8] {
        each_typed!(self, t => t.as_bytes(), p => &p.bytes)
    }

    /// The stored bytes, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        each_typed!(self, t => bytemuck::cast_slice_mut(t.as_mut_slice()), p => &mut p.bytes)
    }
}

macro_rules! from_typed {
    ($($t:ty => $v:ident),*) => {$(
        impl From<Tensor<$t>> for DynTensor {
            fn from(t: Tensor<$t>) -> Self {
                DynTensor::$v(t)
            }
        }
    )*};
}
from_typed!(f32 => F32, f16 => F16, bf16 => BF16, i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_for_every_dtype() {
        for dtype in DType::ALL {
            let shape = [3, 5];
            let n = dtype.storage_bytes(15).unwrap();
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let t = DynTensor::from_bytes(dtype, &shape, &bytes).unwrap();
            assert_eq!(t.dtype(), dtype);
            assert_eq!(t.shape(), &shape);
            assert_eq!(t.len(), 15);
            assert_eq!(t.as_bytes(), bytes.as_slice());
        }
    }

    #[test]
    fn wrong_byte_count_is_an_error() {
        let err = DynTensor::from_bytes(DType::F32, &[2], &[0u8; 7]).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        assert!(DynTensor::from_bytes(DType::I4, &[3], &[0u8; 2]).is_ok());
        assert!(DynTensor::from_bytes(DType::I4, &[3], &[0u8; 3]).is_err());
    }

    #[test]
    fn zeros_overflow_is_an_error() {
        assert!(matches!(DynTensor::zeros(DType::F32, &[usize::MAX / 2]), Err(Error::Overflow { .. })));
    }
}
