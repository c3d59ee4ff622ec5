//! Attention on the `flex` backend: the weights as one pass per row (scale, causal limit and
//! softmax), and their product with the values written straight into the heads-side-by-side layout.
//!
//! Through burn's ops the weights are four passes over the `[batch, heads, seq, seq]` scores (scale,
//! mask fill — after copying the broadcast mask into a dense one — and softmax's two), with a scalar
//! `expf` per element. Here each row is scaled, its allowed keys softmaxed with a vectorized `exp`
//! (`flex_gelu`'s, within 1e-7 relative) and the rest set to zero, in place. The product with the
//! values is then one `gemm` per (sequence, head) whose output rows are strided into
//! `[batch·seq, heads·head_dim]`, the output projection's input, instead of a contiguous
//! `[batch, heads, seq, head_dim]` product re-laid out by two copies.

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{backend::Backend, Bytes, DType, Shape, Tensor};
use rayon::prelude::*;

use crate::flex::{as_flex, as_flex_mut, covers_buffer, from_flex};
use crate::flex_gelu::exp_neg;

/// Which keys each query row may attend to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyLimit {
    /// Every key.
    All,
    /// Row `i` of each `[seq, seq]` block attends to keys `0..=i`.
    Causal,
    /// The one query row of sequence `b` attends to keys `0..=last[b]`.
    UpTo(Vec<usize>),
}

/// `softmax(scores·scale)` over the last axis of `scores` (`[batch, heads, queries, keys]`) with
/// keys past each row's limit given weight 0, in place, when `scores` is a contiguous `flex` f32
/// tensor of its own; otherwise `scores` back, untouched.
pub(crate) fn scaled_softmax<B: Backend>(
    scores: Tensor<B, 4>,
    scale: f32,
    limit: &KeyLimit,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let [batch, heads, queries, keys] = scores.dims();
    let shape_fits = match limit {
        KeyLimit::All => true,
        KeyLimit::Causal => queries == keys,
        KeyLimit::UpTo(last) => queries == 1 && last.len() == batch,
    };
    let mut primitive = scores.into_primitive();
    let done = match as_flex_mut(&mut primitive) {
        Some(t) if shape_fits && keys > 0 && t.dtype() == DType::F32 && covers_buffer(t) => {
            let rows = t.storage_mut::<f32>().par_chunks_exact_mut(keys);
            rows.with_min_len(64).enumerate().for_each(|(r, row)| {
                let allowed = match limit {
                    KeyLimit::All => keys,
                    KeyLimit::Causal => r % queries + 1,
                    KeyLimit::UpTo(last) => last[r / heads].saturating_add(1),
                };
                softmax_row(row, scale, allowed.min(keys));
            });
            true
        }
        _ => false,
    };
    let scores = Tensor::from_primitive(primitive);
    if done {
        Ok(scores)
    } else {
        Err(scores)
    }
}

/// `weights · values` for each (sequence, head), the heads side by side: `[batch·queries,
/// heads·head_dim]` from `weights` (`[batch, heads, queries, keys]`) and `values` (`[batch, heads,
/// keys, head_dim]`, any non-negative strides, e.g. a view of the packed projection). `None` unless
/// both are `flex` f32 tensors of matching shapes.
pub(crate) fn weighted_values<B: Backend>(
    weights: &Tensor<B, 4>,
    values: &Tensor<B, 4>,
) -> Option<Tensor<B, 2>> {
    let values = values.clone().into_primitive();
    let values = as_flex(&values)?;
    let weights = weights.clone().into_primitive();
    let weights = as_flex(&weights)?;
    from_flex(weighted_values_f32(weights, values)?)
}

