//! AVX2+FMA sparse row products.

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
const PREFETCH_MIN_X: usize = 1 << 16;
/// Stored values ahead whose x rows are prefetched.
const PREFETCH_AHEAD: usize = 16;

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

/// For one byte of 2:4 positions (four 2-bit fields, low bits first: two kept values in each of
/// two groups of four), which of the byte's eight columns each kept value sits in: the second
/// group's fields offset by 4. The one definition of the byte layout both 2:4 kernels decode.
#[inline(always)]
const fn columns_2_4(byte: usize) -> [usize; 4] {
    [byte & 3, (byte >> 2) & 3, 4 + ((byte >> 4) & 3), 4 + ((byte >> 6) & 3)]
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
/// Rows of one row block of [`spmm_2_4`]: their kept values in a depth block (64 KiB) stay in L2
/// while the column blocks run over them.
const ROWS_2_4: usize = 256;

/// A 2:4 compressed matrix whose rows' position fields start on a byte (`cols % 8 == 0`) times
/// `ncols` columns: `y (rows x ncols) = a (rows x cols) * x (cols x ncols)`.
///
/// One column (the decode step) is one [`dot_2_4`] per row. More columns are blocked as a dense
/// GEMM is: per depth block, `x` is packed into micro-panels of `8 NV` columns
/// (zero-padded); `MR x 8 NV` tiles of `y` are accumulated in registers, each kept value
/// broadcast and multiplied with the micro-panel row its 2-bit field picks (decoded with shifts,
/// no gather). Half the multiply-adds of the dense product, each fed from L1.
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
    if ncols <= 8 {
        // SAFETY: forwarded contract.
        unsafe { spmm_2_4_blocked::<4, 1>(values, fields, rows, cols, x, ncols, y) }
    } else if ncols <= 16 {
        // SAFETY: forwarded contract.
        unsafe { spmm_2_4_blocked::<4, 2>(values, fields, rows, cols, x, ncols, y) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { spmm_2_4_blocked::<3, 4>(values, fields, rows, cols, x, ncols, y) }
    }
}

/// [`spmm_2_4`] with `MR x 8 NV` register tiles.
///
/// # Safety
/// As [`spmm_2_4`].
#[target_feature(enable = "avx2,fma")]
unsafe fn spmm_2_4_blocked<const MR: usize, const NV: usize>(
    values: &[f32],
    fields: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    ncols: usize,
    y: &mut [f32],
) -> crate::Result<()> {
    debug_assert!(cols.is_multiple_of(8));
    debug_assert_eq!(values.len(), rows * cols / 2);
    debug_assert_eq!(fields.len(), rows * cols / 8);
    debug_assert_eq!(x.len(), cols * ncols);
    debug_assert_eq!(y.len(), rows * ncols);
    let nr = 8 * NV;
    let blocks = ncols.div_ceil(nr);
    // All of x, packed once: depth block by depth block, each as `blocks` micro-panels.
    let panel_len = cols * blocks * nr;
    let mut panel_buf = crate::error::try_vec(panel_len + 16, 0.0f32)?;
    // Micro-panel rows start on a cache line, so no 32-byte load splits one.
    let skip = panel_buf.as_ptr().align_offset(64).min(16);
    let panel = &mut panel_buf[skip..skip + panel_len];
    for (kb, block) in panel.chunks_mut(DEPTH_2_4 * blocks * nr).enumerate() {
        let (k0, depth) = (kb * DEPTH_2_4, block.len() / (blocks * nr));
        for (jb, micro) in block.chunks_exact_mut(depth * nr).enumerate() {
            let (c0, width) = (jb * nr, nr.min(ncols - jb * nr));
            for (kk, dst) in micro.chunks_exact_mut(nr).enumerate() {
                dst[..width].copy_from_slice(&x[(k0 + kk) * ncols + c0..][..width]);
                dst[width..].fill(0.0);
            }
        }
    }
    let mut edge = [0.0f32; 32 * 8];
    let (row_values, row_fields) = (cols / 2, cols / 8);
    // A row block's tile of y (at most 256 x ncols) stays in L2 across the depth blocks.
    for r0 in (0..rows).step_by(ROWS_2_4) {
        let row_end = rows.min(r0 + ROWS_2_4);
        for k0 in (0..cols).step_by(DEPTH_2_4) {
            let depth = DEPTH_2_4.min(cols - k0);
            let accumulate = k0 > 0;
            for jb in 0..blocks {
                let (c0, width) = (jb * nr, nr.min(ncols - jb * nr));
                let micro = panel[k0 * blocks * nr + jb * depth * nr..][..depth * nr].as_ptr();
                let mut r = r0;
                while r < row_end {
                    let live = MR.min(row_end - r);
                    let vals = values[r * row_values + k0 / 2..].as_ptr();
                    let flds = fields[r * row_fields + k0 / 8..].as_ptr();
                    // Full tiles go straight to y; a partial column block through `edge`.
                    let (out, ld) = if width == nr {
                        (y[r * ncols + c0..].as_mut_ptr(), ncols)
                    } else {
                        if accumulate {
                            for i in 0..live {
                                edge[i * nr..][..width].copy_from_slice(&y[(r + i) * ncols + c0..][..width]);
                            }
                        }
                        (edge.as_mut_ptr(), nr)
                    };
                    macro_rules! tile {
                        ($rows:expr) => {
                            tile_2_4::<{ $rows }, NV>(
                                vals,
                                row_values,
                                flds,
                                row_fields,
                                depth / 8,
                                micro,
                                out,
                                ld,
                                accumulate,
                            )
                        };
                    }
                    // SAFETY: rows r .. r + live exist, so each has row_values kept values and
                    // row_fields bytes from its depth block's start; the micro-panel holds
                    // depth rows of nr floats; `out` holds `live` rows of nr floats at stride ld
                    // (y: c0 + nr <= ncols when width == nr; else `edge`, 32 * 8 >= MR * nr).
                    unsafe {
                        match live {
                            1 => tile!(1),
                            2 => tile!(2),
                            3 => tile!(3),
                            _ => tile!(MR),
                        }
                    }
                    if width < nr {
                        for i in 0..live {
                            y[(r + i) * ncols + c0..][..width].copy_from_slice(&edge[i * nr..][..width]);
                        }
                    }
                    r += live;
                }
            }
        }
    }
    Ok(())
}

/// One `MR x 8 NV` tile of [`spmm_2_4`] over one depth block of `8 bytes` columns: `out` =
/// (`out` if `accumulate`) + the rows' kept values times the micro-panel rows they pick.
///
/// # Safety
/// AVX2 and FMA available; for each `i < MR`, `values + i * row_values` is readable for
/// `4 bytes` floats and `fields + i * row_fields` for `bytes` bytes; `micro` for `8 bytes * 8 NV`
/// floats; `out + i * ld` readable and writable for `8 NV` floats.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_2_4<const MR: usize, const NV: usize>(
    values: *const f32,
    row_values: usize,
    fields: *const u8,
    row_fields: usize,
    bytes: usize,
    micro: *const f32,
    out: *mut f32,
    ld: usize,
    accumulate: bool,
) {
    let nr = 8 * NV;
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    if accumulate {
        for (i, row) in acc.iter_mut().enumerate() {
            for (j, a) in row.iter_mut().enumerate() {
                // SAFETY: out + i * ld holds 8 NV floats (contract).
                *a = unsafe { _mm256_loadu_ps(out.add(i * ld + 8 * j)) };
            }
        }
    }
    for b in 0..bytes {
        // SAFETY: the micro-panel holds 8 bytes rows of nr floats; b < bytes.
        let window = unsafe { micro.add(b * 8 * nr) };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: b < bytes and 4 b + 4 <= 4 bytes (contract).
            let (byte, v) =
                unsafe { (usize::from(*fields.add(i * row_fields + b)), values.add(i * row_values + 4 * b)) };
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
