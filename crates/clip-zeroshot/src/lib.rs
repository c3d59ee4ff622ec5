//! Zero-shot classification with CLIP: prompt templates and class names as data, the
//! normalize → mean → renormalize classifier, prediction, classification and retrieval metrics, and
//! a linear probe for comparison.

pub mod classifier;
pub mod linear_probe;
pub mod metrics;
pub mod templates;

pub use classifier::{ZeroShotClassifier, DEFAULT_SCALE};
pub use linear_probe::LinearProbe;
pub use metrics::{
    argmax, confusion_matrix, mean_per_class_recall, retrieval_recall, to_rows, top_k_accuracy,
    RetrievalRecall,
};
pub use templates::{check_labels, cifar100_classes, cifar10_classes, imagenet_classes, Templates};

#[derive(Debug, thiserror::Error)]
pub enum ZeroShotError {
    #[error("no labels to classify into")]
    NoLabels,
    #[error("a label is empty")]
    EmptyLabel,
    #[error(
        "{origin} line {line}: template {text:?} needs exactly one class marker {{}} or {{c}}"
    )]
    Template {
        origin: String,
        line: usize,
        text: String,
    },
    #[error("{0} holds no templates")]
    NoTemplates(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error("{path} is not a zero-shot classifier file: {message}")]
    BadFile { path: String, message: String },
    #[error("the saved classifier does not fit: {0}")]
    Stale(String),
    #[error("encoding prompts failed: {0}")]
    Encode(String),
    #[error("linear probe: {0}")]
    Probe(String),
}
