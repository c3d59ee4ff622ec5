//! CLIP's evaluation preprocessing: resize (Pillow's antialiased bicubic, reproduced bit for bit),
//! center crop, scale to [0, 1], normalize per channel.
//!
//! [`PreprocessConfig::clip`] is open_clip's / OpenAI's pipeline; Hugging Face's `CLIPImageProcessor`
//! differs only in [`CropRounding::Floor`]. [`resize_and_crop`] gives the 8-bit image the model sees,
//! [`normalize`] its channel-major floats, and [`images_to_tensor`] a whole batch as a tensor.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::resample::{pil_resize, Filter};

/// OpenAI's per-channel (R, G, B) mean of pixel values in [0, 1], measured on CLIP's training data,
/// written as published.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI's per-channel (R, G, B) standard deviation of pixel values in [0, 1], written as published.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How the image is brought to the size the model sees: a square of `size`, or (`Patches`) a grid
/// of patches of its own shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Shortest side to `size`, then center crop (CLIP's default).
    #[default]
    Shortest,
    /// Longest side to `size`, then center pad with black.
    Longest,
    /// Both sides to `size`, ignoring the aspect ratio.
    Squash,
    /// SigLIP 2's NaFlex: each image keeps its aspect ratio and is resized, without a crop, to the
    /// largest whole number of `patch_size` patches per side with at most `max_patches` in all
    /// ([`patch_grid_size`]). Images of different shapes then have different sizes.
    Patches {
        /// Side of a square patch, in pixels.
        patch_size: usize,
        /// The most patches an image may have.
        max_patches: usize,
    },
}

/// Where a center crop starts when the margin is odd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropRounding {
    /// torchvision's `int(round(margin / 2))` (half to even), used by open_clip and OpenAI.
    #[default]
    Round,
    /// `margin // 2`, used by Hugging Face's `CLIPImageProcessor`.
    Floor,
}

/// The resampling filter of the resize, as Pillow computes it (antialiased when downscaling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Pillow's `BICUBIC` (Keys' cubic, a = −0.5): CLIP's default.
    #[default]
    Bicubic,
    /// Pillow's `BILINEAR` (triangle filter).
    Bilinear,
}

/// How a decoded image becomes model input: resize, crop to a square, normalize. Serialized in
/// snake_case (e.g. in a model's config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Side of the square the model sees.
    pub size: usize,
    /// Target of the resize before cropping (the shortest side for `Shortest`); usually `size`.
    pub resize_size: usize,
    /// Per-channel (R, G, B) mean subtracted from pixel values in [0, 1].
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation the centered values are divided by.
    pub std: [f32; 3],
    /// How the image is brought to a square.
    pub resize_mode: ResizeMode,
    /// Where the center crop starts when the margin is odd.
    pub crop_rounding: CropRounding,
    /// The resize's filter.
    pub interpolation: Interpolation,
}

impl PreprocessConfig {
    /// CLIP's defaults at the given square size: resize the shortest side to `size` with bicubic,
    /// center crop with torchvision's rounding, normalize with [`CLIP_MEAN`] and [`CLIP_STD`].
    pub fn clip(size: usize) -> Self {
        Self {
            size,
            resize_size: size,
            mean: CLIP_MEAN,
            std: CLIP_STD,
            resize_mode: ResizeMode::Shortest,
            crop_rounding: CropRounding::Round,
            interpolation: Interpolation::Bicubic,
        }
    }
}

fn resize(image: &RgbImage, width: u32, height: u32, interpolation: Interpolation) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    let filter = match interpolation {
        Interpolation::Bicubic => Filter::Bicubic,
        Interpolation::Bilinear => Filter::Bilinear,
    };
    pil_resize(image, width, height, filter)
}

/// The `(height, width)` in pixels that NaFlex resizes a `height`×`width` image to: both multiples of
/// `patch_size` (at least one patch), the aspect ratio kept as closely as that allows, at most
/// `max_patches` patches. It is transformers' `get_image_size_for_max_num_patches`, the same binary
/// search over the scale in the same f64 arithmetic, so the same image gets the same grid.
pub fn patch_grid_size(
    height: usize,
    width: usize,
    patch_size: usize,
    max_patches: usize,
) -> (usize, usize) {
    const EPS: f64 = 1e-5;
    let patch = patch_size.max(1) as f64;
    let scaled = |scale: f64, side: usize| -> f64 {
        ((side as f64 * scale / patch).ceil() * patch).max(patch)
    };
    let (mut low, mut high) = (EPS / 10.0, 100.0);
    while high - low >= EPS {
        let scale = (low + high) / 2.0;
        let patches = (scaled(scale, height) / patch) * (scaled(scale, width) / patch);
        if patches <= max_patches as f64 {
            low = scale;
        } else {
            high = scale;
        }
    }
    (scaled(low, height) as usize, scaled(low, width) as usize)
}

/// Python's `round` for floats: ties go to the even neighbour.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// Python's `round` (half to even) of `x / 2` for a non-negative integer `x`.
fn half_round_even(x: u32) -> u32 {
    let half = x / 2;
    if x % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Crops (or pads with black where the image is smaller) a `size`×`size` window around the center.
fn center_crop(image: &RgbImage, size: u32, rounding: CropRounding) -> RgbImage {
    let offset = |len: u32| -> i64 {
        if len >= size {
            match rounding {
                CropRounding::Round => half_round_even(len - size) as i64,
                CropRounding::Floor => ((len - size) / 2) as i64,
            }
        } else {
            // torchvision pads left/top with the floor of half the gap
            -(((size - len) / 2) as i64)
        }
    };
    let (left, top) = (offset(image.width()), offset(image.height()));
    RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = (x as i64 + left, y as i64 + top);
        if sx < 0 || sy < 0 || sx >= image.width() as i64 || sy >= image.height() as i64 {
            image::Rgb([0, 0, 0])
        } else {
            *image.get_pixel(sx as u32, sy as u32)
        }
    })
}

