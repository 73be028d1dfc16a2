//! ggml's reference quantizers (`quantize_row_*_ref` in `ggml-quants.c`), restated in Rust so that
//! they produce the same bytes: the same f32 operations in the same order (Rust never contracts a
//! multiply and an add into an FMA), ggml's float-to-integer conversions, and f16 scales rounded to
//! nearest even as `GGML_FP32_TO_FP16` rounds them.
//!
//! Where ggml's C converts a float that does not fit the integer type (undefined behaviour in C,
//! reachable only when a scale underflows, e.g. a block whose largest value is below ~1e-38), these
//! functions do what ggml compiled by gcc for x86-64 does (`cvttss2si`: such a float becomes
//! `i32::MIN`, then is truncated to the narrower type).

use super::blocks::{
    f16_get, f16_put, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
    BlockQ8_1, F16Bytes, GgmlType, QK, QK_K,
};
use crate::{Error, Result};
use bytemuck::Pod;
use half::f16;

/// ggml's `GROUP_MAX_EPS`: a group whose largest |x| is below it is all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// `GGML_FP32_TO_FP16`: round to nearest even; a NaN becomes ggml's quiet NaN `0x7E00` (with the
/// sign), which `half` matches for every NaN but those with payload bits below the top one.
#[inline]
pub(crate) fn fp16(value: f32) -> F16Bytes {
    if value.is_nan() {
        let sign = ((value.to_bits() >> 16) & 0x8000) as u16;
        return (sign | 0x7E00).to_le_bytes();
    }
    f16_put(f16::from_f32(value))
}

/// C's `(int)f` as gcc emits it on x86-64 (`cvttss2si`): truncation toward zero, and `i32::MIN` for
/// NaN and out-of-range values (where C leaves the result undefined). Rust's `as` saturates instead.
#[inline]
pub(crate) fn c_trunc(value: f32) -> i32 {
    // 2^31 is exactly representable; every f32 in [-2^31, 2^31) converts exactly.
    if (-2_147_483_648.0..2_147_483_648.0).contains(&value) {
        value as i32
    } else {
        i32::MIN
    }
}

/// ggml's `nearest_int`: rounds to nearest, ties to even, by adding 1.5 * 2^23 and reading the
/// mantissa bits (ggml asserts |fval| <= 4194303; beyond, the same bit trick is applied unchecked).
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// Checks that `x` holds exactly `blocks` blocks of `per` elements.
fn check_row(x: usize, blocks: usize, per: usize, ty: &str) -> Result<()> {
    if blocks.checked_mul(per) != Some(x) {
        return Err(Error::invalid(
            "x",
            format!("{x} elements"),
            format!("{ty} quantization of {blocks} blocks needs exactly {blocks} * {per} elements"),
        ));
    }
    Ok(())
}

/// The largest |v| of a block, as ggml's `MAX(amax, fabsf(v))` folds it.
#[inline]
fn amax_fold(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |amax, &v| {
        let a = v.abs();
        // MAX(a, b) is `a > b ? a : b`.
        if amax > a {
            amax
        } else {
            a
        }
    })
}

/// One Q8_0 block (`quantize_row_q8_0_ref`).
#[inline]
pub(crate) fn q8_0_block(x: &[f32], y: &mut BlockQ8_0) {
    let amax = amax_fold(x);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = c_trunc((v * id).round()) as i8;
    }
}

/// [`q8_0_block`] for finite `x`, in a form that vectorizes: the same bits (for finite values
/// the largest |v| is the one with the largest bits without the sign, an integer maximum; the
/// product rounded half away from zero as `roundf` is an integer within [-127, 127]).
#[inline(always)]
pub(crate) fn q8_0_block_finite(x: &[f32], y: &mut BlockQ8_0) {
    let amax = f32::from_bits(x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF)));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    for (q, &v) in y.qs.iter_mut().zip(x) {
        // SAFETY: |v| <= amax, so |v * id| rounds to at most 127: an integer in range (the checked
        // conversion would keep the loop from vectorizing).
        *q = unsafe { (v * id).round().to_int_unchecked::<i32>() } as i8;
    }
}

