//! [`ClipError`], the one error type of this crate's API.

use std::path::PathBuf;

/// Everything that can go wrong between a path on disk and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// A model or preprocessing config is inconsistent, incomplete or asks for something this library
    /// does not implement; the message says which field.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A file or directory could not be read (or created).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config file is not valid JSON, or not of the expected structure.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The config file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A weights file could not be parsed, or its tensors not be applied to the model.
    #[error("cannot read weights {path}: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A model directory holds no weights file this library recognizes.
    #[error("no weights in model directory {dir}: expected one of {expected}, or a single *.safetensors/*.bin/*.pt/*.pth file")]
    NoWeights {
        /// The model directory.
        dir: PathBuf,
        /// The file names looked for, comma-separated.
        expected: String,
    },
    /// A model directory holds several candidate weights files and none of the preferred names.
    #[error("model directory {dir} holds several weight files ({found}); keep one or pass the file itself")]
    AmbiguousWeights {
        /// The model directory.
        dir: PathBuf,
        /// The candidates, comma-separated.
        found: String,
    },
    /// A tensor's shape does not match the parameter it is loaded into.
    #[error("weights {path}: tensor {key} has shape {found:?}, the model expects {expected:?}")]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the file.
        key: String,
        /// The shape the model needs (in the file's convention).
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A parameter of the model has no tensor in the file.
    #[error("weights {path}: missing tensor {key}")]
    MissingKey {
        /// The weights file.
        path: PathBuf,
        /// The missing tensor's name.
        key: String,
    },
    /// The file holds a tensor that is no parameter of the model (a different architecture, or a
    /// variant this library does not implement).
    #[error("weights {path}: unexpected tensor {key} (not part of a {layout} CLIP model)")]
    UnexpectedKey {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the file.
        key: String,
        /// The layout the file was read as ([`Layout::name`](crate::Layout::name)).
        layout: &'static str,
    },
    /// A safetensors tensor is stored in a dtype this library does not read (it reads f32, f16, bf16,
    /// f64 and i64).
    #[error("weights {path}: tensor {key} has unsupported dtype {dtype}")]
    DType {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        key: String,
        /// Its dtype.
        dtype: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An image could not be read or decoded.
    #[error(transparent)]
    Image(#[from] clip_data::ImageError),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] clip_tokenizer::TokenizerError),
    /// Building, saving or loading a zero-shot classifier failed.
    #[error(transparent)]
    ZeroShot(#[from] clip_zeroshot::ZeroShotError),
    /// A precision the backend or device cannot run in ([`set_precision`](crate::set_precision)).
    #[error("{backend} device {device} cannot run in {dtype}: {reason}")]
    Precision {
        /// burn's name of the backend (`flex`, `fusion<cubecl<wgpu<wgsl>>>`, …).
        backend: String,
        /// The device, as burn prints it.
        device: String,
        /// The precision asked for.
        dtype: &'static str,
        /// Why not.
        reason: String,
    },
    /// A call's arguments cannot be used (no texts or no images to embed, …).
    #[error("{0}")]
    Input(String),
}
