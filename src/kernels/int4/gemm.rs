//! The W4A8 GEMM `y (m x rows) = x (m x cols) W^T` over group-wise int4 weights, on weights
//! repacked once ([`PackedInt4`]) so that a SIMD register holds one 4-byte quad of 16 output rows.
//!
//! Every token row is quantized exactly as [`gemv_w4a8`](super::gemv_w4a8) does (per group,
//! symmetric int8, round half to even); each group's dot product `sum (q - zero) * a` is an exact
//! integer, and the f32 work per output is the scalar reference's, group after group:
//! `y += (scale * activation scale) * dot`. So every tier of the GEMM gives the bits of the GEMV
//! (of any tier), row by row.

use super::{quantize_group, Int4Weights};
use crate::error::{check_len, checked_product, try_vec};
use crate::kernels::Isa;
use crate::Result;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use core::ops::Range;

/// Output rows per block of the kernel layout (one zmm of i32 or f32).
pub(crate) const BLOCK: usize = 16;
/// Columns per step of the kernel layout: 16 rows x 8 nibbles = 64 bytes.
pub(crate) const STEP: usize = 8;

/// Group-wise int4 weights repacked once for [`gemm_w4a8_packed`] (the layout of an
/// [`Int4Weights`]; scales, zero points and nibbles owned).
///
/// When `cols` and `group` are multiples of 8 the nibbles are blocked: 16 rows at a time, 8 columns
/// a 64-byte step, row `r`'s 4 bytes at `4 * (r % 16)` holding columns `c..c + 4` in the low
/// nibbles and `c + 4..c + 8` in the high ones, each as `q + 8` (0 to 15). Other shapes keep the
/// row-major order (as `q + 8` too) and run on the scalar path.
#[derive(Clone, Debug)]
pub struct PackedInt4 {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) group: usize,
    pub(crate) groups: usize,
    pub(crate) blocked: bool,
    pub(crate) data: Vec<u8>,
    /// Blocked: `[block][group][16]` (rows past the end 0); else `[row][group]`.
    pub(crate) scales: Vec<f32>,
    /// `8 + zero`, laid out as `scales`.
    pub(crate) zoff: Vec<i8>,
}

impl PackedInt4 {
    /// Repacks checked int4 weights (see [`Int4Weights`]).
    pub fn new(w: &Int4Weights<'_>) -> Result<PackedInt4> {
        w.check()?;
        let (rows, cols, group, groups) = (w.rows, w.cols, w.group, w.groups());
        let blocked = cols.is_multiple_of(STEP) && group.is_multiple_of(STEP);
        let blocks = rows.div_ceil(BLOCK);
        let prows = if blocked { blocks * BLOCK } else { rows };
        let mut data = try_vec(checked_product("int4 packed", &[prows, cols])? / 2, 0u8)?;
        let params = checked_product("int4 scales", &[prows, groups])?;
        let (mut scales, mut zoff) = (try_vec(params, 0.0f32)?, try_vec(params, 8i8)?);
        let row_bytes = cols / 2;
        for r in 0..rows {
            let src = &w.packed[r * row_bytes..(r + 1) * row_bytes];
            for g in 0..groups {
                let i = param_index(blocked, groups, r, g);
                scales[i] = w.scales[r * groups + g];
                zoff[i] = 8 + w.zero_points.map_or(0, |z| z[r * groups + g]);
            }
            if !blocked {
                for (d, &s) in data[r * row_bytes..(r + 1) * row_bytes].iter_mut().zip(src) {
                    *d = s ^ 0x88;
                }
                continue;
            }
            let steps = cols / STEP;
            for s in 0..steps {
                let at = ((r / BLOCK) * steps + s) * 4 * BLOCK + 4 * (r % BLOCK);
                for k in 0..4 {
                    let c = s * STEP + k;
                    let lo = unsigned_nibble(src, c);
                    let hi = unsigned_nibble(src, c + 4);
                    data[at + k] = lo | (hi << 4);
                }
            }
        }
        Ok(PackedInt4 { rows, cols, group, groups, blocked, data, scales, zoff })
    }

    /// Output features (rows of W).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Weights per group along a row.
    pub fn group(&self) -> usize {
        self.group
    }

    /// Bytes held (nibbles, scales and zero points, padding included).
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.scales.len() + self.zoff.len()
    }

    /// The signed value of weight `(r, c)`.
    #[inline]
    fn q(&self, r: usize, c: usize) -> i32 {
        let u = if self.blocked {
            let at = ((r / BLOCK) * (self.cols / STEP) + c / STEP) * 4 * BLOCK + 4 * (r % BLOCK) + c % 4;
            (self.data[at] >> (4 * ((c % STEP) / 4))) & 0x0F
        } else {
            (self.data[r * self.cols / 2 + c / 2] >> (4 * (c % 2))) & 0x0F
        };
        i32::from(u) - 8
    }
}

