//! Calibration: observers that see data batch by batch and give quantization parameters.
//!
//! Histogram methods count values on a canonical grid: 4096 bins over `[-2^e, 2^e)`, where `2^e` is
//! the smallest power of two above every `|x|` seen so far. When a batch needs a larger `e`, bins
//! merge exactly (counts add), so the final histogram depends only on the multiset of values: the
//! same data in any batch order, split over any number of observers then [merged](Observer::merge),
//! gives the same counts, hence bit-identical parameters. Folding the signed grid about zero gives
//! 2048 bins of `|x|` over `[0, 2^e)`, the histogram the entropy method searches (TensorRT's bin
//! count; with a power-of-two top, between 1024 and 2048 of them hold data).

use super::affine::Quantizer;
use super::params::{Convention, Granularity, Layout, Mode, QuantParams, QuantSpec, Rounding};
use crate::error::{Error, Result};

/// Bins of the signed histogram.
const BINS: usize = 4096;
/// Bins on each side of zero.
const HALF: usize = BINS / 2;
/// The smallest grid exponent (a group of zeros still gets a grid).
const MIN_EXP: i32 = -140;

/// How an observer turns what it saw into a range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The smallest and largest values seen.
    MinMax,
    /// PyTorch's `MovingAverageMinMaxObserver`: the first batch's min/max, then
    /// `min += c * (batch_min - min)` (likewise max) per batch. Depends on batch order by definition,
    /// so it cannot be merged.
    MovingAverageMinMax {
        /// The averaging constant `c`, in `(0, 1]` (PyTorch's default is 0.01).
        averaging_constant: f32,
    },
    /// The range holding `percentile`% of the values: `|x|` up to that percentile when symmetric, else
    /// the `100 - p` and `p` percentiles (bin edges of the histogram), within the values seen.
    Percentile {
        /// In `(0, 100]`, e.g. 99.99.
        percentile: f64,
    },
    /// TensorRT's entropy calibration: the clipping threshold on `|x|` minimising the KL divergence
    /// between the clipped histogram and its quantized version (`2^(bits-1)` levels, `2^bits` for
    /// unsigned types), as in NVIDIA's pytorch-quantization `_compute_amax_entropy`.
    Entropy,
    /// The clipping threshold on `|x|` that minimises the quantization mean squared error of the
    /// histogram's bin centres under the spec (at most 512 candidates plus the maximum).
    Mse,
}

impl Calibration {
    fn uses_histogram(self) -> bool {
        matches!(self, Calibration::Percentile { .. } | Calibration::Entropy | Calibration::Mse)
    }
}

/// Exact counts on the canonical grid `[-2^exp, 2^exp)`.
#[derive(Clone, Debug, PartialEq)]
struct Histogram {
    exp: i32,
    counts: Vec<u64>,
}

/// The smallest `e >= MIN_EXP` with `2^e > m` (`m` finite, non-negative).
fn exp_above(m: f32) -> i32 {
    if m == 0.0 {
        return MIN_EXP;
    }
    // f64 of an f32 is normal: its exponent field gives floor(log2 m).
    let floor_log2 = ((f64::from(m).to_bits() >> 52) & 0x7FF) as i32 - 1023;
    (floor_log2 + 1).max(MIN_EXP)
}

impl Histogram {
    fn new(exp: i32) -> Result<Self> {
        Ok(Histogram { exp, counts: crate::error::try_vec(BINS, 0u64)? })
    }

    /// Bin width `2^(exp - 11)`.
    fn width(&self) -> f64 {
        2f64.powi(self.exp - 11)
    }

    /// Coarsens the grid to `2^exp` (never finer): bin `i` moves to `floor((i - HALF) / 2^k) + HALF`.
    fn grow_to(&mut self, exp: i32) {
        if exp <= self.exp {
            return;
        }
        let k = (exp - self.exp).min(62) as u32;
        let mut next = vec![0u64; BINS];
        for (i, &c) in self.counts.iter().enumerate() {
            next[(((i as i64 - HALF as i64) >> k) + HALF as i64) as usize] += c;
        }
        self.counts = next;
        self.exp = exp;
    }

