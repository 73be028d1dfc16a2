//! C ABI: AWQ (`crate::quant::awq_quantize`), HQQ (`crate::quant::hqq_quantize`) and SmoothQuant
//! (`crate::quant::smoothquant`).

use super::boundary::{read_options, slice_in, slice_out};
use super::status::greenai_status;
use crate::error::checked_product;
use crate::quant::smoothquant::{channel_absmax, smooth_norm, smooth_weight, smoothquant_scales};
use crate::quant::{awq_quantize, hqq_quantize, AwqOptions, GptqWeight, HqqOptions};

/// AWQ's options; `greenai_awq_options_default` fills AutoAWQ's defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_awq_options {
    /// Bits per weight, 2 to 8.
    pub bits: u32,
    /// Consecutive input channels per group; 0 is one group per row; a shorter last group when it does not divide.
    pub group_size: u32,
    /// Asymmetric min-max grid with a zero point, or symmetric (zero = 2^(bits-1)).
    pub zero_point: bool,
    /// AutoAWQ's duo scaling `s_x^a / s_w^(1-a)`, or llm-awq's `s_x^a`.
    pub duo_scaling: bool,
    /// Run the clipping search.
    pub clip: bool,
    /// Grid points of both searches, >= 1 (default 20).
    pub n_grid: u32,
    /// Largest share of the range the clipping search cuts, in [0, 1) (default 0.5).
    pub max_shrink: f32,
    /// Tokens the clipping search uses, >= 1 (default 512).
    pub clip_samples: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawAwqOptions {
    bits: u32,
    group_size: u32,
    zero_point: u8,
    duo_scaling: u8,
    clip: u8,
    n_grid: u32,
    max_shrink: f32,
    clip_samples: u32,
}

/// HQQ's options; `greenai_hqq_options_default` fills HQQ's published 4-bit defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_hqq_options {
    /// Bits per weight, 2 to 8.
    pub bits: u32,
    /// Consecutive input channels per group (default 64); 0 is one group per row.
    pub group_size: u32,
    /// The p of the lp norm minimised, in (0, 1] (default 0.7).
    pub lp_norm: f32,
    /// The penalty's start, > 0 (default 10).
    pub beta: f32,
    /// The penalty's growth per iteration, >= 1 (default 1.01).
    pub kappa: f32,
    /// Solver iterations (default 20); 0 is HQQ's round-to-nearest.
    pub iters: u32,
    /// Stop when the mean absolute weight error stops falling (default true).
    pub early_stop: bool,
    /// Round the starting zero point (HQQ does for 4 bits; default true).
    pub round_zero: bool,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawHqqOptions {
    bits: u32,
    group_size: u32,
    lp_norm: f32,
    beta: f32,
    kappa: f32,
    iters: u32,
    early_stop: u8,
    round_zero: u8,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RawAwqOptions>() == size_of::<greenai_awq_options>());
    assert!(align_of::<RawAwqOptions>() == align_of::<greenai_awq_options>());
    assert!(offset_of!(RawAwqOptions, zero_point) == offset_of!(greenai_awq_options, zero_point));
    assert!(offset_of!(RawAwqOptions, duo_scaling) == offset_of!(greenai_awq_options, duo_scaling));
    assert!(offset_of!(RawAwqOptions, clip) == offset_of!(greenai_awq_options, clip));
    assert!(offset_of!(RawAwqOptions, n_grid) == offset_of!(greenai_awq_options, n_grid));
    assert!(offset_of!(RawAwqOptions, max_shrink) == offset_of!(greenai_awq_options, max_shrink));
    assert!(offset_of!(RawAwqOptions, clip_samples) == offset_of!(greenai_awq_options, clip_samples));
    assert!(size_of::<RawHqqOptions>() == size_of::<greenai_hqq_options>());
    assert!(align_of::<RawHqqOptions>() == align_of::<greenai_hqq_options>());
    assert!(offset_of!(RawHqqOptions, iters) == offset_of!(greenai_hqq_options, iters));
    assert!(offset_of!(RawHqqOptions, early_stop) == offset_of!(greenai_hqq_options, early_stop));
    assert!(offset_of!(RawHqqOptions, round_zero) == offset_of!(greenai_hqq_options, round_zero));
};