/// Where `(row, group)`'s scale and zero point sit.
#[inline]
fn param_index(blocked: bool, groups: usize, r: usize, g: usize) -> usize {
    if blocked {
        ((r / BLOCK) * groups + g) * BLOCK + r % BLOCK
    } else {
        r * groups + g
    }
}

/// Nibble `c` of a packed row as `q + 8`.
#[inline]
fn unsigned_nibble(row: &[u8], c: usize) -> u8 {
    ((row[c / 2] >> (4 * (c % 2))) & 0x0F) ^ 0x08
}

/// The activations of `m` token rows quantized per group (as the GEMV quantizes one).
pub(crate) struct RowActivations {
    /// `m x cols` int8 values.
    pub q: Vec<i8>,
    /// `m x groups` scales.
    pub scale: Vec<f32>,
    /// `m x groups` sums of values.
    pub sum: Vec<i32>,
}

impl RowActivations {
    fn quantize(isa: Isa, x: &[f32], m: usize, cols: usize, group: usize) -> Result<RowActivations> {
        let groups = cols.div_ceil(group);
        let mut q = try_vec(m * cols, 0i8)?;
        let (mut scale, mut sum) = (try_vec(m * groups, 0.0f32)?, try_vec(m * groups, 0i32)?);
        for (t, (xr, qr)) in x.chunks_exact(cols).zip(q.chunks_exact_mut(cols)).enumerate().take(m) {
            for (g, (xg, qg)) in xr.chunks(group).zip(qr.chunks_mut(group)).enumerate() {
                (scale[t * groups + g], sum[t * groups + g]) = quantize_group(isa, xg, qg, &mut []);
            }
        }
        Ok(RowActivations { q, scale, sum })
    }
}

/// The read-only operands of one call of a SIMD GEMM.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) struct Operands<'a> {
    pub(super) p: &'a PackedInt4,
    pub(super) act: &'a RowActivations,
}

/// Runs `tile(n, b, t0, yt)` for every tile of at most `tokens` tokens (`n` of them from `t0`)
/// against every block `b` of `blocks`, `yt` pointing at token `t0`'s run of block `b` in `y`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
pub(super) fn for_each_tile(
    o: &Operands<'_>,
    m: usize,
    tokens: usize,
    y: &mut [f32],
    ldy: usize,
    blocks: Range<usize>,
    mut tile: impl FnMut(usize, usize, usize, *mut f32),
) {
    let (p, act) = (o.p, o.act);
    debug_assert!(
        p.blocked && act.q.len() >= m * p.cols && blocks.end * BLOCK <= p.rows.next_multiple_of(BLOCK)
    );
    debug_assert!(m == 0 || y.len() >= (m - 1) * ldy + p.rows.min(blocks.end * BLOCK) - blocks.start * BLOCK);
    let mut t0 = 0;
    while t0 < m {
        let n = (m - t0).min(tokens);
        for b in blocks.clone() {
            tile(n, b, t0, y.as_mut_ptr().wrapping_add(t0 * ldy + (b - blocks.start) * BLOCK));
        }
        t0 += n;
    }
}

/// Output `r` for token `t`: the scalar reference's order (see the module notes).
fn out_scalar(p: &PackedInt4, act: &RowActivations, t: usize, r: usize) -> f32 {
    let (cols, group, groups) = (p.cols, p.group, p.groups);
    let aq = &act.q[t * cols..(t + 1) * cols];
    let mut y = 0.0f32;
    for g in 0..groups {
        let (start, end) = (g * group, ((g + 1) * group).min(cols));
        let mut isum: i32 = (start..end).map(|c| p.q(r, c) * i32::from(aq[c])).sum();
        let i = param_index(p.blocked, groups, r, g);
        isum -= (i32::from(p.zoff[i]) - 8) * act.sum[t * groups + g];
        y += p.scales[i] * act.scale[t * groups + g] * isum as f32;
    }
    y
}

/// `y (m x rows) = x (m x cols) W^T` for group-wise int4 W: each row of `x` quantized per group
/// as [`gemv_w4a8`](super::gemv_w4a8) does, with the same results as the scalar GEMV row by row.
/// Below 16 tokens it runs the GEMV per token on W as it is; from there it repacks W on every call (a layer calls [`gemm_w4a8_packed`] on a [`PackedInt4`] made once).
/// Nothing is written on failure.
pub fn gemm_w4a8(w: &Int4Weights<'_>, x: &[f32], m: usize, y: &mut [f32]) -> Result<()> {
    gemm_w4a8_on(Isa::active(), w, x, m, y)
}

/// Tokens from which [`gemm_w4a8`] repacks W rather than reading it once per token.
const REPACK_MIN_TOKENS: usize = 16;

