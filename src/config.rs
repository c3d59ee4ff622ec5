//! Model architecture: [`ClipConfig`], read from open_clip's model configs, Hugging Face's
//! `config.json`, OpenAI's presets, or inferred from the tensor shapes of a bare state dict.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use clip_encoders::{
    Activation, ModifiedResNetConfig, SiglipVisionConfig, TextPool, TextTransformerConfig,
    VisionTransformerConfig, VitPool, SIGLIP_NORM_EPS,
};
use clip_tokenizer::Cleaning;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ClipError;

/// The image tower.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VisionConfig {
    /// A vision transformer (`ViT-B/32`, …).
    Vit {
        /// Side of the square input image, in pixels.
        image_size: usize,
        /// Side of the square patches; must divide `image_size`.
        patch_size: usize,
        /// Width of the transformer (token dimension).
        width: usize,
        /// Number of residual attention blocks.
        layers: usize,
        /// Attention heads; must divide `width`.
        heads: usize,
        /// MLP hidden size as a multiple of `width`.
        mlp_ratio: f64,
        /// MLP non-linearity.
        activation: Activation,
        /// Layer scale: open_clip's `ls_init_value` (the gains' initial value; loaded weights carry
        /// their own). None: no layer scale.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layer_scale: Option<f64>,
        /// How tokens are pooled: the class token (CLIP) or the patch average (open_clip's
        /// `pool_type = "avg"`).
        #[serde(default, skip_serializing_if = "is_default")]
        pool: VitPool,
        /// A LayerNorm before the transformer (false: open_clip's `no_ln_pre`).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        ln_pre: bool,
        /// `ln_post` after pooling (open_clip's `final_ln_after_pool`).
        #[serde(default, skip_serializing_if = "is_default")]
        final_ln_after_pool: bool,
    },
    /// SigLIP's image tower: timm's `vit_*_siglip_*` (no class token, LayerNorm epsilon 1e-6,
    /// attention pooling); its width is the embedding: no projection.
    SiglipVit {
        /// Side of the square input image, in pixels.
        image_size: usize,
        /// Side of the square patches; must divide `image_size`.
        patch_size: usize,
        /// Width of the transformer, and of the embedding.
        width: usize,
        /// Number of residual attention blocks.
        layers: usize,
        /// Attention heads; must divide `width`.
        heads: usize,
        /// MLP hidden size as a multiple of `width`.
        mlp_ratio: f64,
        /// MLP non-linearity.
        activation: Activation,
        /// SigLIP 2's NaFlex (transformers' `Siglip2Model`): images keep their aspect ratio, and the
        /// square position grid of `image_size / patch_size` patches per side is resized to each
        /// image's grid. false: every image is the square `image_size`.
        #[serde(default, skip_serializing_if = "is_default")]
        naflex: bool,
    },
    /// OpenAI's modified ResNet with an attention pool (`RN50`, …).
    ModifiedResnet {
        /// Side of the square input image, in pixels; a multiple of 32.
        image_size: usize,
        /// Bottleneck blocks in each of the four stages (`[3, 4, 6, 3]` for RN50).
        layers: [usize; 4],
        /// Channels of the stem; the last stage outputs `32 × width`.
        width: usize,
        /// Heads of the attention pool; must divide `32 × width`.
        heads: usize,
    },
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn is_true(value: &bool) -> bool {
    *value
}

fn yes() -> bool {
    true
}

impl VisionConfig {
    /// Side of the square input image, in pixels.
    pub fn image_size(&self) -> usize {
        match self {
            VisionConfig::Vit { image_size, .. }
            | VisionConfig::SiglipVit { image_size, .. }
            | VisionConfig::ModifiedResnet { image_size, .. } => *image_size,
        }
    }
}

/// The text tower: a causal transformer pooled at each text's end token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Tokens per text, start and end tokens included (77 in every released model).
    pub context_length: usize,
    /// Rows of the token embedding (49,408 for CLIP's tokenizer).
    pub vocab_size: usize,
    /// Width of the transformer.
    pub width: usize,
    /// Attention heads; must divide `width`.
    pub heads: usize,
    /// Number of residual attention blocks.
    pub layers: usize,
    /// MLP hidden size as a multiple of `width`.
    pub mlp_ratio: f64,
    /// MLP non-linearity.
    pub activation: Activation,
    /// Causal attention (CLIP's); false is open_clip's `no_causal_mask`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub causal: bool,
    /// Which token is pooled (open_clip's text `pool_type`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub pool: TextPool,
    /// The end token pooled by [`TextPool::EndToken`] (open_clip's `eos_id`); the vocabulary's last id
    /// when absent (CLIP's end token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_token: Option<i64>,
    /// The Hugging Face tokenizer the tower was trained with (open_clip's `hf_tokenizer_name` and
    /// `tokenizer_kwargs`); CLIP's BPE when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_tokenizer: Option<HfTokenizerConfig>,
    /// Epsilon of the tower's LayerNorms (open_clip's `norm_kwargs.eps`; 1e-6 in SigLIP).
    #[serde(default = "clip_norm_eps", skip_serializing_if = "is_clip_norm_eps")]
    pub norm_eps: f64,
    /// A projection into the joint space after pooling (false: open_clip's `proj_type: none`, the
    /// tower as wide as the embedding).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub projection: bool,
}

fn clip_norm_eps() -> f64 {
    clip_encoders::LAYER_NORM_EPS
}

fn is_clip_norm_eps(eps: &f64) -> bool {
    *eps == clip_encoders::LAYER_NORM_EPS
}

/// A Hugging Face tokenizer as an open_clip config names it; its `tokenizer.json` comes with the
/// weights or from the user (`--tokenizer`), since no hub is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HfTokenizerConfig {
    /// The hub name (`bert-base-uncased`, `google/mt5-base`, `timm/ViT-B-16-SigLIP`).
    pub name: String,
    /// The cleaning before encoding (`tokenizer_kwargs.clean`).
    #[serde(default, with = "cleaning_name")]
    pub cleaning: Cleaning,
    /// Whether separator tokens are zeroed (`tokenizer_kwargs.strip_sep_token`, CLIPA's setting).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_sep_token: bool,
}

/// [`Cleaning`] by its open_clip name in JSON.
mod cleaning_name {
    use super::Cleaning;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &Cleaning, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cleaning, D::Error> {
        let name = String::deserialize(d)?;
        Cleaning::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "cleaning {name:?} is not one of whitespace, lower, canonicalize, lowercase"
            ))
        })
    }
}

