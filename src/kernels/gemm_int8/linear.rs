//! The quantized linear layer: `y = x W^T + b` with W int8 per output channel, x quantized per row.

use super::blocking::{MC, MR, PARALLEL_MIN_MACS};
use super::kernel::Tier;
use super::sparse24::{check_2_4, Sparse24};
use super::{
    can_dequant, check_matrix, gemm_packed_dequant, gemm_packed_dequant_columns, gemm_packed_with, Dequant,
    Kernel, PackedI8, RowQuant, Update,
};
use crate::error::{check_len, try_vec};
use crate::kernels::convert::{
    min_max_finite, min_max_finite_on, quantize_i8_scanned_on, quantize_u8_scanned_on, scalar,
};
use crate::kernels::math::{check_finite, non_finite};
use crate::kernels::Isa;
use crate::{Error, Result};
use std::cell::Cell;

/// How the layer quantizes its f32 input, one scale (and zero point) per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationQuant {
    /// u8 affine over `[min(0, min x), max(0, max x)]`, as ONNX DynamicQuantizeLinear and ONNX
    /// Runtime's dynamic quantization do.
    U8Affine,
    /// i8 symmetric: scale `max |x| / 127`, zero point 0.
    I8Symmetric,
}

/// A linear layer with int8 weights per output channel (scale and zero point per row of W),
/// prepacked for the GEMM, dense or 2:4 sparse ([`QuantLinear::from_float_2_4`]).
#[derive(Clone, Debug)]
pub struct QuantLinear {
    weights: Weights,
    scales: Vec<f32>,
    /// Per output channel; empty when every zero point is 0 (symmetric weights).
    zero_points: Vec<i32>,
    bias: Vec<f32>,
}

/// How a [`QuantLinear`] holds its integers.
#[derive(Clone, Debug)]
enum Weights {
    /// Every weight, packed for the dense GEMM.
    Dense(PackedI8),
    /// Two of every four along a row, for the 2:4 kernel (see `sparse24`).
    TwoFour(Sparse24),
}

/// `max |x| / limit`, or 1 when that is zero or subnormal (as ONNX Runtime; zeros stay exact).
fn symmetric_scale(x: &[f32], limit: f32) -> f32 {
    let (lo, hi, _) = min_max_finite(x);
    symmetric_from_range(lo, hi, limit)
}

/// [`symmetric_scale`] of values in `[lo, hi]`.
fn symmetric_from_range(lo: f32, hi: f32, limit: f32) -> f32 {
    let scale = hi.max(-lo).max(0.0) / limit;
    if scale.is_normal() {
        scale
    } else {
        1.0
    }
}

impl QuantLinear {
    /// Quantizes f32 weights W (`out_features x in_features`, row-major) per output channel,
    /// symmetric: `scale = max |w| / 127` and values in [-127, 127]; with `reduce_range`, 7-bit
    /// ([-63, 63], scale `max |w| / 63`) as ONNX Runtime's `reduce_range`, which lets every
    /// product take the fastest AVX2 path at some accuracy cost. The C twin is
    /// `greenai_qlinear_from_float`, with the same arguments in the same order.
    pub fn from_float(
        w: &[f32],
        out_features: usize,
        in_features: usize,
        bias: Option<&[f32]>,
        reduce_range: bool,
    ) -> Result<Self> {
        let (q, scales) = quantize_weights(w, out_features, in_features, reduce_range)?;
        Self::from_int8(&q, out_features, in_features, &scales, None, bias)
    }

    /// [`QuantLinear::from_float`] for weights that are 2:4 along the inputs (in every aligned
    /// group of four inputs of a row at most two nonzero values), kept in the 2:4 form and run on
    /// the 2:4 kernel: the same scales and integers as `from_float`, and the same `y` bit for bit.
    /// `in_features` must be a multiple of 8 (pad W with zero columns and x with zeros); a weight
    /// that is not 2:4 is refused with its row and group, as is a non-finite one.
    pub fn from_float_2_4(
        w: &[f32],
        out_features: usize,
        in_features: usize,
        bias: Option<&[f32]>,
        reduce_range: bool,
    ) -> Result<Self> {
        check_matrix("w", w.len(), out_features, in_features, in_features)?;
        let w = &w[..out_features * in_features];
        check_finite("w", w)?;
        check_2_4(w, out_features, in_features, |&v| v == 0.0)?;
        let (q, scales) = quantize_weights(w, out_features, in_features, reduce_range)?;
        Self::from_int8_2_4(&q, out_features, in_features, &scales, bias)
    }

