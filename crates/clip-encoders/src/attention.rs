//! Multi-head self-attention with one packed input projection, as PyTorch's `nn.MultiheadAttention`
//! stores it (`in_proj_weight` rows: q; k; v). One matmul for q, k and v, then burn's fused attention op.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, Tensor};

use crate::transformer::linear_tokens;

#[derive(Config, Debug)]
pub struct MultiheadAttentionConfig {
    pub width: usize,
    pub heads: usize,
}

impl MultiheadAttentionConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> MultiheadAttention<B> {
        MultiheadAttention {
            in_proj: LinearConfig::new(self.width, 3 * self.width).init(device),
            out_proj: LinearConfig::new(self.width, self.width).init(device),
            heads: self.heads,
        }
    }
}

#[derive(Module, Debug)]
pub struct MultiheadAttention<B: Backend> {
    /// `[width, 3·width]`: q, k and v projections side by side.
    pub in_proj: Linear<B>,
    pub out_proj: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> MultiheadAttention<B> {
    /// `x`: `[batch, seq, width]`. With `causal`, position i attends to positions ≤ i only; the mask is
    /// never materialized.
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let [batch, seq, width] = x.dims();
        let head_dim = width / self.heads;
        let qkv = linear_tokens(&self.in_proj, x);
        let (q, k, v) = if B::ad_enabled(&qkv.device()) {
            // training: narrowing the 3-D projection keeps the backward pass cheaper (its gradient
            // is assembled in `[batch, seq, 3·width]` directly)
            let part = |i: usize| {
                qkv.clone()
                    .narrow(2, i * width, width)
                    .reshape([batch, seq, self.heads, head_dim])
                    .swap_dims(1, 2)
            };
            (part(0), part(1), part(2))
        } else {
            // inference: `[batch, seq, (3, heads, head_dim)]` viewed as `[3, batch, heads, seq,
            // head_dim]`, so each part is copied once, straight into the contiguous layout attention
            // reads (on `flex` a reshape of a strided view copies, and so does attention on strided
            // inputs: two copies per part the other way)
            let qkv = qkv
                .reshape([batch, seq, 3, self.heads, head_dim])
                .permute([2, 0, 3, 1, 4]);
            let part = |i: usize| {
                qkv.clone()
                    .narrow(0, i, 1)
                    .reshape([batch, self.heads, seq, head_dim])
            };
            (part(0), part(1), part(2))
        };
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        let out = attention(q, k, v, None, None, options)
            .swap_dims(1, 2)
            .reshape([batch * seq, width]);
        self.out_proj.forward(out).reshape([batch, seq, width])
    }
}
