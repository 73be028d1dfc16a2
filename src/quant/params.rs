//! What to quantize to and how ([`QuantSpec`]), the named conventions of other tools, and the
//! resulting scales and zero points ([`QuantParams`]).

use crate::error::{Error, Result};
use crate::kernels::convert::min_max_finite;
use crate::kernels::Isa;
use half::f16;

/// The integer type of quantized values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QType {
    /// Signed 4-bit, packed two per byte (first element in the low nibble).
    I4,
    /// Unsigned 4-bit, packed two per byte (first element in the low nibble).
    U4,
    /// Signed 8-bit.
    I8,
    /// Unsigned 8-bit.
    U8,
    /// Signed 16-bit.
    I16,
    /// Unsigned 16-bit.
    U16,
}

impl QType {
    /// Every quantized type.
    pub const ALL: [QType; 6] = [QType::I4, QType::U4, QType::I8, QType::U8, QType::I16, QType::U16];

    /// Bits per value.
    pub const fn bits(self) -> u32 {
        match self {
            QType::I4 | QType::U4 => 4,
            QType::I8 | QType::U8 => 8,
            QType::I16 | QType::U16 => 16,
        }
    }

    /// Whether the type is signed.
    pub const fn is_signed(self) -> bool {
        matches!(self, QType::I4 | QType::I8 | QType::I16)
    }

    /// The full range `[min, max]` of the type.
    pub const fn range(self) -> (i32, i32) {
        let b = self.bits();
        if self.is_signed() {
            (-(1 << (b - 1)), (1 << (b - 1)) - 1)
        } else {
            (0, (1 << b) - 1)
        }
    }

    /// The storage [`DType`](crate::DType) of tensors of this type.
    pub const fn dtype(self) -> crate::DType {
        match self {
            QType::I4 => crate::DType::I4,
            QType::U4 => crate::DType::U4,
            QType::I8 => crate::DType::I8,
            QType::U8 => crate::DType::U8,
            QType::I16 => crate::DType::I16,
            QType::U16 => crate::DType::U16,
        }
    }
}

/// How the real range maps onto the integer range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The range is made symmetric, `[-max|x|, max|x|]`, and the zero point sits in the middle.
    Symmetric,
    /// The range `[min(0, min x), max(0, max x)]` maps onto the whole integer range (zero point free).
    Affine,
}

/// Which elements share a scale and zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One pair for the whole tensor; parameter shape `[]`.
    PerTensor,
    /// One pair per index along `axis`; parameter shape `[shape[axis]]`.
    PerAxis {
        /// The axis (dimension) the parameters run along.
        axis: usize,
    },
    /// One pair per run of `block` consecutive indices along `axis` (the last block may be shorter);
    /// parameter shape: the tensor's shape with `shape[axis]` replaced by `ceil(shape[axis] / block)`,
    /// as ONNX blocked quantization lays it out.
    PerBlock {
        /// The axis the blocks run along.
        axis: usize,
        /// Elements per block (at least 1).
        block: usize,
    },
}

/// Where the values of each parameter group lie in a row-major tensor: the layout behind a [`Granularity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One group of `n` elements.
    Tensor { n: usize },
    /// Group = index along the axis; the tensor is `[outer, len, inner]` around it.
    Axis { outer: usize, len: usize, inner: usize },
    /// Group = (outer, index / block, inner) over `[outer, len, inner]`.
    Block { outer: usize, len: usize, inner: usize, block: usize },
}

impl Layout {
    /// Number of parameter groups.
    pub(crate) fn groups(&self) -> usize {
        match *self {
            Layout::Tensor { .. } => 1,
            Layout::Axis { len, .. } => len,
            Layout::Block { outer, len, inner, block } => outer * len.div_ceil(block) * inner,
        }
    }

    /// Calls `f(start, count, group)` for each contiguous run of elements sharing a group, in
    /// increasing order of `start`, covering every element once.
    pub(crate) fn runs(&self, mut f: impl FnMut(usize, usize, usize)) {
        match *self {
            Layout::Tensor { n } => f(0, n, 0),
            Layout::Axis { outer, len, inner } => {
                let mut start = 0;
                for _ in 0..outer {
                    for a in 0..len {
                        f(start, inner, a);
                        start += inner;
                    }
                }
            }
            Layout::Block { outer, len, inner, block } => {
                let blocks = len.div_ceil(block);
                let mut start = 0;
                for o in 0..outer {
                    for a in 0..len {
                        let base = (o * blocks + a / block) * inner;
                        if inner == 1 {
                            // The indices of one block are contiguous: one run per block.
                            if a % block == 0 {
                                let count = block.min(len - a);
                                f(start, count, base);
                                start += count;
                            }
                        } else {
                            for k in 0..inner {
                                f(start + k, 1, base + k);
                            }
                            start += inner;
                        }
                    }
                }
            }
        }
    }
    /// Whether [`Self::segments`] gives per-element segments (channels or blocks across a row).
    pub(crate) fn per_element(&self) -> bool {
        matches!(*self, Layout::Axis { inner: 1, .. })
            || matches!(*self, Layout::Block { inner, .. } if inner > 1)
    }

