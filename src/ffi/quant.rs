//! C ABI of the quantizer: ONNX QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear, float
//! casts, spec-based quantization (every type and granularity, 4-bit packed), calibration observers
//! and error metrics.

use super::boundary::{out_ptr, slice_in, slice_out, FfiError};
use super::status::greenai_status;
use super::tensor::{greenai_dtype, GREENAI_DTYPE_F16, GREENAI_DTYPE_F32};
use crate::kernels::convert as kernel;
use crate::quant::{
    self, Calibration, Convention, Granularity, Mode, Observer, Preset, QSlice, QSliceMut, QType,
    QuantParams, QuantSpec, Rounding, ScaleType,
};
use crate::tensor::DType;
use crate::Error;
use half::{bf16, f16};
use std::ffi::c_void;

/// ONNX QuantizeLinear to int8: `y = saturate(round_half_even(x / scale) + zero_point)`, `x / scale` in
/// float. NaN in `x` fails with `GREENAI_ERR_NON_FINITE`; +-inf saturate; `y` is written only on success.
///
/// # Safety
/// `x` and `y` must point to `n` elements each (or be NULL when `n` is 0) and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_quantize_linear_i8(
    x: *const f32,
    n: usize,
    scale: f32,
    zero_point: i8,
    y: *mut i8,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented.
        let (x, y) = unsafe { (slice_in(x, n, "x")?, slice_out(y, n, "y")?) };
        Ok(kernel::quantize_i8(x, scale, zero_point, y)?)
    }
}

/// ONNX QuantizeLinear to uint8 (as `greenai_quantize_linear_i8`).
///
/// # Safety
/// `x` and `y` must point to `n` elements each (or be NULL when `n` is 0) and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_quantize_linear_u8(
    x: *const f32,
    n: usize,
    scale: f32,
    zero_point: u8,
    y: *mut u8,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented.
        let (x, y) = unsafe { (slice_in(x, n, "x")?, slice_out(y, n, "y")?) };
        Ok(kernel::quantize_u8(x, scale, zero_point, y)?)
    }
}

/// ONNX DequantizeLinear from int8: `x = (y - zero_point) * scale` in float.
///
/// # Safety
/// `y` and `x` must point to `n` elements each (or be NULL when `n` is 0) and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_dequantize_linear_i8(
    y: *const i8,
    n: usize,
    scale: f32,
    zero_point: i8,
    x: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented.
        let (y, x) = unsafe { (slice_in(y, n, "y")?, slice_out(x, n, "x")?) };
        Ok(kernel::dequantize_i8(y, scale, zero_point, x)?)
    }
}

/// ONNX DequantizeLinear from uint8: `x = (y - zero_point) * scale` in float.
///
/// # Safety
/// `y` and `x` must point to `n` elements each (or be NULL when `n` is 0) and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn greenai_dequantize_linear_u8(
    y: *const u8,
    n: usize,
    scale: f32,
    zero_point: u8,
    x: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented.
        let (y, x) = unsafe { (slice_in(y, n, "y")?, slice_out(x, n, "x")?) };
        Ok(kernel::dequantize_u8(y, scale, zero_point, x)?)
    }
}

/// ONNX QuantizeLinear to int8 with one scale and zero point per index along `axis` of the row-major
/// tensor `x` of `shape[ndim]`; `scales` and `zero_points` hold `shape[axis]` values. The zero
/// points have the output's type here, as in ONNX and the other typed `greenai_quantize_linear_*`
/// functions; the type-generic functions (`greenai_quantize`, `greenai_quantize_min_max`,
/// `greenai_qlinear_from_int8`) take `int32_t` zero points for every type.
///
/// # Safety
/// `shape` must point to `ndim` sizes; `x` and `y` to the tensor's element count; `scales` and
/// `zero_points` to `shape[axis]` values.
#[no_mangle]
pub unsafe extern "C" fn greenai_quantize_per_axis_i8(
    x: *const f32,
    shape: *const usize,
    ndim: usize,
    axis: usize,
    scales: *const f32,
    zero_points: *const i8,
    y: *mut i8,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees `shape` as documented.
        let shape = unsafe { slice_in(shape, ndim, "shape")? };
        let channels = *shape
            .get(axis)
            .ok_or_else(|| Error::invalid("axis", axis, format!("out of range for {ndim} dimensions")))?;
        let n = crate::tensor::numel(shape)?;
        // SAFETY: the caller guarantees the buffers as documented; their lengths follow from `shape`.
        let (x, scales, zero_points, y) = unsafe {
            (
                slice_in(x, n, "x")?,
                slice_in(scales, channels, "scales")?,
                slice_in(zero_points, channels, "zero_points")?,
                slice_out(y, n, "y")?,
            )
        };
        Ok(quant::onnx::quantize_per_axis_i8(x, shape, axis, scales, zero_points, y)?)
    }
}