    /// Counts values (finite, `|x| < 2^exp`): bin `floor(x / width) + HALF`, exact in f64.
    fn add(&mut self, values: &[f32]) {
        let inv = 2f64.powi(11 - self.exp);
        for &v in values {
            let bin = (f64::from(v) * inv).floor() as i64 + HALF as i64;
            self.counts[bin.clamp(0, BINS as i64 - 1) as usize] += 1;
        }
    }

    fn merge(&mut self, other: &Histogram) {
        let mut other = other.clone();
        let exp = self.exp.max(other.exp);
        self.grow_to(exp);
        other.grow_to(exp);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Left edge of signed bin `i`.
    fn edge(&self, i: usize) -> f64 {
        (i as f64 - HALF as f64) * self.width()
    }

    /// The |x| histogram: 2048 bins over `[0, 2^exp)`.
    fn folded(&self) -> Vec<u64> {
        (0..HALF).map(|j| self.counts[HALF + j] + self.counts[HALF - 1 - j]).collect()
    }
}

/// What an observer knows of one parameter group.
#[derive(Clone, Debug, PartialEq)]
struct Group {
    seen: bool,
    min: f32,
    max: f32,
    hist: Option<Histogram>,
}

/// A calibration observer: feed it batches with [`Observer::observe`], read [`Observer::params`].
#[derive(Clone, Debug, PartialEq)]
pub struct Observer {
    method: Calibration,
    spec: QuantSpec,
    param_shape: Option<Vec<usize>>,
    block_shape: Option<Vec<usize>>,
    groups: Vec<Group>,
}

impl Observer {
    /// An observer of `method` that will give parameters for `spec` (its granularity decides the
    /// groups; histogram methods are per tensor or per axis, not per block).
    pub fn new(method: Calibration, spec: QuantSpec) -> Result<Self> {
        match method {
            Calibration::MovingAverageMinMax { averaging_constant: c } if !(c > 0.0 && c <= 1.0) => {
                return Err(Error::invalid("averaging_constant", c, "must be in (0, 1]"));
            }
            Calibration::Percentile { percentile: p } if !(p > 0.0 && p <= 100.0) => {
                return Err(Error::invalid("percentile", p, "must be in (0, 100]"));
            }
            _ => {}
        }
        if let Granularity::PerBlock { block, .. } = spec.granularity {
            if block == 0 {
                return Err(Error::invalid("block", block, "block size must be at least 1"));
            }
            if method.uses_histogram() {
                return Err(Error::invalid(
                    "granularity",
                    "per block",
                    "histogram calibration is per tensor or per axis; use min-max per block",
                ));
            }
        }
        Ok(Observer { method, spec, param_shape: None, block_shape: None, groups: Vec::new() })
    }

    /// The calibration method.
    pub fn method(&self) -> Calibration {
        self.method
    }

    /// The spec the parameters are for.
    pub fn spec(&self) -> &QuantSpec {
        &self.spec
    }

