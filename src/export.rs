//! Writing a model in the layouts other tools load: open_clip's directory and a transformers
//! `CLIPModel` directory, with the weights stored in f32, f16 or bf16.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorData};
use clip_data::{Interpolation, ResizeMode};
use serde_json::{json, Value};

use crate::config::{ClipConfig, VisionConfig};
use crate::encoders::Activation;
use crate::error::ClipError;
use crate::pretrained::Pretrained;
use crate::weights::{
    counterpart, open_clip_state_dict, rename, transpose, write_atomic, write_safetensors,
    BLOCK_PARTS, BLOCK_PREFIXES, NORMS, PROJECTIONS, SAME_TENSORS,
};

/// The element type weights are stored in by an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageType {
    /// 32-bit floats (exact).
    F32,
    /// IEEE half precision (half the size).
    F16,
    /// bfloat16 (half the size, f32's range).
    BF16,
}

impl StorageType {
    fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
        }
    }
}

/// Float tensors in `storage`'s type; integer tensors as they are.
fn stored(
    tensors: BTreeMap<String, TensorData>,
    storage: StorageType,
) -> BTreeMap<String, TensorData> {
    tensors
        .into_iter()
        .map(|(k, v)| {
            let v = if v.dtype.is_float() {
                v.convert_dtype(storage.dtype())
            } else {
                v
            };
            (k, v)
        })
        .collect()
}

/// transformers' name for an activation.
fn hf_act(a: Activation) -> &'static str {
    match a {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
        Activation::Relu => "relu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
    }
}

impl ClipConfig {
    /// This architecture as a transformers `CLIPConfig` (`config.json`).
    ///
    /// # Errors
    ///
    /// [`ClipError::Config`] for what `CLIPModel` cannot hold: a ModifiedResNet image tower, or
    /// projections with a bias.
    pub fn to_hf_json(&self) -> Result<Value, ClipError> {
        if let VisionConfig::SiglipVit { .. } = self.vision {
            return self.to_hf_siglip_json();
        }
        let VisionConfig::Vit {
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
        } = &self.vision
        else {
            return Err(ClipError::Config(
                "transformers' CLIPModel has no ModifiedResNet image tower; export to open_clip instead"
                    .into(),
            ));
        };
        if layer_scale.is_some() {
            return Err(ClipError::Config(
                "transformers' CLIPModel has no layer scale (ls_init_value); export to open_clip instead"
                    .into(),
            ));
        }
        if *pool != crate::encoders::VitPool::Token || !ln_pre || *final_ln_after_pool {
            return Err(ClipError::Config(
                "transformers' CLIPModel pools the class token after a pre-norm; this model pools \
                 otherwise (pool_type, no_ln_pre, final_ln_after_pool): export to open_clip instead"
                    .into(),
            ));
        }
        let t = &self.text;
        if !t.causal || t.pool != crate::encoders::TextPool::EndToken || t.end_token.is_some() {
            return Err(ClipError::Config(
                "transformers' CLIPModel has a causal text tower pooled at the end token; this one \
                 is not (no_causal_mask, pool_type, eos_id): export to open_clip instead"
                    .into(),
            ));
        }
        if self.projection_bias {
            return Err(ClipError::Config(
                "transformers' CLIPModel has no projection bias".into(),
            ));
        }
        if !t.projection {
            return Err(ClipError::Config(
                "transformers' CLIPModel always projects the text (this tower has proj_type none): \
                 export to open_clip instead"
                    .into(),
            ));
        }
        Ok(json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.embed_dim,
            "logit_scale_init_value": 2.6592,
            "text_config": {
                "model_type": "clip_text_model",
                "hidden_size": t.width,
                "intermediate_size": (t.width as f64 * t.mlp_ratio).round() as usize,
                "num_attention_heads": t.heads,
                "num_hidden_layers": t.layers,
                "max_position_embeddings": t.context_length,
                "vocab_size": t.vocab_size,
                "hidden_act": hf_act(t.activation),
                "layer_norm_eps": 1e-5,
                "projection_dim": self.embed_dim,
                "bos_token_id": 49406,
                "eos_token_id": 49407,
                "pad_token_id": 1,
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": width,
                "intermediate_size": (*width as f64 * mlp_ratio).round() as usize,
                "num_attention_heads": heads,
                "num_hidden_layers": layers,
                "image_size": image_size,
                "patch_size": patch_size,
                "num_channels": 3,
                "hidden_act": hf_act(*activation),
                "layer_norm_eps": 1e-5,
                "projection_dim": self.embed_dim,
            },
        }))
    }
}