    /// Calls `f(start, count, group, per_element)` for contiguous segments covering every element
    /// once, in increasing order: with `per_element` false the whole segment is in `group`; with it
    /// true element `start + i` is in group `group + i` (channels or blocks that run across a row).
    /// Segments are as long as the layout allows, so that a kernel call covers each.
    pub(crate) fn segments(&self, mut f: impl FnMut(usize, usize, usize, bool)) {
        match *self {
            Layout::Axis { outer, len, inner: 1 } => {
                for o in 0..outer {
                    f(o * len, len, 0, true);
                }
            }
            Layout::Block { outer, len, inner, block } if inner > 1 => {
                let blocks = len.div_ceil(block);
                for o in 0..outer {
                    for a in 0..len {
                        f((o * len + a) * inner, inner, (o * blocks + a / block) * inner, true);
                    }
                }
            }
            _ => self.runs(|start, count, g| f(start, count, g, false)),
        }
    }

    /// Each group's minimum and maximum (`+inf` and `-inf` for a group with no element). A NaN or
    /// an infinity in `x` is an error naming its index.
    pub(crate) fn ranges(&self, x: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let groups = self.groups();
        let mut mins = crate::error::try_vec(groups, f32::INFINITY)?;
        let mut maxs = crate::error::try_vec(groups, f32::NEG_INFINITY)?;
        if !self.ranges_into(Isa::active(), x, &mut mins, &mut maxs) {
            return Err(crate::kernels::math::non_finite("x", x));
        }
        Ok((mins, maxs))
    }

    /// Widens `mins` and `maxs` (one per group) to each group's values in `x`, on the path `isa`
    /// (available); false if `x` holds a NaN or an infinity.
    pub(crate) fn ranges_into(&self, isa: Isa, x: &[f32], mins: &mut [f32], maxs: &mut [f32]) -> bool {
        if let Layout::Axis { len, inner: 1, .. } = *self {
            // Every row runs across all the groups: one call for the whole layout.
            let (lo, hi) = (&mut mins[..len], &mut maxs[..len]);
            return crate::kernels::convert::general::min_max_columns_on(isa, x, lo, hi);
        }
        let mut finite = true;
        self.segments(|start, count, g, per_element| {
            let run = &x[start..start + count];
            if per_element {
                // Column-wise: each element updates its own group.
                let (lo, hi) = (&mut mins[g..g + count], &mut maxs[g..g + count]);
                finite &= crate::kernels::convert::general::min_max_columns_on(isa, run, lo, hi);
            } else {
                let (lo, hi, run_finite) = min_max_finite(run);
                mins[g] = mins[g].min(lo);
                maxs[g] = maxs[g].max(hi);
                finite &= run_finite;
            }
        });
        finite
    }

    /// Calls `f` for contiguous spans that each hold every element of their groups, covering every
    /// element and every group once in increasing order: a one-pass quantizer finishes a span (its
    /// range, parameters and values) while it is in cache. Per-channel rows along a leading axis
    /// and blocks are spans of their own; the rest is one span.
    pub(crate) fn spans(&self, mut f: impl FnMut(Span) -> Result<()>) -> Result<()> {
        match *self {
            Layout::Axis { outer: 1, len, inner } if inner >= MIN_SPAN => {
                for a in 0..len {
                    f(Span { start: a * inner, layout: Layout::Tensor { n: inner }, group: a })?;
                }
                Ok(())
            }
            Layout::Block { outer, len, inner, block } => {
                let blocks = len.div_ceil(block);
                for o in 0..outer {
                    for b in 0..blocks {
                        let rows = block.min(len - b * block);
                        let start = (o * len + b * block) * inner;
                        let group = (o * blocks + b) * inner;
                        let layout = if inner == 1 {
                            Layout::Tensor { n: rows }
                        } else {
                            // Groups are the columns of a `rows x inner` strip.
                            Layout::Axis { outer: rows, len: inner, inner: 1 }
                        };
                        f(Span { start, layout, group })?;
                    }
                }
                Ok(())
            }
            _ => f(Span { start: 0, layout: *self, group: 0 }),
        }
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        match *self {
            Layout::Tensor { n } => n,
            Layout::Axis { outer, len, inner } | Layout::Block { outer, len, inner, .. } => {
                outer * len * inner
            }
        }
    }
}

