//! C ABI: knowledge-distillation losses and their gradients (`crate::distill`).
//!
//! Every function validates all of its input before writing anything: on failure `*loss` and
//! `grad` are left untouched. `grad` may be NULL when only the loss is wanted. Finite input can
//! still give a non-finite result (a temperature of 1e-45 divides logits into infinities; logits of
//! 3e38 overflow their differences): then the status is `GREENAI_ERR_NON_FINITE` and nothing is
//! written, which is why the gradient is computed into a scratch buffer first.

use super::boundary::{out_ptr, slice_in, slice_out, OutPtr};
use super::status::greenai_status;
use super::FfiResult;
use crate::distill::{self, KdParams, Reduction};
use crate::error::checked_product;
use crate::kernels::math::check_finite;

/// Borrows the optional gradient output: NULL means "not wanted".
///
/// # Safety
/// `grad`, when non-NULL, must be valid for writing `len` floats.
unsafe fn grad_out<'a>(grad: *mut f32, len: usize) -> FfiResult<Option<&'a mut [f32]>> {
    if grad.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and the caller guarantees len writable floats.
    Ok(Some(unsafe { slice_out(grad, len, "grad")? }))
}

/// Runs `compute` with a scratch gradient (when `grad` is wanted) and writes the loss and the
/// gradient only when every value is finite.
fn deliver(
    loss: OutPtr<f32>,
    grad: Option<&mut [f32]>,
    compute: impl FnOnce(Option<&mut [f32]>) -> crate::Result<f32>,
) -> FfiResult<()> {
    let mut scratch = grad.as_ref().map(|g| crate::error::try_vec(g.len(), 0f32)).transpose()?;
    let value = compute(scratch.as_deref_mut())?;
    check_finite("loss", &[value])?;
    if let (Some(g), Some(s)) = (grad, scratch) {
        check_finite("gradient", &s)?;
        g.copy_from_slice(&s);
    }
    loss.write(value);
    Ok(())
}

/// Borrows the labels: required (non-NULL unless there are no rows) when `alpha < 1`, ignored otherwise.
///
/// # Safety
/// `labels`, when read, must point to `rows` readable `int32_t`.
unsafe fn labels_in<'a>(labels: *const i32, rows: usize, params: &KdParams) -> FfiResult<Option<&'a [i32]>> {
    if !params.uses_labels() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees rows readable labels.
    Ok(Some(unsafe { slice_in(labels, rows, "labels")? }))
}

/// Hinton KD loss, batch mean: `alpha*T^2*KL(softmax(t/T) || softmax(s/T)) + (1-alpha)*CE(s, labels)`
/// over `batch x classes` row-major logits. Writes the loss to `*loss` and, when `grad` is not
/// NULL, `d loss / d student` (`batch x classes`) to `grad`. `labels` (`batch` class indices) may
/// be NULL only when `alpha == 1`. Errors: `temperature` not positive and finite, `alpha` outside
/// [0, 1], a label out of range, a non-finite logit; nothing is written then.
///
/// # Safety
/// `student` and `teacher` must point to `batch*classes` readable floats, `labels` (unless NULL)
/// to `batch` readable `int32_t`, `grad` (unless NULL) to `batch*classes` writable floats not
/// overlapping the inputs, and `loss` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_kd_loss(
    student: *const f32,
    teacher: *const f32,
    labels: *const i32,
    batch: usize,
    classes: usize,
    temperature: f32,
    alpha: f32,
    loss: *mut f32,
    grad: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let params = KdParams::new(temperature, alpha);
        params.validate()?;
        let n = checked_product("kd logits", &[batch, classes])?;
        // SAFETY: the caller guarantees the pointers as documented.
        let (s, t, labels, out, grad) = unsafe {
            (
                slice_in(student, n, "student")?,
                slice_in(teacher, n, "teacher")?,
                labels_in(labels, batch, &params)?,
                out_ptr(loss, "loss")?,
                grad_out(grad, n)?,
            )
        };
        deliver(out, grad, |g| distill::kd_loss(s, t, labels, batch, classes, &params, g))
    }
}

