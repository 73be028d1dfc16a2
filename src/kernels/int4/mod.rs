//! W4A8 GEMV over greenai's own group-wise int4 weights, as `compress --quant int4
//! --granularity block:G` stores them: signed 4-bit values packed two per byte along each row
//! (element `2j` in the low nibble of byte `j`), one f32 scale per group of `G` consecutive
//! weights of a row (the last group of a row may be shorter) and, for affine weights, one zero
//! point per group: `w = scale * (q - zero)`.
//!
//! The activations are quantized once per call, per group, to symmetric int8 (`scale = max |x| /
//! 127`, round half to even); each group's dot product is an exact integer, scaled by the weight
//! and activation scales in f32 in one order on every tier, group after group:
//! `y += (scale * activation scale) * dot` (no fused multiply-add), so every tier gives the scalar
//! reference's bits. The SIMD tiers read the nibbles as `q + 8` in u8 (`vpmaddubsw` on AVX2, a row
//! at a time; `vpdpbusd` on AVX-512, 16 rows at a time, whose 16 sums per group one transposing
//! reduction turns into one lane per row) against activations reordered once per call (per step of
//! the tier's width: the even elements, then the odd ones) and subtract `(8 + zero) * sum(a)` per
//! group.

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_x86;
mod linear;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use gemm::{gemm_w4a8, gemm_w4a8_on, gemm_w4a8_packed, gemm_w4a8_packed_on, PackedInt4};
pub use linear::Int4Linear;

use crate::error::{check_len, try_vec};
use crate::kernels::Isa;
use crate::{Error, Result};

/// Columns per SIMD step: 16 packed bytes.
const CHUNK: usize = 32;

/// Columns per AVX-512 step: 64 packed bytes (a group's last step may be shorter).
#[cfg(target_arch = "x86_64")]
const CHUNK_512: usize = 128;

/// The longest group the exact i32 sums take: `15 * 127 * 2^20` fits an i32.
const MAX_GROUP_COLS: usize = 1 << 20;

/// A row-major `rows x cols` matrix of group-wise int4 weights (see the module notes).
#[derive(Clone, Copy, Debug)]
pub struct Int4Weights<'a> {
    /// Output features (rows of W).
    pub rows: usize,
    /// Input features; even, so that every row starts on a byte.
    pub cols: usize,
    /// Weights per group along a row.
    pub group: usize,
    /// `rows * cols / 2` bytes of packed signed nibbles.
    pub packed: &'a [u8],
    /// `rows * ceil(cols / group)` finite scales, row after row.
    pub scales: &'a [f32],
    /// Zero points in [-8, 7], laid out as `scales`; `None` for symmetric weights.
    pub zero_points: Option<&'a [i8]>,
}

impl Int4Weights<'_> {
    /// Groups per row.
    pub fn groups(&self) -> usize {
        self.cols.div_ceil(self.group.max(1))
    }

    /// Checks the shape and buffers.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.cols.is_multiple_of(2) {
            return Err(Error::invalid(
                "cols",
                self.cols,
                "packed int4 rows must start on a byte: cols must be even",
            ));
        }
        if self.group == 0 {
            return Err(Error::invalid("group", 0, "a group holds at least one weight"));
        }
        if self.group.min(self.cols) > MAX_GROUP_COLS {
            return Err(Error::invalid(
                "group",
                self.group,
                format!("a group's exact integer sum holds at most {MAX_GROUP_COLS} columns"),
            ));
        }
        let elems = crate::error::checked_product("int4 weights", &[self.rows, self.cols])?;
        check_len("packed", self.packed.len(), elems / 2)?;
        let params = crate::error::checked_product("int4 scales", &[self.rows, self.groups()])?;
        check_len("scales", self.scales.len(), params)?;
        // Branch-free passes first (they vectorize: a GEMV call checks every scale); the position
        // only when something is wrong.
        let scales = &self.scales[..params];
        if !scales.iter().fold(true, |ok, s| ok & s.is_finite()) {
            let i = scales.iter().position(|s| !s.is_finite()).unwrap_or(0);
            return Err(Error::invalid("scales", scales[i], format!("[{i}]: must be finite")));
        }
        if let Some(z) = self.zero_points {
            check_len("zero_points", z.len(), params)?;
            let z = &z[..params];
            let in_range = |z: &i8| (-8..=7).contains(z);
            if !z.iter().fold(true, |ok, z| ok & in_range(z)) {
                let i = z.iter().position(|z| !in_range(z)).unwrap_or(0);
                return Err(Error::invalid("zero_points", z[i], format!("[{i}]: outside [-8, 7]")));
            }
        }
        Ok(())
    }

    /// Whether the SIMD tiers take these weights (whole 32-column steps in every group).
    fn simd_shape(&self) -> bool {
        self.group.is_multiple_of(CHUNK) && self.cols.is_multiple_of(CHUNK)
    }
}

