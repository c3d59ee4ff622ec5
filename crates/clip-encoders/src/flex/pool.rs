//! ModifiedResNet's anti-aliasing average pools on the `flex` backend: non-overlapping k×k windows,
//! summed row by row in the window's order (as PyTorch does) and divided by k².
//!
//! `flex`'s pooling walks every output element through a generic window loop: 7 % of RN50's image
//! encoding in a profile, after the convolutions went to `flex::conv`.

use burn::backend::flex::FlexTensor;
use burn::tensor::{backend::Backend, DType, Tensor};
use rayon::prelude::*;

use super::tensor::{dims4, f32_tensor, map_flex};

/// `avg_pool2d(x, k, stride k, no padding)` when `x` is a `flex` f32 tensor; `None` otherwise.
pub(crate) fn avg_pool_disjoint<B: Backend>(x: &Tensor<B, 4>, k: usize) -> Option<Tensor<B, 4>> {
    map_flex(x, |x| avg_pool_f32(x, k))
}

fn avg_pool_f32(x: &FlexTensor, k: usize) -> Option<FlexTensor> {
    if x.dtype() != DType::F32 || k == 0 {
        return None;
    }
    let x = x.to_contiguous();
    let [batch, channels, h, w] = dims4(&x)?;
    let (out_h, out_w) = (h / k, w / k);
    let xs = x.storage::<f32>();
    let planes = batch * channels;
    if xs.len() < planes * h * w || out_h == 0 || out_w == 0 {
        return None;
    }
    let scale = 1.0 / (k * k) as f32;
    let mut out = vec![0.0f32; planes * out_h * out_w];
    out.par_chunks_exact_mut(out_h * out_w)
        .zip(xs[..planes * h * w].par_chunks_exact(h * w))
        .for_each(|(out_plane, plane)| {
            for (out_row, rows) in out_plane
                .chunks_exact_mut(out_w)
                .zip(plane.chunks_exact(k * w))
            {
                for (ox, o) in out_row.iter_mut().enumerate() {
                    let mut sum = 0.0f32;
                    for row in rows.chunks_exact(w) {
                        for v in &row[ox * k..ox * k + k] {
                            sum += v;
                        }
                    }
                    *o = sum * scale;
                }
            }
        });
    Some(f32_tensor(out, vec![batch, channels, out_h, out_w]))
}

#[cfg(test)]
mod tests {
    use crate::flex::tensor::random;
    use burn::tensor::module::avg_pool2d;

    /// Against `flex`'s own pooling, with sizes the windows do not divide (the rest is dropped).
    #[test]
    fn matches_burns_pooling() {
        for (shape, k) in [([2, 3, 8, 6], 2), ([1, 2, 7, 9], 2), ([2, 1, 9, 7], 3)] {
            let x = random(shape, 4);
            let ours = super::avg_pool_disjoint(&x, k).expect("a flex f32 tensor");
            let want = avg_pool2d(x, [k, k], [k, k], [0, 0], true, false);
            assert_eq!(ours.dims(), want.dims());
            let diff = (ours - want).abs().max().into_scalar();
            assert!(diff < 1e-6, "{shape:?} k {k}: {diff}");
        }
    }
}
