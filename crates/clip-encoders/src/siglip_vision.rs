//! SigLIP's image tower (timm's `vit_*_siglip_*`): patchify with a biased convolution, add learned
//! positions (no class token), the transformer (LayerNorm epsilon 1e-6), a final LayerNorm on every
//! token, and attention pooling ([`MapHead`]). Its width is the joint space: there is no projection.
//!
//! SigLIP 2's NaFlex variant (transformers' `Siglip2VisionModel`) is the same tower fed images of any
//! patch grid: its square position grid is resized to each image's grid by antialiased bilinear
//! interpolation ([`SiglipVisionTransformer::positions_for`]).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::LayerNorm;
use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};

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
    /// NaFlex: accept any patch grid, resizing the positions to it (default false: only the grid
    /// of `image_size`).
    #[config(default = false)]
    pub naflex: bool,
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
            naflex: self.naflex,
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
    /// Whether images of other patch grids are taken (SigLIP 2's NaFlex).
    pub naflex: bool,
}

impl<B: Backend> SiglipVisionTransformer<B> {
    /// `images`: `[batch, 3, size, size]` normalized pixels → `[batch, width]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let patches = self.conv1.forward(images); // [b, w, g, g]
        let [batch, width, gh, gw] = patches.dims();
        let tokens = patches.reshape([batch, width, gh * gw]).swap_dims(1, 2);
        let x = add_positions(tokens, self.positions_for(gh, gw));
        let x = self.transformer.forward(x, false);
        self.attn_pool.forward(self.ln_post.forward(x))
    }

    /// Token width (and output width).
    pub fn width(&self) -> usize {
        self.positional_embedding.dims()[1]
    }

    /// The positions of a `rows`×`columns` patch grid, `[rows·columns, width]`: the learned grid
    /// itself when it is that size, else (NaFlex) the learned square grid resized by bilinear
    /// interpolation with antialiasing, as transformers' `Siglip2VisionEmbeddings` does
    /// (`F.interpolate(mode="bilinear", align_corners=False, antialias=True)`, written there as a
    /// product of per-axis weights, and here too).
    ///
    /// # Panics
    /// When the grid differs from the learned one and the tower is not NaFlex (its preprocessing
    /// always gives the learned grid).
    pub fn positions_for(&self, rows: usize, columns: usize) -> Tensor<B, 2> {
        let positions = self.positional_embedding.val();
        let [count, _] = positions.dims();
        let grid = (count as f64).sqrt().round() as usize;
        if rows * columns == count && rows == columns {
            return positions;
        }
        assert!(
            self.naflex,
            "a {rows}x{columns} patch grid for a tower of {grid}x{grid} patches"
        );
        let (along_rows, along_columns) = (
            bilinear_antialias_weights(grid, rows),
            bilinear_antialias_weights(grid, columns),
        );
        // weight of learned position (i, j) in output position (r, c): row weight × column weight
        let mut weights = Vec::with_capacity(rows * columns * grid * grid);
        for row in &along_rows {
            for column in &along_columns {
                for &wr in row {
                    weights.extend(column.iter().map(|&wc| (wr * wc) as f32));
                }
            }
        }
        let weights = Tensor::<B, 2>::from_data(
            TensorData::new(weights, [rows * columns, grid * grid]),
            &positions.device(),
        )
        .cast(positions.dtype());
        weights.matmul(positions)
    }
}

/// For each of `out` positions, the weights of the `len` inputs in a resize by antialiased bilinear
/// interpolation (`align_corners=False`): a triangle filter widened by the downscale factor,
/// normalized to sum to 1.
fn bilinear_antialias_weights(len: usize, out: usize) -> Vec<Vec<f64>> {
    let scale = len as f64 / out as f64;
    let support = scale.max(1.0);
    (0..out)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale - 0.5;
            let raw: Vec<f64> = (0..len)
                .map(|i| (1.0 - (i as f64 - center).abs() / support).max(0.0))
                .collect();
            let total: f64 = raw.iter().sum();
            raw.iter().map(|w| w / total).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::bilinear_antialias_weights;

    #[test]
    fn antialiased_bilinear_weights_as_torch_computes_them() {
        // F.interpolate(torch.eye(4)[None, None], size=(4, 2) and (4, 6), mode="bilinear",
        // antialias=True)[0, 0].T: downscaling 4 → 2 reads three inputs through a triangle twice
        // as wide, upscaling 4 → 6 is plain bilinear
        let down = bilinear_antialias_weights(4, 2);
        let expected_down = [[0.4286, 0.4286, 0.1429, 0.0], [0.0, 0.1429, 0.4286, 0.4286]];
        let up = bilinear_antialias_weights(4, 6);
        let expected_up_2 = [0.0, 0.8333, 0.1667, 0.0];
        for (got, want) in down
            .iter()
            .zip(expected_down)
            .chain([(&up[2], expected_up_2)])
        {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-4, "{got:?} {want:?}");
            }
        }
    }
}
