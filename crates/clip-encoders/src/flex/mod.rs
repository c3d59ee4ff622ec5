//! CPU kernels for burn's `flex` backend: the operations where `flex` 0.21 spends time CLIP need not
//! (exact GELU with a scalar `erf`, attention through a dense scores tensor, convolutions with scalar
//! layout copies, bias and residual passes after each product).
//!
//! Each kernel takes backend-generic tensors and answers `None` unless they are `flex` f32 tensors it
//! handles, so the towers call it first and fall back to burn's own ops everywhere else (other
//! backends, autodiff, f16). Nothing here is specific to CLIP but the shapes it is tuned for; the
//! kernels are shaped as a contribution to `burn-flex` would be — one operation per module, checked
//! against burn's own op on random inputs in its tests — and belong upstream.
//!
//! The interface the towers use is the re-exports below; `tensor` is the shared plumbing (reaching
//! the `FlexTensor` under a `Tensor`, the `gemm` call on strided operands).

mod attention;
mod conv;
mod gelu;
mod linear;
mod patches;
mod pool;
mod tensor;

pub(crate) use attention::{attention, KeyLimit};
pub(crate) use conv::conv2d_same;
pub(crate) use gelu::{gelu, linear_gelu, Gelu};
pub(crate) use linear::linear;
pub(crate) use patches::patches;
pub(crate) use pool::avg_pool_disjoint;
