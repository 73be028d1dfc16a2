//! The pipeline's compression stages and its report: accuracy, size, MACs, energy, carbon, time.

use crate::data::{Split, CLASSES};
use crate::mlp::{accuracy, Mlp};
use greenai::energy::{Carbon, EnergyMeter, EnergyTable, InferenceFootprint};
use greenai::flops::{Compression, Layer, Linear, Model, Precision, Sparsity};
use greenai::kernels::gemm_float::gemm_f32_f16w;
use greenai::kernels::gemm_int8::{ActivationQuant, QuantLinear};
use greenai::kernels::sparse::{csr_spmm, nm_spmm};
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
    timing: Timing,
}

/// The table, built stage by stage on the test set.
pub struct Report<'a> {
    test: &'a Split,
    rows: Vec<Row>,
}

fn nonzero(model: &Mlp) -> usize {
    model.layers.iter().map(|l| l.w.iter().filter(|&&w| w != 0.0).count() + l.b.len()).sum()
}

/// What running a stage on the test batch cost: its median wall time and its metered energy.
struct Timing {
    /// Median wall time of one batch, microseconds.
    micros: f64,
    /// Joules per batch from greenai's energy meter (RAPL, or its labelled estimate).
    joules_per_batch: f64,
    /// Where the joules come from ("measured (RAPL)" or the estimate's label).
    source: String,
}

/// Seconds the energy meter runs a stage for: long enough for the CPU-time clock behind the estimate.
const METERED_SECONDS: f64 = 0.25;

/// Times `f` (median of 21 runs), then runs it under [`EnergyMeter`] for [`METERED_SECONDS`].
fn time_and_meter(mut f: impl FnMut() -> greenai::Result<()>) -> greenai::Result<Timing> {
    f()?;
    let mut times = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let meter = EnergyMeter::new();
    let start = meter.start()?;
    let mut batches = 0u32;
    while batches == 0 || meter.read(&start)?.wall_seconds < METERED_SECONDS {
        f()?;
        batches += 1;
    }
    let measured = meter.read(&start)?;
    Ok(Timing {
        micros: times[times.len() / 2],
        joules_per_batch: measured.joules / f64::from(batches),
        source: measured.label(),
    })
}