    /// Sees one batch `x` of `shape`. NaN or infinity is an error naming its index, and then the
    /// observer is unchanged; so is a batch whose groups differ from earlier batches'.
    pub fn observe(&mut self, x: &[f32], shape: &[usize]) -> Result<()> {
        let layout = super::params::check_data(self.spec.granularity, x, shape)?;
        let param_shape = self.spec.granularity.param_shape(shape)?;
        let block_shape = matches!(layout, Layout::Block { .. }).then(|| shape.to_vec());
        if let Some(expected) = &self.param_shape {
            if *expected != param_shape || self.block_shape != block_shape {
                return Err(Error::ShapeMismatch {
                    context: "observer batch (parameter groups differ from earlier batches)",
                    expected: self.block_shape.clone().unwrap_or_else(|| expected.clone()),
                    actual: shape.to_vec(),
                });
            }
        }
        let groups = layout.groups();
        let (bmin, bmax) = layout.ranges(x)?;
        let seen: Vec<bool> = bmin.iter().zip(&bmax).map(|(lo, hi)| lo <= hi).collect();
        if self.groups.is_empty() {
            let empty = Group { seen: false, min: 0.0, max: 0.0, hist: None };
            self.groups = crate::error::try_vec(groups, empty)?;
            self.param_shape = Some(param_shape);
            self.block_shape = block_shape;
        }
        for (g, group) in self.groups.iter_mut().enumerate() {
            if !seen[g] {
                continue;
            }
            match (self.method, group.seen) {
                (Calibration::MovingAverageMinMax { averaging_constant: c }, true) => {
                    group.min += c * (bmin[g] - group.min);
                    group.max += c * (bmax[g] - group.max);
                }
                (_, true) => {
                    group.min = group.min.min(bmin[g]);
                    group.max = group.max.max(bmax[g]);
                }
                (_, false) => (group.min, group.max) = (bmin[g], bmax[g]),
            }
            group.seen = true;
            if self.method.uses_histogram() {
                let exp = exp_above(bmin[g].abs().max(bmax[g].abs()));
                match &mut group.hist {
                    Some(h) => h.grow_to(exp),
                    None => group.hist = Some(Histogram::new(exp)?),
                }
            }
        }
        if self.method.uses_histogram() {
            let groups = &mut self.groups;
            layout.runs(|start, count, g| {
                if let Some(h) = &mut groups[g].hist {
                    h.add(&x[start..start + count]);
                }
            });
        }
        Ok(())
    }

    /// Adds what `other` saw (same method, spec and groups): the result is the observer that saw
    /// both streams. Moving averages depend on order and cannot be merged.
    pub fn merge(&mut self, other: &Observer) -> Result<()> {
        if let Calibration::MovingAverageMinMax { .. } = self.method {
            return Err(Error::invalid(
                "observer",
                "moving-average min-max",
                "depends on batch order; cannot merge",
            ));
        }
        if self.method != other.method || self.spec != other.spec {
            return Err(Error::invalid("other", "observer", "method or spec differs"));
        }
        if other.groups.is_empty() {
            return Ok(());
        }
        if self.groups.is_empty() {
            *self = other.clone();
            return Ok(());
        }
        if self.param_shape != other.param_shape || self.block_shape != other.block_shape {
            return Err(Error::ShapeMismatch {
                context: "observer merge",
                expected: self.param_shape.clone().unwrap_or_default(),
                actual: other.param_shape.clone().unwrap_or_default(),
            });
        }
        for (a, b) in self.groups.iter_mut().zip(&other.groups) {
            if !b.seen {
                continue;
            }
            if !a.seen {
                *a = b.clone();
                continue;
            }
            a.min = a.min.min(b.min);
            a.max = a.max.max(b.max);
            if let (Some(ha), Some(hb)) = (&mut a.hist, &b.hist) {
                ha.merge(hb);
            }
        }
        Ok(())
    }

    /// The calibrated range `[min, max]` of each group.
    pub fn ranges(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        if self.groups.is_empty() {
            return Err(Error::invalid("observer", "empty", "has seen no data"));
        }
        let mut mins = Vec::with_capacity(self.groups.len());
        let mut maxs = Vec::with_capacity(self.groups.len());
        for (g, group) in self.groups.iter().enumerate() {
            if !group.seen {
                return Err(Error::invalid("observer", format!("group {g}"), "has seen no data"));
            }
            let (lo, hi) = match (&group.hist, self.method) {
                (Some(h), Calibration::Percentile { percentile }) => {
                    self.percentile_range(group, h, percentile)
                }
                (Some(h), Calibration::Entropy) => {
                    clip(group, entropy_threshold(&h.folded(), h.width(), &self.spec))
                }
                (Some(h), Calibration::Mse) => self.mse_range(group, h)?,
                _ => (group.min, group.max),
            };
            mins.push(lo);
            maxs.push(hi);
        }
        Ok((mins, maxs))
    }