/// ONNX DynamicQuantizeLinear as ONNX Runtime computes it: `scale = (max(0, max x) - min(0, min x)) / 255`
/// (1 when that is 0), `zero_point = round_half_even(clamp(-min(0, min x) / scale, 0, 255))`, then
/// QuantizeLinear to uint8. NaN or an infinity in `x` is an error; nothing is written on failure.
///
/// # Safety
/// `x` and `y` must point to `n` elements each (or be NULL when `n` is 0); `scale` and `zero_point` writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_dynamic_quantize_u8(
    x: *const f32,
    n: usize,
    y: *mut u8,
    scale: *mut f32,
    zero_point: *mut u8,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented.
        let (x, y, scale_out, zp_out) = unsafe {
            (slice_in(x, n, "x")?, slice_out(y, n, "y")?, out_ptr(scale, "scale")?, out_ptr(zero_point, "zero_point")?)
        };
        let (s, z) = quant::onnx::dynamic_quantize_linear(x, y)?;
        scale_out.write(s);
        zp_out.write(z);
        Ok(())
    }
}

/// Converts floats to IEEE binary16 bit patterns, round to nearest even (NaN stays NaN, overflow to inf).
///
/// # Safety
/// `x` and `y` must point to `n` elements each (or be NULL when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn greenai_f32_to_f16(x: *const f32, n: usize, y: *mut u16) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented; f16 is a transparent u16.
        let (x, y) = unsafe { (slice_in(x, n, "x")?, slice_out(y.cast::<f16>(), n, "y")?) };
        Ok(kernel::f32_to_f16(x, y)?)
    }
}

/// Converts IEEE binary16 bit patterns to floats (exact).
///
/// # Safety
/// `x` and `y` must point to `n` elements each (or be NULL when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn greenai_f16_to_f32(x: *const u16, n: usize, y: *mut f32) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented; f16 is a transparent u16.
        let (x, y) = unsafe { (slice_in(x.cast::<f16>(), n, "x")?, slice_out(y, n, "y")?) };
        Ok(kernel::f16_to_f32(x, y)?)
    }
}

/// Converts floats to bfloat16 bit patterns, round to nearest even (NaN stays NaN).
///
/// # Safety
/// `x` and `y` must point to `n` elements each (or be NULL when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn greenai_f32_to_bf16(x: *const f32, n: usize, y: *mut u16) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented; bf16 is a transparent u16.
        let (x, y) = unsafe { (slice_in(x, n, "x")?, slice_out(y.cast::<bf16>(), n, "y")?) };
        Ok(kernel::f32_to_bf16(x, y)?)
    }
}

/// Converts bfloat16 bit patterns to floats (exact).
///
/// # Safety
/// `x` and `y` must point to `n` elements each (or be NULL when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn greenai_bf16_to_f32(x: *const u16, n: usize, y: *mut f32) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the buffers as documented; bf16 is a transparent u16.
        let (x, y) = unsafe { (slice_in(x.cast::<bf16>(), n, "x")?, slice_out(y, n, "y")?) };
        Ok(kernel::bf16_to_f32(x, y)?)
    }
}

/// One scale and zero point for the whole tensor.
pub const GREENAI_GRANULARITY_PER_TENSOR: u32 = 0;
/// One scale and zero point per index along `axis`.
pub const GREENAI_GRANULARITY_PER_AXIS: u32 = 1;
/// One scale and zero point per `block_size` consecutive indices along `axis` (last block may be short).
pub const GREENAI_GRANULARITY_PER_BLOCK: u32 = 2;

/// Round half to even.
pub const GREENAI_ROUNDING_HALF_EVEN: u32 = 0;
/// Round half away from zero.
pub const GREENAI_ROUNDING_HALF_AWAY: u32 = 1;
/// Stochastic rounding keyed by `seed` and the element index.
pub const GREENAI_ROUNDING_STOCHASTIC: u32 = 2;

