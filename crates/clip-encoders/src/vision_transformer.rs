//! ViT image tower: bias-free conv patchify → [class; patches] + positions → ln_pre → transformer →
//! ln_post on the class token. The projection into the joint space lives in `clip-heads`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::LayerNorm;
use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::activation::Activation;
use crate::transformer::{add_positions, layer_norm, Transformer, TransformerConfig};

/// How a ViT pools its tokens into one feature vector (open_clip's `pool_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VitPool {
    /// The class token's output (`tok`; CLIP's).
    #[default]
    #[serde(rename = "tok")]
    Token,
    /// The mean of the patch tokens' outputs (`avg`; CLIPA's).
    #[serde(rename = "avg")]
    Average,
}

/// The shape of a [`VisionTransformer`] (ViT-B/32: image 224, patch 32, width 768, 12 layers,
/// 12 heads).
#[derive(Config, Debug)]
pub struct VisionTransformerConfig {
    /// Side of the square input image, in pixels.
    pub image_size: usize,
    /// Side of the square patches, in pixels; `image_size / patch_size` patches per side.
    pub patch_size: usize,
    /// Token width (embedding dimension) of the transformer.
    pub width: usize,
    /// Number of residual attention blocks.
    pub layers: usize,
    /// Attention heads per block; must divide `width`.
    pub heads: usize,
    /// MLP hidden width as a multiple of `width` (default 4).
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// The MLP non-linearity (default exact GELU; OpenAI's weights need QuickGELU).
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// Layer scale of every block (open_clip's `ls_init_value`; default none).
    #[config(default = "None")]
    pub layer_scale: Option<f64>,
    /// How tokens are pooled (default the class token).
    #[config(default = "VitPool::Token")]
    pub pool: VitPool,
    /// A LayerNorm before the transformer (default true; open_clip's `no_ln_pre` turns it off).
    #[config(default = true)]
    pub ln_pre: bool,
    /// `ln_post` on the pooled vector rather than on every token before pooling (open_clip's
    /// `final_ln_after_pool`; the same for class-token pooling).
    #[config(default = false)]
    pub final_ln_after_pool: bool,
}

impl VisionTransformerConfig {
    /// Patches per side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// A randomly initialized tower on `device` (embeddings `N(0, width^-0.5)`, no patch dropout).
    pub fn init<B: Backend>(&self, device: &B::Device) -> VisionTransformer<B> {
        let scale = (self.width as f64).powf(-0.5);
        let tokens = self.grid_size() * self.grid_size() + 1;
        VisionTransformer {
            conv1: Conv2dConfig::new([3, self.width], [self.patch_size; 2])
                .with_stride([self.patch_size; 2])
                .with_bias(false)
                .init(device),
            class_embedding: Param::from_tensor(Tensor::random(
                [self.width],
                Distribution::Normal(0.0, scale),
                device,
            )),
            positional_embedding: Param::from_tensor(Tensor::random(
                [tokens, self.width],
                Distribution::Normal(0.0, scale),
                device,
            )),
            ln_pre: self.ln_pre.then(|| layer_norm(self.width, device)),
            transformer: TransformerConfig::new(self.width, self.layers, self.heads)
                .with_mlp_ratio(self.mlp_ratio)
                .with_activation(self.activation)
                .with_layer_scale(self.layer_scale)
                .init(device),
            ln_post: layer_norm(self.width, device),
            image_size: self.image_size,
            patch_dropout: 0.0,
            patch_dropout_seed: None,
            pool: self.pool,
            final_ln_after_pool: self.final_ln_after_pool,
        }
    }
}

/// CLIP's ViT image tower, with open_clip's parameter names. Built by
/// [`VisionTransformerConfig::init`] or loaded with pretrained weights.
#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    /// Patch embedding: a bias-free `patch_size`×`patch_size` convolution of stride `patch_size`,
    /// weight `[width, 3, patch_size, patch_size]`.
    pub conv1: Conv2d<B>,
    /// The learned class token, `[width]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// Learned positions of the class token and the patches, `[1 + grid², width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// LayerNorm before the transformer (none with open_clip's `no_ln_pre`).
    pub ln_pre: Option<LayerNorm<B>>,
    /// The (non-causal) transformer.
    pub transformer: Transformer<B>,
    /// LayerNorm of the class token's output.
    pub ln_post: LayerNorm<B>,
    /// Side of the square input image, in pixels.
    pub image_size: usize,
    /// Fraction of patch tokens dropped at random while training (open_clip's `patch_dropout`; FLIP).
    /// Only active under autodiff, so evaluation always sees every patch.
    pub patch_dropout: f64,
    /// Where the dropped patches come from: `None` draws from the backend's RNG; a seed makes the
    /// choice a function of that seed alone (a trainer sets one per batch, so runs are repeatable
    /// whatever the threads and resumes are exact).
    #[module(skip)]
    pub patch_dropout_seed: Option<u64>,
    /// How the tokens are pooled.
    #[module(skip)]
    pub pool: VitPool,
    /// `ln_post` after pooling instead of before (matters for average pooling only).
    #[module(skip)]
    pub final_ln_after_pool: bool,
}

