//! The main job of greenai: every lever of green AI on real data, from teacher to int8 student.
//!
//! On the UCI handwritten digits (bundled, 1797 8x8 images) it trains a teacher MLP, a small student
//! alone, and the same student distilled from the teacher with greenai's KD loss (3 seeds each); prunes
//! the distilled student (magnitude 50%, run on the CSR kernel; 2:4, on the 2:4 kernel) and
//! fine-tunes it under the mask; quantizes the 50% student, the one within a point of the distilled
//! student, to int8 (per-channel weights, dynamically quantized activations) and to fp16 and runs
//! them through greenai's int8 and fp16 kernels; and prints one table of accuracy, size, MACs, energy,
//! carbon and measured time.
//!
//! Run: `cargo run --release --example green_pipeline [-- --json PATH]`.

mod data;
mod mlp;
mod stages;

use data::{load_digits, CLASSES, FEATURES};
use greenai::distill::{kd_loss, KdParams};
use mlp::{train, Mlp};
use stages::{Report, Stage};

const TEACHER: &[usize] = &[FEATURES, 256, 256, CLASSES];
const STUDENT: &[usize] = &[FEATURES, 12, CLASSES];
const SEEDS: [u64; 3] = [1, 2, 3];
const EPOCHS: usize = 40;
const FINE_TUNE_EPOCHS: usize = 60;
const KD: (f32, f32) = (4.0, 0.9);
/// The final compressed students: the 50%-pruned one (closer to the distilled student than 2:4 at
/// this width), quantized.
const FINAL_INT8: &str = "50% student, int8 (greenai int8 GEMM)";
const FINAL_FP16: &str = "50% student, fp16 (greenai f16 GEMM)";

/// Cross-entropy with the labels: greenai's KD loss with `alpha = 0` (the teacher term vanishes).
fn cross_entropy(labels: &[i32]) -> impl FnMut(&[usize], &[f32], &mut [f32]) -> f32 + '_ {
    move |rows, logits, grad| {
        let batch_labels: Vec<i32> = rows.iter().map(|&r| labels[r]).collect();
        kd_loss(
            logits,
            logits,
            Some(&batch_labels),
            rows.len(),
            CLASSES,
            &KdParams::new(1.0, 0.0),
            Some(grad),
        )
        .expect("logits are finite and labels in range")
    }
}

/// Hinton distillation from the teacher's logits on the training set.
fn distillation<'a>(
    labels: &'a [i32],
    teacher: &'a [f32],
) -> impl FnMut(&[usize], &[f32], &mut [f32]) -> f32 + 'a {
    move |rows, logits, grad| {
        let batch_labels: Vec<i32> = rows.iter().map(|&r| labels[r]).collect();
        let targets: Vec<f32> =
            rows.iter().flat_map(|&r| &teacher[r * CLASSES..(r + 1) * CLASSES]).copied().collect();
        let params = KdParams::new(KD.0, KD.1);
        kd_loss(logits, &targets, Some(&batch_labels), rows.len(), CLASSES, &params, Some(grad))
            .expect("logits are finite and labels in range")
    }
}

fn json_path() -> Result<Option<String>, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(None),
        (Some("--json"), Some(path)) => Ok(Some(path)),
        _ => Err("usage: green_pipeline [--json PATH]".to_string()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let json = json_path()?;
    let started = std::time::Instant::now();
    let (train_set, test_set) = load_digits()?;
    let report = run(&train_set, &test_set)?;
    report.print();
    if let Some(path) = json {
        std::fs::write(&path, report.to_json()).map_err(|e| format!("{path}: {e}"))?;
        println!("wrote {path}");
    }
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Every stage, in order, evaluated on the test split.
fn run<'a>(train_set: &data::Split, test_set: &'a data::Split) -> greenai::Result<Report<'a>> {
    println!("digits: {} training and {} test images, {} classes", train_set.len(), test_set.len(), CLASSES);
    let mut report = Report::new(test_set);

    let mut teacher = Mlp::new(TEACHER, 7);
    train(&mut teacher, train_set, EPOCHS, 2e-3, 7, &mut cross_entropy(&train_set.y));
    report.add_f32("teacher (f32)", &teacher, None)?;

    let mut alone = Vec::new();
    for seed in SEEDS {
        let mut student = Mlp::new(STUDENT, seed);
        train(&mut student, train_set, EPOCHS, 3e-3, seed, &mut cross_entropy(&train_set.y));
        alone.push(student);
    }
    report.add_mean("student alone (f32, 3 seeds)", &alone)?;

    let teacher_logits = teacher.logits(&train_set.x, train_set.len());
    let mut distilled = Vec::new();
    for seed in SEEDS {
        let mut student = Mlp::new(STUDENT, seed);
        train(&mut student, train_set, EPOCHS, 3e-3, seed, &mut distillation(&train_set.y, &teacher_logits));
        distilled.push(student);
    }
    report.add_mean("student distilled (f32, 3 seeds)", &distilled)?;

    let mut sparse_student = distilled[0].clone();
    stages::prune_magnitude(&mut sparse_student, 0.5)?;
    train(
        &mut sparse_student,
        train_set,
        FINE_TUNE_EPOCHS,
        1e-3,
        11,
        &mut distillation(&train_set.y, &teacher_logits),
    );
    report.add_f32("pruned 50% + fine-tuned (f32, CSR)", &sparse_student, Some(Stage::Magnitude(0.5)))?;

    let mut student = distilled[0].clone();
    stages::prune_two_of_four(&mut student)?;
    train(
        &mut student,
        train_set,
        FINE_TUNE_EPOCHS,
        1e-3,
        12,
        &mut distillation(&train_set.y, &teacher_logits),
    );
    report.add_f32("pruned 2:4 + fine-tuned (f32, 2:4)", &student, Some(Stage::TwoOfFour))?;

    report.add_int8(FINAL_INT8, &sparse_student)?;
    report.add_fp16(FINAL_FP16, &sparse_student)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pipeline's promises, checked on the real data with the fixed seeds.
    #[test]
    fn pipeline_meets_its_targets() {
        let (train_set, test_set) = load_digits().unwrap();
        let report = run(&train_set, &test_set).unwrap();
        let acc = |stage: &str| report.accuracy(stage).unwrap_or_else(|| panic!("no stage {stage}"));
        assert!(acc("teacher (f32)") >= 0.96, "teacher {}", acc("teacher (f32)"));
        assert!(acc("student distilled (f32, 3 seeds)") >= acc("student alone (f32, 3 seeds)"));
        let distilled = acc("student distilled (f32, 3 seeds)");
        let f32_student = acc("pruned 50% + fine-tuned (f32, CSR)");
        assert!(
            acc(FINAL_INT8) >= distilled - 0.01,
            "final int8 {} vs distilled {distilled}",
            acc(FINAL_INT8)
        );
        assert!((acc(FINAL_INT8) - f32_student).abs() <= 0.01);
        assert!((acc(FINAL_FP16) - f32_student).abs() <= 0.01);
        let json = report.to_json();
        assert_eq!(json.matches("\"stage\"").count(), 7, "{json}");
    }
}
