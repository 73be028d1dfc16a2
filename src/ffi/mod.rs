//! The C ABI: thin wrappers that check arguments, convert, and call the core.
//!
//! Conventions (see the README's "C ABI conventions"):
//! - every function returns a [`greenai_status`]; [`greenai_last_error_message`] gives the detail;
//! - outputs go through trailing out-pointers and are written only on success;
//! - a NULL pointer with length 0 is an empty buffer; NULL where data is needed is
//!   `GREENAI_ERR_NULL_POINTER`;
//! - no panic crosses the boundary: it becomes `GREENAI_ERR_PANIC`.

#![allow(non_camel_case_types)]

#[macro_use]
mod boundary;
pub mod awq;
pub mod distill;
pub mod energy;
pub mod flops;
pub mod gemm_bf16;
pub mod gemm_float;
pub mod gemm_int8;
pub mod ggml;
pub mod gptq;
pub mod lowrank;
pub mod model;
pub mod prune;
pub mod quant;
pub mod sparse;
mod status;
pub mod tensor;

pub use boundary::{greenai_active_isa, greenai_last_error_message, greenai_status_str, greenai_version};
pub use status::greenai_status;
pub use tensor::*;

pub(crate) use boundary::FfiResult;
