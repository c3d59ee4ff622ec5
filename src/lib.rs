//! CLIP (Radford et al. 2021) on burn: the model assembled from its concepts, its configs, and
//! weight import from open_clip, OpenAI and Hugging Face checkpoints.
//!
//! ```no_run
//! # fn main() -> Result<(), clip::ClipError> {
//! use clip::Pretrained;
//! type B = burn::backend::Flex;
//! let device = Default::default();
//! let clip = Pretrained::<B>::load("path/to/open_clip_or_hf_dir", &device)?;
//! let images = clip.embed_image_files(&["cat.jpg"], &device)?;
//! let texts = clip.embed_texts(&["a photo of a cat", "a photo of a dog"], &device)?;
//! let logits = clip.model.logits_per_image(images, texts);
//! # Ok(()) }
//! ```

pub mod config;
pub mod error;
pub mod model;
pub mod pretrained;
pub mod weights;

pub use config::{ClipConfig, TextConfig, VisionConfig, PRESETS};
pub use error::ClipError;
pub use model::{Clip, ImageEncoder};
pub use pretrained::{
    default_threads, encode_texts, tokenize_trimmed, trimmed_ids, ConfigSource, Pretrained,
};
pub use weights::{Layout, StateDict};

pub use clip_data as data;
pub use clip_encoders as encoders;
pub use clip_heads as heads;
pub use clip_loss as loss;
pub use clip_tokenizer as tokenizer;
pub use clip_zeroshot as zeroshot;
