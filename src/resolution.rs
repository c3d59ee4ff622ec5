//! A model at another input size than it was trained at: a ViT's position grid resized as open_clip's
//! `resize_pos_embed` does, and a shorter text context.

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::config::VisionConfig;
use crate::error::ClipError;
use crate::model::ImageEncoder;
use crate::pretrained::Pretrained;

/// A parameter's values as f32, with its shape.
fn values<B: Backend>(t: Tensor<B, 2>) -> Result<(Vec<f32>, [usize; 2]), ClipError> {
    let dims = t.dims();
    let data = t.into_data().convert::<f32>();
    let values = data
        .to_vec::<f32>()
        .map_err(|e| ClipError::Input(format!("positional embedding: {e:?}")))?;
    Ok((values, dims))
}

impl<B: Backend> Pretrained<B> {
    /// The model at `image_size` px: a ViT's patch-position grid is resized from `size / patch` to
    /// `image_size / patch` per side exactly as open_clip's `resize_pos_embed` does when a checkpoint is
    /// loaded into a model of another size (bicubic, antialiased, `align_corners=False`; the class
    /// token's position kept), and the preprocessing crops to the new size. A SigLIP 2 NaFlex model
    /// resizes its positions to each image already: there the size sets the patch budget,
    /// `(image_size / patch)²` patches per image (transformers' `max_num_patches`).
    ///
    /// # Errors
    ///
    /// [`ClipError::Input`] for a size that is not a positive multiple of the patch size, or a
    /// ModifiedResNet (its attention pool's positions are not resized by open_clip either).
    pub fn with_image_size(mut self, image_size: usize) -> Result<Self, ClipError> {
        if let (VisionConfig::SiglipVit { .. }, ImageEncoder::Siglip(_)) =
            (&self.config.vision, &self.model.visual)
        {
            return self.with_siglip_image_size(image_size);
        }
        let (
            VisionConfig::Vit {
                image_size: current,
                patch_size,
                ..
            },
            ImageEncoder::Vit(vit),
        ) = (&mut self.config.vision, &mut self.model.visual)
        else {
            return Err(ClipError::Input(
                "another image size needs a ViT: a ModifiedResNet's attention-pool positions are \
                 not resized (open_clip does not either)"
                    .into(),
            ));
        };
        if image_size == 0 || !image_size.is_multiple_of(*patch_size) {
            return Err(ClipError::Input(format!(
                "image size {image_size} is not a positive multiple of the patch size {patch_size}"
            )));
        }
        if image_size == *current {
            return Ok(self);
        }
        let (old, new) = (*current / *patch_size, image_size / *patch_size);
        let param = &vit.positional_embedding;
        let device = param.device();
        let (pos, [tokens, width]) = values(param.val())?;
        if tokens != old * old + 1 {
            return Err(ClipError::Input(format!(
                "the position embedding has {tokens} rows, not the class token and a {old}×{old} grid"
            )));
        }
        // rows [grid², width] → planes [width, grid, grid], resized, and back
        let planes: Vec<f32> = (0..width)
            .flat_map(|c| (0..old * old).map(move |p| (c, p)))
            .map(|(c, p)| pos[(1 + p) * width + c])
            .collect();
        let resized = clip_data::resize_planes_bicubic(&planes, width, (old, old), (new, new));
        let mut rows = pos[..width].to_vec();
        rows.extend(
            (0..new * new)
                .flat_map(|p| (0..width).map(move |c| (p, c)))
                .map(|(p, c)| resized[c * new * new + p]),
        );
        let tensor = Tensor::from_data(TensorData::new(rows, [new * new + 1, width]), &device);
        vit.positional_embedding = Param::initialized(param.id, tensor);
        vit.image_size = image_size;
        let old_size = *current;
        *current = image_size;
        let p = &mut self.preprocess;
        p.resize_size = (p.resize_size * image_size + old_size / 2) / old_size;
        p.size = image_size;
        Ok(self)
    }