/// ONNX Runtime's formulas (`x / scale`).
pub const GREENAI_CONVENTION_ONNX: u32 = 0;
/// PyTorch observers' formulas (`x * (1 / scale)`).
pub const GREENAI_CONVENTION_PYTORCH: u32 = 1;
/// TensorFlow Lite's formulas (`x * (1 / scale)`).
pub const GREENAI_CONVENTION_TFLITE: u32 = 2;

/// ONNX Runtime activations: uint8 affine per tensor.
pub const GREENAI_PRESET_ONNX_ACTIVATION_U8: u32 = 0;
/// ONNX Runtime weights: int8 symmetric on [-127, 127] per tensor.
pub const GREENAI_PRESET_ONNX_WEIGHT_I8: u32 = 1;
/// ONNX Runtime 4-bit weights: int4 symmetric per block of 32 along axis 0.
pub const GREENAI_PRESET_ONNX_WEIGHT_I4_BLOCK32: u32 = 2;
/// PyTorch MinMaxObserver: uint8 affine per tensor.
pub const GREENAI_PRESET_PYTORCH_ACTIVATION_U8: u32 = 3;
/// PyTorch PerChannelMinMaxObserver: int8 symmetric per axis 0.
pub const GREENAI_PRESET_PYTORCH_WEIGHT_I8_PER_CHANNEL: u32 = 4;
/// TensorFlow Lite activations: int8 affine, ties away from zero.
pub const GREENAI_PRESET_TFLITE_ACTIVATION_I8: u32 = 5;
/// TensorFlow Lite weights: int8 symmetric on [-127, 127] per axis 0, ties away from zero.
pub const GREENAI_PRESET_TFLITE_WEIGHT_I8_PER_CHANNEL: u32 = 6;

/// Calibration by the smallest and largest values seen.
pub const GREENAI_CALIBRATION_MIN_MAX: u32 = 0;
/// PyTorch's moving-average min-max (`arg`: averaging constant in (0, 1]).
pub const GREENAI_CALIBRATION_MOVING_AVERAGE: u32 = 1;
/// Percentile of the values (`arg`: percentile in (0, 100]).
pub const GREENAI_CALIBRATION_PERCENTILE: u32 = 2;
/// TensorRT entropy (KL divergence) calibration.
pub const GREENAI_CALIBRATION_ENTROPY: u32 = 3;
/// The clipping threshold minimising the quantization MSE.
pub const GREENAI_CALIBRATION_MSE: u32 = 4;

/// How floats become integers: the C form of the Rust `QuantSpec`. Flags are 0 or 1.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_quant_spec {
    /// `GREENAI_DTYPE_I4`, `_U4`, `_I8`, `_U8`, `_I16` or `_U16`.
    pub qtype: greenai_dtype,
    /// 1: symmetric range about zero; 0: affine.
    pub symmetric: u32,
    /// 1: drop the lowest signed value ([-127, 127]) or the highest unsigned one.
    pub narrow_range: u32,
    /// 1: one bit less of range (7-bit values in int8).
    pub reduced_range: u32,
    /// A `GREENAI_GRANULARITY_*` value.
    pub granularity: u32,
    /// The axis of per-axis and per-block granularity.
    pub axis: usize,
    /// Elements per block (per-block granularity).
    pub block_size: usize,
    /// A `GREENAI_ROUNDING_*` value.
    pub rounding: u32,
    /// Key of stochastic rounding.
    pub seed: u64,
    /// `GREENAI_DTYPE_F32` or `GREENAI_DTYPE_F16`: the float type of the scales.
    pub scale_type: greenai_dtype,
    /// A `GREENAI_CONVENTION_*` value.
    pub convention: u32,
}

fn flag(name: &'static str, v: u32) -> Result<bool, Error> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Error::invalid(name, other, "must be 0 or 1")),
    }
}