    /// [`QuantLinear::from_int8`] (symmetric: zero points 0) for 2:4 integers, kept in the 2:4
    /// form as [`QuantLinear::from_float_2_4`] does, with its checks.
    pub fn from_int8_2_4(
        w: &[i8],
        out_features: usize,
        in_features: usize,
        scales: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Self> {
        check_matrix("w", w.len(), out_features, in_features, in_features)?;
        let w = &w[..out_features * in_features];
        let scales = check_scales(scales, out_features)?;
        let bias = bias_or_zeros(bias, out_features)?;
        check_2_4(w, out_features, in_features, |&v| v == 0)?;
        let sparse = Sparse24::pack(w, out_features, in_features)?;
        Ok(QuantLinear { weights: Weights::TwoFour(sparse), scales, zero_points: Vec::new(), bias })
    }

    /// Whether the layer holds 2:4 weights and runs the 2:4 kernel.
    pub fn is_2_4(&self) -> bool {
        matches!(self.weights, Weights::TwoFour(_))
    }

    /// Bytes of the weights as held for the kernel (packing padding included; a 2:4 layer's
    /// positions are one byte per kept value), without scales, zero points and bias.
    pub fn weight_bytes(&self) -> usize {
        match &self.weights {
            Weights::Dense(p) => p.held_bytes(),
            Weights::TwoFour(s) => s.held_bytes(),
        }
    }

    /// Wraps already quantized weights W (`out_features x in_features` i8, row-major) with one
    /// positive finite scale and one zero point per output channel (`None`: all 0, symmetric), so
    /// that `w = (q - zero_point) * scale`. The C twin is `greenai_qlinear_from_int8`.
    pub fn from_int8(
        w: &[i8],
        out_features: usize,
        in_features: usize,
        scales: &[f32],
        zero_points: Option<&[i32]>,
        bias: Option<&[f32]>,
    ) -> Result<Self> {
        let scales = check_scales(scales, out_features)?;
        let zero_points = match zero_points {
            Some(z) => {
                check_len("zero_points", z.len(), out_features)?;
                let z = &z[..out_features];
                if let Some((o, &v)) = z.iter().enumerate().find(|(_, v)| !(-128..=127).contains(*v)) {
                    return Err(Error::invalid(
                        "zero_points",
                        v,
                        format!("zero point of channel {o} must lie in [-128, 127] (int8 weights)"),
                    ));
                }
                if z.iter().all(|&v| v == 0) {
                    Vec::new()
                } else {
                    z.to_vec()
                }
            }
            None => Vec::new(),
        };
        let bias = bias_or_zeros(bias, out_features)?;
        let packed = PackedI8::pack_transposed(out_features, in_features, w, in_features)?;
        Ok(QuantLinear { weights: Weights::Dense(packed), scales, zero_points, bias })
    }

    /// Renamed with the C argument order: weights first, then their dimensions.
    #[deprecated(
        since = "0.2.0",
        note = "use QuantLinear::from_float(w, out_features, in_features, bias, reduce_range)"
    )]
    pub fn from_f32(
        out_features: usize,
        in_features: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        reduce_range: bool,
    ) -> Result<Self> {
        Self::from_float(w, out_features, in_features, bias, reduce_range)
    }

    /// Renamed with the C argument order and zero points.
    #[deprecated(
        since = "0.2.0",
        note = "use QuantLinear::from_int8(w, out_features, in_features, scales, None, bias)"
    )]
    pub fn from_quantized(
        out_features: usize,
        in_features: usize,
        w: &[i8],
        scales: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Self> {
        Self::from_int8(w, out_features, in_features, scales, None, bias)
    }

    /// The per-output-channel weight scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Input features (columns of x).
    pub fn in_features(&self) -> usize {
        match &self.weights {
            Weights::Dense(p) => p.k(),
            Weights::TwoFour(s) => s.k(),
        }
    }

    /// Output features (columns of y).
    pub fn out_features(&self) -> usize {
        match &self.weights {
            Weights::Dense(p) => p.n(),
            Weights::TwoFour(s) => s.n(),
        }
    }

    /// `y = x W^T + b` for `batch` rows of x (`batch x in_features`), y `batch x out_features`.
    /// A non-finite value in x is an error and y is left untouched. Large batches are split by rows
    /// across rayon's threads (feature `parallel`); each row's result is the same either way.
    pub fn forward(&self, x: &[f32], batch: usize, mode: ActivationQuant, y: &mut [f32]) -> Result<()> {
        self.forward_on(Isa::active(), x, batch, mode, y)
    }

    /// [`QuantLinear::forward`] on a chosen path.
    pub fn forward_on(
        &self,
        isa: Isa,
        x: &[f32],
        batch: usize,
        mode: ActivationQuant,
        y: &mut [f32],
    ) -> Result<()> {
        let kernel = Kernel::new(isa)?;
        if let Weights::Dense(packed) = &self.weights {
            kernel.check_reads(packed)?;
        }
        let (k, n) = (self.in_features(), self.out_features());
        check_matrix("x", x.len(), batch, k, k)?;
        check_matrix("y", y.len(), batch, n, n)?;
        let (x, y) = (&x[..batch * k], &mut y[..batch * n]);
        let macs = batch.saturating_mul(k).saturating_mul(n);
        // Small products never touch rayon (asking its thread count starts the pool); one thread
        // works on the calling thread.
        let threads = if macs >= PARALLEL_MIN_MACS { current_threads() } else { 1 };
        let parallel = threads > 1;
        let chunks = chunk_bounds(batch, threads);
        // Every row's quantization parameters first, so that bad input fails before y is written.
        let mut params = try_vec(batch, RowQuant { scale: 1.0, zero: 0 })?;
        let mut ranges = try_vec(batch, (0f32, 0f32, true))?;
        // The ranges are one read of x: worth other threads only when x is large.
        let parallel_ranges = parallel && batch * k >= PARALLEL_RANGE_MIN_VALUES;
        for_chunks(&mut ranges, 1, &chunks, parallel_ranges, |first, out| {
            for (i, range) in out.iter_mut().enumerate() {
                *range = min_max_finite_on(isa, &x[(first + i) * k..(first + i + 1) * k]);
            }
            Ok(())
        })?;
        if !ranges.iter().all(|&(_, _, finite)| finite) {
            return Err(non_finite("x", x));
        }
        for (i, (param, &(lo, hi, _))) in params.iter_mut().zip(&ranges).enumerate() {
            *param = match mode {
                ActivationQuant::U8Affine => {
                    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                    let scale = (hi - lo) / 255.0;
                    if !scale.is_finite() {
                        return Err(Error::invalid("x", format!("range of row {i}"), "too wide for f32"));
                    }
                    // As ONNX Runtime: a scale below f32's smallest normal becomes 1.
                    let scale = if scale.is_normal() { scale } else { 1.0 };
                    let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
                    RowQuant { scale, zero: i32::from(zero) }
                }
                ActivationQuant::I8Symmetric => {
                    RowQuant { scale: symmetric_from_range(lo, hi, 127.0), zero: 0 }
                }
            };
        }
        if n == 0 {
            return Ok(());
        }
        if let (true, Weights::Dense(packed)) = (parallel && batch <= COLUMN_SPLIT_MAX_ROWS, &self.weights) {
            if k <= I32_EXACT_DEPTH && self.zero_points.is_empty() && can_dequant(kernel, batch, packed) {
                return self.forward_columns(kernel, isa, x, &params, mode, y, packed, (&chunks, threads));
            }
        }
        for_chunks(y, n, &chunks, parallel, |first, y| {
            let rows = y.len() / n;
            let (x, params) = (&x[first * k..(first + rows) * k], &params[first..first + rows]);
            CHUNK.with(|cell| {
                let mut scratch = cell.take();
                let result = self.forward_chunk(kernel, isa, x, params, mode, y, &mut scratch);
                cell.set(scratch);
                result
            })
        })
    }

    /// [`QuantLinear::forward_on`] for few rows on several threads: the rows quantized (split by
    /// rows at `split.0`), then the product and its dequantization split by columns across
    /// `split.1` threads, so that each thread reads only its share of the weights.
    #[allow(clippy::too_many_arguments)]
    fn forward_columns(
        &self,
        kernel: Kernel,
        isa: Isa,
        x: &[f32],
        params: &[RowQuant],
        mode: ActivationQuant,
        y: &mut [f32],
        packed: &PackedI8,
        split: (&[usize], usize),
    ) -> Result<()> {
        let (k, n, rows) = (self.in_features(), self.out_features(), params.len());
        CHUNK.with(|cell| {
            let mut scratch = cell.take();
            let result = (|| {
                if scratch.q.len() < rows * k {
                    scratch.q = try_vec(rows * k, 0u8)?;
                }
                let q = &mut scratch.q[..rows * k];
                for_chunks(q, k, split.0, true, |first, q| {
                    let count = q.len() / k;
                    quantize_rows(
                        isa,
                        &x[first * k..(first + count) * k],
                        &params[first..first + count],
                        mode,
                        q,
                    )
                })?;
                let dequant = Dequant { y, ldy: n, rows: params, w_scale: &self.scales, bias: &self.bias };
                match mode {
                    ActivationQuant::U8Affine => {
                        gemm_packed_dequant_columns(kernel, rows, &*q, k, packed, dequant, split.1)
                    }
                    ActivationQuant::I8Symmetric => {
                        let q: &[i8] = bytemuck::cast_slice(q);
                        gemm_packed_dequant_columns(kernel, rows, q, k, packed, dequant, split.1)
                    }
                }
            })();
            cell.set(scratch);
            result
        })
    }

    /// Quantizes the rows `x` with their `params`, multiplies and writes `y = dequantized + bias`.
    #[allow(clippy::too_many_arguments)]
    fn forward_chunk(
        &self,
        kernel: Kernel,
        isa: Isa,
        x: &[f32],
        params: &[RowQuant],
        mode: ActivationQuant,
        y: &mut [f32],
        scratch: &mut ChunkScratch,
    ) -> Result<()> {
        let (k, n, rows) = (self.in_features(), self.out_features(), params.len());
        // Each |sum_k (x_q - zx)(w_q - zw)| is at most 255 * 256 * k: below I32_EXACT_DEPTH it and
        // every partial term fit i32, so wrapping i32 arithmetic gives it exactly (vectorised).
        let narrow = k <= I32_EXACT_DEPTH;
        // 2:4 weights run the 2:4 kernel on AVX-512 and the scalar tier, elsewhere the dense
        // kernel on the weights decompressed (the same integers).
        let (packed, sparse) = match &self.weights {
            Weights::Dense(packed) => (Some(packed), None),
            Weights::TwoFour(sparse) if runs_2_4(kernel) => (None, Some(sparse)),
            Weights::TwoFour(sparse) => (Some(sparse.dense()?), None),
        };
        // Symmetric weights on AVX-512: the kernel dequantizes its tiles in registers into y.
        let fused = narrow
            && self.zero_points.is_empty()
            && match (packed, sparse) {
                (Some(packed), _) => can_dequant(kernel, rows, packed),
                (None, _) => Sparse24::can_dequant(kernel),
            };
        if scratch.q.len() < rows * k {
            scratch.q = try_vec(rows * k, 0u8)?;
        }
        if !fused && scratch.acc.len() < rows * n {
            scratch.acc = try_vec(rows * n, 0i32)?;
        }
        let q = &mut scratch.q[..rows * k];
        quantize_rows(isa, x, params, mode, q)?;
        if let (true, Some(sparse)) = (fused, sparse) {
            let dequant = Dequant { y, ldy: n, rows: params, w_scale: &self.scales, bias: &self.bias };
            return sparse.product_dequant(kernel, q, mode == ActivationQuant::I8Symmetric, dequant);
        }
        if let (true, Some(packed)) = (fused, packed) {
            let dequant = Dequant { y, ldy: n, rows: params, w_scale: &self.scales, bias: &self.bias };
            return match mode {
                ActivationQuant::U8Affine => gemm_packed_dequant(kernel, rows, &*q, k, packed, dequant),
                ActivationQuant::I8Symmetric => {
                    let q: &[i8] = bytemuck::cast_slice(q);
                    gemm_packed_dequant(kernel, rows, q, k, packed, dequant)
                }
            };
        }
        let acc = &mut scratch.acc[..rows * n];
        let signed = mode == ActivationQuant::I8Symmetric;
        match (packed, sparse) {
            (_, Some(sparse)) => sparse.product(kernel, q, rows, signed, acc),
            (Some(packed), None) if signed => {
                let q: &[i8] = bytemuck::cast_slice(q);
                gemm_packed_with(kernel, rows, q, k, packed, acc, n, Update::Overwrite, false)?
            }
            (Some(packed), None) => {
                gemm_packed_with(kernel, rows, &*q, k, packed, acc, n, Update::Overwrite, false)?
            }
            (None, None) => return Err(Error::invalid("QuantLinear", "weights", "no kernel runs them")),
        }
        let q = &scratch.q[..rows * k];
        let sums = match &self.weights {
            Weights::Dense(packed) => packed.col_sums(),
            Weights::TwoFour(sparse) => sparse.col_sums(),
        };
        for (i, ((y, acc), p)) in y.chunks_exact_mut(n).zip(acc.chunks_exact(n)).zip(params).enumerate() {
            let (zx, rs) = (p.zero, p.scale);
            let q_row = &q[i * k..(i + 1) * k];
            // sum_k (x_q - zx)(w_q - zw) = acc - zx sum_k w_q - zw (sum_k x_q - k zx).
            let row_sum = || -> i64 {
                match mode {
                    ActivationQuant::U8Affine => q_row.iter().map(|&v| i64::from(v)).sum(),
                    ActivationQuant::I8Symmetric => q_row.iter().map(|&v| i64::from(v as i8)).sum(),
                }
            };
            let centred_x =
                if self.zero_points.is_empty() { 0 } else { row_sum() - k as i64 * i64::from(zx) };
            if narrow && self.zero_points.is_empty() {
                for ((((y, &a), &s), &ws), &b) in
                    y.iter_mut().zip(acc).zip(sums).zip(&self.scales).zip(&self.bias)
                {
                    let centred = a.wrapping_sub(zx.wrapping_mul(s));
                    *y = centred as f32 * (rs * ws) + b;
                }
            } else if narrow {
                let d = centred_x as i32;
                let weights = sums.iter().zip(&self.zero_points).zip(&self.scales).zip(&self.bias);
                for ((y, &a), (((&s, &zw), &ws), &b)) in y.iter_mut().zip(acc).zip(weights) {
                    let centred = a.wrapping_sub(zx.wrapping_mul(s)).wrapping_sub(zw.wrapping_mul(d));
                    *y = centred as f32 * (rs * ws) + b;
                }
            } else {
                for (j, y) in y.iter_mut().enumerate() {
                    let mut centred = i64::from(acc[j]) - i64::from(zx) * i64::from(sums[j]);
                    if let Some(&zw) = self.zero_points.get(j) {
                        centred -= i64::from(zw) * centred_x;
                    }
                    *y = centred as f32 * (rs * self.scales[j]) + self.bias[j];
                }
            }
        }
        Ok(())
    }
}

