//! The pipeline's compression stages and its report: accuracy, size, MACs, energy, carbon, time.

use crate::data::{Split, CLASSES};
use crate::mlp::{accuracy, Mlp};
use greenai::energy::{Carbon, EnergyTable, InferenceFootprint};
use greenai::flops::{Compression, Layer, Linear, Model, Precision, Sparsity};
use greenai::kernels::gemm_float::gemm_f32_f16w;
use greenai::kernels::gemm_int8::{ActivationQuant, QuantLinear};
use greenai::prune::{self, CountRule, Csr, NmCompressed};
use half::f16;
use std::time::Instant;

/// How a student was pruned.
#[derive(Clone, Copy)]
pub enum Stage {
    /// Smallest magnitudes, this share of each weight matrix.
    Magnitude(f64),
    /// Two of every four consecutive weights along the input dimension.
    TwoOfFour,
}

/// Prunes `amount` of each weight matrix by magnitude and keeps the mask for fine-tuning.
pub fn prune_magnitude(model: &mut Mlp, amount: f64) -> greenai::Result<()> {
    for layer in &mut model.layers {
        let mask = prune::magnitude(&layer.w, amount, CountRule::default(), None)?;
        set_mask(layer, &mask)?;
    }
    Ok(())
}

/// Applies 2:4 sparsity along the input dimension of every weight matrix and keeps the mask.
pub fn prune_two_of_four(model: &mut Mlp) -> greenai::Result<()> {
    for layer in &mut model.layers {
        let mask = prune::n_m(&layer.w, &[layer.outputs, layer.inputs], 2, 4, false)?;
        set_mask(layer, &mask)?;
    }
    Ok(())
}

fn set_mask(layer: &mut crate::mlp::Dense, mask: &prune::Mask) -> greenai::Result<()> {
    let mut bytes = vec![0u8; mask.len()];
    mask.write_bytes(&mut bytes)?;
    layer.mask = Some(bytes);
    layer.apply_mask();
    Ok(())
}

/// One row of the table.
pub struct Row {
    name: String,
    accuracy: f64,
    params: usize,
    bytes: usize,
    macs: u64,
    joules: f64,
    gco2e_per_million: f64,
    micros: f64,
}

/// The table, built stage by stage on the test set.
pub struct Report<'a> {
    test: &'a Split,
    rows: Vec<Row>,
}

fn nonzero(model: &Mlp) -> usize {
    model.layers.iter().map(|l| l.w.iter().filter(|&&w| w != 0.0).count() + l.b.len()).sum()
}