/// The logits of `batch` rows of `x` through the model with each layer's product `W h` done by
/// `product(layer, h, y)` on activations held transposed (features x batch), as the sparse kernels
/// take them: `y (outputs x batch) = W (outputs x inputs) h (inputs x batch)`.
fn sparse_logits(
    model: &Mlp,
    x: &[f32],
    batch: usize,
    product: impl Fn(usize, &[f32], &mut [f32]) -> greenai::Result<()>,
) -> greenai::Result<Vec<f32>> {
    let transpose = |a: &[f32], rows: usize, cols: usize| -> Vec<f32> {
        (0..rows * cols).map(|i| a[(i % rows) * cols + i / rows]).collect()
    };
    let mut h = transpose(x, batch, model.layers[0].inputs);
    for (i, layer) in model.layers.iter().enumerate() {
        let mut y = vec![0f32; layer.outputs * batch];
        product(i, &h, &mut y)?;
        let last = i + 1 == model.layers.len();
        for (row, b) in y.chunks_exact_mut(batch).zip(&layer.b) {
            for v in row {
                *v += b;
                if !last {
                    *v = v.max(0.0);
                }
            }
        }
        h = y;
    }
    Ok(transpose(&h, CLASSES, batch))
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
        timing: Timing,
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
            timing,
        });
    }

    /// An f32 model, dense or pruned; pruned weights are counted as stored sparse (CSR or 2:4 compressed).
    pub fn add_f32(&mut self, name: &str, model: &Mlp, stage: Option<Stage>) -> greenai::Result<()> {
        let n = self.test.len();
        let biases: usize = model.layers.iter().map(|l| 4 * l.b.len()).sum();
        let (acc, weight_bytes, plan, timing) = match stage {
            None => {
                let acc = accuracy(&model.logits(&self.test.x, n), &self.test.y);
                let timing = time_and_meter(|| {
                    std::hint::black_box(model.logits(&self.test.x, n));
                    Ok(())
                })?;
                let bytes: usize = model.layers.iter().map(|l| 4 * l.w.len()).sum();
                (acc, bytes, Compression::dense(Precision::F32), timing)
            }
            Some(Stage::Magnitude(amount)) => {
                let layers = model
                    .layers
                    .iter()
                    .map(|l| Csr::from_dense(&l.w, l.outputs, l.inputs))
                    .collect::<greenai::Result<Vec<_>>>()?;
                let views = layers.iter().map(|c| c.view()).collect::<greenai::Result<Vec<_>>>()?;
                let forward = |x: &[f32]| sparse_logits(model, x, n, |i, h, y| csr_spmm(&views[i], h, n, y));
                let acc = accuracy(&forward(&self.test.x)?, &self.test.y);
                let timing = time_and_meter(|| forward(&self.test.x).map(|_| ()))?;
                let bytes = layers.iter().map(|c| c.storage_bytes()).sum();
                let plan = Compression::dense(Precision::F32).with_sparsity(Sparsity::Unstructured(amount));
                (acc, bytes, plan, timing)
            }
            Some(Stage::TwoOfFour) => {
                let layers = model
                    .layers
                    .iter()
                    .map(|l| NmCompressed::from_dense(&l.w, l.outputs, l.inputs, 2, 4))
                    .collect::<greenai::Result<Vec<_>>>()?;
                let views = layers.iter().map(|c| c.view()).collect::<greenai::Result<Vec<_>>>()?;
                let forward = |x: &[f32]| sparse_logits(model, x, n, |i, h, y| nm_spmm(&views[i], h, n, y));
                let acc = accuracy(&forward(&self.test.x)?, &self.test.y);
                let timing = time_and_meter(|| forward(&self.test.x).map(|_| ()))?;
                let bytes = layers.iter().map(|c| c.storage_bytes()).sum();
                let plan = Compression::dense(Precision::F32).with_sparsity(Sparsity::NM { n: 2, m: 4 });
                (acc, bytes, plan, timing)
            }
        };
        self.push(name, acc, nonzero(model), weight_bytes + biases, cost(model, plan)?, timing);
        Ok(())
    }

    /// The mean accuracy of several seeds of one architecture (size and cost are the same).
    pub fn add_mean(&mut self, name: &str, models: &[Mlp]) -> greenai::Result<()> {
        let n = self.test.len();
        let mean = models.iter().map(|m| accuracy(&m.logits(&self.test.x, n), &self.test.y)).sum::<f64>()
            / models.len() as f64;
        let model = &models[0];
        let timing = time_and_meter(|| {
            std::hint::black_box(model.logits(&self.test.x, n));
            Ok(())
        })?;
        let plan = cost(model, Compression::dense(Precision::F32))?;
        self.push(name, mean, model.params(), 4 * model.params(), plan, timing);
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
        let timing = time_and_meter(|| forward().map(|_| ()))?;
        let bytes = model.layers.iter().map(|l| l.w.len() + 4 * l.outputs + 4 * l.b.len()).sum();
        let plan = cost(model, Compression::dense(Precision::Int8))?;
        self.push(name, acc, nonzero(model), bytes, plan, timing);
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
        let timing = time_and_meter(|| forward().map(|_| ()))?;
        let bytes = model.layers.iter().map(|l| 2 * l.w.len() + 4 * l.b.len()).sum();
        let plan = cost(model, Compression::dense(Precision::F16))?;
        self.push(name, acc, nonzero(model), bytes, plan, timing);
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
            "\n{:<38} {:>8} {:>8} {:>8} {:>9} {:>12} {:>12} {:>10} {:>14}",
            "stage",
            "test acc",
            "params",
            "bytes",
            "MACs",
            "nJ/infer.",
            "gCO2e/1M",
            "us/batch",
            "metered uJ/inf"
        );
        let n = self.test.len() as f64;
        for r in &self.rows {
            println!(
                "{:<38} {:>7.2}% {:>8} {:>8} {:>9} {:>12.2} {:>12.3e} {:>10.1} {:>14.3}",
                r.name,
                r.accuracy * 100.0,
                r.params,
                r.bytes,
                r.macs,
                r.joules * 1e9,
                r.gco2e_per_million,
                r.timing.micros,
                r.timing.joules_per_batch / n * 1e6
            );
        }
        println!(
            "\n{} test images per batch ({} classes). Energy: greenai's cost model with Horowitz (ISSCC 2014, 45 nm) \
             per-operation energies at batch 1 (weights read from DRAM every inference); carbon at 475 gCO2e/kWh (world average), PUE 1. \
             Pruned f32 stages are stored and run as CSR / 2:4-compressed (greenai's sparse kernels).\n\
             Metered energy (beside the model, not instead of it): the batch run for {METERED_SECONDS} s under \
             greenai::energy::EnergyMeter, {}.",
            self.test.len(),
            CLASSES,
            self.rows.first().map_or("no stage ran", |r| r.timing.source.as_str())
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
                     \"joules_per_inference\": {:e}, \"gco2e_per_million_inferences\": {:e}, \"microseconds_per_batch\": {}, \
                     \"metered_joules_per_inference\": {:e}, \"metered_energy_source\": \"{}\"}}",
                    r.name.replace('"', "'"),
                    r.accuracy,
                    r.params,
                    r.bytes,
                    r.macs,
                    r.joules,
                    r.gco2e_per_million,
                    r.timing.micros,
                    r.timing.joules_per_batch / self.test.len() as f64,
                    r.timing.source.replace('"', "'")
                )
            })
            .collect();
        format!("[\n{}\n]\n", rows.join(",\n"))
    }
}
