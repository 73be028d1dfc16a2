//! The bundled handwritten-digits data (UCI, 1797 images of 8x8 pixels) and a fixed train/test split.

use flate2::read::GzDecoder;
use std::io::Read;

/// Pixels per image.
pub const FEATURES: usize = 64;
/// Digit classes.
pub const CLASSES: usize = 10;

/// Images scaled to [0, 1] (row-major, `FEATURES` per row) and their labels.
pub struct Split {
    pub x: Vec<f32>,
    pub y: Vec<i32>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }
}

/// A small deterministic generator (SplitMix64): seeds the split, initialisation and batch order.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Reads `examples/data/digits.csv.gz` and splits it 80/20 with a fixed seed (stratification is not needed
/// at this size: the classes are balanced within a few percent).
pub fn load_digits() -> Result<(Split, Split), String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv.gz");
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut text = String::new();
    GzDecoder::new(file).read_to_string(&mut text).map_err(|e| format!("{path}: {e}"))?;
    let mut rows = Vec::new();
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>().map_err(|e| format!("{path}:{}: {e}", line_no + 1)))
            .collect::<Result<_, _>>()?;
        if values.len() != FEATURES + 1 {
            return Err(format!(
                "{path}:{}: expected {} values, got {}",
                line_no + 1,
                FEATURES + 1,
                values.len()
            ));
        }
        rows.push(values);
    }
    Rng::new(20_26).shuffle(&mut rows);
    let test_len = rows.len() / 5;
    let to_split = |rows: &[Vec<f32>]| Split {
        x: rows.iter().flat_map(|r| r[..FEATURES].iter().map(|p| p / 16.0)).collect(),
        y: rows.iter().map(|r| r[FEATURES] as i32).collect(),
    };
    Ok((to_split(&rows[test_len..]), to_split(&rows[..test_len])))
}