/// Median wall time of `f` over a few runs, in microseconds.
fn time_micros(mut f: impl FnMut() -> greenai::Result<()>) -> greenai::Result<f64> {
    f()?;
    let mut times = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The greenai cost model of the MLP for one sample under a compression plan.
fn cost(model: &Mlp, compression: Compression) -> greenai::Result<(u64, f64, f64)> {
    let mut graph = Model::new("mlp", &[1, model.layers[0].inputs])?;
    for (i, layer) in model.layers.iter().enumerate() {
        graph.add(format!("fc{i}"), Layer::Linear(Linear::new(layer.inputs, layer.outputs)))?;
    }
    let report = graph.report(&compression)?;
    let energy = EnergyTable::default().energy(&report.total, compression.weights, compression.activations);
    let footprint = InferenceFootprint::new(&energy, 1, &Carbon::default())?;
    Ok((report.total.macs, footprint.per_inference.joules, footprint.per_million.gco2e))
}

impl<'a> Report<'a> {
    /// An empty table evaluated on `test`.
    pub fn new(test: &'a Split) -> Self {
        Report { test, rows: Vec::new() }
    }

    fn push(
        &mut self,
        name: &str,
        accuracy: f64,
        params: usize,
        bytes: usize,
        plan: (u64, f64, f64),
        micros: f64,
    ) {
        let (macs, joules, gco2e_per_million) = plan;
        println!("  {name}: {:.2}%", accuracy * 100.0);
        self.rows.push(Row {
            name: name.to_string(),
            accuracy,
            params,
            bytes,
            macs,
            joules,
            gco2e_per_million,
            micros,
        });
    }

    /// An f32 model, dense or pruned; pruned weights are counted as stored sparse (CSR or 2:4 compressed).
    pub fn add_f32(&mut self, name: &str, model: &Mlp, stage: Option<Stage>) -> greenai::Result<()> {
        let n = self.test.len();
        let acc = accuracy(&model.logits(&self.test.x, n), &self.test.y);
        let biases: usize = model.layers.iter().map(|l| 4 * l.b.len()).sum();
        let (weight_bytes, plan) = match stage {
            None => (model.layers.iter().map(|l| 4 * l.w.len()).sum(), Compression::dense(Precision::F32)),
            Some(Stage::Magnitude(amount)) => {
                let mut bytes = 0;
                for l in &model.layers {
                    bytes += Csr::from_dense(&l.w, l.outputs, l.inputs)?.storage_bytes();
                }
                (bytes, Compression::dense(Precision::F32).with_sparsity(Sparsity::Unstructured(amount)))
            }
            Some(Stage::TwoOfFour) => {
                let mut bytes = 0;
                for l in &model.layers {
                    bytes += NmCompressed::from_dense(&l.w, l.outputs, l.inputs, 2, 4)?.storage_bytes();
                }
                (bytes, Compression::dense(Precision::F32).with_sparsity(Sparsity::NM { n: 2, m: 4 }))
            }
        };
        let micros = time_micros(|| {
            std::hint::black_box(model.logits(&self.test.x, n));
            Ok(())
        })?;
        self.push(name, acc, nonzero(model), weight_bytes + biases, cost(model, plan)?, micros);
        Ok(())
    }

    /// The mean accuracy of several seeds of one architecture (size and cost are the same).
    pub fn add_mean(&mut self, name: &str, models: &[Mlp]) -> greenai::Result<()> {
        let n = self.test.len();
        let mean = models.iter().map(|m| accuracy(&m.logits(&self.test.x, n), &self.test.y)).sum::<f64>()
            / models.len() as f64;
        let model = &models[0];
        let micros = time_micros(|| {
            std::hint::black_box(model.logits(&self.test.x, n));
            Ok(())
        })?;
        let plan = cost(model, Compression::dense(Precision::F32))?;
        self.push(name, mean, model.params(), 4 * model.params(), plan, micros);
        Ok(())
    }

    /// The model with int8 per-channel weights and u8 dynamically quantized activations, run by
    /// greenai's quantized linear layer (int8 GEMM).
    pub fn add_int8(&mut self, name: &str, model: &Mlp) -> greenai::Result<()> {
        let layers = model
            .layers
            .iter()
            .map(|l| QuantLinear::from_float(&l.w, l.outputs, l.inputs, Some(&l.b), false))
            .collect::<greenai::Result<Vec<_>>>()?;
        let n = self.test.len();
        let forward = || -> greenai::Result<Vec<f32>> {
            let mut x = self.test.x.clone();
            for (i, layer) in layers.iter().enumerate() {
                let mut y = vec![0f32; n * layer.out_features()];
                layer.forward(&x, n, ActivationQuant::U8Affine, &mut y)?;
                if i + 1 < layers.len() {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                x = y;
            }
            Ok(x)
        };
        let acc = accuracy(&forward()?, &self.test.y);
        let micros = time_micros(|| forward().map(|_| ()))?;
        let bytes = model.layers.iter().map(|l| l.w.len() + 4 * l.outputs + 4 * l.b.len()).sum();
        let plan = cost(model, Compression::dense(Precision::Int8))?;
        self.push(name, acc, nonzero(model), bytes, plan, micros);
        Ok(())
    }

    /// The model with fp16 weights, run by greenai's f32 x f16 GEMM.
    pub fn add_fp16(&mut self, name: &str, model: &Mlp) -> greenai::Result<()> {
        // The GEMM takes B = W^T (inputs x outputs) in f16.
        let weights: Vec<Vec<f16>> = model
            .layers
            .iter()
            .map(|l| {
                (0..l.inputs * l.outputs)
                    .map(|i| f16::from_f32(l.w[(i % l.outputs) * l.inputs + i / l.outputs]))
                    .collect()
            })
            .collect();
        let n = self.test.len();
        let forward = || -> greenai::Result<Vec<f32>> {
            let mut x = self.test.x.clone();
            for (i, (layer, w)) in model.layers.iter().zip(&weights).enumerate() {
                let (k, m) = (layer.inputs, layer.outputs);
                let mut y = vec![0f32; n * m];
                gemm_f32_f16w(n, m, k, &x, k, w, m, &mut y, m)?;
                for row in y.chunks_exact_mut(m) {
                    for (v, b) in row.iter_mut().zip(&layer.b) {
                        *v += b;
                        if i + 1 < model.layers.len() {
                            *v = v.max(0.0);
                        }
                    }
                }
                x = y;
            }
            Ok(x)
        };
        let acc = accuracy(&forward()?, &self.test.y);
        let micros = time_micros(|| forward().map(|_| ()))?;
        let bytes = model.layers.iter().map(|l| 2 * l.w.len() + 4 * l.b.len()).sum();
        let plan = cost(model, Compression::dense(Precision::F16))?;
        self.push(name, acc, nonzero(model), bytes, plan, micros);
        Ok(())
    }

    /// The test accuracy of a stage, by name.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn accuracy(&self, stage: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.name == stage).map(|r| r.accuracy)
    }

    /// Prints the table.
    pub fn print(&self) {
        println!(
            "\n{:<38} {:>8} {:>8} {:>8} {:>9} {:>12} {:>12} {:>10}",
            "stage", "test acc", "params", "bytes", "MACs", "nJ/infer.", "gCO2e/1M", "us/batch"
        );
        for r in &self.rows {
            println!(
                "{:<38} {:>7.2}% {:>8} {:>8} {:>9} {:>12.2} {:>12.3e} {:>10.1}",
                r.name,
                r.accuracy * 100.0,
                r.params,
                r.bytes,
                r.macs,
                r.joules * 1e9,
                r.gco2e_per_million,
                r.micros
            );
        }
        println!(
            "\n{} test images per batch ({} classes). Energy: greenai's cost model with Horowitz (ISSCC 2014, 45 nm) \
             per-operation energies, a lower bound; carbon at 475 gCO2e/kWh (world average), PUE 1. \
             Pruned f32 sizes are CSR / 2:4-compressed storage; pruned models still run the dense f32 path.",
            self.test.len(),
            CLASSES
        );
    }

    /// The table as JSON (an array of objects, one per stage).
    pub fn to_json(&self) -> String {
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "  {{\"stage\": \"{}\", \"test_accuracy\": {}, \"params\": {}, \"bytes\": {}, \"macs_per_inference\": {}, \
                     \"joules_per_inference\": {:e}, \"gco2e_per_million_inferences\": {:e}, \"microseconds_per_batch\": {}}}",
                    r.name.replace('"', "'"),
                    r.accuracy,
                    r.params,
                    r.bytes,
                    r.macs,
                    r.joules,
                    r.gco2e_per_million,
                    r.micros
                )
            })
            .collect();
        format!("[\n{}\n]\n", rows.join(",\n"))
    }
}