/// One Q8_1 block (`quantize_row_q8_1_ref`).
#[inline]
pub(crate) fn q8_1_block(x: &[f32], y: &mut BlockQ8_1) {
    let amax = amax_fold(x);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    let mut sum: i32 = 0;
    for j in 0..QK / 2 {
        let v0 = x[j] * id;
        let v1 = x[QK / 2 + j] * id;
        y.qs[j] = c_trunc(v0.round()) as i8;
        y.qs[QK / 2 + j] = c_trunc(v1.round()) as i8;
        sum += i32::from(y.qs[j]) + i32::from(y.qs[QK / 2 + j]);
    }
    // `sum*d`: the int is converted to float, then multiplied in f32.
    y.s = fp16(sum as f32 * d);
}

/// One Q8_K block (`quantize_row_q8_K_ref`). ggml leaves `bsums` unwritten for an all-zero block;
/// here they are zero.
#[inline]
pub(crate) fn q8_k_block(x: &[f32], y: &mut BlockQ8K) {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax == 0.0 {
        y.d = 0.0f32.to_le_bytes();
        y.qs = [0; QK_K];
        y.bsums = [[0; 2]; QK_K / 16];
        return;
    }
    let iscale = -127.0f32 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, group) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
        let sum: i32 = group.iter().map(|&q| i32::from(q)).sum();
        *s = (sum as i16).to_le_bytes();
    }
    y.d = (1.0 / iscale).to_le_bytes();
}

/// The block's `amax` and the signed value that has it (the first one, as ggml's strict `<` keeps it).
#[inline]
fn signed_amax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// The block's minimum and maximum, folded from `FLT_MAX` / `-FLT_MAX` as ggml does.
#[inline]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// C's `MIN(top, (int8_t)f)` stored in a `uint8_t`, as the 4- and 5-bit quantizers write it.
#[inline]
fn capped_i8(f: f32, top: i32) -> u8 {
    (c_trunc(f) as i8 as i32).min(top) as u8
}

/// One Q4_0 block (`quantize_row_q4_0_ref`).
#[inline]
pub(crate) fn q4_0_block(x: &[f32], y: &mut BlockQ4_0) {
    let (_, max) = signed_amax(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    for j in 0..QK / 2 {
        let xi0 = capped_i8(x[j] * id + 8.5, 15);
        let xi1 = capped_i8(x[QK / 2 + j] * id + 8.5, 15);
        y.qs[j] = xi0 | (xi1 << 4);
    }
}

/// One Q4_1 block (`quantize_row_q4_1_ref`).
#[inline]
pub(crate) fn q4_1_block(x: &[f32], y: &mut BlockQ4_1) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    y.m = fp16(min);
    for j in 0..QK / 2 {
        let xi0 = capped_i8((x[j] - min) * id + 0.5, 15);
        let xi1 = capped_i8((x[QK / 2 + j] - min) * id + 0.5, 15);
        y.qs[j] = xi0 | (xi1 << 4);
    }
}

/// Packs 5-bit values as Q5_0/Q5_1 store them: low nibbles in `qs`, bit 4 of element `j` in bit
/// `j` of `qh`.
#[inline]
fn pack5(xi0: u8, xi1: u8, j: usize, qs: &mut u8, qh: &mut u32) {
    *qs = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
    *qh |= (u32::from(xi0 & 0x10) >> 4) << j;
    *qh |= (u32::from(xi1 & 0x10) >> 4) << (j + QK / 2);
}

/// One Q5_0 block (`quantize_row_q5_0_ref`).
#[inline]
pub(crate) fn q5_0_block(x: &[f32], y: &mut BlockQ5_0) {
    let (_, max) = signed_amax(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let xi0 = capped_i8(x[j] * id + 16.5, 31);
        let xi1 = capped_i8(x[QK / 2 + j] * id + 16.5, 31);
        pack5(xi0, xi1, j, &mut y.qs[j], &mut qh);
    }
    y.qh = qh.to_le_bytes();
}

/// One Q5_1 block (`quantize_row_q5_1_ref`; no cap at 31, as in ggml).
#[inline]
pub(crate) fn q5_1_block(x: &[f32], y: &mut BlockQ5_1) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = fp16(d);
    y.m = fp16(min);
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        // `(uint8_t)(x0 + 0.5f)`.
        let xi0 = c_trunc((x[j] - min) * id + 0.5) as u8;
        let xi1 = c_trunc((x[QK / 2 + j] - min) * id + 0.5) as u8;
        pack5(xi0, xi1, j, &mut y.qs[j], &mut qh);
    }
    y.qh = qh.to_le_bytes();
}

