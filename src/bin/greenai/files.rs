//! `greenai inspect`, `compress` and `decompress`: model files in, smaller model files out.

use crate::printable;
use greenai::kernels::ggml::GgmlType;
use greenai::model::{
    self, Calibrate, CompressOptions, CompressReport, Destination, Grouping, LogicalSummary, Method, Model,
    Pruning, StagedFile, Target, TensorSummary,
};
use greenai::{units, Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Arguments of `greenai inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// A safetensors file, or a model folder (config.json with model.safetensors, or shards and
    /// model.safetensors.index.json).
    file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `greenai compress` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// greenai's own convention: one safetensors file.
    Greenai,
    /// A compressed-tensors model directory (llm-compressor's layout; vLLM and transformers load it).
    CompressedTensors,
    /// One GGUF file (llama.cpp, ollama).
    Gguf,
}

/// Arguments of `greenai compress`.
#[derive(clap::Args)]
pub struct CompressArgs {
    /// The safetensors file or model folder to compress.
    file: PathBuf,
    /// Where to write the compressed file (replaced whole, through a temporary file beside it), or for
    /// a folder the new folder (which must not exist; written whole through a temporary folder beside it).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Target type of float weights: int8, uint8, int4, fp16, bf16, none (prune only), or a ggml block
    /// type (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q6_k; rows along the last dimension).
    #[arg(long, default_value = "int8")]
    quant: String,
    /// How integer targets are quantized: rtn (round to nearest), or hqq (calibration-free half-quadratic
    /// zero-point optimisation, HQQ's defaults; int4 becomes unsigned 4-bit with real-valued zero points;
    /// groups from --granularity channel or block:N, e.g. block:64).
    #[arg(long, default_value = "rtn")]
    method: String,
    /// Scale sharing for integer targets: tensor, channel, or block:N (N weights along the last dimension).
    #[arg(long, default_value = "channel")]
    granularity: String,
    /// Range selection for integer targets: minmax, percentile:P, mse, entropy.
    #[arg(long, default_value = "minmax")]
    calibration: String,
    /// Prune first: a share such as 0.5 (smallest magnitudes), or N:M such as 2:4.
    #[arg(long)]
    prune: Option<String>,
    /// Leave tensors whose names match this regular expression unchanged.
    #[arg(long, value_name = "REGEX")]
    skip: Option<String>,
    /// Also compress 1-D tensors (biases, norms).
    #[arg(long)]
    include_1d: bool,
    /// Write the per-tensor report as JSON to this file.
    #[arg(long, value_name = "JSON")]
    report: Option<PathBuf>,
    /// Output format: greenai's safetensors convention; compressed-tensors (vLLM, transformers; MODEL is a
    /// model folder, see --scheme); or gguf (llama.cpp; MODEL is a model folder, --quant f16, bf16, q8_0,
    /// q4_0, q4_1, q5_0, q4_k or q6_k).
    #[arg(long, value_enum, default_value = "greenai")]
    format: OutputFormat,
    #[command(flatten)]
    ct: crate::ct::CtArgs,
    /// Print a warning for every tensor whose total SQNR (pruning and quantization together) falls
    /// below this many dB.
    #[arg(long, value_name = "DB", default_value_t = 20.0)]
    warn_sqnr: f64,
}

/// Arguments of `greenai decompress`.
#[derive(clap::Args)]
pub struct DecompressArgs {
    /// A file or folder written by `greenai compress`, or a compressed-tensors model folder.
    file: PathBuf,
    /// Where to write the plain float safetensors file (replaced whole, through a temporary file beside
    /// it), or for a folder the new folder (which must not exist).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
}

/// A bar over the bytes of every tensor of the model, all shards together, with the rate.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = "{msg} [{bar:40}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, {elapsed})";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

/// Runs `greenai inspect`.
pub fn inspect(args: &InspectArgs) -> Result<()> {
    if model::gguf::is_gguf_file(&args.file) {
        return crate::gguf::inspect(&args.file, args.json);
    }
    if crate::ct::is_compressed_tensors(&args.file) {
        let reader = model::CompressedModel::open(&args.file)?;
        if args.json {
            return print_json(&reader.tensors());
        }
        let stored = reader.model().map_or(0, Model::len);
        let mut out = crate::stdout();
        let path = args.file.display().to_string();
        return print_logical(&mut out, &path, stored, "compressed-tensors", reader.tensors())
            .and_then(|()| out.flush())
            .map_err(crate::stdout_error);
    }
    let file = Model::open(&args.file)?;
    let mut logical = Vec::new();
    for shard in file.shards() {
        if let Some(rows) = model::inspect_logical(shard)? {
            logical.push((shard, rows));
        }
    }
    if !logical.is_empty() && logical.len() == file.shards().len() {
        if args.json {
            let all: Vec<&LogicalSummary> = logical.iter().flat_map(|(_, rows)| rows).collect();
            return print_json(&all);
        }
        let mut out = crate::stdout();
        for (shard, rows) in &logical {
            let path = shard.path().display().to_string();
            let format = shard.metadata().get("greenai.format").map_or("?", String::as_str);
            print_logical(&mut out, &path, shard.len(), &format!("greenai format {format}"), rows)
                .map_err(crate::stdout_error)?;
        }
        return out.flush().map_err(crate::stdout_error);
    }
    let bar = progress_bar(file.data_bytes(), "reading");
    let rows = model::inspect(&file, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    if args.json {
        return print_json(&rows);
    }
    let mut out = crate::stdout();
    print_summary(&mut out, &file, &rows).and_then(|()| out.flush()).map_err(crate::stdout_error)
}

/// The table of a compressed model (`format` says whose): one line per logical tensor, `stored`
/// tensors in the files.
fn print_logical(
    out: &mut impl Write,
    path: &str,
    stored: usize,
    format: &str,
    rows: &[LogicalSummary],
) -> std::io::Result<()> {
    let names: Vec<_> = rows.iter().map(|r| printable(&r.name)).collect();
    let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).max(4);
    let sw = rows.iter().map(|r| r.scheme.len()).max().unwrap_or(6).max(6);
    writeln!(out, "{}: {} tensors ({stored} stored), {}", printable(path), rows.len(), printable(format))?;
    writeln!(
        out,
        "{:<w$}  {:<6} {:<18} {:>9} {:>5} {:<sw$} {:<7} {:>8} {:>9}",
        "name", "dtype", "shape", "params", "bits", "scheme", "storage", "sparsity", "size"
    )?;
    for (r, name) in rows.iter().zip(&names) {
        writeln!(
            out,
            "{:<w$}  {:<6} {:<18} {:>9} {:>5} {:<sw$} {:<7} {:>8} {:>9}",
            name,
            r.dtype,
            format!("{:?}", r.shape),
            units::count(r.params as f64),
            units::sig3(r.bits),
            r.scheme,
            r.storage,
            r.sparsity.map_or_else(|| "-".to_string(), |s| format!("{:.2}%", s * 100.0)),
            units::bytes(r.bytes),
        )?;
    }
    let (params, bytes): (usize, usize) = rows.iter().fold((0, 0), |(p, b), r| (p + r.params, b + r.bytes));
    writeln!(
        out,
        "total: {} params, {} ({:.2} bits per weight)",
        units::count(params as f64),
        units::bytes(bytes),
        bytes as f64 * 8.0 / params.max(1) as f64
    )
}

fn print_summary(out: &mut impl Write, file: &Model, rows: &[TensorSummary]) -> std::io::Result<()> {
    let names: Vec<_> = rows.iter().map(|r| printable(&r.name)).collect();
    let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).max(4);
    let path = file.path().display().to_string();
    let header: usize = file.shards().iter().map(|s| s.header_len()).sum();
    if file.is_dir() {
        writeln!(
            out,
            "{}: {} tensors in {} safetensors file(s), headers {}",
            printable(&path),
            rows.len(),
            file.shards().len(),
            units::bytes(header)
        )?;
    } else {
        writeln!(out, "{}: {} tensors, header {}", printable(&path), rows.len(), units::bytes(header))?;
    }
    writeln!(
        out,
        "{:<w$}  {:<5} {:<18} {:>9} {:>9} {:>11} {:>11} {:>8}",
        "name", "dtype", "shape", "params", "bytes", "min", "max", "sparsity"
    )?;
    for (r, name) in rows.iter().zip(&names) {
        writeln!(
            out,
            "{:<w$}  {:<5} {:<18} {:>9} {:>9} {:>11} {:>11} {:>7.2}%",
            name,
            r.dtype,
            format!("{:?}", r.shape),
            units::count(r.params as f64),
            units::bytes(r.bytes),
            fmt_opt(r.min),
            fmt_opt(r.max),
            r.sparsity * 100.0
        )?;
    }
    let (params, bytes): (usize, usize) = rows.iter().fold((0, 0), |(p, b), r| (p + r.params, b + r.bytes));
    writeln!(
        out,
        "{:<w$}  {:<5} {:<18} {:>9} {:>9}",
        "total",
        "",
        "",
        units::count(params as f64),
        units::bytes(bytes)
    )
}

fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::format("json", e.to_string()))?;
    let mut out = crate::stdout();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(crate::stdout_error)
}

fn parse_target(text: &str) -> Result<Option<Target>> {
    Ok(Some(match text.to_ascii_lowercase().as_str() {
        "int8" | "i8" => Target::Int8,
        "uint8" | "u8" => Target::Uint8,
        "int4" | "i4" => Target::Int4,
        "fp16" | "f16" => Target::Fp16,
        "bf16" => Target::Bf16,
        "none" => return Ok(None),
        name => {
            match GgmlType::from_name(name) {
                Some(ty) if ty.is_weight_type() => Target::Ggml(ty),
                _ => return Err(Error::invalid(
                    "--quant",
                    text,
                    "expected int8, uint8, int4, fp16, bf16, none, or a ggml block type: q8_0, q4_0, q4_1, \
                     q5_0, q5_1, q4_k, q6_k",
                )),
            }
        }
    }))
}

fn parse_granularity(text: &str) -> Result<Grouping> {
    match text.split_once(':') {
        None if text == "tensor" => Ok(Grouping::Tensor),
        None if text == "channel" => Ok(Grouping::Channel),
        Some(("block", n)) => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Grouping::Block(n)),
            _ => Err(Error::invalid("--granularity", text, "block size must be a positive integer")),
        },
        _ => Err(Error::invalid("--granularity", text, "expected tensor, channel or block:N")),
    }
}

fn parse_calibration(text: &str) -> Result<Calibrate> {
    match text.split_once(':') {
        None if text == "minmax" => Ok(Calibrate::MinMax),
        None if text == "mse" => Ok(Calibrate::Mse),
        None if text == "entropy" => Ok(Calibrate::Entropy),
        Some(("percentile", p)) => match p.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Calibrate::Percentile(p)),
            _ => Err(Error::invalid("--calibration", text, "percentile must lie in (0, 100]")),
        },
        _ => Err(Error::invalid("--calibration", text, "expected minmax, percentile:P, mse or entropy")),
    }
}

fn parse_pruning(text: &str) -> Result<Pruning> {
    if let Some((n, m)) = text.split_once(':') {
        return match (n.parse::<usize>(), m.parse::<usize>()) {
            (Ok(n), Ok(m)) if n > 0 && n <= m => Ok(Pruning::NOfM { n, m }),
            (Ok(_), Ok(_)) => {
                Err(Error::invalid("--prune", text, "N:M needs 0 < N <= M (as `flops --sparsity`)"))
            }
            _ => Err(Error::invalid("--prune", text, "N:M needs two integers")),
        };
    }
    match text.parse::<f64>() {
        Ok(a) if (0.0..=1.0).contains(&a) => Ok(Pruning::Amount(a)),
        _ => Err(Error::invalid("--prune", text, "expected a share in [0, 1] or N:M")),
    }
}

/// Runs `greenai compress`.
pub fn compress(args: &CompressArgs) -> Result<()> {
    if args.format == OutputFormat::CompressedTensors {
        return compress_ct(args);
    }
    if args.ct.given() {
        return Err(Error::invalid(
            "--scheme",
            "",
            "--scheme, --group-size and --asymmetric need --format compressed-tensors",
        ));
    }
    if args.format == OutputFormat::Gguf {
        check_gguf_options(args)?;
        return crate::gguf::compress(&args.file, &args.output, &args.quant, args.report.as_deref());
    }
    let options = CompressOptions {
        target: parse_target(&args.quant)?,
        method: match args.method.to_ascii_lowercase().as_str() {
            "rtn" => Method::Rtn,
            "hqq" => Method::Hqq,
            _ => return Err(Error::invalid("--method", &args.method, "expected rtn or hqq")),
        },
        grouping: parse_granularity(&args.granularity)?,
        calibration: parse_calibration(&args.calibration)?,
        pruning: args.prune.as_deref().map(parse_pruning).transpose()?,
        include_1d: args.include_1d,
    };
    let skip = args
        .skip
        .as_deref()
        .map(|p| regex::Regex::new(p).map_err(|e| Error::invalid("--skip", p, e.to_string())))
        .transpose()?;
    // Every path is checked before any work: the output and the report are replaceable, distinct from
    // each other and from the input, and the report's temporary file exists before the output is
    // replaced (so a report in a missing or unwritable folder fails first).
    let input_is_dir = std::fs::metadata(&args.file).is_ok_and(|m| m.is_dir());
    if !input_is_dir {
        Destination::check(&args.output)?;
    }
    let mut paths = vec![("input", args.file.as_path()), ("output", args.output.as_path())];
    if let Some(report) = &args.report {
        paths.push(("--report", report.as_path()));
    }
    model::check_distinct(&paths)?;
    let staged_report =
        args.report.as_deref().map(|p| StagedFile::create(&Destination::check(p)?)).transpose()?;
    let file = Model::open(&args.file)?;
    if let Some(re) = &skip {
        if !file.tensors().any(|t| re.is_match(&t.name)) {
            return Err(Error::invalid("--skip", re.as_str(), "matches no tensor name in the model"));
        }
    }
    let bar = progress_bar(file.data_bytes(), "compressing");
    let keep = |name: &str| skip.as_ref().is_none_or(|re| !re.is_match(name));
    let report =
        model::compress(&file, &args.output, &options, &keep, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    // The report file is written before the table is printed: a closed or full standard output must
    // not lose it.
    if let Some(mut staged) = staged_report {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::format("json", e.to_string()))?;
        staged.write_all(text.as_bytes())?;
        staged.write_all(b"\n")?;
        staged.commit()?;
    }
    let mut out = crate::stdout();
    print_report(&mut out, &report, args.warn_sqnr).and_then(|()| out.flush()).map_err(crate::stdout_error)
}

fn compress_ct(args: &CompressArgs) -> Result<()> {
    let greenai_only = [
        ("--quant", args.quant != "int8"),
        ("--method", args.method != "rtn"),
        ("--granularity", args.granularity != "channel"),
        ("--calibration", args.calibration != "minmax"),
        ("--prune", args.prune.is_some()),
        ("--include-1d", args.include_1d),
        ("--report", args.report.is_some()),
    ];
    if let Some((name, _)) = greenai_only.iter().find(|(_, given)| *given) {
        return Err(Error::invalid(
            name,
            "",
            "does not apply to --format compressed-tensors (use --scheme, --group-size, --asymmetric)",
        ));
    }
    let skip = args
        .skip
        .as_deref()
        .map(|p| regex::Regex::new(p).map_err(|e| Error::invalid("--skip", p, e.to_string())))
        .transpose()?;
    crate::ct::compress(&args.file, &args.output, &args.ct, &|module: &str| {
        skip.as_ref().is_none_or(|re| !re.is_match(module) && !re.is_match(&format!("{module}.weight")))
    })
}

fn db(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

fn print_report(out: &mut impl Write, report: &CompressReport, warn_sqnr: f64) -> std::io::Result<()> {
    let names: Vec<_> = report.tensors.iter().map(|r| printable(&r.name)).collect();
    let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<w$}  {:<18} {:>6} {:>6} {:>7} {:>9} {:>9} {:>8} {:>7} {:>7} {:>7} {:>9}",
        "name",
        "shape",
        "before",
        "after",
        "storage",
        "size",
        "stored",
        "sparsity",
        "SQNR dB",
        "prune",
        "quant",
        "max |err|"
    )?;
    for (r, name) in report.tensors.iter().zip(&names) {
        writeln!(
            out,
            "{:<w$}  {:<18} {:>6} {:>6} {:>7} {:>9} {:>9} {:>7.2}% {:>7} {:>7} {:>7} {:>9}",
            name,
            format!("{:?}", r.shape),
            r.dtype_before,
            r.dtype_after,
            r.storage,
            units::bytes(r.bytes_before),
            units::bytes(r.bytes_after),
            r.sparsity * 100.0,
            db(r.sqnr_db),
            db(r.prune_sqnr_db),
            db(r.quant_sqnr_db),
            r.max_abs_error.map_or_else(|| "-".to_string(), |v| format!("{v:.2e}")),
        )?;
    }
    writeln!(
        out,
        "total: {} -> {} ({:.3}x); reading the weights once from DRAM: {} -> {} (Horowitz 45 nm, a lower bound)",
        units::bytes(report.bytes_before),
        units::bytes(report.bytes_after),
        report.size_ratio,
        units::si(report.read_energy_before_j, "J"),
        units::si(report.read_energy_after_j, "J"),
    )?;
    for (r, name) in report.tensors.iter().zip(&names) {
        if let Some(total) = r.sqnr_db.filter(|&t| t < warn_sqnr) {
            let parts: Vec<String> = [("pruning", r.prune_sqnr_db), ("quantization", r.quant_sqnr_db)]
                .iter()
                .filter_map(|(what, v)| v.map(|v| format!("{what} alone {v:.1} dB")))
                .collect();
            writeln!(
                out,
                "warning: {name}: SQNR {total:.1} dB is below {warn_sqnr} dB ({})",
                parts.join(", ")
            )?;
        }
    }
    Ok(())
}

/// Runs `greenai decompress`.
pub fn decompress(args: &DecompressArgs) -> Result<()> {
    if model::gguf::is_gguf_file(&args.file) {
        return crate::gguf::decompress(&args.file, &args.output);
    }
    if crate::ct::is_compressed_tensors(&args.file) {
        return crate::ct::decompress(&args.file, &args.output);
    }
    if !std::fs::metadata(&args.file).is_ok_and(|m| m.is_dir()) {
        Destination::check(&args.output)?;
    }
    model::check_distinct(&[("input", args.file.as_path()), ("output", args.output.as_path())])?;
    let file = Model::open(&args.file)?;
    let bar = progress_bar(file.data_bytes(), "decompressing");
    model::decompress(&file, &args.output, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    let mut out = crate::stdout();
    writeln!(out, "wrote {}", printable(&args.output.display().to_string()))
        .and_then(|()| out.flush())
        .map_err(crate::stdout_error)
}

/// Refuses the options GGUF output does not take (llama.cpp's types choose their own scales).
fn check_gguf_options(args: &CompressArgs) -> Result<()> {
    let unused = [
        ("--prune", args.prune.is_some()),
        ("--skip", args.skip.is_some()),
        ("--include-1d", args.include_1d),
        ("--method", args.method != "rtn"),
        ("--granularity", args.granularity != "channel"),
        ("--calibration", args.calibration != "minmax"),
    ];
    match unused.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(Error::invalid("--format", "gguf", format!("does not take {name}"))),
        None => Ok(()),
    }
}