impl<B: Backend> VisionTransformer<B> {
    /// `images`: `[batch, 3, size, size]`, normalized. Returns the pooled `[batch, width]` features.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let patches = self.embed_patches(images); // [b, g·g, w]
        let [batch, _, width] = patches.dims();
        let class = self
            .class_embedding
            .val()
            .reshape([1, 1, width])
            .expand([batch, 1, width]);
        let x = add_positions(
            Tensor::cat(vec![class, patches], 1),
            self.positional_embedding.val(),
        );
        let x = self.drop_patches(x);
        let x = match &self.ln_pre {
            Some(ln) => ln.forward(x),
            None => x,
        };
        match self.pool {
            VitPool::Token => {
                // only the class token's row is needed from the last block
                let class = Tensor::zeros([batch], &x.device());
                let class_token = self.transformer.forward_at(x, class, false);
                self.ln_post.forward(class_token.reshape([batch, width]))
            }
            VitPool::Average => {
                let x = self.transformer.forward(x, false);
                let tokens = x.dims()[1];
                let mean = |x: Tensor<B, 3>| {
                    x.narrow(1, 1, tokens - 1)
                        .mean_dim(1)
                        .reshape([batch, width])
                };
                if self.final_ln_after_pool {
                    self.ln_post.forward(mean(x))
                } else {
                    mean(self.ln_post.forward(x))
                }
            }
        }
    }

    /// Token width, the size of the pooled features.
    pub fn width(&self) -> usize {
        self.class_embedding.dims()[0]
    }

    /// The stride-p, p×p, bias-free convolution written as what it is, one matrix product over
    /// flattened patches: `[b·g², 3·p²] × [3·p², w]`. Same numbers as `conv1.forward`, but it runs on
    /// each backend's matmul, which is much faster than its general convolution (README, Performance).
    fn embed_patches(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let [width, channels, ph, pw] = self.conv1.weight.dims();
        let [batch, _, h, w] = images.dims();
        let (gh, gw) = (h / ph, w / pw);
        let flatten = |images: Tensor<B, 4>| {
            // a convolution without padding ignores the remainder rows and columns
            images
                .slice([0..batch, 0..channels, 0..gh * ph, 0..gw * pw])
                .reshape([batch, channels, gh, ph, gw, pw])
                .permute([0, 2, 4, 1, 3, 5])
                .reshape([batch * gh * gw, channels * ph * pw])
        };
        // on `flex`, row copies (`flex::patches`) instead of its element-wise six-axis permutation
        #[cfg(feature = "flex")]
        let patches = crate::flex::patches(&images, [ph, pw]).unwrap_or_else(|| flatten(images));
        #[cfg(not(feature = "flex"))]
        let patches = flatten(images);
        let weight = self
            .conv1
            .weight
            .val()
            .reshape([width, channels * ph * pw])
            .transpose();
        patches.matmul(weight).reshape([batch, gh * gw, width])
    }

    /// Keeps the class token and a random `1 − patch_dropout` of the patch tokens (at least one), chosen
    /// per image, as open_clip's PatchDropout does (after positions are added).
    fn drop_patches(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let device = x.device();
        if self.patch_dropout <= 0.0 || !B::ad_enabled(&device) {
            return x;
        }
        let [batch, tokens, width] = x.dims();
        let patches = tokens - 1;
        let keep = ((patches as f64 * (1.0 - self.patch_dropout)) as usize).max(1);
        let scores = match self.patch_dropout_seed {
            Some(seed) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let values: Vec<f32> = (0..batch * patches).map(|_| rng.random()).collect();
                Tensor::<B, 2>::from_data(TensorData::new(values, [batch, patches]), &device)
            }
            None => Tensor::random([batch, patches], Distribution::Normal(0.0, 1.0), &device),
        };
        let kept = scores.argsort(1).narrow(1, 0, keep) + 1;
        let class = Tensor::<B, 2, burn::tensor::Int>::zeros([batch, 1], &device);
        let index = Tensor::cat(vec![class, kept], 1)
            .unsqueeze_dim::<3>(2)
            .expand([batch, keep + 1, width]);
        x.gather(1, index)
    }
}