/// Quantizes the rows of `x` (`params.len()` rows, `q.len() / params.len()` wide) into `q`.
fn quantize_rows(
    isa: Isa,
    x: &[f32],
    params: &[RowQuant],
    mode: ActivationQuant,
    q: &mut [u8],
) -> Result<()> {
    let k = q.len() / params.len().max(1);
    for ((row, out), p) in x.chunks_exact(k).zip(q.chunks_exact_mut(k)).zip(params) {
        match mode {
            // `zero` came from a u8 and `x` was found finite by the caller.
            ActivationQuant::U8Affine => quantize_u8_scanned_on(isa, row, p.scale, p.zero as u8, out)?,
            ActivationQuant::I8Symmetric => {
                quantize_i8_scanned_on(isa, row, p.scale, 0, bytemuck::cast_slice_mut(out))?
            }
        }
    }
    Ok(())
}

/// Whether `kernel` runs 2:4 weights on the 2:4 kernel (else on the dense one, decompressed).
fn runs_2_4(kernel: Kernel) -> bool {
    match kernel.tier {
        Tier::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512(_) => true,
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2(_) => false,
        #[cfg(target_arch = "aarch64")]
        Tier::Neon(_) => false,
    }
}

/// W quantized per output channel, symmetric (see [`QuantLinear::from_float`]): the integers
/// (`out x in`) and the scales.
fn quantize_weights(
    w: &[f32],
    out_features: usize,
    in_features: usize,
    reduce_range: bool,
) -> Result<(Vec<i8>, Vec<f32>)> {
    check_matrix("w", w.len(), out_features, in_features, in_features)?;
    check_finite("w", &w[..out_features * in_features])?;
    let limit = if reduce_range { 63.0 } else { 127.0 };
    let mut q = try_vec(out_features * in_features, 0i8)?;
    let mut scales = try_vec(out_features, 0f32)?;
    for (o, scale) in scales.iter_mut().enumerate() {
        let row = &w[o * in_features..(o + 1) * in_features];
        *scale = symmetric_scale(row, limit);
        scalar::quantize_i8(row, *scale, 0, &mut q[o * in_features..(o + 1) * in_features]);
    }
    Ok((q, scales))
}