/// Hinton KD loss over `batch x seq x classes` logits, the mean over kept tokens: `labels` are
/// `batch x seq` (NULL allowed only when `alpha == 1`), `mask` is `batch x seq` (nonzero keeps
/// the token; NULL keeps all). Masked tokens get a zero gradient and their labels are not read;
/// with no kept token the loss and gradient are 0. Otherwise as `greenai_kd_loss`.
///
/// # Safety
/// As `greenai_kd_loss` with `batch*seq` rows; `mask` (unless NULL) must point to `batch*seq` bytes.
#[no_mangle]
pub unsafe extern "C" fn greenai_kd_loss_seq(
    student: *const f32,
    teacher: *const f32,
    labels: *const i32,
    mask: *const u8,
    batch: usize,
    seq: usize,
    classes: usize,
    temperature: f32,
    alpha: f32,
    loss: *mut f32,
    grad: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let params = KdParams::new(temperature, alpha);
        params.validate()?;
        let rows = checked_product("kd tokens", &[batch, seq])?;
        let n = checked_product("kd logits", &[batch, seq, classes])?;
        // SAFETY: the caller guarantees the pointers as documented.
        let (s, t, labels, out, grad) = unsafe {
            (
                slice_in(student, n, "student")?,
                slice_in(teacher, n, "teacher")?,
                labels_in(labels, rows, &params)?,
                out_ptr(loss, "loss")?,
                grad_out(grad, n)?,
            )
        };
        // SAFETY: the caller guarantees mask, when non-NULL, holds batch*seq bytes.
        let mask = if mask.is_null() { None } else { Some(unsafe { slice_in(mask, rows, "mask")? }) };
        deliver(out, grad, |g| distill::kd_loss_seq(s, t, labels, mask, batch, seq, classes, &params, g))
    }
}

/// FitNets hint loss: the mean over `n` elements of `(student - teacher)^2`; `grad` (unless NULL)
/// receives `d loss / d student`. Non-finite input is an error; nothing is written then.
///
/// # Safety
/// `student` and `teacher` must point to `n` readable floats, `grad` (unless NULL) to `n`
/// writable floats, and `loss` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_mse_loss(
    student: *const f32,
    teacher: *const f32,
    n: usize,
    loss: *mut f32,
    grad: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (s, t, out, grad) = unsafe {
            (slice_in(student, n, "student")?, slice_in(teacher, n, "teacher")?, out_ptr(loss, "loss")?, grad_out(grad, n)?)
        };
        deliver(out, grad, |g| distill::mse_loss(s, t, Reduction::Mean, g))
    }
}

/// Cosine embedding loss with target 1 (DistilBERT), batch mean: per row of `batch x dim`,
/// `1 - s.t / sqrt((|s|^2 + 1e-12)(|t|^2 + 1e-12))`; `grad` (unless NULL) receives
/// `d loss / d student`. Non-finite input is an error; nothing is written then.
///
/// # Safety
/// `student` and `teacher` must point to `batch*dim` readable floats, `grad` (unless NULL) to
/// `batch*dim` writable floats, and `loss` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_cosine_embedding_loss(
    student: *const f32,
    teacher: *const f32,
    batch: usize,
    dim: usize,
    loss: *mut f32,
    grad: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let n = checked_product("cosine inputs", &[batch, dim])?;
        // SAFETY: the caller guarantees the pointers as documented.
        let (s, t, out, grad) = unsafe {
            (slice_in(student, n, "student")?, slice_in(teacher, n, "teacher")?, out_ptr(loss, "loss")?, grad_out(grad, n)?)
        };
        deliver(out, grad, |g| distill::cosine_embedding_loss(s, t, batch, dim, Reduction::Mean, g))
    }
}

/// Attention transfer (Zagoruyko & Komodakis), batch mean: per sample, the squared distance
/// between the L2-normalised maps `mean over channels of x^2` of the student
/// (`batch x student_channels x spatial`) and the teacher (`batch x teacher_channels x spatial`);
/// `grad` (unless NULL) receives `d loss / d student`. Errors leave the outputs untouched.
///
/// # Safety
/// `student` must point to `batch*student_channels*spatial` readable floats, `teacher` to
/// `batch*teacher_channels*spatial`, `grad` (unless NULL) to as many writable floats as
/// `student`, and `loss` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_attention_transfer_loss(
    student: *const f32,
    teacher: *const f32,
    batch: usize,
    student_channels: usize,
    teacher_channels: usize,
    spatial: usize,
    loss: *mut f32,
    grad: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let ns = checked_product("attention student", &[batch, student_channels, spatial])?;
        let nt = checked_product("attention teacher", &[batch, teacher_channels, spatial])?;
        // SAFETY: the caller guarantees the pointers as documented.
        let (s, t, out, grad) = unsafe {
            (slice_in(student, ns, "student")?, slice_in(teacher, nt, "teacher")?, out_ptr(loss, "loss")?, grad_out(grad, ns)?)
        };
        deliver(out, grad, |g| {
            distill::attention_transfer_loss(s, t, batch, student_channels, teacher_channels, spatial, Reduction::Mean, g)
        })
    }
}
