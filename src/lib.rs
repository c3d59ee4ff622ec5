//! CLIP (Radford et al. 2021) on burn: image and text towers embedded into one space, with the
//! tokenizer and image preprocessing that give the same numbers as open_clip and Hugging Face
//! transformers for the same weights.
//!
//! This crate assembles the model ([`Clip`], from the encoders of [`encoders`] and the projections
//! and logit scale of [`heads`]), describes architectures ([`ClipConfig`]: OpenAI's presets,
//! open_clip model configs, Hugging Face `CLIPConfig`s, or inferred from a bare state dict) and
//! loads weights ([`Pretrained::load`]): open_clip and Hugging Face model directories or single
//! safetensors / PyTorch files, in open_clip/OpenAI or Hugging Face key layout, f32, f16 or bf16.
//! The other crates of the workspace are re-exported: [`tokenizer`], [`data`] (image decoding and
//! preprocessing), [`loss`] (training objectives) and [`zeroshot`] (prompt templates, zero-shot
//! classifiers, metrics).
//!
//! Everything is generic over the burn backend; features `flex` (default, CPU), `ndarray`, `wgpu`,
//! `vulkan`, `cuda` and `metal` turn backends on. Feature `bundled-model` (default) compiles in a
//! small model trained on Fashion-MNIST scenes ([`Pretrained::bundled`]), enough to try the API:
//!
//! ```
//! # #[cfg(feature = "bundled-model")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use clip::Pretrained;
//!
//! type B = burn::backend::Flex;
//! let device = Default::default();
//! let clip = Pretrained::<B>::bundled(&device)?;
//! let image = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples/red_sneaker.png");
//! let images = clip.embed_image_files(&[image], &device)?; // [1, embed_dim], raw
//! let texts = clip.embed_texts(&["a red sneaker", "a blue bag"], &device)?; // [2, embed_dim]
//! let logits = clip.model.logits_per_image(images, texts); // [1, 2], scaled cosine similarities
//! let logits = logits.into_data().to_vec::<f32>()?;
//! assert!(logits[0] > logits[1]);
//! # Ok(()) }
//! # #[cfg(not(feature = "bundled-model"))]
//! # fn main() {}
//! ```
//!
//! A downloaded checkpoint loads the same way (this needs the files, so it is not run here):
//!
//! ```no_run
//! # fn main() -> Result<(), clip::ClipError> {
//! use clip::{zeroshot::Templates, Pretrained};
//! type B = burn::backend::Flex;
//! let device = Default::default();
//! // an open_clip or Hugging Face model directory, or a single weights file
//! let clip = Pretrained::<B>::load("path/to/ViT-B-32", &device)?;
//! let labels = vec!["cat".to_string(), "dog".to_string()];
//! let classifier = clip.zero_shot_classifier(&labels, &Templates::imagenet(), &device, |_| ())?;
//! let images = clip.embed_image_files(&["cat.jpg"], &device)?;
//! let ranked = classifier.ranked(images, clip::zeroshot::DEFAULT_SCALE); // (class, probability)
//! println!("{} {:.1} %", labels[ranked[0][0].0], ranked[0][0].1 * 100.0);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod durable;
pub mod error;
pub mod export;
pub mod model;
pub mod named;
pub mod precision;
pub mod pretrained;
mod resolution;
pub mod torchscript;
pub mod weights;

pub use config::{ClipConfig, HfTokenizerConfig, TextConfig, VisionConfig, PRESETS};
pub use error::ClipError;
pub use export::StorageType;
pub use model::{Clip, ImageEncoder};
pub use named::{open_clip_config, open_clip_config_names, supported_models_table};
pub use precision::{set_precision, Precision};
pub use pretrained::{
    default_threads, encode_texts, text_ids, tokenize_trimmed, tokenizer_for, trim_ids_for,
    trimmed_ids, ConfigSource, Pretrained,
};
pub use weights::{Layout, StateDict};

pub use clip_data as data;
pub use clip_encoders as encoders;
pub use clip_heads as heads;
pub use clip_loss as loss;
pub use clip_tokenizer as tokenizer;
pub use clip_zeroshot as zeroshot;
