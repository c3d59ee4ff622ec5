//! Attention on the `flex` backend, one (sequence, head) at a time, with nothing in between left in
//! memory: `q·kᵀ` into a scratch block that stays in cache, each row scaled, limited to its allowed
//! keys and softmaxed in one pass, and the product with `v` written straight into the
//! heads-side-by-side layout `[batch·seq, heads·head_dim]` that the output projection reads.
//!
//! Through burn's ops that is a zero-filled `[batch, heads, seq, seq]` scores tensor, four passes
//! over it (scale; mask fill, after copying the broadcast mask into a dense one; softmax's two, with
//! a scalar `expf` per element), a contiguous `[batch, heads, seq, head_dim]` product, and two copies
//! to put the heads side by side. Here the softmax uses `flex::gelu`'s vectorized `exp` (within 1e-7
//! relative); the products are the same `gemm` calls on the same strided operands.

use burn::backend::flex::FlexTensor;
use burn::tensor::{backend::Backend, DType, Tensor};
use rayon::prelude::*;

use super::gelu::exp_neg;
use super::tensor::{as_flex, dims4, f32_tensor, from_flex, gemm_f32, Strided};

/// Which keys each query row may attend to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyLimit {
    /// Every key.
    All,
    /// Query `i` of a sequence attends to keys `0..=i`.
    Causal,
    /// The one query of sequence `b` attends to keys `0..=last[b]`.
    UpTo(Vec<usize>),
}

/// `softmax(q·kᵀ·scale)·v` per (sequence, head) over the keys `limit` allows, the heads side by side:
/// `[batch·queries, heads·v_dim]` from `q` (`[batch, heads, queries, head_dim]`), `k` (`[batch,
/// heads, keys, head_dim]`) and `v` (`[batch, heads, keys, v_dim]`), all of any non-negative strides
/// (views of the packed projection). `None` unless all three are `flex` f32 tensors whose shapes
/// agree with each other and with `limit`.
pub(crate) fn attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    scale: f32,
    limit: &KeyLimit,
) -> Option<Tensor<B, 2>> {
    let [q, k, v] = [q, k, v].map(|t| t.clone().into_primitive());
    let (q, k, v) = (as_flex(&q)?, as_flex(&k)?, as_flex(&v)?);
    from_flex(attention_f32(q, k, v, scale, limit)?)
}

