//! `greenai flops`: the cost report of a zoo model or a Hugging Face `config.json`.

use greenai::energy::{Carbon, EnergyTable, GridSource, InferenceFootprint};
use greenai::flops::{hf_config, zoo, Comparison, Compression, Model, Precision, Report, Sparsity};
use greenai::{units, Error, Result};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `greenai flops`.
#[derive(clap::Args)]
pub struct Args {
    /// A zoo model: resnet18, resnet34, resnet50, resnet101, vgg16, alexnet, mobilenet_v2, vit_b_16, bert_base, gpt2.
    #[arg(required_unless_present = "hf_config", conflicts_with = "hf_config")]
    model: Option<String>,
    /// A Hugging Face config.json (BERT, GPT-2, LLaMA-style) instead of a zoo model.
    #[arg(long, value_name = "PATH")]
    hf_config: Option<PathBuf>,
    /// Samples per inference call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Sequence length for language models (default: 128 for BERT configs, 1024 for GPT-2, 2048 otherwise).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Weight precision: f32, f16, bf16, int8, int4 (int4 runs with int8 activations).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Weight sparsity: a fraction such as 0.5 (unstructured) or N:M such as 2:4.
    #[arg(long)]
    sparsity: Option<String>,
    /// Low-rank factorisation rank of every weight matrix.
    #[arg(long)]
    rank: Option<u64>,
    /// Electricity source for carbon: world, coal, oil, gas, nuclear, hydro, solar, wind.
    #[arg(long, default_value = "world")]
    grid: String,
    /// Power usage effectiveness of the facility.
    #[arg(long, default_value_t = 1.0)]
    pue: f64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

fn parse_sparsity(s: &str) -> Result<Sparsity> {
    let bad = || Error::invalid("sparsity", s, "expected a fraction in [0, 1) or N:M such as 2:4");
    if let Some((n, m)) = s.split_once(':') {
        return Ok(Sparsity::NM {
            n: n.trim().parse().map_err(|_| bad())?,
            m: m.trim().parse().map_err(|_| bad())?,
        });
    }
    let f: f64 = s.trim().parse().map_err(|_| bad())?;
    Ok(if f == 0.0 { Sparsity::Dense } else { Sparsity::Unstructured(f) })
}

fn build(args: &Args) -> Result<Model> {
    if args.batch == 0 {
        return Err(Error::invalid("batch", 0, "must be positive"));
    }
    match (&args.model, &args.hf_config) {
        (Some(name), None) => zoo::by_name(name, args.batch, args.seq_len),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let cfg = hf_config::parse(&text)?;
            let default_len = match cfg.family {
                zoo::Family::Bert => 128,
                zoo::Family::Gpt2 => cfg.max_positions.min(1024),
                zoo::Family::Llama => cfg.max_positions.min(2048),
            };
            zoo::transformer(&cfg, args.batch, args.seq_len.unwrap_or(default_len))
        }
        _ => Err(Error::invalid("model", "", "give a zoo model name or --hf-config PATH")),
    }
}

#[derive(serde::Serialize)]
struct Output<'a> {
    compression: Compression,
    report: &'a Report,
    energy_table: EnergyTable,
    carbon: Carbon,
    footprint: InferenceFootprint,
    baseline: Option<Baseline>,
}

#[derive(serde::Serialize)]
struct Baseline {
    total: greenai::flops::Cost,
    footprint: InferenceFootprint,
    comparison: Comparison,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<()> {
    let model = build(args)?;
    let p = Precision::parse(&args.dtype)?;
    let mut comp = Compression::dense(p).with_sparsity(match &args.sparsity {
        Some(s) => parse_sparsity(s)?,
        None => Sparsity::Dense,
    });
    comp.rank = args.rank;
    comp.check()?;
    let carbon = Carbon { g_per_kwh: GridSource::parse(&args.grid)?.g_per_kwh(), pue: args.pue };
    carbon.check()?;
    let table = EnergyTable::default();
    let footprint_of = |r: &Report, c: &Compression| {
        InferenceFootprint::new(&table.energy(&r.total, c.weights, c.activations), args.batch, &carbon)
    };
    let report = model.report(&comp)?;
    let footprint = footprint_of(&report, &comp)?;
    let dense = Compression::default();
    let baseline = if comp != dense {
        let base = model.report(&dense)?;
        let fp = footprint_of(&base, &dense)?;
        Some(Baseline { total: base.total, footprint: fp, comparison: Comparison::new(&base, &report) })
    } else {
        None
    };
    if args.json {
        let out =
            Output { compression: comp, report: &report, energy_table: table, carbon, footprint, baseline };
        let text =
            serde_json::to_string_pretty(&out).map_err(|e| Error::format("json output", e.to_string()))?;
        let mut out = crate::stdout();
        writeln!(out, "{text}").and_then(|()| out.flush()).map_err(crate::stdout_error)?;
        return Ok(());
    }
    let mut out = crate::stdout();
    print_text(&mut out, args, &report, &comp, p, &carbon, &footprint, baseline)
        .and_then(|()| out.flush())
        .map_err(crate::stdout_error)
}

#[allow(clippy::too_many_arguments)]
fn print_text(
    out: &mut impl Write,
    args: &Args,
    report: &Report,
    comp: &Compression,
    p: Precision,
    carbon: &Carbon,
    footprint: &InferenceFootprint,
    baseline: Option<Baseline>,
) -> std::io::Result<()> {
    write!(out, "{report}")?;
    let f = footprint.per_inference;
    // Energy in watt-hours: 1 kWh = 1000 Wh.
    let wh = |kwh: f64| units::si(kwh * 1e3, "Wh");
    writeln!(
        out,
        "energy (Horowitz 45 nm lower bound): {} per inference ({}), {} ({} grid, {} g/kWh, PUE {})",
        units::si(f.joules, "J"),
        wh(f.kwh),
        units::si(f.gco2e, "gCO2e"),
        args.grid,
        carbon.g_per_kwh,
        carbon.pue
    )?;
    let m = footprint.per_million;
    writeln!(out, "per million inferences: {}, {}", wh(m.kwh), units::si(m.gco2e, "gCO2e"))?;
    writeln!(out, "per million inferences by energy source (PUE {}):", carbon.pue)?;
    for g in GridSource::ALL {
        writeln!(out, "  {:<8} {:>12}", g.name(), units::si(m.kwh * carbon.pue * g.g_per_kwh(), "gCO2e"))?;
    }
    if let Some(b) = baseline {
        let sparsity = match comp.sparsity {
            Sparsity::Dense => "dense".to_string(),
            Sparsity::Unstructured(share) => format!("{:.0}% sparse", share * 100.0),
            Sparsity::NM { n, m } => format!("{n}:{m} sparse"),
        };
        let rank = comp.rank.map_or_else(|| "full rank".to_string(), |r| format!("rank {r}"));
        writeln!(out, "\ncompression ({p}, {sparsity}, {rank}) against dense f32:")?;
        write!(out, "{}", b.comparison)?;
        writeln!(
            out,
            "{:<14} {:>14} {:>14} {:>8.3}x",
            "energy/infer",
            units::si(b.footprint.per_inference.joules, "J"),
            units::si(f.joules, "J"),
            b.footprint.per_inference.joules / f.joules
        )?;
    }
    Ok(())
}
