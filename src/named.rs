//! open_clip's model configs by name (`ViT-B-16-plus-240`, `RN50x4`, …), bundled from the open_clip
//! release in `configs/open_clip_configs.json` (scripts/gen_open_clip_configs.py), so that
//! `Pretrained::load_named(name, weights)` works as `create_model_and_transforms(name, pretrained=file)`.

use std::path::Path;
use std::sync::OnceLock;

use burn::tensor::backend::Backend;
use serde_json::Value;

use crate::config::ClipConfig;
use crate::error::ClipError;
use crate::pretrained::{preprocess_from_open_clip, ConfigSource, Pretrained};

static BUNDLED: &str = include_str!("../configs/open_clip_configs.json");

fn bundled() -> &'static serde_json::Map<String, Value> {
    static PARSED: OnceLock<serde_json::Map<String, Value>> = OnceLock::new();
    PARSED.get_or_init(|| {
        serde_json::from_str::<Value>(BUNDLED)
            .ok()
            .and_then(|v| v.get("configs").and_then(Value::as_object).cloned())
            .unwrap_or_default()
    })
}

/// The names of every bundled open_clip config, sorted (open_clip 3.3.0 ships 144; those with timm
/// or Hugging Face towers are refused by [`ClipConfig::named`], naming the option).
pub fn open_clip_config_names() -> Vec<&'static str> {
    bundled().keys().map(String::as_str).collect()
}

/// open_clip's config JSON for `name`, as its package ships it.
pub fn open_clip_config(name: &str) -> Option<&'static Value> {
    bundled().get(name)
}

impl ClipConfig {
    /// The architecture of open_clip's config `name` (e.g. `"ViT-B-16-plus-240"`).
    ///
    /// # Errors
    ///
    /// [`ClipError::Config`] for an unknown name (with the closest known ones) or a config using an
    /// option this library does not implement (named).
    pub fn named(name: &str) -> Result<Self, ClipError> {
        let json = open_clip_config(name).ok_or_else(|| unknown(name))?;
        ClipConfig::from_open_clip_json(json).map_err(|e| {
            let reason = match e {
                ClipError::Config(message) => message,
                other => other.to_string(),
            };
            ClipError::Config(format!("open_clip config {name}: {reason}"))
        })
    }
}

fn unknown(name: &str) -> ClipError {
    let lower = name.to_lowercase();
    let close: Vec<&str> = open_clip_config_names()
        .into_iter()
        .filter(|n| {
            let n = n.to_lowercase();
            n.contains(&lower) || lower.contains(&n)
        })
        .take(8)
        .collect();
    ClipError::Config(if close.is_empty() {
        format!(
            "no open_clip config is named {name:?} ({} are bundled; `clip info --config NAME`)",
            open_clip_config_names().len()
        )
    } else {
        format!(
            "no open_clip config is named {name:?}; close: {}",
            close.join(", ")
        )
    })
}

impl<B: Backend> Pretrained<B> {
    /// Loads `weights` (any file [`Pretrained::load`] reads) into the architecture of `config`: a
    /// bundled open_clip config name, or a config file (an open_clip model config JSON or an
    /// `open_clip_config.json`). The preprocessing is the config's `preprocess_cfg`, else open_clip's
    /// defaults at its image size.
    ///
    /// # Errors
    ///
    /// Those of [`ClipConfig::named`] and of reading the weights; weights of another architecture are
    /// refused naming the first tensor that does not fit.
    pub fn load_named(
        config: &str,
        weights: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<Self, ClipError> {
        let as_file = Path::new(config);
        let (json, source) = if as_file.is_file() {
            let text = std::fs::read_to_string(as_file).map_err(|source| ClipError::Io {
                path: as_file.to_path_buf(),
                source,
            })?;
            let json: Value = serde_json::from_str(&text).map_err(|source| ClipError::Json {
                path: as_file.to_path_buf(),
                source,
            })?;
            (json, ConfigSource::OpenClip(as_file.to_path_buf()))
        } else {
            let json = open_clip_config(config)
                .cloned()
                .ok_or_else(|| unknown(config))?;
            (json, ConfigSource::Named(config.to_string()))
        };
        let model_config = ClipConfig::from_open_clip_json(&json)
            .map_err(|e| ClipError::Config(format!("config {config}: {e}")))?;
        let preprocess =
            preprocess_from_open_clip(json.get("preprocess_cfg"), model_config.image_size())?;
        Self::from_state_dict_file(weights.as_ref(), model_config, preprocess, source, device)
    }
}

/// The family a bundled open_clip config belongs to, for the supported-models table.
fn family(name: &str) -> &'static str {
    let has = |s: &str| name.contains(s);
    if has("SigLIP2") {
        "SigLIP 2"
    } else if has("SigLIP") || has("siglip") {
        "SigLIP"
    } else if has("CLIPA") {
        "CLIPA"
    } else if has("worldwide") {
        "MetaCLIP 2 (worldwide)"
    } else if name.starts_with("RN") {
        "ModifiedResNet (OpenAI)"
    } else if name.starts_with("EVA") {
        "EVA-CLIP"
    } else if name.starts_with("MobileCLIP") {
        "MobileCLIP"
    } else if name.starts_with("PE-Core") {
        "Perception Encoder"
    } else if name.starts_with("ViTamin") {
        "ViTamin"
    } else if name.starts_with("coca") {
        "CoCa"
    } else if name.starts_with("convnext") {
        "ConvNeXt"
    } else if name.starts_with("nllb") || name.starts_with("mt5") || has("roberta") {
        "multilingual text towers"
    } else if name.starts_with("ViT-") {
        "ViT (OpenAI, LAION, DataComp)"
    } else {
        "other timm towers"
    }
}

