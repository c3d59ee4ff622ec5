//! `clip train --config FILE` (TOML or JSON): every option of a run.

use std::path::{Path, PathBuf};

use clip::ClipConfig;
use clip_data::AugmentConfig;
use serde::{Deserialize, Serialize};

use crate::TrainError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossConfig {
    /// Symmetric InfoNCE with weight λ on the image→text direction (½: CLIP).
    InfoNce { lambda: f64, label_smoothing: f64 },
    /// SigLIP's sigmoid loss with a learnable bias.
    Siglip,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataConfig {
    /// Fashion-MNIST scenes rendered on the fly from the IDX files in `dir`.
    FashionScenes { dir: PathBuf },
    /// Images with a captions CSV (`image,caption` header) or JSONL file; unreadable images are skipped
    /// and counted, or refused with `strict`.
    Captions {
        file: PathBuf,
        #[serde(default)]
        strict: bool,
    },
    /// webdataset tar shards (`key.jpg|png|webp` + `key.txt`).
    Shards {
        files: Vec<PathBuf>,
        #[serde(default)]
        strict: bool,
    },
}

impl DataConfig {
    /// Whether unreadable samples are an error.
    pub fn strict(&self) -> bool {
        match self {
            DataConfig::FashionScenes { .. } => false,
            DataConfig::Captions { strict, .. } | DataConfig::Shards { strict, .. } => *strict,
        }
    }

    /// Makes unreadable samples an error (`clip train --strict`); scenes have none.
    pub fn set_strict(&mut self) {
        match self {
            DataConfig::FashionScenes { .. } => {}
            DataConfig::Captions { strict, .. } | DataConfig::Shards { strict, .. } => {
                *strict = true
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ClipConfig,
    pub data: DataConfig,
    pub output: PathBuf,
    pub seed: u64,
    pub steps: usize,
    pub batch_size: usize,
    /// Micro-batches whose gradients are averaged per optimizer step.
    pub accumulation: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global-norm gradient clipping (none when absent).
    pub grad_clip_norm: Option<f64>,
    pub loss: LossConfig,
    pub augment: AugmentConfig,
    pub checkpoint_every: usize,
    /// Zero-shot evaluation on a test subset every N steps (0: only at the end).
    pub eval_every: usize,
    pub eval_samples: usize,
    /// Freeze a tower (open_clip's --lock-image / --lock-text).
    pub lock_image: bool,
    pub lock_text: bool,
    /// Fraction of ViT patch tokens dropped during training (0: off; open_clip's `--patch-dropout`).
    #[serde(default)]
    pub patch_dropout: f64,
    /// Threads that share each micro-batch (0: one per CPU core). Each encodes its part of the batch
    /// and back-propagates its part's share of the whole batch's loss, so the step is the same as on
    /// one thread up to float rounding; resume with the same count for a bit-exact continuation.
    /// ModifiedResNet towers (BatchNorm statistics) always train on one thread.
    #[serde(default)]
    pub threads: usize,
    /// Write the final model with f16 weights (`Pretrained::save_burn_half`, half the size);
    /// checkpoints stay f32.
    #[serde(default)]
    pub half_precision_model: bool,
    /// Stop after this many optimizer steps in this invocation (for tests and time-boxed runs).
    #[serde(default)]
    pub stop_after: Option<usize>,
}

impl TrainConfig {
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Config(format!("cannot read {}: {e}", path.display())))?;
        let config: Self = if path.extension().and_then(|e| e.to_str()) == Some("json") {
            serde_json::from_str(&text)
                .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?
        } else {
            toml::from_str(&text)
                .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        self.model
            .validate()
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.batch_size < 2 {
            return bad("batch_size must be at least 2 (a contrastive batch needs negatives)");
        }
        if self.accumulation == 0 || self.steps == 0 || self.checkpoint_every == 0 {
            return bad("accumulation, steps and checkpoint_every must be positive");
        }
        if self.lr.is_nan()
            || self.lr <= 0.0
            || self.weight_decay < 0.0
            || !(0.0..1.0).contains(&self.beta1)
            || !(0.0..1.0).contains(&self.beta2)
        {
            return bad("lr must be positive, weight_decay non-negative, betas in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.patch_dropout) {
            return bad("patch_dropout must be in [0, 1)");
        }
        if self.lock_image && self.lock_text {
            return bad("locking both towers leaves nothing to train");
        }
        Ok(())
    }
}