fn weighted_values_f32(weights: &FlexTensor, values: &FlexTensor) -> Option<FlexTensor> {
    if weights.dtype() != DType::F32 || values.dtype() != DType::F32 {
        return None;
    }
    let weights = weights.to_contiguous();
    let [batch, heads, queries, keys] = weights.layout().shape().dims::<4>();
    let v = values.layout();
    let [v_batch, v_heads, v_keys, head_dim] = v.shape().dims::<4>();
    if [v_batch, v_heads, v_keys] != [batch, heads, keys] || v.strides().iter().any(|&s| s < 0) {
        return None;
    }
    let total = batch * heads * queries * keys * head_dim;
    let w = weights.storage::<f32>();
    let vs = values.storage::<f32>();
    let strides: Vec<usize> = v.strides().iter().map(|&s| s as usize).collect();
    let last = [batch, heads, keys, head_dim]
        .iter()
        .zip(&strides)
        .try_fold(v.start_offset(), |at, (&d, &s)| {
            at.checked_add(d.saturating_sub(1).checked_mul(s)?)
        })?;
    if total == 0 || last >= vs.len() || w.len() < batch * heads * queries * keys {
        return None; // burn's ops handle (or report) these
    }
    let width = heads * head_dim;
    let mut out = vec![0.0f32; batch * queries * width];
    let dst = SendPtr(out.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each(|pair| {
        let (b, h) = (pair / heads, pair % heads);
        let dst = &dst;
        // SAFETY: lhs is weights[b, h] (contiguous, inside `w` as checked); rhs elements are at most
        // `last` < vs.len(); dst writes rows b·queries..(b+1)·queries, columns h·head_dim..(h+1)·
        // head_dim of the `[batch·queries, width]` output: inside it, and disjoint between pairs
        unsafe {
            gemm::gemm(
                queries,
                head_dim,
                keys,
                dst.0.add(b * queries * width + h * head_dim),
                1,
                width as isize,
                false,
                w.as_ptr().add(pair * queries * keys),
                1,
                keys as isize,
                vs.as_ptr()
                    .add(v.start_offset() + b * strides[0] + h * strides[1]),
                strides[3] as isize,
                strides[2] as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    });
    Some(FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::from(vec![batch * queries, width])),
        DType::F32,
    ))
}

/// The output pointer, shared by the threads that write disjoint parts of it.
struct SendPtr(*mut f32);
// SAFETY: each thread writes only its own (sequence, head) block (see `weighted_values_f32`)
unsafe impl Sync for SendPtr {}

/// One row: `softmax(row[..allowed]·scale)`, zeros after (a row with no allowed key, which burn's
/// softmax would fill with NaN, is all zeros here).
fn softmax_row(row: &mut [f32], scale: f32, allowed: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above)
            return unsafe { softmax_row_avx512(row, scale, allowed) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above)
            return unsafe { softmax_row_avx2(row, scale, allowed) };
        }
    }
    softmax_row_loop(row, scale, allowed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(row: &mut [f32], scale: f32, allowed: usize) {
    softmax_row_loop(row, scale, allowed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_row_avx2(row: &mut [f32], scale: f32, allowed: usize) {
    softmax_row_loop(row, scale, allowed)
}

/// Lane-wise partial maxima and sums (16 lanes) so that the loops vectorize.
#[inline(always)]
fn softmax_row_loop(row: &mut [f32], scale: f32, allowed: usize) {
    const LANES: usize = 16;
    let (live, masked) = row.split_at_mut(allowed);
    masked.fill(0.0);
    if live.is_empty() {
        return;
    }
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let mut chunks = live.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (m, x) in lane_max.iter_mut().zip(chunk.iter_mut()) {
            *x *= scale;
            *m = m.max(*x);
        }
    }
    let tail = chunks.into_remainder();
    for (m, x) in lane_max.iter_mut().zip(tail.iter_mut()) {
        *x *= scale;
        *m = m.max(*x);
    }
    let max = lane_max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut lane_sum = [0.0f32; LANES];
    let mut chunks = live.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, x) in lane_sum.iter_mut().zip(chunk.iter_mut()) {
            *x = exp_neg(max - *x);
            *s += *x;
        }
    }
    for (s, x) in lane_sum.iter_mut().zip(chunks.into_remainder()) {
        *x = exp_neg(max - *x);
        *s += *x;
    }
    let inverse = 1.0 / lane_sum.iter().sum::<f32>();
    for x in live.iter_mut() {
        *x *= inverse;
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::softmax;
    use burn::tensor::{Bool, Distribution, Int, Tensor, Tolerance};

    use super::{scaled_softmax, KeyLimit};

    type B = burn::backend::Flex;

    fn random<const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
        <B as burn::tensor::backend::Backend>::seed(&Default::default(), 7);
        Tensor::random(shape, Distribution::Normal(0.0, 3.0), &Default::default())
    }

    /// burn's scale → mask fill → softmax, which the pass replaces.
    fn reference(s: Tensor<B, 4>, scale: f32, mask: Option<Tensor<B, 4, Bool>>) -> Tensor<B, 4> {
        let s = s.mul_scalar(scale);
        let s = match mask {
            Some(mask) => s.mask_fill(mask, f32::NEG_INFINITY),
            None => s,
        };
        softmax(s, 3)
    }

    /// Rows shorter and longer than a vector, every kind of limit, against burn's ops.
    #[test]
    fn matches_burns_masked_softmax() {
        let device = Default::default();
        for seq in [1, 5, 16, 50, 77] {
            let shape = [3, 2, seq, seq];
            let s = random(shape);
            let want = reference(s.clone(), 0.125, None);
            let got = scaled_softmax(s.clone(), 0.125, &KeyLimit::All).expect("flex f32");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-6));

            let causal = Tensor::<B, 2, Bool>::tril_mask([seq, seq], 0, &device)
                .reshape([1, 1, seq, seq])
                .expand(shape);
            let want = reference(s.clone(), 0.125, Some(causal));
            let got = scaled_softmax(s, 0.125, &KeyLimit::Causal).expect("flex f32");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-6));

            let shape = [3, 2, 1, seq];
            let s = random(shape);
            let last = [seq - 1, seq / 2, 0];
            let at = Tensor::<B, 1, Int>::from_ints(last.map(|l| l as i32), &device);
            let keys = Tensor::<B, 1, Int>::arange(0..seq as i64, &device)
                .reshape([1, 1, 1, seq])
                .expand(shape);
            let mask = keys.greater(at.reshape([3, 1, 1, 1]).expand(shape));
            let want = reference(s.clone(), 0.5, Some(mask));
            let got = scaled_softmax(s, 0.5, &KeyLimit::UpTo(last.to_vec())).expect("flex f32");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-6));
        }
    }

    /// Against `flex`'s matmul then the heads' row blocks side by side, with the values a strided
    /// view of a packed `[batch, keys, 3·heads·head_dim]` projection, as attention reads them.
    #[test]
    fn weighted_values_land_side_by_side() {
        let (batch, heads, queries, keys, head_dim) = (3, 4, 5, 7, 6);
        let weights = random([batch, heads, queries, keys]);
        let packed = random([batch, keys, 3 * heads * head_dim]);
        let values = packed
            .reshape([batch, keys, 3 * heads, head_dim])
            .narrow(2, 2 * heads, heads)
            .swap_dims(1, 2);
        let product = weights.clone().matmul(values.clone());
        let rows = (0..heads)
            .map(|h| {
                product
                    .clone()
                    .narrow(1, h, 1)
                    .reshape([batch * queries, head_dim])
            })
            .collect();
        let want = Tensor::cat(rows, 1);
        let got = super::weighted_values(&weights, &values).expect("flex f32");
        assert_eq!(got.dims(), [batch * queries, heads * head_dim]);
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        let other_keys = random([batch, heads, keys + 1, head_dim]);
        assert!(super::weighted_values(&weights, &other_keys).is_none());
    }

    #[test]
    fn limits_that_do_not_fit_fall_back() {
        let s = random([2, 1, 3, 4]);
        assert!(scaled_softmax(s.clone(), 1.0, &KeyLimit::Causal).is_err());
        assert!(scaled_softmax(s, 1.0, &KeyLimit::UpTo(vec![1, 2])).is_err());
    }
}