/// ggml's `make_qkx2_quants` for `n = 32`: levels `0..=nmax` in `l` and the scale and (negated)
/// minimum of the weighted least-squares fit, searched over `nstep + 1` trial scales.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32; 32],
    weights: &[f32; 32],
    l_out: &mut [u8; 32],
    laux: &mut [u8; 32],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..32 {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        *l_out = [0; 32];
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..32 {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..32 {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let (w, lf) = (weights[i], l as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..32 {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                *l_out = *laux;
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of sub-block `j` of a Q4_K block.
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// One Q4_K super-block (`quantize_row_q4_K_ref`).
pub(crate) fn q4_k_block(x: &[f32], y: &mut BlockQ4K) {
    let mut levels = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut mins = [0.0f32; QK_K / 32];
    let mut scales = [0.0f32; QK_K / 32];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..QK_K / 32 {
        let xs: &[f32; 32] = x[32 * j..32 * j + 32].try_into().expect("32 elements");
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let l: &mut [u8; 32] = (&mut levels[32 * j..32 * j + 32]).try_into().expect("32 levels");
        (scales[j], mins[j]) = make_qkx2_quants(15, xs, &weights, l, &mut laux, -1.0, 0.1, 20);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    for j in 0..QK_K / 32 {
        // `uint8_t ls = nearest_int(...)`, then `MIN(63, ls)`.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            y.scales[j] = ls;
            y.scales[j + 4] = lm;
        } else {
            y.scales[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            y.scales[j - 4] |= (ls >> 4) << 6;
            y.scales[j] |= (lm >> 4) << 6;
        }
    }
    y.d = fp16(max_scale / 63.0);
    y.dmin = fp16(max_min / 63.0);
    let (d_all, dmin_all) = (f16_get(y.d).to_f32(), f16_get(y.dmin).to_f32());
    for j in 0..QK_K / 32 {
        let (sc, m) = scale_min_k4(j, &y.scales);
        let d = d_all * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * f32::from(m);
        for ii in 0..32 {
            levels[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, 15) as u8;
        }
    }
    for (half_j, q) in y.qs.chunks_exact_mut(32).enumerate() {
        let j = 64 * half_j;
        for l in 0..32 {
            q[l] = levels[j + l] | (levels[j + l + 32] << 4);
        }
    }
}

/// ggml's `make_qx_quants` for Q6_K (`n = 16`, `nmax = 32`, `rmse_type = 1`, no weights):
/// levels `l + nmax` in `out` and the scale of the best of 19 trial scales.
fn make_qx_quants_q6(x: &[f32], out: &mut [u8]) -> f32 {
    const NMAX: i32 = 32;
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    // The fit of trial `iscale`: sum of w x l and of w l l with w = x^2.
    let fit = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-NMAX, NMAX - 1) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let write = |iscale: f32, out: &mut [u8]| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (NMAX + nearest_int(iscale * v).clamp(-NMAX, NMAX - 1)) as u8;
        }
    };
    let iscale = -(NMAX as f32) / max;
    write(iscale, out);
    let (sumlx, suml2) = fit(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(NMAX as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = fit(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            write(iscale, out);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// One Q6_K super-block (`quantize_row_q6_K_ref`).
pub(crate) fn q6_k_block(x: &[f32], y: &mut BlockQ6K) {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for ib in 0..QK_K / 16 {
        let scale = make_qx_quants_q6(&x[16 * ib..16 * ib + 16], &mut levels[16 * ib..16 * ib + 16]);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = bytemuck::Zeroable::zeroed();
        y.d = fp16(0.0);
        return;
    }
    let iscale = -128.0f32 / max_scale;
    y.d = fp16(1.0 / iscale);
    for (s, &scale) in y.scales.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * scale).min(127) as i8;
    }
    let d_all = f16_get(y.d).to_f32();
    for j in 0..QK_K / 16 {
        let d = d_all * f32::from(y.scales[j]);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            levels[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    for (n, (ql, qh)) in y.ql.chunks_exact_mut(64).zip(y.qh.chunks_exact_mut(32)).enumerate() {
        let lv = &levels[128 * n..128 * n + 128];
        for l in 0..32 {
            ql[l] = (lv[l] & 0xF) | ((lv[l + 64] & 0xF) << 4);
            ql[l + 32] = (lv[l + 32] & 0xF) | ((lv[l + 96] & 0xF) << 4);
            qh[l] =
                (lv[l] >> 4) | ((lv[l + 32] >> 4) << 2) | ((lv[l + 64] >> 4) << 4) | ((lv[l + 96] >> 4) << 6);
        }
    }
}

/// Quantizes `x` into Q8_0 blocks as `quantize_row_q8_0_ref` does; `x.len()` must be `32 * y.len()`.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) -> Result<()> {
    check_row(x.len(), y.len(), QK, "q8_0")?;
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        q8_0_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q8_1 blocks as `quantize_row_q8_1_ref` does; `x.len()` must be `32 * y.len()`.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) -> Result<()> {
    check_row(x.len(), y.len(), QK, "q8_1")?;
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        q8_1_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q8_K blocks as `quantize_row_q8_K_ref` does; `x.len()` must be `256 * y.len()`.
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) -> Result<()> {
    check_row(x.len(), y.len(), QK_K, "q8_K")?;
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        q8_k_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q4_0 blocks as `quantize_row_q4_0_ref` does; `x.len()` must be
/// `32 * y.len()`. Values are not checked (see [`quantize`] for the checked matrix entry point).
pub fn quantize_row_q4_0(x: &[f32], y: &mut [BlockQ4_0]) -> Result<()> {
    check_row(x.len(), y.len(), QK, "q4_0")?;
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        q4_0_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q4_1 blocks as `quantize_row_q4_1_ref` does; `x.len()` must be
/// `32 * y.len()`. Values are not checked (see [`quantize`] for the checked matrix entry point).
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1]) -> Result<()> {
    check_row(x.len(), y.len(), QK, "q4_1")?;
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        q4_1_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q5_0 blocks as `quantize_row_q5_0_ref` does; `x.len()` must be
/// `32 * y.len()`. Values are not checked (see [`quantize`] for the checked matrix entry point).
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0]) -> Result<()> {
    check_row(x.len(), y.len(), QK, "q5_0")?;
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        q5_0_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q5_1 blocks as `quantize_row_q5_1_ref` does; `x.len()` must be
/// `32 * y.len()`. Values are not checked (see [`quantize`] for the checked matrix entry point).
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1]) -> Result<()> {
    check_row(x.len(), y.len(), QK, "q5_1")?;
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        q5_1_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q4_K blocks as `quantize_row_q4_K_ref` does; `x.len()` must be
/// `256 * y.len()`. Values are not checked (see [`quantize`] for the checked matrix entry point).
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4K]) -> Result<()> {
    check_row(x.len(), y.len(), QK_K, "q4_K")?;
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        q4_k_block(xb, yb);
    }
    Ok(())
}

/// Quantizes `x` into Q6_K blocks as `quantize_row_q6_K_ref` does; `x.len()` must be
/// `256 * y.len()`. Values are not checked (see [`quantize`] for the checked matrix entry point).
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6K]) -> Result<()> {
    check_row(x.len(), y.len(), QK_K, "q6_K")?;
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        q6_k_block(xb, yb);
    }
    Ok(())
}

