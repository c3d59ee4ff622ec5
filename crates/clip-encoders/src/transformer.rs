//! The pre-LN residual attention block and the stack of them; the same code runs the image and the
//! text transformer (the text one with a causal mask).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::activation::Activation;
use crate::attention::{MultiheadAttention, MultiheadAttentionConfig};
use crate::linear::linear_rows;

/// LayerNorm epsilon used by every CLIP implementation.
pub const LAYER_NORM_EPS: f64 = 1e-5;

pub(crate) fn layer_norm<B: Backend>(width: usize, device: &B::Device) -> LayerNorm<B> {
    layer_norm_eps(width, LAYER_NORM_EPS, device)
}

/// A LayerNorm with another epsilon (timm's and SigLIP's 1e-6).
pub(crate) fn layer_norm_eps<B: Backend>(
    width: usize,
    eps: f64,
    device: &B::Device,
) -> LayerNorm<B> {
    LayerNormConfig::new(width).with_epsilon(eps).init(device)
}

/// The shape of a [`Transformer`]: `layers` blocks of `width`-wide tokens.
#[derive(Config, Debug)]
pub struct TransformerConfig {
    /// Token width.
    pub width: usize,
    /// Number of residual attention blocks.
    pub layers: usize,
    /// Attention heads per block; must divide `width`.
    pub heads: usize,
    /// MLP hidden width as a multiple of `width` (default 4; the hidden width is truncated to an
    /// integer).
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// The MLP non-linearity (default exact GELU).
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// Layer scale (open_clip's `ls_init_value`): each branch's output is multiplied by a learned
    /// per-channel gain, initialised to this value, before it is added back (default none).
    #[config(default = "None")]
    pub layer_scale: Option<f64>,
    /// Epsilon of the blocks' LayerNorms (default [`LAYER_NORM_EPS`]; SigLIP's 1e-6).
    #[config(default = "LAYER_NORM_EPS")]
    pub norm_eps: f64,
}

impl TransformerConfig {
    /// A randomly initialized stack on `device` (burn's default initializers; LayerNorm epsilon
    /// [`LAYER_NORM_EPS`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Transformer<B> {
        let hidden = (self.width as f64 * self.mlp_ratio) as usize;
        let block = || ResidualAttentionBlock {
            ln_1: layer_norm_eps(self.width, self.norm_eps, device),
            attn: MultiheadAttentionConfig::new(self.width, self.heads).init(device),
            ln_2: layer_norm_eps(self.width, self.norm_eps, device),
            mlp: Mlp::new(self.width, hidden, self.activation, device),
            ls_1: self.layer_scale.map(|v| gain(self.width, v, device)),
            ls_2: self.layer_scale.map(|v| gain(self.width, v, device)),
        };
        Transformer {
            resblocks: (0..self.layers).map(|_| block()).collect(),
        }
    }
}

/// A layer-scale gain of `width` channels, all `value`.
fn gain<B: Backend>(width: usize, value: f64, device: &B::Device) -> Param<Tensor<B, 1>> {
    Param::from_tensor(Tensor::full([width], value, device))
}

/// `x + branch · gain` (the gain `[width]` broadcast over batch and sequence).
fn add_scaled<B: Backend>(
    x: Tensor<B, 3>,
    branch: Tensor<B, 3>,
    gain: &Param<Tensor<B, 1>>,
) -> Tensor<B, 3> {
    let width = gain.dims()[0];
    x + branch * gain.val().reshape([1, 1, width])
}

/// A block's feed-forward part: `c_proj(activation(c_fc(x)))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Expansion, `[width, hidden]` (burn stores linear weights as `[in, out]`).
    pub c_fc: Linear<B>,
    /// Projection back, `[hidden, width]`.
    pub c_proj: Linear<B>,
    /// The non-linearity between them (not a parameter).
    #[module(skip)]
    pub activation: Activation,
}

impl<B: Backend> Mlp<B> {
    /// `width → hidden → width` with `activation` between, randomly initialized.
    pub fn new(width: usize, hidden: usize, activation: Activation, device: &B::Device) -> Self {
        Self {
            c_fc: LinearConfig::new(width, hidden).init(device),
            c_proj: LinearConfig::new(hidden, width).init(device),
            activation,
        }
    }

    /// `x`: `[batch, seq, width]` → `[batch, seq, width]`, each token independently.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_added(x, None)
    }

    /// `residual + forward(x)` (`residual` as `x`), the residual added as part of the last
    /// projection where the backend allows it.
    pub(crate) fn forward_added(
        &self,
        x: Tensor<B, 3>,
        residual: Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, width] = x.dims();
        let hidden = self.hidden(x.reshape([batch * seq, width]));
        let residual = residual.map(|r| r.reshape([batch * seq, width]));
        linear_rows(&self.c_proj, hidden, residual).reshape([batch, seq, width])
    }

    /// `activation(c_fc(x))` for the rows of `x`; on `flex`, GELU or QuickGELU with the bias added
    /// in the activation's pass (`flex::linear_gelu`).
    fn hidden(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        #[cfg(feature = "flex")]
        {
            use crate::flex::{linear_gelu, Gelu};
            let kind = match self.activation {
                Activation::Gelu => Some(Gelu::Exact),
                Activation::QuickGelu => Some(Gelu::Quick),
                Activation::Relu | Activation::GeluTanh => None,
            };
            let weight = self.c_fc.weight.val();
            let fused = match (kind, &self.c_fc.bias) {
                (Some(kind), Some(bias)) => linear_gelu(&x, &weight, &bias.val(), kind),
                _ => None,
            };
            if let Some(hidden) = fused {
                return hidden;
            }
        }
        self.activation.forward(linear_rows(&self.c_fc, x, None))
    }
}

