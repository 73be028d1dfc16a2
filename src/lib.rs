//! # greenai
//!
//! Building blocks that make neural networks smaller, faster and cheaper in energy, and that say
//! what they cost to run: a typed [`Tensor`], quantization, pruning, low-rank factorization,
//! distillation losses, a FLOPs/energy/carbon calculator, SIMD int8/fp16 kernels, safetensors
//! model files, and a C ABI (`include/greenai.h`) over all of it.
//!
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
pub use tensor::{DType, DynTensor, Element, FloatElement, Tensor, TensorView, TensorViewMut};

/// The README's Rust code blocks, compiled and run by `cargo test --doc` as a dependent would write them.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
