//! Quantize and dequantize for every type and granularity: the in-place slice forms an engine
//! calls, and [`QTensor`] (data plus parameters).
//!
//! `q = clamp(round(x / scale) + zero_point, qmin, qmax)` and `x = (q - zero_point) * scale`, with the
//! division, rounding and range of the parameters' [`QuantSpec`]. The ONNX cases (i8/u8, full range,
//! half to even, `x / scale` in f32) run through the SIMD kernels of [`crate::kernels::convert`].

use super::pack::{nibble_get, nibble_put, packed_len};
use super::params::{Convention, Layout, QType, QuantParams, QuantSpec, Rounding};
use crate::error::{Error, Result};
use crate::kernels::convert as kernel;
use crate::kernels::convert::general::{quantize_run_on, Arithmetic, Dest, RunParams, Wide};
use crate::kernels::Isa;
use crate::tensor::{DynTensor, Packed4, Tensor};

/// Quantized values, borrowed, by type; 4-bit types are packed two per byte (first in the low nibble).
#[derive(Clone, Copy, Debug)]
pub enum QSlice<'a> {
    /// Packed signed 4-bit values.
    I4(&'a [u8]),
    /// Packed unsigned 4-bit values.
    U4(&'a [u8]),
    /// i8 values.
    I8(&'a [i8]),
    /// u8 values.
    U8(&'a [u8]),
    /// i16 values.
    I16(&'a [i16]),
    /// u16 values.
    U16(&'a [u16]),
}

/// Quantized values, mutably borrowed, by type; 4-bit types packed as in [`QSlice`].
#[derive(Debug)]
pub enum QSliceMut<'a> {
    /// Packed signed 4-bit values.
    I4(&'a mut [u8]),
    /// Packed unsigned 4-bit values.
    U4(&'a mut [u8]),
    /// i8 values.
    I8(&'a mut [i8]),
    /// u8 values.
    U8(&'a mut [u8]),
    /// i16 values.
    I16(&'a mut [i16]),
    /// u16 values.
    U16(&'a mut [u16]),
}

impl QSlice<'_> {
    /// The quantized type.
    pub fn qtype(&self) -> QType {
        match self {
            QSlice::I4(_) => QType::I4,
            QSlice::U4(_) => QType::U4,
            QSlice::I8(_) => QType::I8,
            QSlice::U8(_) => QType::U8,
            QSlice::I16(_) => QType::I16,
            QSlice::U16(_) => QType::U16,
        }
    }

    /// Storage length: elements, or bytes for the packed types.
    fn storage_len(&self) -> usize {
        match self {
            QSlice::I4(s) | QSlice::U4(s) | QSlice::U8(s) => s.len(),
            QSlice::I8(s) => s.len(),
            QSlice::I16(s) => s.len(),
            QSlice::U16(s) => s.len(),
        }
    }

    /// The value at element `i` (in range).
    fn get(&self, i: usize) -> i32 {
        match self {
            QSlice::I4(s) => nibble_get(s, i, true),
            QSlice::U4(s) => nibble_get(s, i, false),
            QSlice::I8(s) => i32::from(s[i]),
            QSlice::U8(s) => i32::from(s[i]),
            QSlice::I16(s) => i32::from(s[i]),
            QSlice::U16(s) => i32::from(s[i]),
        }
    }
}

impl QSliceMut<'_> {
    /// The quantized type.
    pub fn qtype(&self) -> QType {
        self.as_ref().qtype()
    }

    /// A shared view.
    pub fn as_ref(&self) -> QSlice<'_> {
        match self {
            QSliceMut::I4(s) => QSlice::I4(s),
            QSliceMut::U4(s) => QSlice::U4(s),
            QSliceMut::I8(s) => QSlice::I8(s),
            QSliceMut::U8(s) => QSlice::U8(s),
            QSliceMut::I16(s) => QSlice::I16(s),
            QSliceMut::U16(s) => QSlice::U16(s),
        }
    }

    /// Stores `q` (already in the type's range) at element `i`.
    fn put(&mut self, i: usize, q: i32) {
        match self {
            QSliceMut::I4(s) | QSliceMut::U4(s) => nibble_put(s, i, q),
            QSliceMut::I8(s) => s[i] = q as i8,
            QSliceMut::U8(s) => s[i] = q as u8,
            QSliceMut::I16(s) => s[i] = q as i16,
            QSliceMut::U16(s) => s[i] = q as u16,
        }
    }
}

/// Checks that a quantized buffer has the parameters' type and holds exactly `n` elements.
fn check_qbuffer(q: QSlice<'_>, spec: &QuantSpec, n: usize) -> Result<()> {
    if q.qtype() != spec.qtype {
        return Err(Error::invalid(
            "quantized buffer",
            format!("{:?}", q.qtype()),
            format!("the parameters are for {:?}", spec.qtype),
        ));
    }
    let needed = if spec.qtype.bits() == 4 { packed_len(n) } else { n };
    if q.storage_len() != needed {
        return Err(Error::ShapeMismatch {
            context: "quantized buffer length",
            expected: vec![needed],
            actual: vec![q.storage_len()],
        });
    }
    Ok(())
}

/// A uniform draw in `[0, 1)` from `(seed, index)`: SplitMix64 of the pair, reproducible in any order.
pub(crate) fn uniform(seed: u64, index: usize) -> f64 {
    let mut z = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// One group's quantizer: the spec's division, rounding and range with one scale and zero point.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quantizer {
    scale: f32,
    inv_scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
    reciprocal: bool,
    rounding: Rounding,
}

impl Quantizer {
    /// The quantizer of `spec` with these parameters.
    pub(crate) fn new(spec: &QuantSpec, scale: f32, zero_point: i32) -> Self {
        let (qmin, qmax) = spec.qrange();
        Quantizer {
            scale,
            inv_scale: 1.0 / scale,
            zero_point,
            qmin,
            qmax,
            reciprocal: spec.convention != Convention::Onnx,
            rounding: spec.rounding,
        }
    }

    /// `round(x / scale) + zero_point` before clamping, as an f64 (exact; `+-inf` for infinite `x`).
    /// `index` is the element's flat index (it keys stochastic rounding).
    #[inline]
    pub(crate) fn unclamped(&self, x: f32, index: usize) -> f64 {
        let t = if self.reciprocal { x * self.inv_scale } else { x / self.scale };
        let r = match self.rounding {
            Rounding::HalfEven => f64::from(t.round_ties_even()),
            Rounding::HalfAway => f64::from(t.round()),
            Rounding::Stochastic { seed } => (f64::from(t) + uniform(seed, index)).floor(),
        };
        r + f64::from(self.zero_point)
    }

    /// The quantized value of `x` (not NaN).
    #[inline]
    pub(crate) fn quantize(&self, x: f32, index: usize) -> i32 {
        self.unclamped(x, index).clamp(f64::from(self.qmin), f64::from(self.qmax)) as i32
    }

    /// `(q - zero_point) * scale` in f32.
    #[inline]
    pub(crate) fn dequantize(&self, q: i32) -> f32 {
        (q - self.zero_point) as f32 * self.scale
    }

    /// Whether `x` lies inside the clipping range (its unclamped value is in `[qmin, qmax]`).
    #[inline]
    pub(crate) fn inside(&self, x: f32, index: usize) -> bool {
        let u = self.unclamped(x, index);
        u >= f64::from(self.qmin) && u <= f64::from(self.qmax)
    }
}

/// Runs shorter than this are computed inline rather than through a kernel call.
const KERNEL_MIN_RUN: usize = 16;

/// Whether these parameters are ONNX QuantizeLinear on i8/u8, which the SIMD kernels compute; a
/// narrower integer range is then one more clamp (clamping to a sub-range after the type's range is
/// clamping to the sub-range).
fn onnx_kernel_case(spec: &QuantSpec) -> bool {
    matches!(spec.qtype, QType::I8 | QType::U8)
        && spec.convention == Convention::Onnx
        && spec.rounding == Rounding::HalfEven
}

/// Clamps kernel output to a range inside its type's range (a no-op for the full range).
fn clamp_run<T: Copy + Ord + TryFrom<i32>>(y: &mut [T], (qmin, qmax): (i32, i32)) {
    if let (Ok(lo), Ok(hi)) = (T::try_from(qmin), T::try_from(qmax)) {
        y.iter_mut().for_each(|v| *v = (*v).clamp(lo, hi));
    }
}

/// The general kernel on `x` into elements `at..` of `out`; for 4-bit types the pairs between an
/// odd first and an odd last element are packed by the kernel, those two put alone.
fn general_run(
    isa: Isa,
    x: &[f32],
    run: RunParams<'_>,
    a: Arithmetic,
    range: (i32, i32),
    out: &mut QSliceMut<'_>,
    at: usize,
) {
    let n = x.len();
    match out {
        QSliceMut::I8(y) => quantize_run_on(isa, x, run, a, range, Dest::I8(&mut y[at..at + n])),
        QSliceMut::U8(y) => quantize_run_on(isa, x, run, a, range, Dest::U8(&mut y[at..at + n])),
        QSliceMut::I16(y) => quantize_run_on(isa, x, run, a, range, Dest::I16(&mut y[at..at + n])),
        QSliceMut::U16(y) => quantize_run_on(isa, x, run, a, range, Dest::U16(&mut y[at..at + n])),
        QSliceMut::I4(b) | QSliceMut::U4(b) => {
            let put_one = |b: &mut [u8], i: usize| {
                let mut v = [0i32];
                quantize_run_on(isa, &x[i..i + 1], run.skip(i), a, range, Dest::I32(&mut v));
                nibble_put(b, at + i, v[0]);
            };
            let head = (at % 2).min(n);
            if head == 1 {
                put_one(b, 0);
            }
            let pairs = (n - head) / 2;
            let first = (at + head) / 2;
            let (x_pairs, b_pairs) = (&x[head..head + 2 * pairs], &mut b[first..first + pairs]);
            quantize_run_on(isa, x_pairs, run.skip(head), a, range, Dest::Nibbles(b_pairs));
            if head + 2 * pairs < n {
                put_one(b, n - 1);
            }
        }
    }
}

/// How values become integers under one spec: the choices [`quantize_into`] and the one-pass
/// quantizer make once per call.
struct Values {
    spec: QuantSpec,
    isa: Isa,
    /// ONNX i8/u8: the one-pass QuantizeLinear kernels on runs.
    onnx_kernel: bool,
    /// A sub-range of the type (one more clamp after the ONNX kernels).
    narrow: bool,
    /// The general kernel's arithmetic; `None` for stochastic rounding (per element).
    general: Option<Arithmetic>,
}

/// One span's parameters, its group 0 first: scales and zero points, the general kernel's factors
/// (scales or their reciprocals, as [`Quantizer`] forms them) and zero points as floats and, for
/// per-element divisions, the reciprocals that replace the division.
struct GroupParams<'a> {
    scales: &'a [f32],
    zero_points: &'a [i32],
    factors: &'a [f32],
    float_zero_points: &'a [f32],
    wide: Option<Reciprocals<'a>>,
}

/// The scales' reciprocals of [`Wide`]: f64 ones, and the fixed-point ones where every scale has
/// one (else empty).
#[derive(Clone, Copy)]
struct Reciprocals<'a> {
    reciprocals: &'a [f64],
    fixed: &'a [f32],
    offsets: &'a [i32],
}

/// The general kernel's per-group inputs, grown to the largest span they serve.
#[derive(Default)]
struct KernelFactors {
    factors: Vec<f32>,
    float_zero_points: Vec<f32>,
    reciprocals: Vec<f64>,
    fixed: Vec<f32>,
    offsets: Vec<i32>,
}

impl KernelFactors {
    /// The kernel inputs of these groups, to quantize `layout` by `values`.
    fn of<'a>(
        &'a mut self,
        values: &Values,
        layout: &Layout,
        scales: &'a [f32],
        zero_points: &'a [i32],
    ) -> Result<GroupParams<'a>> {
        let n = scales.len();
        if self.float_zero_points.len() < n {
            self.float_zero_points = crate::error::try_vec(n, 0f32)?;
        }
        let float_zero_points = &mut self.float_zero_points[..n];
        for (f, &z) in float_zero_points.iter_mut().zip(zero_points) {
            *f = z as f32;
        }
        // A division's factors are the scales; a multiplication's, their reciprocals.
        let factors: &[f32] = if values.divides() {
            scales
        } else {
            if self.factors.len() < n {
                self.factors = crate::error::try_vec(n, 0f32)?;
            }
            for (f, &s) in self.factors.iter_mut().zip(scales) {
                *f = 1.0 / s;
            }
            &self.factors[..n]
        };
        // Only per-element runs divide by a different scale at every element; the others take
        // the one-scale kernels, which form their own reciprocal.
        let wide = if values.divides() && layout.per_element() {
            if self.reciprocals.len() < n {
                self.reciprocals = crate::error::try_vec(n, 0f64)?;
                self.fixed = crate::error::try_vec(n, 0f32)?;
                self.offsets = crate::error::try_vec(n, 0i32)?;
            }
            let (wide, fixed, offsets) =
                (&mut self.reciprocals[..n], &mut self.fixed[..n], &mut self.offsets[..n]);
            let every_fixed =
                kernel::general::reciprocals_on(values.isa, (scales, zero_points), wide, fixed, offsets);
            let (fixed, offsets): (&[f32], &[i32]) =
                if every_fixed { (&self.fixed[..n], &self.offsets[..n]) } else { (&[], &[]) };
            Some(Reciprocals { reciprocals: &self.reciprocals[..n], fixed, offsets })
        } else {
            None
        };
        Ok(GroupParams { scales, zero_points, factors, float_zero_points, wide })
    }
}

impl Values {
    fn new(isa: Isa, spec: QuantSpec) -> Self {
        let general = (!matches!(spec.rounding, Rounding::Stochastic { .. })).then_some(Arithmetic {
            multiply: spec.convention != Convention::Onnx,
            half_away: spec.rounding == Rounding::HalfAway,
        });
        Values {
            spec,
            isa,
            onnx_kernel: onnx_kernel_case(&spec),
            narrow: spec.qrange() != spec.qtype.range(),
            general,
        }
    }

    /// Whether the general kernel divides (by the scale, as ONNX does).
    fn divides(&self) -> bool {
        self.general.is_some_and(|a| !a.multiply)
    }

    /// Quantizes `x` (free of NaN, laid out by `layout`) into elements `base..` of `out`, bringing
    /// `next` (what the caller reads after, or nothing) into L2 along the way, in step with
    /// the per-element runs (whose arithmetic leaves the memory idle).
    fn run(
        &self,
        layout: &Layout,
        x: &[f32],
        base: usize,
        p: &GroupParams<'_>,
        out: &mut QSliceMut<'_>,
        next: &[f32],
    ) -> Result<()> {
        let (spec, isa) = (&self.spec, self.isa);
        let mut result = Ok(());
        layout.segments(|start, count, g, per_element| {
            if result.is_err() {
                return;
            }
            let (x, at) = (&x[start..start + count], base + start);
            match (&mut *out, self.onnx_kernel && !per_element && count >= KERNEL_MIN_RUN) {
                (QSliceMut::I8(y), true) => {
                    let y = &mut y[at..at + count];
                    result = kernel::quantize_i8_scanned_on(isa, x, p.scales[g], p.zero_points[g] as i8, y);
                    if self.narrow {
                        clamp_run(y, spec.qrange());
                    }
                }
                (QSliceMut::U8(y), true) => {
                    let y = &mut y[at..at + count];
                    result = kernel::quantize_u8_scanned_on(isa, x, p.scales[g], p.zero_points[g] as u8, y);
                    if self.narrow {
                        clamp_run(y, spec.qrange());
                    }
                }
                _ => match self.general {
                    Some(arithmetic) => {
                        let run = if per_element {
                            RunParams::PerElement {
                                factors: &p.factors[g..g + count],
                                zero_points: &p.float_zero_points[g..g + count],
                                wide: p.wide.map(|w| Wide {
                                    reciprocals: &w.reciprocals[g..g + count],
                                    fixed: w.fixed.get(g..g + count).unwrap_or_default(),
                                    offsets: w.offsets.get(g..g + count).unwrap_or_default(),
                                    ahead: next.get(start..start + count).unwrap_or_default(),
                                }),
                            }
                        } else {
                            RunParams::Broadcast { factor: p.factors[g], zero_point: p.float_zero_points[g] }
                        };
                        general_run(isa, x, run, arithmetic, spec.qrange(), out, at);
                    }
                    None => {
                        for (i, &v) in x.iter().enumerate() {
                            let group = if per_element { g + i } else { g };
                            let qz = Quantizer::new(spec, p.scales[group], p.zero_points[group]);
                            out.put(at + i, qz.quantize(v, at + i));
                        }
                    }
                },
            }
        });
        result
    }
}

/// Zeroes the unused high nibble of an odd-length 4-bit tensor.
fn clear_last_nibble(out: &mut QSliceMut<'_>, n: usize) {
    if let QSliceMut::I4(b) | QSliceMut::U4(b) = out {
        if n % 2 == 1 {
            let last = b.len() - 1;
            b[last] &= 0x0F;
        }
    }
}

/// Quantizes `x` (row-major, `shape`) with `params` into `out`, in place. A NaN in `x` is an error
/// naming its index, and then nothing is written; `+-inf` saturate. Every spec but stochastic
/// rounding runs on SIMD kernels: ONNX i8/u8 on the one-pass QuantizeLinear kernels, the rest on
/// the general kernel (division or reciprocal, either rounding, any range, 4-bit packed after).
pub fn quantize_into(x: &[f32], shape: &[usize], params: &QuantParams, mut out: QSliceMut<'_>) -> Result<()> {
    let spec = *params.spec();
    let layout = params.layout_for(shape)?;
    super::params::check_data(spec.granularity, x, shape)?;
    check_qbuffer(out.as_ref(), &spec, x.len())?;
    // Any NaN is found before the first write, by one scan of the whole tensor; the runs below
    // then skip the kernels' own scan.
    crate::kernels::convert::check_no_nan("x", x)?;
    let values = Values::new(Isa::active(), spec);
    let mut kernel_factors = KernelFactors::default();
    let p = kernel_factors.of(&values, &layout, params.scales(), params.zero_points())?;
    values.run(&layout, x, 0, &p, &mut out, &[])?;
    clear_last_nibble(&mut out, x.len());
    Ok(())
}

/// [`QTensor::quantize_min_max`] in one pass over each span (see [`Layout::spans`]) on the path
/// `isa` (available): its range, its parameters, then its values while it is in cache. The range
/// pass proves the span finite, so no NaN scan follows. Any failure is returned as is; the caller
/// names it as the two-step path would.
fn min_max_one_pass(isa: Isa, x: &[f32], shape: &[usize], spec: QuantSpec) -> Result<QTensor> {
    let layout = super::params::check_data(spec.granularity, x, shape)?;
    let groups = layout.groups();
    let (mut scales, mut zero_points) =
        (crate::error::try_vec(groups, 0f32)?, crate::error::try_vec(groups, 0i32)?);
    // One span's ranges and kernel factors, grown to the largest span.
    let (mut mins, mut maxs, mut kernel_factors) = (Vec::new(), Vec::new(), KernelFactors::default());
    let values = Values::new(isa, spec);
    let mut data = zeroed(spec.qtype, shape)?;
    let mut out = qslice_mut(&mut data)?;
    layout.spans(|span| {
        let n = span.layout.len();
        let xs = &x[span.start..span.start + n];
        let ng = span.layout.groups();
        if mins.len() < ng {
            (mins, maxs) = (crate::error::try_vec(ng, 0f32)?, crate::error::try_vec(ng, 0f32)?);
        }
        let (lo, hi) = (&mut mins[..ng], &mut maxs[..ng]);
        lo.fill(f32::INFINITY);
        hi.fill(f32::NEG_INFINITY);
        if !span.layout.ranges_into(isa, xs, lo, hi) {
            return Err(crate::kernels::math::non_finite("x", x));
        }
        let gs = span.group..span.group + ng;
        let (scales, zero_points) = (&mut scales[gs.clone()], &mut zero_points[gs]);
        spec.params_for_ranges(lo, hi, scales, zero_points)?;
        let p = kernel_factors.of(&values, &span.layout, scales, zero_points)?;
        let next = &x[span.start + n..(span.start + 2 * n).min(x.len())];
        values.run(&span.layout, xs, span.start, &p, &mut out, next)
    })?;
    clear_last_nibble(&mut out, x.len());
    let params = QuantParams::computed(spec, spec.granularity.param_shape(shape)?, scales, zero_points);
    Ok(QTensor { data, params })
}

/// A zero-filled tensor of quantized type `qtype` (4-bit types packed).
fn zeroed(qtype: QType, shape: &[usize]) -> Result<DynTensor> {
    let shape = shape.to_vec();
    Ok(match qtype {
        QType::I8 => DynTensor::I8(Tensor::zeros(shape)?),
        QType::U8 => DynTensor::U8(Tensor::zeros(shape)?),
        QType::I16 => DynTensor::I16(Tensor::zeros(shape)?),
        QType::U16 => DynTensor::U16(Tensor::zeros(shape)?),
        QType::I4 | QType::U4 => {
            let bytes = crate::error::try_vec(packed_len(crate::tensor::numel(&shape)?), 0u8)?;
            DynTensor::Packed4(Packed4 { signed: qtype == QType::I4, shape, bytes })
        }
    })
}

/// Dequantizes `q` (row-major, `shape`) with `params` into `out`, in place: `(q - zero_point) * scale`.
pub fn dequantize_into(q: QSlice<'_>, shape: &[usize], params: &QuantParams, out: &mut [f32]) -> Result<()> {
    let spec = *params.spec();
    let layout = params.layout_for(shape)?;
    let n = crate::tensor::numel(shape)?;
    if out.len() != n {
        return Err(Error::ShapeMismatch {
            context: "dequantize output",
            expected: vec![n],
            actual: vec![out.len()],
        });
    }
    check_qbuffer(q, &spec, n)?;
    let (scales, zps) = (params.scales(), params.zero_points());
    let mut result = Ok(());
    layout.runs(|start, count, g| {
        if result.is_err() {
            return;
        }
        let range = start..start + count;
        match q {
            QSlice::I8(y) if count >= KERNEL_MIN_RUN => {
                result = kernel::dequantize_i8(&y[range.clone()], scales[g], zps[g] as i8, &mut out[range])
            }
            QSlice::U8(y) if count >= KERNEL_MIN_RUN => {
                result = kernel::dequantize_u8(&y[range.clone()], scales[g], zps[g] as u8, &mut out[range])
            }
            _ => {
                let qz = Quantizer::new(&spec, scales[g], zps[g]);
                for i in range {
                    out[i] = qz.dequantize(q.get(i));
                }
            }
        }
    });
    result
}

/// A quantized tensor: integer data (4-bit types packed) and the parameters that give it meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct QTensor {
    data: DynTensor,
    params: QuantParams,
}

impl QTensor {
    /// Quantizes `x` with given parameters.
    pub fn quantize(x: &Tensor<f32>, params: QuantParams) -> Result<Self> {
        let mut data = zeroed(params.spec().qtype, x.shape())?;
        quantize_into(x.as_slice(), x.shape(), &params, qslice_mut(&mut data)?)?;
        Ok(QTensor { data, params })
    }

    /// Quantizes `x` with min-max parameters computed from `x` itself by the spec: each group's
    /// range is its minimum and maximum (PyTorch's `MinMaxObserver` then `quantize_per_channel`).
    /// Each channel or block is finished (range, parameters, values) while it is in cache.
    pub fn quantize_min_max(x: &Tensor<f32>, spec: QuantSpec) -> Result<Self> {
        Self::quantize_min_max_on(Isa::active(), x, spec)
    }

    /// [`Self::quantize_min_max`] on the kernel path `isa` (available).
    pub(crate) fn quantize_min_max_on(isa: Isa, x: &Tensor<f32>, spec: QuantSpec) -> Result<Self> {
        min_max_one_pass(isa, x.as_slice(), x.shape(), spec).or_else(|e| {
            // The error the two-step definition gives (the first non-finite element of the whole
            // tensor before any group's parameters), whichever span failed first.
            QuantParams::from_data(spec, x.as_slice(), x.shape())?;
            Err(e)
        })
    }

    /// Renamed: in ONNX Runtime "dynamic" means activations quantized at run time.
    #[deprecated(since = "0.2.0", note = "use QTensor::quantize_min_max")]
    pub fn quantize_dynamic(x: &Tensor<f32>, spec: QuantSpec) -> Result<Self> {
        Self::quantize_min_max(x, spec)
    }

    /// Wraps existing quantized data (its dtype must be the parameters' type and its shape fit them).
    pub fn from_parts(data: DynTensor, params: QuantParams) -> Result<Self> {
        params.layout_for(data.shape())?;
        let q = QTensor { data, params };
        check_qbuffer(q.as_qslice()?, q.params.spec(), q.data.len())?;
        Ok(q)
    }

    /// The quantized data and the parameters, without copying.
    pub fn into_parts(self) -> (DynTensor, QuantParams) {
        (self.data, self.params)
    }

    /// The quantized data.
    pub fn data(&self) -> &DynTensor {
        &self.data
    }

    /// The parameters.
    pub fn params(&self) -> &QuantParams {
        &self.params
    }

    /// The logical shape.
    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    /// The data as a typed slice.
    pub fn as_qslice(&self) -> Result<QSlice<'_>> {
        Ok(match &self.data {
            DynTensor::I8(t) => QSlice::I8(t.as_slice()),
            DynTensor::U8(t) => QSlice::U8(t.as_slice()),
            DynTensor::I16(t) => QSlice::I16(t.as_slice()),
            DynTensor::U16(t) => QSlice::U16(t.as_slice()),
            DynTensor::Packed4(Packed4 { signed: true, bytes, .. }) => QSlice::I4(bytes),
            DynTensor::Packed4(Packed4 { bytes, .. }) => QSlice::U4(bytes),
            other => {
                return Err(Error::UnsupportedDType { dtype: other.dtype(), operation: "quantized tensor" })
            }
        })
    }

    /// The quantized values, one `i32` per element (4-bit values unpacked).
    pub fn values(&self) -> Result<Vec<i32>> {
        let q = self.as_qslice()?;
        let mut v = crate::error::try_vec(self.data.len(), 0i32)?;
        for (i, d) in v.iter_mut().enumerate() {
            *d = q.get(i);
        }
        Ok(v)
    }

    /// The real values the data stands for.
    pub fn dequantize(&self) -> Result<Tensor<f32>> {
        let mut out = Tensor::<f32>::zeros(self.shape().to_vec())?;
        dequantize_into(self.as_qslice()?, self.shape(), &self.params, out.as_mut_slice())?;
        Ok(out)
    }
}

/// The quantized storage of a [`DynTensor`] as a typed mutable slice.
fn qslice_mut(data: &mut DynTensor) -> Result<QSliceMut<'_>> {
    Ok(match data {
        DynTensor::I8(t) => QSliceMut::I8(t.as_mut_slice()),
        DynTensor::U8(t) => QSliceMut::U8(t.as_mut_slice()),
        DynTensor::I16(t) => QSliceMut::I16(t.as_mut_slice()),
        DynTensor::U16(t) => QSliceMut::U16(t.as_mut_slice()),
        DynTensor::Packed4(Packed4 { signed: true, bytes, .. }) => QSliceMut::I4(bytes),
        DynTensor::Packed4(Packed4 { bytes, .. }) => QSliceMut::U4(bytes),
        other => return Err(Error::UnsupportedDType { dtype: other.dtype(), operation: "quantized tensor" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Granularity, Mode, Preset, ScaleType};
    use proptest::prelude::*;

    /// Element `i`'s group, from the layout's plain runs.
    fn groups_of(spec: &QuantSpec, shape: &[usize]) -> Vec<usize> {
        let mut g = vec![0; crate::tensor::numel(shape).unwrap()];
        spec.granularity
            .layout(shape)
            .unwrap()
            .runs(|start, count, group| g[start..start + count].fill(group));
        g
    }

    fn spec_strategy(rank: usize) -> impl Strategy<Value = QuantSpec> {
        let random = (
            prop::sample::select(QType::ALL.to_vec()),
            any::<bool>(),
            any::<bool>(),
            prop::sample::select(vec![Convention::Onnx, Convention::PyTorch, Convention::TfLite]),
            0usize..3,
            0..rank.max(1),
            1usize..40,
            0u8..3,
            any::<bool>(),
        )
            .prop_map(
                move |(qtype, symmetric, narrow, convention, g, axis, block, rounding, f16)| QuantSpec {
                    qtype,
                    mode: if symmetric { Mode::Symmetric } else { Mode::Affine },
                    narrow_range: narrow,
                    reduced_range: false,
                    granularity: match g {
                        0 => Granularity::PerTensor,
                        1 => Granularity::PerAxis { axis },
                        _ => Granularity::PerBlock { axis, block },
                    },
                    rounding: match rounding {
                        0 => Rounding::HalfEven,
                        1 => Rounding::HalfAway,
                        _ => Rounding::Stochastic { seed: 7 },
                    },
                    scale_type: if f16 { ScaleType::F16 } else { ScaleType::F32 },
                    convention,
                },
            );
        let preset = prop::sample::select(Preset::ALL.to_vec()).prop_map(QuantSpec::preset);
        prop_oneof![random, preset]
    }

    fn case() -> impl Strategy<Value = (Tensor<f32>, QuantSpec)> {
        let dim = prop::sample::select(vec![0usize, 1, 2, 3, 7, 31, 64, 65, 97, 257, 2053]);
        prop::collection::vec(dim, 1..4)
            .prop_filter("small enough", |s| s.iter().product::<usize>() <= 40_000)
            .prop_flat_map(|shape| {
                let n: usize = shape.iter().product();
                let values =
                    prop::collection::vec(prop_oneof![-3.0f32..3.0, Just(0.0), Just(-0.0), Just(0.5)], n);
                (Just(shape.clone()), values, 1e-3f32..1e3, spec_strategy(shape.len()))
            })
            .prop_map(|(shape, v, r, spec)| {
                (Tensor::from_vec(shape, v.into_iter().map(|v| v * r).collect()).unwrap(), spec)
            })
            .prop_filter("axis in range", |(x, spec)| spec.granularity.layout(x.shape()).is_ok())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

        /// The one-pass quantizer against its definition: parameters as `QuantParams::from_data`
        /// gives them, every value as the per-element f64 quantizer computes it, and for ONNX
        /// i8/u8 the bytes of the QuantizeLinear kernels run group by group; on every tier.
        #[test]
        fn one_pass_gives_the_two_step_definition_and_the_kernels_bytes((x, spec) in case()) {
            let params = QuantParams::from_data(spec, x.as_slice(), x.shape()).unwrap();
            let groups = groups_of(&spec, x.shape());
            let want: Vec<i32> = x.as_slice().iter().enumerate().map(|(i, &v)| {
                let g = groups[i];
                Quantizer::new(&spec, params.scales()[g], params.zero_points()[g]).quantize(v, i)
            }).collect();
            let full_onnx = onnx_kernel_case(&spec) && spec.qrange() == spec.qtype.range();
            for isa in Isa::available() {
                let q = QTensor::quantize_min_max_on(isa, &x, spec).unwrap();
                prop_assert_eq!(q.params(), &params, "{}", isa);
                prop_assert_eq!(&q.values().unwrap(), &want, "{} {:?}", isa, spec);
                let two_step = QTensor::quantize(&x, params.clone()).unwrap();
                prop_assert_eq!(q.data(), two_step.data(), "{}", isa);
                if full_onnx {
                    let mut bytes = vec![0u8; x.len()];
                    let mut ok = true;
                    spec.granularity.layout(x.shape()).unwrap().runs(|start, count, g| {
                        let (xs, y) = (&x.as_slice()[start..start + count], &mut bytes[start..start + count]);
                        let (s, z) = (params.scales()[g], params.zero_points()[g]);
                        ok &= match spec.qtype {
                            QType::I8 => kernel::quantize_i8_on(isa, xs, s, z as i8, bytemuck::cast_slice_mut(y)),
                            _ => kernel::quantize_u8_on(isa, xs, s, z as u8, y),
                        }
                        .is_ok();
                    });
                    prop_assert!(ok);
                    let got: Vec<u8> = match q.as_qslice().unwrap() {
                        QSlice::I8(v) => bytemuck::cast_slice(v).to_vec(),
                        QSlice::U8(v) => v.to_vec(),
                        other => panic!("{:?}", other.qtype()),
                    };
                    prop_assert_eq!(got, bytes, "{} kernels", isa);
                }
            }
        }
    }

    /// Blocks of 32 down the columns of a wide tensor (ONNX's 4-bit preset, and the same with i8 and
    /// half away from zero): every group's extreme lies on a tie, runs are longer than the AVX-512
    /// path's blocks of 64 vectors and end in a tail; every value as the per-element definition.
    #[test]
    fn column_blocks_with_their_extremes_on_ties_match_the_definition() {
        let (rows, cols) = (70, 2053);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect();
        let x = Tensor::from_vec([rows, cols], data).unwrap();
        let i4 = QuantSpec::preset(Preset::OnnxWeightI4Block32);
        let i8 = QuantSpec { qtype: QType::I8, ..i4 };
        let away = QuantSpec { rounding: Rounding::HalfAway, ..i8 };
        for spec in [i4, i8, away] {
            let params = QuantParams::from_data(spec, x.as_slice(), x.shape()).unwrap();
            let groups = groups_of(&spec, x.shape());
            let want: Vec<i32> = (0..x.len())
                .map(|i| {
                    let g = groups[i];
                    Quantizer::new(&spec, params.scales()[g], params.zero_points()[g])
                        .quantize(x.as_slice()[i], i)
                })
                .collect();
            for isa in Isa::available() {
                let q = QTensor::quantize_min_max_on(isa, &x, spec).unwrap();
                assert_eq!(q.values().unwrap(), want, "{isa} {spec:?}");
            }
        }
    }

    #[test]
    fn one_pass_names_the_first_non_finite_element_of_the_tensor() {
        let mut v: Vec<f32> = (0..4096).map(|i| i as f32 * 0.01).collect();
        v[3000] = f32::NAN;
        v[2100] = f32::INFINITY;
        let x = Tensor::from_vec([64, 64], v).unwrap();
        for g in [
            Granularity::PerTensor,
            Granularity::PerAxis { axis: 0 },
            Granularity::PerBlock { axis: 0, block: 8 },
        ] {
            let spec = QuantSpec::preset(Preset::PyTorchWeightI8PerChannel).with_granularity(g);
            for isa in Isa::available() {
                match QTensor::quantize_min_max_on(isa, &x, spec) {
                    Err(Error::NonFinite { index, .. }) => assert_eq!(index, 2100, "{isa} {g:?}"),
                    other => panic!("{isa} {g:?}: {other:?}"),
                }
            }
        }
    }
}
