//! ModifiedResNet's stride-1 "same" convolutions on the `flex` backend as accumulated matrix products.
//!
//! `flex` runs a 3×3 convolution as a scalar NCHW → NHWC copy, im2col tiles and a scalar scatter of
//! each tile's result: about a fifth of RN50's encoding time outside the matrix products. Here each
//! image is copied once into a zero-padded buffer whose rows are `W + kw/2` wide, so that kernel
//! position (i, j) reads it at a fixed offset `i·row + j` for every output pixel: the convolution is
//! `kh·kw` products `W[:, :, i, j] · X_shifted` accumulated by `gemm` into a bias-filled output (the
//! padding columns of the output are dropped when copying it out). A 1×1 kernel reads the input
//! directly.

use burn::backend::flex::FlexTensor;
use burn::tensor::{backend::Backend, DType, Tensor};
use rayon::prelude::*;

use super::tensor::{as_flex, dims4, f32_tensor, gemm_f32, map_flex, Strided};

/// `conv2d(x, weight, bias)` with stride 1 and padding `k/2` (odd kernels), when the tensors are
/// `flex` f32 ones; `None` otherwise (the caller then uses burn's convolution).
pub(crate) fn conv2d_same<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: &Tensor<B, 1>,
) -> Option<Tensor<B, 4>> {
    let (weight, bias) = (
        weight.clone().into_primitive(),
        bias.clone().into_primitive(),
    );
    let (weight, bias) = (as_flex(&weight)?, as_flex(&bias)?);
    map_flex(x, |x| conv_same_f32(x, weight, bias))
}

fn conv_same_f32(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> Option<FlexTensor> {
    if [x.dtype(), weight.dtype(), bias.dtype()] != [DType::F32; 3] {
        return None;
    }
    let (x, weight, bias) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        bias.to_contiguous(),
    );
    let [batch, c_in, h, w] = dims4(&x)?;
    let [c_out, c_in_w, kh, kw] = dims4(&weight)?;
    let empty = batch * c_in * h * w * c_out == 0;
    if empty
        || c_in_w != c_in
        || kh % 2 == 0
        || kw % 2 == 0
        || bias.layout().shape().num_elements() != c_out
    {
        return None; // burn's convolution handles (or reports) these
    }
    let (xs, ws, bs) = (
        x.storage::<f32>(),
        weight.storage::<f32>(),
        bias.storage::<f32>(),
    );
    let image = c_in * h * w;
    let plane = h * w;
    if xs.len() < batch * image || ws.len() < c_out * c_in * kh * kw || bs.len() < c_out {
        return None;
    }
    let geometry = Geometry {
        c_in,
        c_out,
        h,
        w,
        kh,
        kw,
    };
    let mut out = vec![0.0f32; batch * c_out * plane];
    if batch == 1 {
        // one image: the products themselves are split over the cores
        geometry.convolve(&xs[..image], ws, bs, &mut out, true);
    } else {
        // several: one image per core, each product on one
        let images = xs[..batch * image].par_chunks_exact(image);
        images
            .zip(out.par_chunks_exact_mut(c_out * plane))
            .for_each(|(x_img, out_img)| geometry.convolve(x_img, ws, bs, out_img, false));
    }
    Some(f32_tensor(out, vec![batch, c_out, h, w]))
}

/// Sizes of one convolution; `row = w + kw/2` is the width of a padded row.
struct Geometry {
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
}

