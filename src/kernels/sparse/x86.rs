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
        let tail = &mut y_row[c0..];
        tail.fill(0.0);
        for (&v, &c) in values.iter().zip(cols) {
            let x_row = &x[c as usize * ncols + c0..][..tail.len()];
            for (y, &xv) in tail.iter_mut().zip(x_row) {
                *y = v.mul_add(xv, *y);
            }
        }
    }
}

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
    for (&v, &c) in values.iter().zip(cols) {
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

/// For one byte of 2:4 positions (four 2-bit fields: two kept values in each of two groups of
/// four), the lanes of the eight x values that `vpermps` picks: the second group's offset by 4.
static LANES_2_4: [[i32; 4]; 256] = {
    let mut table = [[0i32; 4]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut slot = 0;
        while slot < 4 {
            let field = ((byte >> (2 * slot)) & 3) as i32;
            table[byte][slot] = field + if slot < 2 { 0 } else { 4 };
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
pub(crate) unsafe fn dot_2_4(values: &[f32], fields: &[u8], x: &[f32]) -> f32 {
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
