//! GPTQ (Frantar et al., 2022): one-shot weight quantization that quantizes a weight's columns in
//! turn and spreads each column's rounding error over the columns not yet quantized, weighted by
//! the inverse Hessian of the layer's inputs. It follows AutoGPTQ's `GPTQ.fasterquant` and
//! llm-compressor's `quantize_weight`, with AutoGPTQ's min-max `Quantizer.find_params`.
//!
//! Arithmetic: the Hessian's damping, Cholesky factorizations and inverse are faer's (f64, the crate's
//! dense linear-algebra dependency: blocked and SIMD, so a 11008-wide Hessian factors in seconds,
//! where hand-written loops would take minutes); the weights are updated in f64, and the trailing
//! update of each block of columns (the lazy batch) is one faer matrix product.
//!
//! Choices where the two peers differ or leave a gap, all documented on [`GptqOptions`]:
//! - a Hessian that is not positive definite after damping is an error, not a retry;
//! - a group size that does not divide `cols` gives a last, shorter group (as AutoGPTQ does);
//! - a group's parameters are found on its columns' up-to-date weights: a block of columns never spans a
//!   group start, so the blocked (lazy-batch) algorithm equals the column-by-column one exactly. With the
//!   default block 128 and a group size that is a multiple of 128 (or per row) this is AutoGPTQ's
//!   behaviour; for a group starting inside one of AutoGPTQ's blocks, AutoGPTQ reads the group's columns
//!   before that block's pending updates.
//!
//! ```
//! use greenai::quant::{gptq_quantize, GptqOptions, HessianAccumulator};
//! let (rows, cols) = (2, 4);
//! let w = [0.5f32, -0.25, 0.125, 1.0, -1.0, 0.75, 0.3, -0.6];
//! let mut acc = HessianAccumulator::new(cols)?;
//! acc.add(&[1.0, 0.5, -0.2, 0.1, 0.3, -1.0, 0.8, 0.2, -0.5, 0.2, 1.0, -0.7], 3)?;
//! let h = acc.finish()?;
//! let opts = GptqOptions { bits: 4, ..GptqOptions::default() };
//! let out = gptq_quantize(&w, rows, cols, &h, &opts)?;
//! assert_eq!(out.groups, 1);
//! assert!(out.q.iter().all(|&q| q <= 15));
//! let w_hat = out.dequantize();
//! assert_eq!(w_hat[0], out.scales[0] * (f32::from(out.q[0]) - out.zeros[0]));
//! # Ok::<(), greenai::Error>(())
//! ```

use crate::error::{checked_product, try_vec, Error, Result};
use crate::kernels::math::check_finite;
#[cfg(feature = "lowrank")]
use faer::solvers::SolverCore;
#[cfg(feature = "lowrank")]
use faer::{Mat, Parallelism, Side};

/// GPTQ's options (AutoGPTQ's `BaseQuantizeConfig` and `fasterquant` arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptqOptions {
    /// Bits per weight, 2 to 8: `q` lies in `0 ..= 2^bits - 1`.
    pub bits: u32,
    /// Columns per group of shared scale and zero; 0 is one group per row. A size that does not divide
    /// `cols` leaves a last, shorter group (as AutoGPTQ does).
    pub group_size: usize,
    /// Symmetric grid (zero = `2^(bits-1)`, scale from the absolute maximum) or asymmetric (min-max).
    pub symmetric: bool,
    /// Quantize columns by descending `diag(H)` (AutoGPTQ's `desc_act`).
    pub act_order: bool,
    /// With groups: find every group's parameters up front on the original contiguous columns, so
    /// `g_idx[c] = c / group_size` even with act order. Ignored when `group_size` is 0.
    pub static_groups: bool,
    /// Damping as a fraction of `mean(diag H)`, added to the diagonal; finite and >= 0 (default 0.01).
    pub damp: f32,
    /// Columns per lazy-batch block, >= 1 (default 128). Changes speed, not results (beyond rounding).
    pub block_size: usize,
}

impl Default for GptqOptions {
    /// AutoGPTQ's defaults: 4 bits, group 128, asymmetric, no act order, damp 0.01, block 128.
    fn default() -> Self {
        GptqOptions {
            bits: 4,
            group_size: 128,
            symmetric: false,
            act_order: false,
            static_groups: false,
            damp: 0.01,
            block_size: 128,
        }
    }
}