/// Rows shorter than this are not spans of their own (see [`Layout::spans`]): the per-span work
/// would outweigh the cache it saves.
const MIN_SPAN: usize = 64;

/// A contiguous span of a tensor that holds every element of its groups (see [`Layout::spans`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// The first element.
    pub(crate) start: usize,
    /// The span's own layout (its length is the span's).
    pub(crate) layout: Layout,
    /// The tensor's group that is the span's group 0; the span's groups are consecutive.
    pub(crate) group: usize,
}

impl Granularity {
    /// The group layout over a tensor of `shape`, checking the axis and block size.
    pub(crate) fn layout(&self, shape: &[usize]) -> Result<Layout> {
        let n = crate::tensor::numel(shape)?;
        let (axis, block) = match *self {
            Granularity::PerTensor => return Ok(Layout::Tensor { n }),
            Granularity::PerAxis { axis } => (axis, None),
            Granularity::PerBlock { axis, block } => {
                if block == 0 {
                    return Err(Error::invalid("block", block, "block size must be at least 1"));
                }
                (axis, Some(block))
            }
        };
        let (outer, len, inner) = crate::tensor::split_at_axis(shape, axis).ok_or_else(|| {
            Error::invalid("axis", axis, format!("out of range for a tensor of {} dimensions", shape.len()))
        })?;
        Ok(match block {
            None => Layout::Axis { outer, len, inner },
            Some(block) => Layout::Block { outer, len, inner, block },
        })
    }

    /// The shape of the scales and zero points for a tensor of `shape`.
    pub fn param_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.layout(shape)?;
        Ok(match *self {
            Granularity::PerTensor => Vec::new(),
            Granularity::PerAxis { axis } => vec![shape[axis]],
            Granularity::PerBlock { axis, block } => {
                let mut s = shape.to_vec();
                s[axis] = s[axis].div_ceil(block);
                s
            }
        })
    }
}

/// How `x / scale` becomes an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Rounding {
    /// Round half to even (ONNX, PyTorch, numpy): the default.
    #[default]
    HalfEven,
    /// Round half away from zero (C `round`, TensorFlow Lite's `TfLiteRound`).
    HalfAway,
    /// `floor(v + u)` with `u` uniform in `[0, 1)` from a counter-based generator keyed by the seed and
    /// the element's flat index: unbiased in expectation and reproducible whatever the chunking.
    Stochastic {
        /// The generator's key.
        seed: u64,
    },
}

/// The float type scales are stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ScaleType {
    /// IEEE binary32.
    #[default]
    F32,
    /// IEEE binary16: computed scales are rounded to the nearest f16 and clamped into its normal range.
    F16,
}

/// Whose formulas turn a real range into parameters, and how values are divided by the scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Convention {
    /// ONNX Runtime (`quant_utils.compute_scale_zp`): `rmin = min(0, min)`, `rmax = max(0, max)`;
    /// symmetric: `rmax = max(|rmin|, |rmax|)`, `rmin = -rmax`; `scale = f32((f64(rmax) - f64(rmin)) /
    /// (qmax - qmin))`, computed in f64; a scale (in f64) below f32's smallest normal becomes 1 with zero
    /// point 0; zero point `round_half_even((qmin + qmax) / 2)` when symmetric, else
    /// `round_half_even(qmin - rmin / scale)` in f64. Quantize: `x / scale` in f32.
    #[default]
    Onnx,
    /// PyTorch observers (`_calculate_qparams`), all in f32: `rmin = min(0, min)`, `rmax = max(0, max)`;
    /// symmetric: `scale = max(-rmin, rmax) / ((qmax - qmin) / 2)`, zero point 0 for signed types and
    /// `(qmin + qmax + 1) / 2` (128 for u8) for unsigned; affine: `scale = (rmax - rmin) / (qmax - qmin)`,
    /// zero point `clamp(qmin - round_half_even(rmin / scale))`; both floored at `eps = 2^-23`.
    /// Quantize: `x * (1 / scale)` in f32.
    PyTorch,
    /// TensorFlow Lite (`quantization_utils.cc`), all in f32: symmetric: `scale = max|x| / qmax` (1 when
    /// the range is 0), zero point 0; affine: `rmin = min(0, min)`, `rmax = max(0, max)`, `scale = (rmax -
    /// rmin) / (qmax - qmin)`, zero point `round_half_away(qmin - rmin / scale)` clamped into the range.
    /// Quantize: `x * (1 / scale)` in f32; pair with [`Rounding::HalfAway`].
    TfLite,
}