impl greenai_quant_spec {
    fn to_spec(self) -> Result<QuantSpec, Error> {
        let qtype = match super::tensor::dtype_from_c(self.qtype)? {
            DType::I4 => QType::I4,
            DType::U4 => QType::U4,
            DType::I8 => QType::I8,
            DType::U8 => QType::U8,
            DType::I16 => QType::I16,
            DType::U16 => QType::U16,
            other => return Err(Error::UnsupportedDType { dtype: other, operation: "quantization" }),
        };
        let granularity = match self.granularity {
            GREENAI_GRANULARITY_PER_TENSOR => Granularity::PerTensor,
            GREENAI_GRANULARITY_PER_AXIS => Granularity::PerAxis { axis: self.axis },
            GREENAI_GRANULARITY_PER_BLOCK => {
                Granularity::PerBlock { axis: self.axis, block: self.block_size }
            }
            other => return Err(Error::invalid("granularity", other, "not a GREENAI_GRANULARITY_* value")),
        };
        let rounding = match self.rounding {
            GREENAI_ROUNDING_HALF_EVEN => Rounding::HalfEven,
            GREENAI_ROUNDING_HALF_AWAY => Rounding::HalfAway,
            GREENAI_ROUNDING_STOCHASTIC => Rounding::Stochastic { seed: self.seed },
            other => return Err(Error::invalid("rounding", other, "not a GREENAI_ROUNDING_* value")),
        };
        let scale_type = match self.scale_type {
            GREENAI_DTYPE_F32 => ScaleType::F32,
            GREENAI_DTYPE_F16 => ScaleType::F16,
            other => return Err(Error::invalid("scale_type", other, "must be GREENAI_DTYPE_F32 or _F16")),
        };
        let convention = match self.convention {
            GREENAI_CONVENTION_ONNX => Convention::Onnx,
            GREENAI_CONVENTION_PYTORCH => Convention::PyTorch,
            GREENAI_CONVENTION_TFLITE => Convention::TfLite,
            other => return Err(Error::invalid("convention", other, "not a GREENAI_CONVENTION_* value")),
        };
        Ok(QuantSpec {
            qtype,
            mode: if flag("symmetric", self.symmetric)? { Mode::Symmetric } else { Mode::Affine },
            narrow_range: flag("narrow_range", self.narrow_range)?,
            reduced_range: flag("reduced_range", self.reduced_range)?,
            granularity,
            rounding,
            scale_type,
            convention,
        })
    }

    fn from_spec(spec: &QuantSpec) -> Self {
        let (granularity, axis, block_size) = match spec.granularity {
            Granularity::PerTensor => (GREENAI_GRANULARITY_PER_TENSOR, 0, 0),
            Granularity::PerAxis { axis } => (GREENAI_GRANULARITY_PER_AXIS, axis, 0),
            Granularity::PerBlock { axis, block } => (GREENAI_GRANULARITY_PER_BLOCK, axis, block),
        };
        let (rounding, seed) = match spec.rounding {
            Rounding::HalfEven => (GREENAI_ROUNDING_HALF_EVEN, 0),
            Rounding::HalfAway => (GREENAI_ROUNDING_HALF_AWAY, 0),
            Rounding::Stochastic { seed } => (GREENAI_ROUNDING_STOCHASTIC, seed),
        };
        greenai_quant_spec {
            qtype: super::tensor::dtype_to_c(spec.qtype.dtype()),
            symmetric: u32::from(spec.mode == Mode::Symmetric),
            narrow_range: u32::from(spec.narrow_range),
            reduced_range: u32::from(spec.reduced_range),
            granularity,
            axis,
            block_size,
            rounding,
            seed,
            scale_type: match spec.scale_type {
                ScaleType::F32 => GREENAI_DTYPE_F32,
                ScaleType::F16 => GREENAI_DTYPE_F16,
            },
            convention: match spec.convention {
                Convention::Onnx => GREENAI_CONVENTION_ONNX,
                Convention::PyTorch => GREENAI_CONVENTION_PYTORCH,
                Convention::TfLite => GREENAI_CONVENTION_TFLITE,
            },
        }
    }
}

/// Reads a C spec pointer.
///
/// # Safety
/// `spec`, when non-NULL, must point to a readable `greenai_quant_spec`.
unsafe fn read_spec(spec: *const greenai_quant_spec) -> Result<QuantSpec, FfiError> {
    // SAFETY: the caller guarantees a non-NULL pointer is readable.
    let spec = unsafe { spec.as_ref() }.ok_or(FfiError::Null("spec"))?;
    Ok(spec.to_spec()?)
}

