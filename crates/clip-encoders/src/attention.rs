//! Multi-head self-attention with one packed input projection, as PyTorch's `nn.MultiheadAttention`
//! stores it (`in_proj_weight` rows: q; k; v). One matmul for q, k and v at inference (one per part,
//! on the weight's column blocks, when training), then burn's fused attention op — or, at inference on
//! `flex`, two matmuls that read the heads as strided views of the packed projection.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::linear::{affine, linear_rows, linear_tokens};

/// The shape of a [`MultiheadAttention`].
#[derive(Config, Debug)]
pub struct MultiheadAttentionConfig {
    /// Token width (input and output).
    pub width: usize,
    /// Number of heads; must divide `width` (head dimension `width / heads`).
    pub heads: usize,
}

impl MultiheadAttentionConfig {
    /// A randomly initialized layer on `device` (burn's default linear initializer).
    pub fn init<B: Backend>(&self, device: &B::Device) -> MultiheadAttention<B> {
        MultiheadAttention {
            in_proj: LinearConfig::new(self.width, 3 * self.width).init(device),
            out_proj: LinearConfig::new(self.width, self.width).init(device),
            heads: self.heads,
        }
    }
}

/// Multi-head self-attention, `softmax(q·kᵀ/√head_dim)·v` per head, then `out_proj`.
#[derive(Module, Debug)]
pub struct MultiheadAttention<B: Backend> {
    /// `[width, 3·width]`: q, k and v projections side by side.
    pub in_proj: Linear<B>,
    /// Output projection of the concatenated heads, `[width, width]`.
    pub out_proj: Linear<B>,
    /// Number of heads.
    pub heads: usize,
}

