//! C ABI of ggml's block formats: row sizes, and quantization and dequantization of whole matrices
//! equal bit for bit to ggml's reference code (`type` takes ggml's `enum ggml_type` values:
//! Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q4_K = 12, Q6_K = 14, Q8_K = 15).

use super::boundary::{out_ptr, slice_in, slice_out};
use super::status::greenai_status;
use crate::error::{check_len, checked_product};
use crate::kernels::ggml::{self, GgmlType};
use std::ffi::c_void;

/// Bytes of one row of `cols` elements of ggml type `type` (ggml's `ggml_row_size`); `cols` must be
/// a multiple of the type's block (32, or 256 for the K types). `*bytes` is written only on success.
///
/// # Safety
/// `bytes` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_ggml_row_size(
    r#type: u32,
    cols: usize,
    bytes: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees `bytes` is writable.
        let out = unsafe { out_ptr(bytes, "bytes")? };
        out.write(GgmlType::from_ggml(r#type)?.row_bytes(cols)?);
        Ok(())
    }
}

/// Quantizes the row-major `rows x cols` f32 matrix `x` into ggml blocks of type `type`, as ggml's
/// `quantize_row_*_ref`. `cols` must be a multiple of the block; `out_len` (bytes) must be at least
/// `rows * greenai_ggml_row_size(type, cols)`, and only that many bytes are written. A NaN or
/// infinity in `x` fails with `GREENAI_ERR_NON_FINITE`. Nothing is written on failure.
///
/// # Safety
/// `x` must point to `rows * cols` floats and `out` to `out_len` writable bytes (either may be NULL
/// when its length is 0); they must not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_ggml_quantize(
    r#type: u32,
    x: *const f32,
    rows: usize,
    cols: usize,
    out: *mut c_void,
    out_len: usize,
) -> greenai_status {
    ffi_boundary! {
        let ty = GgmlType::from_ggml(r#type)?;
        let needed = ty.matrix_bytes(rows, cols)?;
        let elems = checked_product("ggml matrix elements", &[rows, cols])?;
        check_len("out", out_len, needed)?;
        // SAFETY: the caller guarantees the buffers as documented.
        let (x, out) = unsafe { (slice_in(x, elems, "x")?, slice_out(out.cast::<u8>(), out_len, "out")?) };
        ggml::quantize(ty, x, rows, cols, &mut out[..needed])?;
        Ok(())
    }
}

/// Dequantizes `rows x cols` elements of ggml blocks of type `type` into the row-major f32 matrix
/// `x`, as ggml's `dequantize_row_*` (Q8_1, which ggml does not dequantize, as `d * q`).
/// `blocks_len` (bytes) must be exactly `rows * greenai_ggml_row_size(type, cols)`. A block whose
/// f16 (Q8_K: f32) scale or minimum is infinite or NaN fails with `GREENAI_ERR_FORMAT`, naming the
/// block. Nothing is written on failure.
///
/// # Safety
/// `blocks` must point to `blocks_len` bytes and `x` to `rows * cols` writable floats (either may
/// be NULL when its length is 0); they must not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_ggml_dequantize(
    r#type: u32,
    blocks: *const c_void,
    blocks_len: usize,
    rows: usize,
    cols: usize,
    x: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let ty = GgmlType::from_ggml(r#type)?;
        ty.matrix_bytes(rows, cols)?;
        let elems = checked_product("ggml matrix elements", &[rows, cols])?;
        // SAFETY: the caller guarantees the buffers as documented.
        let (blocks, x) = unsafe { (slice_in(blocks.cast::<u8>(), blocks_len, "blocks")?, slice_out(x, elems, "x")?) };
        ggml::dequantize(ty, blocks, rows, cols, x)?;
        Ok(())
    }
}

/// `y[r] = sum_c W[r, c] x[c]` for the `rows x cols` matrix W stored row after row as ggml blocks
/// of type `type` in `w`, as ggml's CPU `mul_mat`: `x` quantized to Q8_0 (Q4_0 = 2, Q8_0 = 8) or
/// Q8_K (Q4_K = 12, Q6_K = 14) by ggml's reference quantizer, then ggml's `vec_dot` per row. Other
/// types fail with `GREENAI_ERR_INVALID_ARGUMENT`; so does `cols` not a multiple of the block (32,
/// or 256 for the K types). `w_len` (bytes) must be at least `rows * greenai_ggml_row_size(type,
/// cols)`; a NaN or infinity in `x` fails with `GREENAI_ERR_NON_FINITE`. Nothing is written on
/// failure.
///
/// # Safety
/// `w` must point to `w_len` bytes, `x` to `cols` floats and `y` to `rows` writable floats (any may
/// be NULL when its length is 0); `y` must not overlap the inputs.
#[no_mangle]
pub unsafe extern "C" fn greenai_ggml_gemv(
    r#type: u32,
    w: *const c_void,
    w_len: usize,
    rows: usize,
    cols: usize,
    x: *const f32,
    y: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let ty = GgmlType::from_ggml(r#type)?;
        if !ggml::gemv_supports(ty) {
            return Err(crate::Error::invalid(
                "type",
                r#type,
                "GEMV takes Q4_0 = 2, Q8_0 = 8, Q4_K = 12 and Q6_K = 14",
            )
            .into());
        }
        let needed = ty.matrix_bytes(rows, cols)?;
        check_len("w", w_len, needed)?;
        // SAFETY: the caller guarantees the buffers as documented.
        let (w, x, y) = unsafe {
            (slice_in(w.cast::<u8>(), needed, "w")?, slice_in(x, cols, "x")?, slice_out(y, rows, "y")?)
        };
        ggml::gemv(ty, w, rows, cols, x, y)?;
        Ok(())
    }
}