/// The config option a refusal names (`vision_cfg.timm_model_name`, …).
fn refused_option(message: &str) -> String {
    let pattern = regex::Regex::new(r"(model_cfg|vision_cfg|text_cfg)\.[a-z_]+").ok();
    pattern
        .and_then(|p| p.find(message).map(|m| m.as_str().to_string()))
        .unwrap_or_else(|| message.to_string())
}

/// The tokenizer a bundled config names: CLIP's BPE unless its text tower brings its own.
fn tokenizer_of(name: &str) -> String {
    let text = open_clip_config(name).and_then(|c| c.get("text_cfg"));
    let named = text.and_then(|t| {
        t.get("hf_tokenizer_name")
            .or_else(|| t.get("hf_model_name"))
            .and_then(Value::as_str)
    });
    match named {
        Some(hf) => format!("`{}`", hf.rsplit('/').next().unwrap_or(hf)),
        None => "CLIP BPE".into(),
    }
}

/// The README's supported-models table, generated from the bundled open_clip configs (a test keeps
/// the README equal to it; `clip info --config table` prints it): per family, how many configs load
/// and which option stops the others.
pub fn supported_models_table() -> String {
    // (family, configs that load, configs refused with the option that stops them)
    type Family = (&'static str, Vec<&'static str>, Vec<(&'static str, String)>);
    let mut families: Vec<Family> = Vec::new();
    for name in open_clip_config_names() {
        let fam = family(name);
        let index = match families.iter().position(|f| f.0 == fam) {
            Some(i) => i,
            None => {
                families.push((fam, Vec::new(), Vec::new()));
                families.len() - 1
            }
        };
        match ClipConfig::named(name) {
            Ok(_) => families[index].1.push(name),
            Err(e) => families[index]
                .2
                .push((name, refused_option(&e.to_string()))),
        }
    }
    families.sort_by_key(|f| (std::cmp::Reverse(f.1.len()), f.0));
    let mut out = String::from(
        "| family | configs | load | layouts | tokenizer | what stops the others |\n|---|---|---|---|---|---|\n",
    );
    for (fam, ok, refused) in families {
        let mut reasons: Vec<String> = refused.iter().map(|(_, r)| format!("`{r}`")).collect();
        reasons.sort();
        reasons.dedup();
        let mut tokenizers: Vec<String> = ok
            .iter()
            .chain(refused.iter().map(|(n, _)| n))
            .map(|n| tokenizer_of(n))
            .collect();
        tokenizers.sort();
        tokenizers.dedup();
        let tokenizer = if tokenizers.len() > 3 {
            "each model's own (Hugging Face)".to_string()
        } else {
            tokenizers.join(", ")
        };
        // transformers' CLIPModel holds the ViTs without layer scale, the layout `save_hf` writes
        let hf = ok
            .iter()
            .filter(|n| ClipConfig::named(n).is_ok_and(|c| c.to_hf_json().is_ok()))
            .count();
        // OpenAI published TorchScript files of its own ViTs and ResNets only
        let layouts = if fam.contains("OpenAI") {
            "open_clip, OpenAI `.pt`"
        } else {
            "open_clip"
        };
        let layouts = match (ok.len(), hf) {
            (0, _) => "—".to_string(),
            (_, 0) => layouts.to_string(),
            (n, h) if n == h => format!("{layouts}, transformers"),
            (n, h) => format!("{layouts}, transformers ({h} of {n})"),
        };
        out.push_str(&format!(
            "| {fam} | {} | {} | {layouts} | {tokenizer} | {} |\n",
            ok.len() + refused.len(),
            ok.len(),
            if reasons.is_empty() {
                "—".to_string()
            } else {
                reasons.join(", ")
            }
        ));
    }
    out
}