impl ClipConfig {
    /// This SigLIP architecture as a transformers `SiglipConfig` (a NaFlex one as a `Siglip2Config`):
    /// a bidirectional text tower pooled at the last position with a biased head, LayerNorm epsilon
    /// 1e-6, each tower's activation.
    fn to_hf_siglip_json(&self) -> Result<Value, ClipError> {
        let VisionConfig::SiglipVit {
            image_size,
            patch_size,
            width,
            layers,
            heads,
            mlp_ratio,
            activation,
            naflex,
        } = &self.vision
        else {
            return Err(ClipError::Config("not a SigLIP model".into()));
        };
        let t = &self.text;
        let siglip_text = t.projection
            && !t.causal
            && t.pool == crate::encoders::TextPool::Last
            && t.norm_eps == crate::encoders::SIGLIP_NORM_EPS
            && self.projection_bias;
        if self.logit_bias.is_none() {
            return Err(ClipError::Config(
                "transformers' SiglipModel has a logit bias; this model has none (it was trained with \
                 InfoNCE): export to open_clip or burn instead"
                    .into(),
            ));
        }
        if !siglip_text {
            return Err(ClipError::Config(
                "transformers' SiglipModel has a bidirectional text tower pooled at the last \
                 position, with LayerNorm epsilon 1e-6 and a biased head; this one differs: export \
                 to open_clip instead"
                    .into(),
            ));
        }
        let act = |a: Activation| -> Result<&'static str, ClipError> {
            match a {
                Activation::Gelu | Activation::GeluTanh => Ok(hf_act(a)),
                other => Err(ClipError::Config(format!(
                    "transformers' SiglipModel runs GELU, not {other:?}"
                ))),
            }
        };
        let (architecture, kind) = if *naflex {
            ("Siglip2Model", "siglip2")
        } else {
            ("SiglipModel", "siglip")
        };
        let mut config = json!({
            "architectures": [architecture],
            "model_type": kind,
            // the tokenizer's name, which `from_hf_siglip_json` reads back
            "_name_or_path": t.hf_tokenizer.as_ref().map(|h| h.name.clone()),
            "text_config": {
                "model_type": format!("{kind}_text_model"),
                "hidden_size": t.width,
                "intermediate_size": (t.width as f64 * t.mlp_ratio) as usize,
                "num_attention_heads": t.heads,
                "num_hidden_layers": t.layers,
                "max_position_embeddings": t.context_length,
                "vocab_size": t.vocab_size,
                "hidden_act": act(t.activation)?,
                "layer_norm_eps": t.norm_eps,
                "projection_size": self.embed_dim,
            },
            "vision_config": {
                "model_type": format!("{kind}_vision_model"),
                "hidden_size": width,
                "intermediate_size": (*width as f64 * mlp_ratio) as usize,
                "num_attention_heads": heads,
                "num_hidden_layers": layers,
                "image_size": image_size,
                "patch_size": patch_size,
                "num_channels": 3,
                "hidden_act": act(*activation)?,
                "layer_norm_eps": crate::encoders::SIGLIP_NORM_EPS,
                "vision_use_head": true,
            },
        });
        if *naflex {
            // Siglip2's position grid is given as its number of patches, a square
            let side = image_size / patch_size;
            let vision = &mut config["vision_config"];
            vision["num_patches"] = (side * side).into();
            if let Some(v) = vision.as_object_mut() {
                v.remove("image_size");
            }
        }
        Ok(config)
    }
}

