//! AVX2+FMA sparse row products.

use super::blocked::{by_rows, columns_2_4, spmm_2_4_blocked, Blocking, Tile};
use std::arch::x86_64::*;

/// `y_row = sum_k values[k] * x[cols[k], :]`: eight columns per register, up to 64 per pass
/// held in registers; one column by gathering `x`.
///
/// # Safety
/// AVX2 and FMA must be available; `values.len() == cols.len()`, `y_row.len() == ncols`, every
/// `cols[k] < x.len() / ncols` and below `i32::MAX`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn row_spmm(values: &[f32], cols: &[u32], x: &[f32], ncols: usize, y_row: &mut [f32]) {
    debug_assert_eq!(values.len(), cols.len());
    debug_assert_eq!(y_row.len(), ncols);
    if ncols == 1 {
        // SAFETY: forwarded contract.
        y_row[0] = unsafe { dot_gather(values, cols, x) };
        return;
    }
    let mut c0 = 0;
    while c0 + 64 <= ncols {
        // SAFETY: forwarded contract, and c0 + 64 <= ncols as the tile requires.
        unsafe { tile::<8>(values, cols, x, ncols, y_row, c0) };
        c0 += 64;
    }
    if c0 + 32 <= ncols {
        // SAFETY: forwarded contract, and c0 + 32 <= ncols as the tile requires.
        unsafe { tile::<4>(values, cols, x, ncols, y_row, c0) };
        c0 += 32;
    }
    if c0 + 16 <= ncols {
        // SAFETY: forwarded contract, and c0 + 16 <= ncols as the tile requires.
        unsafe { tile::<2>(values, cols, x, ncols, y_row, c0) };
        c0 += 16;
    }
    if c0 + 8 <= ncols {
        // SAFETY: forwarded contract, and c0 + 8 <= ncols as the tile requires.
        unsafe { tile::<1>(values, cols, x, ncols, y_row, c0) };
        c0 += 8;
    }
    if c0 < ncols {
        // SAFETY: forwarded contract, and c0 < ncols.
        unsafe { masked_tile(values, cols, x, ncols, y_row, c0) };
    }
}

/// The last `ncols - c0 < 8` columns of the row product, with masked loads and store (masked-off
/// lanes are neither read nor written), in two accumulators.
///
/// # Safety
/// As [`row_spmm`], and `c0 < ncols < c0 + 8`.
#[target_feature(enable = "avx2,fma")]
unsafe fn masked_tile(values: &[f32], cols: &[u32], x: &[f32], ncols: usize, y_row: &mut [f32], c0: usize) {
    let live = _mm256_set1_epi32((ncols - c0) as i32);
    let mask = _mm256_cmpgt_epi32(live, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let xp = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 2];
    for (k, (&v, &c)) in values.iter().zip(cols).enumerate() {
        // SAFETY: c < x.len() / ncols; the live lanes c0 .. ncols are inside row c, and masked-off
        // lanes are not accessed.
        let x_row = unsafe { _mm256_maskload_ps(xp.add(c as usize * ncols + c0), mask) };
        acc[k % 2] = _mm256_fmadd_ps(_mm256_set1_ps(v), x_row, acc[k % 2]);
    }
    // SAFETY: the live lanes c0 .. ncols are inside y_row; the others are not written.
    unsafe { _mm256_maskstore_ps(y_row.as_mut_ptr().add(c0), mask, _mm256_add_ps(acc[0], acc[1])) };
}

/// Floats of x (256 KiB, half of L2) from which the row products prefetch the x rows of later
/// stored values: the rows a sparse row picks are too scattered for the hardware prefetcher.
/// Measured at 90% sparsity: 4096^2 x 128 went from 33 to 21 ms, 4096^2 x 16 from 3.8 to 2.7 ms.
pub(super) const PREFETCH_MIN_X: usize = 1 << 16;
/// Stored values ahead whose x rows are prefetched.
pub(super) const PREFETCH_AHEAD: usize = 16;

