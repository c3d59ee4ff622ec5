//! OpenAI's ModifiedResNet image tower: a 3-conv stem with average pooling, anti-aliased bottlenecks
//! (strided convs replaced by avg-pool then stride 1), and attention pooling instead of global avg-pool.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::module::attention;
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{activation::relu, backend::Backend, Distribution, Tensor};

use crate::linear::linear_tokens;

/// Output channels of a bottleneck are `planes · EXPANSION`.
pub const EXPANSION: usize = 4;

/// The shape of a [`ModifiedResNet`] (RN50: layers `[3, 4, 6, 3]`, width 64, output 1024,
/// 32 heads).
#[derive(Config, Debug)]
pub struct ModifiedResNetConfig {
    /// Bottlenecks per stage, e.g. `[3, 4, 6, 3]` for RN50.
    pub layers: [usize; 4],
    /// Output dimension of the attention pool (the joint embedding size).
    pub output_dim: usize,
    /// Heads of the attention pool; must divide `width · 32`.
    pub heads: usize,
    /// Side of the square input image, in pixels (default 224); a multiple of 32.
    #[config(default = 224)]
    pub image_size: usize,
    /// Channels after the stem (default 64); stage i has `width · 2^i` planes and
    /// `width · 2^i · EXPANSION` output channels, so the last has `width · 32`.
    #[config(default = 64)]
    pub width: usize,
}

fn conv<B: Backend>(c_in: usize, c_out: usize, kernel: usize, device: &B::Device) -> Conv2d<B> {
    let pad = kernel / 2;
    Conv2dConfig::new([c_in, c_out], [kernel; 2])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

/// A convolution followed by BatchNorm. Outside training the BatchNorm is folded into the
/// convolution's weights and bias (`w·γ/σ`, `β − μ·γ/σ`): one pass over the activations instead of
/// three broadcast ones, which on the CPU backend cost more than the convolutions themselves
/// (README, Performance). Same numbers up to rounding (parity tests). Training uses batch statistics.
fn conv_bn<B: Backend>(conv: &Conv2d<B>, bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    if B::ad_enabled(&x.device()) {
        return bn.forward(conv.forward(x));
    }
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let bias = bn.beta.val() - bn.running_mean.value() * scale.clone();
    let [c_out, c_in, kh, kw] = conv.weight.dims();
    // scaled as `[c_out, c_in·kh·kw] × [c_out, 1]`: `flex` runs that broadcast as SIMD rows, while
    // `[c_out, c_in, 1, 1] × [c_out, 1, 1, 1]` (a 1×1 kernel) falls to its scalar strided loop
    let weight = (conv.weight.val().reshape([c_out, c_in * kh * kw]) * scale.reshape([c_out, 1]))
        .reshape([c_out, c_in, kh, kw]);
    #[cfg(feature = "flex")]
    if conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1 {
        if let Some(y) = crate::flex::conv2d_same(&x, &weight, &bias) {
            return y;
        }
    }
    if [kh, kw] == [1, 1] && conv.stride == [1, 1] && conv.groups == 1 {
        return pointwise(x, weight.reshape([c_out, c_in]), bias);
    }
    // CLIP's ResNet convolutions pad by half the kernel (see `conv`)
    let options = ConvOptions::new(conv.stride, [kh / 2, kw / 2], conv.dilation, conv.groups);
    burn::tensor::module::conv2d(x, weight, Some(bias), options)
}

/// A 1×1 convolution as what it is in NCHW, one product per image: `[c_out, c_in] × [c_in, h·w]`,
/// both operands contiguous, the output already NCHW. burn's GPU backends run a 1×1 convolution as an
/// NHWC product against the transposed weight, and with autotune one of the kernels it may pick
/// (`matmul_double_unit_*`, cubek 0.2) gives wrong results for such a product when the channels are few
/// (8 in the test fixture; `docs/gpu.md`); this form also skips the two layout copies.
fn pointwise<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 4> {
    let [batch, c_in, h, w] = x.dims();
    let c_out = weight.dims()[0];
    let y = weight
        .reshape([1, c_out, c_in])
        .expand([batch, c_out, c_in])
        .matmul(x.reshape([batch, c_in, h * w]));
    (y + bias.reshape([1, c_out, 1])).reshape([batch, c_out, h, w])
}

/// `pool` (k×k windows, stride k, no padding: every pool of this tower) on `x`; on `flex` by the
/// crate's own kernel (`flex::pool`).
fn avg_pool_forward<B: Backend>(pool: &AvgPool2d, x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if !B::ad_enabled(&x.device()) {
        let [k, k_w] = pool.kernel_size;
        if k == k_w && pool.stride == [k, k] && matches!(pool.padding, PaddingConfig2d::Valid) {
            if let Some(y) = crate::flex::avg_pool_disjoint(&x, k) {
                return y;
            }
        }
    }
    pool.forward(x)
}

fn batch_norm<B: Backend>(channels: usize, device: &B::Device) -> BatchNorm<B> {
    BatchNormConfig::new(channels).init(device)
}

fn avg_pool(stride: usize) -> Option<AvgPool2d> {
    (stride > 1).then(|| AvgPool2dConfig::new([stride; 2]).init())
}

impl ModifiedResNetConfig {
    /// A randomly initialized tower on `device` (burn's default initializers; BatchNorm with
    /// running statistics 0 and 1).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ModifiedResNet<B> {
        let w = self.width;
        let mut inplanes = w;
        let mut stage = |planes: usize, blocks: usize, stride: usize| {
            let stage: Vec<_> = (0..blocks)
                .map(|i| {
                    let stride = if i == 0 { stride } else { 1 };
                    let block = Bottleneck::new(inplanes, planes, stride, device);
                    inplanes = planes * EXPANSION;
                    block
                })
                .collect();
            stage
        };
        let layer1 = stage(w, self.layers[0], 1);
        let layer2 = stage(w * 2, self.layers[1], 2);
        let layer3 = stage(w * 4, self.layers[2], 2);
        let layer4 = stage(w * 8, self.layers[3], 2);
        let embed_dim = w * 32;
        ModifiedResNet {
            conv1: Conv2dConfig::new([3, w / 2], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn1: batch_norm(w / 2, device),
            conv2: conv(w / 2, w / 2, 3, device),
            bn2: batch_norm(w / 2, device),
            conv3: conv(w / 2, w, 3, device),
            bn3: batch_norm(w, device),
            avgpool: AvgPool2dConfig::new([2, 2]).init(),
            layer1,
            layer2,
            layer3,
            layer4,
            attnpool: AttentionPool2d::new(
                self.image_size / 32,
                embed_dim,
                self.heads,
                self.output_dim,
                device,
            ),
            image_size: self.image_size,
        }
    }
}

/// A bottleneck's shortcut when its input and output shapes differ: average pool (when strided),
/// then a 1×1 convolution and BatchNorm.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// `stride`×`stride` average pool, when the bottleneck's stride is above 1.
    pub pool: Option<AvgPool2d>,
    /// Bias-free 1×1 convolution, `inplanes` → `planes · EXPANSION` channels.
    pub conv: Conv2d<B>,
    /// BatchNorm after `conv`.
    pub bn: BatchNorm<B>,
}

