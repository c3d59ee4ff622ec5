//! Multihead attention pooling ("MAP", timm's `AttentionPoolLatent`): one learned query attends over
//! every token, and the result goes through a pre-norm MLP with a residual. SigLIP's image towers pool
//! this way instead of a class token.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Distribution, Tensor};

use crate::activation::Activation;
use crate::linear::linear_tokens;
use crate::transformer::{layer_norm_eps, Mlp};

/// A randomly initialized [`MapHead`] of `width` channels, `heads` heads, an MLP of `mlp_ratio`, and
/// LayerNorm epsilon `norm_eps`.
pub fn map_head<B: Backend>(
    width: usize,
    heads: usize,
    mlp_ratio: f64,
    activation: Activation,
    norm_eps: f64,
    device: &B::Device,
) -> MapHead<B> {
    let hidden = (width as f64 * mlp_ratio) as usize;
    MapHead {
        latent: Param::from_tensor(Tensor::random(
            [width],
            Distribution::Normal(0.0, (width as f64).powf(-0.5)),
            device,
        )),
        q: LinearConfig::new(width, width).init(device),
        kv: LinearConfig::new(width, 2 * width).init(device),
        proj: LinearConfig::new(width, width).init(device),
        norm: layer_norm_eps(width, norm_eps, device),
        mlp: Mlp::new(width, hidden, activation, device),
        heads,
    }
}

/// timm's `AttentionPoolLatent` with one latent query (its parameter names).
#[derive(Module, Debug)]
pub struct MapHead<B: Backend> {
    /// The learned query, `[width]`.
    pub latent: Param<Tensor<B, 1>>,
    /// Query projection.
    pub q: Linear<B>,
    /// Key and value projections, side by side (`[width, 2·width]`).
    pub kv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    /// LayerNorm before the MLP.
    pub norm: LayerNorm<B>,
    /// The MLP added to the attention output.
    pub mlp: Mlp<B>,
    /// Attention heads.
    #[module(skip)]
    pub heads: usize,
}

impl<B: Backend> MapHead<B> {
    /// `tokens`: `[batch, seq, width]` → `[batch, width]`.
    pub fn forward(&self, tokens: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, seq, width] = tokens.dims();
        let (heads, head_dim) = (self.heads, width / self.heads);
        let query = linear_tokens(&self.q, self.latent.val().reshape([1, 1, width]))
            .reshape([1, heads, 1, head_dim])
            .expand([batch, heads, 1, head_dim]);
        let kv = linear_tokens(&self.kv, tokens).reshape([batch, seq, 2, heads, head_dim]);
        let part = |i: usize| {
            kv.clone()
                .narrow(2, i, 1)
                .reshape([batch, seq, heads, head_dim])
                .swap_dims(1, 2)
        };
        let (keys, values) = (part(0), part(1));
        let scores = query.matmul(keys.swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
        let pooled = softmax(scores, 3).matmul(values).reshape([batch, 1, width]);
        let x = linear_tokens(&self.proj, pooled);
        let x = x.clone() + self.mlp.forward(self.norm.forward(x));
        x.reshape([batch, width])
    }
}