/// The activations of one call, quantized per weight group.
pub(crate) struct Activations {
    /// The int8 values in column order.
    pub q: Vec<i8>,
    /// The same values reordered per step of each group (32 columns on AVX2, 128 on AVX-512, the
    /// last step of a group possibly shorter): the step's even columns, then its odd ones; empty
    /// on the tiers that read `q`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub split: Vec<i8>,
    /// Each group's scale.
    pub scale: Vec<f32>,
    /// Each group's sum of values.
    pub sum: Vec<i32>,
}

/// Quantizes one group `xg` (finite) into `qg` on `isa`, and where the tier reads a
/// [`split`](Activations::split) (`sg` as long as `qg`, else empty) reorders it into `sg`:
/// returns the group's scale and the sum of its values. Every tier runs the same Rust
/// arithmetic, compiled for the tier (so rounding half to even is an instruction there, not a
/// libm call): the same values on every tier.
#[inline]
pub(crate) fn quantize_group(
    isa: Isa,
    xg: &[f32],
    qg: &mut [i8],
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables, reason = "no tier reads a split"))]
    sg: &mut [i8],
) -> (f32, i32) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers pass a tier that passed ensure_available.
        Isa::Avx512 => unsafe { x86::quantize_group_avx512(xg, qg, sg) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::quantize_group_avx2(xg, qg, sg) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => quantize_group_body(xg, qg),
        Isa::Scalar => quantize_group_body(xg, qg),
    }
}

/// The arithmetic of [`quantize_group`].
#[inline(always)]
pub(crate) fn quantize_group_body(xg: &[f32], qg: &mut [i8]) -> (f32, i32) {
    // For finite values the order of |v| is the order of its bits without the sign: an integer
    // maximum, which vectorizes (a float one does not, for its NaN rules).
    let amax = f32::from_bits(xg.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF)));
    let scale = amax / 127.0;
    if scale == 0.0 {
        qg.fill(0);
        return (scale, 0);
    }
    for (o, &v) in qg.iter_mut().zip(xg) {
        #[allow(clippy::manual_clamp, reason = "clamp keeps a NaN, max then min give -127")]
        let r = (v / scale).round_ties_even().max(-127.0).min(127.0);
        // SAFETY: r is an integer in [-127, 127], so the conversion is exact and in range (the
        // checked `as` conversion would keep the loop from vectorizing).
        *o = unsafe { r.to_int_unchecked::<i32>() } as i8;
    }
    (scale, qg.iter().fold(0i32, |s, &v| s + i32::from(v)))
}

impl Activations {
    /// Quantizes `x` (finite) per group of `group` columns (on the scalar tier).
    #[cfg(test)]
    pub(crate) fn quantize(x: &[f32], group: usize) -> Result<Activations> {
        Activations::quantize_on(Isa::Scalar, x, group)
    }

