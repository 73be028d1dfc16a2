//! The reference sparse row product: the definition the SIMD paths are tested against.

/// `y_row = sum_k values[k] * x[cols[k] * ncols ..][..ncols]`, accumulated in storage order.
pub fn row_spmm(values: &[f32], cols: &[u32], x: &[f32], ncols: usize, y_row: &mut [f32]) {
    y_row.fill(0.0);
    for (&v, &c) in values.iter().zip(cols) {
        let x_row = &x[c as usize * ncols..][..ncols];
        for (y, &xv) in y_row.iter_mut().zip(x_row) {
            *y += v * xv;
        }
    }
}
