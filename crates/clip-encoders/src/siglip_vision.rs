//! SigLIP's image tower (timm's `vit_*_siglip_*`): patchify with a biased convolution, add learned
//! positions (no class token), the transformer (LayerNorm epsilon 1e-6), a final LayerNorm on every
//! token, and attention pooling ([`MapHead`]). Its width is the joint space: there is no projection.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::LayerNorm;
use burn::tensor::{backend::Backend, Distribution, Tensor};

use crate::activation::Activation;
use crate::map_head::{map_head, MapHead};
use crate::transformer::{add_positions, layer_norm_eps, Transformer, TransformerConfig};

/// timm's LayerNorm epsilon, which SigLIP's towers use throughout.
pub const SIGLIP_NORM_EPS: f64 = 1e-6;

/// The shape of a [`SiglipVisionTransformer`].
#[derive(Config, Debug)]
pub struct SiglipVisionConfig {
    /// Side of the square input image, in pixels.
    pub image_size: usize,
    /// Side of a square patch; must divide `image_size`.
    pub patch_size: usize,
    /// Token width, which is also the output width.
    pub width: usize,
    /// Number of residual attention blocks.
    pub layers: usize,
    /// Attention heads (of the blocks and of the pooling head).
    pub heads: usize,
    /// MLP hidden width as a multiple of `width` (default 4; 3.7362 in SO400M).
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// The MLP non-linearity (default exact GELU, timm's).
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
}

impl SiglipVisionConfig {
    /// A randomly initialized tower on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SiglipVisionTransformer<B> {
        let grid = self.image_size / self.patch_size;
        SiglipVisionTransformer {
            conv1: Conv2dConfig::new([3, self.width], [self.patch_size; 2])
                .with_stride([self.patch_size; 2])
                .init(device),
            positional_embedding: Param::from_tensor(Tensor::random(
                [grid * grid, self.width],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            transformer: TransformerConfig::new(self.width, self.layers, self.heads)
                .with_mlp_ratio(self.mlp_ratio)
                .with_activation(self.activation)
                .with_norm_eps(SIGLIP_NORM_EPS)
                .init(device),
            ln_post: layer_norm_eps(self.width, SIGLIP_NORM_EPS, device),
            attn_pool: map_head(
                self.width,
                self.heads,
                self.mlp_ratio,
                self.activation,
                SIGLIP_NORM_EPS,
                device,
            ),
            image_size: self.image_size,
        }
    }
}

/// SigLIP's ViT. Parameter names follow this crate's ViT (`conv1`, `transformer.resblocks`,
/// `ln_post`); the loader renames timm's (`patch_embed.proj`, `blocks`, `norm`).
#[derive(Module, Debug)]
pub struct SiglipVisionTransformer<B: Backend> {
    /// Patchify convolution, kernel and stride = patch size, with bias.
    pub conv1: Conv2d<B>,
    /// Learned positions of the patches, `[grid², width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// The transformer, bidirectional.
    pub transformer: Transformer<B>,
    /// LayerNorm of every token before pooling (timm's `norm`).
    pub ln_post: LayerNorm<B>,
    /// Attention pooling into one vector.
    pub attn_pool: MapHead<B>,
    /// Side of the square input image.
    pub image_size: usize,
}

impl<B: Backend> SiglipVisionTransformer<B> {
    /// `images`: `[batch, 3, size, size]` normalized pixels → `[batch, width]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let patches = self.conv1.forward(images); // [b, w, g, g]
        let [batch, width, gh, gw] = patches.dims();
        let tokens = patches.reshape([batch, width, gh * gw]).swap_dims(1, 2);
        let x = add_positions(tokens, self.positional_embedding.val());
        let x = self.transformer.forward(x, false);
        self.attn_pool.forward(self.ln_post.forward(x))
    }

    /// Token width (and output width).
    pub fn width(&self) -> usize {
        self.positional_embedding.dims()[1]
    }
}