/// An anti-aliased bottleneck: 1×1, 3×3 convolutions (each with BatchNorm and ReLU), an average pool
/// in place of a strided convolution, a 1×1 convolution to `planes · EXPANSION` channels, and the
/// residual added before the last ReLU.
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    /// 1×1 convolution, `inplanes` → `planes`.
    pub conv1: Conv2d<B>,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm<B>,
    /// 3×3 convolution (padding 1), `planes` → `planes`.
    pub conv2: Conv2d<B>,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm<B>,
    /// `stride`×`stride` average pool, in the first block of a strided stage.
    pub avgpool: Option<AvgPool2d>,
    /// 1×1 convolution, `planes` → `planes · EXPANSION`.
    pub conv3: Conv2d<B>,
    /// BatchNorm after `conv3`.
    pub bn3: BatchNorm<B>,
    /// The shortcut's projection, when the block changes resolution or channels.
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> Bottleneck<B> {
    fn new(inplanes: usize, planes: usize, stride: usize, device: &B::Device) -> Self {
        let out = planes * EXPANSION;
        let downsample = (stride > 1 || inplanes != out).then(|| Downsample {
            pool: avg_pool(stride),
            conv: conv(inplanes, out, 1, device),
            bn: batch_norm(out, device),
        });
        Self {
            conv1: conv(inplanes, planes, 1, device),
            bn1: batch_norm(planes, device),
            conv2: conv(planes, planes, 3, device),
            bn2: batch_norm(planes, device),
            avgpool: avg_pool(stride),
            conv3: conv(planes, out, 1, device),
            bn3: batch_norm(out, device),
            downsample,
        }
    }

    /// `x`: `[batch, inplanes, h, w]` → `[batch, planes · EXPANSION, h / stride, w / stride]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = relu(conv_bn(&self.conv1, &self.bn1, x.clone()));
        let mut out = relu(conv_bn(&self.conv2, &self.bn2, out));
        if let Some(pool) = &self.avgpool {
            out = avg_pool_forward(pool, out);
        }
        let out = conv_bn(&self.conv3, &self.bn3, out);
        let identity = match &self.downsample {
            Some(down) => {
                let x = match &down.pool {
                    Some(pool) => avg_pool_forward(pool, x),
                    None => x,
                };
                conv_bn(&down.conv, &down.bn, x)
            }
            None => x,
        };
        relu(out + identity)
    }
}