    /// Quantizes `x` (finite) per group of `group` columns on `isa` (available).
    pub(crate) fn quantize_on(isa: Isa, x: &[f32], group: usize) -> Result<Activations> {
        let groups = x.len().div_ceil(group);
        let step = split_step(isa);
        let mut q = try_vec(x.len(), 0i8)?;
        let mut split = try_vec(if step.is_some() { x.len() } else { 0 }, 0i8)?;
        let (mut scale, mut sum) = (try_vec(groups, 0.0f32)?, try_vec(groups, 0i32)?);
        for (g, (xg, qg)) in x.chunks(group).zip(q.chunks_mut(group)).enumerate() {
            let sg = split.get_mut(g * group..g * group + qg.len()).unwrap_or_default();
            (scale[g], sum[g]) = quantize_group(isa, xg, qg, sg);
        }
        Ok(Activations { q, split, scale, sum })
    }
}

/// Columns per reordered step of [`Activations::split`] on `isa`; `None` where no kernel reads it
/// (the scalar and aarch64 tiers read `q`).
fn split_step(isa: Isa) -> Option<usize> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(CHUNK_512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(CHUNK),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => None,
        Isa::Scalar => None,
    }
}

/// The signed value of nibble `c` of a packed row.
#[inline]
fn nibble(row: &[u8], c: usize) -> i32 {
    let n = (row[c / 2] >> (4 * (c % 2))) & 0x0F;
    i32::from(((n << 4) as i8) >> 4)
}

/// One output of the scalar reference: per group the exact integer dot product less the zero
/// point's share, times `scale * activation scale`, summed in f32 group after group.
fn row_scalar(
    row: &[u8],
    cols: usize,
    group: usize,
    scales: &[f32],
    zeros: Option<&[i8]>,
    act: &Activations,
) -> f32 {
    let mut y = 0.0f32;
    for (g, start) in (0..cols).step_by(group).enumerate() {
        let end = (start + group).min(cols);
        let mut isum: i32 = (start..end).map(|c| nibble(row, c) * i32::from(act.q[c])).sum();
        isum -= zeros.map_or(0, |z| i32::from(z[g])) * act.sum[g];
        y += scales[g] * act.scale[g] * isum as f32;
    }
    y
}

/// `y = W x` for group-wise int4 W (`rows x cols`), `x` of `cols` finite values, `y` of at
/// least `rows` (overwritten); activations quantized per group to int8 (see the module notes).
/// Rows run in parallel under the feature `parallel`. Nothing is written on failure.
pub fn gemv_w4a8(w: &Int4Weights<'_>, x: &[f32], y: &mut [f32]) -> Result<()> {
    gemv_w4a8_on(Isa::active(), w, x, y)
}

/// Weights below which the GEMV stays on the calling thread.
#[cfg(feature = "parallel")]
const PARALLEL_MIN_WEIGHTS: usize = 1 << 20;

