//! Text tower: token + position embeddings → causal transformer → ln_final → the state at the first
//! end-of-text token. "First end token" rather than OpenAI's `argmax(ids)`: both agree on plain
//! tokenizer output, but argmax breaks once ids larger than the end token exist (added tokens).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm};
use burn::tensor::{backend::Backend, Distribution, Int, Tensor};

use crate::activation::Activation;
use crate::transformer::{
    add_positions, layer_norm_eps, Transformer, TransformerConfig, LAYER_NORM_EPS,
};

/// CLIP's `<|endoftext|>` id.
pub const END_OF_TEXT: i64 = 49407;

/// Which token's output a text tower pools (open_clip's text `pool_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPool {
    /// The first end token ([`TextTransformerConfig::end_of_text`]): CLIP's `argmax`, and open_clip's
    /// `eos` with that id.
    #[default]
    EndToken,
    /// The first position (`first`).
    First,
    /// The last position of the (padded) sequence (`last`; SigLIP's, CLIPA's).
    Last,
}

/// The shape of a [`TextTransformer`] (CLIP's: context 77, vocabulary 49408, width 512, 8 heads,
/// 12 layers).
#[derive(Config, Debug)]
pub struct TextTransformerConfig {
    /// Maximum number of tokens per text, including start and end tokens (default 77).
    #[config(default = 77)]
    pub context_length: usize,
    /// Number of token ids (default 49408, CLIP's BPE vocabulary).
    #[config(default = 49408)]
    pub vocab_size: usize,
    /// Token width (embedding dimension) of the transformer.
    pub width: usize,
    /// Attention heads per block; must divide `width`.
    pub heads: usize,
    /// Number of residual attention blocks.
    pub layers: usize,
    /// MLP hidden width as a multiple of `width` (default 4).
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// The MLP non-linearity (default exact GELU; OpenAI's weights need QuickGELU).
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// The id whose first occurrence in a text is pooled (default [`END_OF_TEXT`]).
    #[config(default = "END_OF_TEXT")]
    pub end_of_text: i64,
    /// Each position attends only to itself and earlier ones (default true; open_clip's
    /// `no_causal_mask` turns it off).
    #[config(default = true)]
    pub causal: bool,
    /// Which token is pooled (default the first end token).
    #[config(default = "TextPool::EndToken")]
    pub pool: TextPool,
    /// Epsilon of every LayerNorm (default [`LAYER_NORM_EPS`]; open_clip's `norm_kwargs.eps`, 1e-6
    /// in SigLIP).
    #[config(default = "LAYER_NORM_EPS")]
    pub norm_eps: f64,
}

impl TextTransformerConfig {
    /// A randomly initialized tower on `device` (token embeddings `N(0, 0.02)`, positions
    /// `N(0, 0.01)`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> TextTransformer<B> {
        TextTransformer {
            token_embedding: EmbeddingConfig::new(self.vocab_size, self.width)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
            positional_embedding: Param::from_tensor(Tensor::random(
                [self.context_length, self.width],
                Distribution::Normal(0.0, 0.01),
                device,
            )),
            transformer: TransformerConfig::new(self.width, self.layers, self.heads)
                .with_mlp_ratio(self.mlp_ratio)
                .with_activation(self.activation)
                .with_norm_eps(self.norm_eps)
                .init(device),
            ln_final: layer_norm_eps(self.width, self.norm_eps, device),
            end_of_text: self.end_of_text,
            causal: self.causal,
            pool: self.pool,
        }
    }
}

/// CLIP's causal text tower, with open_clip's parameter names. Built by
/// [`TextTransformerConfig::init`] or loaded with pretrained weights.
#[derive(Module, Debug)]
pub struct TextTransformer<B: Backend> {
    /// Token embedding table, `[vocab_size, width]`.
    pub token_embedding: Embedding<B>,
    /// Learned positions, `[context_length, width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// The transformer, run with a causal mask.
    pub transformer: Transformer<B>,
    /// LayerNorm of the pooled token's output.
    pub ln_final: LayerNorm<B>,
    /// The id whose first occurrence in a row is pooled.
    pub end_of_text: i64,
    /// Causal attention (CLIP's); bidirectional when false.
    #[module(skip)]
    pub causal: bool,
    /// Which token is pooled.
    #[module(skip)]
    pub pool: TextPool,
}

impl<B: Backend> TextTransformer<B> {
    /// `ids`: `[batch, seq]` with `seq ≤ context_length`. Returns pooled `[batch, width]` features.
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.forward_embedded(self.token_embedding.forward(ids.clone()), ids)
    }

    /// The tower on token embeddings looked up elsewhere (`[batch, seq, width]`; a trainer looks them
    /// up in the rows of the table it updates), with `ids` (`[batch, seq]`) marking where each text
    /// ends. Returns pooled `[batch, width]` features.
    pub fn forward_embedded(&self, tokens: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [batch, seq] = ids.dims();
        let positions = self.positional_embedding.val().narrow(0, 0, seq);
        let x = add_positions(tokens, positions);
        let width = x.dims()[2];
        // only the pooled token's output is needed, so the last block computes only that row
        let end = self.end_positions(ids);
        let x = self.transformer.forward_at(x, end, self.causal);
        self.ln_final.forward(x).reshape([batch, width])
    }

    /// Whether cutting the padding after the longest text's end token leaves the pooled output
    /// unchanged: true for a causal tower pooled at the end token (no position sees a later one),
    /// false for bidirectional attention or pooling at the last position.
    pub fn trims_padding(&self) -> bool {
        self.causal && self.pool == TextPool::EndToken
    }

    /// The position pooled in each row of `ids` (`[batch, seq]` → `[batch]`): the first end-of-text
    /// token (the last position when a row has none), or the first or last position.
    pub fn end_positions(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 1, Int> {
        let [batch, seq] = ids.dims();
        let device = ids.device();
        match self.pool {
            TextPool::First => return Tensor::zeros([batch], &device),
            TextPool::Last => return Tensor::full([batch], seq as i64 - 1, &device),
            TextPool::EndToken => {}
        }
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, seq]);
        let is_end = ids.equal_elem(self.end_of_text);
        let last = Tensor::<B, 2, Int>::full([batch, seq], seq as i64 - 1, &device);
        last.mask_where(is_end, positions)
            .min_dim(1)
            .reshape([batch])
    }

    /// Maximum number of tokens per text (rows of the positional embedding).
    pub fn context_length(&self) -> usize {
        self.positional_embedding.dims()[0]
    }

    /// Token width, the size of the pooled features.
    pub fn width(&self) -> usize {
        self.positional_embedding.dims()[1]
    }
}