/// The first `out_features` scales, each positive and finite.
fn check_scales(scales: &[f32], out_features: usize) -> Result<Vec<f32>> {
    check_len("scales", scales.len(), out_features)?;
    let scales = &scales[..out_features];
    if let Some((o, &s)) = scales.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
        return Err(Error::invalid("scales", s, format!("scale of channel {o} must be positive and finite")));
    }
    Ok(scales.to_vec())
}

/// The first `out_features` biases, finite, or zeros.
fn bias_or_zeros(bias: Option<&[f32]>, out_features: usize) -> Result<Vec<f32>> {
    match bias {
        Some(b) => {
            check_len("bias", b.len(), out_features)?;
            check_finite("bias", &b[..out_features])?;
            Ok(b[..out_features].to_vec())
        }
        None => try_vec(out_features, 0f32),
    }
}

/// The quantized rows and i32 products of one chunk, kept per thread across calls.
#[derive(Default)]
struct ChunkScratch {
    q: Vec<u8>,
    acc: Vec<i32>,
}

thread_local! {
    static CHUNK: Cell<ChunkScratch> = Cell::new(ChunkScratch::default());
}

/// Depths up to which `255 * 256 * k` fits i32 (see `forward_chunk`).
const I32_EXACT_DEPTH: usize = i32::MAX as usize / (255 * 256);

