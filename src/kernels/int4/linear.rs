//! The int4 linear layer: group-wise int4 weights packed once for the W4A8 GEMM, an optional
//! per-group offset for zero points that are not integers (HQQ's), and a bias.

use super::gemm::{gemm_w4a8_packed_on, PackedInt4};
use super::Int4Weights;
use crate::error::{check_len, checked_product, try_vec};
use crate::kernels::Isa;
use crate::quant::GptqWeight;
use crate::{Error, Result};

/// `y = x W^T + b` with W in greenai's group-wise int4 layout ([`Int4Weights`]: signed nibbles,
/// one f32 scale and one integer zero point per group of a row) on the W4A8 GEMM
/// ([`gemm_w4a8_packed`](super::gemm_w4a8_packed)). A zero point that is not an integer keeps its
/// remainder as an offset `scale * (zero - round(zero))` per group, subtracted times the group's
/// f32 sum of inputs, so `w = scale * (q - zero)` holds exactly.
#[derive(Clone, Debug)]
pub struct Int4Linear {
    weights: PackedInt4,
    /// `groups x rows` (transposed, so the correction runs along y's rows), or none when every
    /// zero point is an integer.
    offsets: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
}

impl Int4Linear {
    /// The layer of `w` with optional per-group `offsets` (laid out as `w.scales`, finite) and
    /// `bias` (`w.rows` finite values).
    pub fn new(w: &Int4Weights<'_>, offsets: Option<&[f32]>, bias: Option<&[f32]>) -> Result<Int4Linear> {
        let weights = PackedInt4::new(w)?;
        let params = checked_product("int4 offsets", &[w.rows, w.groups()])?;
        let finite = |name: &'static str, v: &[f32], len: usize| -> Result<Vec<f32>> {
            check_len(name, v.len(), len)?;
            if let Some(i) = v[..len].iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite { name, index: i, value: f64::from(v[i]) });
            }
            Ok(v[..len].to_vec())
        };
        let offsets = offsets.map(|o| finite("offsets", o, params)).transpose()?;
        let groups = w.groups();
        let offsets = match offsets {
            Some(o) => {
                let mut t = try_vec(params, 0.0f32)?;
                for (r, row) in o.chunks_exact(groups.max(1)).enumerate() {
                    for (g, &v) in row.iter().enumerate() {
                        t[g * w.rows + r] = v;
                    }
                }
                Some(t)
            }
            None => None,
        };
        let bias = bias.map(|b| finite("bias", b, w.rows)).transpose()?;
        Ok(Int4Linear { weights, offsets, bias })
    }

    /// The layer of a 4-bit GPTQ-layout weight (greenai's RTN, HQQ or GPTQ results) with
    /// contiguous groups (`g_idx[c] = c / group`: act order only with static groups), even `cols`
    /// and an optional bias of `rows` values. Levels `0..=15` become signed nibbles `q - 8`; each
    /// zero point is rounded into `[0, 15]` and its remainder kept as an offset.
    pub fn from_gptq(w: &GptqWeight, bias: Option<&[f32]>) -> Result<Int4Linear> {
        let (rows, cols) = (w.rows, w.cols);
        let elems = checked_product("int4 weights", &[rows, cols])?;
        check_len("g_idx", w.g_idx.len(), cols)?;
        check_len("q", w.q.len(), elems)?;
        let group = w.g_idx.iter().take_while(|&&g| g == 0).count().max(1);
        if w.g_idx[..cols].iter().enumerate().any(|(c, &g)| g < 0 || g as usize != c / group)
            || w.groups != cols.div_ceil(group)
        {
            return Err(Error::invalid(
                "g_idx",
                "permuted groups",
                "the int4 kernel takes contiguous groups only (act order needs static groups)",
            ));
        }
        if let Some(i) = w.q[..elems].iter().position(|&q| q > 15) {
            return Err(Error::invalid("q", w.q[i], format!("[{i}]: not a 4-bit level")));
        }
        if !cols.is_multiple_of(2) {
            return Err(Error::invalid(
                "cols",
                cols,
                "packed int4 rows must start on a byte: cols must be even",
            ));
        }
        let params = checked_product("int4 scales", &[rows, w.groups])?;
        check_len("scales", w.scales.len(), params)?;
        check_len("zeros", w.zeros.len(), params)?;
        let mut packed = try_vec(elems / 2, 0u8)?;
        for (byte, pair) in packed.iter_mut().zip(w.q.chunks_exact(2)) {
            // Level q in 0..=15 is the signed nibble q - 8: flipping bit 3 gives its two's complement.
            *byte = (pair[0] ^ 8) | ((pair[1] ^ 8) << 4);
        }
        let (mut zeros, mut offsets) = (try_vec(params, 0i8)?, try_vec(params, 0.0f32)?);
        for (i, (&z, &s)) in w.zeros[..params].iter().zip(&w.scales[..params]).enumerate() {
            if !z.is_finite() {
                return Err(Error::NonFinite { name: "zeros", index: i, value: f64::from(z) });
            }
            let whole = z.round().clamp(0.0, 15.0);
            zeros[i] = whole as i8 - 8;
            offsets[i] = s * (z - whole);
        }
        let offsets = offsets.iter().any(|&o| o != 0.0).then_some(&offsets[..]);
        let view = Int4Weights {
            rows,
            cols,
            group,
            packed: &packed,
            scales: &w.scales[..params],
            zero_points: Some(&zeros),
        };
        Int4Linear::new(&view, offsets, bias)
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weights.cols()
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weights.rows()
    }

    /// Weights per group along a row.
    pub fn group(&self) -> usize {
        self.weights.group()
    }

    /// Bytes the layer holds: packed weights, scales, zero points, offsets and bias.
    pub fn bytes(&self) -> usize {
        self.weights.bytes()
            + self.offsets.as_ref().map_or(0, |o| 4 * o.len())
            + self.bias.as_ref().map_or(0, |b| 4 * b.len())
    }

    /// `y = x W^T + b` for `batch` rows of x (`batch x in_features`, finite), y `batch x
    /// out_features` (overwritten). Activations quantized per row and group as
    /// [`gemv_w4a8`](super::gemv_w4a8) does; one batch row gives the scalar GEMV's bits plus the
    /// bias (and offsets), whatever the batch. Nothing is written on failure.
    pub fn forward(&self, x: &[f32], batch: usize, y: &mut [f32]) -> Result<()> {
        self.forward_on(Isa::active(), x, batch, y)
    }

    /// [`Int4Linear::forward`] on a chosen tier.
    pub fn forward_on(&self, isa: Isa, x: &[f32], batch: usize, y: &mut [f32]) -> Result<()> {
        let (cols, rows, group) = (self.in_features(), self.out_features(), self.group());
        let groups = cols.div_ceil(group);
        let with_offsets = self.offsets.is_some();
        let mut sums = try_vec(if with_offsets { groups } else { 0 }, 0.0f32)?;
        let mut acc = try_vec(if with_offsets { rows } else { 0 }, 0.0f32)?;
        gemm_w4a8_packed_on(isa, &self.weights, x, batch, y)?;
        if rows == 0 {
            return Ok(());
        }
        let y = &mut y[..batch * rows];
        if let Some(bias) = &self.bias {
            for yr in y.chunks_exact_mut(rows) {
                yr.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        }
        if let (Some(off), true) = (&self.offsets, cols > 0) {
            // y -= sum over groups of offset * (the group's f32 sum of x), the groups summed in
            // order for each output (as `Iterator::sum`), vectorized along the outputs.
            for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
                for (s, xg) in sums.iter_mut().zip(xr.chunks(group)) {
                    *s = xg.iter().sum();
                }
                for (g, (og, &s)) in off.chunks_exact(rows).zip(&sums).enumerate() {
                    if g == 0 {
                        acc.iter_mut().zip(og).for_each(|(a, &o)| *a = o * s);
                    } else {
                        acc.iter_mut().zip(og).for_each(|(a, &o)| *a += o * s);
                    }
                }
                yr.iter_mut().zip(&acc).for_each(|(v, a)| *v -= a);
            }
        }
        Ok(())
    }
}
