//! Linear layers as the towers run them: every token of a batch in one matrix product, accumulated onto
//! the bias and the residual where the backend allows (`flex`). Shared by attention, the MLP and the
//! ModifiedResNet's attention pool.

use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};

/// `linear` applied to every token of `x` (`[batch, seq, in]` → `[batch, seq, out]`) as one
/// `[batch·seq, in]` matrix product. burn runs a
/// rank-3 input as `batch` small products, and computes the weight gradient as a `[batch, in, out]`
/// tensor summed over the batch; flattening first makes both one large product.
pub fn linear_tokens<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, seq, width] = x.dims();
    let y = linear_rows(linear, x.reshape([batch * seq, width]), None);
    let out = y.dims()[1];
    y.reshape([batch, seq, out])
}

/// `linear` of the rows of `x` (`[rows, in]`), plus `residual` (`[rows, out]`) when given.
pub(crate) fn linear_rows<B: Backend>(
    linear: &Linear<B>,
    x: Tensor<B, 2>,
    residual: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    let bias = linear.bias.as_ref().map(|b| b.val());
    affine(x, linear.weight.val(), bias, residual)
}

/// `x·weight + bias` (`x`: `[rows, in]`, `weight`: `[in, out]`), plus `residual` (`[rows, out]`).
/// At inference on `flex`, one product accumulated onto the bias and residual (`flex::linear`).
pub(crate) fn affine<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    residual: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    if let Some(y) = crate::flex::linear(&x, &weight, bias.as_ref(), residual.as_ref()) {
        return y;
    }
    let y = burn::tensor::module::linear(x, weight, bias);
    match residual {
        Some(residual) => residual + y,
        None => y,
    }
}