/// Writes AutoAWQ's defaults (4 bits, group 128, zero point, duo scaling, clipping, grid 20, shrink
/// 0.5, 512 clip tokens) into `*options`; NULL is ignored.
///
/// # Safety
/// `options`, when non-NULL, must be valid for writing one `greenai_awq_options`.
#[no_mangle]
pub unsafe extern "C" fn greenai_awq_options_default(options: *mut greenai_awq_options) {
    let d = AwqOptions::default();
    if !options.is_null() && options.is_aligned() {
        let value = greenai_awq_options {
            bits: d.bits,
            group_size: d.group_size as u32,
            zero_point: d.zero_point,
            duo_scaling: d.duo_scaling,
            clip: d.clip,
            n_grid: d.n_grid,
            max_shrink: d.max_shrink,
            clip_samples: d.clip_samples as u32,
        };
        // SAFETY: non-NULL and aligned; the caller guarantees it is writable.
        unsafe { options.write(value) };
    }
}

/// Writes HQQ's published defaults (4 bits, group 64, lp 0.7, beta 10, kappa 1.01, 20 iterations,
/// early stop, rounded starting zero) into `*options`; NULL is ignored.
///
/// # Safety
/// `options`, when non-NULL, must be valid for writing one `greenai_hqq_options`.
#[no_mangle]
pub unsafe extern "C" fn greenai_hqq_options_default(options: *mut greenai_hqq_options) {
    let d = HqqOptions::default();
    if !options.is_null() && options.is_aligned() {
        let value = greenai_hqq_options {
            bits: d.bits,
            group_size: d.group_size as u32,
            lp_norm: d.lp_norm,
            beta: d.beta,
            kappa: d.kappa,
            iters: d.iters,
            early_stop: d.early_stop,
            round_zero: d.round_zero,
        };
        // SAFETY: non-NULL and aligned; the caller guarantees it is writable.
        unsafe { options.write(value) };
    }
}

/// The buffers of a group-wise quantized weight: `q` (`rows x cols`), `scales` and `zeros` (`rows x
/// groups`), checked and borrowed.
struct GroupOut<'a> {
    q: &'a mut [u8],
    scales: &'a mut [f32],
    zeros: &'a mut [f32],
}

impl GroupOut<'_> {
    /// # Safety
    /// `q` must hold `rows * cols` writable bytes, `scales` and `zeros` `rows * groups` floats.
    unsafe fn new<'a>(
        rows: usize,
        cols: usize,
        group_size: u32,
        q: *mut u8,
        scales: *mut f32,
        zeros: *mut f32,
    ) -> super::FfiResult<GroupOut<'a>> {
        let groups = if group_size == 0 { 1 } else { cols.div_ceil(group_size as usize) };
        let len = checked_product("q", &[rows, cols])?;
        let glen = checked_product("scales", &[rows, groups])?;
        // SAFETY: the caller guarantees the buffers as documented.
        unsafe {
            Ok(GroupOut {
                q: slice_out(q, len, "q")?,
                scales: slice_out(scales, glen, "scales")?,
                zeros: slice_out(zeros, glen, "zeros")?,
            })
        }
    }

    fn write(self, w: &GptqWeight) {
        self.q.copy_from_slice(&w.q);
        self.scales.copy_from_slice(&w.scales);
        self.zeros.copy_from_slice(&w.zeros);
    }
}

