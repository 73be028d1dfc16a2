//! The main job of greenai, end to end on bundled data.
//!
//! For now it exercises what the library has: a typed tensor, its views and float casts, and what
//! rounding to f16/bf16 costs in accuracy and saves in bytes. It grows into the full pipeline
//! (teacher, distilled student, pruning, int8/fp16 inference, energy table) as the levers land.

use greenai::{kernels::Isa, Tensor};
use half::{bf16, f16};

fn main() -> greenai::Result<()> {
    println!("greenai {} (kernels: {})", env!("CARGO_PKG_VERSION"), Isa::active());
    let weights = Tensor::from_fn([64, 64], |i| ((i[0] * 64 + i[1]) as f32 * 0.37).sin() * 0.1)?;
    let reference = weights.as_slice();
    let energy: f64 = reference.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    println!("{:<6} {:>8} {:>10}", "dtype", "bytes", "SQNR dB");
    println!("{:<6} {:>8} {:>10}", "f32", weights.as_bytes().len(), "exact");
    let report = |name: &str, bytes: usize, back: Tensor<f32>| {
        let noise: f64 =
            reference.iter().zip(back.as_slice()).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
        println!("{:<6} {:>8} {:>10.1}", name, bytes, 10.0 * (energy / noise).log10());
    };
    let h = weights.cast::<f16>()?;
    report("f16", h.as_bytes().len(), h.cast::<f32>()?);
    let b = weights.cast::<bf16>()?;
    report("bf16", b.as_bytes().len(), b.cast::<f32>()?);
    Ok(())
}
