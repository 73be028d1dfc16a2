//! C ABI: GPTQ weight quantization (`crate::quant::gptq_quantize`) and its streaming Hessian
//! accumulator (`crate::quant::HessianAccumulator`).

use super::boundary::{out_ptr, read_options, slice_in, slice_out, FfiError};
use super::status::greenai_status;
use crate::error::{check_len, checked_product, Error};
use crate::quant::{gptq_quantize, GptqOptions, HessianAccumulator};

/// GPTQ's options (AutoGPTQ's); `greenai_gptq_options_default` fills AutoGPTQ's defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_gptq_options {
    /// Bits per weight, 2 to 8.
    pub bits: u32,
    /// Columns per group; 0 is one group per row. A size not dividing `cols` leaves a shorter last group.
    pub group_size: u32,
    /// Symmetric grid (zero = 2^(bits-1)) or asymmetric min-max.
    pub symmetric: bool,
    /// Quantize columns by descending diag(H).
    pub act_order: bool,
    /// With groups: parameters found up front on contiguous columns, so `g_idx[c] = c / group_size`.
    pub static_groups: bool,
    /// Damping as a fraction of mean(diag H), finite and >= 0 (default 0.01).
    pub damp: f32,
    /// Columns per lazy-batch block, >= 1 (default 128).
    pub block_size: u32,
}

/// The same layout with the flags as bytes (see `read_options`); nonzero means true.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawOptions {
    bits: u32,
    group_size: u32,
    symmetric: u8,
    act_order: u8,
    static_groups: u8,
    damp: f32,
    block_size: u32,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RawOptions>() == size_of::<greenai_gptq_options>());
    assert!(align_of::<RawOptions>() == align_of::<greenai_gptq_options>());
    assert!(offset_of!(RawOptions, symmetric) == offset_of!(greenai_gptq_options, symmetric));
    assert!(offset_of!(RawOptions, act_order) == offset_of!(greenai_gptq_options, act_order));
    assert!(offset_of!(RawOptions, static_groups) == offset_of!(greenai_gptq_options, static_groups));
    assert!(offset_of!(RawOptions, damp) == offset_of!(greenai_gptq_options, damp));
    assert!(offset_of!(RawOptions, block_size) == offset_of!(greenai_gptq_options, block_size));
};

impl From<GptqOptions> for greenai_gptq_options {
    fn from(o: GptqOptions) -> Self {
        greenai_gptq_options {
            bits: o.bits,
            group_size: o.group_size as u32,
            symmetric: o.symmetric,
            act_order: o.act_order,
            static_groups: o.static_groups,
            damp: o.damp,
            block_size: o.block_size as u32,
        }
    }
}

/// Writes AutoGPTQ's defaults (4 bits, group 128, asymmetric, no act order, no static groups, damp
/// 0.01, block 128) into `*options`; NULL is ignored.
///
/// # Safety
/// `options`, when non-NULL, must be valid for writing one `greenai_gptq_options`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gptq_options_default(options: *mut greenai_gptq_options) {
    if !options.is_null() && options.is_aligned() {
        // SAFETY: non-NULL and aligned; the caller guarantees it is writable.
        unsafe { options.write(GptqOptions::default().into()) };
    }
}

/// Quantizes `w` (`rows x cols` row-major, rows = output channels) with GPTQ given the Hessian of its
/// inputs (`cols x cols` row-major, `2/N sum x x^T`, e.g. from `greenai_gptq_hessian_finish`). Writes
/// `q` (`rows x cols`, each in 0 .. 2^bits - 1), `scales` and `zeros` (`rows x groups`, groups =
/// ceil(cols / group_size), 1 when group_size is 0) and `g_idx` (`cols`), so that
/// `w[r, c] ~ scales[r, g] * (q[r, c] - zeros[r, g])` with `g = g_idx[c]`. Errors (nothing written):
/// NaN/inf in `w` or `hessian`, invalid options, a Hessian not positive definite after damping.
///
/// # Safety
/// `w` and `q` must hold `rows * cols` elements, `hessian` `cols * cols`, `scales` and `zeros`
/// `rows * groups`, `g_idx` `cols`; `options` must point to a `greenai_gptq_options`.
#[no_mangle]
pub unsafe extern "C" fn greenai_gptq_quantize(
    w: *const f32,
    rows: usize,
    cols: usize,
    hessian: *const f32,
    options: *const greenai_gptq_options,
    q: *mut u8,
    scales: *mut f32,
    zeros: *mut f32,
    g_idx: *mut i32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees `options` points to a `greenai_gptq_options`.
        let raw: RawOptions = unsafe { read_options(options, "options")? };
        let opts = GptqOptions {
            bits: raw.bits,
            group_size: raw.group_size as usize,
            symmetric: raw.symmetric != 0,
            act_order: raw.act_order != 0,
            static_groups: raw.static_groups != 0,
            damp: raw.damp,
            block_size: raw.block_size as usize,
        };
        let len = checked_product("w", &[rows, cols])?;
        let hlen = checked_product("hessian", &[cols, cols])?;
        let groups = if opts.group_size == 0 { 1 } else { cols.div_ceil(opts.group_size) };
        let glen = checked_product("scales", &[rows, groups])?;
        // SAFETY: the caller guarantees the buffers as documented.
        let (w, h, q_out, s_out, z_out, g_out) = unsafe {
            (
                slice_in(w, len, "w")?,
                slice_in(hessian, hlen, "hessian")?,
                slice_out(q, len, "q")?,
                slice_out(scales, glen, "scales")?,
                slice_out(zeros, glen, "zeros")?,
                slice_out(g_idx, cols, "g_idx")?,
            )
        };
        let out = gptq_quantize(w, rows, cols, h, &opts)?;
        q_out.copy_from_slice(&out.q);
        s_out.copy_from_slice(&out.scales);
        z_out.copy_from_slice(&out.zeros);
        g_out.copy_from_slice(&out.g_idx);
        Ok(())
    }
}

