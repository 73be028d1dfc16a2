//! C ABI of compressed models: open a greenai, compressed-tensors or GGUF model (file or folder),
//! list its tensors, read each as f32, as a ready int8 layer, or as its ggml blocks
//! (`CompressedModel` in Rust).

use super::boundary::{c_string, out_ptr, slice_in, slice_out, str_in, FfiError, FfiResult};
use super::gemm_int8::greenai_qlinear;
use super::status::greenai_status;
use crate::error::check_len;
use crate::model::{CompressedModel, LogicalSummary};
use crate::Error;
use std::ffi::{c_char, c_void, CString};

/// Most dimensions `greenai_model_tensor_info` reports.
pub const GREENAI_MODEL_MAX_DIMS: usize = 8;

/// An open compressed model. Made by `greenai_model_open`, released by `greenai_model_free`; every
/// string it hands out lives as long as it does.
pub struct greenai_model {
    model: CompressedModel,
    format: CString,
    /// Per tensor: name, stored type, scheme.
    strings: Vec<[CString; 3]>,
}

/// One tensor of a `greenai_model`, as `greenai_model_tensor_info` describes it.
#[repr(C)]
pub struct greenai_model_tensor {
    /// Its name as the model names it (NUL-terminated, owned by the model).
    pub name: *const c_char,
    /// How its elements are stored: `int8`, `int4`, `uint4`, `q4_0`, `q4_k`, ..., `f16`, `bf16`,
    /// `f32`, or another safetensors dtype in lower case (owned by the model).
    pub stored: *const c_char,
    /// How the values are coded, e.g. `per-channel symmetric rtn`, `group 128 asymmetric
    /// pack-quantized`, `ggml blocks of 32`, `unchanged` (owned by the model).
    pub scheme: *const c_char,
    /// Number of dimensions (at most `GREENAI_MODEL_MAX_DIMS`).
    pub ndim: usize,
    /// The logical shape, outermost first; entries past `ndim` are 0.
    pub shape: [usize; GREENAI_MODEL_MAX_DIMS],
    /// Number of elements: the length `greenai_model_read_f32` needs.
    pub numel: usize,
    /// Bytes in the file, its scales and other companions included.
    pub stored_bytes: usize,
}

/// # Safety
/// `model`, when non-NULL, must be a live handle from this library.
unsafe fn model_ref<'a>(model: *const greenai_model) -> FfiResult<&'a greenai_model> {
    // SAFETY: the caller guarantees a live handle or NULL.
    unsafe { model.as_ref() }.ok_or(FfiError::Null("model"))
}

/// Opens the model at `path` (UTF-8): a GGUF file, a safetensors file (plain, written by
/// `greenai compress`, or compressed-tensors with its `config.json` beside it) or a Hugging Face
/// model folder (sharded or not). Only headers are read; a corrupt header or index fails with
/// `GREENAI_ERR_FORMAT`, a missing file with `GREENAI_ERR_IO`. Writes `*out`.
///
/// # Safety
/// `path` must be a NUL-terminated string; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_model_open(
    path: *const c_char,
    out: *mut *mut greenai_model,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (path, out) = unsafe { (str_in(path, "path")?.ok_or(FfiError::Null("path"))?, out_ptr(out, "out")?) };
        let model = CompressedModel::open(path)?;
        let strings = model
            .tensors()
            .iter()
            .map(|t: &LogicalSummary| [c_string(&t.name), c_string(&t.dtype), c_string(&t.scheme)])
            .collect();
        let format = c_string(model.format().name());
        out.write(Box::into_raw(Box::new(greenai_model { model, format, strings })));
        Ok(())
    }
}

/// Releases a model. NULL is accepted and does nothing; a handle must not be freed twice.
///
/// # Safety
/// `model` must be NULL or a live handle from this library, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_model_free(model: *mut greenai_model) {
    if model.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(model) });
    });
}

/// Who wrote the model: `greenai`, `compressed-tensors`, `gguf` or `safetensors` (plain). Writes
/// `*format`, a string owned by the model.
///
/// # Safety
/// `model` must be a live handle; `format` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_model_format(
    model: *const greenai_model,
    format: *mut *const c_char,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (model, format) = unsafe { (model_ref(model)?, out_ptr(format, "format")?) };
        format.write(model.format.as_ptr());
        Ok(())
    }
}

/// Number of tensors (a quantized weight and its scales count as one). Writes `*count`.
///
/// # Safety
/// `model` must be a live handle; `count` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_model_tensor_count(
    model: *const greenai_model,
    count: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (model, count) = unsafe { (model_ref(model)?, out_ptr(count, "count")?) };
        count.write(model.model.tensors().len());
        Ok(())
    }
}

/// The index of the tensor called `name`; a name the model lacks fails with
/// `GREENAI_ERR_INVALID_ARGUMENT`. Writes `*index`.
///
/// # Safety
/// `model` must be a live handle, `name` a NUL-terminated string; `index` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_model_find(
    model: *const greenai_model,
    name: *const c_char,
    index: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (model, name, index) = unsafe {
            (model_ref(model)?, str_in(name, "name")?.ok_or(FfiError::Null("name"))?, out_ptr(index, "index")?)
        };
        let found = model.model.find(name).ok_or_else(|| Error::invalid("name", name, "the model has no such tensor"))?;
        index.write(found);
        Ok(())
    }
}

