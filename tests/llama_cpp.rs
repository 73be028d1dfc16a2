//! llama.cpp loads greenai's GGUF: all-MiniLM-L6-v2 written by `greenai compress --format gguf` at
//! several types is loaded and run by llama.cpp (its PyPI binding llama-cpp-python, in
//! tests/support/llama_cpp_embed.py), whose mean-pooled embeddings are compared with the float64
//! reference of examples/minilm/reference.py (numpy, tokenizers, safetensors; itself checked against
//! sentence-transformers when that is installed), and with llama.cpp's own quantization of our f16
//! file. llama.cpp's token ids, from the vocabulary in our file, must equal the tokenizers package's
//! from tokenizer.json, also for a copy of the tokenizer that keeps case.
//!
//! Optional, as llama.cpp is not built by CI (it takes half an hour): without `import llama_cpp` the
//! test says so and passes, unless `GREENAI_LLAMA_CPP_REQUIRED=1`. To build it:
//! `CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF" pip install --no-binary
//! llama-cpp-python llama-cpp-python`.
#![cfg(feature = "cli")]

#[path = "../examples/minilm/eval.rs"]
mod eval;
#[path = "support/minilm.rs"]
mod minilm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The types checked: the least cosine to the float64 reference every sentence must reach (what
/// each reaches here is in the README), and llama.cpp's `llama_ftype` for its own quantizer.
const TYPES: [(&str, f64, Option<u32>); 8] = [
    ("f16", 0.9999, None),
    ("bf16", 0.9995, None),
    ("q8_0", 0.998, Some(7)),
    ("q6_k", 0.997, Some(18)),
    ("q5_0", 0.95, Some(8)),
    ("q4_k", 0.95, Some(15)),
    ("q4_1", 0.92, Some(3)),
    ("q4_0", 0.90, Some(2)),
];

/// How far below llama.cpp's own quantization (of our f16 file) ours may fall: cosine minimum and mean.
const PEER_MARGIN: (f64, f64) = (0.01, 0.002);

/// Tokens per sentence, sentence-transformers' max_seq_length for all-MiniLM-L6-v2.
const MAX_LEN: usize = 256;

/// The judged pairs' sentences and some that test the tokenizer: accents, CJK, digits,
/// punctuation, casing, and one longer than [`MAX_LEN`] tokens.
fn sentences() -> Vec<String> {
    let mut s: Vec<String> = eval::pairs().into_iter().flat_map(|(a, b, _)| [a, b]).collect();
    s.extend(
        [
            "Café crème, naïve façade: Ünïcödé ß and 漢字 too.",
            "The price rose 3.5% to $1,234.56 on 2024-03-07 at 10:45am (UTC+01:00).",
            "Don't split \"quotes\" -- or hy-phens/slashes... e.g. state-of-the-art!",
            "HTTPS://Example.COM/path?q=greenai&lang=en #hashtag @user",
            "東京は日本の首都です。Москва — столица России. Αθήνα.",
            "unaffordable antidisestablishmentarianism supercalifragilistic",
            "emoji 🙂 and tabs\tand   many    spaces",
        ]
        .map(String::from),
    );
    s.push("energy ".repeat(300));
    s
}

fn required() -> bool {
    std::env::var_os("GREENAI_LLAMA_CPP_REQUIRED").is_some()
}

/// Whether python3 can import llama.cpp's binding; a printed skip otherwise (a failure when required).
fn llama_cpp_ready() -> bool {
    let ok =
        Command::new("python3").args(["-c", "import llama_cpp"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!required(), "GREENAI_LLAMA_CPP_REQUIRED is set but python3 cannot import llama_cpp");
        eprintln!(
            "skipped: llama.cpp's Python binding is not installed (CMAKE_ARGS=\"-DGGML_NATIVE=ON \
             -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF\" pip install --no-binary llama-cpp-python llama-cpp-python)"
        );
    }
    ok
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/llama_cpp_embed.py")
}

fn python(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new("python3");
    args.iter().for_each(|a| {
        cmd.arg(a);
    });
    cmd.output().expect("python3 runs")
}

fn ok(what: &str, out: Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Embeddings (rows of `h`, as f32) and the token ids of every sentence from a safetensors file.
struct Embedded {
    rows: Vec<Vec<f32>>,
    ids: Vec<Vec<i64>>,
}

fn read(path: &Path) -> Embedded {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let data = |name: &str| st.tensor(name).map(|t| (t.shape().to_vec(), t.data().to_vec()));
    let words = |b: &[u8]| b.chunks_exact(8).map(|c| c.try_into().unwrap()).collect::<Vec<[u8; 8]>>();
    let (shape, emb) = data("embeddings").expect("embeddings");
    let values: Vec<f32> = words(&emb).into_iter().map(|w| f64::from_le_bytes(w) as f32).collect();
    let rows = values.chunks_exact(shape[1]).map(<[f32]>::to_vec).collect();
    let mut ids = Vec::new();
    if let (Ok((_, all)), Ok((_, lengths))) = (data("ids"), data("lengths")) {
        let all: Vec<i64> = words(&all).into_iter().map(i64::from_le_bytes).collect();
        let mut start = 0;
        for n in words(&lengths).into_iter().map(|w| i64::from_le_bytes(w) as usize) {
            ids.push(all[start..start + n].to_vec());
            start += n;
        }
    }
    Embedded { rows, ids }
}

/// Minimum and mean cosine of each row of `a` to the same row of `b`, and the row of the minimum.
fn cosines(a: &Embedded, b: &Embedded) -> (f64, f64, usize) {
    assert_eq!(a.rows.len(), b.rows.len());
    let cos: Vec<f64> = a.rows.iter().zip(&b.rows).map(|(x, y)| eval::cosine(x, y)).collect();
    let worst = (0..cos.len()).min_by(|&i, &j| cos[i].total_cmp(&cos[j])).unwrap_or(0);
    (cos[worst], cos.iter().sum::<f64>() / cos.len() as f64, worst)
}

/// Spearman's rho of the judged pairs' cosines (the first sentences, in pairs) to their scores.
fn spearman(e: &Embedded) -> f64 {
    let pairs = eval::pairs();
    let sims: Vec<f64> = (0..pairs.len()).map(|i| eval::cosine(&e.rows[2 * i], &e.rows[2 * i + 1])).collect();
    eval::spearman(&sims, &pairs.iter().map(|p| p.2).collect::<Vec<_>>())
}

/// `dir` written as GGUF with `quant` by `greenai compress`.
fn compress(dir: &Path, quant: &str, out: &Path) {
    let run = Command::new(env!("CARGO_BIN_EXE_greenai"))
        .arg("compress")
        .arg(dir)
        .args(["--format", "gguf", "--quant", quant, "-o"])
        .arg(out)
        .output()
        .unwrap();
    ok("greenai compress", run);
}

/// llama.cpp's token ids and embeddings of `sentences` with `gguf`, and what it warned.
fn llama_cpp_embed(gguf: &Path, sentences: &Path) -> (Embedded, String) {
    let out = gguf.with_extension("safetensors");
    let run = python(&[&script(), &"embed", &gguf, &sentences, &MAX_LEN.to_string(), &out]);
    let warnings = String::from_utf8_lossy(&run.stderr).trim().to_string();
    ok("llama.cpp", run);
    (read(&out), warnings)
}

/// The tokens of `sentences` by the tokenizers package from `dir`'s tokenizer.json, truncated as
/// sentence-transformers truncates.
fn tokenize(dir: &Path, sentences: &[String]) -> Vec<Vec<i64>> {
    let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tok.with_truncation(Some(tokenizers::TruncationParams { max_length: MAX_LEN, ..Default::default() }))
        .unwrap();
    tok.with_padding(None);
    let ids =
        |s: &String| tok.encode(s.as_str(), true).unwrap().get_ids().iter().map(|&i| i64::from(i)).collect();
    sentences.iter().map(ids).collect()
}

/// A copy of the model directory whose tokenizer.json keeps case (BertNormalizer `lowercase: false`).
fn cased_copy(dir: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() {
            std::fs::create_dir(to.join(name)).unwrap();
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap().path();
                std::fs::copy(&inner, to.join(name).join(inner.file_name().unwrap())).unwrap();
            }
        } else if std::fs::hard_link(&path, to.join(name)).is_err() {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
    let tj = to.join("tokenizer.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&tj).unwrap()).unwrap();
    json["normalizer"]["lowercase"] = serde_json::Value::Bool(false);
    std::fs::remove_file(&tj).unwrap(); // a hard link: the original stays as it is
    std::fs::write(&tj, serde_json::to_vec(&json).unwrap()).unwrap();
}

/// How many sentences llama.cpp tokenized as the tokenizers package did; each other one is a failure.
fn check_ids(
    what: &str,
    got: &[Vec<i64>],
    want: &[Vec<i64>],
    sentences: &[String],
    failures: &mut Vec<String>,
) -> usize {
    let mut same = 0;
    for ((a, b), s) in got.iter().zip(want).zip(sentences) {
        if a == b {
            same += 1;
        } else {
            failures.push(format!("{what}: tokens of {s:?}: llama.cpp {a:?}, tokenizers {b:?}"));
        }
    }
    same
}

#[test]
fn llama_cpp_embeds_with_our_minilm_gguf_like_the_f32_model() {
    let Some(dir) = minilm::minilm_dir() else { return };
    if !llama_cpp_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let sentences = sentences();
    let file = t.join("sentences.txt");
    std::fs::write(&file, sentences.join("\n") + "\n").unwrap();
    let reference_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minilm/reference.py");
    ok("reference.py", python(&[&reference_py, &dir, &file, &t]));
    let reference = read(&t.join("reference.safetensors"));
    assert_eq!(reference.rows.len(), sentences.len());
    assert_eq!(reference.ids.iter().map(Vec::len).max(), Some(MAX_LEN), "the long sentence is truncated");

    let st = t.join("st.safetensors");
    let out = python(&[&script(), &"st", &dir, &file, &st]);
    if out.status.code() == Some(3) {
        eprintln!("not checked against sentence-transformers: {}", String::from_utf8_lossy(&out.stderr));
    } else {
        ok("sentence-transformers", out);
        let (min, mean, _) = cosines(&read(&st), &reference);
        eprintln!("sentence-transformers to the float64 reference: cosine min {min:.9} mean {mean:.9}");
        assert!(min >= 0.999999, "the reference disagrees with sentence-transformers: cosine {min}");
    }

    let rho_ref = spearman(&reference);
    let mut failures = Vec::new();
    let mut last_warnings = String::new();
    for (quant, least, ftype) in TYPES {
        let gguf = t.join(format!("minilm-{quant}.gguf"));
        compress(&dir, quant, &gguf);
        let (got, warnings) = llama_cpp_embed(&gguf, &file);
        let same_ids = check_ids(quant, &got.ids, &reference.ids, &sentences, &mut failures);
        let (min, mean, worst) = cosines(&got, &reference);
        let size = std::fs::metadata(&gguf).unwrap().len() as f64 / 1e6;
        let mut line = format!(
            "{quant:>5} ({size:4.1} MB): cosine to f32 min {min:.5} mean {mean:.5}; Spearman {:.4} (f32 \
             {rho_ref:.4}); token ids equal on {same_ids}/{}",
            spearman(&got),
            sentences.len()
        );
        let w: String = sentences[worst].chars().take(30).collect();
        line += &format!(" (least: {w:?})");
        if min < least {
            failures.push(format!("{quant}: cosine min {min} < {least}"));
        }
        if let Some(ftype) = ftype {
            // llama.cpp's own quantizer from our f16 file: the loss of the format, not of our writer.
            let theirs = t.join(format!("llama-{quant}.gguf"));
            ok(
                "llama_model_quantize",
                python(&[&script(), &"quantize", &t.join("minilm-f16.gguf"), &theirs, &ftype.to_string()]),
            );
            let (peer, _) = llama_cpp_embed(&theirs, &file);
            let (pmin, pmean, _) = cosines(&peer, &reference);
            line += &format!("; llama.cpp's own {quant}: min {pmin:.5} mean {pmean:.5}");
            if min < pmin - PEER_MARGIN.0 || mean < pmean - PEER_MARGIN.1 {
                failures.push(format!(
                    "{quant}: ours min {min} mean {mean}, llama.cpp's own min {pmin} mean {pmean}"
                ));
            }
        }
        eprintln!("{line}");
        if !warnings.is_empty() && warnings != last_warnings {
            eprintln!("  llama.cpp warned: {warnings}");
        }
        last_warnings = warnings;
    }

    // A tokenizer that keeps case: llama.cpp lowercases unless the file says not to.
    let cased = t.join("cased");
    cased_copy(&dir, &cased);
    let gguf = t.join("cased-q8_0.gguf");
    compress(&cased, "q8_0", &gguf);
    let want = tokenize(&cased, &sentences);
    assert!(
        want.iter().zip(&reference.ids).filter(|(a, b)| a != b).count() > sentences.len() / 2,
        "keeping case changes most sentences' tokens"
    );
    let same = check_ids("cased", &llama_cpp_embed(&gguf, &file).0.ids, &want, &sentences, &mut failures);
    eprintln!("cased tokenizer: token ids equal on {same}/{}", sentences.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
