//! C ABI: low-rank factorization by truncated SVD.

use super::boundary::{out_ptr, slice_in, slice_out};
use super::status::greenai_status;
use crate::error::check_len;
use crate::lowrank::{self, RankChoice};
use crate::tensor::numel;

/// Factorizes a row-major `rows x cols` weight `w ~= a (rows x r) * b (r x cols)` by truncated SVD
/// (balanced split: `a = U sqrt(S)`, `b = sqrt(S) V^T`). `rank > 0` fixes r; `rank == 0` picks the
/// smallest r keeping the share `energy` in (0, 1] of the squared singular values. `a` must hold
/// `a_len >= rows * r` floats and `b` `b_len >= r * cols` (`rows * min(rows, cols)` and
/// `min(rows, cols) * cols` always suffice). Writes r to `*out_rank` and
/// `||w - a b||_F / ||w||_F` to `*out_relative_error`; nothing is written on failure.
///
/// # Safety
/// `w` must hold `rows * cols` floats, `a` and `b` their stated lengths; the out-pointers must be writable.
#[no_mangle]
pub unsafe extern "C" fn greenai_lowrank_svd(
    w: *const f32,
    rows: usize,
    cols: usize,
    rank: usize,
    energy: f32,
    a: *mut f32,
    a_len: usize,
    b: *mut f32,
    b_len: usize,
    out_rank: *mut usize,
    out_relative_error: *mut f32,
) -> greenai_status {
    ffi_boundary! {
        let len = numel(&[rows, cols])?;
        // SAFETY: the caller guarantees the buffers and out-pointers as documented.
        let (w, a_out, b_out, out_rank, out_err) = unsafe {
            (
                slice_in(w, len, "w")?,
                slice_out(a, a_len, "a")?,
                slice_out(b, b_len, "b")?,
                out_ptr(out_rank, "out_rank")?,
                out_ptr(out_relative_error, "out_relative_error")?,
            )
        };
        let choice = if rank > 0 { RankChoice::Rank(rank) } else { RankChoice::Energy(f64::from(energy)) };
        let f = lowrank::factorize(w, rows, cols, choice)?;
        check_len("a", a_out.len(), f.a.len())?;
        check_len("b", b_out.len(), f.b.len())?;
        a_out[..f.a.len()].copy_from_slice(&f.a);
        b_out[..f.b.len()].copy_from_slice(&f.b);
        out_rank.write(f.rank);
        out_err.write(f.relative_error as f32);
        Ok(())
    }
}