/// A quantized weight as AutoGPTQ stores it before packing: `w[r, c] ~ scales[r, g] * (q[r, c] -
/// zeros[r, g])` with `g = g_idx[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GptqWeight {
    /// Output channels.
    pub rows: usize,
    /// Input channels.
    pub cols: usize,
    /// Groups per row: `ceil(cols / group_size)`, or 1 with `group_size` 0.
    pub groups: usize,
    /// Quantized values, `rows x cols` row-major, each in `0 ..= 2^bits - 1`.
    pub q: Vec<u8>,
    /// Scales, `rows x groups` row-major.
    pub scales: Vec<f32>,
    /// Zero points (integers stored as f32), `rows x groups` row-major.
    pub zeros: Vec<f32>,
    /// The group of each column, `cols` entries in `0 .. groups`.
    pub g_idx: Vec<i32>,
}

impl GptqWeight {
    /// An all-zero weight of contiguous groups (`g_idx[c] = c / group_size`; one group per row when
    /// `group_size` is 0), `groups` of them per row.
    pub(crate) fn contiguous(rows: usize, cols: usize, group_size: usize, groups: usize) -> Result<Self> {
        let gs = if group_size == 0 { cols.max(1) } else { group_size };
        Ok(GptqWeight {
            rows,
            cols,
            groups,
            q: try_vec(checked_product("q", &[rows, cols])?, 0)?,
            scales: try_vec(checked_product("scales", &[rows, groups])?, 0.0)?,
            zeros: try_vec(rows * groups, 0.0)?,
            g_idx: (0..cols).map(|c| (c / gs) as i32).collect(),
        })
    }

    /// The dequantized weight `scales[r, g] * (q[r, c] - zeros[r, g])`, `rows x cols` row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.q.len());
        for r in 0..self.rows {
            for c in 0..self.cols {
                let g = r * self.groups + self.g_idx[c] as usize;
                out.push(self.scales[g] * (f32::from(self.q[r * self.cols + c]) - self.zeros[g]));
            }
        }
        out
    }
}

/// Min-max parameters of one row segment: AutoGPTQ's `Quantizer.find_params` (per channel, no MSE
/// search). The scale is rounded to f32 (as it is stored) before it is used; the rest is f64 (AutoGPTQ
/// works in f32: the zero point can differ only where `-xmin / scale` is within f32 rounding of a tie).
fn find_params(x: &[f64], maxq: f64, symmetric: bool) -> (f64, f64) {
    let mut xmin = x.iter().copied().fold(0.0f64, f64::min);
    let mut xmax = x.iter().copied().fold(0.0f64, f64::max);
    if symmetric {
        xmax = xmax.max(xmin.abs());
        if xmin < 0.0 {
            xmin = -xmax;
        }
    }
    if xmin == 0.0 && xmax == 0.0 {
        xmin = -1.0;
        xmax = 1.0;
    }
    let scale = f64::from(((xmax - xmin) / maxq) as f32);
    let zero = if symmetric { (maxq + 1.0) / 2.0 } else { (-xmin / scale).round_ties_even() };
    (scale, zero)
}

/// AutoGPTQ's `quantize`: the integer level of `x`.
fn quantize_level(x: f64, scale: f64, zero: f64, maxq: f64) -> f64 {
    ((x / scale).round_ties_even() + zero).clamp(0.0, maxq)
}

/// Checks a weight (`rows x cols`, finite), `bits` (2 to 8) and `group_size` (0 is one group per row;
/// a size that does not divide `cols` leaves a shorter last group); returns the group count. Shared by
/// GPTQ, round-to-nearest, AWQ and HQQ.
pub(crate) fn check_weight(
    w: &[f32],
    rows: usize,
    cols: usize,
    bits: u32,
    group_size: usize,
) -> Result<usize> {
    let len = checked_product("weight", &[rows, cols])?;
    if w.len() != len {
        return Err(Error::ShapeMismatch {
            context: "weight",
            expected: vec![rows, cols],
            actual: vec![w.len()],
        });
    }
    if !(2..=8).contains(&bits) {
        return Err(Error::invalid("bits", bits, "must lie in 2..=8"));
    }
    if cols > i32::MAX as usize {
        return Err(Error::invalid("cols", cols, "g_idx is int32: cols must fit"));
    }
    check_finite("w", w)?;
    Ok(if group_size == 0 { 1 } else { cols.div_ceil(group_size) })
}