/// Resize and crop to the square `config.size`, in 8 bits: the image the model will see. Returns a
/// `size`×`size` image (where the resized image is smaller than that, with `Longest` or a
/// `resize_size` below `size`, the rest is black), except with [`ResizeMode::Patches`], which
/// returns the image at its own [`patch_grid_size`].
pub fn resize_and_crop(image: &RgbImage, config: &PreprocessConfig) -> RgbImage {
    let size = config.size as u32;
    let short = config.resize_size as u32;
    let (w, h) = image.dimensions();
    match config.resize_mode {
        ResizeMode::Shortest => {
            // torchvision: the short side becomes `short`, the long one int(short · long / short_side)
            let (nw, nh) = if w <= h {
                (short, (short as u64 * h as u64 / w as u64) as u32)
            } else {
                ((short as u64 * w as u64 / h as u64) as u32, short)
            };
            let resized = resize(image, nw.max(1), nh.max(1), config.interpolation);
            center_crop(&resized, size, config.crop_rounding)
        }
        ResizeMode::Longest => {
            // open_clip's ResizeKeepRatio(longest=1): round(side / ratio), ratio = longest / size
            let ratio = w.max(h) as f64 / size as f64;
            let nw = (round_half_even(w as f64 / ratio) as u32).max(1);
            let nh = (round_half_even(h as f64 / ratio) as u32).max(1);
            let resized = resize(image, nw, nh, config.interpolation);
            center_crop(&resized, size, config.crop_rounding)
        }
        ResizeMode::Squash => resize(image, size, size, config.interpolation),
        ResizeMode::Patches {
            patch_size,
            max_patches,
        } => {
            let (nh, nw) = patch_grid_size(h as usize, w as usize, patch_size, max_patches);
            resize(image, nw as u32, nh as u32, config.interpolation)
        }
    }
}

/// `[3, height, width]` channel-major floats, flattened: `(v / 255 − mean) / std`. Expects the
/// output of [`resize_and_crop`]; only `mean` and `std` of `config` are used.
pub fn normalize(image: &RgbImage, config: &PreprocessConfig) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (pixel[c] as f32 / 255.0 - config.mean[c]) / config.std[c];
        }
    }
    out
}

/// Preprocesses a batch of decoded images ([`resize_and_crop`], then [`normalize`]) into a
/// `[n, 3, size, size]` float tensor on `device`, `n = images.len()`. For a square `config` only:
/// with [`ResizeMode::Patches`] images of different shapes cannot share a tensor, and
/// [`PreparedBatch::from_images`](crate::prefetch::PreparedBatch::from_images) groups them.
pub fn images_to_tensor<B: Backend>(
    images: &[RgbImage],
    config: &PreprocessConfig,
    device: &B::Device,
) -> Tensor<B, 4> {
    let size = config.size;
    let mut values = Vec::with_capacity(images.len() * 3 * size * size);
    for image in images {
        values.extend(normalize(&resize_and_crop(image, config), config));
    }
    Tensor::from_data(
        TensorData::new(values, [images.len(), 3, size, size]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_half_even() {
        // int(round(x / 2)) in Python for x = 0..8
        let expected = [0, 0, 1, 2, 2, 2, 3, 4, 4];
        for (x, e) in expected.iter().enumerate() {
            assert_eq!(half_round_even(x as u32), *e, "x = {x}");
        }
    }

    #[test]
    fn python_float_round() {
        for (x, e) in [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (2.4, 2.0),
            (2.6, 3.0),
            (223.5, 224.0),
        ] {
            assert_eq!(round_half_even(x), e, "round({x})");
        }
    }

    #[test]
    fn patch_grids_as_transformers_computes_them() {
        // get_image_size_for_max_num_patches(h, w, patch, max) in transformers 5.25
        for ((h, w, patch, max), expected) in [
            ((300, 451, 8, 24), (32, 48)),
            ((640, 427, 8, 24), (48, 32)),
            ((512, 512, 8, 24), (32, 32)),
            ((60, 300, 8, 24), (16, 80)),
            ((480, 640, 16, 256), (224, 288)),
            ((1, 1000, 16, 256), (16, 4096)),
            ((10, 10, 16, 256), (256, 256)),
        ] {
            assert_eq!(patch_grid_size(h, w, patch, max), expected, "{h}x{w}");
        }
    }

    #[test]
    fn crop_conventions_differ_on_odd_margins() {
        let image = RgbImage::from_fn(7, 4, |x, _| image::Rgb([x as u8, 0, 0]));
        // margin 3: torchvision round(1.5) = 2, HF 3 // 2 = 1
        let round = center_crop(&image, 4, CropRounding::Round);
        let floor = center_crop(&image, 4, CropRounding::Floor);
        assert_eq!(round.get_pixel(0, 0)[0], 2);
        assert_eq!(floor.get_pixel(0, 0)[0], 1);
    }
}