/// SigLIP's tensors without a `CLIPModel` counterpart, taken out of `tensors` under transformers'
/// `SiglipModel` names (the inverse of the importer's `take_hf_siglip_heads`): the patch bias, the
/// pooling head with its query and key-value projections packed into `nn.MultiheadAttention`'s
/// `in_proj`, the text head and the logit bias.
fn take_siglip_heads(
    tensors: &mut BTreeMap<String, TensorData>,
) -> Result<BTreeMap<String, TensorData>, ClipError> {
    const RENAMED: [(&str, &str); 10] = [
        (
            "visual.conv1.bias",
            "vision_model.embeddings.patch_embedding.bias",
        ),
        (
            "visual.attn_pool.proj.weight",
            "vision_model.head.attention.out_proj.weight",
        ),
        (
            "visual.attn_pool.proj.bias",
            "vision_model.head.attention.out_proj.bias",
        ),
        (
            "visual.attn_pool.norm.weight",
            "vision_model.head.layernorm.weight",
        ),
        (
            "visual.attn_pool.norm.bias",
            "vision_model.head.layernorm.bias",
        ),
        (
            "visual.attn_pool.mlp.c_fc.weight",
            "vision_model.head.mlp.fc1.weight",
        ),
        (
            "visual.attn_pool.mlp.c_fc.bias",
            "vision_model.head.mlp.fc1.bias",
        ),
        (
            "visual.attn_pool.mlp.c_proj.weight",
            "vision_model.head.mlp.fc2.weight",
        ),
        (
            "visual.attn_pool.mlp.c_proj.bias",
            "vision_model.head.mlp.fc2.bias",
        ),
        ("text_projection.bias", "text_model.head.bias"),
    ];
    let mut out = BTreeMap::new();
    for (ours, hf) in RENAMED {
        if let Some(data) = tensors.remove(ours) {
            out.insert(hf.to_string(), data);
        }
    }
    if let Some(bias) = tensors.remove("logit_bias") {
        out.insert("logit_bias".into(), bias);
    }
    // SiglipModel's temperature is `[1]`, CLIPModel's a scalar
    if let Some(scale) = tensors.remove("logit_scale") {
        let values = scale.convert::<f32>().to_vec::<f32>().unwrap_or_default();
        out.insert("logit_scale".into(), TensorData::new(values, [1]));
    }
    if let Some(projection) = tensors.remove("text_projection") {
        out.insert("text_model.head.weight".into(), transpose(projection));
    }
    if let Some(latent) = tensors.remove("visual.attn_pool.latent") {
        let width = latent.shape[0];
        let values = latent.convert::<f32>().to_vec::<f32>().unwrap_or_default();
        out.insert(
            "vision_model.head.probe".into(),
            TensorData::new(values, [1, 1, width]),
        );
    }
    for kind in ["weight", "bias"] {
        let (Some(q), Some(kv)) = (
            tensors.remove(&format!("visual.attn_pool.q.{kind}")),
            tensors.remove(&format!("visual.attn_pool.kv.{kind}")),
        ) else {
            continue;
        };
        let mut shape = q.shape.to_vec();
        shape[0] += kv.shape[0];
        let values: Vec<f32> = [q, kv]
            .into_iter()
            .flat_map(|t| t.convert::<f32>().to_vec::<f32>().unwrap_or_default())
            .collect();
        out.insert(
            format!("vision_model.head.attention.in_proj_{kind}"),
            TensorData::new(values, shape),
        );
    }
    Ok(out)
}

/// open_clip names → transformers names: q, k and v unpacked, projections transposed to `[out, in]`
/// (the importer's table read the other way).
fn open_clip_to_hf(
    tensors: BTreeMap<String, TensorData>,
) -> Result<BTreeMap<String, TensorData>, ClipError> {
    let mut out = BTreeMap::new();
    for (key, data) in tensors {
        let block = BLOCK_PREFIXES
            .iter()
            .find_map(|(oc, hf)| key.strip_prefix(oc).map(|rest| (*hf, rest)));
        if let Some((prefix, rest)) = block {
            let (layer, tail) = rest.split_once('.').unwrap_or((rest, ""));
            if let Some(kind) = tail.strip_prefix("attn.in_proj_") {
                // rows [q; k; v]
                let values = data
                    .clone()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| ClipError::Input(format!("{key}: {e:?}")))?;
                let per = values.len() / 3;
                let mut shape = data.shape.to_vec();
                shape[0] /= 3;
                for (i, slot) in ["q", "k", "v"].iter().enumerate() {
                    out.insert(
                        format!("{prefix}{layer}.self_attn.{slot}_proj.{kind}"),
                        TensorData::new(values[i * per..(i + 1) * per].to_vec(), shape.clone()),
                    );
                }
                continue;
            }
            out.insert(
                format!("{prefix}{layer}.{}", rename(tail, &BLOCK_PARTS, true)),
                data,
            );
            continue;
        }
        let (name, data) = if let Some(name) = counterpart(&key, &SAME_TENSORS, false) {
            (name.to_string(), data)
        } else if let Some(name) = counterpart(&key, &PROJECTIONS, false) {
            (name.to_string(), transpose(data))
        } else {
            let renamed = rename(&key, &NORMS, true);
            if renamed == key {
                return Err(ClipError::Config(format!(
                    "{key} has no place in transformers' CLIPModel"
                )));
            }
            (renamed, data)
        };
        out.insert(name, data);
    }
    Ok(out)
}