/// Columns `c0 .. c0 + 8 * NV` of the row product, accumulated in registers.
///
/// # Safety
/// As [`row_spmm`], and `c0 + 8 * NV <= ncols`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const NV: usize>(
    values: &[f32],
    cols: &[u32],
    x: &[f32],
    ncols: usize,
    y_row: &mut [f32],
    c0: usize,
) {
    let mut acc = [_mm256_setzero_ps(); NV];
    let xp = x.as_ptr();
    let prefetch = x.len() >= PREFETCH_MIN_X;
    for (k, (&v, &c)) in values.iter().zip(cols).enumerate() {
        if let Some(&ahead) = cols.get(k + PREFETCH_AHEAD).filter(|_| prefetch) {
            for line in (0..8 * NV).step_by(16) {
                // SAFETY: ahead < x.len() / ncols and c0 + line < c0 + 8 NV <= ncols, so the address
                // is inside x (and a prefetch never faults).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(xp.add(ahead as usize * ncols + c0 + line).cast()) };
            }
        }
        let v = _mm256_set1_ps(v);
        // SAFETY: c < x.len() / ncols and c0 + 8 * NV <= ncols, so the row segment is in bounds.
        let row = unsafe { xp.add(c as usize * ncols + c0) };
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: as above, j < NV.
            *a = _mm256_fmadd_ps(v, unsafe { _mm256_loadu_ps(row.add(8 * j)) }, *a);
        }
    }
    for (j, a) in acc.iter().enumerate() {
        // SAFETY: c0 + 8 * NV <= ncols == y_row.len().
        unsafe { _mm256_storeu_ps(y_row.as_mut_ptr().add(c0 + 8 * j), *a) };
    }
}

/// `sum_k values[k] * x[cols[k]]` with 8-lane gathers.
///
/// # Safety
/// AVX2 and FMA available; every `cols[k] < x.len()` and below `i32::MAX`.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_gather(values: &[f32], cols: &[u32], x: &[f32]) -> f32 {
    let n = values.len();
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut k = 0;
    while k + 16 <= n {
        // SAFETY: k + 16 <= n for values and cols; indices < x.len() fit i32, so gathers stay in x.
        unsafe {
            let i0 = _mm256_loadu_si256(cols.as_ptr().add(k).cast());
            let i1 = _mm256_loadu_si256(cols.as_ptr().add(k + 8).cast());
            let x0 = _mm256_i32gather_ps::<4>(x.as_ptr(), i0);
            let x1 = _mm256_i32gather_ps::<4>(x.as_ptr(), i1);
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(values.as_ptr().add(k)), x0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(values.as_ptr().add(k + 8)), x1, acc1);
        }
        k += 16;
    }
    let acc = _mm256_add_ps(acc0, acc1);
    let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
    let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let mut sum = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)));
    for (&v, &c) in values[k..].iter().zip(&cols[k..]) {
        sum = v.mul_add(x[c as usize], sum);
    }
    sum
}

/// [`columns_2_4`] of every byte, as the lane indices `vpermps` takes.
static LANES_2_4: [[i32; 4]; 256] = {
    let mut table = [[0i32; 4]; 256];
    let mut byte = 0;
    while byte < 256 {
        let columns = columns_2_4(byte);
        let mut slot = 0;
        while slot < 4 {
            table[byte][slot] = columns[slot] as i32;
            slot += 1;
        }
        byte += 1;
    }
    table
};

/// `sum_s values[s] * x[column of slot s]` for one 2:4 row whose position fields start on a byte:
/// `values` holds `4 b` kept values, `fields` `b` bytes, `x` `8 b` values. Eight kept values per
/// step, selected from sixteen x values by two `vpermps` and a blend (no gather).
///
/// # Safety
/// AVX2 and FMA must be available; `values.len() == 4 * fields.len()` and
/// `x.len() == 8 * fields.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_2_4(values: &[f32], fields: &[u8], x: &[f32]) -> f32 {
    debug_assert_eq!(values.len(), 4 * fields.len());
    debug_assert_eq!(x.len(), 8 * fields.len());
    let (vp, xp) = (values.as_ptr(), x.as_ptr());
    // Bytes b and b + 1: values 4b .. 4b + 8, x 8b .. 8b + 16.
    let step = |b: usize, acc: __m256| {
        let lanes = |byte: u8| {
            // SAFETY: the table row holds four i32; unaligned load.
            unsafe { _mm_loadu_si128(LANES_2_4[usize::from(byte)].as_ptr().cast()) }
        };
        let idx = _mm256_set_m128i(lanes(fields[b + 1]), lanes(fields[b]));
        // SAFETY: b + 2 <= fields.len(), so x holds 8b + 16 and values 4b + 8 elements.
        unsafe {
            let (lo, hi) = (_mm256_loadu_ps(xp.add(8 * b)), _mm256_loadu_ps(xp.add(8 * b + 8)));
            let picked =
                _mm256_blend_ps::<0xF0>(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx));
            _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(4 * b)), picked, acc)
        }
    };
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut b = 0;
    while b + 4 <= fields.len() {
        acc0 = step(b, acc0);
        acc1 = step(b + 2, acc1);
        b += 4;
    }
    if b + 2 <= fields.len() {
        acc0 = step(b, acc0);
        b += 2;
    }
    let acc = _mm256_add_ps(acc0, acc1);
    let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
    let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let mut sum = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)));
    if b < fields.len() {
        for (slot, &lane) in LANES_2_4[usize::from(fields[b])].iter().enumerate() {
            sum = values[4 * b + slot].mul_add(x[8 * b + lane as usize], sum);
        }
    }
    sum
}