/// Writes the spec of a `GREENAI_PRESET_*` to `*spec`.
///
/// # Safety
/// `spec` must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_quant_spec_preset(
    preset: u32,
    spec: *mut greenai_quant_spec,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees `spec` is writable.
        let out = unsafe { out_ptr(spec, "spec")? };
        let preset = *Preset::ALL
            .get(preset as usize)
            .ok_or_else(|| Error::invalid("preset", preset, "not a GREENAI_PRESET_* value"))?;
        out.write(greenai_quant_spec::from_spec(&QuantSpec::preset(preset)));
        Ok(())
    }
}

/// Writes to `*count` how many scales (and zero points) `spec` needs for a tensor of `shape[ndim]`.
///
/// # Safety
/// `spec` readable; `shape` points to `ndim` sizes; `count` writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_quant_param_count(
    spec: *const greenai_quant_spec,
    shape: *const usize,
    ndim: usize,
    count: *mut usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (spec, shape, out) = unsafe { (read_spec(spec)?, slice_in(shape, ndim, "shape")?, out_ptr(count, "count")?) };
        out.write(crate::tensor::numel(&spec.granularity.param_shape(shape)?)?);
        Ok(())
    }
}

/// Borrowed tensor arguments: the shape, its element count and the parameter count.
///
/// # Safety
/// `shape` must point to `ndim` sizes.
unsafe fn dims<'a>(
    spec: &QuantSpec,
    shape: *const usize,
    ndim: usize,
) -> Result<(&'a [usize], usize, usize), FfiError> {
    // SAFETY: the caller guarantees `shape` as documented.
    let shape = unsafe { slice_in(shape, ndim, "shape")? };
    let n = crate::tensor::numel(shape)?;
    let groups = crate::tensor::numel(&spec.granularity.param_shape(shape)?)?;
    Ok((shape, n, groups))
}

fn check_count(name: &'static str, given: usize, needed: usize) -> Result<(), Error> {
    if given != needed {
        return Err(Error::ShapeMismatch { context: name, expected: vec![needed], actual: vec![given] });
    }
    Ok(())
}

/// Computes min-max parameters of `spec` for the tensor `x` of `shape[ndim]` (its groups' minima and
/// maxima, by the spec's convention) into `scales[n_params]` and `zero_points[n_params]`;
/// `n_params` must be `greenai_quant_param_count`. NaN or infinity in `x` is an error.
///
/// # Safety
/// `spec` readable; `shape` points to `ndim` sizes; `x` to the element count; the outputs to `n_params`.
#[no_mangle]
pub unsafe extern "C" fn greenai_quant_choose_params(
    spec: *const greenai_quant_spec,
    x: *const f32,
    shape: *const usize,
    ndim: usize,
    scales: *mut f32,
    zero_points: *mut i32,
    n_params: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let spec = unsafe { read_spec(spec)? };
        // SAFETY: as above.
        let (shape, n, groups) = unsafe { dims(&spec, shape, ndim)? };
        check_count("n_params", n_params, groups)?;
        // SAFETY: as above; lengths follow from the shape.
        let (x, s_out, z_out) = unsafe {
            (slice_in(x, n, "x")?, slice_out(scales, n_params, "scales")?, slice_out(zero_points, n_params, "zero_points")?)
        };
        let params = QuantParams::from_data(spec, x, shape)?;
        s_out.copy_from_slice(params.scales());
        z_out.copy_from_slice(params.zero_points());
        Ok(())
    }
}

/// Storage bytes of `n` values of the spec's type (4-bit types two per byte).
fn storage_bytes(spec: &QuantSpec, n: usize) -> Result<usize, Error> {
    spec.qtype
        .dtype()
        .storage_bytes(n)
        .ok_or_else(|| Error::Overflow { context: "quantized bytes", detail: format!("{n} values") })
}

