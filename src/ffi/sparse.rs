//! C ABI: sparse storage (CSR, N:M compressed) and sparse x dense products.

use super::boundary::{out_ptr, slice_in, slice_out, FfiError};
use super::status::greenai_status;
use crate::prune::sparse::{Csr, NmCompressed};
use crate::tensor::numel;

/// A CSR matrix with f32 values. Made by `greenai_csr_from_dense`, released by `greenai_csr_free`.
pub struct greenai_csr {
    csr: Csr<f32>,
}

/// An N:M compressed f32 matrix. Made by `greenai_nm_from_dense`, released by `greenai_nm_free`.
pub struct greenai_nm {
    nm: NmCompressed,
}

/// Borrows the value behind a handle.
///
/// # Safety
/// `ptr`, when non-NULL, must be a live handle from this library.
unsafe fn handle<'a, T>(ptr: *const T, name: &'static str) -> Result<&'a T, FfiError> {
    // SAFETY: the caller guarantees a non-NULL ptr is a live handle made by Box::into_raw.
    unsafe { ptr.as_ref() }.ok_or(FfiError::Null(name))
}

/// Compresses a row-major `rows x cols` matrix to CSR (entries equal to zero are dropped) into `*out`.
///
/// # Safety
/// `dense` must hold `rows * cols` floats; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_csr_from_dense(
    dense: *const f32,
    rows: usize,
    cols: usize,
    out: *mut *mut greenai_csr,
) -> greenai_status {
    ffi_boundary! {
        let len = numel(&[rows, cols])?;
        // SAFETY: the caller guarantees dense holds rows * cols floats and out is writable.
        let (dense, out) = unsafe { (slice_in(dense, len, "dense")?, out_ptr(out, "out")?) };
        let csr = Csr::from_dense(dense, rows, cols)?;
        out.write(Box::into_raw(Box::new(greenai_csr { csr })));
        Ok(())
    }
}

/// Writes the stored nonzeros to `*nnz` and the storage size (values, 32-bit column indices and row
/// pointers) in bytes to `*bytes`.
///
/// # Safety
/// `csr` must be a live handle; `nnz` and `bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_csr_info(
    csr: *const greenai_csr,
    nnz: *mut usize,
    bytes: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the handle and out-pointers.
        let (csr, nnz, bytes) = unsafe { (handle(csr, "csr")?, out_ptr(nnz, "nnz")?, out_ptr(bytes, "bytes")?) };
        nnz.write(csr.csr.nnz());
        bytes.write(csr.csr.storage_bytes());
        Ok(())
    }
}

/// Expands a CSR matrix back to row-major `dense[len]` (`len` must be rows * cols).
///
/// # Safety
/// `csr` must be a live handle; `dense` must hold `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn greenai_csr_to_dense(
    csr: *const greenai_csr,
    dense: *mut f32,
    len: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the handle and the buffer.
        let (csr, out) = unsafe { (handle(csr, "csr")?, slice_out(dense, len, "dense")?) };
        let full = csr.csr.to_dense()?;
        if out.len() != full.len() {
            return Err(crate::Error::ShapeMismatch { context: "dense", expected: vec![full.len()], actual: vec![out.len()] }.into());
        }
        out.copy_from_slice(&full);
        Ok(())
    }
}

/// `y (rows x ncols) = csr (rows x cols) * x (cols x ncols)`, row-major; `y` is overwritten.
///
/// # Safety
/// `csr` must be a live handle; `x` must hold `cols * ncols` floats and `y` `rows * ncols`.
#[no_mangle]
pub unsafe extern "C" fn greenai_csr_spmm(
    csr: *const greenai_csr,
    x: *const f32,
    ncols: usize,
    y: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the handle.
        let csr = unsafe { handle(csr, "csr")? };
        let (x_len, y_len) = (numel(&[csr.csr.cols(), ncols])?, numel(&[csr.csr.rows(), ncols])?);
        // SAFETY: the caller guarantees x and y hold these lengths.
        let (x, y) = unsafe { (slice_in(x, x_len, "x")?, slice_out(y, y_len, "y")?) };
        csr.csr.spmm(x, ncols, y)?;
        Ok(())
    }
}