impl HfTokenizerConfig {
    /// Reads `hf_tokenizer_name` and `tokenizer_kwargs` of an open_clip `text_cfg` (None without a name).
    fn from_text_cfg(t: &serde_json::Map<String, Value>) -> Result<Option<Self>, ClipError> {
        let name = match t.get("hf_tokenizer_name") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(name)) => name.clone(),
            Some(other) => {
                return Err(ClipError::Config(format!(
                    "text_cfg.hf_tokenizer_name {other} is not a string"
                )))
            }
        };
        let mut config = Self {
            name,
            cleaning: Cleaning::default(),
            strip_sep_token: false,
        };
        let Some(kwargs) = t.get("tokenizer_kwargs").filter(|k| !k.is_null()) else {
            return Ok(Some(config));
        };
        let kwargs = kwargs.as_object().ok_or_else(|| {
            ClipError::Config(format!(
                "text_cfg.tokenizer_kwargs {kwargs} is not an object"
            ))
        })?;
        for (key, value) in kwargs {
            match (key.as_str(), value) {
                ("clean", Value::String(name)) => {
                    config.cleaning = Cleaning::from_name(name).ok_or_else(|| {
                        ClipError::Config(format!(
                            "text_cfg.tokenizer_kwargs.clean {name:?} is not one of whitespace, \
                             lower, canonicalize"
                        ))
                    })?;
                }
                ("strip_sep_token", Value::Bool(strip)) => config.strip_sep_token = *strip,
                _ => {
                    return Err(ClipError::Config(format!(
                        "text_cfg.tokenizer_kwargs.{key} = {value} is not supported (clean, \
                         strip_sep_token)"
                    )))
                }
            }
        }
        Ok(Some(config))
    }

    /// The `hf_tokenizer_name` and `tokenizer_kwargs` entries of an open_clip `text_cfg`.
    fn write_text_cfg(&self, text_cfg: &mut Value) {
        text_cfg["hf_tokenizer_name"] = self.name.clone().into();
        text_cfg["tokenizer_kwargs"] = serde_json::json!({
            "clean": self.cleaning.name(), "strip_sep_token": self.strip_sep_token,
        });
    }
}

/// A whole CLIP model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// Dimension of the joint embedding space.
    pub embed_dim: usize,
    /// The image tower.
    pub vision: VisionConfig,
    /// The text tower.
    pub text: TextConfig,
    /// Bias on the projection heads (none in OpenAI/open_clip/HF CLIP; SigLIP's text projection).
    #[serde(default)]
    pub projection_bias: bool,
    /// A learned bias added to the scaled logits (SigLIP's `logit_bias`), with its initial value
    /// (loaded weights carry their own); None: no bias (CLIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<f64>,
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), ClipError> {
    if ok {
        Ok(())
    } else {
        Err(ClipError::Config(what()))
    }
}

impl ClipConfig {
    /// Checks that the sizes fit together (heads divide widths, the image divides into patches, …).
    pub fn validate(&self) -> Result<(), ClipError> {
        check(self.embed_dim > 0, || "embed_dim must be positive".into())?;
        check(
            self.text.projection || self.text.width == self.embed_dim,
            || {
                format!(
                "a text tower without a projection (proj_type none) must be as wide as embed_dim {}, \
                 not {}",
                self.embed_dim, self.text.width
            )
            },
        )?;
        match &self.vision {
            VisionConfig::Vit {
                image_size,
                patch_size,
                width,
                heads,
                layers,
                mlp_ratio,
                ..
            } => {
                check(*patch_size > 0 && image_size % patch_size == 0, || {
                    format!("vision image_size {image_size} is not a multiple of patch_size {patch_size}")
                })?;
                check(*heads > 0 && width % heads == 0, || {
                    format!("vision width {width} is not divisible into {heads} heads")
                })?;
                check(*layers > 0, || "vision layers must be positive".into())?;
                check(*mlp_ratio > 0.0, || {
                    "vision mlp_ratio must be positive".into()
                })?;
            }
            VisionConfig::SiglipVit {
                image_size,
                patch_size,
                width,
                heads,
                layers,
                mlp_ratio,
                ..
            } => {
                // timm's patch convolution drops the remainder (SO400M/14 at 384 px: 27×27 patches)
                check(*patch_size > 0 && image_size >= patch_size, || {
                    format!(
                        "vision image_size {image_size} is smaller than patch_size {patch_size}"
                    )
                })?;
                check(*heads > 0 && width % heads == 0, || {
                    format!("vision width {width} is not divisible into {heads} heads")
                })?;
                check(*layers > 0, || "vision layers must be positive".into())?;
                check(*mlp_ratio > 0.0, || {
                    "vision mlp_ratio must be positive".into()
                })?;
                check(*width == self.embed_dim, || {
                    format!(
                        "a SigLIP image tower of width {width} has no projection, so embed_dim must \
                         be {width}, not {}",
                        self.embed_dim
                    )
                })?;
            }
            VisionConfig::ModifiedResnet {
                image_size,
                width,
                heads,
                layers,
            } => {
                check(image_size % 32 == 0 && *image_size > 0, || {
                    format!("ResNet image_size {image_size} is not a multiple of 32")
                })?;
                check(width % 2 == 0 && *width > 0, || {
                    format!("ResNet width {width} must be even")
                })?;
                check(*heads > 0 && (width * 32) % heads == 0, || {
                    format!(
                        "ResNet embedding {} is not divisible into {heads} heads",
                        width * 32
                    )
                })?;
                check(layers.iter().all(|&l| l > 0), || {
                    format!("ResNet layers {layers:?} must all be positive")
                })?;
            }
        }
        let t = &self.text;
        check(t.heads > 0 && t.width.is_multiple_of(t.heads), || {
            format!(
                "text width {} is not divisible into {} heads",
                t.width, t.heads
            )
        })?;
        check(t.context_length >= 2, || {
            format!("text context_length {} is below 2", t.context_length)
        })?;
        check(
            t.vocab_size > 0 && t.layers > 0 && t.mlp_ratio > 0.0,
            || "text vocab_size, layers and mlp_ratio must be positive".into(),
        )
    }

    /// Side of the square input image, in pixels.
    pub fn image_size(&self) -> usize {
        self.vision.image_size()
    }

    pub(crate) fn text_encoder(&self) -> TextTransformerConfig {
        TextTransformerConfig::new(self.text.width, self.text.heads, self.text.layers)
            .with_context_length(self.text.context_length)
            .with_vocab_size(self.text.vocab_size)
            .with_mlp_ratio(self.text.mlp_ratio)
            .with_activation(self.text.activation)
            // CLIP's BPE puts the start and end tokens last (49406, 49407 of 49408): a model with
            // another vocabulary size pools at its own last id, as OpenAI's argmax(ids) would
            .with_end_of_text(
                self.text
                    .end_token
                    .unwrap_or(self.text.vocab_size as i64 - 1),
            )
            .with_causal(self.text.causal)
            .with_pool(self.text.pool)
            .with_norm_eps(self.text.norm_eps)
    }

    pub(crate) fn image_tower(&self) -> ImageTower {
        match &self.vision {
            VisionConfig::Vit {
                image_size,
                patch_size,
                width,
                layers,
                heads,
                mlp_ratio,
                activation,
                layer_scale,
                pool,
                ln_pre,
                final_ln_after_pool,
            } => ImageTower::Vit(
                VisionTransformerConfig::new(*image_size, *patch_size, *width, *layers, *heads)
                    .with_mlp_ratio(*mlp_ratio)
                    .with_activation(*activation)
                    .with_layer_scale(*layer_scale)
                    .with_pool(*pool)
                    .with_ln_pre(*ln_pre)
                    .with_final_ln_after_pool(*final_ln_after_pool),
            ),
            VisionConfig::SiglipVit {
                image_size,
                patch_size,
                width,
                layers,
                heads,
                mlp_ratio,
                activation,
                naflex,
            } => ImageTower::Siglip(
                SiglipVisionConfig::new(*image_size, *patch_size, *width, *layers, *heads)
                    .with_mlp_ratio(*mlp_ratio)
                    .with_activation(*activation)
                    .with_naflex(*naflex),
            ),
            VisionConfig::ModifiedResnet {
                image_size,
                layers,
                width,
                heads,
            } => ImageTower::ResNet(
                ModifiedResNetConfig::new(*layers, self.embed_dim, *heads)
                    .with_image_size(*image_size)
                    .with_width(*width),
            ),
        }
    }

