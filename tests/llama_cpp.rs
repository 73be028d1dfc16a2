//! llama.cpp loads greenai's GGUF: all-MiniLM-L6-v2 written by `greenai compress --format gguf` at
//! several types is loaded and run by llama.cpp (its PyPI binding llama-cpp-python, in
//! tests/support/llama_cpp_embed.py), whose mean-pooled embeddings are compared with the float64
//! reference of examples/minilm/reference.py (numpy, tokenizers, safetensors; itself checked against
//! sentence-transformers when that is installed). llama.cpp's token ids, from the vocabulary in our
//! file, must equal the tokenizers package's from tokenizer.json.
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

/// The types checked, with the least cosine to the float64 reference every sentence must reach
/// (what each reaches here is in the README).
const TYPES: [(&str, f64); 8] = [
    ("f16", 0.999),
    ("bf16", 0.99),
    ("q8_0", 0.99),
    ("q6_k", 0.99),
    ("q5_0", 0.99),
    ("q4_1", 0.98),
    ("q4_0", 0.97),
    ("q4_k", 0.98),
];

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

/// Minimum and mean cosine of each row of `a` to the same row of `b`.
fn cosines(a: &Embedded, b: &Embedded) -> (f64, f64) {
    assert_eq!(a.rows.len(), b.rows.len());
    let cos: Vec<f64> = a.rows.iter().zip(&b.rows).map(|(x, y)| eval::cosine(x, y)).collect();
    (cos.iter().copied().fold(f64::INFINITY, f64::min), cos.iter().sum::<f64>() / cos.len() as f64)
}

/// Spearman's rho of the judged pairs' cosines (the first sentences, in pairs) to their scores.
fn spearman(e: &Embedded) -> f64 {
    let pairs = eval::pairs();
    let sims: Vec<f64> = (0..pairs.len()).map(|i| eval::cosine(&e.rows[2 * i], &e.rows[2 * i + 1])).collect();
    eval::spearman(&sims, &pairs.iter().map(|p| p.2).collect::<Vec<_>>())
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
        let (min, mean) = cosines(&read(&st), &reference);
        eprintln!("sentence-transformers to the float64 reference: cosine min {min:.9} mean {mean:.9}");
        assert!(min >= 0.999999, "the reference disagrees with sentence-transformers: cosine {min}");
    }

    let rho_ref = spearman(&reference);
    let mut failures = Vec::new();
    for (quant, least) in TYPES {
        let gguf = t.join(format!("minilm-{quant}.gguf"));
        let out = Command::new(env!("CARGO_BIN_EXE_greenai"))
            .arg("compress")
            .arg(&dir)
            .args(["--format", "gguf", "--quant", quant, "-o"])
            .arg(&gguf)
            .output()
            .unwrap();
        ok("greenai compress", out);
        let emb = t.join(format!("llama-{quant}.safetensors"));
        let out = python(&[&script(), &"embed", &gguf, &file, &MAX_LEN.to_string(), &emb]);
        let warnings = String::from_utf8_lossy(&out.stderr).into_owned();
        ok("llama.cpp", out);
        let got = read(&emb);
        let same_ids = got.ids.iter().zip(&reference.ids).filter(|(a, b)| a == b).count();
        let (min, mean) = cosines(&got, &reference);
        let size = std::fs::metadata(&gguf).unwrap().len() as f64 / 1e6;
        eprintln!(
            "{quant:>5} ({size:5.1} MB): cosine to f32 min {min:.5} mean {mean:.5}; Spearman {:.4} (f32 {rho_ref:.4}); \
             token ids equal on {same_ids}/{} sentences",
            spearman(&got),
            sentences.len()
        );
        if !warnings.trim().is_empty() {
            eprintln!("llama.cpp warned: {}", warnings.trim());
        }
        for (i, (a, b)) in got.ids.iter().zip(&reference.ids).enumerate() {
            if a != b {
                failures.push(format!(
                    "{quant}: tokens of {:?}: llama.cpp {a:?}, tokenizers {b:?}",
                    sentences[i]
                ));
            }
        }
        if min < least {
            failures.push(format!("{quant}: cosine min {min} < {least}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
