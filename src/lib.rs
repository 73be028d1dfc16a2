//! # greenai
//!
//! Building blocks that make neural networks smaller, faster and cheaper in energy, and that say
//! what they cost to run: a typed [`Tensor`], quantization, pruning, low-rank factorization,
//! distillation losses, a FLOPs/energy/carbon calculator, SIMD int8/fp16 kernels, safetensors
//! model files, and a C ABI (`include/greenai.h`) over all of it.
//!
//! The types of the dependencies the API uses are re-exported ([`half`] for `f16`/`bf16`,
//! [`ndarray`] for views), so `greenai` is the only dependency an application needs.
//!
//! ## From task to API
//!
//! | task | Rust | C |
//! | --- | --- | --- |
//! | quantize a model file | [`model::compress`], or the `greenai compress` command | the command |
//! | quantize a tensor | [`quant::QTensor::quantize_min_max`] with a [`quant::Preset`] | `greenai_quantize_min_max` |
//! | run an int8 layer | [`quant::QuantLinear`] (`QTensor::to_linear`, `QuantLinear::from_float`) | `greenai_qlinear_from_float`, `greenai_qlinear_forward` |
//! | prune a layer | [`prune::magnitude`], [`prune::n_m`], then [`prune::Mask::apply`] | `greenai_prune_magnitude`, `greenai_prune_n_m` |
//! | distill | [`distill::kd_loss`] (loss and gradient) | `greenai_kd_loss` |
//! | count FLOPs | [`flops::Model`] or [`flops::zoo::by_name`], then `report` | `greenai_flops_*` |
//! | estimate and measure energy | [`energy::EnergyTable::energy`], [`energy::InferenceFootprint`], [`energy::EnergyMeter`] | `greenai_energy_joules`, `greenai_meter_*` |
//!
//! Quantize a weight matrix per output channel as PyTorch does, and run it as an int8 layer:
//! ```
//! use greenai::quant::{ActivationQuant, Preset, QTensor, QuantSpec};
//! let w = greenai::Tensor::from_vec([2, 3], vec![0.5f32, -1.0, 0.25, 2.0, 0.0, -0.5])?;
//! let q = QTensor::quantize_min_max(&w, QuantSpec::preset(Preset::PyTorchWeightI8PerChannel))?;
//! let layer = q.to_linear(None)?;
//! let mut y = [0f32; 2];
//! layer.forward(&[1.0, 1.0, 1.0], 1, ActivationQuant::U8Affine, &mut y)?;
//! assert!((y[0] - -0.25).abs() < 0.02 && (y[1] - 1.5).abs() < 0.02);
//! # Ok::<(), greenai::Error>(())
//! ```
//!
//! Prune half of a layer's weights by magnitude, or to the 2:4 pattern sparse tensor cores run:
//! ```
//! use greenai::prune::{self, CountRule};
//! let w = [0.1f32, -2.0, 0.3, 4.0, -0.05, 1.0, 0.2, -0.7];
//! let mask = prune::magnitude(&w, 0.5, CountRule::TORCH, None)?;
//! assert_eq!(mask.apply(&w)?, [0.0, -2.0, 0.0, 4.0, 0.0, 1.0, 0.0, -0.7]);
//! let two_of_four = prune::n_m(&w, &[2, 4], 2, 4, false)?;
//! assert_eq!(two_of_four.apply(&w)?, [0.0, -2.0, 0.0, 4.0, 0.0, 1.0, 0.0, -0.7]);
//! # Ok::<(), greenai::Error>(())
//! ```
//!
//! Distill: the Hinton loss of a student against a teacher, and its gradient:
//! ```
//! use greenai::distill::{kd_loss, KdParams};
//! let (student, teacher) = ([1.0f32, 0.0, -1.0], [2.0f32, 0.5, -1.0]);
//! let mut grad = [0f32; 3];
//! let loss = kd_loss(&student, &teacher, Some(&[0]), 1, 3, &KdParams::new(2.0, 0.5), Some(&mut grad))?;
//! assert!(loss > 0.0 && grad[0] < 0.0);
//! # Ok::<(), greenai::Error>(())
//! ```
//!
//! Count the FLOPs of BERT-base and what one inference costs in energy and carbon:
//! ```
//! use greenai::energy::{Carbon, EnergyTable, InferenceFootprint};
//! use greenai::flops::{zoo, Compression, Precision};
//! let report = zoo::by_name("bert_base", 1, Some(128))?.report(&Compression::dense(Precision::Int8))?;
//! let energy = EnergyTable::default().energy(&report.total, Precision::Int8, Precision::Int8);
//! println!("{}\n{energy}\n{}", report.total, InferenceFootprint::new(&energy, 1, &Carbon::default())?);
//! assert!(report.total.macs > 10_000_000_000);
//! # Ok::<(), greenai::Error>(())
//! ```
//!
//! Quantize a model file or folder to int8 (what `greenai compress model.safetensors -o out.safetensors`
//! does):
//! ```no_run
//! use greenai::model::{compress, CompressOptions, Model};
//! let input = Model::open("model.safetensors")?;
//! let report = compress(&input, "out.safetensors".as_ref(), &CompressOptions::default(), &|_| true, &mut |_, _| {})?;
//! println!("{:.2}x smaller", report.size_ratio);
//! # Ok::<(), greenai::Error>(())
//! ```
//!
//! In C, the same int8 layer: `greenai_quant_spec_preset(GREENAI_PRESET_PYTORCH_WEIGHT_I8_PER_CHANNEL,
//! &spec)`, `greenai_quantize_min_max(&spec, w, shape, 2, scales, zero_points, out, wq, sizeof wq)`,
//! `greenai_qlinear_from_int8(wq, out, in, scales, zero_points, bias, &layer)`, then
//! `greenai_qlinear_forward` per batch (`examples/c/linear_int8.c`).
//!
//! The typed tensor:
//! ```
//! use greenai::Tensor;
//! let t = Tensor::from_vec([2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let t = t.reshape([3, 2])?;
//! assert_eq!(t.as_ndarray()[[2, 1]], 6.0);
//! # Ok::<(), greenai::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod distill;
pub mod energy;
pub mod error;
#[cfg(feature = "capi")]
pub mod ffi;
pub mod flops;
pub mod kernels;
#[cfg(feature = "lowrank")]
pub mod lowrank;
pub mod model;
pub mod prune;
pub mod quant;
pub mod tensor;
pub mod units;

pub use error::{Error, Result};
/// The `half` crate, whose `f16` and `bf16` are element types of the API.
pub use half;
/// The `ndarray` crate, whose views [`Tensor::as_ndarray`] returns.
pub use ndarray;
pub use tensor::{DType, DynTensor, Element, FloatElement, Tensor, TensorView, TensorViewMut};

/// The README's Rust code blocks, compiled and run by `cargo test --doc` as a dependent would write them.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
