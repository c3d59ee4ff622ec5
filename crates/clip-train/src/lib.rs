//! Contrastive pre-training of CLIP models on burn, and the Fashion-MNIST scenes benchmark that shows
//! zero-shot transfer to (colour, class) pairs never seen in training.
//!
//! [`train`] runs a whole training run from a [`TrainConfig`] (a TOML or JSON file; `clip train
//! --config FILE` is its command line): a model of any `clip` architecture initialised from the seed,
//! InfoNCE or SigLIP loss ([`LossConfig`]), AdamW with CLIP's decay rules, warmup + cosine learning
//! rate, global-norm clipping, gradient accumulation, tower locking and patch dropout, each
//! micro-batch split over threads. Data ([`DataConfig`]) is Fashion-MNIST scenes rendered on the fly,
//! a captions file or webdataset shards, every sample a pure function of (seed, index). Checkpoints are
//! written atomically and resume exactly: an interrupted run continued from its last checkpoint
//! ([`latest_checkpoint`]) ends with the same weights as one that was never stopped. The finished
//! model is a directory that `clip` loads ([`save_model`]).
//!
//! [`benchmark`] measures a model on the Fashion-MNIST scenes zero-shot: class accuracy on the plain
//! grayscale test split, colour×class accuracy on held-out and seen pairs, and image→text retrieval
//! ([`evaluate`], [`BenchmarkReport`]); training runs it every `eval_every` steps.
//!
//! ```no_run
//! use std::path::Path;
//!
//! use burn::backend::{Autodiff, Flex};
//! use clip_train::{latest_checkpoint, train, TrainConfig};
//!
//! // the config of the bundled model: a small ViT CLIP on Fashion-MNIST scenes
//! let config = TrainConfig::from_file(Path::new("configs/fashion-scenes.toml"))?;
//! // pick up where an interrupted run stopped, if one did
//! let resume = latest_checkpoint(&config);
//! let report = train::<Autodiff<Flex>>(&config, resume.as_deref(), &Default::default())?;
//! if let Some(last) = report.log.last() {
//!     println!("step {}: loss {:.3}, model in {:?}", last.step, last.loss, report.final_dir);
//! }
//! for (step, eval) in &report.evaluations {
//!     println!("step {step}: held-out pairs top-1 {:.3}", eval.held_out_pair_top1);
//! }
//! # Ok::<(), clip_train::TrainError>(())
//! ```

#![warn(missing_docs)]

pub mod benchmark;
mod checkpoint_file;
pub mod collective;
pub mod config;
mod loader;
mod model;
pub mod optim;
mod replicas;
mod source;
pub mod token_rows;
pub mod trainer;

pub use benchmark::{evaluate, BenchmarkReport};
pub use collective::Collective;
pub use config::{DataConfig, LossConfig, TrainConfig};
pub use model::TrainModel;
pub use trainer::{latest_checkpoint, save_model, train, train_with, StepLog, TrainReport};

/// Why training or the benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The config file cannot be read or parsed, a value is out of range, or the data has fewer
    /// usable pairs than one batch.
    #[error("invalid training config: {0}")]
    Config(String),
    /// Building, encoding with or saving the model failed.
    #[error(transparent)]
    Clip(#[from] clip::ClipError),
    /// Fashion-MNIST is missing or damaged.
    #[error(transparent)]
    Data(#[from] clip_data::fashion::FashionError),
    /// A captions file or shard cannot be read, or (with `strict`) has unreadable samples.
    #[error(transparent)]
    Dataset(#[from] clip_data::captions::DatasetError),
    /// A caption or prompt could not be tokenized.
    #[error(transparent)]
    Tokenizer(#[from] clip_tokenizer::TokenizerError),
    /// The loss refused its inputs.
    #[error(transparent)]
    Loss(#[from] clip_loss::LossError),
    /// Building a zero-shot classifier for the benchmark failed.
    #[error(transparent)]
    ZeroShot(#[from] clip_zeroshot::ZeroShotError),
    /// The batch loader stopped, or a sample found no readable image in many draws.
    #[error("data loading: {0}")]
    Loader(String),
    /// A data-parallel run's exchange with the other ranks failed (a rank died or cannot be reached).
    #[error("distributed training: {0}")]
    Collective(String),
    /// A checkpoint could not be written, or read back for a resume.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The checkpoint to resume was trained with another model or loss than the config describes, or
    /// its state does not fit the model.
    #[error("cannot resume: {0}")]
    Architecture(String),
    /// Training diverged; the run can be resumed from the named checkpoint (with a lower learning
    /// rate, for instance).
    #[error(
        "the loss became NaN or infinite at step {step}; the last good checkpoint is {checkpoint}"
    )]
    NonFinite {
        /// The step (1-based) whose loss was not finite.
        step: usize,
        /// The last checkpoint written before it, or `none yet`.
        checkpoint: String,
    },
}