/// Quantizes the linear layer `w` (`rows x cols` row-major, rows = output channels) with AWQ given
/// `samples` calibration inputs `x` (`samples x cols` row-major). Writes `smooth_scales` (`cols`: divide
/// the layer's inputs by them, i.e. fold them into the previous layer), the quantized scaled weight
/// `q` (`rows x cols`, in 0 .. 2^bits - 1), `scales` and `zeros` (`rows x groups`, groups =
/// ceil(cols / group_size), 1 when group_size is 0; group g holds columns g*group_size ..) so that
/// `w[r, c] * smooth_scales[c] ~ scales[r, g] * (q[r, c] - zeros[r, g])`, and `alpha` (the search's
/// winner; may be NULL). Errors (nothing written): NaN/inf, no samples, invalid options.
///
/// # Safety
/// `w` and `q` must hold `rows * cols` elements, `x` `samples * cols`, `smooth_scales` `cols`,
/// `scales` and `zeros` `rows * groups`; `options` must point to a `greenai_awq_options`; `alpha` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_awq_quantize(
    w: *const f32,
    rows: usize,
    cols: usize,
    x: *const f32,
    samples: usize,
    options: *const greenai_awq_options,
    smooth_scales: *mut f32,
    q: *mut u8,
    scales: *mut f32,
    zeros: *mut f32,
    alpha: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees `options` points to a `greenai_awq_options`.
        let raw: RawAwqOptions = unsafe { read_options(options, "options")? };
        let opts = AwqOptions {
            bits: raw.bits,
            group_size: raw.group_size as usize,
            zero_point: raw.zero_point != 0,
            duo_scaling: raw.duo_scaling != 0,
            clip: raw.clip != 0,
            n_grid: raw.n_grid,
            max_shrink: raw.max_shrink,
            clip_samples: raw.clip_samples as usize,
        };
        let len = checked_product("w", &[rows, cols])?;
        let xlen = checked_product("x", &[samples, cols])?;
        if !alpha.is_null() && !alpha.is_aligned() {
            return Err(crate::Error::invalid("alpha", format!("{alpha:p}"), "pointer not aligned").into());
        }
        // SAFETY: the caller guarantees the buffers as documented.
        let (w, x, s_out, out) = unsafe {
            (
                slice_in(w, len, "w")?,
                slice_in(x, xlen, "x")?,
                slice_out(smooth_scales, cols, "smooth_scales")?,
                GroupOut::new(rows, cols, raw.group_size, q, scales, zeros)?,
            )
        };
        let result = awq_quantize(w, rows, cols, x, samples, &opts)?;
        s_out.copy_from_slice(&result.scales);
        out.write(&result.weight);
        if !alpha.is_null() {
            // SAFETY: non-NULL and aligned (checked above); the caller guarantees it is writable.
            unsafe { alpha.write(result.alpha) };
        }
        Ok(())
    }
}

/// Quantizes `w` (`rows x cols` row-major) with HQQ (calibration-free). Writes `q` (`rows x cols`, in
/// 0 .. 2^bits - 1), `scales` and `zeros` (`rows x groups`, contiguous groups as in
/// `greenai_awq_quantize`; zeros are real-valued) so that `w[r, c] ~ scales[r, g] * (q[r, c] -
/// zeros[r, g])`. Errors (nothing written): NaN/inf, invalid options.
///
/// # Safety
/// `w` and `q` must hold `rows * cols` elements, `scales` and `zeros` `rows * groups`; `options` must
/// point to a `greenai_hqq_options`.
#[no_mangle]
pub unsafe extern "C" fn greenai_hqq_quantize(
    w: *const f32,
    rows: usize,
    cols: usize,
    options: *const greenai_hqq_options,
    q: *mut u8,
    scales: *mut f32,
    zeros: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees `options` points to a `greenai_hqq_options`.
        let raw: RawHqqOptions = unsafe { read_options(options, "options")? };
        let opts = HqqOptions {
            bits: raw.bits,
            group_size: raw.group_size as usize,
            lp_norm: raw.lp_norm,
            beta: raw.beta,
            kappa: raw.kappa,
            iters: raw.iters,
            early_stop: raw.early_stop != 0,
            round_zero: raw.round_zero != 0,
        };
        let len = checked_product("w", &[rows, cols])?;
        // SAFETY: the caller guarantees the buffers as documented.
        let (w, out) = unsafe { (slice_in(w, len, "w")?, GroupOut::new(rows, cols, raw.group_size, q, scales, zeros)?) };
        out.write(&hqq_quantize(w, rows, cols, &opts)?);
        Ok(())
    }
}