    /// SigLIP at another image size: its position grid (no class token) resized as transformers'
    /// `interpolate_pos_encoding` does (bicubic `F.interpolate`, `align_corners=False`, no antialiasing;
    /// open_clip cannot run timm's SigLIP at another size), the image resized to the new square.
    fn with_siglip_image_size(mut self, image_size: usize) -> Result<Self, ClipError> {
        let (
            VisionConfig::SiglipVit {
                image_size: current,
                patch_size,
                naflex,
                ..
            },
            ImageEncoder::Siglip(tower),
        ) = (&mut self.config.vision, &mut self.model.visual)
        else {
            return Err(ClipError::Input("not a SigLIP model".into()));
        };
        if image_size < *patch_size {
            return Err(ClipError::Input(format!(
                "image size {image_size} is smaller than the patch size {patch_size}"
            )));
        }
        if *naflex {
            // NaFlex resizes its positions to every image's grid already: a size is a patch budget,
            // (size / patch)² patches, as transformers' `max_num_patches` (256 ≈ 256 px at patch 16)
            if !image_size.is_multiple_of(*patch_size) {
                return Err(ClipError::Input(format!(
                    "image size {image_size} is not a multiple of the patch size {patch_size}"
                )));
            }
            let side = image_size / *patch_size;
            self.preprocess.resize_mode = clip_data::ResizeMode::Patches {
                patch_size: *patch_size,
                max_patches: side * side,
            };
            return Ok(self);
        }
        let (old, new) = (*current / *patch_size, image_size / *patch_size);
        if new == old {
            // the same grid (378 and 384 px at patch 14): only the input size changes
            tower.image_size = image_size;
            *current = image_size;
            self.preprocess.size = image_size;
            self.preprocess.resize_size = image_size;
            return Ok(self);
        }
        let param = &tower.positional_embedding;
        let device = param.device();
        let (pos, [tokens, width]) = values(param.val())?;
        if tokens != old * old {
            return Err(ClipError::Input(format!(
                "the position embedding has {tokens} rows, not a {old}×{old} grid"
            )));
        }
        let planes: Vec<f32> = (0..width)
            .flat_map(|c| (0..tokens).map(move |p| (c, p)))
            .map(|(c, p)| pos[p * width + c])
            .collect();
        let resized = clip_data::interpolate_planes_bicubic(&planes, width, (old, old), (new, new));
        let rows: Vec<f32> = (0..new * new)
            .flat_map(|p| (0..width).map(move |c| (p, c)))
            .map(|(p, c)| resized[c * new * new + p])
            .collect();
        let tensor = Tensor::from_data(TensorData::new(rows, [new * new, width]), &device);
        tower.positional_embedding = Param::initialized(param.id, tensor);
        tower.image_size = image_size;
        *current = image_size;
        self.preprocess.size = image_size;
        self.preprocess.resize_size = image_size;
        Ok(self)
    }

    /// The model reading at most `context_length` tokens per text: the text positions are cut to the
    /// first `context_length` (what a causal text tower computes for shorter texts is unchanged), and
    /// the tokenizer truncates there.
    ///
    /// # Errors
    ///
    /// [`ClipError::Input`] for 0 or a context longer than the model's own (positions cannot be made up).
    pub fn with_context_length(mut self, context_length: usize) -> Result<Self, ClipError> {
        let current = self.config.text.context_length;
        if context_length == 0 || context_length > current {
            return Err(ClipError::Input(format!(
                "context length {context_length}: the model has positions for 1 to {current} tokens"
            )));
        }
        if context_length == current {
            return Ok(self);
        }
        let param = &self.model.text.positional_embedding;
        let shorter = param.val().narrow(0, 0, context_length);
        self.model.text.positional_embedding = Param::initialized(param.id, shorter);
        self.config.text.context_length = context_length;
        self.tokenizer = self.tokenizer.with_context_length(context_length)?;
        Ok(self)
    }
}