    /// The parameters for the spec from the calibrated ranges.
    pub fn params(&self) -> Result<QuantParams> {
        let (mins, maxs) = self.ranges()?;
        let shape = self.param_shape.clone().unwrap_or_default();
        QuantParams::from_ranges(self.spec, shape, &mins, &maxs)
    }

    fn percentile_range(&self, group: &Group, h: &Histogram, p: f64) -> (f32, f32) {
        if self.spec.mode == Mode::Symmetric {
            let folded = h.folded();
            let j = rank_bin(&folded, p);
            return clip(group, (j + 1) as f64 * h.width());
        }
        let lo = rank_bin(&h.counts, 100.0 - p);
        let hi = rank_bin(&h.counts, p);
        let lo = (h.edge(lo) as f32).max(group.min);
        let hi = (h.edge(hi + 1) as f32).min(group.max);
        (lo.min(hi), hi.max(lo))
    }

    /// The candidate thresholds from the largest down, then `amax`; the first of least error wins.
    ///
    /// A candidate's error is a sum of non-negative terms taken in bin order, and a rounded f64 sum of
    /// non-negative terms never decreases as terms are added, so a candidate whose partial sum already
    /// reaches the best error so far cannot win and is abandoned there: the same winner, bit for bit,
    /// as summing every cell of every candidate (one group's search took 0.2 M round trips; with
    /// 30522 groups that was most of a minute).
    fn mse_range(&self, group: &Group, h: &Histogram) -> Result<(f32, f32)> {
        let w = h.width();
        let (values, counts): (Vec<f32>, Vec<f64>) = h
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (((h.edge(i) + 0.5 * w) as f32).clamp(group.min, group.max), c as f64))
            .unzip();
        let amax = group.min.abs().max(group.max.abs());
        let top = ((f64::from(amax) / w).ceil() as usize).clamp(1, HALF);
        let stride = top.div_ceil(512);
        let mut best = (f64::INFINITY, clip(group, f64::from(amax)));
        let candidates = (1..=top).rev().step_by(stride).map(|k| k as f64 * w).chain([f64::from(amax)]);
        for t in candidates {
            let (lo, hi) = clip(group, t);
            let (scale, zp) = self.spec.params_for_range(lo, hi)?;
            let err = if self.spec.rounding == Rounding::HalfEven {
                let fast = FastRoundTrip::new(&self.spec, scale, zp);
                if fast.reciprocal {
                    sum_below(&values, &counts, best.0, |c| fast.round_trip::<true>(c))
                } else {
                    sum_below(&values, &counts, best.0, |c| fast.round_trip::<false>(c))
                }
            } else {
                let qz = Quantizer::new(&self.spec, scale, zp);
                sum_below(&values, &counts, best.0, |c| qz.dequantize(qz.quantize(c, 0)))
            };
            if let Some(err) = err.filter(|&e| e < best.0) {
                best = (err, (lo, hi));
            }
        }
        Ok(best.1)
    }
}

/// `sum(n * (c - round_trip(c))^2)` over the cells in order, or `None` as soon as the partial sum
/// reaches `bound` (checked every 32 cells).
#[inline]
fn sum_below(values: &[f32], counts: &[f64], bound: f64, round_trip: impl Fn(f32) -> f32) -> Option<f64> {
    let mut err = 0.0;
    for (vs, ns) in values.chunks(32).zip(counts.chunks(32)) {
        for (&c, &n) in vs.iter().zip(ns) {
            err += n * sq(f64::from(c) - f64::from(round_trip(c)));
        }
        if err >= bound {
            return None;
        }
    }
    Some(err)
}

