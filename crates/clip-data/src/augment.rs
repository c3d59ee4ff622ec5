//! Training augmentation. Each transform is configurable because some contradict captions: hue jitter
//! turns a "red" item orange and grayscale makes everything "white", so the Fashion-MNIST scenes
//! benchmark keeps colours as they are and only varies crop, brightness and contrast.

use image::{imageops, Rgb, RgbImage};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which training augmentations to apply, and how strongly. Missing fields take their
/// [`Default`] (a mild random crop, no colour change); unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// RandomResizedCrop area range (open_clip's default (0.9, 1.0)); `[1, 1]` disables cropping.
    pub crop_scale: [f32; 2],
    /// Aspect-ratio (width / height) range of the crop.
    pub crop_ratio: [f32; 2],
    /// Colour jitter strengths, as torchvision's ColorJitter (0 disables each). Brightness: the
    /// image is scaled by a factor drawn from `[1 − b, 1 + b]`.
    pub brightness: f32,
    /// Contrast jitter: blend with the mean luma by a factor drawn from `[1 − c, 1 + c]`.
    pub contrast: f32,
    /// Saturation jitter: blend with each pixel's luma by a factor drawn from `[1 − s, 1 + s]`.
    pub saturation: f32,
    /// Hue jitter: the hue is rotated by a shift drawn from `[−h, h]` (a fraction of the colour wheel; torchvision allows up to 0.5).
    pub hue: f32,
    /// Probability of converting to grayscale.
    pub grayscale: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop_scale: [0.9, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            grayscale: 0.0,
        }
    }
}

fn luma(p: &Rgb<u8>) -> f32 {
    0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
}

fn blend(image: &mut RgbImage, other: impl Fn(&Rgb<u8>) -> [f32; 3], factor: f32) {
    for p in image.pixels_mut() {
        let o = other(p);
        for c in 0..3 {
            p[c] = (p[c] as f32 * factor + o[c] * (1.0 - factor))
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
}

fn rotate_hue(image: &mut RgbImage, shift: f32) {
    for p in image.pixels_mut() {
        let [r, g, b] = p.0.map(|v| v as f32 / 255.0);
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        let delta = max - min;
        if delta == 0.0 {
            continue;
        }
        let mut h = if max == r {
            ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        } / 6.0;
        h = (h + shift).rem_euclid(1.0);
        let (s, v) = (delta / max, max);
        let i = (h * 6.0).floor();
        let f = h * 6.0 - i;
        let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let rgb = match i as i32 % 6 {
            0 => [v, t, pp],
            1 => [q, v, pp],
            2 => [pp, v, t],
            3 => [pp, q, v],
            4 => [t, pp, v],
            _ => [v, pp, q],
        };
        p.0 = rgb.map(|x| (x * 255.0).round() as u8);
    }
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        Self {
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            ..Self::default()
        }
    }

    /// Applies the transforms in torchvision's order (crop, jitter, grayscale); the output keeps the
    /// input's size. Deterministic for a given `rng` state.
    pub fn apply(&self, image: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let (w, h) = image.dimensions();
        let mut out = if self.crop_scale[0] < 1.0 {
            let area = (w * h) as f32;
            let mut crop = (0, 0, w, h);
            for _ in 0..10 {
                let target = area * rng.random_range(self.crop_scale[0]..=self.crop_scale[1]);
                let (lr0, lr1) = (self.crop_ratio[0].ln(), self.crop_ratio[1].ln());
                let ratio = rng.random_range(lr0..=lr1).exp();
                let cw = (target * ratio).sqrt().round() as u32;
                let ch = (target / ratio).sqrt().round() as u32;
                if cw > 0 && ch > 0 && cw <= w && ch <= h {
                    crop = (
                        rng.random_range(0..=w - cw),
                        rng.random_range(0..=h - ch),
                        cw,
                        ch,
                    );
                    break;
                }
            }
            let cropped = imageops::crop_imm(image, crop.0, crop.1, crop.2, crop.3).to_image();
            imageops::resize(&cropped, w, h, imageops::FilterType::Triangle)
        } else {
            image.clone()
        };
        if self.brightness > 0.0 {
            let f = rng.random_range(1.0 - self.brightness..=1.0 + self.brightness);
            blend(&mut out, |_| [0.0; 3], f);
        }
        if self.contrast > 0.0 {
            let f = rng.random_range(1.0 - self.contrast..=1.0 + self.contrast);
            let mean = out.pixels().map(luma).sum::<f32>() / (w * h) as f32;
            blend(&mut out, |_| [mean; 3], f);
        }
        if self.saturation > 0.0 {
            let f = rng.random_range(1.0 - self.saturation..=1.0 + self.saturation);
            blend(&mut out, |p| [luma(p); 3], f);
        }
        if self.hue > 0.0 {
            let shift = rng.random_range(-self.hue..=self.hue);
            rotate_hue(&mut out, shift);
        }
        if self.grayscale > 0.0 && rng.random_bool(self.grayscale as f64) {
            for p in out.pixels_mut() {
                let l = luma(p).round() as u8;
                p.0 = [l; 3];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn same_seed_same_output_and_colour_words_survive() {
        let image = RgbImage::from_fn(48, 48, |x, y| {
            if (x / 8 + y / 8) % 2 == 0 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 0])
            }
        });
        let config = AugmentConfig {
            brightness: 0.2,
            contrast: 0.2,
            ..AugmentConfig::default()
        };
        let a = config.apply(&image, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        let b = config.apply(&image, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        let c = config.apply(&image, &mut rand_chacha::ChaCha8Rng::seed_from_u64(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // without hue jitter or grayscale a red item stays red: green and blue stay far below red
        let reddest = a.pixels().max_by_key(|p| p[0]).unwrap();
        assert!(
            reddest[0] > 150 && reddest[1] < 60 && reddest[2] < 60,
            "{reddest:?}"
        );
        let gray = AugmentConfig {
            grayscale: 1.0,
            ..AugmentConfig::none()
        }
        .apply(&image, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
        assert!(gray.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        assert_eq!(
            AugmentConfig::none().apply(&image, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0)),
            image
        );
    }
}