/// Everything that decides how a float tensor becomes integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantSpec {
    /// The integer type.
    pub qtype: QType,
    /// Symmetric or affine.
    pub mode: Mode,
    /// Drop the most negative value of signed types (`[-127, 127]` for i8) and the top value of unsigned
    /// ones (`[0, 254]` for u8), so that the range is symmetric about its middle.
    pub narrow_range: bool,
    /// Use one bit less (7-bit values in an 8-bit type) for kernels whose pair sums would saturate:
    /// ONNX Runtime's table (i8 `[-64, 64]`, u8 `[0, 127]`, i16 `[-16384, 16384]`, u16 `[0, 32767]`,
    /// i4 `[-4, 3]`, u4 `[0, 7]`) under [`Convention::Onnx`], else `[-2^(b-2), 2^(b-2) - 1]` /
    /// `[0, 2^(b-1) - 1]`. Takes precedence over `narrow_range`.
    pub reduced_range: bool,
    /// Which elements share parameters.
    pub granularity: Granularity,
    /// How values are rounded.
    pub rounding: Rounding,
    /// The float type of the scales.
    pub scale_type: ScaleType,
    /// Whose formulas compute the parameters and the division.
    pub convention: Convention,
}

/// Named presets: the conventions of the tools users come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// ONNX Runtime activations: u8 affine per tensor, half to even.
    OnnxActivationU8,
    /// ONNX Runtime weights: i8 symmetric on `[-127, 127]` (zero point 0), per tensor.
    OnnxWeightI8,
    /// ONNX Runtime 4-bit weights (MatMulNBits style): i4 symmetric, per block of 32 along axis 0.
    OnnxWeightI4Block32,
    /// PyTorch `MinMaxObserver` default: u8 (`quint8`) affine per tensor.
    PyTorchActivationU8,
    /// PyTorch `PerChannelMinMaxObserver` for weights: i8 (`qint8`) symmetric per axis 0.
    PyTorchWeightI8PerChannel,
    /// TensorFlow Lite activations: i8 affine on `[-128, 127]`, ties away from zero.
    TfLiteActivationI8,
    /// TensorFlow Lite weights: i8 symmetric on `[-127, 127]` per axis 0, ties away from zero.
    TfLiteWeightI8PerChannel,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 7] = [
        Preset::OnnxActivationU8,
        Preset::OnnxWeightI8,
        Preset::OnnxWeightI4Block32,
        Preset::PyTorchActivationU8,
        Preset::PyTorchWeightI8PerChannel,
        Preset::TfLiteActivationI8,
        Preset::TfLiteWeightI8PerChannel,
    ];
}

impl QuantSpec {
    /// Per-tensor, full-range, half-to-even ONNX spec of `qtype` and `mode` (narrow for symmetric i8/i16,
    /// as ONNX Runtime does).
    pub const fn new(qtype: QType, mode: Mode) -> Self {
        QuantSpec {
            qtype,
            mode,
            narrow_range: matches!(mode, Mode::Symmetric) && matches!(qtype, QType::I8 | QType::I16),
            reduced_range: false,
            granularity: Granularity::PerTensor,
            rounding: Rounding::HalfEven,
            scale_type: ScaleType::F32,
            convention: Convention::Onnx,
        }
    }

    /// The spec of a named preset.
    pub fn preset(preset: Preset) -> Self {
        use Preset::*;
        let base = |qtype, mode, convention| QuantSpec {
            qtype,
            mode,
            narrow_range: false,
            reduced_range: false,
            granularity: Granularity::PerTensor,
            rounding: Rounding::HalfEven,
            scale_type: ScaleType::F32,
            convention,
        };
        match preset {
            OnnxActivationU8 => base(QType::U8, Mode::Affine, Convention::Onnx),
            OnnxWeightI8 => {
                QuantSpec { narrow_range: true, ..base(QType::I8, Mode::Symmetric, Convention::Onnx) }
            }
            OnnxWeightI4Block32 => QuantSpec {
                granularity: Granularity::PerBlock { axis: 0, block: 32 },
                ..base(QType::I4, Mode::Symmetric, Convention::Onnx)
            },
            PyTorchActivationU8 => base(QType::U8, Mode::Affine, Convention::PyTorch),
            PyTorchWeightI8PerChannel => QuantSpec {
                granularity: Granularity::PerAxis { axis: 0 },
                ..base(QType::I8, Mode::Symmetric, Convention::PyTorch)
            },
            TfLiteActivationI8 => QuantSpec {
                rounding: Rounding::HalfAway,
                ..base(QType::I8, Mode::Affine, Convention::TfLite)
            },
            TfLiteWeightI8PerChannel => QuantSpec {
                narrow_range: true,
                rounding: Rounding::HalfAway,
                granularity: Granularity::PerAxis { axis: 0 },
                ..base(QType::I8, Mode::Symmetric, Convention::TfLite)
            },
        }
    }