/// A streaming GPTQ Hessian accumulator (f64 sums); made by `greenai_gptq_hessian_new`, released by
/// `greenai_gptq_hessian_free`. One handle per thread; merge them at the end.
pub struct greenai_gptq_hessian {
    acc: HessianAccumulator,
}

/// Creates an empty accumulator for inputs of `cols` channels.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_gptq_hessian_new(
    cols: usize,
    out: *mut *mut greenai_gptq_hessian,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees `out` is writable.
        let out = unsafe { out_ptr(out, "out")? };
        let acc = HessianAccumulator::new(cols)?;
        out.write(Box::into_raw(Box::new(greenai_gptq_hessian { acc })));
        Ok(())
    }
}

/// Adds `samples` input vectors `x` (`samples x cols` row-major); a refused batch adds nothing.
///
/// # Safety
/// `acc` must be a live handle not used elsewhere during the call; `x` must hold `samples * cols` floats.
#[no_mangle]
pub unsafe extern "C" fn greenai_gptq_hessian_add(
    acc: *mut greenai_gptq_hessian,
    x: *const f32,
    samples: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees a non-NULL acc is a live, unaliased handle.
        let acc = &mut unsafe { acc.as_mut() }.ok_or(FfiError::Null("acc"))?.acc;
        let len = checked_product("x", &[samples, acc.cols()])?;
        // SAFETY: the caller guarantees x holds samples * cols floats.
        let x = unsafe { slice_in(x, len, "x")? };
        acc.add(x, samples)?;
        Ok(())
    }
}

/// Adds the sums of `other` (same `cols`, a different handle; left unchanged) into `acc`.
///
/// # Safety
/// Both must be live handles, `acc` not used elsewhere during the call.
#[no_mangle]
pub unsafe extern "C" fn greenai_gptq_hessian_merge(
    acc: *mut greenai_gptq_hessian,
    other: *const greenai_gptq_hessian,
) -> greenai_status {
    ffi_boundary! {
        if std::ptr::eq(acc.cast_const(), other) && !acc.is_null() {
            return Err(Error::invalid("other", "acc", "cannot merge an accumulator into itself").into());
        }
        // SAFETY: the caller guarantees live handles; they are distinct (checked above).
        let (acc, other) = unsafe {
            (acc.as_mut().ok_or(FfiError::Null("acc"))?, other.as_ref().ok_or(FfiError::Null("other"))?)
        };
        acc.acc.merge(&other.acc)?;
        Ok(())
    }
}

/// Writes the Hessian `2/N sum x x^T` (`cols x cols` row-major f32) into `hessian`, which must hold
/// `hessian_len >= cols * cols` floats; an error when no sample was added. The accumulator stays usable.
///
/// # Safety
/// `acc` must be a live handle; `hessian` must hold `hessian_len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn greenai_gptq_hessian_finish(
    acc: *const greenai_gptq_hessian,
    hessian: *mut f32,
    hessian_len: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees a live handle and the buffer as documented.
        let (acc, out) = unsafe {
            (&acc.as_ref().ok_or(FfiError::Null("acc"))?.acc, slice_out(hessian, hessian_len, "hessian")?)
        };
        let h = acc.finish()?;
        check_len("hessian", out.len(), h.len())?;
        out[..h.len()].copy_from_slice(&h);
        Ok(())
    }
}

/// Releases an accumulator; NULL is ignored.
///
/// # Safety
/// `acc` must be NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_gptq_hessian_free(acc: *mut greenai_gptq_hessian) {
    if !acc.is_null() {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, released once.
        drop(unsafe { Box::from_raw(acc) });
    }
}