/// Quantizes the row-major tensor `x` of `shape[ndim]` with `spec` and the given parameters into `y`,
/// which holds `y_bytes` bytes: exactly the storage of the spec's type (4-bit types packed two per byte,
/// first element in the low nibble). NaN in `x` is an error; nothing is written on failure.
///
/// # Safety
/// `spec` readable; `shape` points to `ndim` sizes; `x` to the element count; `scales` and
/// `zero_points` to `n_params` values; `y` to `y_bytes` writable bytes aligned for the type.
#[no_mangle]
pub unsafe extern "C" fn greenai_quantize(
    spec: *const greenai_quant_spec,
    x: *const f32,
    shape: *const usize,
    ndim: usize,
    scales: *const f32,
    zero_points: *const i32,
    n_params: usize,
    y: *mut c_void,
    y_bytes: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let spec = unsafe { read_spec(spec)? };
        // SAFETY: as above.
        let (shape, n, groups) = unsafe { dims(&spec, shape, ndim)? };
        check_count("n_params", n_params, groups)?;
        check_count("y_bytes", y_bytes, storage_bytes(&spec, n)?)?;
        // SAFETY: as above; lengths follow from the shape.
        let (x, scales, zero_points) = unsafe {
            (slice_in(x, n, "x")?, slice_in(scales, n_params, "scales")?, slice_in(zero_points, n_params, "zero_points")?)
        };
        let params = QuantParams::new(spec, spec.granularity.param_shape(shape)?, scales.to_vec(), zero_points.to_vec())?;
        // SAFETY: `y` holds y_bytes bytes, which `check_count` found to be n values of the type.
        let out = unsafe { qslice_out(&spec, y, y_bytes, n)? };
        Ok(quant::quantize_into(x, shape, &params, out)?)
    }
}

/// The output buffer `y` of `y_bytes` bytes as `n` values of the spec's type (4-bit packed).
///
/// # Safety
/// `y` must point to `y_bytes` writable bytes aligned for the type, `y_bytes` the storage of `n` values.
unsafe fn qslice_out<'a>(
    spec: &QuantSpec,
    y: *mut c_void,
    y_bytes: usize,
    n: usize,
) -> Result<QSliceMut<'a>, FfiError> {
    // SAFETY: the caller guarantees `y` holds y_bytes bytes, which is n values of the type.
    unsafe {
        Ok(match spec.qtype {
            QType::I4 => QSliceMut::I4(slice_out(y.cast::<u8>(), y_bytes, "y")?),
            QType::U4 => QSliceMut::U4(slice_out(y.cast::<u8>(), y_bytes, "y")?),
            QType::I8 => QSliceMut::I8(slice_out(y.cast::<i8>(), n, "y")?),
            QType::U8 => QSliceMut::U8(slice_out(y.cast::<u8>(), n, "y")?),
            QType::I16 => QSliceMut::I16(slice_out(y.cast::<i16>(), n, "y")?),
            QType::U16 => QSliceMut::U16(slice_out(y.cast::<u16>(), n, "y")?),
        })
    }
}

/// Quantizes the row-major tensor `x` of `shape[ndim]` with min-max parameters of `spec` in one
/// call: writes each group's scale and zero point into `scales[n_params]` and
/// `zero_points[n_params]` (`n_params` as `greenai_quant_param_count` gives: 1 per tensor,
/// `shape[axis]` per axis) and the values into `y` (`y_bytes` bytes, as `greenai_quantize`). With
/// `GREENAI_PRESET_PYTORCH_WEIGHT_I8_PER_CHANNEL` this is PyTorch's `PerChannelMinMaxObserver`
/// then `quantize_per_channel`. NaN or infinity in `x` is an error; nothing is written on failure.
/// The Rust twin is `QTensor::quantize_min_max`.
///
/// # Safety
/// `spec` readable; `shape` points to `ndim` sizes; `x` to the element count; `scales` and
/// `zero_points` to `n_params` writable values; `y` to `y_bytes` writable bytes aligned for the type.
#[no_mangle]
pub unsafe extern "C" fn greenai_quantize_min_max(
    spec: *const greenai_quant_spec,
    x: *const f32,
    shape: *const usize,
    ndim: usize,
    scales: *mut f32,
    zero_points: *mut i32,
    n_params: usize,
    y: *mut c_void,
    y_bytes: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let spec = unsafe { read_spec(spec)? };
        // SAFETY: as above.
        let (shape, n, groups) = unsafe { dims(&spec, shape, ndim)? };
        check_count("n_params", n_params, groups)?;
        check_count("y_bytes", y_bytes, storage_bytes(&spec, n)?)?;
        // SAFETY: as above; lengths follow from the shape.
        let (x, s_out, z_out) = unsafe {
            (slice_in(x, n, "x")?, slice_out(scales, n_params, "scales")?, slice_out(zero_points, n_params, "zero_points")?)
        };
        // SAFETY: `y` holds y_bytes bytes, which `check_count` found to be n values of the type.
        let out = unsafe { qslice_out(&spec, y, y_bytes, n)? };
        let params = QuantParams::from_data(spec, x, shape)?;
        quant::quantize_into(x, shape, &params, out)?;
        s_out.copy_from_slice(params.scales());
        z_out.copy_from_slice(params.zero_points());
        Ok(())
    }
}

