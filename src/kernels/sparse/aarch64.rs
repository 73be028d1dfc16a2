//! NEON sparse row products.

use std::arch::aarch64::*;

/// `y_row = sum_k values[k] * x[cols[k], :]`, four columns per register, sixteen per pass.
///
/// # Safety
/// NEON must be available; `values.len() == cols.len()`, `y_row.len() == ncols`, every
/// `cols[k] < x.len() / ncols`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn row_spmm(values: &[f32], cols: &[u32], x: &[f32], ncols: usize, y_row: &mut [f32]) {
    let xp = x.as_ptr();
    let mut c0 = 0;
    while c0 + 16 <= ncols {
        let mut acc = [vdupq_n_f32(0.0); 4];
        for (&v, &c) in values.iter().zip(cols) {
            // SAFETY: c < x.len() / ncols and c0 + 16 <= ncols keep the loads inside row c.
            let row = unsafe { xp.add(c as usize * ncols + c0) };
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: as above, j < 4.
                *a = vfmaq_n_f32(*a, unsafe { vld1q_f32(row.add(4 * j)) }, v);
            }
        }
        for (j, a) in acc.iter().enumerate() {
            // SAFETY: c0 + 16 <= ncols == y_row.len().
            unsafe { vst1q_f32(y_row.as_mut_ptr().add(c0 + 4 * j), *a) };
        }
        c0 += 16;
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
