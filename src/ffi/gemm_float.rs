//! C ABI: GEMM with f32 activations and f16/bf16 weights (plain and prepacked), and GEMV with
//! f32, f16, bf16 and int8 weights. f16 and bf16 cross as `uint16_t` bit patterns.

use super::boundary::{out_ptr, slice_in, slice_out, FfiError};
use super::status::greenai_status;
use crate::kernels::gemm_float::{self as gf, matrix_len, Kernel, PackedF16};
use crate::kernels::Isa;
use half::{bf16, f16};
use std::ffi::{c_char, CStr};

/// The C view of a row-major matrix: its element count, checked (`ld` >= columns, no overflow).
fn extent(name: &'static str, rows: usize, cols: usize, ld: usize) -> Result<usize, FfiError> {
    Ok(matrix_len(name, rows, cols, ld)?)
}

/// Runs a GEMM with weights of type `W` given as bit patterns.
///
/// # Safety
/// As the exported GEMM functions document.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_bits<W: gf::WeightElement>(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const u16,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) -> Result<(), FfiError> {
    let (a_len, b_len, c_len) = (extent("a", m, k, lda)?, extent("b", k, n, ldb)?, extent("c", m, n, ldc)?);
    // SAFETY: the caller guarantees the buffers span the matrices their dimensions describe; W is a
    // 16-bit weight type with every bit pattern valid, like uint16_t.
    let (a, b, c) = unsafe {
        (slice_in(a, a_len, "a")?, slice_in(b.cast::<W>(), b_len, "b")?, slice_out(c, c_len, "c")?)
    };
    gf::gemm_on(crate::kernels::Isa::active(), m, n, k, a, lda, b, ldb, c, ldc)?;
    Ok(())
}

/// `C = A * B`: A `m x k` f32 (leading dimension `lda`), B `k x n` IEEE binary16 bit patterns
/// (`ldb`), C `m x n` f32 (`ldc`), all row-major, C overwritten. Leading dimensions are in
/// elements and at least the row length. `k = 0` sets C to zero. For a few rows of A (decode
/// steps) B is read in place; for many it is packed internally (prepack it for repeated use).
///
/// # Safety
/// `a`, `b` and `c` must span `(rows - 1) * ld + cols` elements of their matrices (or be NULL
/// when that is 0); `c` must not overlap `a` or `b`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_f32_f16w(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const u16,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller's contract is the one gemm_bits documents.
    ffi_boundary! { unsafe { gemm_bits::<f16>(m, n, k, a, lda, b, ldb, c, ldc) } }
}

/// `C = A * B` with B given as bfloat16 bit patterns; otherwise as `greenai_gemm_f32_f16w`.
///
/// # Safety
/// As `greenai_gemm_f32_f16w`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_f32_bf16w(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const u16,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller's contract is the one gemm_bits documents.
    ffi_boundary! { unsafe { gemm_bits::<bf16>(m, n, k, a, lda, b, ldb, c, ldc) } }
}

/// f16 weights (`k x n`) prepacked for repeated GEMM. Made by `greenai_packed_f16_new`,
/// released by `greenai_packed_f16_free`.
pub struct greenai_packed_f16 {
    packed: PackedF16,
}

/// Packs B (`k x n` IEEE binary16 bit patterns, row-major, leading dimension `ldb`) into `*out`.
///
/// # Safety
/// `b` must span `(k - 1) * ldb + n` elements (or be NULL when that is 0); `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_f16_new(
    k: usize,
    n: usize,
    b: *const u16,
    ldb: usize,
    out: *mut *mut greenai_packed_f16,
) -> greenai_status {
    ffi_boundary! {
        let b_len = extent("b", k, n, ldb)?;
        // SAFETY: the caller guarantees b spans b_len elements and out is writable; f16 is a u16.
        let (b, out) = unsafe { (slice_in(b.cast::<f16>(), b_len, "b")?, out_ptr(out, "out")?) };
        let packed = PackedF16::pack(k, n, b, ldb)?;
        out.write(Box::into_raw(Box::new(greenai_packed_f16 { packed })));
        Ok(())
    }
}

/// Packs B as `greenai_packed_f16_new` does, in the layout of the kernel of tier `isa` (a
/// `GREENAI_ISA` name: "scalar", "avx2", ...; NULL means the active tier). Weights packed for a
/// tier whose kernel reads another layout than the active one are refused by
/// `greenai_gemm_f32_packed_f16` with `GREENAI_ERR_INVALID_ARGUMENT`. A tier this machine lacks, or
/// an unknown name, is `GREENAI_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// As `greenai_packed_f16_new`; `isa` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_f16_new_for(
    isa: *const c_char,
    k: usize,
    n: usize,
    b: *const u16,
    ldb: usize,
    out: *mut *mut greenai_packed_f16,
) -> greenai_status {
    ffi_boundary! {
        let kernel = if isa.is_null() {
            Kernel::active()
        } else {
            // SAFETY: non-NULL, and the caller guarantees a NUL-terminated string.
            let name = unsafe { CStr::from_ptr(isa) }.to_str().map_err(|_| crate::Error::invalid("isa", "(bytes)", "not UTF-8"))?;
            Kernel::for_isa(name.parse::<Isa>()?)?
        };
        let b_len = extent("b", k, n, ldb)?;
        // SAFETY: the caller guarantees b spans b_len elements and out is writable; f16 is a u16.
        let (b, out) = unsafe { (slice_in(b.cast::<f16>(), b_len, "b")?, out_ptr(out, "out")?) };
        let packed = PackedF16::pack_for(kernel, k, n, b, ldb)?;
        out.write(Box::into_raw(Box::new(greenai_packed_f16 { packed })));
        Ok(())
    }
}