    /// Builds a randomly initialized model (after [`validate`](Self::validate)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<crate::Clip<B>, ClipError> {
        self.validate()?;
        Ok(crate::Clip::new(self, device))
    }
}

/// The encoder config of the image tower.
pub(crate) enum ImageTower {
    Vit(VisionTransformerConfig),
    Siglip(SiglipVisionConfig),
    ResNet(ModifiedResNetConfig),
}

// ---------------------------------------------------------------------------------------------
// Presets

fn vit(
    embed: usize,
    px: usize,
    patch: usize,
    width: usize,
    layers: usize,
    text: usize,
) -> ClipConfig {
    ClipConfig {
        embed_dim: embed,
        vision: VisionConfig::Vit {
            image_size: px,
            patch_size: patch,
            width,
            layers,
            heads: width / 64,
            mlp_ratio: 4.0,
            activation: Activation::QuickGelu,
            layer_scale: None,
            pool: VitPool::Token,
            ln_pre: true,
            final_ln_after_pool: false,
        },
        text: openai_text(text),
        projection_bias: false,
        logit_bias: None,
    }
}

fn resnet(embed: usize, px: usize, layers: [usize; 4], width: usize, text: usize) -> ClipConfig {
    ClipConfig {
        embed_dim: embed,
        vision: VisionConfig::ModifiedResnet {
            image_size: px,
            layers,
            width,
            heads: width * 32 / 64,
        },
        text: openai_text(text),
        projection_bias: false,
        logit_bias: None,
    }
}

fn openai_text(width: usize) -> TextConfig {
    TextConfig {
        context_length: 77,
        vocab_size: 49408,
        width,
        heads: width / 64,
        layers: 12,
        mlp_ratio: 4.0,
        activation: Activation::QuickGelu,
        causal: true,
        pool: TextPool::EndToken,
        end_token: None,
        hf_tokenizer: None,
        norm_eps: clip_encoders::LAYER_NORM_EPS,
        projection: true,
    }
}

/// Names of OpenAI's released models, as `clip.available_models()` lists them.
pub const PRESETS: [&str; 9] = [
    "RN50",
    "RN101",
    "RN50x4",
    "RN50x16",
    "RN50x64",
    "ViT-B/32",
    "ViT-B/16",
    "ViT-L/14",
    "ViT-L/14@336px",
];

impl ClipConfig {
    /// OpenAI's architectures with QuickGELU, as they were trained. Accepts OpenAI's names
    /// (`ViT-B/32`, `ViT-L/14@336px`) and open_clip's (`ViT-B-32`, `ViT-L-14-336`, `-quickgelu` suffix).
    pub fn preset(name: &str) -> Result<Self, ClipError> {
        let key = name
            .trim_end_matches("-quickgelu")
            .replace('/', "-")
            .replace("@336px", "-336");
        Ok(match key.as_str() {
            "RN50" => resnet(1024, 224, [3, 4, 6, 3], 64, 512),
            "RN101" => resnet(512, 224, [3, 4, 23, 3], 64, 512),
            "RN50x4" => resnet(640, 288, [4, 6, 10, 6], 80, 640),
            "RN50x16" => resnet(768, 384, [6, 8, 18, 8], 96, 768),
            "RN50x64" => resnet(1024, 448, [3, 15, 36, 10], 128, 1024),
            "ViT-B-32" => vit(512, 224, 32, 768, 12, 512),
            "ViT-B-16" => vit(512, 224, 16, 768, 12, 512),
            "ViT-L-14" => vit(768, 224, 14, 1024, 24, 768),
            "ViT-L-14-336" => vit(768, 336, 14, 1024, 24, 768),
            _ => {
                return Err(ClipError::Config(format!(
                    "unknown preset {name:?}; known: {}",
                    PRESETS.join(", ")
                )))
            }
        })
    }

    /// A tiny ViT model for tests and examples (about 1.7 M parameters, mostly token embeddings).
    pub fn tiny_vit() -> Self {
        ClipConfig {
            embed_dim: 32,
            vision: VisionConfig::Vit {
                image_size: 64,
                patch_size: 16,
                width: 64,
                layers: 2,
                heads: 2,
                mlp_ratio: 4.0,
                activation: Activation::QuickGelu,
                layer_scale: None,
                pool: VitPool::Token,
                ln_pre: true,
                final_ln_after_pool: false,
            },
            text: TextConfig {
                context_length: 77,
                vocab_size: 49408,
                width: 32,
                heads: 2,
                layers: 2,
                mlp_ratio: 4.0,
                activation: Activation::QuickGelu,
                causal: true,
                pool: TextPool::EndToken,
                end_token: None,
                hf_tokenizer: None,
                norm_eps: clip_encoders::LAYER_NORM_EPS,
                projection: true,
            },
            projection_bias: false,
            logit_bias: None,
        }
    }

    /// A tiny ModifiedResNet model for tests and examples.
    pub fn tiny_resnet() -> Self {
        ClipConfig {
            embed_dim: 32,
            vision: VisionConfig::ModifiedResnet {
                image_size: 64,
                layers: [1, 1, 1, 1],
                width: 8,
                heads: 4,
            },
            text: TextConfig {
                context_length: 77,
                vocab_size: 49408,
                width: 16,
                heads: 2,
                layers: 2,
                mlp_ratio: 4.0,
                activation: Activation::Gelu,
                causal: true,
                pool: TextPool::EndToken,
                end_token: None,
                hf_tokenizer: None,
                norm_eps: clip_encoders::LAYER_NORM_EPS,
                projection: true,
            },
            projection_bias: false,
            logit_bias: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// open_clip model configs

fn field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    section: &str,
    key: &str,
) -> Result<&'a Value, ClipError> {
    obj.get(key)
        .ok_or_else(|| ClipError::Config(format!("{section}.{key} is missing")))
}

fn as_usize(v: &Value, what: &str) -> Result<usize, ClipError> {
    v.as_u64().map(|n| n as usize).ok_or_else(|| {
        ClipError::Config(format!("{what} must be a non-negative integer, found {v}"))
    })
}

fn opt_usize(
    obj: &serde_json::Map<String, Value>,
    section: &str,
    key: &str,
    default: usize,
) -> Result<usize, ClipError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => as_usize(v, &format!("{section}.{key}")),
    }
}

fn opt_f64(
    obj: &serde_json::Map<String, Value>,
    section: &str,
    key: &str,
    default: f64,
) -> Result<f64, ClipError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_f64().ok_or_else(|| {
            ClipError::Config(format!("{section}.{key} must be a number, found {v}"))
        }),
    }
}

/// A square size given as `n` or `[n, n]`.
fn square(v: &Value, what: &str) -> Result<usize, ClipError> {
    match v {
        Value::Array(a) if a.len() == 2 => {
            let (h, w) = (as_usize(&a[0], what)?, as_usize(&a[1], what)?);
            check(h == w, || {
                format!("{what} {h}x{w}: only square images are supported")
            })?;
            Ok(h)
        }
        v => as_usize(v, what),
    }
}

