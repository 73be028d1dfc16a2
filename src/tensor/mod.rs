//! The typed tensor: element types, shapes, owned tensors and borrowed views.

mod dtype;
mod dynamic;
mod shape;
#[allow(clippy::module_inception)]
mod tensor;

pub use dtype::{DType, Element, FloatElement};
pub use dynamic::{DynTensor, Packed4};
pub use shape::{numel, split_at_axis, strides};
pub use tensor::{Tensor, TensorView, TensorViewMut};
