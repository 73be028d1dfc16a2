//! The scalar reference, the definition every tier is tested against: plain loops in f32, each
//! output summed over `p = 0..k` in order (`acc = acc + a * b`, the product exact unless it
//! underflows, the sum rounded after every step). Arguments are checked by the caller.

use half::bf16;

/// `C = A * B`: A `m x k` (`lda`), B `k x n` (`ldb`), C `m x n` (`ldc`), overwritten.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[bf16],
    lda: usize,
    b: &[bf16],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a[i * lda + p].to_f32() * b[p * ldb + j].to_f32();
            }
            c[i * ldc + j] = acc;
        }
    }
}