/// Keys a section may hold, and those that are accepted only at their default (inactive) value.
fn check_keys(
    obj: &serde_json::Map<String, Value>,
    section: &str,
    known: &[&str],
    inactive: &[(&str, Value)],
) -> Result<(), ClipError> {
    for (key, value) in obj {
        if known.contains(&key.as_str()) {
            continue;
        }
        match inactive.iter().find(|(k, _)| k == key) {
            Some((_, default)) if value == default || value.is_null() => continue,
            Some(_) => {
                return Err(ClipError::Config(format!(
                    "{section}.{key} = {value} selects a variant this library does not implement"
                )))
            }
            None => {
                return Err(ClipError::Config(format!(
                    "unknown field {section}.{key} in the model config"
                )))
            }
        }
    }
    Ok(())
}

/// timm's SigLIP image towers that open_clip's configs name: (name, patch, width, depth, heads, MLP
/// ratio, tanh GELU), from timm 1.0's `vision_transformer.py`; the name ends in the image size.
const TIMM_SIGLIP: [(&str, usize, usize, usize, usize, f64, bool); 16] = [
    ("vit_base_patch16_siglip_224", 16, 768, 12, 12, 4.0, false),
    ("vit_base_patch16_siglip_256", 16, 768, 12, 12, 4.0, false),
    ("vit_base_patch16_siglip_384", 16, 768, 12, 12, 4.0, false),
    ("vit_base_patch16_siglip_512", 16, 768, 12, 12, 4.0, false),
    ("vit_base_patch32_siglip_256", 32, 768, 12, 12, 4.0, true),
    ("vit_large_patch16_siglip_256", 16, 1024, 24, 16, 4.0, false),
    ("vit_large_patch16_siglip_384", 16, 1024, 24, 16, 4.0, false),
    ("vit_large_patch16_siglip_512", 16, 1024, 24, 16, 4.0, true),
    (
        "vit_so400m_patch14_siglip_224",
        14,
        1152,
        27,
        16,
        3.7362,
        false,
    ),
    (
        "vit_so400m_patch14_siglip_378",
        14,
        1152,
        27,
        16,
        3.7362,
        false,
    ),
    (
        "vit_so400m_patch14_siglip_384",
        14,
        1152,
        27,
        16,
        3.7362,
        false,
    ),
    (
        "vit_so400m_patch16_siglip_256",
        16,
        1152,
        27,
        16,
        3.7362,
        true,
    ),
    (
        "vit_so400m_patch16_siglip_384",
        16,
        1152,
        27,
        16,
        3.7362,
        true,
    ),
    (
        "vit_so400m_patch16_siglip_512",
        16,
        1152,
        27,
        16,
        3.7362,
        true,
    ),
    (
        "vit_giantopt_patch16_siglip_256",
        16,
        1536,
        40,
        16,
        4.0,
        true,
    ),
    (
        "vit_giantopt_patch16_siglip_384",
        16,
        1536,
        40,
        16,
        4.0,
        true,
    ),
];

/// The SigLIP image tower of an open_clip `vision_cfg` naming a timm model. open_clip ignores the
/// plain size keys for timm towers; given here (`width`, `layers`, `head_width`, `patch_size`,
/// `mlp_ratio`, `image_size`) they override the timm model's, which is how the fixtures describe small
/// towers of the same kind.
fn siglip_from_timm(
    v: &serde_json::Map<String, Value>,
    name: &Value,
) -> Result<VisionConfig, ClipError> {
    let name = name.as_str().unwrap_or_default();
    let Some(&(_, patch, width, layers, heads, mlp_ratio, tanh)) =
        TIMM_SIGLIP.iter().find(|row| row.0 == name)
    else {
        return Err(ClipError::Config(format!(
            "vision_cfg.timm_model_name {name:?}: a timm image tower, which this library implements \
             only for SigLIP's ViTs (the {} `vit_*_siglip_*` models open_clip's configs name)",
            TIMM_SIGLIP.len()
        )));
    };
    check_keys(
        v,
        "vision_cfg",
        &[
            "timm_model_name",
            "timm_model_pretrained",
            "image_size",
            "width",
            "layers",
            "head_width",
            "patch_size",
            "mlp_ratio",
        ],
        &[
            ("timm_pool", Value::String("map".into())),
            ("timm_proj", Value::String("none".into())),
            ("timm_proj_bias", Value::Bool(false)),
        ],
    )?;
    // timm builds the model at the size its name ends in
    let native = name
        .rsplit('_')
        .next()
        .and_then(|px| px.parse::<usize>().ok())
        .unwrap_or(0);
    let image_size = match v.get("image_size") {
        Some(size) => square(size, "vision_cfg.image_size")?,
        None => native,
    };
    let width = opt_usize(v, "vision_cfg", "width", width)?;
    let head_width = opt_usize(v, "vision_cfg", "head_width", width / heads)?;
    check(head_width > 0, || {
        "vision_cfg.head_width must be positive".into()
    })?;
    Ok(VisionConfig::SiglipVit {
        image_size,
        patch_size: opt_usize(v, "vision_cfg", "patch_size", patch)?,
        width,
        layers: opt_usize(v, "vision_cfg", "layers", layers)?,
        heads: width / head_width,
        mlp_ratio: opt_f64(v, "vision_cfg", "mlp_ratio", mlp_ratio)?,
        activation: if tanh {
            Activation::GeluTanh
        } else {
            Activation::Gelu
        },
        naflex: false,
    })
}

/// The `vision_cfg` of a SigLIP image tower: the timm model of its sizes and activation, at its image
/// size; sizes timm has no model for are written out (open_clip ignores them, this library reads them).
fn siglip_vision_cfg(
    image_size: usize,
    patch_size: usize,
    width: usize,
    layers: usize,
    heads: usize,
    mlp_ratio: f64,
    activation: Activation,
) -> Result<Value, ClipError> {
    let tanh = activation == Activation::GeluTanh;
    check(tanh || activation == Activation::Gelu, || {
        format!("timm's SigLIP towers use GELU or tanh GELU, not {activation:?}")
    })?;
    let same_sizes = |row: &&(&str, usize, usize, usize, usize, f64, bool)| {
        (row.1, row.2, row.3, row.4) == (patch_size, width, layers, heads)
            && (row.5 - mlp_ratio).abs() < 1e-9
    };
    let mut cfg = serde_json::json!({
        "image_size": image_size, "timm_pool": "map", "timm_proj": "none",
        "timm_model_pretrained": false,
    });
    let sized: Vec<_> = TIMM_SIGLIP.iter().filter(same_sizes).collect();
    if let Some(row) = sized.iter().find(|row| row.6 == tanh) {
        // timm builds the model at the size its name ends in; another size is this library's
        // extension (`image_size`), which open_clip ignores for timm towers
        let at_size = sized
            .iter()
            .find(|row| row.6 == tanh && row.0.ends_with(&format!("_{image_size}")));
        cfg["timm_model_name"] = at_size.unwrap_or(row).0.into();
    } else if let Some(row) = sized.first() {
        return Err(ClipError::Config(format!(
            "timm's {} has this image tower's sizes but {} GELU, this one {} GELU (transformers runs \
             tanh GELU in every SigLIP): open_clip would compute other numbers; write it with --to hf \
             or --to burn",
            row.0,
            if row.6 { "tanh" } else { "exact" },
            if tanh { "tanh" } else { "exact" }
        )));
    } else {
        // no timm model of these sizes (a small or custom tower): the sizes are written out beside a
        // name of the same activation; this library reads them, open_clip must build the trunk itself
        let Some(row) = TIMM_SIGLIP.iter().find(|row| row.6 == tanh) else {
            return Err(ClipError::Config("no timm SigLIP model to name".into()));
        };
        cfg["timm_model_name"] = row.0.into();
        for (key, value) in [
            ("width", Value::from(width)),
            ("layers", layers.into()),
            ("head_width", (width / heads.max(1)).into()),
            ("patch_size", patch_size.into()),
            ("mlp_ratio", mlp_ratio.into()),
        ] {
            cfg[key] = value;
        }
    }
    Ok(cfg)
}