fn attention_f32(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    scale: f32,
    limit: &KeyLimit,
) -> Option<FlexTensor> {
    let (q, k, v) = (Heads::of(q)?, Heads::of(k)?, Heads::of(v)?);
    let [batch, heads, queries, head_dim] = q.dims;
    let [keys, v_dim] = [k.dims[2], v.dims[3]];
    let fits = match limit {
        KeyLimit::All => true,
        KeyLimit::Causal => queries == keys,
        KeyLimit::UpTo(last) => queries == 1 && last.len() == batch,
    };
    if !fits
        || scale.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        || k.dims != [batch, heads, keys, head_dim]
        || v.dims[..3] != [batch, heads, keys]
        || batch * heads * queries * keys * head_dim * v_dim == 0
    {
        return None; // burn's ops handle (or report) these
    }
    let width = heads * v_dim;
    let stride = keys.next_multiple_of(LANES);
    let mut out = vec![0.0f32; batch * queries * width];
    let dst = SendPtr(out.as_mut_ptr());
    let pairs = (0..batch * heads).into_par_iter();
    pairs.for_each_init(
        || vec![0.0f32; queries * stride],
        |scores, pair| {
            let (b, h) = (pair / heads, pair % heads);
            // SAFETY: `Heads::of` checked that every element of q, k and v is inside its storage;
            // `scores` holds queries·stride elements, written at i·stride + j, j < keys ≤ stride
            unsafe {
                gemm_f32(
                    queries,
                    keys,
                    head_dim,
                    Strided {
                        at: scores.as_mut_ptr(),
                        row: stride as isize,
                        col: 1,
                    },
                    q.at(b, h, 2, 3),
                    k.at(b, h, 3, 2),
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (i, row) in scores.chunks_exact_mut(stride).enumerate() {
                let allowed = match limit {
                    KeyLimit::All => keys,
                    KeyLimit::Causal => i + 1,
                    KeyLimit::UpTo(last) => last[b].saturating_add(1),
                };
                softmax_row(row, scale, allowed, keys);
            }
            let dst = &dst;
            // SAFETY: as above for `scores` and v; dst gets rows b·queries..(b+1)·queries, columns
            // h·v_dim..(h+1)·v_dim of the `[batch·queries, width]` output: inside it, and disjoint
            // between pairs
            unsafe {
                gemm_f32(
                    queries,
                    v_dim,
                    keys,
                    Strided {
                        at: dst.0.add(b * queries * width + h * v_dim),
                        row: width as isize,
                        col: 1,
                    },
                    Strided {
                        at: scores.as_ptr(),
                        row: stride as isize,
                        col: 1,
                    },
                    v.at(b, h, 2, 3),
                    false,
                    gemm::Parallelism::None,
                );
            }
        },
    );
    Some(f32_tensor(out, vec![batch * queries, width]))
}

/// A `[batch, heads, rows, cols]` f32 operand as `gemm` reads it: storage and strides, read in place.
struct Heads<'a> {
    data: &'a [f32],
    start: usize,
    dims: [usize; 4],
    strides: [isize; 4],
}

impl<'a> Heads<'a> {
    /// `None` unless `t` is 4-D f32 with non-negative strides and every element inside its storage.
    fn of(t: &'a FlexTensor) -> Option<Self> {
        let layout = t.layout();
        if t.dtype() != DType::F32 || !layout.has_positive_strides() {
            return None;
        }
        let dims = dims4(t)?;
        let strides: [isize; 4] = layout.strides().try_into().ok()?;
        let data = t.storage::<f32>();
        let start = layout.start_offset();
        let last = dims.iter().zip(strides).try_fold(start, |at, (&d, s)| {
            at.checked_add(d.saturating_sub(1).checked_mul(s as usize)?)
        })?;
        (last < data.len()).then_some(Self {
            data,
            start,
            dims,
            strides,
        })
    }

    /// Sequence `b`'s head `h` as a matrix whose rows run along axis `rows` and columns along axis
    /// `cols` (2 and 3 as stored, 3 and 2 transposed).
    fn at(&self, b: usize, h: usize, rows: usize, cols: usize) -> Strided<*const f32> {
        let offset = self.start + b * self.strides[0] as usize + h * self.strides[1] as usize;
        Strided {
            at: self.data[offset..].as_ptr(),
            row: self.strides[rows],
            col: self.strides[cols],
        }
    }
}

/// The output pointer, shared by the threads that write disjoint parts of it.
struct SendPtr(*mut f32);
// SAFETY: each thread writes only its own (sequence, head) block (see `attention_f32`)
unsafe impl Sync for SendPtr {}

/// Vector width the softmax works in; scratch rows are padded to a multiple of it so that every
/// row, whatever its allowed length, is whole vectors (causal rows are mostly remainder otherwise).
const LANES: usize = 16;

/// One padded row (`row.len()` a multiple of [`LANES`], ≥ `keys`): `softmax(row[..allowed]·scale)`
/// for `scale > 0`, zeros in `allowed..keys` (a row with no allowed key, which burn's softmax would
/// fill with NaN, is all zeros here); the padding after `keys` is left meaningless.
fn softmax_row(row: &mut [f32], scale: f32, allowed: usize, keys: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above)
            return unsafe { softmax_row_avx512(row, scale, allowed, keys) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above)
            return unsafe { softmax_row_avx2(row, scale, allowed, keys) };
        }
    }
    softmax_row_loop(row, scale, allowed, keys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(row: &mut [f32], scale: f32, allowed: usize, keys: usize) {
    softmax_row_loop(row, scale, allowed, keys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row_avx2(row: &mut [f32], scale: f32, allowed: usize, keys: usize) {
    softmax_row_loop(row, scale, allowed, keys)
}

/// Whole vectors up to the one holding the last allowed key, the keys after it in that vector set to
/// −∞ first (weight e^−87 ≈ 1e-38 from `exp_neg`, which does not change a sum ≥ 1, and zeroed at the
/// end); lane-wise partial maxima and sums so that the loops vectorize.
#[inline(always)]
fn softmax_row_loop(row: &mut [f32], scale: f32, allowed: usize, keys: usize) {
    let allowed = allowed.min(keys);
    if allowed == 0 {
        row[..keys].fill(0.0);
        return;
    }
    let live = &mut row[..allowed.next_multiple_of(LANES)];
    live[allowed..].fill(f32::NEG_INFINITY);
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    for chunk in live.chunks_exact_mut(LANES) {
        for (m, x) in lane_max.iter_mut().zip(chunk.iter_mut()) {
            *x *= scale;
            *m = m.max(*x);
        }
    }
    let max = lane_max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut lane_sum = [0.0f32; LANES];
    for chunk in live.chunks_exact_mut(LANES) {
        for (s, x) in lane_sum.iter_mut().zip(chunk.iter_mut()) {
            *x = exp_neg(max - *x);
            *s += *x;
        }
    }
    let inverse = 1.0 / lane_sum.iter().sum::<f32>();
    for x in live[..allowed].iter_mut() {
        *x *= inverse;
    }
    row[allowed..keys].fill(0.0);
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::softmax;
    use burn::tensor::{Bool, Int, Tensor, Tolerance};

    use super::{attention, KeyLimit};
    use crate::flex::tensor::random;

    type B = burn::backend::Flex;

    /// Parts `first..first + n` of a packed `[batch, seq, 3·heads·head_dim]` projection as `[batch,
    /// heads, seq, head_dim]` views, as `MultiheadAttention` reads them.
    fn views(packed: &Tensor<B, 3>, heads: usize, first: usize, n: usize) -> Vec<Tensor<B, 4>> {
        let [batch, seq, packed_width] = packed.dims();
        let head_dim = packed_width / (3 * heads);
        let packed = packed.clone().reshape([batch, seq, 3 * heads, head_dim]);
        (first..first + n)
            .map(|i| packed.clone().narrow(2, i * heads, heads).swap_dims(1, 2))
            .collect()
    }

    /// burn's scale → mask fill → softmax → product, heads side by side.
    fn reference(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        scale: f32,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 2> {
        let [batch, heads, queries, _] = q.dims();
        let v_dim = v.dims()[3];
        let s = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        let s = match mask {
            Some(mask) => s.mask_fill(mask, f32::NEG_INFINITY),
            None => s,
        };
        softmax(s, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch * queries, heads * v_dim])
    }

    /// Sequences shorter and longer than a vector, every kind of key limit, against burn's ops.
    #[test]
    fn matches_burns_attention() {
        let device = Default::default();
        let (batch, heads, head_dim) = (3, 2, 8);
        for seq in [1, 5, 16, 50, 77] {
            let packed = random([batch, seq, 3 * heads * head_dim], seq as u64);
            let [q, k, v] = <[_; 3]>::try_from(views(&packed, heads, 0, 3)).expect("three views");
            let want = reference(q.clone(), k.clone(), v.clone(), 0.35, None);
            let got = attention(&q, &k, &v, 0.35, &KeyLimit::All).expect("flex f32");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));

            let shape = [batch, heads, seq, seq];
            let causal = Tensor::<B, 2, Bool>::tril_mask([seq, seq], 0, &device)
                .reshape([1, 1, seq, seq])
                .expand(shape);
            let want = reference(q.clone(), k.clone(), v.clone(), 0.35, Some(causal));
            let got = attention(&q, &k, &v, 0.35, &KeyLimit::Causal).expect("flex f32");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));

            // one query per sequence, from its own projection
            let rows = random([batch, 1, 3 * heads * head_dim], 99);
            let q = views(&rows, heads, 0, 1).remove(0);
            let last = [seq - 1, seq / 2, 0];
            let at = Tensor::<B, 1, Int>::from_ints(last.map(|l| l as i32), &device);
            let shape = [batch, heads, 1, seq];
            let keys = Tensor::<B, 1, Int>::arange(0..seq as i64, &device)
                .reshape([1, 1, 1, seq])
                .expand(shape);
            let mask = keys.greater(at.reshape([batch, 1, 1, 1]).expand(shape));
            let want = reference(q.clone(), k.clone(), v.clone(), 0.35, Some(mask));
            let got = attention(&q, &k, &v, 0.35, &KeyLimit::UpTo(last.to_vec())).expect("flex");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn shapes_that_do_not_fit_fall_back() {
        let (q, k, v) = (
            random([2, 1, 3, 4], 1),
            random([2, 1, 5, 4], 2),
            random([2, 1, 5, 6], 3),
        );
        assert!(attention(&q, &k, &v, 1.0, &KeyLimit::All).is_some());
        assert!(attention(&q, &k, &v, 1.0, &KeyLimit::Causal).is_none());
        assert!(attention(&q, &k, &v, 1.0, &KeyLimit::UpTo(vec![1, 2])).is_none());
        assert!(attention(&q, &v, &k, 1.0, &KeyLimit::All).is_none());
    }
}
