//! AVX-512 sparse kernels: CSR rows with sixteen columns per zmm register and k-masks for the
//! last columns, one column by 16-lane gathers; 2:4 times a vector with one `vpermt2ps` selecting
//! sixteen kept values' x entries from thirty-two, and the blocked 2:4 product with `MR x 16 NV`
//! register tiles.

use super::blocked::{by_rows, columns_2_4, spmm_2_4_blocked, Blocking, Tile};
use super::x86::{PREFETCH_AHEAD, PREFETCH_MIN_X};
use std::arch::x86_64::*;

/// The k-mask of the first `live` lanes (`live <= 16`).
#[inline(always)]
fn lanes(live: usize) -> __mmask16 {
    (((1u32 << live) - 1) & 0xFFFF) as __mmask16
}

/// Up to this many columns the AVX2 row kernel runs instead: measured at 1024^2, 90% sparse, 16
/// columns, one thread on a quiet Xeon (2026-12-06): AVX2 182 us, zmm 233 us (suspected: a 16-float
/// row of x is one zmm load, which splits cache lines unless x is 64-byte aligned).
const AVX2_MAX_COLUMNS: usize = 16;

/// `y_row = sum_k values[k] * x[cols[k], :]`: sixteen columns per register, up to 128 per pass
/// held in registers (the last register masked), split accumulators where the pass is narrow;
/// one column by gathering `x`.
///
/// # Safety
/// The AVX-512 tier's features must be available; `values.len() == cols.len()`,
/// `y_row.len() == ncols`, every `cols[k] < x.len() / ncols` and below `i32::MAX`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
pub(crate) unsafe fn row_spmm(values: &[f32], cols: &[u32], x: &[f32], ncols: usize, y_row: &mut [f32]) {
    debug_assert_eq!(values.len(), cols.len());
    debug_assert_eq!(y_row.len(), ncols);
    if ncols == 1 {
        // SAFETY: forwarded contract (x has one column, so every cols[k] < x.len()).
        y_row[0] = unsafe { dot_gather(values, cols, x) };
        return;
    }
    if ncols <= AVX2_MAX_COLUMNS {
        // SAFETY: this tier includes AVX2 and FMA; the contract is the same.
        unsafe { super::x86::row_spmm(values, cols, x, ncols, y_row) };
        return;
    }
    let mut c0 = 0;
    while c0 + 128 <= ncols {
        // SAFETY: forwarded contract, and c0 + 128 <= ncols.
        unsafe { tile::<8, 1>(values, cols, x, ncols, y_row, c0, 0xFFFF) };
        c0 += 128;
    }
    let rest = ncols - c0;
    let last = lanes(rest - (rest.max(1) - 1) / 16 * 16);
    // SAFETY (every arm): forwarded contract; the arm's 16 NV columns from c0 cover `rest`, the last
    // vector masked to the columns that exist.
    unsafe {
        match rest.div_ceil(16) {
            0 => {}
            1 => tile::<1, 4>(values, cols, x, ncols, y_row, c0, last),
            2 => tile::<2, 2>(values, cols, x, ncols, y_row, c0, last),
            3 => tile::<3, 2>(values, cols, x, ncols, y_row, c0, last),
            4 => tile::<4, 1>(values, cols, x, ncols, y_row, c0, last),
            5 => tile::<5, 1>(values, cols, x, ncols, y_row, c0, last),
            6 => tile::<6, 1>(values, cols, x, ncols, y_row, c0, last),
            7 => tile::<7, 1>(values, cols, x, ncols, y_row, c0, last),
            _ => tile::<8, 1>(values, cols, x, ncols, y_row, c0, last),
        }
    }
}