impl<B: Backend> MultiheadAttention<B> {
    /// `x`: `[batch, seq, width]` → `[batch, seq, width]`. With `causal`, position i attends to
    /// positions ≤ i only; neither
    /// the fused op nor the `flex` path materializes that mask.
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        self.forward_added(x, None, causal)
    }

    /// `residual + forward(x, causal)` (`residual` as `x`), the residual added as part of the output
    /// projection where the backend allows it.
    pub(crate) fn forward_added(
        &self,
        x: Tensor<B, 3>,
        residual: Option<Tensor<B, 3>>,
        causal: bool,
    ) -> Tensor<B, 3> {
        let device = x.device();
        if attends_on_views::<B>(&device) {
            let [batch, seq, _] = x.dims();
            let [q, k, v] = self.head_views(self.project(x, 0, 3));
            let keys = if causal { Keys::Causal } else { Keys::All };
            return self.project_out(attend(q, k, v, keys), [batch, seq], residual);
        }
        let [q, k, v] = self.heads(x, 0);
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        self.merge_heads(attention(q, k, v, None, None, options), residual)
    }

    /// The output at one position per sequence, `at[b]` (`[batch]`), attending over all of `x`
    /// (`[batch, seq, width]`), or with `causal` over positions ≤ `at[b]`: `[batch, 1, width]`, the
    /// same rows as `forward` gives there. Only those rows' queries are projected.
    pub fn forward_at(&self, x: Tensor<B, 3>, at: Tensor<B, 1, Int>, causal: bool) -> Tensor<B, 3> {
        self.forward_at_added(x, at, None, causal)
    }

    /// `residual + forward_at(x, at, causal)` (`residual`: `[batch, 1, width]`), as `forward_added`.
    pub(crate) fn forward_at_added(
        &self,
        x: Tensor<B, 3>,
        at: Tensor<B, 1, Int>,
        residual: Option<Tensor<B, 3>>,
        causal: bool,
    ) -> Tensor<B, 3> {
        let [batch, seq, width] = x.dims();
        let rows = x.clone().gather(
            1,
            at.clone().reshape([batch, 1, 1]).expand([batch, 1, width]),
        );
        let device = x.device();
        let views = attends_on_views::<B>(&device);
        let [q, k, v] = if views {
            let [q] = self.head_views(self.project(rows, 0, 1));
            let [k, v] = self.head_views(self.project(x, 1, 3));
            [q, k, v]
        } else if B::ad_enabled(&device) {
            let [q] = self.heads(rows, 0);
            let [k, v] = self.heads(x, 1);
            [q, k, v]
        } else {
            // every part projected with the whole packed weight, then the parts picked from the
            // output: a product against a column slice of the weight (its rows strided) is wrong
            // under burn's fusion with autotune when it has one row, as q has at batch 1
            // (`gemv_unit_perpendicular`, cubek 0.2; docs/gpu.md)
            let [q, _, _] = self.heads::<3>(rows, 0);
            let [_, k, v] = self.heads::<3>(x, 0);
            [q, k, v]
        };
        let keys = if causal { Keys::UpTo(at) } else { Keys::All };
        if views {
            return self.project_out(attend(q, k, v, keys), [batch, 1], residual);
        }
        let mask = keys.mask([batch, self.heads, 1, seq], &device);
        let out = attention(q, k, v, mask, None, Default::default());
        self.merge_heads(out, residual)
    }

    /// The `N` parts of a packed projection (`[batch, seq, N·width]`) as `[batch, heads, seq,
    /// head_dim]` views of it: nothing is copied.
    fn head_views<const N: usize>(&self, packed: Tensor<B, 3>) -> [Tensor<B, 4>; N] {
        let [batch, seq, packed_width] = packed.dims();
        let head_dim = packed_width / (N * self.heads);
        let packed = packed.reshape([batch, seq, N * self.heads, head_dim]);
        std::array::from_fn(|i| {
            packed
                .clone()
                .narrow(2, i * self.heads, self.heads)
                .swap_dims(1, 2)
        })
    }

    /// Attention's output with the heads side by side (`[batch·seq, width]`) → `out_proj`, plus
    /// `residual`: `[batch, seq, width]`.
    fn project_out(
        &self,
        heads: Tensor<B, 2>,
        [batch, seq]: [usize; 2],
        residual: Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        let width = heads.dims()[1];
        let residual = residual.map(|r| r.reshape([batch * seq, width]));
        linear_rows(&self.out_proj, heads, residual).reshape([batch, seq, width])
    }

    /// Parts `first..first + N` of the packed q; k; v projection of `x` (`[batch, seq, width]`), each
    /// as `[batch, heads, seq, head_dim]`.
    fn heads<const N: usize>(&self, x: Tensor<B, 3>, first: usize) -> [Tensor<B, 4>; N] {
        let [batch, seq, width] = x.dims();
        let head_dim = width / self.heads;
        if B::ad_enabled(&x.device()) {
            // training: one product per part, so each part's gradient reaches `x` and its weight
            // columns directly (narrowing a packed output makes each part's backward fill a zero
            // gradient of the whole packed tensor)
            std::array::from_fn(|i| {
                self.project(x.clone(), first + i, first + i + 1)
                    .reshape([batch, seq, self.heads, head_dim])
                    .swap_dims(1, 2)
            })
        } else {
            // inference: one product for all parts, viewed as `[N, batch, heads, seq, head_dim]`, so
            // each part is copied once, straight into the contiguous layout attention reads (on
            // `flex` a reshape of a strided view copies, and so does attention on strided inputs)
            let packed = self
                .project(x, first, first + N)
                .reshape([batch, seq, N, self.heads, head_dim])
                .permute([2, 0, 3, 1, 4]);
            std::array::from_fn(|i| {
                packed
                    .clone()
                    .narrow(0, i, 1)
                    .reshape([batch, self.heads, seq, head_dim])
            })
        }
    }

    /// `x` (`[batch, seq, width]`) through parts `from..to` of the packed q; k; v projection:
    /// `[batch, seq, (to - from)·width]`.
    fn project(&self, x: Tensor<B, 3>, from: usize, to: usize) -> Tensor<B, 3> {
        let [batch, seq, width] = x.dims();
        if (from, to) == (0, 3) {
            return linear_tokens(&self.in_proj, x);
        }
        let part = |t: Tensor<B, 2>| t.narrow(1, from * width, (to - from) * width);
        let weight = part(self.in_proj.weight.val());
        let bias = self
            .in_proj
            .bias
            .as_ref()
            .map(|b| part(b.val().unsqueeze()).reshape([(to - from) * width]));
        affine(x.reshape([batch * seq, width]), weight, bias, None).reshape([
            batch,
            seq,
            (to - from) * width,
        ])
    }

    /// `[batch, heads, seq, head_dim]` → heads side by side → `out_proj`: `[batch, seq, width]`,
    /// plus `residual`.
    fn merge_heads(&self, out: Tensor<B, 4>, residual: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
        let [batch, heads, seq, head_dim] = out.dims();
        let out = out.swap_dims(1, 2).reshape([batch * seq, heads * head_dim]);
        let residual = residual.map(|r| r.reshape([batch * seq, heads * head_dim]));
        linear_rows(&self.out_proj, out, residual).reshape([batch, seq, heads * head_dim])
    }
}