    /// The same spec with another granularity.
    pub const fn with_granularity(self, granularity: Granularity) -> Self {
        QuantSpec { granularity, ..self }
    }

    /// The integer range `[qmin, qmax]` values are clamped to.
    pub fn qrange(&self) -> (i32, i32) {
        let (lo, hi) = self.qtype.range();
        let b = self.qtype.bits();
        let signed = self.qtype.is_signed();
        if self.reduced_range {
            return match (signed, self.convention, self.qtype) {
                (true, Convention::Onnx, QType::I4) => (-4, 3),
                (true, Convention::Onnx, _) => (-(1 << (b - 2)), 1 << (b - 2)),
                (true, _, _) => (-(1 << (b - 2)), (1 << (b - 2)) - 1),
                (false, _, _) => (0, (1 << (b - 1)) - 1),
            };
        }
        match (self.narrow_range, signed) {
            (true, true) => (lo + 1, hi),
            (true, false) => (lo, hi - 1),
            (false, _) => (lo, hi),
        }
    }

    /// Parameters for one group whose values lie in `[min, max]` (finite, `min <= max`), by the
    /// spec's convention (see [`Convention`]).
    pub fn params_for_range(&self, min: f32, max: f32) -> Result<(f32, i32)> {
        self.params_in(self.qrange(), min, max)
    }