/// Quantizes a row-major `rows x cols` matrix `x` into ggml blocks of type `ty`, row after row, as
/// ggml's reference quantizer of that type. `cols` must be a multiple of the type's block,
/// `x.len()` must be `rows * cols` and `out.len()` exactly [`GgmlType::matrix_bytes`]; a NaN or
/// infinity in `x` is refused ([`Error::NonFinite`]). Nothing is written on failure. Rows run in
/// parallel under the feature `parallel`.
pub fn quantize(ty: GgmlType, x: &[f32], rows: usize, cols: usize, out: &mut [u8]) -> Result<()> {
    let bytes = ty.matrix_bytes(rows, cols)?;
    check_matrix_lens(x.len(), rows, cols, out.len(), bytes, "out")?;
    crate::kernels::math::check_finite("x", x)?;
    match ty {
        GgmlType::Q4_0 => quantize_rows(x, cols, ty.block_elems(), out, q4_0_block),
        GgmlType::Q4_1 => quantize_rows(x, cols, ty.block_elems(), out, q4_1_block),
        GgmlType::Q5_0 => quantize_rows(x, cols, ty.block_elems(), out, q5_0_block),
        GgmlType::Q5_1 => quantize_rows(x, cols, ty.block_elems(), out, q5_1_block),
        GgmlType::Q8_0 => quantize_rows(x, cols, ty.block_elems(), out, q8_0_block),
        GgmlType::Q8_1 => quantize_rows(x, cols, ty.block_elems(), out, q8_1_block),
        GgmlType::Q4K => quantize_rows(x, cols, ty.block_elems(), out, q4_k_block),
        GgmlType::Q6K => quantize_rows(x, cols, ty.block_elems(), out, q6_k_block),
        GgmlType::Q8K => quantize_rows(x, cols, ty.block_elems(), out, q8_k_block),
    }
    Ok(())
}

