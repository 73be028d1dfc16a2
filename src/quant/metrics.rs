//! Quantization error metrics, accumulated in f64: MSE, SQNR, cosine similarity, max abs error.

use crate::error::{Error, Result};

/// How far an approximation is from its reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorMetrics {
    /// Mean squared error (0 for empty inputs).
    pub mse: f64,
    /// Signal-to-quantization-noise ratio `10 log10(sum x^2 / sum (x - y)^2)` in dB (`+inf` when exact).
    pub sqnr_db: f64,
    /// Cosine similarity `x.y / (|x| |y|)`; 1 when both are zero, 0 when only one is.
    pub cosine: f64,
    /// Largest `|x - y|`.
    pub max_abs: f64,
}

impl std::fmt::Display for ErrorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SQNR {:.2} dB, cosine {:.6}, MSE {:.3e}, max |error| {:.3e}",
            self.sqnr_db, self.cosine, self.mse, self.max_abs
        )
    }
}

#[derive(Default, Clone, Copy)]
struct Sums {
    n: usize,
    xx: f64,
    yy: f64,
    xy: f64,
    ee: f64,
    max_abs: f64,
}

impl Sums {
    fn add(&mut self, x: f32, y: f32) {
        let (x, y) = (f64::from(x), f64::from(y));
        let e = x - y;
        self.n += 1;
        self.xx += x * x;
        self.yy += y * y;
        self.xy += x * y;
        self.ee += e * e;
        self.max_abs = self.max_abs.max(e.abs());
    }

    fn merge(self, o: &Sums) -> Sums {
        Sums {
            n: self.n + o.n,
            xx: self.xx + o.xx,
            yy: self.yy + o.yy,
            xy: self.xy + o.xy,
            ee: self.ee + o.ee,
            max_abs: self.max_abs.max(o.max_abs),
        }
    }

    fn finish(&self) -> ErrorMetrics {
        let mse = if self.n == 0 { 0.0 } else { self.ee / self.n as f64 };
        let sqnr_db = if self.ee == 0.0 { f64::INFINITY } else { 10.0 * (self.xx / self.ee).log10() };
        let cosine = match (self.xx == 0.0, self.yy == 0.0) {
            (true, true) => 1.0,
            (true, false) | (false, true) => 0.0,
            _ => self.xy / (self.xx.sqrt() * self.yy.sqrt()),
        };
        ErrorMetrics { mse, sqnr_db, cosine, max_abs: self.max_abs }
    }
}

fn check_lengths(reference: &[f32], approx: &[f32]) -> Result<()> {
    if reference.len() != approx.len() {
        return Err(Error::ShapeMismatch {
            context: "metrics approximation",
            expected: vec![reference.len()],
            actual: vec![approx.len()],
        });
    }
    Ok(())
}

fn check_no_nan(reference: &[f32], approx: &[f32]) -> Result<()> {
    crate::kernels::convert::check_no_nan("reference", reference)?;
    crate::kernels::convert::check_no_nan("approx", approx)
}

fn check(reference: &[f32], approx: &[f32]) -> Result<()> {
    check_lengths(reference, approx)?;
    check_no_nan(reference, approx)
}

/// Metrics of `approx` against `reference` over the whole tensor.
pub fn error_metrics(reference: &[f32], approx: &[f32]) -> Result<ErrorMetrics> {
    check_lengths(reference, approx)?;
    // Independent partial sums per lane, so the loop vectorises; merged at the end.
    const LANES: usize = 4;
    let mut lanes = [Sums::default(); LANES];
    let (xs, ys) = (reference.chunks_exact(LANES), approx.chunks_exact(LANES));
    let (x_rest, y_rest) = (xs.remainder(), ys.remainder());
    for (x, y) in xs.zip(ys) {
        for i in 0..LANES {
            lanes[i].add(x[i], y[i]);
        }
    }
    for (i, (&x, &y)) in x_rest.iter().zip(y_rest).enumerate() {
        lanes[i].add(x, y);
    }
    let sums = lanes.iter().fold(Sums::default(), |a, b| a.merge(b));
    if sums.xx.is_nan() || sums.yy.is_nan() || sums.ee.is_nan() {
        // A NaN input makes a sum NaN (so can infinities): look for it only then.
        check_no_nan(reference, approx)?;
    }
    Ok(sums.finish())
}

/// Metrics per index along `axis` (per channel) of row-major tensors of `shape`.
pub fn error_metrics_per_axis(
    reference: &[f32],
    approx: &[f32],
    shape: &[usize],
    axis: usize,
) -> Result<Vec<ErrorMetrics>> {
    check(reference, approx)?;
    let layout = super::params::check_data(super::params::Granularity::PerAxis { axis }, reference, shape)?;
    let mut sums = vec![Sums::default(); layout.groups()];
    layout.runs(|start, count, g| {
        for i in start..start + count {
            sums[g].add(reference[i], approx[i]);
        }
    });
    Ok(sums.iter().map(Sums::finish).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let m = error_metrics(&[1.0, -2.0, 3.0, 0.0], &[1.0, -2.5, 2.0, 0.5]).unwrap();
        // errors 0, 0.5, 1, -0.5: sum of squares 1.5; signal 14.
        assert_eq!(m.mse, 1.5 / 4.0);
        assert!((m.sqnr_db - 10.0 * (14.0f64 / 1.5).log10()).abs() < 1e-12);
        assert_eq!(m.max_abs, 1.0);
        let dot = 1.0 + 5.0 + 6.0;
        let cos = dot / (14.0f64.sqrt() * (1.0f64 + 6.25 + 4.0 + 0.25).sqrt());
        assert!((m.cosine - cos).abs() < 1e-12);
        assert_eq!(error_metrics(&[1.0], &[1.0]).unwrap().sqnr_db, f64::INFINITY);
    }

    #[test]
    fn per_channel_groups_by_axis() {
        // shape [2, 3], axis 1: channel c holds elements c and 3 + c.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = [1.0, 2.0, 3.5, 4.0, 4.0, 6.0];
        let m = error_metrics_per_axis(&x, &y, &[2, 3], 1).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mse, 0.0);
        assert_eq!(m[1].mse, 0.5);
        assert_eq!(m[2].mse, 0.125);
        assert!(error_metrics_per_axis(&x, &y, &[2, 3], 2).is_err());
        assert!(matches!(error_metrics(&[f32::NAN], &[0.0]), Err(Error::NonFinite { index: 0, .. })));
    }
}