/// Multi-head attention over `[mean; spatial tokens] + positions` where only the mean token queries.
#[derive(Module, Debug)]
pub struct AttentionPool2d<B: Backend> {
    /// Learned positions of the mean token and the `spatial²` grid tokens, `[1 + spatial², channels]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// Key projection, `[channels, channels]`.
    pub k_proj: Linear<B>,
    /// Query projection (of the mean token only), `[channels, channels]`.
    pub q_proj: Linear<B>,
    /// Value projection, `[channels, channels]`.
    pub v_proj: Linear<B>,
    /// Output projection, `[channels, output_dim]`.
    pub c_proj: Linear<B>,
    /// Number of heads; must divide `channels`.
    pub heads: usize,
}

impl<B: Backend> AttentionPool2d<B> {
    fn new(
        spatial: usize,
        embed_dim: usize,
        heads: usize,
        output_dim: usize,
        device: &B::Device,
    ) -> Self {
        let std = (embed_dim as f64).powf(-0.5);
        Self {
            positional_embedding: Param::from_tensor(Tensor::random(
                [spatial * spatial + 1, embed_dim],
                Distribution::Normal(0.0, std),
                device,
            )),
            k_proj: LinearConfig::new(embed_dim, embed_dim).init(device),
            q_proj: LinearConfig::new(embed_dim, embed_dim).init(device),
            v_proj: LinearConfig::new(embed_dim, embed_dim).init(device),
            c_proj: LinearConfig::new(embed_dim, output_dim).init(device),
            heads,
        }
    }

    /// `x`: `[batch, channels, h, w]` → `[batch, output_dim]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [batch, channels, h, w] = x.dims();
        let tokens = x.reshape([batch, channels, h * w]).swap_dims(1, 2);
        let mean = tokens.clone().mean_dim(1);
        let x = Tensor::cat(vec![mean, tokens], 1) + self.positional_embedding.val().unsqueeze();
        let seq = h * w + 1;
        let head_dim = channels / self.heads;
        let split = |t: Tensor<B, 3>, len: usize| {
            t.reshape([batch, len, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(linear_tokens(&self.q_proj, x.clone().narrow(1, 0, 1)), 1);
        let k = split(linear_tokens(&self.k_proj, x.clone()), seq);
        let v = split(linear_tokens(&self.v_proj, x), seq);
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default())
            .swap_dims(1, 2)
            .reshape([batch, channels]);
        self.c_proj.forward(out)
    }
}

/// OpenAI's ModifiedResNet image tower, with its parameter names. Built by
/// [`ModifiedResNetConfig::init`] or loaded with pretrained weights. Its BatchNorms use their
/// running statistics outside autodiff and batch statistics under it.
#[derive(Module, Debug)]
pub struct ModifiedResNet<B: Backend> {
    /// Stem: 3×3 convolution of stride 2, 3 → `width / 2` channels.
    pub conv1: Conv2d<B>,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm<B>,
    /// Stem: 3×3 convolution, `width / 2` → `width / 2`.
    pub conv2: Conv2d<B>,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm<B>,
    /// Stem: 3×3 convolution, `width / 2` → `width`.
    pub conv3: Conv2d<B>,
    /// BatchNorm after `conv3`.
    pub bn3: BatchNorm<B>,
    /// The stem's 2×2 average pool.
    pub avgpool: AvgPool2d,
    /// Stage 1 (stride 1, `width` planes).
    pub layer1: Vec<Bottleneck<B>>,
    /// Stage 2 (stride 2, `2 · width` planes).
    pub layer2: Vec<Bottleneck<B>>,
    /// Stage 3 (stride 2, `4 · width` planes).
    pub layer3: Vec<Bottleneck<B>>,
    /// Stage 4 (stride 2, `8 · width` planes).
    pub layer4: Vec<Bottleneck<B>>,
    /// Attention pooling of the final `image_size / 32` grid into `[batch, output_dim]`.
    pub attnpool: AttentionPool2d<B>,
    /// Side of the square input image, in pixels.
    pub image_size: usize,
}

impl<B: Backend> ModifiedResNet<B> {
    /// `images`: `[batch, 3, size, size]`, normalized. Returns `[batch, output_dim]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = relu(conv_bn(&self.conv1, &self.bn1, images));
        let x = relu(conv_bn(&self.conv2, &self.bn2, x));
        let x = relu(conv_bn(&self.conv3, &self.bn3, x));
        let x = avg_pool_forward(&self.avgpool, x);
        let x = [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .flatten()
            .fold(x, |x, block| block.forward(x));
        self.attnpool.forward(x)
    }

    /// Size of the pooled features.
    pub fn output_dim(&self) -> usize {
        self.attnpool.c_proj.weight.dims()[1]
    }
}
