//! C ABI: exact int8 GEMM, the prepacked B handle `greenai_packed_i8`, and the quantized linear
//! layer `greenai_qlinear`.
//!
//! Matrices are row-major with leading dimensions in elements; a matrix's extent is
//! `(rows - 1) * ld + cols` elements (none when rows or cols is 0), and its pointer may be NULL
//! only then. C must not overlap A or B.

use super::boundary::{out_ptr, slice_in, slice_out, FfiError, FfiResult};
use super::status::greenai_status;
use crate::kernels::gemm_int8::{
    gemm_packed, matrix_len, AElement, ActivationQuant, PackedI8, QuantLinear, Update,
};
use crate::kernels::{gemm_int8, Isa};
use crate::Error;

/// B (`k x n`, `int8_t`) packed once for the GEMM kernels, with its column sums. Made by
/// `greenai_packed_i8_pack` or `greenai_packed_i8_pack_transposed`, released by `greenai_packed_i8_free`.
pub struct greenai_packed_i8 {
    packed: PackedI8,
}

/// A linear layer `y = x W^T + b` with int8 weights per output channel. Made by
/// `greenai_qlinear_from_f32` or `greenai_qlinear_from_i8`, released by `greenai_qlinear_free`.
pub struct greenai_qlinear {
    pub(crate) layer: QuantLinear,
}

/// How `greenai_qlinear_forward` quantizes its input rows, one of the `GREENAI_ACT_QUANT_*` values.
pub type greenai_act_quant = u32;
/// u8 affine per row over `[min(0, min x), max(0, max x)]`, as ONNX dynamic quantization.
pub const GREENAI_ACT_QUANT_U8_AFFINE: greenai_act_quant = 0;
/// i8 symmetric per row, scale `max |x| / 127`.
pub const GREENAI_ACT_QUANT_I8_SYMMETRIC: greenai_act_quant = 1;

fn act_quant_from_c(code: greenai_act_quant) -> Result<ActivationQuant, Error> {
    match code {
        GREENAI_ACT_QUANT_U8_AFFINE => Ok(ActivationQuant::U8Affine),
        GREENAI_ACT_QUANT_I8_SYMMETRIC => Ok(ActivationQuant::I8Symmetric),
        other => Err(Error::invalid("mode", other, "not a GREENAI_ACT_QUANT_* value")),
    }
}

fn flag_from_c(name: &'static str, value: u32) -> Result<bool, Error> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Error::invalid(name, other, "must be 0 or 1")),
    }
}

/// Fails when the output extent overlaps an input extent (C must not alias A or B).
fn check_disjoint<O, I>(
    out: *const O,
    out_len: usize,
    input: *const I,
    in_len: usize,
    name: &'static str,
) -> FfiResult<()> {
    let (o0, o1) =
        (out as usize, (out as usize).saturating_add(out_len.saturating_mul(std::mem::size_of::<O>())));
    let (i0, i1) =
        (input as usize, (input as usize).saturating_add(in_len.saturating_mul(std::mem::size_of::<I>())));
    if out_len > 0 && in_len > 0 && o0 < i1 && i0 < o1 {
        return Err(Error::invalid("c", format!("{out:p}"), format!("overlaps `{name}`")).into());
    }
    Ok(())
}

/// Shared body of the four unpacked GEMM functions.
///
/// # Safety
/// As documented on the exported functions.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_c<T: AElement>(
    update: Update,
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    lda: usize,
    b: *const i8,
    ldb: usize,
    c: *mut i32,
    ldc: usize,
) -> FfiResult<()> {
    let (a_len, b_len, c_len) = (matrix_len(m, k, lda)?, matrix_len(k, n, ldb)?, matrix_len(m, n, ldc)?);
    check_disjoint(c, c_len, a, a_len, "a")?;
    check_disjoint(c, c_len, b, b_len, "b")?;
    // SAFETY: the caller guarantees each pointer covers its matrix's extent; C overlaps neither input.
    let (a, b, c) =
        unsafe { (slice_in(a, a_len, "a")?, slice_in(b, b_len, "b")?, slice_out(c, c_len, "c")?) };
    gemm_int8::gemm_on(Isa::active(), update, m, n, k, a, lda, b, ldb, c, ldc)?;
    Ok(())
}

