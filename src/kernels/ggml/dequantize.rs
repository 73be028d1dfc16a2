//! ggml's dequantizers (`dequantize_row_*` in `ggml-quants.c`), restated in Rust with the same f32
//! operations in the same order, so that they produce the same floats bit for bit.
//!
//! The row functions are ggml's: a scale that is infinite or NaN flows into the output as it does in
//! ggml. The checked matrix entry point [`dequantize`] refuses such blocks instead.

use super::blocks::{
    f16_get, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
    F16Bytes, GgmlType, QK, QK_K,
};
use super::quantize::{check_matrix_lens, scale_min_k4};
use crate::{Error, Result};
use bytemuck::Pod;

#[inline]
fn f32_of(bytes: F16Bytes) -> f32 {
    f16_get(bytes).to_f32()
}

/// One Q4_0 block: `(q - 8) * d`.
#[inline]
fn q4_0_block(b: &BlockQ4_0, y: &mut [f32]) {
    let d = f32_of(b.d);
    for j in 0..QK / 2 {
        y[j] = (i32::from(b.qs[j] & 0x0F) - 8) as f32 * d;
        y[j + QK / 2] = (i32::from(b.qs[j] >> 4) - 8) as f32 * d;
    }
}

/// One Q4_1 block: `q * d + m`.
#[inline]
fn q4_1_block(b: &BlockQ4_1, y: &mut [f32]) {
    let (d, m) = (f32_of(b.d), f32_of(b.m));
    for j in 0..QK / 2 {
        y[j] = f32::from(b.qs[j] & 0x0F) * d + m;
        y[j + QK / 2] = f32::from(b.qs[j] >> 4) * d + m;
    }
}

/// The 5-bit values `j` and `j + 16` of a Q5 block.
#[inline]
fn q5_pair(qs: u8, qh: u32, j: usize) -> (i32, i32) {
    let xh0 = ((qh >> j) << 4) & 0x10;
    let xh1 = (qh >> (j + 12)) & 0x10;
    ((u32::from(qs & 0x0F) | xh0) as i32, (u32::from(qs >> 4) | xh1) as i32)
}

/// One Q5_0 block: `(q - 16) * d`.
#[inline]
fn q5_0_block(b: &BlockQ5_0, y: &mut [f32]) {
    let d = f32_of(b.d);
    let qh = u32::from_le_bytes(b.qh);
    for j in 0..QK / 2 {
        let (x0, x1) = q5_pair(b.qs[j], qh, j);
        y[j] = (x0 - 16) as f32 * d;
        y[j + QK / 2] = (x1 - 16) as f32 * d;
    }
}

/// One Q5_1 block: `q * d + m`.
#[inline]
fn q5_1_block(b: &BlockQ5_1, y: &mut [f32]) {
    let (d, m) = (f32_of(b.d), f32_of(b.m));
    let qh = u32::from_le_bytes(b.qh);
    for j in 0..QK / 2 {
        let (x0, x1) = q5_pair(b.qs[j], qh, j);
        y[j] = x0 as f32 * d + m;
        y[j + QK / 2] = x1 as f32 * d + m;
    }
}

/// One Q8_0 block: `q * d`.
#[inline]
fn q8_0_block(b: &BlockQ8_0, y: &mut [f32]) {
    let d = f32_of(b.d);
    for (o, &q) in y.iter_mut().zip(&b.qs) {
        *o = f32::from(q) * d;
    }
}

/// One Q8_1 block: `q * d` (ggml has no `dequantize_row_q8_1`; this is Q8_0's formula, `s` unused).
#[inline]
fn q8_1_block(b: &BlockQ8_1, y: &mut [f32]) {
    let d = f32_of(b.d);
    for (o, &q) in y.iter_mut().zip(&b.qs) {
        *o = f32::from(q) * d;
    }
}