/// `x + positions` for every sequence of `x` (`[batch, seq, width]`, `positions`: `[seq, width]`),
/// added as `[batch, seq·width] + [1, seq·width]`: a row shared by every sequence is a broadcast
/// `flex` adds in vectors, in place, where the 3-D form walks an index per element (0.6 % of the
/// text encoding). The same sums on every backend.
pub(crate) fn add_positions<B: Backend>(x: Tensor<B, 3>, positions: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, seq, width] = x.dims();
    let rows = x.reshape([batch, seq * width]) + positions.reshape([1, seq * width]);
    rows.reshape([batch, seq, width])
}

/// A pre-LN transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))` (each branch times its
/// layer-scale gain when the block has one).
#[derive(Module, Debug)]
pub struct ResidualAttentionBlock<B: Backend> {
    /// LayerNorm before attention.
    pub ln_1: LayerNorm<B>,
    /// Multi-head self-attention.
    pub attn: MultiheadAttention<B>,
    /// LayerNorm before the MLP.
    pub ln_2: LayerNorm<B>,
    /// The feed-forward part.
    pub mlp: Mlp<B>,
    /// Layer-scale gain of the attention branch, `[width]` (open_clip's `ls_1.gamma`), if any.
    pub ls_1: Option<Param<Tensor<B, 1>>>,
    /// Layer-scale gain of the MLP branch, `[width]` (`ls_2.gamma`), if any.
    pub ls_2: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> ResidualAttentionBlock<B> {
    /// `x`: `[batch, seq, width]` → `[batch, seq, width]`; with `causal`, position i attends to
    /// positions ≤ i only.
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let normed = self.ln_1.forward(x.clone());
        let x = match &self.ls_1 {
            None => self.attn.forward_added(normed, Some(x), causal),
            Some(gain) => add_scaled(x, self.attn.forward_added(normed, None, causal), gain),
        };
        self.mlp_residual(x)
    }

    /// The block's output at position `at[b]` of each sequence only (`[batch, 1, width]`): keys and
    /// values come from every position, everything else from that one row.
    pub fn forward_at(&self, x: Tensor<B, 3>, at: Tensor<B, 1, Int>, causal: bool) -> Tensor<B, 3> {
        let [batch, _, width] = x.dims();
        let index = at.clone().reshape([batch, 1, 1]).expand([batch, 1, width]);
        let row = x.clone().gather(1, index);
        let normed = self.ln_1.forward(x);
        let x = match &self.ls_1 {
            None => self.attn.forward_at_added(normed, at, Some(row), causal),
            Some(gain) => add_scaled(
                row,
                self.attn.forward_at_added(normed, at, None, causal),
                gain,
            ),
        };
        self.mlp_residual(x)
    }

    /// `x + mlp(ln_2(x))`, the branch scaled by `ls_2` if present.
    fn mlp_residual(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let normed = self.ln_2.forward(x.clone());
        match &self.ls_2 {
            None => self.mlp.forward_added(normed, Some(x)),
            Some(gain) => add_scaled(x, self.mlp.forward_added(normed, None), gain),
        }
    }
}

/// A stack of [`ResidualAttentionBlock`]s, run in order.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// The blocks, first to last.
    pub resblocks: Vec<ResidualAttentionBlock<B>>,
}

impl<B: Backend> Transformer<B> {
    /// `x`: `[batch, seq, width]` → `[batch, seq, width]`; `causal` as in
    /// [`ResidualAttentionBlock::forward`].
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        self.resblocks
            .iter()
            .fold(x, |x, block| block.forward(x, causal))
    }

    /// The output at position `at[b]` of each sequence (`[batch, 1, width]`), which is all a pooled
    /// tower reads: the last block computes only that row (its queries, attention output and MLP),
    /// about 5/6 of that block's work saved, with the same result as `forward` then gather.
    pub fn forward_at(&self, x: Tensor<B, 3>, at: Tensor<B, 1, Int>, causal: bool) -> Tensor<B, 3> {
        match self.resblocks.split_last() {
            Some((last, blocks)) => {
                let x = blocks.iter().fold(x, |x, block| block.forward(x, causal));
                last.forward_at(x, at, causal)
            }
            None => {
                let [batch, _, width] = x.dims();
                x.gather(1, at.reshape([batch, 1, 1]).expand([batch, 1, width]))
            }
        }
    }

    /// Token width (0 for a stack without blocks).
    pub fn width(&self) -> usize {
        self.resblocks
            .first()
            .map(|b| b.ln_1.gamma.dims()[0])
            .unwrap_or(0)
    }
}