/// `C = A B`: A `uint8_t` (`m x k`), B `int8_t` (`k x n`), C `int32_t` (`m x n`), exact for every
/// input. `k == 0` zeroes C. For few rows of A (the decode step) B is read where it lies, without
/// packing; for more rows it is packed per call (`greenai_packed_i8` packs it once).
///
/// # Safety
/// Each pointer must cover its matrix's extent (see the module notes); C must not overlap A or B.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_u8i8_i32(
    m: usize,
    n: usize,
    k: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    ldb: usize,
    c: *mut i32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller guarantees the pointers as documented.
    ffi_boundary! { unsafe { gemm_c(Update::Overwrite, m, n, k, a, lda, b, ldb, c, ldc) } }
}

/// `C = A B`: A `int8_t` (`m x k`), B `int8_t` (`k x n`), C `int32_t` (`m x n`), exact for every
/// input. `k == 0` zeroes C.
///
/// # Safety
/// Each pointer must cover its matrix's extent (see the module notes); C must not overlap A or B.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_i8i8_i32(
    m: usize,
    n: usize,
    k: usize,
    a: *const i8,
    lda: usize,
    b: *const i8,
    ldb: usize,
    c: *mut i32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller guarantees the pointers as documented.
    ffi_boundary! { unsafe { gemm_c(Update::Overwrite, m, n, k, a, lda, b, ldb, c, ldc) } }
}

/// `C += A B` with A `uint8_t`, B `int8_t`, C `int32_t` (wrapping on int32 overflow).
///
/// # Safety
/// As `greenai_gemm_u8i8_i32`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_u8i8_i32_acc(
    m: usize,
    n: usize,
    k: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    ldb: usize,
    c: *mut i32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller guarantees the pointers as documented.
    ffi_boundary! { unsafe { gemm_c(Update::Accumulate, m, n, k, a, lda, b, ldb, c, ldc) } }
}

/// `C += A B` with A `int8_t`, B `int8_t`, C `int32_t` (wrapping on int32 overflow).
///
/// # Safety
/// As `greenai_gemm_i8i8_i32`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_i8i8_i32_acc(
    m: usize,
    n: usize,
    k: usize,
    a: *const i8,
    lda: usize,
    b: *const i8,
    ldb: usize,
    c: *mut i32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller guarantees the pointers as documented.
    ffi_boundary! { unsafe { gemm_c(Update::Accumulate, m, n, k, a, lda, b, ldb, c, ldc) } }
}

/// Packs row-major B (`k x n`, `int8_t`, leading dimension `ldb >= n`) into a new handle at `*out`.
///
/// # Safety
/// `b` must cover B's extent; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_i8_pack(
    k: usize,
    n: usize,
    b: *const i8,
    ldb: usize,
    out: *mut *mut greenai_packed_i8,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (b, out) = unsafe { (slice_in(b, matrix_len(k, n, ldb)?, "b")?, out_ptr(out, "out")?) };
        let packed = PackedI8::pack(k, n, b, ldb)?;
        out.write(Box::into_raw(Box::new(greenai_packed_i8 { packed })));
        Ok(())
    }
}

/// Packs B = W^T from row-major W (`n x k`, one row per output channel, leading dimension
/// `ldw >= k`) into a new handle at `*out`.
///
/// # Safety
/// `w` must cover W's extent; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_i8_pack_transposed(
    n: usize,
    k: usize,
    w: *const i8,
    ldw: usize,
    out: *mut *mut greenai_packed_i8,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (w, out) = unsafe { (slice_in(w, matrix_len(n, k, ldw)?, "w")?, out_ptr(out, "out")?) };
        let packed = PackedI8::pack_transposed(n, k, w, ldw)?;
        out.write(Box::into_raw(Box::new(greenai_packed_i8 { packed })));
        Ok(())
    }
}