/// Dequantizes `y` (`y_bytes` bytes of the spec's type, 4-bit packed) of `shape[ndim]` with the given
/// parameters into the floats `x`: `(q - zero_point) * scale`. Nothing is written on failure.
///
/// # Safety
/// As `greenai_quantize`, with `y` readable and `x` writable for the element count.
#[no_mangle]
pub unsafe extern "C" fn greenai_dequantize(
    spec: *const greenai_quant_spec,
    y: *const c_void,
    y_bytes: usize,
    shape: *const usize,
    ndim: usize,
    scales: *const f32,
    zero_points: *const i32,
    n_params: usize,
    x: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let spec = unsafe { read_spec(spec)? };
        // SAFETY: as above.
        let (shape, n, groups) = unsafe { dims(&spec, shape, ndim)? };
        check_count("n_params", n_params, groups)?;
        check_count("y_bytes", y_bytes, storage_bytes(&spec, n)?)?;
        // SAFETY: as above; lengths follow from the shape.
        let (scales, zero_points, x) = unsafe {
            (slice_in(scales, n_params, "scales")?, slice_in(zero_points, n_params, "zero_points")?, slice_out(x, n, "x")?)
        };
        let params = QuantParams::new(spec, spec.granularity.param_shape(shape)?, scales.to_vec(), zero_points.to_vec())?;
        // SAFETY: `y` holds y_bytes bytes, which is n values of the type (or n packed nibbles).
        let q = unsafe {
            match spec.qtype {
                QType::I4 => QSlice::I4(slice_in(y.cast::<u8>(), y_bytes, "y")?),
                QType::U4 => QSlice::U4(slice_in(y.cast::<u8>(), y_bytes, "y")?),
                QType::I8 => QSlice::I8(slice_in(y.cast::<i8>(), n, "y")?),
                QType::U8 => QSlice::U8(slice_in(y.cast::<u8>(), n, "y")?),
                QType::I16 => QSlice::I16(slice_in(y.cast::<i16>(), n, "y")?),
                QType::U16 => QSlice::U16(slice_in(y.cast::<u16>(), n, "y")?),
            }
        };
        Ok(quant::dequantize_into(q, shape, &params, x)?)
    }
}

/// A calibration observer. Made by `greenai_observer_new`, released by `greenai_observer_free`.
pub struct greenai_observer {
    observer: Observer,
}

impl greenai_observer {
    /// # Safety
    /// `ptr`, when non-NULL, must be a live handle from this library, not used elsewhere during the call.
    unsafe fn get_mut<'a>(ptr: *mut greenai_observer) -> Result<&'a mut Observer, FfiError> {
        // SAFETY: the caller guarantees a non-NULL ptr is a live, unaliased handle.
        Ok(&mut unsafe { ptr.as_mut() }.ok_or(FfiError::Null("observer"))?.observer)
    }
}

/// Creates an observer of `method` (a `GREENAI_CALIBRATION_*`; `arg` is the averaging constant or the
/// percentile, ignored otherwise) that gives parameters for `spec`, into `*out`.
///
/// # Safety
/// `spec` readable; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_observer_new(
    method: u32,
    arg: f64,
    spec: *const greenai_quant_spec,
    out: *mut *mut greenai_observer,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (spec, out) = unsafe { (read_spec(spec)?, out_ptr(out, "out")?) };
        let method = match method {
            GREENAI_CALIBRATION_MIN_MAX => Calibration::MinMax,
            GREENAI_CALIBRATION_MOVING_AVERAGE => Calibration::MovingAverageMinMax { averaging_constant: arg as f32 },
            GREENAI_CALIBRATION_PERCENTILE => Calibration::Percentile { percentile: arg },
            GREENAI_CALIBRATION_ENTROPY => Calibration::Entropy,
            GREENAI_CALIBRATION_MSE => Calibration::Mse,
            other => return Err(Error::invalid("method", other, "not a GREENAI_CALIBRATION_* value").into()),
        };
        let observer = Observer::new(method, spec)?;
        out.write(Box::into_raw(Box::new(greenai_observer { observer })));
        Ok(())
    }
}

