//! Zero-shot classification with CLIP: prompt templates and class names as data, the
//! normalize → mean → renormalize classifier, prediction, classification and retrieval metrics, and
//! a linear probe for comparison.
//!
//! Nothing here runs a model: [`ZeroShotClassifier::build`] takes the text encoder as a closure
//! (the root crate `clip` passes its own, in `Pretrained::zero_shot_classifier`), and the metrics take
//! plain scores. The classifier can be saved and loaded with the fingerprint of the model that built
//! it, so a stale one is caught rather than silently used with another model.
//!
//! ```
//! use burn::tensor::{Tensor, TensorData};
//! use clip_zeroshot::{Templates, ZeroShotClassifier, DEFAULT_SCALE};
//!
//! type B = burn::backend::Flex;
//! let device = Default::default();
//! let labels = vec!["cat".to_string(), "dog".to_string()];
//! let templates = Templates::parse("a photo of a {}.\na drawing of a {c}.", "my templates")?;
//! // stands in for a CLIP text encoder: prompts about cats point one way, about dogs another
//! let encode = |prompts: &[String]| {
//!     let values: Vec<f32> = prompts
//!         .iter()
//!         .flat_map(|p| if p.contains("cat") { [1.0, 0.1] } else { [0.1, 1.0] })
//!         .collect();
//!     let data = TensorData::new(values, [prompts.len(), 2]);
//!     Ok::<_, String>(Tensor::<B, 2>::from_data(data, &device))
//! };
//! let classifier = ZeroShotClassifier::build(&labels, &templates, "toy", 16, encode, |_| ())?;
//! assert_eq!(classifier.weights.dims(), [2, 2]); // [dim, classes]
//!
//! let image = Tensor::<B, 2>::from_floats([[0.9, 0.2]], &device);
//! let ranked = classifier.ranked(image, DEFAULT_SCALE);
//! assert_eq!(labels[ranked[0][0].0], "cat");
//! assert!(ranked[0][0].1 > 0.99);
//! # Ok::<(), clip_zeroshot::ZeroShotError>(())
//! ```

#![warn(missing_docs)]

pub mod classifier;
pub mod linear_probe;
pub mod metrics;
pub mod templates;

pub use classifier::{Scoring, ZeroShotClassifier, DEFAULT_SCALE};
pub use linear_probe::LinearProbe;
pub use metrics::{
    argmax, confusion_matrix, mean_per_class_recall, retrieval_recall, to_rows, top_k_accuracy,
    RetrievalRecall,
};
pub use templates::{check_labels, cifar100_classes, cifar10_classes, imagenet_classes, Templates};

/// Everything that can go wrong building, saving, loading or checking a classifier or a probe.
#[derive(Debug, thiserror::Error)]
pub enum ZeroShotError {
    /// The label list is empty.
    #[error("no labels to classify into")]
    NoLabels,
    /// A label is empty or only whitespace.
    #[error("a label is empty")]
    EmptyLabel,
    /// A template line does not hold exactly one class marker.
    #[error(
        "{origin} line {line}: template {text:?} needs exactly one class marker {{}} or {{c}}"
    )]
    Template {
        /// Where the templates came from (a file path or the name given to [`Templates::parse`]).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// The template source (named) has no non-blank line.
    #[error("{0} holds no templates")]
    NoTemplates(String),
    /// A template or classifier file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A classifier file could not be serialized or written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A file read as a classifier is not a safetensors file of the form
    /// [`ZeroShotClassifier::save`] writes.
    #[error("{path} is not a zero-shot classifier file: {message}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A loaded classifier was built for another model, other labels or other templates
    /// ([`ZeroShotClassifier::check_built_for`]).
    #[error("the saved classifier does not fit: {0}")]
    Stale(String),
    /// The encoder passed to [`ZeroShotClassifier::build`] failed; its message.
    #[error("encoding prompts failed: {0}")]
    Encode(String),
    /// [`LinearProbe::fit`] got inconsistent data: row and label counts that differ, no rows, a label
    /// not below the class count, or an empty L2 grid.
    #[error("linear probe: {0}")]
    Probe(String),
}
