//! The ViT's flattened patches on the `flex` backend as row copies.
//!
//! `[b, c, h, w]` → `[b·gh·gw, c·ph·pw]` is a six-dimensional permutation whose layout does not
//! collapse, so `flex` copies it one element at a time through its strided iterator (1 % of
//! ViT-B/32's image encoding). Each patch row of `pw` pixels is contiguous in the image and in the
//! patch, so this copies whole rows.

use burn::backend::flex::FlexTensor;
use burn::tensor::{backend::Backend, DType, Tensor};
use rayon::prelude::*;

use super::tensor::{as_flex, dims4, f32_tensor, from_flex};

/// The non-overlapping `ph × pw` patches of `images` (`[b, c, h, w]`), one per row, in the order a
/// stride-(ph, pw) convolution visits them, each flattened as `(c, ph, pw)`: `[b·gh·gw, c·ph·pw]`
/// with `gh = h / ph`, `gw = w / pw` (remainder rows and columns ignored, as that convolution
/// does). `None` unless `images` is a `flex` f32 tensor and there is at least one patch.
pub(crate) fn patches<B: Backend>(
    images: &Tensor<B, 4>,
    [ph, pw]: [usize; 2],
) -> Option<Tensor<B, 2>> {
    let primitive = images.clone().into_primitive();
    from_flex(patches_f32(as_flex(&primitive)?, ph, pw)?)
}

fn patches_f32(images: &FlexTensor, ph: usize, pw: usize) -> Option<FlexTensor> {
    if images.dtype() != DType::F32 || ph * pw == 0 {
        return None;
    }
    let images = images.to_contiguous();
    let [b, c, h, w] = dims4(&images)?;
    let (gh, gw) = (h / ph, w / pw);
    let row = c * ph * pw;
    let pixels = images.storage::<f32>().get(..b * c * h * w)?;
    if b * gh * gw * c == 0 {
        return None;
    }
    let mut out = vec![0.0f32; b * gh * gw * row];
    let per_image = gh * gw * row;
    out.par_chunks_exact_mut(per_image)
        .zip(pixels.par_chunks_exact(c * h * w))
        .for_each(|(dst, image)| {
            for (patch, dst) in dst.chunks_exact_mut(row).enumerate() {
                let (gy, gx) = (patch / gw, patch % gw);
                for (line, dst) in dst.chunks_exact_mut(pw).enumerate() {
                    let (channel, ky) = (line / ph, line % ph);
                    let start = channel * h * w + (gy * ph + ky) * w + gx * pw;
                    dst.copy_from_slice(&image[start..start + pw]);
                }
            }
        });
    Some(f32_tensor(out, vec![b * gh * gw, row]))
}

#[cfg(test)]
mod tests {
    use crate::flex::tensor::random;

    /// Against the reshape / permute the encoder otherwise uses, for square and rectangular patches
    /// and sizes that leave remainder rows and columns.
    #[test]
    fn matches_the_permutation() {
        for ([b, c, h, w], [ph, pw]) in [
            ([2, 3, 8, 8], [4, 4]),
            ([1, 3, 10, 7], [3, 2]),
            ([3, 2, 9, 12], [2, 3]),
        ] {
            let images = random([b, c, h, w], 5);
            let (gh, gw) = (h / ph, w / pw);
            let want = images
                .clone()
                .slice([0..b, 0..c, 0..gh * ph, 0..gw * pw])
                .reshape([b, c, gh, ph, gw, pw])
                .permute([0, 2, 4, 1, 3, 5])
                .reshape([b * gh * gw, c * ph * pw]);
            let got = super::patches(&images, [ph, pw]).expect("flex f32");
            assert_eq!(got.into_data(), want.into_data());
        }
    }

    #[test]
    fn no_patch_falls_back() {
        let images = random([1, 3, 2, 2], 1);
        assert!(super::patches(&images, [4, 4]).is_none());
    }
}
