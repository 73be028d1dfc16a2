//! C ABI: bf16 x bf16 -> f32 GEMM, plain and with prepacked B. bf16 crosses as `uint16_t` bit patterns.

use super::boundary::{out_ptr, slice_in, slice_out, FfiError};
use super::status::greenai_status;
use crate::kernels::gemm_bf16::{self as gb, PackedB};
use crate::kernels::gemm_float::matrix_len;
use half::bf16;

/// The C view of a row-major matrix: its element count, checked (`ld` >= columns, no overflow).
fn extent(name: &'static str, rows: usize, cols: usize, ld: usize) -> Result<usize, FfiError> {
    Ok(matrix_len(name, rows, cols, ld)?)
}

/// `C = A * B`: A `m x k` bfloat16 bit patterns (leading dimension `lda`), B `k x n` bfloat16 bit
/// patterns (`ldb`), C `m x n` f32 (`ldc`), all row-major, C overwritten. Leading dimensions are in
/// elements and at least the row length. Products are exact in f32; results differ from the in-order
/// f32 sum only by summation order (within `k * 2^-24 * sum |a b|`). `k = 0` sets C to zero. Small `m`
/// reads B as it is; for repeated products with large `m`, pack B once (`greenai_bf16_packed_new`).
///
/// # Safety
/// `a`, `b` and `c` must span `(rows - 1) * ld + cols` elements of their matrices (or be NULL
/// when that is 0); `c` must not overlap `a` or `b`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_bf16bf16_f32(
    m: usize,
    n: usize,
    k: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) -> greenai_status {
    ffi_boundary! {
        let (a_len, b_len, c_len) = (extent("a", m, k, lda)?, extent("b", k, n, ldb)?, extent("c", m, n, ldc)?);
        // SAFETY: the caller guarantees the buffers span their matrices and that c overlaps neither
        // input; bf16 is a u16 with every bit pattern valid.
        let (a, b, c) = unsafe {
            (
                slice_in(a.cast::<bf16>(), a_len, "a")?,
                slice_in(b.cast::<bf16>(), b_len, "b")?,
                slice_out(c, c_len, "c")?,
            )
        };
        gb::gemm_bf16bf16_f32(m, n, k, a, lda, b, ldb, c, ldc)?;
        Ok(())
    }
}

/// bf16 B (`k x n`) prepacked for repeated `greenai_gemm_bf16_packed_f32`, in the layout of the
/// kernel tier active when it was made. Made by `greenai_bf16_packed_new`, released by
/// `greenai_bf16_packed_free`.
pub struct greenai_bf16_packed {
    packed: PackedB,
}

/// Packs B (`k x n` bfloat16 bit patterns, row-major, leading dimension `ldb` >= `n`) into a new
/// handle written to `*out` (only on success).
///
/// # Safety
/// `b` must span `(k - 1) * ldb + n` elements (or be NULL when that is 0); `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_bf16_packed_new(
    k: usize,
    n: usize,
    b: *const u16,
    ldb: usize,
    out: *mut *mut greenai_bf16_packed,
) -> greenai_status {
    ffi_boundary! {
        let b_len = extent("b", k, n, ldb)?;
        // SAFETY: the caller guarantees b spans b_len elements and out is writable; bf16 is a u16.
        let (b, out) = unsafe { (slice_in(b.cast::<bf16>(), b_len, "b")?, out_ptr(out, "out")?) };
        let packed = PackedB::pack(k, n, b, ldb)?;
        out.write(Box::into_raw(Box::new(greenai_bf16_packed { packed })));
        Ok(())
    }
}

/// `C = A * B` with prepacked B (`k x n`): A `m x k` bfloat16 bit patterns (`lda`), C `m x n` f32
/// (`ldc`), overwritten; as `greenai_gemm_bf16bf16_f32` otherwise.
///
/// # Safety
/// `packed` must be NULL or a live handle; `a` and `c` must span their matrices (or be NULL when
/// empty); `c` must not overlap `a`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_bf16_packed_f32(
    m: usize,
    a: *const u16,
    lda: usize,
    packed: *const greenai_bf16_packed,
    c: *mut f32,
    ldc: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees a non-NULL packed is a live handle.
        let packed = &unsafe { packed.as_ref() }.ok_or(FfiError::Null("packed"))?.packed;
        let (a_len, c_len) = (extent("a", m, packed.k(), lda)?, extent("c", m, packed.n(), ldc)?);
        // SAFETY: the caller guarantees a and c span their matrices and do not overlap; bf16 is a u16.
        let (a, c) = unsafe { (slice_in(a.cast::<bf16>(), a_len, "a")?, slice_out(c, c_len, "c")?) };
        gb::gemm_packed(m, a, lda, packed, c, ldc)?;
        Ok(())
    }
}

/// Releases a packed B; NULL is ignored.
///
/// # Safety
/// `packed` must be NULL or a live handle from `greenai_bf16_packed_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_bf16_packed_free(packed: *mut greenai_bf16_packed) {
    if !packed.is_null() {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, released once.
        drop(unsafe { Box::from_raw(packed) });
    }
}
