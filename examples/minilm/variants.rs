//! The example's variants, each built from the f32 model by greenai's own APIs: the weight formats
//! (f32, f16, bf16, int8), SmoothQuant int8, int4 group-128 by round-to-nearest, HQQ and GPTQ, Wanda
//! 2:4 + int8 (on the int8 2:4 kernel), and low-rank where the break-even rule says it pays. The calibrated ones read
//! statistics of the f32 model's own linear-layer inputs on `calibration.txt` (sentences that are not
//! the judged pairs').

use crate::bert::{Config, Encoder, Format, Int4Linear, Linear, LinearSpec, Proj, Result, Site, Weights};
use greenai::kernels::gemm_int8::QuantLinear;
use greenai::lowrank::{factorize, RankChoice};
use greenai::prune::{n_m, ActivationNormObserver};
use greenai::quant::smoothquant::{channel_absmax, smooth_weight, smoothquant_scales};
use greenai::quant::{
    gptq_quantize, hqq_quantize, rtn_quantize, GptqOptions, GptqWeight, HessianAccumulator, HqqOptions,
};

/// Calibration sentences, one a line (none of them in `pairs.tsv`).
pub const CALIBRATION: &str = include_str!("calibration.txt");

/// The variants, in the table's order, by the names of their output files.
pub const VARIANTS: [&str; 10] = [
    "f32",
    "f16",
    "bf16",
    "int8",
    "int8_smoothquant",
    "int4_rtn",
    "int4_hqq",
    "int4_gptq",
    "sparse24_int8",
    "lowrank",
];

/// SmoothQuant's migration strength (the paper's default).
pub const SMOOTHQUANT_ALPHA: f32 = 0.5;

/// Weights per int4 group along a row.
pub const INT4_GROUP: usize = 128;

/// GPTQ's act order (columns by descending Hessian diagonal), with static groups so the groups stay
/// contiguous for the int4 kernel.
pub const GPTQ_ACT_ORDER: bool = true;

/// GPTQ's damping, as a fraction of `mean(diag H)`: 0.1 rather than AutoGPTQ's 0.01, because the
/// calibration's ~900 tokens leave the 1536-wide Hessians of the MLP's second layers rank-deficient.
pub const GPTQ_DAMP: f32 = 0.1;

/// The share of the squared singular values a low-rank factorization keeps (the rank's choice): the
/// lowest of 0.90, 0.95, 0.97, 0.99 at which the variant keeps int8's bar (min cosine 0.98, mean
/// 0.995). At 0.95, 21 of the 36 layers fall below their break-even rank but the min cosine drops to 0.80.
pub const LOWRANK_ENERGY: f64 = 0.97;

fn lib<T>(r: greenai::Result<T>) -> Result<T> {
    r.map_err(|e| e.to_string())
}

/// Statistics of every linear layer's input on the calibration sentences, per layer and [`Site`].
pub struct Calibration {
    /// Tokens seen.
    pub tokens: usize,
    absmax: Vec<[Vec<f32>; 4]>,
    norms: Vec<[ActivationNormObserver; 4]>,
    hessians: Vec<[HessianAccumulator; 4]>,
}

impl Calibration {
    /// Runs the f32 encoder on `ids` (the calibration sentences' tokens) and gathers per-channel
    /// `max |x|` (SmoothQuant), `||x||_2` (Wanda) and `2/N sum x x^T` (GPTQ) of each site's inputs.
    pub fn collect(f32_model: &Encoder, ids: &[Vec<u32>]) -> Result<Calibration> {
        let c = &f32_model.config;
        let widths = [c.hidden, c.hidden, c.hidden, c.intermediate];
        let mut cal = Calibration { tokens: 0, absmax: Vec::new(), norms: Vec::new(), hessians: Vec::new() };
        for _ in 0..c.layers {
            cal.absmax.push(widths.map(|w| vec![0.0; w]));
            cal.norms.push(widths.map(ActivationNormObserver::new));
            let h = widths.map(HessianAccumulator::new);
            let [a, b, d, e] = h;
            cal.hessians.push([lib(a)?, lib(b)?, lib(d)?, lib(e)?]);
        }
        for chunk in ids.chunks(16) {
            cal.tokens += chunk.iter().map(Vec::len).sum::<usize>();
            f32_model.embed_observed(chunk, &mut |l, site, x| {
                let (i, w) = (site.index(), widths[site.index()]);
                let n = x.len() / w;
                let m = lib(channel_absmax(x, n, w))?;
                cal.absmax[l][i].iter_mut().zip(m).for_each(|(a, b)| *a = a.max(b));
                lib(cal.norms[l][i].observe(x))?;
                lib(cal.hessians[l][i].add(x, n))
            })?;
        }
        Ok(cal)
    }
}