/// Whether a text tower projects into the joint space (`proj_type`: `linear`, the default, or `none`).
fn text_projection(t: &serde_json::Map<String, Value>) -> Result<bool, ClipError> {
    match t.get("proj_type") {
        None | Some(Value::Null) => Ok(true),
        Some(Value::String(kind)) if kind == "linear" => Ok(true),
        Some(Value::String(kind)) if kind == "none" => Ok(false),
        Some(other) => Err(ClipError::Config(format!(
            "text_cfg.proj_type = {other} is not supported (linear, none)"
        ))),
    }
}

/// A text tower's LayerNorm epsilon (`norm_kwargs.eps`; CLIP's when absent).
fn norm_eps(t: &serde_json::Map<String, Value>, section: &str) -> Result<f64, ClipError> {
    let Some(kwargs) = t.get("norm_kwargs").filter(|k| !k.is_null()) else {
        return Ok(clip_encoders::LAYER_NORM_EPS);
    };
    let eps = kwargs.as_object().and_then(|k| match k.len() {
        0 => Some(clip_encoders::LAYER_NORM_EPS),
        1 => k.get("eps").and_then(Value::as_f64),
        _ => None,
    });
    eps.ok_or_else(|| {
        ClipError::Config(format!(
            "{section}.norm_kwargs = {kwargs} is not supported (only eps)"
        ))
    })
}

/// The text tower's activation: the model's, or tanh GELU with `act_kwargs.approximate = "tanh"`.
fn text_activation(
    t: &serde_json::Map<String, Value>,
    model: Activation,
) -> Result<Activation, ClipError> {
    match t.get("act_kwargs") {
        None | Some(Value::Null) => Ok(model),
        Some(kwargs) if kwargs.as_object().is_some_and(|k| k.is_empty()) => Ok(model),
        Some(kwargs)
            if model == Activation::Gelu
                && kwargs.get("approximate").and_then(Value::as_str) == Some("tanh")
                && kwargs.as_object().is_some_and(|k| k.len() == 1) =>
        {
            Ok(Activation::GeluTanh)
        }
        Some(kwargs) => Err(ClipError::Config(format!(
            "text_cfg.act_kwargs = {kwargs} is not supported (approximate: \"tanh\" with GELU)"
        ))),
    }
}

/// A boolean option of an open_clip config section (absent or null: false).
fn flag(section: &serde_json::Map<String, Value>, key: &str) -> Result<bool, ClipError> {
    match section.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ClipError::Config(format!(
            "{key} {other} is not true or false"
        ))),
    }
}

