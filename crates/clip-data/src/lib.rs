//! Images in, model inputs out: decoding to RGB and CLIP's preprocessing, matching PIL/torchvision
//! (open_clip) and Hugging Face's `CLIPImageProcessor`.

pub mod augment;
pub mod captions;
pub mod fashion;
pub mod image_io;
pub mod preprocess;
mod resample;

pub use augment::AugmentConfig;
pub use image_io::{decode_rgb, load_rgb, probe_image, ImageError};
pub use preprocess::{
    images_to_tensor, normalize, resize_and_crop, CropRounding, Interpolation, PreprocessConfig,
    ResizeMode, CLIP_MEAN, CLIP_STD,
};
