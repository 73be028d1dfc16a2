//! `greenai_tensor`: an opaque, owned tensor of any dtype.

use super::boundary::{out_ptr, slice_in, slice_out, FfiError};
use super::status::greenai_status;
use crate::tensor::{DType, DynTensor};
use crate::Error;
use std::ffi::c_void;

/// An element type code, one of the `GREENAI_DTYPE_*` values.
pub type greenai_dtype = u32;
/// IEEE binary32 (`float`).
pub const GREENAI_DTYPE_F32: greenai_dtype = 0;
/// IEEE binary16, as `uint16_t` bit patterns.
pub const GREENAI_DTYPE_F16: greenai_dtype = 1;
/// bfloat16, as `uint16_t` bit patterns.
pub const GREENAI_DTYPE_BF16: greenai_dtype = 2;
/// `int8_t`.
pub const GREENAI_DTYPE_I8: greenai_dtype = 3;
/// `uint8_t`.
pub const GREENAI_DTYPE_U8: greenai_dtype = 4;
/// `int16_t`.
pub const GREENAI_DTYPE_I16: greenai_dtype = 5;
/// `uint16_t`.
pub const GREENAI_DTYPE_U16: greenai_dtype = 6;
/// `int32_t`.
pub const GREENAI_DTYPE_I32: greenai_dtype = 7;
/// Signed 4-bit, two per byte, first element in the low nibble.
pub const GREENAI_DTYPE_I4: greenai_dtype = 8;
/// Unsigned 4-bit, two per byte, first element in the low nibble.
pub const GREENAI_DTYPE_U4: greenai_dtype = 9;

/// Converts a C dtype code, refusing unknown values.
pub(crate) fn dtype_from_c(code: greenai_dtype) -> Result<DType, Error> {
    Ok(match code {
        GREENAI_DTYPE_F32 => DType::F32,
        GREENAI_DTYPE_F16 => DType::F16,
        GREENAI_DTYPE_BF16 => DType::BF16,
        GREENAI_DTYPE_I8 => DType::I8,
        GREENAI_DTYPE_U8 => DType::U8,
        GREENAI_DTYPE_I16 => DType::I16,
        GREENAI_DTYPE_U16 => DType::U16,
        GREENAI_DTYPE_I32 => DType::I32,
        GREENAI_DTYPE_I4 => DType::I4,
        GREENAI_DTYPE_U4 => DType::U4,
        other => return Err(Error::invalid("dtype", other, "not a GREENAI_DTYPE_* value")),
    })
}

/// The C code of a dtype.
pub(crate) fn dtype_to_c(dtype: DType) -> greenai_dtype {
    match dtype {
        DType::F32 => GREENAI_DTYPE_F32,
        DType::F16 => GREENAI_DTYPE_F16,
        DType::BF16 => GREENAI_DTYPE_BF16,
        DType::I8 => GREENAI_DTYPE_I8,
        DType::U8 => GREENAI_DTYPE_U8,
        DType::I16 => GREENAI_DTYPE_I16,
        DType::U16 => GREENAI_DTYPE_U16,
        DType::I32 => GREENAI_DTYPE_I32,
        DType::I4 => GREENAI_DTYPE_I4,
        DType::U4 => GREENAI_DTYPE_U4,
    }
}

/// An owned tensor: row-major, contiguous, of one dtype. Made by `greenai_tensor_new` or
/// `greenai_tensor_from_data`, released by `greenai_tensor_free`.
pub struct greenai_tensor {
    tensor: DynTensor,
}

impl greenai_tensor {
    /// Boxes a tensor into a handle for C.
    pub(crate) fn into_raw(tensor: DynTensor) -> *mut greenai_tensor {
        Box::into_raw(Box::new(greenai_tensor { tensor }))
    }

    /// The tensor behind a handle.
    ///
    /// # Safety
    /// `ptr`, when non-NULL, must be a live handle from this library.
    pub(crate) unsafe fn get<'a>(
        ptr: *const greenai_tensor,
        name: &'static str,
    ) -> Result<&'a DynTensor, FfiError> {
        // SAFETY: the caller guarantees a non-NULL ptr is a live handle made by into_raw.
        let handle = unsafe { ptr.as_ref() }.ok_or(FfiError::Null(name))?;
        Ok(&handle.tensor)
    }

    /// The tensor behind a handle, mutable.
    ///
    /// # Safety
    /// `ptr`, when non-NULL, must be a live handle from this library, not used elsewhere during the call.
    pub(crate) unsafe fn get_mut<'a>(
        ptr: *mut greenai_tensor,
        name: &'static str,
    ) -> Result<&'a mut DynTensor, FfiError> {
        // SAFETY: the caller guarantees a non-NULL ptr is a live, unaliased handle made by into_raw.
        let handle = unsafe { ptr.as_mut() }.ok_or(FfiError::Null(name))?;
        Ok(&mut handle.tensor)
    }
}