/// One Q4_K super-block: `d * sc * q - dmin * m` per sub-block of 32.
#[inline]
fn q4_k_block(b: &BlockQ4K, y: &mut [f32]) {
    let (d, min) = (f32_of(b.d), f32_of(b.dmin));
    for (n, (q, out)) in b.qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * n, &b.scales);
        let (sc2, m2) = scale_min_k4(2 * n + 1, &b.scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        for l in 0..32 {
            out[l] = d1 * f32::from(q[l] & 0xF) - m1;
            out[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// One Q6_K super-block: `d * scale * (q - 32)` per sub-block of 16.
#[inline]
fn q6_k_block(b: &BlockQ6K, y: &mut [f32]) {
    let d = f32_of(b.d);
    let parts = b.ql.chunks_exact(64).zip(b.qh.chunks_exact(32)).zip(b.scales.chunks_exact(8));
    for (((ql, qh), sc), out) in parts.zip(y.chunks_exact_mut(128)) {
        for l in 0..32 {
            let is = l / 16;
            let q1 = (i32::from(ql[l] & 0xF) | (i32::from(qh[l] & 3) << 4)) - 32;
            let q2 = (i32::from(ql[l + 32] & 0xF) | (i32::from((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = (i32::from(ql[l] >> 4) | (i32::from((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = (i32::from(ql[l + 32] >> 4) | (i32::from((qh[l] >> 6) & 3) << 4)) - 32;
            out[l] = d * f32::from(sc[is]) * q1 as f32;
            out[l + 32] = d * f32::from(sc[is + 2]) * q2 as f32;
            out[l + 64] = d * f32::from(sc[is + 4]) * q3 as f32;
            out[l + 96] = d * f32::from(sc[is + 6]) * q4 as f32;
        }
    }
}

/// One Q8_K super-block: `d * q`.
#[inline]
fn q8_k_block(b: &BlockQ8K, y: &mut [f32]) {
    let d = f32::from_le_bytes(b.d);
    for (o, &q) in y.iter_mut().zip(&b.qs) {
        *o = d * f32::from(q);
    }
}

/// Checks that `y` holds exactly `blocks` blocks of `per` elements.
fn check_row(blocks: usize, y: usize, per: usize, ty: &str) -> Result<()> {
    if blocks.checked_mul(per) != Some(y) {
        return Err(Error::invalid(
            "y",
            format!("{y} elements"),
            format!("{ty} dequantization of {blocks} blocks needs exactly {blocks} * {per} elements"),
        ));
    }
    Ok(())
}

macro_rules! dequantize_row {
    ($(#[$doc:meta])* $name:ident, $block:ty, $per:expr, $ty:literal, $f:ident) => {
        $(#[$doc])*
        pub fn $name(x: &[$block], y: &mut [f32]) -> Result<()> {
            check_row(x.len(), y.len(), $per, $ty)?;
            for (b, yb) in x.iter().zip(y.chunks_exact_mut($per)) {
                $f(b, yb);
            }
            Ok(())
        }
    };
}

dequantize_row!(
    /// Dequantizes Q4_0 blocks as `dequantize_row_q4_0`; `y.len()` must be `32 * x.len()`.
    dequantize_row_q4_0, BlockQ4_0, QK, "q4_0", q4_0_block
);
dequantize_row!(
    /// Dequantizes Q4_1 blocks as `dequantize_row_q4_1`; `y.len()` must be `32 * x.len()`.
    dequantize_row_q4_1, BlockQ4_1, QK, "q4_1", q4_1_block
);
dequantize_row!(
    /// Dequantizes Q5_0 blocks as `dequantize_row_q5_0`; `y.len()` must be `32 * x.len()`.
    dequantize_row_q5_0, BlockQ5_0, QK, "q5_0", q5_0_block
);
dequantize_row!(
    /// Dequantizes Q5_1 blocks as `dequantize_row_q5_1`; `y.len()` must be `32 * x.len()`.
    dequantize_row_q5_1, BlockQ5_1, QK, "q5_1", q5_1_block
);
dequantize_row!(
    /// Dequantizes Q8_0 blocks as `dequantize_row_q8_0`; `y.len()` must be `32 * x.len()`.
    dequantize_row_q8_0, BlockQ8_0, QK, "q8_0", q8_0_block
);
dequantize_row!(
    /// Dequantizes Q8_1 blocks as `q * d` (Q8_0's formula; ggml has none); `y.len()` must be
    /// `32 * x.len()`.
    dequantize_row_q8_1, BlockQ8_1, QK, "q8_1", q8_1_block
);
dequantize_row!(
    /// Dequantizes Q4_K blocks as `dequantize_row_q4_K`; `y.len()` must be `256 * x.len()`.
    dequantize_row_q4_k, BlockQ4K, QK_K, "q4_K", q4_k_block
);
dequantize_row!(
    /// Dequantizes Q6_K blocks as `dequantize_row_q6_K`; `y.len()` must be `256 * x.len()`.
    dequantize_row_q6_k, BlockQ6K, QK_K, "q6_K", q6_k_block
);
dequantize_row!(
    /// Dequantizes Q8_K blocks as `dequantize_row_q8_K`; `y.len()` must be `256 * x.len()`.
    dequantize_row_q8_k, BlockQ8K, QK_K, "q8_K", q8_k_block
);

/// The first scale that dequantization reads and that is not finite, with its field's name.
type ScaleCheck<B> = fn(&B) -> Option<(&'static str, f32)>;

fn bad(fields: &[(&'static str, f32)]) -> Option<(&'static str, f32)> {
    fields.iter().copied().find(|(_, v)| !v.is_finite())
}

/// Dequantizes a row-major `rows x cols` matrix of ggml blocks of type `ty` into `x`, as ggml's
/// `dequantize_row_*` of that type. `cols` must be a multiple of the type's block, `blocks.len()`
/// exactly [`GgmlType::matrix_bytes`] and `x.len()` `rows * cols`; a block whose scale (or
/// minimum) is infinite or NaN is refused, naming the block (ggml would write inf or NaN). Nothing
/// is written on failure. Rows run in parallel under the feature `parallel`.
pub fn dequantize(ty: GgmlType, blocks: &[u8], rows: usize, cols: usize, x: &mut [f32]) -> Result<()> {
    let bytes = ty.matrix_bytes(rows, cols)?;
    check_matrix_lens(x.len(), rows, cols, blocks.len(), bytes, "blocks")?;
    match ty {
        GgmlType::Q4_0 => {
            dequantize_rows(ty, blocks, cols, x, q4_0_block, |b: &BlockQ4_0| bad(&[("d", f32_of(b.d))]))
        }
        GgmlType::Q4_1 => dequantize_rows(ty, blocks, cols, x, q4_1_block, |b: &BlockQ4_1| {
            bad(&[("d", f32_of(b.d)), ("m", f32_of(b.m))])
        }),
        GgmlType::Q5_0 => {
            dequantize_rows(ty, blocks, cols, x, q5_0_block, |b: &BlockQ5_0| bad(&[("d", f32_of(b.d))]))
        }
        GgmlType::Q5_1 => dequantize_rows(ty, blocks, cols, x, q5_1_block, |b: &BlockQ5_1| {
            bad(&[("d", f32_of(b.d)), ("m", f32_of(b.m))])
        }),
        GgmlType::Q8_0 => {
            dequantize_rows(ty, blocks, cols, x, q8_0_block, |b: &BlockQ8_0| bad(&[("d", f32_of(b.d))]))
        }
        GgmlType::Q8_1 => {
            dequantize_rows(ty, blocks, cols, x, q8_1_block, |b: &BlockQ8_1| bad(&[("d", f32_of(b.d))]))
        }
        GgmlType::Q4K => dequantize_rows(ty, blocks, cols, x, q4_k_block, |b: &BlockQ4K| {
            bad(&[("d", f32_of(b.d)), ("dmin", f32_of(b.dmin))])
        }),
        GgmlType::Q6K => {
            dequantize_rows(ty, blocks, cols, x, q6_k_block, |b: &BlockQ6K| bad(&[("d", f32_of(b.d))]))
        }
        GgmlType::Q8K => dequantize_rows(ty, blocks, cols, x, q8_k_block, |b: &BlockQ8K| {
            bad(&[("d", f32::from_le_bytes(b.d))])
        }),
    }
}

/// Checks every block's scales with `check`, then dequantizes every row with `block`.
fn dequantize_rows<B: Pod + Sync>(
    ty: GgmlType,
    bytes: &[u8],
    cols: usize,
    x: &mut [f32],
    block: fn(&B, &mut [f32]),
    check: ScaleCheck<B>,
) -> Result<()> {
    if x.is_empty() {
        return Ok(());
    }
    let per = ty.block_elems();
    let blocks: &[B] = bytemuck::cast_slice(bytes);
    if let Some((index, (field, value))) =
        blocks.iter().enumerate().find_map(|(i, b)| check(b).map(|v| (i, v)))
    {
        let row_blocks = cols / per;
        return Err(Error::format(
            format!(
                "{} block {index} (row {}, block {} of the row)",
                ty.name(),
                index / row_blocks,
                index % row_blocks
            ),
            format!("its scale `{field}` is {value}, not finite; ggml would dequantize it to inf or NaN"),
        ));
    }
    let row_blocks = cols / per;
    let row = |(br, yr): (&[B], &mut [f32])| {
        for (b, yb) in br.iter().zip(yr.chunks_exact_mut(per)) {
            block(b, yb);
        }
    };
    #[cfg(feature = "parallel")]
    if x.len() >= super::quantize::PARALLEL_MIN_ELEMS && x.len() > cols {
        use rayon::prelude::*;
        blocks.par_chunks_exact(row_blocks).zip(x.par_chunks_exact_mut(cols)).for_each(row);
        return Ok(());
    }
    blocks.chunks_exact(row_blocks).zip(x.chunks_exact_mut(cols)).for_each(row);
    Ok(())
}