/// Checks the element count of a matrix and the byte count of its blocks (shared with
/// `dequantize`).
pub(crate) fn check_matrix_lens(
    elems: usize,
    rows: usize,
    cols: usize,
    bytes: usize,
    needed: usize,
    bytes_name: &'static str,
) -> Result<()> {
    if rows.checked_mul(cols) != Some(elems) {
        return Err(Error::ShapeMismatch {
            context: "ggml matrix elements",
            expected: vec![rows, cols],
            actual: vec![elems],
        });
    }
    if bytes != needed {
        return Err(Error::invalid(
            bytes_name,
            format!("{bytes} bytes"),
            format!("{rows} rows of {cols} elements take exactly {needed} bytes of blocks"),
        ));
    }
    Ok(())
}

/// Below this many elements a matrix is quantized or dequantized on one thread.
#[cfg(feature = "parallel")]
pub(crate) const PARALLEL_MIN_ELEMS: usize = 1 << 16;

/// Quantizes every row of `x` (`cols` per row) into the blocks of `out` with `block`, `per`
/// elements a block.
fn quantize_rows<B: Pod + Send>(
    x: &[f32],
    cols: usize,
    per: usize,
    out: &mut [u8],
    block: fn(&[f32], &mut B),
) {
    if x.is_empty() {
        return;
    }
    let blocks: &mut [B] = bytemuck::cast_slice_mut(out);
    let row_blocks = cols / per;
    let row = |(xr, yr): (&[f32], &mut [B])| {
        for (xb, yb) in xr.chunks_exact(per).zip(yr.iter_mut()) {
            block(xb, yb);
        }
    };
    #[cfg(feature = "parallel")]
    if x.len() >= PARALLEL_MIN_ELEMS && x.len() > cols {
        use rayon::prelude::*;
        x.par_chunks_exact(cols).zip(blocks.par_chunks_exact_mut(row_blocks)).for_each(row);
        return;
    }
    x.chunks_exact(cols).zip(blocks.chunks_exact_mut(row_blocks)).for_each(row);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ggml::f16_get;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-127.4), -127);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    #[test]
    fn c_trunc_is_cvttss2si() {
        assert_eq!(c_trunc(2.9), 2);
        assert_eq!(c_trunc(-2.9), -2);
        assert_eq!(c_trunc(f32::NAN), i32::MIN);
        assert_eq!(c_trunc(f32::INFINITY), i32::MIN);
        assert_eq!(c_trunc(3e9), i32::MIN);
        assert_eq!(c_trunc(-2_147_483_648.0), i32::MIN);
    }

    #[test]
    fn fp16_nan_is_ggml_quiet_nan() {
        assert_eq!(u16::from_le_bytes(fp16(f32::NAN)), 0x7E00);
        assert_eq!(u16::from_le_bytes(fp16(-f32::NAN)), 0xFE00);
        assert_eq!(u16::from_le_bytes(fp16(f32::from_bits(0x7f80_0001))), 0x7E00);
        assert_eq!(u16::from_le_bytes(fp16(1e6)), 0x7C00);
    }

    #[test]
    fn q8_0_of_a_ramp() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let mut y = [BlockQ8_0 { d: [0; 2], qs: [0; 32] }];
        quantize_row_q8_0(&x, &mut y).unwrap();
        assert_eq!(f16_get(y[0].d), f16::from_f32(16.0 / 127.0));
        assert_eq!(y[0].qs[0], -127);
        assert_eq!(y[0].qs[16], 0);
        assert!(quantize_row_q8_0(&x[..31], &mut y).is_err());
    }

    #[test]
    fn q8_k_zero_block_is_all_zero() {
        let x = [0.0f32; QK_K];
        let mut y = [bytemuck::Zeroable::zeroed(); 1];
        let mut ones: BlockQ8K = bytemuck::Zeroable::zeroed();
        ones.bsums = [[1; 2]; 16];
        y[0] = ones;
        quantize_row_q8_k(&x, &mut y).unwrap();
        assert_eq!(y[0], bytemuck::Zeroable::zeroed());
    }
}