/// Checks the weight and options shared by GPTQ and round-to-nearest; returns the group count.
fn check_common(w: &[f32], rows: usize, cols: usize, opts: &GptqOptions) -> Result<usize> {
    if !(opts.damp.is_finite() && opts.damp >= 0.0) {
        return Err(Error::invalid("damp", opts.damp, "must be finite and >= 0"));
    }
    if opts.block_size == 0 {
        return Err(Error::invalid("block_size", 0, "must be >= 1"));
    }
    check_weight(w, rows, cols, opts.bits, opts.group_size)
}

/// Round-to-nearest with GPTQ's quantizer and layout (no error feedback, no Hessian): the baseline
/// GPTQ is measured against. `act_order` and `static_groups` are ignored; `g_idx[c] = c / group_size`.
pub fn rtn_quantize(w: &[f32], rows: usize, cols: usize, opts: &GptqOptions) -> Result<GptqWeight> {
    let groups = check_common(w, rows, cols, opts)?;
    let maxq = f64::from((1u32 << opts.bits) - 1);
    let gs = if opts.group_size == 0 { cols.max(1) } else { opts.group_size };
    let mut out = GptqWeight::contiguous(rows, cols, opts.group_size, groups)?;
    for r in 0..rows {
        let row: Vec<f64> = w[r * cols..(r + 1) * cols].iter().map(|&v| f64::from(v)).collect();
        for g in 0..groups {
            let seg = &row[(g * gs).min(cols)..((g + 1) * gs).min(cols)];
            let (scale, zero) = find_params(seg, maxq, opts.symmetric);
            out.scales[r * groups + g] = scale as f32;
            out.zeros[r * groups + g] = zero as f32;
            for (k, &x) in seg.iter().enumerate() {
                out.q[r * cols + g * gs + k] = quantize_level(x, scale, zero, maxq) as u8;
            }
        }
    }
    Ok(out)
}