impl ClipConfig {
    /// Reads an open_clip model config: a file of open_clip's `model_configs/`, its `model_cfg` object,
    /// or a whole `open_clip_config.json` (`{"model_cfg": …, "preprocess_cfg": …}`).
    pub fn from_open_clip_json(json: &Value) -> Result<Self, ClipError> {
        let cfg = json.get("model_cfg").unwrap_or(json);
        let top = cfg
            .as_object()
            .ok_or_else(|| ClipError::Config("the model config is not a JSON object".into()))?;
        // towers from other libraries first: their many options would otherwise be reported one by one
        for (section, key, what) in [("text_cfg", "hf_model_name", "a Hugging Face text tower")] {
            if let Some(name) = top
                .get(section)
                .and_then(|c| c.get(key))
                .filter(|n| !n.is_null())
            {
                return Err(ClipError::Config(format!(
                    "{section}.{key} {name}: {what}, which this library does not implement yet"
                )));
            }
        }
        check_keys(
            top,
            "model_cfg",
            &[
                "embed_dim",
                "quick_gelu",
                "vision_cfg",
                "text_cfg",
                "custom_text",
                "cast_dtype",
                "init_logit_bias",
            ],
            &[("multimodal_cfg", Value::Null)],
        )?;
        let embed_dim = as_usize(field(top, "model_cfg", "embed_dim")?, "model_cfg.embed_dim")?;
        let quick_gelu = top
            .get("quick_gelu")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let activation = if quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };
        let v = field(top, "model_cfg", "vision_cfg")?
            .as_object()
            .ok_or_else(|| ClipError::Config("model_cfg.vision_cfg is not an object".into()))?;
        let timm = v.get("timm_model_name").filter(|n| !n.is_null());
        let vision = match timm {
            Some(name) => Some(siglip_from_timm(v, name)?),
            None => None,
        };
        if vision.is_none() {
            check_keys(
                v,
                "vision_cfg",
                &[
                    "image_size",
                    "layers",
                    "width",
                    "head_width",
                    "mlp_ratio",
                    "patch_size",
                    "patch_dropout",
                    "output_tokens",
                    "ls_init_value",
                    "no_ln_pre",
                    "final_ln_after_pool",
                    "pool_type",
                ],
                &[
                    ("attentional_pool", Value::Bool(false)),
                    ("pos_embed_type", Value::String("learnable".into())),
                    ("timm_model_name", Value::Null),
                    ("act_kwargs", Value::Null),
                    ("norm_kwargs", Value::Null),
                    ("qk_norm", Value::Bool(false)),
                ],
            )?;
        }
        // a timm tower's size comes from its name when the config does not give one
        let image_size = match &vision {
            Some(siglip) => siglip.image_size(),
            None => square(
                field(v, "vision_cfg", "image_size")?,
                "vision_cfg.image_size",
            )?,
        };
        let width = opt_usize(v, "vision_cfg", "width", 768)?;
        let head_width = opt_usize(v, "vision_cfg", "head_width", 64)?;
        check(head_width > 0, || {
            "vision_cfg.head_width must be positive".into()
        })?;
        let vision = match (vision, field(v, "vision_cfg", "layers")) {
            (Some(siglip), _) => siglip,
            (None, Err(e)) => return Err(e),
            (None, Ok(Value::Array(layers))) => {
                check(layers.len() == 4, || {
                    format!(
                        "vision_cfg.layers has {} stages; a ModifiedResNet has 4",
                        layers.len()
                    )
                })?;
                let mut l = [0; 4];
                for (i, x) in layers.iter().enumerate() {
                    l[i] = as_usize(x, "vision_cfg.layers[i]")?;
                }
                VisionConfig::ModifiedResnet {
                    image_size,
                    layers: l,
                    width,
                    heads: width * 32 / head_width,
                }
            }
            (None, Ok(layers)) => VisionConfig::Vit {
                image_size,
                patch_size: opt_usize(v, "vision_cfg", "patch_size", 16)?,
                width,
                layers: as_usize(layers, "vision_cfg.layers")?,
                heads: width / head_width,
                mlp_ratio: opt_f64(v, "vision_cfg", "mlp_ratio", 4.0)?,
                activation,
                pool: match v.get("pool_type").and_then(Value::as_str) {
                    None | Some("tok") => VitPool::Token,
                    Some("avg") => VitPool::Average,
                    Some(other) => {
                        return Err(ClipError::Config(format!(
                            "vision_cfg.pool_type {other:?} is not supported (tok, avg)"
                        )))
                    }
                },
                ln_pre: !flag(v, "no_ln_pre")?,
                final_ln_after_pool: flag(v, "final_ln_after_pool")?,
                layer_scale: match v.get("ls_init_value") {
                    None | Some(Value::Null) => None,
                    Some(x) => Some(x.as_f64().ok_or_else(|| {
                        ClipError::Config(format!("vision_cfg.ls_init_value {x} is not a number"))
                    })?),
                },
            },
        };
        let t = field(top, "model_cfg", "text_cfg")?
            .as_object()
            .ok_or_else(|| ClipError::Config("model_cfg.text_cfg is not an object".into()))?;
        check_keys(
            t,
            "text_cfg",
            &[
                "context_length",
                "vocab_size",
                "width",
                "heads",
                "layers",
                "mlp_ratio",
                "output_tokens",
                "no_causal_mask",
                "pool_type",
                "eos_id",
                "hf_tokenizer_name",
                "tokenizer_kwargs",
                "proj_bias",
                "norm_kwargs",
                "act_kwargs",
                "proj_type",
            ],
            &[
                ("hf_model_name", Value::Null),
                ("ls_init_value", Value::Null),
                ("embed_cls", Value::Bool(false)),
                ("pad_id", Value::from(0)),
                ("final_ln_after_pool", Value::Bool(false)),
            ],
        )?;
        let text = TextConfig {
            context_length: opt_usize(t, "text_cfg", "context_length", 77)?,
            vocab_size: opt_usize(t, "text_cfg", "vocab_size", 49408)?,
            width: opt_usize(t, "text_cfg", "width", 512)?,
            heads: opt_usize(t, "text_cfg", "heads", 8)?,
            layers: opt_usize(t, "text_cfg", "layers", 12)?,
            mlp_ratio: opt_f64(t, "text_cfg", "mlp_ratio", 4.0)?,
            activation: text_activation(t, activation)?,
            causal: !flag(t, "no_causal_mask")?,
            pool: match t.get("pool_type").and_then(Value::as_str) {
                None | Some("argmax") | Some("eos") => TextPool::EndToken,
                Some("first") => TextPool::First,
                Some("last") => TextPool::Last,
                Some(other) => {
                    return Err(ClipError::Config(format!(
                        "text_cfg.pool_type {other:?} is not supported (argmax, eos, first, last)"
                    )))
                }
            },
            // open_clip's `eos` pools at eos_id (2 unless given); `argmax` at the largest id, which
            // CLIP's tokenizer makes the end token
            end_token: match t.get("pool_type").and_then(Value::as_str) {
                Some("eos") => Some(opt_usize(t, "text_cfg", "eos_id", 2)? as i64),
                _ => None,
            },
            hf_tokenizer: HfTokenizerConfig::from_text_cfg(t)?,
            norm_eps: norm_eps(t, "text_cfg")?,
            projection: text_projection(t)?,
        };
        // one flag covers both projections here: a text bias needs an image tower without one
        let projection_bias = flag(t, "proj_bias")?;
        check(
            !projection_bias || matches!(vision, VisionConfig::SiglipVit { .. }),
            || "text_cfg.proj_bias with a projected image tower is not supported".into(),
        )?;
        let logit_bias = match top.get("init_logit_bias") {
            None | Some(Value::Null) => None,
            Some(b) => Some(b.as_f64().ok_or_else(|| {
                ClipError::Config(format!("model_cfg.init_logit_bias {b} is not a number"))
            })?),
        };
        let config = ClipConfig {
            embed_dim,
            vision,
            text,
            projection_bias,
            logit_bias,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads transformers' `SiglipConfig` (`model_type: "siglip"`): the same towers as open_clip's SigLIP
    /// (its defaults are SigLIP base/16 at 224 px), with the activation the config names
    /// (`gelu_pytorch_tanh` in every released one) and the tokenizer beside the weights. With
    /// `naflex`, transformers' `Siglip2Config` (`model_type: "siglip2"`): the same towers, the image
    /// one NaFlex, its position grid given as `num_patches` (a square) instead of `image_size`.
    fn from_hf_siglip_json(json: &Value, naflex: bool) -> Result<Self, ClipError> {
        let section = |name: &str| {
            json.get(name)
                .and_then(Value::as_object)
                .ok_or_else(|| ClipError::Config(format!("config.json has no {name} object")))
        };
        let (t, v) = (section("text_config")?, section("vision_config")?);
        let act =
            |obj: &serde_json::Map<String, Value>, name: &str| -> Result<Activation, ClipError> {
                match obj
                    .get("hidden_act")
                    .and_then(Value::as_str)
                    .unwrap_or("gelu_pytorch_tanh")
                {
                    "gelu_pytorch_tanh" | "gelu_new" => Ok(Activation::GeluTanh),
                    "gelu" => Ok(Activation::Gelu),
                    other => Err(ClipError::Config(format!(
                        "{name}.hidden_act {other:?} is not supported (gelu_pytorch_tanh, gelu)"
                    ))),
                }
            };
        for (obj, name) in [(t, "text_config"), (v, "vision_config")] {
            let eps = opt_f64(obj, name, "layer_norm_eps", 1e-6)?;
            check((eps - SIGLIP_NORM_EPS).abs() < 1e-12, || {
                format!("{name}.layer_norm_eps {eps} differs from SigLIP's 1e-6")
            })?;
        }
        check(
            v.get("vision_use_head").and_then(Value::as_bool) != Some(false),
            || "vision_config.vision_use_head false (no pooling head) is not supported".into(),
        )?;
        let hidden_t = opt_usize(t, "text_config", "hidden_size", 768)?;
        let hidden_v = opt_usize(v, "vision_config", "hidden_size", 768)?;
        let ratio = |obj, name, hidden: usize| -> Result<f64, ClipError> {
            Ok(opt_usize(obj, name, "intermediate_size", 3072)? as f64 / hidden as f64)
        };
        let projection = opt_usize(t, "text_config", "projection_size", hidden_t)?;
        check(projection == hidden_v, || {
            format!(
                "text_config.projection_size {projection} differs from the image tower's width \
                 {hidden_v}: the embeddings would not meet"
            )
        })?;
        let patch_size = opt_usize(v, "vision_config", "patch_size", 16)?;
        let image_size = if naflex {
            let patches = opt_usize(v, "vision_config", "num_patches", 256)?;
            let side = (patches as f64).sqrt().round() as usize;
            check(side * side == patches && side > 0, || {
                format!("vision_config.num_patches {patches} is not a square grid")
            })?;
            side * patch_size
        } else {
            opt_usize(v, "vision_config", "image_size", 224)?
        };
        let config = ClipConfig {
            embed_dim: hidden_v,
            vision: VisionConfig::SiglipVit {
                image_size,
                patch_size,
                width: hidden_v,
                layers: opt_usize(v, "vision_config", "num_hidden_layers", 12)?,
                heads: opt_usize(v, "vision_config", "num_attention_heads", 12)?,
                mlp_ratio: ratio(v, "vision_config", hidden_v)?,
                activation: act(v, "vision_config")?,
                naflex,
            },
            text: TextConfig {
                context_length: opt_usize(t, "text_config", "max_position_embeddings", 64)?,
                vocab_size: opt_usize(t, "text_config", "vocab_size", 32000)?,
                width: hidden_t,
                heads: opt_usize(t, "text_config", "num_attention_heads", 12)?,
                layers: opt_usize(t, "text_config", "num_hidden_layers", 12)?,
                mlp_ratio: ratio(t, "text_config", hidden_t)?,
                activation: act(t, "text_config")?,
                causal: false,
                pool: TextPool::Last,
                end_token: None,
                // open_clip runs SigLIP's tokenizer with canonicalize; transformers' Siglip2Tokenizer
                // only lowercases
                hf_tokenizer: Some(HfTokenizerConfig {
                    name: json
                        .get("_name_or_path")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .unwrap_or("SigLIP's tokenizer")
                        .to_string(),
                    cleaning: if naflex {
                        Cleaning::Lowercase
                    } else {
                        Cleaning::Canonicalize
                    },
                    strip_sep_token: false,
                }),
                norm_eps: SIGLIP_NORM_EPS,
                projection: true,
            },
            projection_bias: true,
            logit_bias: Some(-10.0),
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads a Hugging Face `CLIPConfig` (`config.json` with `text_config` and `vision_config`).
    pub fn from_hf_json(json: &Value) -> Result<Self, ClipError> {
        if let Some(kind) = json.get("model_type").and_then(Value::as_str) {
            if kind == "siglip" || kind == "siglip2" {
                return Self::from_hf_siglip_json(json, kind == "siglip2");
            }
            check(kind == "clip", || {
                format!(
                    "config.json has model_type {kind:?}; only \"clip\", \"siglip\" and \"siglip2\" \
                     are supported"
                )
            })?;
        }
        let section = |name: &str| {
            json.get(name)
                .and_then(Value::as_object)
                .ok_or_else(|| ClipError::Config(format!("config.json has no {name} object")))
        };
        let t = section("text_config")?;
        let v = section("vision_config")?;
        let act =
            |obj: &serde_json::Map<String, Value>, name: &str| -> Result<Activation, ClipError> {
                match obj
                    .get("hidden_act")
                    .and_then(Value::as_str)
                    .unwrap_or("quick_gelu")
                {
                    "quick_gelu" => Ok(Activation::QuickGelu),
                    "gelu" => Ok(Activation::Gelu),
                    "relu" => Ok(Activation::Relu),
                    other => Err(ClipError::Config(format!(
                        "{name}.hidden_act {other:?} is not supported (quick_gelu, gelu, relu)"
                    ))),
                }
            };
        for (obj, name) in [(t, "text_config"), (v, "vision_config")] {
            let eps = opt_f64(obj, name, "layer_norm_eps", 1e-5)?;
            check((eps - 1e-5).abs() < 1e-12, || {
                format!("{name}.layer_norm_eps {eps} differs from CLIP's 1e-5")
            })?;
        }
        let hidden_t = opt_usize(t, "text_config", "hidden_size", 512)?;
        let hidden_v = opt_usize(v, "vision_config", "hidden_size", 768)?;
        let ratio = |obj, name, hidden: usize, default: usize| -> Result<f64, ClipError> {
            Ok(opt_usize(obj, name, "intermediate_size", default)? as f64 / hidden as f64)
        };
        let config = ClipConfig {
            embed_dim: opt_usize(
                json.as_object()
                    .ok_or_else(|| ClipError::Config("config.json is not an object".into()))?,
                "config",
                "projection_dim",
                512,
            )?,
            vision: VisionConfig::Vit {
                image_size: opt_usize(v, "vision_config", "image_size", 224)?,
                patch_size: opt_usize(v, "vision_config", "patch_size", 32)?,
                width: hidden_v,
                layers: opt_usize(v, "vision_config", "num_hidden_layers", 12)?,
                heads: opt_usize(v, "vision_config", "num_attention_heads", 12)?,
                mlp_ratio: ratio(v, "vision_config", hidden_v, 3072)?,
                activation: act(v, "vision_config")?,
                layer_scale: None,
                pool: VitPool::Token,
                ln_pre: true,
                final_ln_after_pool: false,
            },
            text: TextConfig {
                context_length: opt_usize(t, "text_config", "max_position_embeddings", 77)?,
                vocab_size: opt_usize(t, "text_config", "vocab_size", 49408)?,
                width: hidden_t,
                heads: opt_usize(t, "text_config", "num_attention_heads", 8)?,
                layers: opt_usize(t, "text_config", "num_hidden_layers", 12)?,
                mlp_ratio: ratio(t, "text_config", hidden_t, 2048)?,
                activation: act(t, "text_config")?,
                causal: true,
                pool: TextPool::EndToken,
                end_token: None,
                hf_tokenizer: None,
                norm_eps: clip_encoders::LAYER_NORM_EPS,
                projection: true,
            },
            projection_bias: false,
            logit_bias: None,
        };
        config.validate()?;
        Ok(config)
    }

    /// Infers the architecture from tensor shapes, as OpenAI's `build_model` does (heads = width / 64).
    /// Works on open_clip/OpenAI keys and on Hugging Face keys. Bare state dicts do not say which
    /// activation was trained; OpenAI's QuickGELU is assumed, as `build_model` does.
    pub fn infer(shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self, ClipError> {
        let dim = |key: &str, axis: usize| -> Result<usize, ClipError> {
            shapes
                .get(key)
                .and_then(|s| s.get(axis).copied())
                .ok_or_else(|| {
                    ClipError::Config(format!("cannot infer the architecture: no tensor {key}"))
                })
        };
        let count = |prefix: &str, suffix: &str| {
            shapes
                .keys()
                .filter_map(|k| k.strip_prefix(prefix))
                .filter(|rest| rest.ends_with(suffix))
                .filter_map(|rest| rest.split('.').next())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        // Heads are not stored in a state dict; OpenAI's models all use 64-wide heads.
        let heads = |width: usize, what: &str| -> Result<usize, ClipError> {
            if width >= 64 && width.is_multiple_of(64) {
                Ok(width / 64)
            } else {
                Err(ClipError::Config(format!(
                    "cannot infer the {what} head count from a bare state dict: width {width} is not a multiple of 64 (OpenAI's head width); put an open_clip_config.json or config.json next to the weights"
                )))
            }
        };
        let side = |tokens: usize| ((tokens.saturating_sub(1)) as f64).sqrt().round() as usize;
        let activation = Activation::QuickGelu;
        let config = if shapes.contains_key("text_model.embeddings.token_embedding.weight") {
            let hv = dim("vision_model.embeddings.patch_embedding.weight", 0)?;
            let patch = dim("vision_model.embeddings.patch_embedding.weight", 3)?;
            let ht = dim("text_model.final_layer_norm.weight", 0)?;
            ClipConfig {
                embed_dim: dim("text_projection.weight", 0)?,
                vision: VisionConfig::Vit {
                    image_size: patch
                        * side(dim("vision_model.embeddings.position_embedding.weight", 0)?),
                    patch_size: patch,
                    width: hv,
                    layers: count("vision_model.encoder.layers.", ".self_attn.q_proj.weight"),
                    heads: heads(hv, "vision")?,
                    mlp_ratio: dim("vision_model.encoder.layers.0.mlp.fc1.weight", 0)? as f64
                        / hv as f64,
                    activation,
                    layer_scale: None,
                    pool: VitPool::Token,
                    ln_pre: true,
                    final_ln_after_pool: false,
                },
                text: TextConfig {
                    context_length: dim("text_model.embeddings.position_embedding.weight", 0)?,
                    vocab_size: dim("text_model.embeddings.token_embedding.weight", 0)?,
                    width: ht,
                    heads: heads(ht, "text")?,
                    layers: count("text_model.encoder.layers.", ".self_attn.q_proj.weight"),
                    mlp_ratio: dim("text_model.encoder.layers.0.mlp.fc1.weight", 0)? as f64
                        / ht as f64,
                    activation,
                    causal: true,
                    pool: TextPool::EndToken,
                    end_token: None,
                    hf_tokenizer: None,
                    norm_eps: clip_encoders::LAYER_NORM_EPS,
                    projection: true,
                },
                projection_bias: false,
                logit_bias: None,
            }
        } else {
            let vision = if shapes.contains_key("visual.proj") {
                let width = dim("visual.conv1.weight", 0)?;
                let patch = dim("visual.conv1.weight", 3)?;
                VisionConfig::Vit {
                    image_size: patch * side(dim("visual.positional_embedding", 0)?),
                    patch_size: patch,
                    width,
                    layers: count("visual.transformer.resblocks.", ".attn.in_proj_weight"),
                    heads: heads(width, "vision")?,
                    mlp_ratio: dim("visual.transformer.resblocks.0.mlp.c_fc.weight", 0)? as f64
                        / width as f64,
                    activation,
                    // the gains' initial value is not in the weights; they carry their own
                    layer_scale: shapes
                        .contains_key("visual.transformer.resblocks.0.ls_1.gamma")
                        .then_some(1e-5),
                    // average pooling cannot be told from the weights; class-token pooling assumed
                    pool: VitPool::Token,
                    ln_pre: shapes.contains_key("visual.ln_pre.weight"),
                    final_ln_after_pool: false,
                }
            } else {
                let width = dim("visual.layer1.0.conv1.weight", 0)?;
                let mut layers = [0; 4];
                for (i, l) in layers.iter_mut().enumerate() {
                    *l = count(&format!("visual.layer{}.", i + 1), ".conv1.weight");
                }
                VisionConfig::ModifiedResnet {
                    image_size: 32 * side(dim("visual.attnpool.positional_embedding", 0)?),
                    layers,
                    width,
                    heads: heads(width * 32, "attention pool")?,
                }
            };
            let width = dim("ln_final.weight", 0)?;
            ClipConfig {
                embed_dim: dim("text_projection", 1)?,
                vision,
                text: TextConfig {
                    context_length: dim("positional_embedding", 0)?,
                    vocab_size: dim("token_embedding.weight", 0)?,
                    width,
                    heads: heads(width, "text")?,
                    layers: count("transformer.resblocks.", ".attn.in_proj_weight"),
                    mlp_ratio: dim("transformer.resblocks.0.mlp.c_fc.weight", 0)? as f64
                        / width as f64,
                    activation,
                    causal: true,
                    pool: TextPool::EndToken,
                    end_token: None,
                    hf_tokenizer: None,
                    norm_eps: clip_encoders::LAYER_NORM_EPS,
                    projection: true,
                },
                projection_bias: shapes.contains_key("text_projection.bias"),
                logit_bias: None,
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// The config as open_clip's `model_cfg` JSON. open_clip has one activation flag for both towers
    /// (`quick_gelu`) and knows only GELU and QuickGELU, so other choices are refused rather than
    /// exported as a different model.
    pub fn to_open_clip_json(&self) -> Result<Value, ClipError> {
        let (vision_cfg, vision_activation) = match &self.vision {
            VisionConfig::SiglipVit {
                image_size,
                patch_size,
                width,
                layers,
                heads,
                mlp_ratio,
                activation,
                naflex,
            } => (
                {
                    check(!naflex, || {
                        "open_clip has no NaFlex image tower (SigLIP 2 with images of any \
                         aspect ratio); export this model with --to hf"
                            .into()
                    })?;
                    siglip_vision_cfg(
                        *image_size,
                        *patch_size,
                        *width,
                        *layers,
                        *heads,
                        *mlp_ratio,
                        *activation,
                    )?
                },
                Activation::Gelu,
            ),
            VisionConfig::Vit {
                image_size,
                patch_size,
                width,
                layers,
                heads,
                mlp_ratio,
                activation,
                layer_scale,
                pool,
                ln_pre,
                final_ln_after_pool,
            } => (
                serde_json::json!({
                    "image_size": image_size, "layers": layers, "width": width,
                    "head_width": width / heads, "mlp_ratio": mlp_ratio, "patch_size": patch_size,
                    "ls_init_value": layer_scale, "pool_type": pool, "no_ln_pre": !ln_pre,
                    "final_ln_after_pool": final_ln_after_pool,
                }),
                *activation,
            ),
            VisionConfig::ModifiedResnet {
                image_size,
                layers,
                width,
                heads,
            } => (
                serde_json::json!({
                    "image_size": image_size, "layers": layers, "width": width,
                    "head_width": width * 32 / heads, "patch_size": null,
                }),
                // the ResNet has no MLP; the flag is the text tower's
                self.text.activation,
            ),
        };
        let quick_gelu = match (vision_activation, self.text.activation) {
            // tanh GELU in the text tower is `act_kwargs` (SigLIP 2's)
            (Activation::Gelu, Activation::Gelu | Activation::GeluTanh) => false,
            (Activation::QuickGelu, Activation::QuickGelu) => true,
            (image, text) => {
                return Err(ClipError::Config(format!(
                "open_clip cannot express this model's activations (image tower {image:?}, text \
                     tower {text:?}): its configs have one flag for both towers, GELU or QuickGELU"
            )))
            }
        };
        let t = &self.text;
        let mut text_cfg = serde_json::json!({
            "context_length": t.context_length, "vocab_size": t.vocab_size,
            "width": t.width, "heads": t.heads, "layers": t.layers,
            "mlp_ratio": t.mlp_ratio, "no_causal_mask": !t.causal,
        });
        // open_clip pools the largest id (`argmax`), a given one (`eos`), or a position
        let pool = match (t.pool, t.end_token) {
            (TextPool::EndToken, None) => "argmax",
            (TextPool::EndToken, Some(id)) => {
                text_cfg["eos_id"] = id.into();
                "eos"
            }
            (TextPool::First, _) => "first",
            (TextPool::Last, _) => "last",
        };
        text_cfg["pool_type"] = pool.into();
        if let Some(tokenizer) = &t.hf_tokenizer {
            tokenizer.write_text_cfg(&mut text_cfg);
        }
        if !t.projection {
            text_cfg["proj_type"] = "none".into();
        }
        if t.norm_eps != clip_encoders::LAYER_NORM_EPS {
            text_cfg["norm_kwargs"] = serde_json::json!({ "eps": t.norm_eps });
        }
        if t.activation == Activation::GeluTanh {
            text_cfg["act_kwargs"] = serde_json::json!({ "approximate": "tanh" });
        }
        let siglip = matches!(self.vision, VisionConfig::SiglipVit { .. });
        if self.projection_bias {
            check(siglip, || {
                "open_clip has a projection bias only on a SigLIP text tower".into()
            })?;
            text_cfg["proj_bias"] = true.into();
        }
        let mut model_cfg = serde_json::json!({
            "embed_dim": self.embed_dim,
            "quick_gelu": quick_gelu,
            "vision_cfg": vision_cfg,
            "text_cfg": text_cfg,
        });
        // SigLIP's text tower is open_clip's custom one (its keys under `text.`)
        if siglip {
            model_cfg["custom_text"] = true.into();
        }
        if let Some(bias) = self.logit_bias {
            model_cfg["init_logit_bias"] = bias.into();
        }
        Ok(model_cfg)
    }
}
