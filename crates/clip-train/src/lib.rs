//! Contrastive pre-training of CLIP models on burn, and the Fashion-MNIST scenes benchmark that shows
//! zero-shot transfer to (colour, class) pairs never seen in training.

pub mod benchmark;
pub mod config;
mod loader;
pub mod optim;
mod replicas;
pub mod token_rows;
pub mod trainer;

pub use benchmark::{evaluate, BenchmarkReport};
pub use config::{DataConfig, LossConfig, TrainConfig};
pub use trainer::{latest_checkpoint, save_model, train, StepLog, TrainModel, TrainReport};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training config: {0}")]
    Config(String),
    #[error(transparent)]
    Clip(#[from] clip::ClipError),
    #[error(transparent)]
    Data(#[from] clip_data::fashion::FashionError),
    #[error(transparent)]
    Dataset(#[from] clip_data::captions::DatasetError),
    #[error(transparent)]
    Tokenizer(#[from] clip_tokenizer::TokenizerError),
    #[error(transparent)]
    Loss(#[from] clip_loss::LossError),
    #[error(transparent)]
    ZeroShot(#[from] clip_zeroshot::ZeroShotError),
    #[error("data loading: {0}")]
    Loader(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("cannot resume: {0}")]
    Architecture(String),
    #[error(
        "the loss became NaN or infinite at step {step}; the last good checkpoint is {checkpoint}"
    )]
    NonFinite { step: usize, checkpoint: String },
}