/// [`gemm_w4a8`] on a chosen tier.
pub fn gemm_w4a8_on(isa: Isa, w: &Int4Weights<'_>, x: &[f32], m: usize, y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    if m >= REPACK_MIN_TOKENS {
        return gemm_w4a8_packed_on(isa, &PackedInt4::new(w)?, x, m, y);
    }
    w.check()?;
    let (rows, cols) = (w.rows, w.cols);
    check_len("x", x.len(), checked_product("x", &[m, cols])?)?;
    check_len("y", y.len(), checked_product("y", &[m, rows])?)?;
    crate::kernels::math::check_finite("x", &x[..m * cols])?;
    for t in 0..m {
        super::gemv_w4a8_on(isa, w, &x[t * cols..(t + 1) * cols], &mut y[t * rows..(t + 1) * rows])?;
    }
    Ok(())
}

/// `y (m x rows) = x (m x cols) W^T` on weights packed once; see [`gemm_w4a8`]. `x` holds at
/// least `m * cols` finite values, `y` at least `m * rows` (overwritten). Token rows run in
/// parallel under the feature `parallel` above a size; each row's result is the same either way.
pub fn gemm_w4a8_packed(p: &PackedInt4, x: &[f32], m: usize, y: &mut [f32]) -> Result<()> {
    gemm_w4a8_packed_on(Isa::active(), p, x, m, y)
}

/// Multiply-adds below which the GEMM stays on the calling thread.
#[cfg(feature = "parallel")]
const PARALLEL_MIN_MACS: usize = 1 << 21;

/// [`gemm_w4a8_packed`] on a chosen tier.
pub fn gemm_w4a8_packed_on(isa: Isa, p: &PackedInt4, x: &[f32], m: usize, y: &mut [f32]) -> Result<()> {
    isa.ensure_available()?;
    let (rows, cols) = (p.rows, p.cols);
    check_len("x", x.len(), checked_product("x", &[m, cols])?)?;
    check_len("y", y.len(), checked_product("y", &[m, rows])?)?;
    let (x, y) = (&x[..m * cols], &mut y[..m * rows]);
    crate::kernels::math::check_finite("x", x)?;
    if rows == 0 || m == 0 {
        return Ok(());
    }
    if cols == 0 {
        y.fill(0.0);
        return Ok(());
    }
    // Tokens t0..t0 + mt, output rows r0.. (a multiple of 16) into runs of `ys` `ldy` apart.
    let run = |t0: usize, mt: usize, r0: usize, ys: &mut [f32], ldy: usize| -> Result<()> {
        let act = RowActivations::quantize(isa, &x[t0 * cols..(t0 + mt) * cols], mt, cols, p.group)?;
        let width = if mt == 0 { 0 } else { (ys.len() - (mt - 1) * ldy).min(rows - r0) };
        // Row by row: the scalar tier and shapes kept row-major.
        let scalar = |ys: &mut [f32]| {
            for t in 0..mt {
                for (i, out) in ys[t * ldy..t * ldy + width].iter_mut().enumerate() {
                    *out = out_scalar(p, &act, t, r0 + i);
                }
            }
        };
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        let blocks = r0 / BLOCK..(r0 + width).div_ceil(BLOCK);
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the tier passed ensure_available; `p` is blocked (its sizes are consistent by
            // construction), `act` holds `mt` rows of `cols`, `ys` `mt` runs of `width` outputs
            // `ldy` apart, from row r0 (a multiple of 16) up to the end of `blocks` or `rows`.
            Isa::Avx512 if p.blocked => unsafe { super::gemm_x86::gemm_avx512(p, &act, mt, ys, ldy, blocks) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 if p.blocked => unsafe { super::gemm_x86::gemm_avx2(p, &act, mt, ys, ldy, blocks) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2 => scalar(ys),
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is part of every aarch64 target; `p`, `act`, `ys` and `blocks` as for the x86
            // tiers above.
            Isa::Neon if p.blocked => unsafe { super::aarch64::gemm_neon(p, &act, mt, ys, ldy, blocks) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: the tier passed ensure_available (i8mm implies dotprod); the operands as above.
            Isa::Dotprod | Isa::I8mm if p.blocked => unsafe {
                super::aarch64::gemm_dotprod(p, &act, mt, ys, ldy, blocks)
            },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::Dotprod | Isa::I8mm => scalar(ys),
            Isa::Scalar => scalar(ys),
        }
        Ok(())
    };
    #[cfg(feature = "parallel")]
    if m.saturating_mul(rows).saturating_mul(cols) >= PARALLEL_MIN_MACS {
        let threads = rayon::current_num_threads();
        if threads > 1 {
            use rayon::prelude::*;
            if m == 1 {
                // One token: blocks of output rows.
                let chunk = rows.div_ceil(threads * 4).next_multiple_of(BLOCK);
                return y
                    .par_chunks_mut(chunk)
                    .enumerate()
                    .try_for_each(|(c, ys)| run(0, 1, c * chunk, ys, rows));
            }
            let chunk = m.div_ceil(threads).next_multiple_of(8);
            return y
                .par_chunks_mut(chunk * rows)
                .enumerate()
                .try_for_each(|(c, ys)| run(c * chunk, ys.len() / rows, 0, ys, rows));
        }
    }
    run(0, m, 0, y, rows)
}
