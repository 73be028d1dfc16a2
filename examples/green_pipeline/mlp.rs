//! A small multilayer perceptron (dense layers, ReLU) trained with Adam: the models of the pipeline.

use crate::data::{Rng, Split, CLASSES};
use ndarray::{ArrayView2, ArrayViewMut2};

/// One dense layer `y = x W^T + b`, W row-major (outputs x inputs), with an optional pruning mask.
#[derive(Clone)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// 1 keeps a weight, 0 pruned it: pruned weights stay zero through training.
    pub mask: Option<Vec<u8>>,
    adam: [Vec<f32>; 4],
}

impl Dense {
    fn new(inputs: usize, outputs: usize, rng: &mut Rng) -> Self {
        let std = (2.0 / inputs as f32).sqrt();
        let w = (0..inputs * outputs).map(|_| rng.normal() * std).collect();
        let adam = [
            vec![0.0; inputs * outputs],
            vec![0.0; inputs * outputs],
            vec![0.0; outputs],
            vec![0.0; outputs],
        ];
        Dense { inputs, outputs, w, b: vec![0.0; outputs], mask: None, adam }
    }

    /// `x (batch x inputs) -> batch x outputs`.
    pub fn forward(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; batch * self.outputs];
        for row in y.chunks_exact_mut(self.outputs) {
            row.copy_from_slice(&self.b);
        }
        let x = ArrayView2::from_shape((batch, self.inputs), x).expect("input shape");
        let w = ArrayView2::from_shape((self.outputs, self.inputs), &self.w).expect("weight shape");
        let mut out = ArrayViewMut2::from_shape((batch, self.outputs), &mut y).expect("output shape");
        ndarray::linalg::general_mat_mul(1.0, &x, &w.t(), 1.0, &mut out);
        y
    }

    /// Applies the mask to the weights (pruned weights become exactly zero).
    pub fn apply_mask(&mut self) {
        if let Some(mask) = &self.mask {
            for (w, &keep) in self.w.iter_mut().zip(mask) {
                if keep == 0 {
                    *w = 0.0;
                }
            }
        }
    }

    fn adam_step(&mut self, grad_w: &[f32], grad_b: &[f32], lr: f32, step: i32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        let (c1, c2) = (1.0 - B1.powi(step), 1.0 - B2.powi(step));
        let [mw, vw, mb, vb] = &mut self.adam;
        for (p, (g, (m, v))) in self.w.iter_mut().chain(self.b.iter_mut()).zip(
            grad_w
                .iter()
                .chain(grad_b)
                .zip(mw.iter_mut().chain(mb.iter_mut()).zip(vw.iter_mut().chain(vb.iter_mut()))),
        ) {
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
        }
        self.apply_mask();
    }
}

/// Dense layers with ReLU between them; the last layer gives the logits.
#[derive(Clone)]
pub struct Mlp {
    pub layers: Vec<Dense>,
}

impl Mlp {
    /// Layers of the given widths (`[64, 32, 10]` is one hidden layer of 32), He-initialised.
    pub fn new(widths: &[usize], seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        Mlp { layers: widths.windows(2).map(|w| Dense::new(w[0], w[1], &mut rng)).collect() }
    }

    /// Every layer's output for a batch (hidden outputs after ReLU; the last is the logits).
    pub fn forward_all(&self, x: &[f32], batch: usize) -> Vec<Vec<f32>> {
        let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let input = if i == 0 { x } else { &outputs[i - 1] };
            let mut y = layer.forward(input, batch);
            if i + 1 < self.layers.len() {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            outputs.push(y);
        }
        outputs
    }

    /// The logits for a batch.
    pub fn logits(&self, x: &[f32], batch: usize) -> Vec<f32> {
        self.forward_all(x, batch).pop().expect("at least one layer")
    }

    /// Weights and biases.
    pub fn params(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    /// Backpropagates `grad_logits` (d loss / d logits) and takes one Adam step.
    fn step(
        &mut self,
        x: &[f32],
        batch: usize,
        outputs: &[Vec<f32>],
        grad_logits: Vec<f32>,
        lr: f32,
        t: i32,
    ) {
        let mut grad = grad_logits;
        for i in (0..self.layers.len()).rev() {
            let input = if i == 0 { x } else { &outputs[i - 1] };
            let layer = &self.layers[i];
            let (n_in, n_out) = (layer.inputs, layer.outputs);
            let g = ArrayView2::from_shape((batch, n_out), &grad).expect("grad shape");
            let a = ArrayView2::from_shape((batch, n_in), input).expect("input shape");
            let grad_w = g.t().dot(&a);
            let grad_b: Vec<f32> = (0..n_out).map(|j| g.column(j).sum()).collect();
            let next = (i > 0).then(|| {
                let w = ArrayView2::from_shape((n_out, n_in), &layer.w).expect("weight shape");
                let mut d = g.dot(&w).into_raw_vec_and_offset().0;
                d.iter_mut().zip(input).for_each(|(d, &a)| {
                    if a <= 0.0 {
                        *d = 0.0;
                    }
                });
                d
            });
            let grad_w = grad_w.as_standard_layout().into_owned().into_raw_vec_and_offset().0;
            self.layers[i].adam_step(&grad_w, &grad_b, lr, t);
            if let Some(next) = next {
                grad = next;
            }
        }
    }
}

/// What a training step minimises: given the batch's row indices into the training split and the
/// student's logits, returns the loss and writes d loss / d logits.
pub type LossFn<'a> = dyn FnMut(&[usize], &[f32], &mut [f32]) -> f32 + 'a;

/// Trains with Adam on minibatches in a seeded order; returns the last epoch's mean loss.
pub fn train(
    model: &mut Mlp,
    train: &Split,
    epochs: usize,
    lr: f32,
    seed: u64,
    loss: &mut LossFn<'_>,
) -> f32 {
    const BATCH: usize = 32;
    let features = model.layers[0].inputs;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = Rng::new(seed ^ 0x5EED);
    let mut t = 0;
    let mut last = 0.0;
    for _ in 0..epochs {
        rng.shuffle(&mut order);
        let mut total = 0.0;
        for rows in order.chunks(BATCH) {
            let x: Vec<f32> =
                rows.iter().flat_map(|&r| &train.x[r * features..(r + 1) * features]).copied().collect();
            let outputs = model.forward_all(&x, rows.len());
            let logits = outputs.last().expect("layers");
            let mut grad = vec![0.0f32; logits.len()];
            total += loss(rows, logits, &mut grad) * rows.len() as f32;
            t += 1;
            model.step(&x, rows.len(), &outputs, grad, lr, t);
        }
        last = total / train.len() as f32;
    }
    last
}

/// Share of rows whose largest logit is the label.
pub fn accuracy(logits: &[f32], labels: &[i32]) -> f64 {
    let correct = logits
        .chunks_exact(CLASSES)
        .zip(labels)
        .filter(|(row, &label)| {
            let best = row.iter().enumerate().fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
            best as i32 == label
        })
        .count();
    correct as f64 / labels.len() as f64
}
