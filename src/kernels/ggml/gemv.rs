//! `y = W x` with W in a ggml block type: x quantized once to the type's activation format as
//! ggml does, then one dot product per row, each weight byte read once.

use super::blocks::GgmlType;
use super::dot::{row_dot, unsupported, Activations};
use crate::error::check_len;
use crate::kernels::Isa;
use crate::Result;

/// Weights (elements) below which a GEMV stays on the calling thread.
#[cfg(feature = "parallel")]
const PARALLEL_MIN_WEIGHTS: usize = 1 << 20;
/// Rows per task when a GEMV is split across threads.
#[cfg(feature = "parallel")]
const ROWS_PER_TASK: usize = 64;

/// Whether [`gemv`] multiplies weights of `ty` (Q4_0, Q8_0, Q4_K and Q6_K).
pub const fn gemv_supports(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q6K)
}

/// `y[r] = sum_c W[r, c] x[c]` for the `rows x cols` matrix W stored row after row as ggml blocks
/// of `ty` in `w` (at least `rows * ty.row_bytes(cols)` bytes), as ggml's `mul_mat` computes it on
/// a CPU: `x` quantized to Q8_0 (Q4_0, Q8_0 weights) or Q8_K (Q4_K, Q6_K) by ggml's reference
/// quantizer, then ggml's `vec_dot` per row. `cols` must be a multiple of the block (32 or 256);
/// `x` holds at least `cols` finite values and `y` at least `rows`. Rows run in parallel under the
/// feature `parallel`. Nothing is written on failure.
pub fn gemv(ty: GgmlType, w: &[u8], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    gemv_on(Isa::active(), ty, w, rows, cols, x, y)
}

/// [`gemv`] on a chosen tier.
pub fn gemv_on(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    isa.ensure_available()?;
    if !gemv_supports(ty) {
        return Err(unsupported(ty));
    }
    let row_bytes = ty.row_bytes(cols)?;
    let bytes = ty.matrix_bytes(rows, cols)?;
    check_len("w", w.len(), bytes)?;
    check_len("x", x.len(), cols)?;
    check_len("y", y.len(), rows)?;
    let x = &x[..cols];
    let act = Activations::quantize(isa, ty, x)?;
    let y = &mut y[..rows];
    if cols == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let w = &w[..bytes];
    let run = |w: &[u8], y: &mut [f32]| -> Result<()> {
        #[cfg(target_arch = "x86_64")]
        if let (Isa::Avx512, Activations::Q8_0 { blocks, split, .. }) = (isa, &act) {
            if ty == GgmlType::Q4_0 {
                // SAFETY: the tier is available; w holds y.len() rows of row_bytes = blocks.len()
                // Q4_0 blocks; `split` was made from `blocks` for this tier.
                unsafe { super::x86_512::q4_0_gemv(w, row_bytes, blocks.len(), blocks, split, y) };
                return Ok(());
            }
        }
        for (wr, out) in w.chunks_exact(row_bytes).zip(y.iter_mut()) {
            *out = row_dot(isa, ty, wr, &act)?;
        }
        Ok(())
    };
    #[cfg(feature = "parallel")]
    if rows.saturating_mul(cols) >= PARALLEL_MIN_WEIGHTS && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        let mut out = crate::error::try_vec(rows, 0.0f32)?;
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(w.par_chunks(ROWS_PER_TASK * row_bytes))
            .try_for_each(|(ys, ws)| run(ws, ys))?;
        y.copy_from_slice(&out);
        return Ok(());
    }
    let mut out = crate::error::try_vec(rows, 0.0f32)?;
    run(w, &mut out)?;
    y.copy_from_slice(&out);
    Ok(())
}