fn sq(e: f64) -> f64 {
    e * e
}

/// `Quantizer::dequantize(Quantizer::quantize(x))` for half-to-even rounding, computed the same way
/// with the rounding inline: without SSE4.1 in the baseline target, `round_ties_even` is a libm call
/// that spills the error sum of the MSE search to memory every element (3x slower). A test checks
/// it against the quantizer bit for bit.
struct FastRoundTrip {
    scale: f32,
    inv_scale: f32,
    reciprocal: bool,
    zero_point: i32,
    qmin: f64,
    qmax: f64,
}

impl FastRoundTrip {
    fn new(spec: &QuantSpec, scale: f32, zero_point: i32) -> Self {
        let (qmin, qmax) = spec.qrange();
        FastRoundTrip {
            scale,
            inv_scale: 1.0 / scale,
            reciprocal: spec.convention != Convention::Onnx,
            zero_point,
            qmin: f64::from(qmin),
            qmax: f64::from(qmax),
        }
    }

    /// `round_ties_even(t)` for finite `t`: below 2^23, adding and removing 2^23 rounds to an integer
    /// in the default (ties-to-even) mode; from 2^23 up every f32 is an integer.
    #[inline]
    fn round_even(t: f32) -> f32 {
        const BIG: f32 = 8_388_608.0;
        let a = t.abs();
        if a < BIG {
            ((a + BIG) - BIG).copysign(t)
        } else {
            t
        }
    }

    /// The round trip with the scale applied as `x * (1 / scale)` (`RECIPROCAL`, every convention but
    /// ONNX's) or `x / scale`, as the spec's quantizer does.
    #[inline]
    fn round_trip<const RECIPROCAL: bool>(&self, x: f32) -> f32 {
        let t = if RECIPROCAL { x * self.inv_scale } else { x / self.scale };
        let zero_point = f64::from(self.zero_point);
        let q = (f64::from(Self::round_even(t)) + zero_point).clamp(self.qmin, self.qmax);
        // q is an integer of the type's range: q - zero_point is exact, as it is in i32.
        (q - zero_point) as f32 * self.scale
    }
}

/// `[max(min, -t), min(max, t)]` in f32.
fn clip(group: &Group, t: f64) -> (f32, f32) {
    let t = t as f32;
    let lo = group.min.max(-t).min(0.0f32.max(group.min));
    let hi = group.max.min(t).max(0.0f32.min(group.max));
    (lo.min(hi), hi.max(lo))
}

/// The first bin at which the cumulative count reaches `p`% of the total (ceil, at least 1).
fn rank_bin(counts: &[u64], p: f64) -> usize {
    let total: u64 = counts.iter().sum();
    let target = ((total as f64 * p / 100.0).ceil() as u64).clamp(1, total.max(1));
    let mut cum = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        cum += c;
        if cum >= target {
            return i;
        }
    }
    counts.len() - 1
}