    /// Each group's parameters from its range as found (`min > max` for an empty group, which
    /// takes the range `[0, 0]`), on the active tier's instructions (its rounding of f64 is one
    /// instruction where the baseline calls libm).
    pub(crate) fn params_for_ranges(
        &self,
        mins: &[f32],
        maxs: &[f32],
        scales: &mut [f32],
        zero_points: &mut [i32],
    ) -> Result<()> {
        #[inline(always)]
        fn each(
            spec: &QuantSpec,
            mins: &[f32],
            maxs: &[f32],
            scales: &mut [f32],
            zero_points: &mut [i32],
        ) -> Result<()> {
            let qrange = spec.qrange();
            if spec.convention == Convention::Onnx
                && spec.scale_type == ScaleType::F32
                && onnx_f32_params(spec.mode == Mode::Symmetric, qrange, mins, maxs, scales, zero_points)
            {
                return Ok(());
            }
            for (((&lo, &hi), s), z) in
                mins.iter().zip(maxs).zip(scales.iter_mut()).zip(zero_points.iter_mut())
            {
                let (lo, hi) = if lo > hi { (0.0, 0.0) } else { (lo, hi) };
                (*s, *z) = spec.params_in(qrange, lo, hi)?;
            }
            Ok(())
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn each_avx2(
            spec: &QuantSpec,
            mins: &[f32],
            maxs: &[f32],
            scales: &mut [f32],
            zero_points: &mut [i32],
        ) -> Result<()> {
            each(spec, mins, maxs, scales, zero_points)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
        fn each_avx512(
            spec: &QuantSpec,
            mins: &[f32],
            maxs: &[f32],
            scales: &mut [f32],
            zero_points: &mut [i32],
        ) -> Result<()> {
            each(spec, mins, maxs, scales, zero_points)
        }
        match Isa::active() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the active tier is available: the CPU has AVX2, FMA and F16C.
            Isa::Avx2 => unsafe { each_avx2(self, mins, maxs, scales, zero_points) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the active tier is available: the CPU has AVX-512 F/BW/VL/DQ and AVX2's set.
            Isa::Avx512 => unsafe { each_avx512(self, mins, maxs, scales, zero_points) },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::Dotprod | Isa::I8mm => each(self, mins, maxs, scales, zero_points),
            Isa::Scalar => each(self, mins, maxs, scales, zero_points),
        }
    }

    /// [`Self::params_for_range`] with the integer range given.
    #[inline(always)]
    fn params_in(&self, (qmin, qmax): (i32, i32), min: f32, max: f32) -> Result<(f32, i32)> {
        if !(min.is_finite() && max.is_finite()) || min > max {
            return Err(Error::invalid("range", format!("[{min}, {max}]"), "must be finite with min <= max"));
        }
        let symmetric = self.mode == Mode::Symmetric;
        let rmin = min.min(0.0);
        let rmax = max.max(0.0);
        let (scale, zp) = match self.convention {
            Convention::Onnx => {
                let (rmin, rmax) = if symmetric {
                    let a = rmin.abs().max(rmax.abs());
                    (-a, a)
                } else {
                    (rmin, rmax)
                };
                let scale = (f64::from(rmax) - f64::from(rmin)) / (f64::from(qmax) - f64::from(qmin));
                if scale < f64::from(f32::MIN_POSITIVE) {
                    (1.0, 0)
                } else {
                    let scale32 = self.store_scale(scale as f32);
                    let zp = if symmetric {
                        (f64::from(qmin + qmax) / 2.0).round_ties_even()
                    } else {
                        // The zero point follows the stored scale (identical when it is f32).
                        let s = if self.scale_type == ScaleType::F32 { scale } else { f64::from(scale32) };
                        (f64::from(qmin) - f64::from(rmin) / s).round_ties_even()
                    };
                    (scale32, zp as i32)
                }
            }
            Convention::PyTorch => {
                let eps = f32::EPSILON;
                if symmetric {
                    let a = (-rmin).max(rmax);
                    let scale = self.store_scale((a / ((qmax - qmin) as f32 / 2.0)).max(eps));
                    let zp = if self.qtype.is_signed() { 0 } else { (qmin + qmax + 1) / 2 };
                    (scale, zp)
                } else {
                    let scale = self.store_scale(((rmax - rmin) / (qmax - qmin) as f32).max(eps));
                    let zp = qmin - (rmin / scale).round_ties_even() as i32;
                    (scale, zp)
                }
            }
            Convention::TfLite => {
                if symmetric {
                    let a = min.abs().max(max.abs());
                    let scale = if a == 0.0 { 1.0 } else { self.store_scale(a / qmax as f32) };
                    (scale, 0)
                } else {
                    let scale = (rmax - rmin) / (qmax - qmin) as f32;
                    if scale == 0.0 {
                        (1.0, qmin.max(0).min(qmax))
                    } else {
                        let scale = self.store_scale(scale);
                        let zp_real = qmin as f32 - rmin / scale;
                        (scale, zp_real.round() as i32)
                    }
                }
            }
        };
        crate::kernels::convert::check_scale(scale)?;
        Ok((scale, zp.clamp(qmin, qmax)))
    }

    /// Rounds a computed scale to the scale type (f16: nearest, clamped into the normal range).
    fn store_scale(&self, scale: f32) -> f32 {
        match self.scale_type {
            ScaleType::F32 => scale,
            ScaleType::F16 => {
                f16::from_f32(scale).to_f32().clamp(f16::MIN_POSITIVE.to_f32(), f16::MAX.to_f32())
            }
        }
    }
}

/// [`QuantSpec::params_for_ranges`] for ONNX with f32 scales: each group's `params_in` in the same
/// f64 operations, without branches, so that the compiler vectorizes it. False if any group fails
/// `params_in`'s checks (the caller then runs `params_in`, which names the failure).
#[inline(always)]
fn onnx_f32_params(
    symmetric: bool,
    (qmin, qmax): (i32, i32),
    mins: &[f32],
    maxs: &[f32],
    scales: &mut [f32],
    zero_points: &mut [i32],
) -> bool {
    let width = f64::from(qmax) - f64::from(qmin);
    let middle = (f64::from(qmin + qmax) / 2.0).round_ties_even();
    let (qmin, qmax) = (f64::from(qmin), f64::from(qmax));
    let mut valid = true;
    for (((&lo, &hi), s), z) in mins.iter().zip(maxs).zip(scales.iter_mut()).zip(zero_points.iter_mut()) {
        let (lo, hi) = if lo > hi { (0.0, 0.0) } else { (lo, hi) };
        valid &= lo.is_finite() & hi.is_finite();
        let (rmin, rmax) = (lo.min(0.0), hi.max(0.0));
        let (rmin, rmax) = if symmetric {
            let a = rmin.abs().max(rmax.abs());
            (-a, a)
        } else {
            (rmin, rmax)
        };
        let scale = (f64::from(rmax) - f64::from(rmin)) / width;
        let tiny = scale < f64::from(f32::MIN_POSITIVE);
        let zp = if symmetric { middle } else { (qmin - f64::from(rmin) / scale).round_ties_even() };
        *s = if tiny { 1.0 } else { scale as f32 };
        // Clamped by selects (NaN, from an invalid range, goes to `qmin`), then converted by
        // adding 1.5 * 2^52, which leaves an integer below 2^31 in the low 32 bits: both vectorize,
        // unlike `clamp` and the saturating `as i32`.
        let zp = if tiny { 0.0 } else { zp };
        let zp = if zp > qmin { zp } else { qmin };
        let zp = if zp < qmax { zp } else { qmax };
        *z = (zp + 6_755_399_441_055_744.0).to_bits() as i32;
        valid &= s.is_normal();
    }
    valid
}

/// Scales and zero points of one quantized tensor, with the spec they belong to.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantParams {
    spec: QuantSpec,
    shape: Vec<usize>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
}

impl QuantParams {
    /// Parameters given explicitly, in the layout `spec.granularity.param_shape(..)` gives (`shape`).
    /// Every scale must be positive, finite and normal (and an f16 value when the scale type is f16);
    /// every zero point must lie in the type's range.
    pub fn new(spec: QuantSpec, shape: Vec<usize>, scales: Vec<f32>, zero_points: Vec<i32>) -> Result<Self> {
        let groups = crate::tensor::numel(&shape)?;
        match spec.granularity {
            Granularity::PerTensor if !shape.is_empty() => {
                return Err(Error::ShapeMismatch {
                    context: "per-tensor parameters",
                    expected: vec![],
                    actual: shape,
                });
            }
            Granularity::PerAxis { .. } if shape.len() != 1 => {
                return Err(Error::invalid(
                    "shape",
                    format!("{shape:?}"),
                    "per-axis parameters are one-dimensional",
                ));
            }
            Granularity::PerBlock { block: 0, .. } => {
                return Err(Error::invalid("block", 0, "block size must be at least 1"));
            }
            _ => {}
        }
        for (name, len) in [("scales", scales.len()), ("zero_points", zero_points.len())] {
            if len != groups {
                return Err(Error::ShapeMismatch {
                    context: name,
                    expected: vec![groups],
                    actual: vec![len],
                });
            }
        }
        for (i, &s) in scales.iter().enumerate() {
            crate::kernels::convert::check_scale(s).map_err(|_| {
                Error::invalid("scales", format!("[{i}] = {s}"), "must be positive, finite and normal")
            })?;
            if spec.scale_type == ScaleType::F16 && f16::from_f32(s).to_f32() != s {
                return Err(Error::invalid("scales", format!("[{i}] = {s}"), "not representable as f16"));
            }
        }
        let (lo, hi) = spec.qtype.range();
        if let Some((i, z)) = zero_points.iter().enumerate().find(|(_, &z)| z < lo || z > hi) {
            return Err(Error::invalid(
                "zero_points",
                format!("[{i}] = {z}"),
                format!("outside the range [{lo}, {hi}] of {:?}", spec.qtype),
            ));
        }
        Ok(QuantParams { spec, shape, scales, zero_points })
    }

