//! C ABI: pruning masks (one byte per weight, 1 keeps, 0 prunes).

use super::boundary::{slice_in, slice_out};
use super::status::greenai_status;
use crate::prune::{self, CountRule, Norm};
use crate::tensor::numel;

/// Unstructured magnitude pruning of `w[n]`: prunes the `round_half_even(sparsity * n)` smallest
/// |w| (ties: lower index first) and writes `mask[n]` (1 keeps, 0 prunes).
/// `sparsity` must be in [0, 1]; NaN weights are refused; `mask` is written only on success.
///
/// # Safety
/// `w` and `mask` must point to `n` readable / writable elements (or be NULL when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn greenai_prune_magnitude(
    w: *const f32,
    n: usize,
    sparsity: f32,
    mask: *mut u8,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees both buffers hold n elements.
        let (w, out) = unsafe { (slice_in(w, n, "w")?, slice_out(mask, n, "mask")?) };
        let m = prune::magnitude(w, f64::from(sparsity), CountRule::TORCH, None)?;
        m.write_bytes(out)?;
        Ok(())
    }
}

/// N:M pruning of a row-major `rows x cols` weight: in each group of `group_m` consecutive
/// weights of a row, keeps the `keep_n` largest |w| (ties: lower index pruned first), writing
/// `mask[rows * cols]`. `cols` must be divisible by `group_m`, `keep_n <= group_m`, `group_m >= 1`.
///
/// # Safety
/// `w` and `mask` must point to `rows * cols` readable / writable elements.
#[no_mangle]
pub unsafe extern "C" fn greenai_prune_n_m(
    w: *const f32,
    rows: usize,
    cols: usize,
    keep_n: usize,
    group_m: usize,
    mask: *mut u8,
) -> greenai_status {
    ffi_boundary! {
        let len = numel(&[rows, cols])?;
        // SAFETY: the caller guarantees both buffers hold rows * cols elements.
        let (w, out) = unsafe { (slice_in(w, len, "w")?, slice_out(mask, len, "mask")?) };
        let m = prune::n_m(w, &[rows, cols], keep_n, group_m, false)?;
        m.write_bytes(out)?;
        Ok(())
    }
}

/// Ln-structured pruning (torch's `ln_structured`) of a row-major weight of `shape[ndim]`: removes
/// the `round_half_even(amount * shape[dim])` channels along `dim` with the smallest norm over
/// the other dims (`p` = 1, 2 or INFINITY), writing `mask[numel]` (1 keeps, 0 prunes).
///
/// # Safety
/// `shape` must hold `ndim` values; `w` and `mask` the product of `shape` elements.
#[no_mangle]
pub unsafe extern "C" fn greenai_prune_ln_structured(
    w: *const f32,
    shape: *const usize,
    ndim: usize,
    dim: usize,
    p: f32,
    amount: f32,
    mask: *mut u8,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees shape holds ndim values.
        let shape = unsafe { slice_in(shape, ndim, "shape")? };
        let len = numel(shape)?;
        // SAFETY: the caller guarantees both buffers hold numel(shape) elements.
        let (w, out) = unsafe { (slice_in(w, len, "w")?, slice_out(mask, len, "mask")?) };
        let norm = Norm::from_p(f64::from(p))?;
        let m = prune::ln_structured(w, shape, dim, norm, f64::from(amount), CountRule::TORCH, None)?;
        m.write_bytes(out)?;
        Ok(())
    }
}