/// Columns `c0 .. c0 + 16 (NV - 1) + live(last)` of the row product, in `U x NV` accumulators
/// (stored value `k` into set `k % U`, so narrow passes are not one FMA latency per value).
///
/// # Safety
/// As [`row_spmm`], `1 <= U`, and the columns named are inside `0 .. ncols` (`last` nonzero).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
#[inline]
unsafe fn tile<const NV: usize, const U: usize>(
    values: &[f32],
    cols: &[u32],
    x: &[f32],
    ncols: usize,
    y_row: &mut [f32],
    c0: usize,
    last: __mmask16,
) {
    let masks: [__mmask16; NV] = std::array::from_fn(|j| if j + 1 == NV { last } else { 0xFFFF });
    let mut acc = [[_mm512_setzero_ps(); NV]; U];
    let xp = x.as_ptr();
    let prefetch = x.len() >= PREFETCH_MIN_X;
    let step = |acc: &mut [__m512; NV], v: f32, c: u32| {
        let v = _mm512_set1_ps(v);
        // SAFETY: c < x.len() / ncols, and the vectors' live lanes are columns below ncols.
        let row = unsafe { xp.add(c as usize * ncols + c0) };
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: as above; masked-off lanes are not read (and do not fault).
            *a = _mm512_fmadd_ps(v, unsafe { _mm512_maskz_loadu_ps(masks[j], row.add(16 * j)) }, *a);
        }
    };
    let whole = values.len() / U * U;
    for k in (0..whole).step_by(U) {
        if let Some(&ahead) = cols.get(k + PREFETCH_AHEAD).filter(|_| prefetch) {
            for j in 0..NV {
                // A prefetch never faults; the address is inside row `ahead` of x.
                _mm_prefetch::<_MM_HINT_T0>(xp.wrapping_add(ahead as usize * ncols + c0 + 16 * j).cast());
            }
        }
        for (u, a) in acc.iter_mut().enumerate() {
            step(a, values[k + u], cols[k + u]);
        }
    }
    for k in whole..values.len() {
        step(&mut acc[0], values[k], cols[k]);
    }
    let (sum, others) = acc.split_at_mut(1);
    for other in others.iter() {
        for (a, o) in sum[0].iter_mut().zip(other) {
            *a = _mm512_add_ps(*a, *o);
        }
    }
    for (j, a) in acc[0].iter().enumerate() {
        // SAFETY: the live lanes are columns below ncols == y_row.len(); the others are not written.
        unsafe { _mm512_mask_storeu_ps(y_row.as_mut_ptr().add(c0 + 16 * j), masks[j], *a) };
    }
}

/// `sum_k values[k] * x[cols[k]]` with 16-lane gathers, the last ones masked.
///
/// # Safety
/// The AVX-512 tier's features available; `values.len() == cols.len()`, every
/// `cols[k] < x.len()` and below `i32::MAX`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn dot_gather(values: &[f32], cols: &[u32], x: &[f32]) -> f32 {
    let n = values.len();
    let (vp, cp, xp) = (values.as_ptr(), cols.as_ptr(), x.as_ptr());
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut k = 0;
    while k + 32 <= n {
        // SAFETY: k + 32 <= n for values and cols; the indices are below x.len() and fit i32, so
        // every gathered lane is inside x.
        unsafe {
            let i0 = _mm512_loadu_si512(cp.add(k).cast());
            let i1 = _mm512_loadu_si512(cp.add(k + 16).cast());
            let x0 = _mm512_i32gather_ps::<4>(i0, xp);
            let x1 = _mm512_i32gather_ps::<4>(i1, xp);
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(k)), x0, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(k + 16)), x1, acc1);
        }
        k += 32;
    }
    while k < n {
        let mask = lanes((n - k).min(16));
        // SAFETY: the mask covers k .. n of values and cols (masked-off lanes are not read) and
        // the live indices are below x.len() and fit i32.
        unsafe {
            let i = _mm512_maskz_loadu_epi32(mask, cp.add(k).cast());
            let xv = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, i, xp);
            acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, vp.add(k)), xv, acc1);
        }
        k += 16;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

