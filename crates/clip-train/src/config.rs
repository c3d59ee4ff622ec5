//! `clip train --config FILE` (TOML or JSON): every option of a run.
//!
//! ```
//! use clip_train::{DataConfig, TrainConfig};
//!
//! // configs/fashion-scenes.toml, shrunk
//! let config: TrainConfig = toml::from_str(
//!     r#"
//!     output = "runs/tiny"
//!     seed = 17
//!     steps = 100
//!     batch_size = 32
//!     accumulation = 1
//!     lr = 1e-3
//!     warmup_steps = 10
//!     weight_decay = 0.2
//!     beta1 = 0.9
//!     beta2 = 0.98
//!     eps = 1e-6
//!     checkpoint_every = 50
//!     eval_every = 0
//!     eval_samples = 200
//!     lock_image = false
//!     lock_text = false
//!     loss = { kind = "info_nce", lambda = 0.5, label_smoothing = 0.0 }
//!     data = { kind = "fashion_scenes", dir = "/usr/share/datasets/fashion-mnist" }
//!     augment = { brightness = 0.2, contrast = 0.2 }
//!
//!     [model]
//!     embed_dim = 32
//!
//!     [model.vision]
//!     type = "vit"
//!     image_size = 32
//!     patch_size = 8
//!     width = 64
//!     layers = 2
//!     heads = 2
//!     mlp_ratio = 4.0
//!     activation = "quick_gelu"
//!
//!     [model.text]
//!     context_length = 16
//!     vocab_size = 49408
//!     width = 32
//!     heads = 2
//!     layers = 2
//!     mlp_ratio = 4.0
//!     activation = "quick_gelu"
//!     "#,
//! )?;
//! config.validate()?;
//! assert!(matches!(config.data, DataConfig::FashionScenes { .. }));
//! assert_eq!(config.threads, 0); // left out: one thread per core
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use clip::ClipConfig;
use clip_data::AugmentConfig;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The training objective, written as a table with `kind = "info_nce"` or `kind = "siglip"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossConfig {
    /// Symmetric InfoNCE with weight λ on the image→text direction (½: CLIP).
    InfoNce {
        /// Weight of the image→text cross-entropy, in [0, 1]; text→image gets `1 − lambda`.
        lambda: f64,
        /// ε of cross-entropy with label smoothing, in [0, 1) (0: none).
        label_smoothing: f64,
    },
    /// SigLIP's sigmoid loss with a learnable bias.
    Siglip,
}

/// Where the training pairs come from, written as a table with `kind = "fashion_scenes"`,
/// `"captions"` or `"shards"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataConfig {
    /// Fashion-MNIST scenes rendered on the fly from the IDX files in `dir` (when the config leaves
    /// it out: `$FASHION_MNIST_DIR`, else Debian's `/usr/share/datasets/fashion-mnist`).
    FashionScenes {
        /// The directory of the four IDX files.
        #[serde(default = "clip_data::fashion::default_dir")]
        dir: PathBuf,
        /// Share of scenes captioned without their colour ("a sneaker", "a photo of a bag"), 0 to 1
        /// (default 0).
        #[serde(default)]
        plain_captions: f32,
    },
    /// Images with a captions CSV (`image,caption` header) or JSONL file; unreadable images are skipped
    /// and counted, or refused with `strict`.
    Captions {
        /// The `.csv` or `.jsonl` captions file; image paths in it are relative to its directory.
        file: PathBuf,
        /// Refuse the dataset if any image is unreadable (default false: skip and count them).
        #[serde(default)]
        strict: bool,
    },
    /// webdataset tar shards (`key.jpg|png|webp` + `key.txt`).
    Shards {
        /// The tar files, indexed in this order.
        files: Vec<PathBuf>,
        /// Refuse the dataset if any sample is unusable (default false: skip and count them).
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

/// Every option of a training run; unknown keys are refused. Fields marked "default" may be left out
/// of the file, all others are required. [`TrainConfig::validate`] checks the values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The architecture: trained from scratch, or the architecture of the [`init`](Self::init) weights.
    pub model: ClipConfig,
    /// Start from these weights instead of a random initialisation (fine-tuning): a model directory or
    /// weights file as [`clip::Pretrained::load`] takes them (this library's, open_clip's, Hugging
    /// Face's or OpenAI's layout). Its architecture must be `model`. Resuming ignores it: the
    /// checkpoint holds the weights. Relative paths are relative to the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// The training data.
    pub data: DataConfig,
    /// Directory of the run: `checkpoints/step-NNNNNNN/` and, at the end, the model in `model/`.
    pub output: PathBuf,
    /// Seed of the initial weights, the data order, rendering and augmentation: the same config gives
    /// the same run.
    pub seed: u64,
    /// Total optimizer steps of the run (positive).
    pub steps: usize,
    /// Pairs per micro-batch (at least 2: the other pairs are each one's negatives).
    pub batch_size: usize,
    /// Micro-batches whose gradients are averaged per optimizer step (positive).
    pub accumulation: usize,
    /// Peak learning rate (positive), reached after warmup, then cosine decay to 0 at `steps`.
    pub lr: f64,
    /// Steps of linear learning-rate warmup.
    pub warmup_steps: usize,
    /// AdamW's decoupled weight decay (non-negative), on matrices and kernels only: not on gains,
    /// biases, embeddings or the temperature.
    pub weight_decay: f64,
    /// AdamW's β₁, in [0, 1).
    pub beta1: f64,
    /// AdamW's β₂, in [0, 1).
    pub beta2: f64,
    /// AdamW's ε.
    pub eps: f64,
    /// Global-norm gradient clipping (none when absent).
    pub grad_clip_norm: Option<f64>,
    /// The objective.
    pub loss: LossConfig,
    /// Training augmentation of the images.
    pub augment: AugmentConfig,
    /// Write a checkpoint every N steps (positive), and always at the last step of an invocation.
    pub checkpoint_every: usize,
    /// Zero-shot evaluation on a test subset every N steps (0: only at the end). Only the Fashion-MNIST
    /// scenes data has a benchmark; other data is not evaluated.
    pub eval_every: usize,
    /// Test items each evaluation uses (at most the test split's size).
    pub eval_samples: usize,
    /// Freeze the image tower (open_clip's `--lock-image`).
    pub lock_image: bool,
    /// Freeze the text tower, token table included (open_clip's `--lock-text`). Not both.
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
    /// Reads a config file, JSON when its extension is `.json`, TOML otherwise, and
    /// [validates](Self::validate) it. Every failure is a [`TrainError::Config`] naming the file.
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

    /// Whether `world_size` ranks can train this config together: each takes an equal share of
    /// the global batch, and a ModifiedResNet's BatchNorm statistics cannot be shared.
    pub fn check_world_size(&self, world_size: usize) -> Result<(), TrainError> {
        if world_size <= 1 {
            return Ok(());
        }
        if !self.batch_size.is_multiple_of(world_size) {
            return Err(TrainError::Config(format!(
                "batch_size {} is not divisible by the world size {world_size}: every rank takes an \
                 equal share of the global batch",
                self.batch_size
            )));
        }
        if matches!(self.model.vision, clip::VisionConfig::ModifiedResnet { .. }) {
            return Err(TrainError::Config(
                "a ModifiedResNet image tower cannot train across ranks: its BatchNorm statistics \
                 would be each rank's own (train it in one process)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Checks the model config and the values: `batch_size` ≥ 2; `accumulation`, `steps`,
    /// `checkpoint_every` positive; `lr` positive; `weight_decay` non-negative; betas and
    /// `patch_dropout` in [0, 1); not both towers locked. A violation is a [`TrainError::Config`].
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
        if let DataConfig::FashionScenes { plain_captions, .. } = &self.data {
            if !(0.0..=1.0).contains(plain_captions) {
                return bad("data.plain_captions must be in [0, 1]");
            }
        }
        if self.lock_image && self.lock_text {
            return bad("locking both towers leaves nothing to train");
        }
        Ok(())
    }
}
