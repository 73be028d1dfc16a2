//! The scalar reference (the definition every path is tested against) and the portable microkernel.

use super::blocking::{KU, MR, NR};
use super::pack::Quad;

/// `C = A B` (or `C += A B` when `accumulate`), the textbook triple loop in i32 with wrapping
/// adds (exact whenever the true result fits in i32, e.g. k <= 2^16 for any 8-bit inputs).
/// Dimensions are the caller's to check.
#[allow(clippy::too_many_arguments)]
pub fn gemm_reference<A: Copy + Into<i32>>(
    m: usize,
    n: usize,
    k: usize,
    a: &[A],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
    accumulate: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0i32;
            for kk in 0..k {
                sum = sum.wrapping_add(a[i * lda + kk].into().wrapping_mul(i32::from(b[kk * ldb + j])));
            }
            let out = &mut c[i * ldc + j];
            *out = if accumulate { out.wrapping_add(sum) } else { sum };
        }
    }
}

/// The portable microkernel over packed panels: an `MR x NR` tile over `quads` depth quads.
/// `a` is a narrow A panel (`quads * MR * 4` bytes), `b` the panel's quads.
pub(crate) fn kernel(quads: usize, a: &[u8], b: &[Quad], tile: &mut [[i32; NR]; MR]) {
    let mut acc = [[0i32; NR]; MR];
    for (q, bq) in b[..quads].iter().enumerate() {
        let aq = &a[q * MR * KU..(q + 1) * MR * KU];
        for (r, acc_row) in acc.iter_mut().enumerate() {
            for (j, acc) in acc_row.iter_mut().enumerate() {
                for u in 0..KU {
                    *acc += i32::from(aq[r * KU + u]) * i32::from(bq.0[j * KU + u]);
                }
            }
        }
    }
    *tile = acc;
}