/// Inference on `flex`: burn's attention op there needs contiguous `[batch, heads, seq, head_dim]`
/// inputs, and copying the heads out of the packed projection into that layout is an element-wise
/// strided walk (14 % of ViT-B/32's image encoding in a profile). Its matrix products read strided
/// operands directly, so attention is written as two of them on views (image +20 %, text +21 %).
/// Other backends keep the fused op (a tuned flash-attention kernel on the GPU ones); training keeps
/// it everywhere (its backward).
fn attends_on_views<B: Backend>(device: &B::Device) -> bool {
    !B::ad_enabled(device) && B::name(device) == "flex"
}

/// Which keys each query may attend to.
enum Keys<B: Backend> {
    All,
    /// Query i of a sequence attends to keys ≤ i.
    Causal,
    /// The one query of sequence b attends to keys ≤ `at[b]` (`[batch]`).
    UpTo(Tensor<B, 1, Int>),
}

impl<B: Backend> Keys<B> {
    /// As burn's attention takes it: `[batch, heads, queries, keys]`, true where a query may not
    /// attend; `None` for all keys.
    fn mask(
        &self,
        [batch, heads, queries, keys]: [usize; 4],
        device: &B::Device,
    ) -> Option<Tensor<B, 4, Bool>> {
        let shape = [batch, heads, queries, keys];
        match self {
            Keys::All => None,
            Keys::Causal => {
                // true above the diagonal: the keys after each query
                let later = Tensor::<B, 2, Bool>::tril_mask([queries, keys], 0, device);
                Some(later.reshape([1, 1, queries, keys]).expand(shape))
            }
            Keys::UpTo(at) => {
                let keys = Tensor::<B, 1, Int>::arange(0..keys as i64, device)
                    .reshape([1, 1, 1, keys])
                    .expand(shape);
                Some(keys.greater(at.clone().reshape([batch, 1, 1, 1]).expand(shape)))
            }
        }
    }

    /// As `flex::attention` takes it.
    #[cfg(feature = "flex")]
    fn limit(&self) -> crate::flex::KeyLimit {
        use crate::flex::KeyLimit;
        match self {
            Keys::All => KeyLimit::All,
            Keys::Causal => KeyLimit::Causal,
            Keys::UpTo(at) => {
                let at = at.to_data();
                KeyLimit::UpTo(at.iter::<i64>().map(|a| a.max(0) as usize).collect())
            }
        }
    }
}

/// `softmax(q·kᵀ/√head_dim)·v` over `[batch, heads, seq, head_dim]` operands of any strides, each
/// query over its allowed `keys`, with the heads side by side: `[batch·seq_q, heads·head_dim]`. On
/// `flex`, one (sequence, head) at a time with nothing in between left in memory (`flex::attention`).
fn attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    keys: Keys<B>,
) -> Tensor<B, 2> {
    let scale = (q.dims()[3] as f64).powf(-0.5);
    #[cfg(feature = "flex")]
    if let Some(out) = crate::flex::attention(&q, &k, &v, scale as f32, &keys.limit()) {
        return out;
    }
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    let scores = match keys.mask(scores.dims(), &scores.device()) {
        Some(mask) => scores.mask_fill(mask, f32::NEG_INFINITY),
        None => scores,
    };
    side_by_side(softmax(scores, 3).matmul(v))
}

/// `[batch, heads, seq, head_dim]` (contiguous) → `[batch·seq, heads·head_dim]`. Each head is a block
/// of whole rows, so this is row copies (a concatenation), not an element-wise transposition.
fn side_by_side<B: Backend>(out: Tensor<B, 4>) -> Tensor<B, 2> {
    let [batch, heads, seq, head_dim] = out.dims();
    let rows = (0..heads)
        .map(|h| out.clone().narrow(1, h, 1).reshape([batch * seq, head_dim]))
        .collect();
    Tensor::cat(rows, 1)
}
