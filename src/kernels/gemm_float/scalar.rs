//! The scalar reference: plain loops in f32, each output summed over `p = 0..k` in order
//! (`acc = acc + a * b`, rounded after every step), and the scalar tier's blocked microkernel
//! (a 4 x 8 tile, a packed layout of its own). Arguments are checked by the caller.

use super::{PackedB, Tile, WeightElement};

/// Rows of C per scalar microkernel call.
pub(super) const MR: usize = 4;
/// Columns of C per scalar microkernel call, and the width of its packed B panels.
pub(super) const NR: usize = 8;

/// `C = A * B`, the definition.
#[allow(clippy::too_many_arguments)]
pub fn gemm<W: WeightElement>(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[W],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a[i * lda + p] * b[p * ldb + j].to_f32();
            }
            c[i * ldc + j] = acc;
        }
    }
}

/// `C = A * B` with B prepacked.
pub fn gemm_packed<W: WeightElement>(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB<W>,
    c: &mut [f32],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..b.n() {
            let mut acc = 0.0f32;
            for p in 0..b.k() {
                acc += a[i * lda + p] * b.data[b.index(p, j)].to_f32();
            }
            c[i * ldc + j] = acc;
        }
    }
}

/// One `mr x nr` tile from an MR-row panel of packed A and `kc` rows of NR weights
/// `tile.b_stride` apart (the portable microkernel).
pub(crate) fn microkernel<W: WeightElement>(tile: Tile, a: &[f32], b: &[W], c: &mut [f32]) {
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..tile.kc {
        let row = &b[p * tile.b_stride..p * tile.b_stride + NR];
        for (r, acc_row) in acc.iter_mut().enumerate().take(tile.mr) {
            let av = a[p * MR + r];
            for (v, w) in acc_row.iter_mut().zip(row) {
                *v += av * w.to_f32();
            }
        }
    }
    tile.store(&acc, c);
}

/// `y = a B` for a single row `a` (`k`) and B `k x n` (rows `ldb` apart), B read row after row;
/// `y` (`n`) is overwritten.
pub(crate) fn sweep<W: WeightElement>(k: usize, n: usize, a: &[f32], b: &[W], ldb: usize, y: &mut [f32]) {
    y[..n].fill(0.0);
    for (p, &ap) in a.iter().enumerate().take(k) {
        for (v, w) in y[..n].iter_mut().zip(&b[p * ldb..p * ldb + n]) {
            *v += ap * w.to_f32();
        }
    }
}

/// `y = W x`: `y_i = sum_j W_ij x_j`.
pub fn gemv<W: WeightElement>(n: usize, k: usize, w: &[W], ldw: usize, x: &[f32], y: &mut [f32]) {
    for (i, yi) in y.iter_mut().enumerate().take(n) {
        let mut acc = 0.0f32;
        for j in 0..k {
            acc += w[i * ldw + j].to_f32() * x[j];
        }
        *yi = acc;
    }
}

/// `y_i = scale_i * sum_j W_ij x_j` with int8 weights.
pub fn gemv_i8(n: usize, k: usize, w: &[i8], ldw: usize, scales: &[f32], x: &[f32], y: &mut [f32]) {
    for (i, yi) in y.iter_mut().enumerate().take(n) {
        let mut acc = 0.0f32;
        for j in 0..k {
            acc += f32::from(w[i * ldw + j]) * x[j];
        }
        *yi = scales[i] * acc;
    }
}