/// TensorRT / pytorch-quantization entropy calibration on an |x| histogram of bin `width`: returns
/// the threshold (an upper bin edge).
fn entropy_threshold(folded: &[u64], width: f64, spec: &QuantSpec) -> f64 {
    let stop = folded.iter().rposition(|&c| c > 0).map_or(1, |i| i + 1);
    let bits = spec.qtype.bits() - u32::from(spec.qtype.is_signed());
    let levels = 1usize << bits;
    if stop <= levels {
        return stop as f64 * width;
    }
    let mut bins: Vec<f64> = folded[..stop].iter().map(|&c| c as f64).collect();
    // The spike of exact zeros would dominate the divergence: pytorch-quantization flattens it.
    bins[0] = bins[1];
    let mut best = (f64::INFINITY, stop);
    let mut q = vec![0.0f64; stop];
    let mut tail: f64 = 0.0;
    let mut tails = vec![0.0f64; stop + 1];
    for i in (0..stop).rev() {
        tail += bins[i];
        tails[i] = tail;
    }
    for i in levels..=stop {
        // Quantized distribution: each of `levels` chunks spreads its mass over its nonzero bins.
        let mut start = 0;
        for c in 0..levels {
            let end = ((c + 1) * i).div_ceil(levels).min(i);
            let (mut sum, mut nonzero) = (0.0, 0usize);
            for &b in &bins[start..end] {
                sum += b;
                nonzero += usize::from(b != 0.0);
            }
            for j in start..end {
                q[j] = if bins[j] != 0.0 { sum / nonzero as f64 } else { 0.0 };
            }
            start = end;
        }
        let p_total = tails[0];
        let q_total: f64 = q[..i].iter().sum::<f64>();
        let mut kl = 0.0;
        for j in 0..i {
            let p = if j == i - 1 { bins[j] + tails[i] } else { bins[j] } / p_total;
            if p > 0.0 {
                let qj = q[j] / q_total;
                kl += if qj > 0.0 { p * (p / qj).ln() } else { f64::INFINITY };
            }
        }
        // Ties go to the larger threshold, as the reference's reversed argmin does.
        if kl <= best.0 {
            best = (kl, i);
        }
    }
    best.1 as f64 * width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_round_trip_is_the_quantizers_bit_for_bit() {
        use crate::quant::{QType, QuantSpec};
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for qtype in [QType::I8, QType::U8, QType::I4, QType::U4] {
            for mode in [Mode::Symmetric, Mode::Affine] {
                for convention in [Convention::Onnx, Convention::PyTorch, Convention::TfLite] {
                    let mut spec = QuantSpec::new(qtype, mode);
                    spec.convention = convention;
                    for _ in 0..200 {
                        let scale = f32::from_bits(0x3000_0000 + (next() as u32 % 0x1000_0000));
                        let (lo, hi) = spec.qrange();
                        let zp = if mode == Mode::Affine {
                            lo + (next() % (hi - lo + 1) as u64) as i32
                        } else {
                            0
                        };
                        let (fast, slow) =
                            (FastRoundTrip::new(&spec, scale, zp), Quantizer::new(&spec, scale, zp));
                        for _ in 0..200 {
                            // Values around the grid, exact halves, and far outside the range.
                            let k = (next() % 600) as f32 - 300.0;
                            let frac = [0.0, 0.5, -0.5, 0.25, 0.4999999, (next() % 1000) as f32 / 1000.0]
                                [next() as usize % 6];
                            for x in [
                                (k + frac) * scale,
                                f32::from_bits(next() as u32 & 0x7f7f_ffff),
                                -0.0,
                                1e30,
                                -1e30,
                            ] {
                                let want = slow.dequantize(slow.quantize(x, 0));
                                let got = if fast.reciprocal {
                                    fast.round_trip::<true>(x)
                                } else {
                                    fast.round_trip::<false>(x)
                                };
                                assert_eq!(got.to_bits(), want.to_bits(), "{x} {scale} {zp} {spec:?}");
                            }
                        }
                    }
                }
            }
        }
        for t in [0.5f32, 1.5, 2.5, -0.5, -2.5, 4_194_304.5, 8_388_607.5, 8_388_608.0, 1e9, -1e9, -0.3, 0.0] {
            assert_eq!(FastRoundTrip::round_even(t).to_bits(), t.round_ties_even().to_bits(), "{t}");
        }
    }

    #[test]
    fn grid_exponent_is_strictly_above() {
        assert_eq!(exp_above(1.0), 1);
        assert_eq!(exp_above(0.75), 0);
        assert_eq!(exp_above(3.0), 2);
        assert_eq!(exp_above(0.0), MIN_EXP);
    }

    #[test]
    fn growing_the_grid_equals_counting_on_it() {
        let xs: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 2001) as f32 / 250.0 - 4.0).collect();
        let mut direct = Histogram::new(exp_above(8.0)).unwrap();
        direct.add(&xs);
        let mut grown = Histogram::new(exp_above(4.0)).unwrap();
        grown.add(&xs);
        grown.grow_to(exp_above(8.0));
        assert_eq!(direct, grown);
    }

    #[test]
    fn digitize_chunks_match_numpy() {
        // np.digitize(range(i), np.linspace(0, i, n + 1)) - 1 puts j in chunk floor(j * n / i):
        // chunk c spans [ceil(c * i / n), ceil((c + 1) * i / n)).
        let (i, n) = (300usize, 128usize);
        for c in 0..n {
            for j in (c * i).div_ceil(n)..((c + 1) * i).div_ceil(n) {
                assert_eq!(j * n / i, c);
            }
        }
    }

    /// The search before it abandoned candidates: every cell of every candidate summed, through the
    /// spec's own quantizer. The pruned search must pick the same range, bit for bit.
    fn mse_range_exhaustive(observer: &Observer, group: &Group, h: &Histogram) -> (f32, f32) {
        let w = h.width();
        let cells: Vec<(f32, f64)> = h
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (((h.edge(i) + 0.5 * w) as f32).clamp(group.min, group.max), c as f64))
            .collect();
        let amax = group.min.abs().max(group.max.abs());
        let top = ((f64::from(amax) / w).ceil() as usize).clamp(1, HALF);
        let mut best = (f64::INFINITY, clip(group, f64::from(amax)));
        for t in (1..=top).rev().step_by(top.div_ceil(512)).map(|k| k as f64 * w).chain([f64::from(amax)]) {
            let (lo, hi) = clip(group, t);
            let (scale, zp) = observer.spec.params_for_range(lo, hi).unwrap();
            let qz = Quantizer::new(&observer.spec, scale, zp);
            let err: f64 = cells
                .iter()
                .map(|&(c, n)| n * sq(f64::from(c) - f64::from(qz.dequantize(qz.quantize(c, 0)))))
                .sum();
            if err < best.0 {
                best = (err, (lo, hi));
            }
        }
        best.1
    }

    #[test]
    fn abandoning_candidates_picks_the_exhaustive_searchs_range() {
        use crate::quant::{QType, QuantSpec};
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for qtype in [QType::I8, QType::U8, QType::I4, QType::U4] {
            for mode in [Mode::Symmetric, Mode::Affine] {
                for convention in [Convention::Onnx, Convention::PyTorch] {
                    let mut spec = QuantSpec::new(qtype, mode);
                    spec.convention = convention;
                    for case in 0..40 {
                        // Gaussian-like rows with an outlier, shifted rows, a constant row, a tiny row.
                        let n = [1, 2, 7, 384, 1000][case % 5];
                        let mut x: Vec<f32> = (0..n)
                            .map(|_| (0..4).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).sum::<f32>())
                            .collect();
                        match case % 4 {
                            0 => x[0] *= 10.0,
                            1 => x.iter_mut().for_each(|v| *v += 3.0),
                            2 => x.iter_mut().for_each(|v| *v = 0.25),
                            _ => x.iter_mut().for_each(|v| *v *= 1e-30),
                        }
                        let mut observer = Observer::new(Calibration::Mse, spec).unwrap();
                        observer.observe(&x, &[n]).unwrap();
                        let group = &observer.groups[0];
                        let h = group.hist.as_ref().unwrap();
                        let (lo, hi) = observer.mse_range(group, h).unwrap();
                        let (want_lo, want_hi) = mse_range_exhaustive(&observer, group, h);
                        assert_eq!(
                            (lo.to_bits(), hi.to_bits()),
                            (want_lo.to_bits(), want_hi.to_bits()),
                            "{spec:?} case {case}"
                        );
                    }
                }
            }
        }
    }
}