/// Releases a CSR handle; NULL is ignored.
///
/// # Safety
/// `csr` must be NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_csr_free(csr: *mut greenai_csr) {
    if !csr.is_null() {
        // SAFETY: the caller passes a live handle made by Box::into_raw and never uses it again.
        drop(unsafe { Box::from_raw(csr) });
    }
}

/// Compresses a row-major `rows x cols` matrix whose groups of `m` consecutive columns each hold at
/// most `n` nonzeros (as after `greenai_prune_n_m` and masking) into `*out`.
///
/// # Safety
/// `dense` must hold `rows * cols` floats; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_nm_from_dense(
    dense: *const f32,
    rows: usize,
    cols: usize,
    n: usize,
    m: usize,
    out: *mut *mut greenai_nm,
) -> greenai_status {
    ffi_boundary! {
        let len = numel(&[rows, cols])?;
        // SAFETY: the caller guarantees dense holds rows * cols floats and out is writable.
        let (dense, out) = unsafe { (slice_in(dense, len, "dense")?, out_ptr(out, "out")?) };
        let nm = NmCompressed::from_dense(dense, rows, cols, n, m)?;
        out.write(Box::into_raw(Box::new(greenai_nm { nm })));
        Ok(())
    }
}

/// Writes the storage size (kept values plus packed positions) in bytes to `*bytes`.
///
/// # Safety
/// `nm` must be a live handle; `bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_nm_storage_bytes(
    nm: *const greenai_nm,
    bytes: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the handle and out-pointer.
        let (nm, bytes) = unsafe { (handle(nm, "nm")?, out_ptr(bytes, "bytes")?) };
        bytes.write(nm.nm.storage_bytes());
        Ok(())
    }
}

/// Expands an N:M matrix back to row-major `dense[len]` (`len` must be rows * cols).
///
/// # Safety
/// `nm` must be a live handle; `dense` must hold `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn greenai_nm_to_dense(
    nm: *const greenai_nm,
    dense: *mut f32,
    len: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the handle and the buffer.
        let (nm, out) = unsafe { (handle(nm, "nm")?, slice_out(dense, len, "dense")?) };
        let full = nm.nm.to_dense()?;
        if out.len() != full.len() {
            return Err(crate::Error::ShapeMismatch { context: "dense", expected: vec![full.len()], actual: vec![out.len()] }.into());
        }
        out.copy_from_slice(&full);
        Ok(())
    }
}

/// `y (rows x ncols) = nm (rows x cols) * x (cols x ncols)`, row-major; `y` is overwritten.
///
/// # Safety
/// `nm` must be a live handle; `x` must hold `cols * ncols` floats and `y` `rows * ncols`.
#[no_mangle]
pub unsafe extern "C" fn greenai_nm_spmm(
    nm: *const greenai_nm,
    x: *const f32,
    ncols: usize,
    y: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the handle.
        let nm = unsafe { handle(nm, "nm")? };
        let (x_len, y_len) = (numel(&[nm.nm.cols(), ncols])?, numel(&[nm.nm.rows(), ncols])?);
        // SAFETY: the caller guarantees x and y hold these lengths.
        let (x, y) = unsafe { (slice_in(x, x_len, "x")?, slice_out(y, y_len, "y")?) };
        nm.nm.spmm(x, ncols, y)?;
        Ok(())
    }
}

/// Releases an N:M handle; NULL is ignored.
///
/// # Safety
/// `nm` must be NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_nm_free(nm: *mut greenai_nm) {
    if !nm.is_null() {
        // SAFETY: the caller passes a live handle made by Box::into_raw and never uses it again.
        drop(unsafe { Box::from_raw(nm) });
    }
}