/// Creates a zero-filled tensor of `dtype` and `shape[ndim]` (`ndim` 0 is a scalar) into `*out`.
///
/// # Safety
/// `shape` must point to `ndim` readable `size_t` (or be NULL when `ndim` is 0); `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_tensor_new(
    dtype: greenai_dtype,
    shape: *const usize,
    ndim: usize,
    out: *mut *mut greenai_tensor,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (shape, out) = unsafe { (slice_in(shape, ndim, "shape")?, out_ptr(out, "out")?) };
        let tensor = DynTensor::zeros(dtype_from_c(dtype)?, shape)?;
        out.write(greenai_tensor::into_raw(tensor));
        Ok(())
    }
}

/// Creates a tensor of `dtype` and `shape[ndim]` holding a copy of `byte_len` bytes at `data`
/// (native endianness; 4-bit types two per byte); `byte_len` must equal the tensor's storage size.
///
/// # Safety
/// `shape` must point to `ndim` `size_t`, `data` to `byte_len` bytes; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_tensor_from_data(
    dtype: greenai_dtype,
    shape: *const usize,
    ndim: usize,
    data: *const c_void,
    byte_len: usize,
    out: *mut *mut greenai_tensor,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (shape, bytes, out) = unsafe {
            (slice_in(shape, ndim, "shape")?, slice_in(data.cast::<u8>(), byte_len, "data")?, out_ptr(out, "out")?)
        };
        let tensor = DynTensor::from_bytes(dtype_from_c(dtype)?, shape, bytes)?;
        out.write(greenai_tensor::into_raw(tensor));
        Ok(())
    }
}

/// Writes the tensor's dtype code to `*dtype`.
///
/// # Safety
/// `tensor` must be a live handle; `dtype` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_tensor_dtype(
    tensor: *const greenai_tensor,
    dtype: *mut greenai_dtype,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (tensor, out) = unsafe { (greenai_tensor::get(tensor, "tensor")?, out_ptr(dtype, "dtype")?) };
        out.write(dtype_to_c(tensor.dtype()));
        Ok(())
    }
}

/// Writes the tensor's number of dimensions to `*ndim`.
///
/// # Safety
/// `tensor` must be a live handle; `ndim` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_tensor_ndim(
    tensor: *const greenai_tensor,
    ndim: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (tensor, out) = unsafe { (greenai_tensor::get(tensor, "tensor")?, out_ptr(ndim, "ndim")?) };
        out.write(tensor.shape().len());
        Ok(())
    }
}

/// Copies the tensor's shape into `shape[capacity]`; `capacity` must be at least its ndim.
///
/// # Safety
/// `tensor` must be a live handle; `shape` must point to `capacity` writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn greenai_tensor_shape(
    tensor: *const greenai_tensor,
    shape: *mut usize,
    capacity: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (tensor, out) = unsafe { (greenai_tensor::get(tensor, "tensor")?, slice_out(shape, capacity, "shape")?) };
        let dims = tensor.shape();
        crate::error::check_len("shape", out.len(), dims.len())?;
        out[..dims.len()].copy_from_slice(dims);
        Ok(())
    }
}

/// Writes the tensor's storage size in bytes to `*byte_len`.
///
/// # Safety
/// `tensor` must be a live handle; `byte_len` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_tensor_byte_len(
    tensor: *const greenai_tensor,
    byte_len: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (tensor, out) = unsafe { (greenai_tensor::get(tensor, "tensor")?, out_ptr(byte_len, "byte_len")?) };
        out.write(tensor.as_bytes().len());
        Ok(())
    }
}

/// Writes a pointer to the tensor's elements to `*data`: borrowed, valid until the tensor is freed,
/// readable and writable for `greenai_tensor_byte_len` bytes.
///
/// # Safety
/// `tensor` must be a live handle; `data` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_tensor_data(
    tensor: *mut greenai_tensor,
    data: *mut *mut c_void,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (tensor, out) = unsafe { (greenai_tensor::get_mut(tensor, "tensor")?, out_ptr(data, "data")?) };
        out.write(tensor.as_bytes_mut().as_mut_ptr().cast());
        Ok(())
    }
}

/// Releases a tensor. NULL is accepted and does nothing; a handle must not be freed twice.
///
/// # Safety
/// `tensor` must be NULL or a live handle from this library, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_tensor_free(tensor: *mut greenai_tensor) {
    if tensor.is_null() {
        return;
    }
    // Dropping a tensor cannot panic, but the boundary keeps that true if it ever changes.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(tensor) });
    });
}
