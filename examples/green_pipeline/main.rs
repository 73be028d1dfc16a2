//! The main job of greenai: every lever of green AI on real data, from teacher to int8 student.
//!
//! Run: `cargo run --release --example green_pipeline [-- --json PATH]`.

mod data;
mod mlp;

use data::{load_digits, CLASSES, FEATURES};
use mlp::{accuracy, train, Mlp};

const TEACHER: &[usize] = &[FEATURES, 256, 256, CLASSES];
const STUDENT: &[usize] = &[FEATURES, 12, CLASSES];

fn cross_entropy(labels: &[i32]) -> impl FnMut(&[usize], &[f32], &mut [f32]) -> f32 + '_ {
    move |rows, logits, grad| {
        let mut loss = 0.0;
        for ((&r, row), g) in
            rows.iter().zip(logits.chunks_exact(CLASSES)).zip(grad.chunks_exact_mut(CLASSES))
        {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            let label = labels[r] as usize;
            loss += sum.ln() + max - row[label];
            for (j, (g, v)) in g.iter_mut().zip(row).enumerate() {
                *g = ((v - max).exp() / sum - f32::from(j == label)) / rows.len() as f32;
            }
        }
        loss / rows.len() as f32
    }
}

fn kd<'a>(
    labels: &'a [i32],
    teacher: &'a [f32],
    t: f32,
    alpha: f32,
) -> impl FnMut(&[usize], &[f32], &mut [f32]) -> f32 + 'a {
    move |rows, logits, grad| {
        let b = rows.len() as f32;
        let mut loss = 0.0;
        let sm = |row: &[f32], t: f32| -> Vec<f32> {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|v| ((v - max) / t).exp()).collect();
            let s: f32 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        for ((&r, row), g) in
            rows.iter().zip(logits.chunks_exact(CLASSES)).zip(grad.chunks_exact_mut(CLASSES))
        {
            let trow = &teacher[r * CLASSES..(r + 1) * CLASSES];
            let (ps, pt, p1) = (sm(row, t), sm(trow, t), sm(row, 1.0));
            let label = labels[r] as usize;
            for j in 0..CLASSES {
                if pt[j] > 0.0 {
                    loss += alpha * t * t * pt[j] * (pt[j].ln() - ps[j].max(1e-30).ln());
                }
                g[j] = (alpha * t * (ps[j] - pt[j]) + (1.0 - alpha) * (p1[j] - f32::from(j == label))) / b;
            }
            loss -= (1.0 - alpha) * p1[label].max(1e-30).ln();
        }
        loss / b
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (train_set, test_set) = load_digits()?;
    println!("digits: {} train, {} test", train_set.len(), test_set.len());
    let start = std::time::Instant::now();
    let mut teacher = Mlp::new(TEACHER, 1);
    train(&mut teacher, &train_set, 40, 2e-3, 1, &mut cross_entropy(&train_set.y));
    let acc = accuracy(&teacher.logits(&test_set.x, test_set.len()), &test_set.y);
    println!(
        "teacher {:.2}% params {} MACs {} ({:?})",
        acc * 100.0,
        teacher.params(),
        teacher.macs(),
        start.elapsed()
    );
    for seed in 1..=3 {
        let mut student = Mlp::new(STUDENT, seed);
        train(&mut student, &train_set, 40, 3e-3, seed, &mut cross_entropy(&train_set.y));
        let acc = accuracy(&student.logits(&test_set.x, test_set.len()), &test_set.y);
        println!("student seed {seed} {:.3}% params {}", acc * 100.0, student.params());
    }
    let tl = teacher.logits(&train_set.x, train_set.len());
    for (t, alpha) in [(4.0, 0.9), (4.0, 0.5), (2.0, 0.5), (8.0, 0.9)] {
        let mut sum = 0.0;
        for seed in 1..=3 {
            let mut student = Mlp::new(STUDENT, seed);
            train(&mut student, &train_set, 40, 3e-3, seed, &mut kd(&train_set.y, &tl, t, alpha));
            sum += accuracy(&student.logits(&test_set.x, test_set.len()), &test_set.y);
        }
        println!("kd T={t} alpha={alpha}: {:.3}%", sum / 3.0 * 100.0);
    }
    println!("{:?}", start.elapsed());
    Ok(())
}