impl Geometry {
    /// One image `x` (`[c_in, h, w]`) into `out` (`[c_out, h, w]`).
    fn convolve(&self, x: &[f32], ws: &[f32], bs: &[f32], out: &mut [f32], split: bool) {
        let Self {
            c_in,
            c_out,
            h,
            w,
            kh,
            kw,
        } = *self;
        let (ph, pw) = (kh / 2, kw / 2);
        let row = w + pw;
        let n = h * row;
        // channel c's pixel (y, x) at c·padded_len + pw + (y + ph)·row + x, zeros elsewhere; the `pw`
        // zeros after each row are its right padding and the next row's left padding
        let padded_len = (h + 2 * ph) * row + 2 * pw;
        let padded = (kh * kw > 1).then(|| {
            let mut padded = vec![0.0f32; c_in * padded_len];
            for (channel, plane) in padded
                .chunks_exact_mut(padded_len)
                .zip(x.chunks_exact(h * w))
            {
                let rows = channel[pw + ph * row..].chunks_exact_mut(row);
                for (dst, src) in rows.zip(plane.chunks_exact(w)) {
                    dst[..w].copy_from_slice(src);
                }
            }
            padded
        });
        let (src, src_rs) = match &padded {
            Some(padded) => (padded.as_slice(), padded_len),
            None => (x, h * w),
        };
        let mut acc = if row == w {
            Vec::new()
        } else {
            vec![0.0f32; c_out * n]
        };
        let dst: &mut [f32] = if acc.is_empty() { out } else { &mut acc };
        for (dst_row, &b) in dst.chunks_exact_mut(n).zip(bs) {
            dst_row.fill(b);
        }
        let parallelism = if split && c_out * n * c_in >= 192 * 192 * 192 {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        for i in 0..kh {
            for j in 0..kw {
                // SAFETY: lhs reads ws[i·kw + j + co·c_in·kh·kw + c·kh·kw] < c_out·c_in·kh·kw ≤
                // ws.len(); rhs reads src[i·row + j + c·src_rs + p], p < n, which is at most
                // c_in·padded_len − 1 (or c_in·h·w − 1 for a 1×1 kernel, read in place) < src.len();
                // dst[co·n + p] < c_out·n = dst.len() (lengths checked by the caller)
                unsafe {
                    gemm_f32(
                        c_out,
                        n,
                        c_in,
                        Strided {
                            at: dst.as_mut_ptr(),
                            row: n as isize,
                            col: 1,
                        },
                        Strided {
                            at: ws.as_ptr().add(i * kw + j),
                            row: (c_in * kh * kw) as isize,
                            col: (kh * kw) as isize,
                        },
                        Strided {
                            at: src.as_ptr().add(i * row + j),
                            row: src_rs as isize,
                            col: 1,
                        },
                        true,
                        parallelism,
                    );
                }
            }
        }
        if !acc.is_empty() {
            // drop the `pw` padding columns of each output row
            for (out_row, acc_row) in out.chunks_exact_mut(w).zip(acc.chunks_exact(row)) {
                out_row.copy_from_slice(&acc_row[..w]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::flex::tensor::random;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;

    /// Against `flex`'s own convolution (im2col), for 1×1, 3×3 and 5×3 kernels, one and several
    /// images, odd sizes.
    #[test]
    fn matches_burns_convolution() {
        for (batch, c_in, c_out, h, w, kh, kw) in [
            (3, 5, 4, 7, 6, 3, 3),
            (1, 5, 4, 7, 6, 3, 3),
            (2, 6, 3, 5, 9, 1, 1),
            (2, 4, 5, 6, 5, 5, 3),
        ] {
            let x = random([batch, c_in, h, w], 1);
            let weight = random([c_out, c_in, kh, kw], 2);
            let bias = random([c_out], 3);
            let ours = super::conv2d_same(&x, &weight, &bias).expect("flex f32 tensors");
            let options = ConvOptions::new([1, 1], [kh / 2, kw / 2], [1, 1], 1);
            let want = conv2d(x, weight, Some(bias), options);
            assert_eq!(ours.dims(), want.dims());
            let diff = (ours - want.clone()).abs().max().into_scalar();
            let scale = want.abs().max().into_scalar();
            assert!(
                diff < 1e-5 * scale && scale > 1.0,
                "{kh}×{kw}, batch {batch}: {diff} of {scale}"
            );
        }
    }
}
