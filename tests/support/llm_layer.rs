//! A language-model-like linear layer for the tests of GPTQ, AWQ, SmoothQuant and HQQ: correlated
//! Gaussian inputs with a few outlier channels, and the f64 measures of a quantized weight's error.
//!
//! Include with `#[path = "support/llm_layer.rs"] mod llm_layer;`.
#![allow(dead_code)]

/// A deterministic generator (SplitMix64) with Gaussian draws (Box-Muller).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn gauss(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A weight `w` (`rows` x `cols`, row-major: rows are output channels) and its inputs `x`
/// (`samples` x `cols`, row-major: one input vector per row).
pub struct Layer {
    pub rows: usize,
    pub cols: usize,
    pub samples: usize,
    pub w: Vec<f32>,
    pub x: Vec<f32>,
    /// The input channels made outliers (their activations are 20x larger).
    pub outliers: Vec<usize>,
}

/// A layer whose inputs are correlated through `cols / 8` shared Gaussian factors plus independent
/// noise, with every 64th input channel (at least one) an outlier 20x larger than the rest, and
/// weights Gaussian with standard deviation `1 / sqrt(cols)`.
pub fn llm_layer(rows: usize, cols: usize, samples: usize, seed: u64) -> Layer {
    let mut rng = Rng::new(seed);
    let factors = (cols / 8).max(1);
    let mixing: Vec<f64> = (0..cols * factors).map(|_| rng.gauss() / (factors as f64).sqrt()).collect();
    let outliers: Vec<usize> = (0..cols).step_by(64).map(|c| (c + 17) % cols).collect();
    let mut x = Vec::with_capacity(samples * cols);
    for _ in 0..samples {
        let z: Vec<f64> = (0..factors).map(|_| rng.gauss()).collect();
        for c in 0..cols {
            let shared: f64 = (0..factors).map(|f| mixing[c * factors + f] * z[f]).sum();
            let mut v = shared + 0.5 * rng.gauss();
            if outliers.contains(&c) {
                v *= 20.0;
            }
            x.push(v as f32);
        }
    }
    let w = (0..rows * cols).map(|_| (rng.gauss() / (cols as f64).sqrt()) as f32).collect();
    Layer { rows, cols, samples, w, x, outliers }
}

impl Layer {
    /// GPTQ's Hessian `H = 2/N sum_t x_t x_t^T` (`cols` x `cols`, row-major), in f64.
    pub fn hessian_f64(&self) -> Vec<f64> {
        let n = self.cols;
        let mut h = vec![0.0f64; n * n];
        for t in 0..self.samples {
            let xt = &self.x[t * n..(t + 1) * n];
            for i in 0..n {
                let xi = f64::from(xt[i]);
                for j in 0..n {
                    h[i * n + j] += xi * f64::from(xt[j]);
                }
            }
        }
        let scale = 2.0 / self.samples as f64;
        h.iter_mut().for_each(|v| *v *= scale);
        h
    }

    /// The Hessian rounded to f32, as the C ABI takes it.
    pub fn hessian_f32(&self) -> Vec<f32> {
        self.hessian_f64().iter().map(|&v| v as f32).collect()
    }

    /// `||(W - W_hat) X^T||_F` in f64: the layer's output error over its inputs.
    pub fn output_error(&self, w_hat: &[f32]) -> f64 {
        assert_eq!(w_hat.len(), self.w.len());
        let n = self.cols;
        let mut total = 0.0f64;
        for r in 0..self.rows {
            let d: Vec<f64> =
                (0..n).map(|c| f64::from(self.w[r * n + c]) - f64::from(w_hat[r * n + c])).collect();
            for t in 0..self.samples {
                let xt = &self.x[t * n..(t + 1) * n];
                let y: f64 = d.iter().zip(xt).map(|(a, &b)| a * f64::from(b)).sum();
                total += y * y;
            }
        }
        total.sqrt()
    }

    /// `||W - W_hat||_F` in f64: the weight error.
    pub fn weight_error(&self, w_hat: &[f32]) -> f64 {
        self.w.iter().zip(w_hat).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>().sqrt()
    }
}