/// Writes the packed matrix's `k` and `n` to `*k` and `*n`.
///
/// # Safety
/// `packed` must be a live handle; `k` and `n` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_i8_dims(
    packed: *const greenai_packed_i8,
    k: *mut usize,
    n: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (p, k, n) = unsafe { (packed_ref(packed)?, out_ptr(k, "k")?, out_ptr(n, "n")?) };
        k.write(p.k());
        n.write(p.n());
        Ok(())
    }
}

/// Copies B's `n` column sums (`sum_k b[k][j]`) into `sums[capacity]` (`capacity >= n`).
///
/// # Safety
/// `packed` must be a live handle; `sums` must point to `capacity` writable `int32_t`.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_i8_col_sums(
    packed: *const greenai_packed_i8,
    sums: *mut i32,
    capacity: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (p, out) = unsafe { (packed_ref(packed)?, slice_out(sums, capacity, "sums")?) };
        crate::error::check_len("sums", out.len(), p.n())?;
        out[..p.n()].copy_from_slice(p.col_sums());
        Ok(())
    }
}

/// # Safety
/// `ptr`, when non-NULL, must be a live handle from this library.
unsafe fn packed_ref<'a>(ptr: *const greenai_packed_i8) -> FfiResult<&'a PackedI8> {
    // SAFETY: the caller guarantees a non-NULL ptr is a live handle made by Box::into_raw.
    Ok(&unsafe { ptr.as_ref() }.ok_or(FfiError::Null("packed"))?.packed)
}

/// Shared body of the packed GEMM functions.
///
/// # Safety
/// As documented on the exported functions.
unsafe fn gemm_packed_c<T: AElement>(
    update: Update,
    m: usize,
    a: *const T,
    lda: usize,
    packed: *const greenai_packed_i8,
    c: *mut i32,
    ldc: usize,
) -> FfiResult<()> {
    // SAFETY: the caller guarantees a live handle.
    let p = unsafe { packed_ref(packed)? };
    let (a_len, c_len) = (matrix_len(m, p.k(), lda)?, matrix_len(m, p.n(), ldc)?);
    check_disjoint(c, c_len, a, a_len, "a")?;
    // SAFETY: the caller guarantees both pointers cover their extents; they do not overlap.
    let (a, c) = unsafe { (slice_in(a, a_len, "a")?, slice_out(c, c_len, "c")?) };
    gemm_packed(m, a, lda, p, c, ldc, update)?;
    Ok(())
}

/// `C = A B` with B prepacked: A `uint8_t` (`m x k`), C `int32_t` (`m x n`), exact. A handle
/// records the layout it was packed in; one the active kernel does not read is refused with
/// `GREENAI_ERR_INVALID_ARGUMENT` (and a message), never misread.
///
/// # Safety
/// `packed` must be a live handle; `a` and `c` must cover their extents and not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_u8_packed_i32(
    m: usize,
    a: *const u8,
    lda: usize,
    packed: *const greenai_packed_i8,
    c: *mut i32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller guarantees the pointers as documented.
    ffi_boundary! { unsafe { gemm_packed_c(Update::Overwrite, m, a, lda, packed, c, ldc) } }
}

/// `C = A B` with B prepacked: A `int8_t` (`m x k`), C `int32_t` (`m x n`), exact.
///
/// # Safety
/// `packed` must be a live handle; `a` and `c` must cover their extents and not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_i8_packed_i32(
    m: usize,
    a: *const i8,
    lda: usize,
    packed: *const greenai_packed_i8,
    c: *mut i32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller guarantees the pointers as documented.
    ffi_boundary! { unsafe { gemm_packed_c(Update::Overwrite, m, a, lda, packed, c, ldc) } }
}