/// What a builder reports about the variant it made.
pub struct Notes {
    /// Lines for the reader (what runs, what was chosen).
    pub lines: Vec<String>,
    /// Linear layers factorized (low rank only).
    pub factorized: usize,
    /// The smallest ratio of a layer's chosen rank to its break-even rank (low rank only).
    pub lowest_share: f64,
}

impl Default for Notes {
    fn default() -> Self {
        Notes { lines: Vec::new(), factorized: 0, lowest_share: f64::INFINITY }
    }
}

fn int4_options() -> GptqOptions {
    GptqOptions { bits: 4, group_size: INT4_GROUP, symmetric: false, ..GptqOptions::default() }
}

/// Builds variant `name` (one of [`VARIANTS`]) from the f32 weights; the calibrated variants read `cal`.
pub fn build(
    name: &str,
    config: &Config,
    weights: &Weights,
    cal: &Calibration,
    notes: &mut Notes,
) -> Result<Encoder> {
    let plain = |format| Encoder::load(config, weights, format);
    match name {
        "f32" => plain(Format::F32),
        "f16" => plain(Format::F16),
        "bf16" => plain(Format::Bf16),
        "int8" => plain(Format::Int8),
        "int8_smoothquant" => smoothquant(config, weights, cal),
        "int4_rtn" => {
            int4(config, weights, &mut |s| lib(rtn_quantize(s.weight, s.out, s.inp, &int4_options())))
        }
        "int4_hqq" => {
            let opts = HqqOptions { group_size: INT4_GROUP, ..HqqOptions::with_bits(4) };
            int4(config, weights, &mut |s| lib(hqq_quantize(s.weight, s.out, s.inp, &opts)))
        }
        "int4_gptq" => {
            let opts = GptqOptions {
                act_order: GPTQ_ACT_ORDER,
                static_groups: true,
                damp: GPTQ_DAMP,
                ..int4_options()
            };
            int4(config, weights, &mut |s| {
                let h = lib(cal.hessians[s.layer][s.proj.site().index()].finish())?;
                lib(gptq_quantize(s.weight, s.out, s.inp, &h, &opts))
            })
        }
        "sparse24_int8" => Encoder::load_with(config, weights, &mut |s: &LinearSpec| {
            // Wanda's score |W_ij| ||X_j||_2, then the 2:4 pattern on it (the two best of every four).
            let norms = cal.norms[s.layer][s.proj.site().index()].norms();
            let scores: Vec<f32> = s
                .weight
                .iter()
                .enumerate()
                .map(|(i, w)| (f64::from(w.abs()) * norms[i % s.inp]) as f32)
                .collect();
            let mask = lib(n_m(&scores, &[s.out, s.inp], 2, 4, false))?;
            // Kept in the 2:4 form and run on the int8 2:4 kernel (the same integers as dense int8).
            let w = lib(mask.apply(s.weight))?;
            Ok(Linear::Int8(lib(QuantLinear::from_float_2_4(&w, s.out, s.inp, Some(s.bias), false))?))
        }),
        "lowrank" => Encoder::load_with(config, weights, &mut |s: &LinearSpec| {
            if s.proj == Proj::Qkv {
                // Query, key and value each factorized on its own (their ranks differ).
                let part = s.out / 3;
                let parts = [Proj::Query, Proj::Key, Proj::Value].into_iter().enumerate().map(|(i, proj)| {
                    let rows = i * part..(i + 1) * part;
                    low_rank_or_f32(
                        &LinearSpec {
                            proj,
                            out: part,
                            weight: &s.weight[rows.start * s.inp..rows.end * s.inp],
                            bias: &s.bias[rows],
                            ..*s
                        },
                        notes,
                    )
                });
                return Ok(Linear::Stacked(parts.collect::<Result<_>>()?));
            }
            low_rank_or_f32(s, notes)
        }),
        other => Err(format!("unknown variant `{other}`")),
    }
}

