//! The MLP non-linearity. OpenAI trained its CLIP models with QuickGELU; open_clip's plain configs use
//! exact (erf) GELU. Using the wrong one on pretrained weights costs points of zero-shot accuracy.
//! ReLU is there for Hugging Face configs that name it (`hidden_act: "relu"`); open_clip cannot
//! express it, so such a model is saved in this library's format only (`save_burn`).

use burn::tensor::{activation, backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

/// Activation used inside the transformer MLPs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU, `x · Φ(x)` (open_clip default, HF `gelu`).
    #[default]
    Gelu,
    /// `x · sigmoid(1.702 x)` (OpenAI weights, HF `quick_gelu`).
    QuickGelu,
    /// `max(x, 0)` (HF `relu`).
    Relu,
    /// GELU with the tanh approximation (`GELU(approximate="tanh")`, `gelu_pytorch_tanh`): SigLIP 2's
    /// text tower and transformers' SigLIP towers.
    GeluTanh,
}

impl Activation {
    /// Applies the activation element-wise; the shape is kept.
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::QuickGelu => quick_gelu(x),
            Activation::Relu => activation::relu(x),
            Activation::GeluTanh => gelu_tanh(x),
        }
    }
}

/// Exact GELU; on `flex` the crate's own vectorized pass (`flex::gelu`), elsewhere burn's.
fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match crate::flex::gelu(x, crate::flex::Gelu::Exact) {
        Ok(y) => return y,
        Err(x) => x,
    };
    activation::gelu(x)
}

/// `x·sigmoid(1.702·x)`; on `flex` one vectorized pass (`flex::gelu`), elsewhere burn's ops.
fn quick_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match crate::flex::gelu(x, crate::flex::Gelu::Quick) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x.clone() * activation::sigmoid(x * 1.702)
}

/// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, as PyTorch's `gelu(approximate="tanh")`.
fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let inner =
        (x.clone() + x.clone().powi_scalar(3) * 0.044715) * (2.0 / std::f64::consts::PI).sqrt();
    x * (inner.tanh() + 1.0) * 0.5
}