/// Quantizes `w` (`rows x cols` row-major, rows = output channels) with GPTQ, given the Hessian of its
/// inputs `hessian = 2/N sum x x^T` (`cols x cols` row-major, taken as symmetric: `(H + H^T) / 2`).
///
/// Dead inputs (`H[i, i] == 0`) get `H[i, i] = 1` and `W[:, i] = 0`, as in AutoGPTQ (per-row
/// parameters are found before, group parameters after, that zeroing, as there). Errors, with nothing
/// returned: non-finite values, a wrong-sized Hessian, invalid options, or a Hessian that is not positive
/// definite after damping (raise `damp` or add calibration samples).
#[cfg(feature = "lowrank")]
pub fn gptq_quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    hessian: &[f32],
    opts: &GptqOptions,
) -> Result<GptqWeight> {
    let groups = check_common(w, rows, cols, opts)?;
    let hlen = checked_product("gptq hessian", &[cols, cols])?;
    if hessian.len() != hlen {
        return Err(Error::ShapeMismatch {
            context: "gptq hessian",
            expected: vec![cols, cols],
            actual: vec![hessian.len()],
        });
    }
    check_finite("hessian", hessian)?;
    let n = cols;
    let maxq = f64::from((1u32 << opts.bits) - 1);
    let grouped = opts.group_size != 0;
    let gs = if grouped { opts.group_size } else { n.max(1) };
    let static_groups = grouped && opts.static_groups;
    let mut wk: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
    let mut h: Vec<f64> =
        (0..n * n).map(|k| 0.5 * (f64::from(hessian[k]) + f64::from(hessian[(k % n) * n + k / n]))).collect();

    let mut scales = vec![0.0f64; rows * groups];
    let mut zeros = vec![0.0f64; rows * groups];
    if !grouped {
        for r in 0..rows {
            (scales[r], zeros[r]) = find_params(&wk[r * n..(r + 1) * n], maxq, opts.symmetric);
        }
    }
    for i in 0..n {
        if h[i * n + i] == 0.0 {
            h[i * n + i] = 1.0;
            for r in 0..rows {
                wk[r * n + i] = 0.0;
            }
        }
    }
    if static_groups {
        for r in 0..rows {
            for g in 0..groups {
                let seg = &wk[r * n + g * gs..r * n + ((g + 1) * gs).min(n)];
                (scales[r * groups + g], zeros[r * groups + g]) = find_params(seg, maxq, opts.symmetric);
            }
        }
    }
    let mut perm: Vec<usize> = (0..n).collect();
    if opts.act_order {
        perm.sort_by(|&a, &b| h[b * n + b].total_cmp(&h[a * n + a]));
    }
    let mean_diag = if n == 0 { 0.0 } else { (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64 };
    let damp = f64::from(opts.damp) * mean_diag;
    let hp = Mat::<f64>::from_fn(n, n, |i, j| h[perm[i] * n + perm[j]] + if i == j { damp } else { 0.0 });
    let not_pd = |stage: &str, minor: usize| {
        Error::invalid(
            "hessian",
            format!("{n}x{n}"),
            format!(
                "not positive definite after damping {} ({stage}: leading minor of order {minor}); \
                 raise damp or use more calibration samples",
                opts.damp
            ),
        )
    };
    let chol =
        hp.cholesky(Side::Lower).map_err(|e| not_pd("Cholesky of H", e.non_positive_definite_minor))?;
    let hinv = chol.inverse();
    let chol_inv =
        hinv.cholesky(Side::Lower).map_err(|e| not_pd("Cholesky of H^-1", e.non_positive_definite_minor))?;
    let l = chol_inv.compute_l();
    // U = L^T: the upper Cholesky factor of H^-1, row-major in f64 for the column loop.
    let mut u = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = l.read(j, i);
        }
        if !(u[i * n + i].is_finite() && u[i * n + i] > 0.0) {
            return Err(not_pd("H^-1 factor", i + 1));
        }
    }

    // Weights in the processing (permuted) column order.
    let mut wp: Vec<f64> = vec![0.0; rows * n];
    for r in 0..rows {
        for (j, &p) in perm.iter().enumerate() {
            wp[r * n + j] = wk[r * n + p];
        }
    }
    let mut qp = vec![0u8; rows * n];
    let mut i1 = 0;
    while i1 < n {
        let mut i2 = (i1 + opts.block_size).min(n);
        if grouped && !static_groups {
            // Never span a group start: its parameters need its columns fully updated.
            i2 = i2.min((i1 / gs + 1) * gs);
        }
        let count = i2 - i1;
        let mut err = Mat::<f64>::zeros(rows, count);
        for r in 0..rows {
            let row = &mut wp[r * n..(r + 1) * n];
            for i in i1..i2 {
                let (scale, zero) = if !grouped {
                    (scales[r], zeros[r])
                } else if static_groups {
                    let g = perm[i] / gs;
                    (scales[r * groups + g], zeros[r * groups + g])
                } else {
                    let g = i / gs;
                    if i % gs == 0 {
                        let p = find_params(&row[i..(i + gs).min(n)], maxq, opts.symmetric);
                        (scales[r * groups + g], zeros[r * groups + g]) = p;
                    }
                    (scales[r * groups + g], zeros[r * groups + g])
                };
                let x = row[i];
                let level = quantize_level(x, scale, zero, maxq);
                qp[r * n + i] = level as u8;
                let e = (x - scale * (level - zero)) / u[i * n + i];
                err.write(r, i - i1, e);
                let urow = &u[i * n..(i + 1) * n];
                for j in i + 1..i2 {
                    row[j] -= e * urow[j];
                }
            }
        }
        if i2 < n {
            let ut = Mat::<f64>::from_fn(count, n - i2, |a, b| u[(i1 + a) * n + i2 + b]);
            let wv = faer::mat::from_row_major_slice_mut::<f64>(&mut wp, rows, n);
            let trailing = wv.subcols_mut(i2, n - i2);
            faer::linalg::matmul::matmul(
                trailing,
                err.as_ref(),
                ut.as_ref(),
                Some(1.0),
                -1.0,
                Parallelism::None,
            );
        }
        i1 = i2;
    }

    let mut q = vec![0u8; rows * n];
    for r in 0..rows {
        for (j, &p) in perm.iter().enumerate() {
            q[r * n + p] = qp[r * n + j];
        }
    }
    let mut g_idx = vec![0i32; n];
    for (j, &p) in perm.iter().enumerate() {
        g_idx[p] = if static_groups { p / gs } else { j / gs } as i32;
    }
    if scales.iter().any(|s| !s.is_finite()) {
        return Err(Error::invalid(
            "hessian",
            format!("{n}x{n}"),
            "GPTQ produced non-finite scales (ill-conditioned H)",
        ));
    }
    Ok(GptqWeight {
        rows,
        cols,
        groups,
        q,
        scales: scales.iter().map(|&s| s as f32).collect(),
        zeros: zeros.iter().map(|&z| z as f32).collect(),
        g_idx,
    })
}