/// `sum_s values[s] * x[column of slot s]` for one 2:4 row whose position fields start on a byte:
/// `values` holds `4 b` kept values, `fields` `b` bytes, `x` `8 b` values. Sixteen kept values
/// (four field bytes) per step, selected from thirty-two x values by one `vpermt2ps` whose lane
/// indices come from the fields with a variable shift (no table, no gather); the last one to
/// three bytes with masked loads.
///
/// # Safety
/// The AVX-512 tier's features available; `values.len() == 4 * fields.len()` and
/// `x.len() == 8 * fields.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn dot_2_4(values: &[f32], fields: &[u8], x: &[f32]) -> f32 {
    debug_assert_eq!(values.len(), 4 * fields.len());
    debug_assert_eq!(x.len(), 8 * fields.len());
    let (vp, xp, fp) = (values.as_ptr(), x.as_ptr(), fields.as_ptr());
    // Slot s of a step: field s of the 32-bit word, in group s / 2, whose columns start at 4 (s / 2).
    let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let groups = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    let index = |word: u32| {
        _mm512_add_epi32(
            _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(word as i32), shifts), _mm512_set1_epi32(3)),
            groups,
        )
    };
    // Bytes b .. b + 4: values 4b .. 4b + 16, x 8b .. 8b + 32.
    let step = |b: usize, acc: __m512| {
        // SAFETY: b + 4 <= fields.len(), so fields holds 4 bytes, x 8b + 32 and values 4b + 16 floats.
        unsafe {
            let idx = index(fp.add(b).cast::<u32>().read_unaligned().to_le());
            let (lo, hi) = (_mm512_loadu_ps(xp.add(8 * b)), _mm512_loadu_ps(xp.add(8 * b + 16)));
            _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(4 * b)), _mm512_permutex2var_ps(lo, idx, hi), acc)
        }
    };
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut b = 0;
    while b + 8 <= fields.len() {
        acc0 = step(b, acc0);
        acc1 = step(b + 4, acc1);
        b += 8;
    }
    if b + 4 <= fields.len() {
        acc0 = step(b, acc0);
        b += 4;
    }
    let rest = fields.len() - b;
    if rest > 0 {
        // 1 to 3 bytes: 8 rest x values and 4 rest kept values are live; the slots past them have
        // zero fields, so their indices point at lanes >= 8 rest, which are loaded as zero.
        let word = fields[b..].iter().rev().fold(0u32, |w, &f| (w << 8) | u32::from(f));
        let live = 8 * rest;
        // SAFETY: the masks cover x[8b .. 8b + 8 rest] and values[4b .. 4b + 4 rest], inside the
        // slices; masked-off lanes are not read.
        unsafe {
            let lo = _mm512_maskz_loadu_ps(lanes(live.min(16)), xp.add(8 * b));
            let hi = _mm512_maskz_loadu_ps(lanes(live.saturating_sub(16)), xp.add((8 * b + 16).min(x.len())));
            let v = _mm512_maskz_loadu_ps(lanes(4 * rest), vp.add(4 * b));
            acc1 = _mm512_fmadd_ps(v, _mm512_permutex2var_ps(lo, index(word), hi), acc1);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

/// Columns of one depth block of the blocked product per micro-panel width: the micro-panel,
/// `depth x nr` floats, is 16 KiB (a third of L1).
const fn depth_for(nr: usize) -> usize {
    4096 / nr
}

/// A 2:4 compressed matrix whose rows' position fields start on a byte (`cols % 8 == 0`) times
/// `ncols` columns: `y (rows x ncols) = a (rows x cols) * x (cols x ncols)`.
///
/// One column (the decode step) is one [`dot_2_4`] per row; more columns the blocked product of
/// [`spmm_2_4_blocked`] with `MR x 16 NV` register tiles ([`tile_2_4`]): 8 x 16 up to 16 columns,
/// 6 x 32 up to 32, 6 x 64 above (at most 24 of the 32 zmm registers accumulate).
///
/// # Safety
/// The AVX-512 tier's features available; `cols % 8 == 0`, `values.len() == rows * cols / 2`,
/// `fields.len() == rows * cols / 8`, `x.len() == cols * ncols`, `y.len() == rows * ncols`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
pub(crate) unsafe fn spmm_2_4(
    values: &[f32],
    fields: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    ncols: usize,
    y: &mut [f32],
) -> crate::Result<()> {
    if rows == 0 {
        return Ok(());
    }
    if cols == 0 {
        y.fill(0.0);
        return Ok(());
    }
    if ncols == 1 {
        let (per_row, bytes) = (cols / 2, cols / 8);
        for (r, y_row) in y.iter_mut().enumerate() {
            let (values, fields) = (&values[r * per_row..][..per_row], &fields[r * bytes..][..bytes]);
            // SAFETY: the tier's features (contract); per_row = 4 * bytes values, x holds cols = 8 * bytes.
            *y_row = unsafe { dot_2_4(values, fields, x) };
        }
        return Ok(());
    }
    let blocking = |mr: usize, nv: usize, tile: unsafe fn(&Tile)| Blocking {
        mr,
        nr: 16 * nv,
        depth: depth_for(16 * nv),
        tile,
    };
    let blocking = if ncols <= 16 {
        blocking(8, 1, tiles_8_1)
    } else if ncols <= 32 {
        blocking(6, 2, tiles_6_2)
    } else {
        blocking(6, 4, tiles_6_4)
    };
    // SAFETY: forwarded contract; the depths are positive multiples of 8 and each tile runs with
    // the tier's features.
    unsafe { spmm_2_4_blocked(&blocking, values, fields, rows, cols, x, ncols, y) }
}

const _: () =
    assert!(depth_for(64) > 0 && depth_for(64).is_multiple_of(8) && depth_for(16).is_multiple_of(8));

/// Defines `$name`, a [`Blocking::tile`] running [`tile_2_4`] with `$nv` vectors of columns and
/// the tile's live rows (up to `$mr`).
macro_rules! tile_entry {
    ($name:ident, $mr:tt, $nv:literal) => {
        /// # Safety
        /// As [`Blocking::tile`], with the AVX-512 tier's features and `t.rows <=` the row count named.
        unsafe fn $name(t: &Tile) {
            // SAFETY: forwarded contract; the tile run is at most t.rows tall.
            unsafe { by_rows!(tile_2_4, $nv, t, $mr) }
        }
    };
}
tile_entry!(tiles_8_1, 8, 1);
tile_entry!(tiles_6_2, 6, 2);
tile_entry!(tiles_6_4, 6, 4);

/// One `MR x 16 NV` tile of the blocked 2:4 product (see [`Tile`]).
///
/// # Safety
/// The AVX-512 tier's features available; `t` valid as [`Blocking::tile`] states, with
/// `t.rows == MR` and micro-panel rows of `16 NV` floats.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
#[inline]
unsafe fn tile_2_4<const MR: usize, const NV: usize>(t: &Tile) {
    let nr = 16 * NV;
    let (out, ld) = (t.out, t.ld);
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    if t.accumulate {
        for (i, row) in acc.iter_mut().enumerate() {
            for (j, a) in row.iter_mut().enumerate() {
                // SAFETY: out + i * ld holds 16 NV floats (contract).
                *a = unsafe { _mm512_loadu_ps(out.add(i * ld + 16 * j)) };
            }
        }
    }
    for b in 0..t.bytes {
        // SAFETY: the micro-panel holds 8 bytes rows of nr floats; b < bytes.
        let window = unsafe { t.micro.add(b * 8 * nr) };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: b < bytes and 4 b + 4 <= 4 bytes (contract).
            let (byte, v) = unsafe {
                (usize::from(*t.fields.add(i * t.row_fields + b)), t.values.add(i * t.row_values + 4 * b))
            };
            for (s, &p) in columns_2_4(byte).iter().enumerate() {
                // SAFETY: s < 4 kept values of this byte; p < 8 rows of this window.
                unsafe {
                    let w = _mm512_set1_ps(*v.add(s));
                    let x_row = window.add(p * nr);
                    for (j, a) in row.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(x_row.add(16 * j)), *a);
                    }
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, a) in row.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm512_storeu_ps(out.add(i * ld + 16 * j), *a) };
        }
    }
}
