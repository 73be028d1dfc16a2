//! Low-rank factorization of weight matrices by truncated SVD: `W (m x n) ~= A (m x r) * B (r x n)`.
//!
//! The SVD is faer's (`faer::Mat::thin_svd`, in f64): a maintained, pure-Rust dense linear-algebra
//! crate, fast without a system BLAS/LAPACK, so the library stays self-contained. The split is
//! balanced, `A = U_r sqrt(S_r)` and `B = sqrt(S_r) V_r^T`. The rank is given or chosen as the
//! smallest `r` whose top `r` squared singular values hold a share `tau` of the total energy.
//! Factorizing pays only below the break-even rank `m n / (m + n)`, where `r (m + n) < m n`.

use crate::error::{check_len, try_vec};
use crate::{Error, Result};

/// How the rank is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RankChoice {
    /// Exactly this rank (at most `min(m, n)`).
    Rank(usize),
    /// The smallest rank keeping this share, in (0, 1], of the sum of squared singular values.
    Energy(f64),
}

/// A truncated SVD factorization `W ~= A * B`.
#[derive(Clone, Debug, PartialEq)]
pub struct LowRank {
    /// Rows `m` of W and A.
    pub rows: usize,
    /// Columns `n` of W and B.
    pub cols: usize,
    /// The rank `r`.
    pub rank: usize,
    /// `A = U_r sqrt(S_r)`, row-major `m x r`.
    pub a: Vec<f32>,
    /// `B = sqrt(S_r) V_r^T`, row-major `r x n`.
    pub b: Vec<f32>,
    /// All `min(m, n)` singular values of W, largest first.
    pub singular_values: Vec<f64>,
    /// `||W - A B||_F / ||W||_F` of the returned f32 factors (0 when W is zero).
    pub relative_error: f64,
}

impl LowRank {
    /// Whether the factors hold fewer numbers than W (the rank is below the break-even rank).
    pub fn is_worth_it(&self) -> bool {
        is_worth_it(self.rows, self.cols, self.rank)
    }
}

/// The break-even rank `m n / (m + n)`: a rank-`r` factorization is smaller than W only below it.
pub fn break_even_rank(rows: usize, cols: usize) -> f64 {
    if rows + cols == 0 {
        return 0.0;
    }
    rows as f64 * cols as f64 / (rows as f64 + cols as f64)
}

/// Whether rank `r` stores fewer numbers than the `m x n` matrix: `r (m + n) < m n`.
pub fn is_worth_it(rows: usize, cols: usize, rank: usize) -> bool {
    (rank as u128) * (rows as u128 + cols as u128) < rows as u128 * cols as u128
}

/// The smallest `r` with `sum_{i<r} s_i^2 >= tau * sum_i s_i^2`, for `s` sorted largest first.
pub fn energy_rank(singular_values: &[f64], tau: f64) -> Result<usize> {
    if !(tau > 0.0 && tau <= 1.0) {
        return Err(Error::invalid("energy", tau, "must be in (0, 1]"));
    }
    let total: f64 = singular_values.iter().map(|s| s * s).sum();
    let mut kept = 0.0;
    for (r, s) in singular_values.iter().enumerate() {
        if kept >= tau * total {
            return Ok(r);
        }
        kept += s * s;
    }
    Ok(singular_values.len())
}

/// Factorizes a row-major `rows x cols` weight by truncated SVD. Non-finite weights are refused.
pub fn factorize(w: &[f32], rows: usize, cols: usize, choice: RankChoice) -> Result<LowRank> {
    let len = crate::tensor::numel(&[rows, cols])?;
    if w.len() != len {
        return Err(Error::ShapeMismatch {
            context: "low-rank weight",
            expected: vec![rows, cols],
            actual: vec![w.len()],
        });
    }
    crate::kernels::math::check_finite("w", w)?;
    let full = rows.min(cols);
    if let RankChoice::Rank(r) = choice {
        if r > full {
            return Err(Error::invalid("rank", r, format!("above min(rows, cols) = {full}")));
        }
    }
    let (u, s, v) = if full == 0 {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        let mat = faer::Mat::<f64>::from_fn(rows, cols, |i, j| f64::from(w[i * cols + j]));
        let svd = mat.thin_svd();
        let (mu, ms, mv) = (svd.u(), svd.s_diagonal(), svd.v());
        let mut order: Vec<usize> = (0..full).collect();
        order.sort_by(|&i, &j| ms.read(j).total_cmp(&ms.read(i)));
        let s: Vec<f64> = order.iter().map(|&k| ms.read(k)).collect();
        let u: Vec<f64> = (0..rows).flat_map(|i| order.iter().map(move |&k| mu.read(i, k))).collect();
        let v: Vec<f64> = (0..cols).flat_map(|j| order.iter().map(move |&k| mv.read(j, k))).collect();
        (u, s, v)
    };
    let rank = match choice {
        RankChoice::Rank(r) => r,
        RankChoice::Energy(tau) => energy_rank(&s, tau)?,
    };
    let mut a = try_vec(rows * rank, 0.0f32)?;
    let mut b = try_vec(rank * cols, 0.0f32)?;
    for k in 0..rank {
        let root = s[k].max(0.0).sqrt();
        for i in 0..rows {
            a[i * rank + k] = (u[i * full + k] * root) as f32;
        }
        for j in 0..cols {
            b[k * cols + j] = (v[j * full + k] * root) as f32;
        }
    }
    let relative_error = reconstruction_error(w, &a, &b, rows, cols, rank)?;
    Ok(LowRank { rows, cols, rank, a, b, singular_values: s, relative_error })
}

/// `||W - A B||_F / ||W||_F` in f64 (0 when W is zero).
pub fn reconstruction_error(
    w: &[f32],
    a: &[f32],
    b: &[f32],
    rows: usize,
    cols: usize,
    rank: usize,
) -> Result<f64> {
    check_len("w", w.len(), rows * cols)?;
    check_len("a", a.len(), rows * rank)?;
    check_len("b", b.len(), rank * cols)?;
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for i in 0..rows {
        for j in 0..cols {
            let approx: f64 =
                (0..rank).map(|k| f64::from(a[i * rank + k]) * f64::from(b[k * cols + j])).sum();
            let exact = f64::from(w[i * cols + j]);
            diff += (exact - approx).powi(2);
            norm += exact * exact;
        }
    }
    Ok(if norm == 0.0 { diff.sqrt() } else { (diff / norm).sqrt() })
}