/// A streaming accumulator of GPTQ's Hessian `H = 2/N sum x x^T` over batches of inputs, in f64,
/// so that batch order, batch split and thread count change the result only by f64 rounding
/// (invisible after [`finish`](Self::finish) rounds to f32, up to an occasional last ulp).
/// Accumulators of the same width [`merge`](Self::merge) (one per thread, then merged).
#[derive(Clone, Debug, PartialEq)]
pub struct HessianAccumulator {
    cols: usize,
    samples: u64,
    /// `sum x x^T`, upper triangle (`i <= j`) of a `cols x cols` row-major matrix.
    sum: Vec<f64>,
}

impl HessianAccumulator {
    /// An empty accumulator for inputs of `cols` channels (`cols * cols` f64 sums); an error when that
    /// size overflows or cannot be allocated.
    pub fn new(cols: usize) -> Result<Self> {
        let len = checked_product("hessian accumulator", &[cols, cols])?;
        Ok(HessianAccumulator { cols, samples: 0, sum: try_vec(len, 0.0)? })
    }

    /// Input channels.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Samples added so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Adds a batch `x` of `samples` input vectors (`samples x cols` row-major). Refuses a wrong length
    /// or non-finite values, adding nothing.
    pub fn add(&mut self, x: &[f32], samples: usize) -> Result<()> {
        let n = self.cols;
        let len = checked_product("hessian batch", &[samples, n])?;
        if x.len() != len {
            return Err(Error::ShapeMismatch {
                context: "hessian batch",
                expected: vec![samples, n],
                actual: vec![x.len()],
            });
        }
        check_finite("x", x)?;
        // Columns contiguous (f64, products of two f32 are exact), so each entry is one dot product.
        let mut xt = vec![0.0f64; len];
        for t in 0..samples {
            for c in 0..n {
                xt[c * samples + t] = f64::from(x[t * n + c]);
            }
        }
        for i in 0..n {
            let ci = &xt[i * samples..(i + 1) * samples];
            for j in i..n {
                let cj = &xt[j * samples..(j + 1) * samples];
                self.sum[i * n + j] += dot(ci, cj);
            }
        }
        self.samples += samples as u64;
        Ok(())
    }

    /// Adds another accumulator's sums (of the same width) into this one.
    pub fn merge(&mut self, other: &HessianAccumulator) -> Result<()> {
        if other.cols != self.cols {
            return Err(Error::ShapeMismatch {
                context: "hessian merge",
                expected: vec![self.cols],
                actual: vec![other.cols],
            });
        }
        self.sum.iter_mut().zip(&other.sum).for_each(|(a, b)| *a += b);
        self.samples += other.samples;
        Ok(())
    }

    /// The Hessian `2/N sum x x^T` (`cols x cols` row-major, symmetric, f32); an error when no sample
    /// was added.
    pub fn finish(&self) -> Result<Vec<f32>> {
        if self.samples == 0 {
            return Err(Error::invalid("samples", 0, "the Hessian needs at least one input sample"));
        }
        let n = self.cols;
        let scale = 2.0 / self.samples as f64;
        let mut h = vec![0.0f32; n * n];
        for i in 0..n {
            for j in i..n {
                let v = (self.sum[i * n + j] * scale) as f32;
                h[i * n + j] = v;
                h[j * n + i] = v;
            }
        }
        Ok(h)
    }
}

