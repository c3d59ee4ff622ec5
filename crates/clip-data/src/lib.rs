//! Images in, model inputs out: decoding to RGB and CLIP's preprocessing, matching PIL/torchvision
//! (open_clip) and Hugging Face's `CLIPImageProcessor`, so that pretrained weights see the numbers
//! they were trained on; and the datasets the trainer (`clip-train`) reads.
//!
//! - [`image_io`]: files and bytes to 8-bit RGB, as PIL's `Image.open(…).convert("RGB")`. JPEGs are
//!   decoded by libjpeg, bit-identical to PIL: by default (feature `exact-jpeg`) from mozjpeg's C
//!   sources (libjpeg-turbo's decoder), built by the `cc` crate; with the opt-in feature
//!   `system-libjpeg-turbo`, by the system's libjpeg-turbo. With neither, the pure-Rust `image`
//!   decoder, which differs from PIL by a few levels per pixel.
//! - [`preprocess`]: CLIP's evaluation preprocessing, Pillow's antialiased resize reproduced bit for
//!   bit, center crop and normalization, with open_clip's/OpenAI's conventions
//!   ([`PreprocessConfig::clip`]) or Hugging Face's ([`CropRounding::Floor`]); [`images_to_tensor`]
//!   makes a `[batch, 3, size, size]` tensor on any burn backend.
//! - [`prefetch`]: image files decoded and preprocessed on a pool of threads ahead of the model,
//!   batch by batch, in bounded memory (what keeps a GPU busy when encoding a folder).
//! - [`augment`]: training augmentation (random resized crop, colour jitter, grayscale),
//!   deterministic for a given RNG state.
//! - [`captions`]: image–caption datasets, a captions CSV or JSONL next to the images or webdataset
//!   tar shards, indexed without decoding; an image is decoded when a training step draws it.
//! - [`fashion`]: Fashion-MNIST and the "Fashion-MNIST scenes" made from it: coloured items on a black
//!   canvas with captions, ten (class, colour) pairs held out of training to test composition.
//!
//! ```
//! use clip_data::fashion::{is_held_out, render_scene, CLASSES, COLOURS};
//! use clip_data::{normalize, resize_and_crop, PreprocessConfig};
//! use image::{GrayImage, Luma, Rgb, RgbImage};
//! use rand::SeedableRng;
//!
//! // a 64×48 gradient, as a decoded photo would be
//! let photo = RgbImage::from_fn(64, 48, |x, y| Rgb([(4 * x) as u8, (5 * y) as u8, 128]));
//! // open_clip's preprocessing for a 32-pixel model: shortest side to 32, center crop, normalize
//! let config = PreprocessConfig::clip(32);
//! let square = resize_and_crop(&photo, &config);
//! assert_eq!(square.dimensions(), (32, 32));
//! let input = normalize(&square, &config); // [3, 32, 32], channel-major
//! assert_eq!(input.len(), 3 * 32 * 32);
//!
//! // a Fashion-MNIST scene from a blank (all-white) item: a blue bag, a pair held out of training
//! let item = GrayImage::from_pixel(28, 28, Luma([255]));
//! let (bag, blue) = (8, 2);
//! assert_eq!((CLASSES[bag], COLOURS[blue].0), ("bag", "blue"));
//! assert!(is_held_out(bag, blue));
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let scene = render_scene(&item, bag, blue, 48, &mut rng);
//! assert_eq!(scene.image.dimensions(), (48, 48));
//! assert!(scene.caption.contains("blue") && scene.caption.contains("bag"), "{}", scene.caption);
//! ```

#![warn(missing_docs)]

pub mod augment;
pub mod captions;
pub mod fashion;
pub mod image_io;
pub mod prefetch;
pub mod preprocess;
mod resample;

pub use resample::{interpolate_planes_bicubic, resize_planes_bicubic};

pub use augment::AugmentConfig;
/// The decoded image type of [`load_rgb`] and [`resize_and_crop`] (the `image` crate's).
pub use image::RgbImage;
pub use image_io::{
    decode_rgb, decode_rgb_within, load_rgb, load_rgb_within, probe_image, ImageError, ImageLimits,
};
pub use preprocess::{
    images_to_tensor, normalize, patch_grid_size, resize_and_crop, CropRounding, Interpolation,
    PreprocessConfig, ResizeMode, CLIP_MEAN, CLIP_STD,
};
