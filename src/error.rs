use std::path::PathBuf;

/// Everything that can go wrong between a path on disk and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot read weights {path}: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("no weights in model directory {dir}: expected one of {expected}, or a single *.safetensors/*.bin/*.pt/*.pth file")]
    NoWeights { dir: PathBuf, expected: String },
    #[error("model directory {dir} holds several weight files ({found}); keep one or pass the file itself")]
    AmbiguousWeights { dir: PathBuf, found: String },
    #[error("weights {path}: tensor {key} has shape {found:?}, the model expects {expected:?}")]
    Shape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("weights {path}: missing tensor {key}")]
    MissingKey { path: PathBuf, key: String },
    #[error("weights {path}: unexpected tensor {key} (not part of a {layout} CLIP model)")]
    UnexpectedKey {
        path: PathBuf,
        key: String,
        layout: &'static str,
    },
    #[error("weights {path}: tensor {key} has unsupported dtype {dtype}")]
    DType {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error(transparent)]
    Image(#[from] clip_data::ImageError),
    #[error(transparent)]
    Tokenizer(#[from] clip_tokenizer::TokenizerError),
    #[error(transparent)]
    ZeroShot(#[from] clip_zeroshot::ZeroShotError),
    #[error("{0}")]
    Input(String),
}