/// A dot product in four fixed lanes (a fixed order: the same for every call with the same data).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, ra) = a.split_at(a.len() / 4 * 4);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(4).zip(cb.chunks_exact(4)) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_params_matches_autogptq_rules() {
        // Asymmetric 4-bit on [-1, 2]: scale 3/15, zero round(1 / 0.2) = 5.
        let (s, z) = find_params(&[-1.0, 0.5, 2.0], 15.0, false);
        assert!((s - 0.2).abs() < 1e-7 && z == 5.0);
        // Symmetric: scale 2 * amax / maxq, zero 8.
        let (s, z) = find_params(&[-1.0, 0.5, 2.0], 15.0, true);
        assert!((s - 4.0 / 15.0).abs() < 1e-7 && z == 8.0);
        // All-zero rows: range [-1, 1]; 1 / f32(2/15) = 7.4999996 rounds to 7 (as in AutoGPTQ's f32).
        let (s, z) = find_params(&[0.0, 0.0], 15.0, false);
        assert!((s - 2.0 / 15.0).abs() < 1e-7 && z == 7.0);
        // Positive-only rows include 0 in the range.
        let (_, z) = find_params(&[1.0, 3.0], 15.0, false);
        assert_eq!(z, 0.0);
    }

    #[test]
    #[cfg(feature = "lowrank")]
    fn bad_input_is_refused() {
        let w = [0.0f32; 8];
        let h: Vec<f32> = (0..16).map(|k| if k % 5 == 0 { 1.0 } else { 0.0 }).collect();
        let ok = GptqOptions { group_size: 0, ..GptqOptions::default() };
        assert!(gptq_quantize(&w, 2, 4, &h, &ok).is_ok());
        assert!(gptq_quantize(&w, 2, 4, &h[..15], &ok).is_err());
        assert!(gptq_quantize(&w, 2, 4, &h, &GptqOptions { bits: 9, ..ok }).is_err());
        assert!(gptq_quantize(&w, 2, 4, &h, &GptqOptions { bits: 1, ..ok }).is_err());
        assert!(gptq_quantize(&w, 2, 4, &h, &GptqOptions { damp: -1.0, ..ok }).is_err());
        assert!(gptq_quantize(&w, 2, 4, &h, &GptqOptions { block_size: 0, ..ok }).is_err());
        let mut bad = h.clone();
        bad[3] = f32::NAN;
        assert!(matches!(gptq_quantize(&w, 2, 4, &bad, &ok), Err(Error::NonFinite { .. })));
        let mut neg = h.clone();
        neg[0] = -1.0;
        let e = gptq_quantize(&w, 2, 4, &neg, &ok).unwrap_err().to_string();
        assert!(e.contains("not positive definite"), "{e}");
    }

    #[test]
    #[cfg(feature = "lowrank")]
    fn empty_shapes() {
        let opts = GptqOptions::default();
        let none = gptq_quantize(&[], 0, 3, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], &opts).unwrap();
        assert!(none.q.is_empty() && none.scales.is_empty() && none.g_idx == vec![0, 0, 0]);
        let no_cols = gptq_quantize(&[], 2, 0, &[], &GptqOptions { group_size: 0, ..opts }).unwrap();
        assert_eq!((no_cols.groups, no_cols.scales.len()), (1, 2));
        assert!(HessianAccumulator::new(3).unwrap().finish().is_err());
    }

    #[test]
    #[cfg(feature = "lowrank")]
    fn dead_inputs_and_short_last_group() {
        // Column 1 is dead: its weight becomes 0 and quantizes to the zero point.
        let w = [0.5f32, 9.0, -0.5, 0.25, 0.1];
        let mut h = vec![0.0f32; 25];
        for i in [0, 2, 3, 4] {
            h[i * 6] = 1.0;
        }
        let opts = GptqOptions { group_size: 2, ..GptqOptions::default() };
        let out = gptq_quantize(&w, 1, 5, &h, &opts).unwrap();
        assert_eq!(out.groups, 3);
        assert_eq!(out.g_idx, vec![0, 0, 1, 1, 2]);
        assert_eq!(out.dequantize()[1], 0.0);
    }
}