    /// Parameters as [`QuantSpec::params_for_range`] computes them (valid by construction), in the
    /// layout of `shape`.
    pub(crate) fn computed(
        spec: QuantSpec,
        shape: Vec<usize>,
        scales: Vec<f32>,
        zero_points: Vec<i32>,
    ) -> Self {
        QuantParams { spec, shape, scales, zero_points }
    }

    /// Parameters from each group's `[min, max]` (same layout as the scales), by the spec's convention.
    pub fn from_ranges(spec: QuantSpec, shape: Vec<usize>, mins: &[f32], maxs: &[f32]) -> Result<Self> {
        crate::kernels::convert::check_no_nan("mins", mins)?;
        crate::kernels::convert::check_no_nan("maxs", maxs)?;
        if mins.len() != maxs.len() {
            return Err(Error::ShapeMismatch {
                context: "maxs",
                expected: vec![mins.len()],
                actual: vec![maxs.len()],
            });
        }
        let mut scales = crate::error::try_vec(mins.len(), 0.0f32)?;
        let mut zero_points = crate::error::try_vec(mins.len(), 0i32)?;
        for (i, (&lo, &hi)) in mins.iter().zip(maxs).enumerate() {
            let (s, z) = spec.params_for_range(lo, hi).map_err(|e| match e {
                Error::InvalidArgument { reason, value, .. } => {
                    Error::invalid("range", format!("group {i}: {value}"), reason)
                }
                other => other,
            })?;
            scales[i] = s;
            zero_points[i] = z;
        }
        Self::new(spec, shape, scales, zero_points)
    }