impl<B: Backend> Pretrained<B> {
    /// Exports a transformers `CLIPModel` directory: `model.safetensors`, `config.json` and
    /// `preprocessor_config.json` (`CLIPImageProcessor`), the weights stored as `storage`. No tokenizer
    /// files are written (CLIP's are the standard ones). Checked before anything is written.
    /// `CLIPImageProcessor` rounds its center crop down: a model whose preprocessing rounds to nearest
    /// (open_clip's) can see crops one pixel apart there.
    ///
    /// # Errors
    ///
    /// Those of [`ClipConfig::to_hf_json`], and I/O errors naming the file.
    pub fn save_hf(&self, dir: impl AsRef<Path>, storage: StorageType) -> Result<(), ClipError> {
        let dir = dir.as_ref();
        let config = self.config.to_hf_json()?;
        let siglip = matches!(self.config.vision, VisionConfig::SiglipVit { .. });
        let p = &self.preprocess;
        let patches = match p.resize_mode {
            ResizeMode::Patches {
                patch_size,
                max_patches,
            } => Some((patch_size, max_patches)),
            _ => None,
        };
        if siglip && p.resize_mode != ResizeMode::Squash && patches.is_none() {
            return Err(ClipError::Config(
                "transformers' SiglipImageProcessor resizes to the square without a crop; this \
                 model's preprocessing crops: export to open_clip instead"
                    .into(),
            ));
        }
        let naflex = matches!(
            self.config.vision,
            VisionConfig::SiglipVit { naflex: true, .. }
        );
        let mut canonical = open_clip_state_dict(&self.model)?;
        if naflex {
            // Siglip2Model embeds patches with a Linear over (row, column, channel)
            if let Some(conv) = canonical.remove("visual.conv1.weight") {
                let shape = conv.shape.to_vec();
                let linear = crate::weights::patch_weight(conv, false).ok_or_else(|| {
                    ClipError::Config(format!("patch convolution of shape {shape:?}"))
                })?;
                canonical.insert("visual.conv1.weight".into(), linear);
            }
        }
        let mut tensors = if siglip {
            take_siglip_heads(&mut canonical)?
        } else {
            BTreeMap::new()
        };
        tensors.extend(open_clip_to_hf(canonical)?);
        let tensors = stored(tensors, storage);
        std::fs::create_dir_all(dir).map_err(|source| ClipError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        write_safetensors(&dir.join("model.safetensors"), &tensors)?;
        self.copy_tokenizer(dir)?;
        let resample = match p.interpolation {
            Interpolation::Bicubic => 3,
            Interpolation::Bilinear => 2,
        };
        let preprocessor = if let Some((patch_size, max_patches)) = patches {
            json!({
                "image_processor_type": "Siglip2ImageProcessor",
                "do_resize": true,
                "patch_size": patch_size,
                "max_num_patches": max_patches,
                "resample": resample,
                "do_rescale": true,
                "rescale_factor": 1.0 / 255.0,
                "do_normalize": true,
                "image_mean": p.mean,
                "image_std": p.std,
                "do_convert_rgb": true,
            })
        } else if siglip {
            json!({
                "image_processor_type": "SiglipImageProcessor",
                "do_resize": true,
                "size": {"height": p.size, "width": p.size},
                "resample": resample,
                "do_rescale": true,
                "rescale_factor": 1.0 / 255.0,
                "do_normalize": true,
                "image_mean": p.mean,
                "image_std": p.std,
                "do_convert_rgb": true,
            })
        } else {
            json!({
                "image_processor_type": "CLIPImageProcessor",
                "do_resize": true,
                "size": {"shortest_edge": p.resize_size},
                "resample": resample,
                "do_center_crop": true,
                "crop_size": {"height": p.size, "width": p.size},
                "do_rescale": true,
                "rescale_factor": 1.0 / 255.0,
                "do_normalize": true,
                "image_mean": p.mean,
                "image_std": p.std,
                "do_convert_rgb": true,
            })
        };
        write_atomic(
            &dir.join("preprocessor_config.json"),
            serde_json::to_string_pretty(&preprocessor)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        write_atomic(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&config)
                .unwrap_or_default()
                .as_bytes(),
        )
    }

    /// [`save_open_clip`](Self::save_open_clip) with the weights stored as `storage`.
    pub fn save_open_clip_as(
        &self,
        dir: impl AsRef<Path>,
        storage: StorageType,
    ) -> Result<(), ClipError> {
        self.write_open_clip(dir.as_ref(), |tensors| stored(tensors, storage))
    }
}