/// Feeds one batch `x` of `shape[ndim]` to the observer. NaN or infinity is an error and leaves the
/// observer unchanged.
///
/// # Safety
/// `observer` a live handle; `shape` points to `ndim` sizes; `x` to the element count.
#[no_mangle]
pub unsafe extern "C" fn greenai_observer_feed(
    observer: *mut greenai_observer,
    x: *const f32,
    shape: *const usize,
    ndim: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (observer, shape) = unsafe { (greenai_observer::get_mut(observer)?, slice_in(shape, ndim, "shape")?) };
        let n = crate::tensor::numel(shape)?;
        // SAFETY: as above.
        let x = unsafe { slice_in(x, n, "x")? };
        Ok(observer.observe(x, shape)?)
    }
}

/// Writes the calibrated parameters into `scales[n_params]` and `zero_points[n_params]`; `n_params`
/// must equal the observer's group count (as `greenai_quant_param_count` gives for the fed shape).
///
/// # Safety
/// `observer` a live handle; the outputs point to `n_params` writable values.
#[no_mangle]
pub unsafe extern "C" fn greenai_observer_params(
    observer: *mut greenai_observer,
    scales: *mut f32,
    zero_points: *mut i32,
    n_params: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (observer, s_out, z_out) = unsafe {
            (
                greenai_observer::get_mut(observer)?,
                slice_out(scales, n_params, "scales")?,
                slice_out(zero_points, n_params, "zero_points")?,
            )
        };
        let params = observer.params()?;
        check_count("n_params", n_params, params.scales().len())?;
        s_out.copy_from_slice(params.scales());
        z_out.copy_from_slice(params.zero_points());
        Ok(())
    }
}

/// Releases an observer. NULL is accepted and does nothing.
///
/// # Safety
/// `observer` must be NULL or a live handle from this library, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn greenai_observer_free(observer: *mut greenai_observer) {
    if observer.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the caller guarantees a live handle made by Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(observer) });
    });
}

/// Quantization error of an approximation against its reference.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct greenai_error_metrics {
    /// Mean squared error.
    pub mse: f64,
    /// Signal-to-quantization-noise ratio in dB (infinity when exact).
    pub sqnr_db: f64,
    /// Cosine similarity.
    pub cosine: f64,
    /// Largest absolute error.
    pub max_abs: f64,
}

impl From<quant::ErrorMetrics> for greenai_error_metrics {
    fn from(m: quant::ErrorMetrics) -> Self {
        greenai_error_metrics { mse: m.mse, sqnr_db: m.sqnr_db, cosine: m.cosine, max_abs: m.max_abs }
    }
}

/// Error metrics of `approx[n]` against `reference[n]` into `*metrics`.
///
/// # Safety
/// `reference` and `approx` point to `n` floats; `metrics` writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_quant_error_metrics(
    reference: *const f32,
    approx: *const f32,
    n: usize,
    metrics: *mut greenai_error_metrics,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let (r, a, out) = unsafe { (slice_in(reference, n, "reference")?, slice_in(approx, n, "approx")?, out_ptr(metrics, "metrics")?) };
        out.write(quant::error_metrics(r, a)?.into());
        Ok(())
    }
}

/// Error metrics per index along `axis` of tensors of `shape[ndim]` into `metrics[shape[axis]]`.
///
/// # Safety
/// `shape` points to `ndim` sizes; `reference` and `approx` to the element count; `metrics` to
/// `n_metrics` writable structs.
#[no_mangle]
pub unsafe extern "C" fn greenai_quant_error_metrics_per_axis(
    reference: *const f32,
    approx: *const f32,
    shape: *const usize,
    ndim: usize,
    axis: usize,
    metrics: *mut greenai_error_metrics,
    n_metrics: usize,
) -> greenai_status {
    ffi_boundary! {
        // SAFETY: the caller guarantees the pointers as documented.
        let shape = unsafe { slice_in(shape, ndim, "shape")? };
        let n = crate::tensor::numel(shape)?;
        // SAFETY: as above.
        let (r, a, out) = unsafe {
            (slice_in(reference, n, "reference")?, slice_in(approx, n, "approx")?, slice_out(metrics, n_metrics, "metrics")?)
        };
        let per = quant::error_metrics_per_axis(r, a, shape, axis)?;
        check_count("n_metrics", n_metrics, per.len())?;
        for (o, m) in out.iter_mut().zip(per) {
            *o = m.into();
        }
        Ok(())
    }
}