    /// Min-max parameters for `x` of `shape` (dynamic quantization): each group's range is its
    /// minimum and maximum. A NaN or an infinity is an error naming its index.
    pub fn from_data(spec: QuantSpec, x: &[f32], shape: &[usize]) -> Result<Self> {
        let layout = check_data(spec.granularity, x, shape)?;
        let (mut mins, mut maxs) = layout.ranges(x)?;
        for (lo, hi) in mins.iter_mut().zip(maxs.iter_mut()) {
            if lo > hi {
                // An empty group: any range will do.
                (*lo, *hi) = (0.0, 0.0);
            }
        }
        Self::from_ranges(spec, spec.granularity.param_shape(shape)?, &mins, &maxs)
    }

    /// The spec.
    pub fn spec(&self) -> &QuantSpec {
        &self.spec
    }

    /// The shape of the scales and zero points.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The scales, row-major in [`Self::shape`].
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The zero points, row-major in [`Self::shape`].
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }

    /// Checks that these parameters fit a tensor of `shape` and returns the group layout.
    pub(crate) fn layout_for(&self, shape: &[usize]) -> Result<Layout> {
        let layout = self.spec.granularity.layout(shape)?;
        let expected = self.spec.granularity.param_shape(shape)?;
        if expected != self.shape {
            return Err(Error::ShapeMismatch {
                context: "quantization parameters",
                expected,
                actual: self.shape.clone(),
            });
        }
        Ok(layout)
    }
}

/// Checks that `x` has `numel(shape)` elements and that the granularity fits the shape.
pub(crate) fn check_data(granularity: Granularity, x: &[f32], shape: &[usize]) -> Result<Layout> {
    let n = crate::tensor::numel(shape)?;
    if x.len() != n {
        return Err(Error::ShapeMismatch {
            context: "data length vs shape",
            expected: vec![n],
            actual: vec![x.len()],
        });
    }
    granularity.layout(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A group's range: ordinary, tiny, huge, zero-width, empty or not finite.
    fn range() -> impl Strategy<Value = (f32, f32)> {
        let value = prop_oneof![
            4 => -10.0f32..10.0,
            1 => prop::sample::select(vec![
                0.0, -0.0, 1e-40, -1e-40, 1e-38, 3e38, -3e38, f32::MAX, f32::MIN, f32::INFINITY, f32::NAN,
            ]),
        ];
        (value.clone(), value).prop_map(|(a, b)| if a <= b || a.is_nan() { (a, b) } else { (b, a) })
    }

    proptest! {
        /// The vectorized ONNX path gives each group exactly what `params_in` gives it, and fails
        /// (with `params_in`'s error) exactly where one group does.
        #[test]
        fn ranges_at_once_match_one_range_at_a_time(
            qtype in prop::sample::select(vec![QType::I4, QType::U4, QType::I8, QType::U8, QType::I16, QType::U16]),
            symmetric: bool,
            narrow_range: bool,
            reduced_range: bool,
            mut ranges in prop::collection::vec(range(), 0..40),
            empty_at in 0usize..40,
        ) {
            let mode = if symmetric { Mode::Symmetric } else { Mode::Affine };
            let spec = QuantSpec { narrow_range, reduced_range, ..QuantSpec::new(qtype, mode) };
            if empty_at < ranges.len() {
                ranges[empty_at] = (f32::INFINITY, f32::NEG_INFINITY);
            }
            let (mins, maxs): (Vec<f32>, Vec<f32>) = ranges.iter().copied().unzip();
            let want: Result<Vec<(f32, i32)>> = ranges
                .iter()
                .map(|&(lo, hi)| {
                    let (lo, hi) = if lo > hi { (0.0, 0.0) } else { (lo, hi) };
                    spec.params_in(spec.qrange(), lo, hi)
                })
                .collect();
            let (mut scales, mut zero_points) = (vec![0f32; ranges.len()], vec![0i32; ranges.len()]);
            let got = spec.params_for_ranges(&mins, &maxs, &mut scales, &mut zero_points);
            match want {
                Ok(want) => {
                    prop_assert!(got.is_ok());
                    let got: Vec<(u32, i32)> = scales.iter().map(|s| s.to_bits()).zip(zero_points).collect();
                    let want: Vec<(u32, i32)> = want.iter().map(|(s, z)| (s.to_bits(), *z)).collect();
                    prop_assert_eq!(got, want);
                }
                Err(e) => prop_assert_eq!(got.unwrap_err().to_string(), e.to_string()),
            }
        }
    }
}
