//! Pieces the benches share.

/// Sum of `x` in sixteen lanes (vectorised by the compiler): a read at memory speed, for the
/// memory-floor peers.
pub fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for chunk in x.chunks_exact(16) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum()
}