/// Writes the columns per panel of the layout `packed` was made in (the active kernel reads
/// its own: pack with `greenai_packed_f16_new` to match it).
///
/// # Safety
/// `packed` must be a live handle; `panel_cols` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_f16_panel_cols(
    packed: *const greenai_packed_f16,
    panel_cols: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees a non-NULL packed is a live handle and panel_cols writable.
        let (packed, out) = unsafe { (packed.as_ref().ok_or(FfiError::Null("packed"))?, out_ptr(panel_cols, "panel_cols")?) };
        out.write(packed.packed.layout().panel_cols());
        Ok(())
    }
}

/// Releases packed weights; NULL is ignored.
///
/// # Safety
/// `packed` must be NULL or a live handle from `greenai_packed_f16_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_f16_free(packed: *mut greenai_packed_f16) {
    if !packed.is_null() {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, released once.
        drop(unsafe { Box::from_raw(packed) });
    }
}

/// `C = A * B` with prepacked B (`k x n`): A `m x k` f32 (`lda`), C `m x n` f32 (`ldc`), overwritten.
/// Weights packed in another layout than the active kernel's (`greenai_packed_f16_new_for`) give
/// `GREENAI_ERR_INVALID_ARGUMENT`, C untouched.
///
/// # Safety
/// `packed` must be a live handle; `a` and `c` must span their matrices; `c` must not overlap `a`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_f32_packed_f16(
    m: usize,
    a: *const f32,
    lda: usize,
    packed: *const greenai_packed_f16,
    c: *mut f32,
    ldc: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees a non-NULL packed is a live handle.
        let packed = &unsafe { packed.as_ref() }.ok_or(FfiError::Null("packed"))?.packed;
        let (a_len, c_len) = (extent("a", m, packed.k(), lda)?, extent("c", m, packed.n(), ldc)?);
        // SAFETY: the caller guarantees a and c span their matrices and do not overlap.
        let (a, c) = unsafe { (slice_in(a, a_len, "a")?, slice_out(c, c_len, "c")?) };
        gf::gemm_packed(m, a, lda, packed, c, ldc)?;
        Ok(())
    }
}

/// Runs a GEMV with weights `W` read from `w`.
///
/// # Safety
/// As the exported GEMV functions document.
unsafe fn gemv_any<W: gf::WeightElement>(
    n: usize,
    k: usize,
    w: *const W,
    ldw: usize,
    x: *const f32,
    y: *mut f32,
) -> Result<(), FfiError> {
    let w_len = extent("w", n, k, ldw)?;
    // SAFETY: the caller guarantees w spans its matrix, x holds k and y n elements, y apart.
    let (w, x, y) = unsafe { (slice_in(w, w_len, "w")?, slice_in(x, k, "x")?, slice_out(y, n, "y")?) };
    gf::gemv_on(crate::kernels::Isa::active(), n, k, w, ldw, x, y)?;
    Ok(())
}

/// `y = W x`: W `n x k` f32 row-major (leading dimension `ldw` >= `k`), `x` `k` floats,
/// `y` `n` floats (overwritten).
///
/// # Safety
/// `w` must span `(n - 1) * ldw + k` elements, `x` `k` and `y` `n` (each may be NULL when its
/// count is 0); `y` must not overlap the inputs.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemv_f32(
    n: usize,
    k: usize,
    w: *const f32,
    ldw: usize,
    x: *const f32,
    y: *mut f32,
) -> greenai_status {
    // SAFETY: the caller's contract is the one gemv_any documents.
    ffi_boundary! { unsafe { gemv_any::<f32>(n, k, w, ldw, x, y) } }
}

/// `y = W x` with W as IEEE binary16 bit patterns; otherwise as `greenai_gemv_f32`.
///
/// # Safety
/// As `greenai_gemv_f32`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemv_f32_f16w(
    n: usize,
    k: usize,
    w: *const u16,
    ldw: usize,
    x: *const f32,
    y: *mut f32,
) -> greenai_status {
    // SAFETY: the caller's contract is the one gemv_any documents; f16 is a u16 bit pattern.
    ffi_boundary! { unsafe { gemv_any::<f16>(n, k, w.cast(), ldw, x, y) } }
}

/// `y = W x` with W as bfloat16 bit patterns; otherwise as `greenai_gemv_f32`.
///
/// # Safety
/// As `greenai_gemv_f32`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemv_f32_bf16w(
    n: usize,
    k: usize,
    w: *const u16,
    ldw: usize,
    x: *const f32,
    y: *mut f32,
) -> greenai_status {
    // SAFETY: the caller's contract is the one gemv_any documents; bf16 is a u16 bit pattern.
    ffi_boundary! { unsafe { gemv_any::<bf16>(n, k, w.cast(), ldw, x, y) } }
}

/// `y_i = scales_i * sum_j W_ij x_j`: W `n x k` int8 row-major (`ldw` >= `k`), `scales` `n`
/// finite floats (one per row), `x` `k` floats, `y` `n` floats (overwritten).
///
/// # Safety
/// As `greenai_gemv_f32`, and `scales` must hold `n` floats.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemv_f32_i8w(
    n: usize,
    k: usize,
    w: *const i8,
    ldw: usize,
    scales: *const f32,
    x: *const f32,
    y: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let w_len = extent("w", n, k, ldw)?;
        // SAFETY: the caller guarantees the extents as documented and that y overlaps nothing.
        let (w, scales, x, y) = unsafe {
            (slice_in(w, w_len, "w")?, slice_in(scales, n, "scales")?, slice_in(x, k, "x")?, slice_out(y, n, "y")?)
        };
        gf::gemv_i8(n, k, w, ldw, scales, x, y)?;
        Ok(())
    }
}