/// Columns of one depth block of [`spmm_2_4`] (a multiple of 8): its packed x micro-panel,
/// `DEPTH_2_4 x 8 NV` floats (16 KiB at NV = 4), stays in L1 while a row block runs over it.
const DEPTH_2_4: usize = 128;

/// A 2:4 compressed matrix whose rows' position fields start on a byte (`cols % 8 == 0`) times
/// `ncols` columns: `y (rows x ncols) = a (rows x cols) * x (cols x ncols)`.
///
/// One column (the decode step) is one [`dot_2_4`] per row; more columns the blocked product of
/// [`spmm_2_4_blocked`] with `MR x 8 NV` register tiles ([`tile_2_4`]).
///
/// # Safety
/// AVX2 and FMA must be available; `cols % 8 == 0`, `values.len() == rows * cols / 2`,
/// `fields.len() == rows * cols / 8`, `x.len() == cols * ncols`, `y.len() == rows * ncols`.
#[target_feature(enable = "avx2,fma")]
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
            // SAFETY: AVX2 and FMA (contract); per_row = 4 * bytes values and x holds cols = 8 * bytes.
            *y_row = unsafe { dot_2_4(values, fields, x) };
        }
        return Ok(());
    }
    let blocking =
        |mr: usize, nv: usize, tile: unsafe fn(&Tile)| Blocking { mr, nr: 8 * nv, depth: DEPTH_2_4, tile };
    let blocking = if ncols <= 8 {
        blocking(4, 1, tiles_4_1)
    } else if ncols <= 16 {
        blocking(4, 2, tiles_4_2)
    } else {
        blocking(3, 4, tiles_3_4)
    };
    // SAFETY: forwarded contract; DEPTH_2_4 is a multiple of 8 and each tile runs with AVX2 and FMA.
    unsafe { spmm_2_4_blocked(&blocking, values, fields, rows, cols, x, ncols, y) }
}

/// Defines `$name`, a [`Blocking::tile`] running [`tile_2_4`] with `$nv` vectors of columns and
/// the tile's live rows (up to `$mr`).
macro_rules! tile_entry {
    ($name:ident, $mr:tt, $nv:literal) => {
        /// # Safety
        /// As [`Blocking::tile`], with AVX2 and FMA available and `t.rows <=` the row count named.
        unsafe fn $name(t: &Tile) {
            // SAFETY: forwarded contract; the tile run is at most t.rows tall.
            unsafe { by_rows!(tile_2_4, $nv, t, $mr) }
        }
    };
}
tile_entry!(tiles_4_1, 4, 1);
tile_entry!(tiles_4_2, 4, 2);
tile_entry!(tiles_3_4, 3, 4);

/// One `MR x 8 NV` tile of the blocked 2:4 product (see [`Tile`]).
///
/// # Safety
/// AVX2 and FMA available; `t` valid as [`Blocking::tile`] states, with `t.rows == MR` and
/// micro-panel rows of `8 NV` floats.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_2_4<const MR: usize, const NV: usize>(t: &Tile) {
    let nr = 8 * NV;
    let (out, ld) = (t.out, t.ld);
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    if t.accumulate {
        for (i, row) in acc.iter_mut().enumerate() {
            for (j, a) in row.iter_mut().enumerate() {
                // SAFETY: out + i * ld holds 8 NV floats (contract).
                *a = unsafe { _mm256_loadu_ps(out.add(i * ld + 8 * j)) };
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
                    let w = _mm256_broadcast_ss(&*v.add(s));
                    let x_row = window.add(p * nr);
                    for (j, a) in row.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(x_row.add(8 * j)), *a);
                    }
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, a) in row.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm256_storeu_ps(out.add(i * ld + 8 * j), *a) };
        }
    }
}