/// Writes the per-channel maximum of `|x|` (`x`: `samples x cols` row-major) into `absmax` (`cols`):
/// SmoothQuant's activation statistic. Errors: NaN/inf in `x`.
///
/// # Safety
/// `x` must hold `samples * cols` floats, `absmax` `cols`.
#[no_mangle]
pub unsafe extern "C" fn greenai_channel_absmax(
    x: *const f32,
    samples: usize,
    cols: usize,
    absmax: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let len = checked_product("x", &[samples, cols])?;
        // SAFETY: the caller guarantees the buffers as documented.
        let (x, out) = unsafe { (slice_in(x, len, "x")?, slice_out(absmax, cols, "absmax")?) };
        out.copy_from_slice(&channel_absmax(x, samples, cols)?);
        Ok(())
    }
}

/// SmoothQuant's migration scales `s_j = max(act_absmax_j^alpha / max(max_r |w_rj|, 1e-5)^(1-alpha),
/// 1e-5)` for `w` (`rows x cols`; stack the rows of every layer reading the same activations) into
/// `scales` (`cols`). `alpha` in [0, 1] (0.5 is SmoothQuant's default). Errors: NaN/inf, negative
/// maxima, alpha out of range.
///
/// # Safety
/// `act_absmax` and `scales` must hold `cols` floats, `w` `rows * cols`.
#[no_mangle]
pub unsafe extern "C" fn greenai_smoothquant_scales(
    act_absmax: *const f32,
    w: *const f32,
    rows: usize,
    cols: usize,
    alpha: f32,
    scales: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let len = checked_product("w", &[rows, cols])?;
        // SAFETY: the caller guarantees the buffers as documented.
        let (act, w, out) = unsafe {
            (slice_in(act_absmax, cols, "act_absmax")?, slice_in(w, len, "w")?, slice_out(scales, cols, "scales")?)
        };
        out.copy_from_slice(&smoothquant_scales(act, w, rows, cols, alpha)?);
        Ok(())
    }
}

/// Applies SmoothQuant's scales in place: the columns of `w` (`rows x cols`) multiplied by `scales`
/// (`cols`, each finite and > 0), and the previous norm's `norm_weight` and `norm_bias` (`cols` each;
/// either may be NULL when absent) divided by them. On error nothing is changed.
///
/// # Safety
/// `w` must hold `rows * cols` floats, `scales` `cols`, a non-NULL `norm_weight` / `norm_bias` `cols`;
/// none may overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_smoothquant_apply(
    w: *mut f32,
    rows: usize,
    cols: usize,
    norm_weight: *mut f32,
    norm_bias: *mut f32,
    scales: *const f32,
) -> greenai_status {
    ffi_boundary! {
        let len = checked_product("w", &[rows, cols])?;
        let optional = |p: *mut f32, name| {
            // SAFETY: the caller guarantees a non-NULL pointer holds `cols` floats.
            if p.is_null() { Ok(None) } else { unsafe { slice_out(p, cols, name) }.map(Some) }
        };
        // SAFETY: the caller guarantees the buffers as documented.
        let (w, scales) = unsafe { (slice_out(w, len, "w")?, slice_in(scales, cols, "scales")?) };
        let (norm_w, norm_b) = (optional(norm_weight, "norm_weight")?, optional(norm_bias, "norm_bias")?);
        // The norm is smoothed on copies first, so a refused norm leaves `w` untouched too.
        let mut nw = norm_w.as_deref().map(<[f32]>::to_vec);
        let mut nb = norm_b.as_deref().map(<[f32]>::to_vec);
        if let Some(g) = nw.as_mut() {
            smooth_norm(g, nb.as_deref_mut(), scales)?;
        } else if let Some(b) = nb.as_mut() {
            smooth_norm(b, None, scales)?;
        }
        smooth_weight(w, rows, cols, scales)?;
        if let (Some(dst), Some(src)) = (norm_w, nw) {
            dst.copy_from_slice(&src);
        }
        if let (Some(dst), Some(src)) = (norm_b, nb) {
            dst.copy_from_slice(&src);
        }
        Ok(())
    }
}