/// `s` factorized at [`LOWRANK_ENERGY`] when that beats its break-even rank, else f32.
fn low_rank_or_f32(s: &LinearSpec, notes: &mut Notes) -> Result<Linear> {
    let lr = lib(factorize(s.weight, s.out, s.inp, RankChoice::Energy(LOWRANK_ENERGY)))?;
    notes.lowest_share =
        notes.lowest_share.min(lr.rank as f64 / greenai::lowrank::break_even_rank(s.out, s.inp));
    if lr.is_worth_it() {
        notes.factorized += 1;
        notes.lines.push(format!("layer {} {:?}: rank {} ({} x {})", s.layer, s.proj, lr.rank, s.out, s.inp));
        Linear::low_rank(s.out, s.inp, lr.rank, &lr.a, &lr.b, s.bias)
    } else {
        Linear::new(Format::F32, s.out, s.inp, s.weight, s.bias)
    }
}

fn int4(
    config: &Config,
    weights: &Weights,
    quantize: &mut dyn FnMut(&LinearSpec) -> Result<GptqWeight>,
) -> Result<Encoder> {
    Encoder::load_with(config, weights, &mut |s: &LinearSpec| {
        Ok(Linear::Int4(Int4Linear::from_gptq(&quantize(s)?, s.bias)?))
    })
}

/// SmoothQuant's scales of one layer: query/key/value's (their rows stacked), the attention output's,
/// the MLP's two.
fn smooth_scales(config: &Config, weights: &Weights, cal: &Calibration, l: usize) -> Result<[Vec<f32>; 4]> {
    let w = |p| weights.linear(config, l, p).map(|t| t.2);
    let act = &cal.absmax[l];
    let (h, inter) = (config.hidden, config.intermediate);
    let qkv = w(Proj::Qkv)?;
    Ok([
        lib(smoothquant_scales(&act[0], &qkv, 3 * h, h, SMOOTHQUANT_ALPHA))?,
        lib(smoothquant_scales(&act[1], &w(Proj::AttnOut)?, h, h, SMOOTHQUANT_ALPHA))?,
        lib(smoothquant_scales(&act[2], &w(Proj::Up)?, inter, h, SMOOTHQUANT_ALPHA))?,
        lib(smoothquant_scales(&act[3], &w(Proj::Down)?, h, inter, SMOOTHQUANT_ALPHA))?,
    ])
}

/// int8 W8A8 after SmoothQuant: each weight's input columns times `s`; the activations' division
/// folded into the LayerNorm before query/key/value and before the MLP, into the value layer's rows
/// for the attention output (its input is `softmax(.) V`, linear in V), and into the GELU's output
/// for the MLP's second layer.
fn smoothquant(config: &Config, weights: &Weights, cal: &Calibration) -> Result<Encoder> {
    let scales: Vec<[Vec<f32>; 4]> =
        (0..config.layers).map(|l| smooth_scales(config, weights, cal, l)).collect::<Result<_>>()?;
    let mut enc = Encoder::load_with(config, weights, &mut |s: &LinearSpec| {
        let sc = &scales[s.layer];
        let (mut w, mut b) = (s.weight.to_vec(), s.bias.to_vec());
        lib(smooth_weight(&mut w, s.out, s.inp, &sc[s.proj.site().index()]))?;
        if s.proj == Proj::Qkv {
            // The value rows, the last third of the stack.
            let value = s.out / 3;
            let (rows, biases) = (&mut w[2 * value * s.inp..], &mut b[2 * value..]);
            for ((row, bias), &d) in rows.chunks_exact_mut(s.inp).zip(biases).zip(&sc[Site::AttnOut.index()])
            {
                row.iter_mut().for_each(|v| *v /= d);
                *bias /= d;
            }
        }
        Linear::new(Format::Int8, s.out, s.inp, &w, &b)
    })?;
    for (l, sc) in scales.iter().enumerate() {
        enc.smooth(l, &sc[0], &sc[2], &sc[3])?;
    }
    Ok(enc)
}