/// Up to this many rows, a product on several threads splits the weights' columns between them
/// rather than the rows (AVX-512 with the fused dequantization only): at MiniLM's 128 rows the
/// row split had each thread read all of the weights and gained little over one thread.
const COLUMN_SPLIT_MAX_ROWS: usize = 256;

/// Values of x from which the row ranges are found on several threads: below, one thread reads
/// them (a few microseconds) faster than another thread can be handed a share.
const PARALLEL_RANGE_MIN_VALUES: usize = 1 << 18;

/// The first row of every chunk of `batch` rows, then `batch`: chunks of at most [`MC`] rows (a
/// chunk's buffers stay in cache), each a multiple of [`MR`] but the last, as even as [`MR`]
/// allows, and as many as a multiple of `threads`, so that every thread gets the same share (512
/// rows in five chunks of 105 over two threads left one idle for a fifth of the product).
fn chunk_bounds(batch: usize, threads: usize) -> Vec<usize> {
    let tiles = batch.div_ceil(MR);
    let chunks = batch.div_ceil(MC).next_multiple_of(threads.max(1)).clamp(1, tiles.max(1));
    (0..=chunks).map(|c| (tiles * c / chunks * MR).min(batch)).collect()
}

#[cfg(feature = "parallel")]
fn current_threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(not(feature = "parallel"))]
fn current_threads() -> usize {
    1
}

/// Runs `f(first_row, rows)` on the chunks of `out` (`width` elements a row) that start at the
/// rows `bounds` lists (see [`chunk_bounds`]), on rayon's threads when `parallel`.
fn for_chunks<T: Send>(
    out: &mut [T],
    width: usize,
    bounds: &[usize],
    parallel: bool,
    f: impl Fn(usize, &mut [T]) -> Result<()> + Send + Sync,
) -> Result<()> {
    let mut parts = Vec::with_capacity(bounds.len());
    let mut rest = out;
    for pair in bounds.windows(2).filter(|pair| pair[1] > pair[0]) {
        let (part, tail) = std::mem::take(&mut rest).split_at_mut((pair[1] - pair[0]) * width);
        parts.push((pair[0], part));
        rest = tail;
    }
    #[cfg(feature = "parallel")]
    if parallel {
        use rayon::prelude::*;
        return parts.into_par_iter().try_for_each(|(first, rows)| f(first, rows));
    }
    let _ = parallel;
    parts.into_iter().try_for_each(|(first, rows)| f(first, rows))
}