/// [`gemv_w4a8`] on a chosen tier. Weights whose groups or rows are not whole multiples of 32
/// columns take the scalar path on every tier.
pub fn gemv_w4a8_on(isa: Isa, w: &Int4Weights<'_>, x: &[f32], y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    w.check()?;
    check_len("x", x.len(), w.cols)?;
    check_len("y", y.len(), w.rows)?;
    let x = &x[..w.cols];
    crate::kernels::math::check_finite("x", x)?;
    let y = &mut y[..w.rows];
    if w.cols == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let act = Activations::quantize_on(isa, x, w.group)?;
    let (cols, group, groups) = (w.cols, w.group, w.groups());
    let row_bytes = cols / 2;
    let simd = w.simd_shape();
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && simd && w.rows < x86::TILE_ROWS {
        // Fewer rows than a tile: the rows copied into one tile padded with zeros.
        const R: usize = x86::TILE_ROWS;
        let params = w.rows * groups;
        let mut packed = try_vec(R * row_bytes, 0u8)?;
        packed[..w.rows * row_bytes].copy_from_slice(&w.packed[..w.rows * row_bytes]);
        let mut scales = try_vec(R * groups, 0.0f32)?;
        scales[..params].copy_from_slice(&w.scales[..params]);
        let zeros = match w.zero_points {
            None => None,
            Some(z) => {
                let mut padded = try_vec(R * groups, 0i8)?;
                padded[..params].copy_from_slice(&z[..params]);
                Some(padded)
            }
        };
        let padded =
            Int4Weights { rows: R, packed: &packed, scales: &scales, zero_points: zeros.as_deref(), ..*w };
        let mut tile = [0.0f32; R];
        // SAFETY: the tier passed ensure_available; the shape is whole 32-column steps, the padded
        // weights hold one whole tile of valid parameters, `act` was quantized with the AVX-512 steps.
        unsafe { x86::tile_avx512(&padded, &act, 0, &mut tile) };
        y.copy_from_slice(&tile[..w.rows]);
        return Ok(());
    }
    let row = |r: usize| -> f32 {
        let row = &w.packed[r * row_bytes..(r + 1) * row_bytes];
        let scales = &w.scales[r * groups..(r + 1) * groups];
        let zeros = w.zero_points.map(|z| &z[r * groups..(r + 1) * groups]);
        match isa {
            Isa::Scalar => row_scalar(row, cols, group, scales, zeros, &act),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the tier passed ensure_available; the shape is whole 32-column steps and
            // every slice was checked against it.
            Isa::Avx2 if simd => unsafe { x86::row_avx2(row, group, scales, zeros, &act) },
            // AVX-512 runs whole tiles whenever the shape allows (its activations are reordered in
            // 128-column steps, which the AVX2 row does not read).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => row_scalar(row, cols, group, scales, zeros, &act),
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is part of every aarch64 target; the shape is whole 32-column steps and
            // every slice was checked against it.
            Isa::Neon if simd => unsafe { aarch64::row_neon(row, group, scales, zeros, &act) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: the tier passed ensure_available (i8mm implies dotprod); the shape as above.
            Isa::Dotprod | Isa::I8mm if simd => unsafe {
                aarch64::row_dotprod(row, group, scales, zeros, &act)
            },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::Dotprod | Isa::I8mm => row_scalar(row, cols, group, scales, zeros, &act),
        }
    };
    // Rows r0.. into `ys`; r0 is a multiple of the AVX-512 tile.
    let run = |r0: usize, ys: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && simd && w.rows >= x86::TILE_ROWS {
            const R: usize = x86::TILE_ROWS;
            let end = r0 + ys.len();
            let (tiles, rest) = ys.as_chunks_mut::<R>();
            for (t, tile) in tiles.iter_mut().enumerate() {
                // SAFETY: the tier passed ensure_available; the shape is whole 32-column steps,
                // `w` was checked, `act` quantized for it with the AVX-512 steps, and the tile's
                // rows exist.
                unsafe { x86::tile_avx512(w, &act, r0 + t * R, tile) };
            }
            if !rest.is_empty() {
                // The last rows as the last lanes of the tile that ends with them (each lane's
                // bits do not depend on the tile it sits in).
                let mut tile = [0.0f32; R];
                // SAFETY: as above; rows end - 16..end exist since w.rows >= 16.
                unsafe { x86::tile_avx512(w, &act, end - R, &mut tile) };
                rest.copy_from_slice(&tile[R - rest.len()..]);
            }
            return;
        }
        for (i, out) in ys.iter_mut().enumerate() {
            *out = row(r0 + i);
        }
    };
    #[cfg(feature = "parallel")]
    if w.rows.saturating_mul(cols) >= PARALLEL_MIN_WEIGHTS && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        const ROWS_PER_TASK: usize = 64;
        y.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(t, ys)| run(t * ROWS_PER_TASK, ys));
        return Ok(());
    }
    run(0, y);
    Ok(())
}