/// `C += A B` with B prepacked and A `uint8_t` (wrapping on int32 overflow).
///
/// # Safety
/// As `greenai_gemm_u8_packed_i32`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_u8_packed_i32_acc(
    m: usize,
    a: *const u8,
    lda: usize,
    packed: *const greenai_packed_i8,
    c: *mut i32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller guarantees the pointers as documented.
    ffi_boundary! { unsafe { gemm_packed_c(Update::Accumulate, m, a, lda, packed, c, ldc) } }
}

/// `C += A B` with B prepacked and A `int8_t` (wrapping on int32 overflow).
///
/// # Safety
/// As `greenai_gemm_i8_packed_i32`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gemm_i8_packed_i32_acc(
    m: usize,
    a: *const i8,
    lda: usize,
    packed: *const greenai_packed_i8,
    c: *mut i32,
    ldc: usize,
) -> greenai_status {
    // SAFETY: the caller guarantees the pointers as documented.
    ffi_boundary! { unsafe { gemm_packed_c(Update::Accumulate, m, a, lda, packed, c, ldc) } }
}

/// Releases a packed matrix. NULL is accepted and does nothing; a handle must not be freed twice.
///
/// # Safety
/// `packed` must be NULL or a live handle from this library, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_packed_i8_free(packed: *mut greenai_packed_i8) {
    if packed.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(packed) });
    });
}

/// Builds a layer from f32 weights W (`out_features x in_features`, row-major), quantized
/// symmetric per output channel to [-127, 127] (to [-63, 63] when `reduce_range` is 1: the fastest
/// kernel, less accurate); `bias` (`out_features` floats) may be NULL for none. Writes `*out`.
/// The Rust twin is `QuantLinear::from_float`, same arguments in the same order.
///
/// # Safety
/// `w` must point to `out_features * in_features` floats, `bias` to `out_features` or be NULL;
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_qlinear_from_float(
    w: *const f32,
    out_features: usize,
    in_features: usize,
    bias: *const f32,
    reduce_range: u32,
    out: *mut *mut greenai_qlinear,
) -> greenai_status {
    ffi_boundary! {
        let len = matrix_len(out_features, in_features, in_features)?;
        // SAFETY: the caller guarantees the pointers as documented.
        let (w, bias, out) = unsafe {
            (slice_in(w, len, "w")?, optional_in(bias, out_features, "bias")?, out_ptr(out, "out")?)
        };
        let layer = QuantLinear::from_float(w, out_features, in_features, bias, flag_from_c("reduce_range", reduce_range)?)?;
        out.write(Box::into_raw(Box::new(greenai_qlinear { layer })));
        Ok(())
    }
}

/// Deprecated: `greenai_qlinear_from_float` (the same arguments); kept for one release.
///
/// # Safety
/// As `greenai_qlinear_from_float`.
#[deprecated(note = "use greenai_qlinear_from_float")]
#[no_mangle]
pub unsafe extern "C" fn greenai_qlinear_from_f32(
    w: *const f32,
    out_features: usize,
    in_features: usize,
    bias: *const f32,
    reduce_range: u32,
    out: *mut *mut greenai_qlinear,
) -> greenai_status {
    // SAFETY: the same contract as the function called.
    unsafe { greenai_qlinear_from_float(w, out_features, in_features, bias, reduce_range, out) }
}

/// Builds a layer from int8 weights W (`out_features x in_features`, row-major) with one positive
/// `scales[o]` and one `zero_points[o]` (in [-128, 127]) per output channel, so that
/// `w = (q - zero_point) * scale`: the parameters `greenai_quantize_min_max` writes for a per-axis-0
/// int8 spec. `zero_points` may be NULL (all 0, symmetric); `bias` may be NULL for none. Writes
/// `*out`. The Rust twin is `QuantLinear::from_int8`.
///
/// # Safety
/// `w` must point to `out_features * in_features` bytes, `scales` to `out_features` floats,
/// `zero_points` to `out_features` `int32_t` or be NULL, `bias` to `out_features` floats or be
/// NULL; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_qlinear_from_int8(
    w: *const i8,
    out_features: usize,
    in_features: usize,
    scales: *const f32,
    zero_points: *const i32,
    bias: *const f32,
    out: *mut *mut greenai_qlinear,
) -> greenai_status {
    ffi_boundary! {
        let len = matrix_len(out_features, in_features, in_features)?;
        // SAFETY: the caller guarantees the pointers as documented.
        let (w, scales, zero_points, bias, out) = unsafe {
            (
                slice_in(w, len, "w")?,
                slice_in(scales, out_features, "scales")?,
                optional_in(zero_points, out_features, "zero_points")?,
                optional_in(bias, out_features, "bias")?,
                out_ptr(out, "out")?,
            )
        };
        let layer = QuantLinear::from_int8(w, out_features, in_features, scales, zero_points, bias)?;
        out.write(Box::into_raw(Box::new(greenai_qlinear { layer })));
        Ok(())
    }
}