/// Describes tensor `index` (below `greenai_model_tensor_count`). A tensor of more than
/// `GREENAI_MODEL_MAX_DIMS` dimensions fails with `GREENAI_ERR_INVALID_ARGUMENT`. Writes `*info`.
///
/// # Safety
/// `model` must be a live handle; `info` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_model_tensor_info(
    model: *const greenai_model,
    index: usize,
    info: *mut greenai_model_tensor,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (model, info) = unsafe { (model_ref(model)?, out_ptr(info, "info")?) };
        let t = tensor(model, index)?;
        if t.shape.len() > GREENAI_MODEL_MAX_DIMS {
            return Err(Error::invalid(
                "tensor",
                &t.name,
                format!("has {} dimensions, more than GREENAI_MODEL_MAX_DIMS", t.shape.len()),
            )
            .into());
        }
        let mut shape = [0; GREENAI_MODEL_MAX_DIMS];
        shape[..t.shape.len()].copy_from_slice(&t.shape);
        let [name, stored, scheme] = &model.strings[index];
        info.write(greenai_model_tensor {
            name: name.as_ptr(),
            stored: stored.as_ptr(),
            scheme: scheme.as_ptr(),
            ndim: t.shape.len(),
            shape,
            numel: t.params,
            stored_bytes: t.bytes,
        });
        Ok(())
    }
}

fn tensor(model: &greenai_model, index: usize) -> FfiResult<&LogicalSummary> {
    let tensors = model.model.tensors();
    Ok(tensors
        .get(index)
        .ok_or_else(|| Error::invalid("index", index, format!("the model has {} tensors", tensors.len())))?)
}

/// Reads tensor `index` as f32, row-major in its logical shape, dequantized as its format defines
/// it. `len` must be at least its `numel`; only that many floats are written. A corrupt tensor fails with `GREENAI_ERR_FORMAT`; an integer
/// tensor that is not a quantized weight with `GREENAI_ERR_INVALID_ARGUMENT`. Nothing is written on
/// failure.
///
/// # Safety
/// `model` must be a live handle; `out` must point to `len` writable floats (NULL when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn greenai_model_read_f32(
    model: *const greenai_model,
    index: usize,
    out: *mut f32,
    len: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the handle.
        let model = unsafe { model_ref(model)? };
        check_len("len", len, tensor(model, index)?.params)?;
        let values = model.model.read_f32(index)?;
        check_len("len", len, values.len())?;
        // SAFETY: the caller guarantees `out` holds `len` writable floats.
        let out = unsafe { slice_out(out, len, "out")? };
        out[..values.len()].copy_from_slice(&values);
        Ok(())
    }
}

/// Makes an int8 linear layer (`greenai_qlinear`, `y = x W^T + bias`) from tensor `index`, read as
/// stored, without a float round trip: it must be a 2-D weight stored as int8 with one scale per
/// output channel (greenai's per-channel or per-tensor int8, compressed-tensors W8A8); any other
/// tensor fails with `GREENAI_ERR_INVALID_ARGUMENT` saying how it is stored (read it with
/// `greenai_model_read_f32` and use `greenai_qlinear_from_float`). `bias` (`bias_len` floats, the
/// output channels) may be NULL for none. Writes `*out`, to release with `greenai_qlinear_free`.
///
/// # Safety
/// `model` must be a live handle; `bias` must point to `bias_len` floats or be NULL with
/// `bias_len` 0; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_model_read_qlinear(
    model: *const greenai_model,
    index: usize,
    bias: *const f32,
    bias_len: usize,
    out: *mut *mut greenai_qlinear,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (model, bias, out) =
            unsafe { (model_ref(model)?, slice_in(bias, bias_len, "bias")?, out_ptr(out, "out")?) };
        let weights = model.model.read_int8(index)?;
        if !bias.is_empty() {
            check_len("bias_len", bias.len(), weights.out_features)?;
        }
        let layer = weights.to_linear((!bias.is_empty()).then_some(bias))?;
        out.write(Box::into_raw(Box::new(greenai_qlinear { layer })));
        Ok(())
    }
}

/// Copies tensor `index` as the ggml blocks it is stored in (a GGUF tensor of a block type, or a
/// greenai `--quant q4_0`-style tensor) and writes its ggml type (`enum ggml_type`: Q4_0 = 2, ...)
/// to `*type`, for `greenai_ggml_gemv` or `greenai_ggml_dequantize` (rows are the outer dimensions,
/// columns the last). `out_len` must be at least the blocks' size
/// (`rows * greenai_ggml_row_size(type, cols)`); only that many bytes are written. Any other tensor
/// fails with `GREENAI_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `model` must be a live handle; `out` must point to `out_len` writable bytes; `type` must be
/// writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_model_read_ggml(
    model: *const greenai_model,
    index: usize,
    r#type: *mut u32,
    out: *mut c_void,
    out_len: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (model, ty_out) = unsafe { (model_ref(model)?, out_ptr(r#type, "type")?) };
        let (ty, bytes) = model.model.read_ggml(index)?;
        check_len("out_len", out_len, bytes.len())?;
        // SAFETY: the caller guarantees `out` holds `out_len` writable bytes.
        let out = unsafe { slice_out(out.cast::<u8>(), out_len, "out")? };
        out[..bytes.len()].copy_from_slice(&bytes);
        ty_out.write(ty as u32);
        Ok(())
    }
}