/// Deprecated: `greenai_qlinear_from_int8`, which also takes zero points (pass NULL for the
/// symmetric weights this function assumes); kept for one release.
///
/// # Safety
/// As `greenai_qlinear_from_int8` with `zero_points` NULL.
#[deprecated(note = "use greenai_qlinear_from_int8, which takes zero points")]
#[no_mangle]
pub unsafe extern "C" fn greenai_qlinear_from_i8(
    w: *const i8,
    out_features: usize,
    in_features: usize,
    scales: *const f32,
    bias: *const f32,
    out: *mut *mut greenai_qlinear,
) -> greenai_status {
    // SAFETY: the same contract as the function called, with no zero points.
    unsafe { greenai_qlinear_from_int8(w, out_features, in_features, scales, std::ptr::null(), bias, out) }
}

/// # Safety
/// `ptr`, when non-NULL, must point to `len` readable values.
unsafe fn optional_in<'a, T>(ptr: *const T, len: usize, name: &'static str) -> FfiResult<Option<&'a [T]>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees len readable values at a non-NULL ptr.
    Ok(Some(unsafe { slice_in(ptr, len, name)? }))
}

/// `y = x W^T + b` for `batch` rows: x `batch x in_features` floats, y `batch x out_features`,
/// x quantized per row as `mode` says. A non-finite x is `GREENAI_ERR_NON_FINITE`, y untouched.
///
/// # Safety
/// `layer` must be a live handle; `x` and `y` must point to their sizes and not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_qlinear_forward(
    layer: *const greenai_qlinear,
    x: *const f32,
    batch: usize,
    mode: greenai_act_quant,
    y: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees a non-NULL layer is a live handle.
        let layer = &unsafe { layer.as_ref() }.ok_or(FfiError::Null("layer"))?.layer;
        let x_len = matrix_len(batch, layer.in_features(), layer.in_features())?;
        let y_len = matrix_len(batch, layer.out_features(), layer.out_features())?;
        check_disjoint(y, y_len, x, x_len, "x")?;
        // SAFETY: the caller guarantees both pointers cover their sizes; they do not overlap.
        let (x, y) = unsafe { (slice_in(x, x_len, "x")?, slice_out(y, y_len, "y")?) };
        layer.forward(x, batch, act_quant_from_c(mode)?, y)?;
        Ok(())
    }
}

/// Writes the layer's input and output feature counts.
///
/// # Safety
/// `layer` must be a live handle; `in_features` and `out_features` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_qlinear_dims(
    layer: *const greenai_qlinear,
    in_features: *mut usize,
    out_features: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (layer, i, o) = unsafe {
            (&layer.as_ref().ok_or(FfiError::Null("layer"))?.layer, out_ptr(in_features, "in_features")?, out_ptr(out_features, "out_features")?)
        };
        i.write(layer.in_features());
        o.write(layer.out_features());
        Ok(())
    }
}

/// Releases a layer. NULL is accepted and does nothing; a handle must not be freed twice.
///
/// # Safety
/// `layer` must be NULL or a live handle from this library, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_qlinear_free(layer: *mut greenai_qlinear) {
    if layer.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(layer) });
    });
}
