//! The small pieces that sit on top of CLIP's encoders: the linear [`Projection`] of each tower's
//! pooled output into the joint embedding space, [`l2_normalize`], and the learnable temperature
//! [`LogitScale`] that turns cosine similarities into logits.
//!
//! The encoders live in `clip-encoders`; the root crate `clip` puts a tower, its projection and the
//! shared logit scale together into one model and loads their weights (open_clip's `visual.proj`,
//! `text_projection` and `logit_scale`). Everything here is generic over the burn backend.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use clip_heads::{l2_normalize, LogitScale, ProjectionConfig, LOGIT_SCALE_INIT};
//!
//! let device = Default::default();
//! // pooled outputs of the two towers (768 and 512 wide) projected into a 512-wide joint space
//! let image_projection = ProjectionConfig::new(768, 512).init::<Flex>(&device);
//! let text_projection = ProjectionConfig::new(512, 512).init::<Flex>(&device);
//! let images = image_projection.forward(Tensor::ones([2, 768], &device)); // [2, 512]
//! let texts = text_projection.forward(Tensor::ones([3, 512], &device)); // [3, 512]
//! let logits = LogitScale::<Flex>::new(LOGIT_SCALE_INIT, &device).logits(images, texts);
//! assert_eq!(logits.dims(), [2, 3]);
//!
//! // the scale is 1/0.07: orthogonal unit rows give 0, parallel ones 1/0.07
//! let a = Tensor::<Flex, 2>::from_floats([[3.0, 0.0], [0.0, 2.0]], &device);
//! let b = Tensor::<Flex, 2>::from_floats([[5.0, 0.0]], &device);
//! let logits = LogitScale::new(LOGIT_SCALE_INIT, &device).logits(a, b);
//! let values = logits.into_data().to_vec::<f32>()?;
//! assert!((values[0] - 1.0 / 0.07).abs() < 1e-4 && values[1].abs() < 1e-6);
//! # let _ = l2_normalize::<Flex>;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Distribution, Tensor};

/// Sizes of a [`Projection`].
#[derive(Config, Debug)]
pub struct ProjectionConfig {
    /// Width of the encoder output being projected.
    pub input: usize,
    /// Dimension of the joint embedding space.
    pub output: usize,
    /// OpenAI/open_clip/HF projections have no bias; some fine-tunes add one.
    #[config(default = false)]
    pub bias: bool,
}

impl ProjectionConfig {
    /// A projection with weights drawn from a normal distribution of standard deviation `input^-½`
    /// (open_clip's initialization), and a zero bias if [`bias`](Self::bias) is set.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Projection<B> {
        let std = (self.input as f64).powf(-0.5);
        Projection {
            weight: Param::from_tensor(Tensor::random(
                [self.input, self.output],
                Distribution::Normal(0.0, std),
                device,
            )),
            bias: self
                .bias
                .then(|| Param::from_tensor(Tensor::zeros([self.output], device))),
        }
    }
}

/// `x @ W (+ b)` with `W` stored `[in, out]`, as open_clip's `visual.proj` / `text_projection`
/// parameters are (HF's `[out, in]` Linear weights are transposed on import).
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// `W`, `[in, out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `b`, `[out]`, if the projection has one.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Projection<B> {
    /// `[n, in]` → `[n, out]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = x.matmul(self.weight.val());
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }

    /// `in`: the width this projection accepts.
    pub fn input_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `out`: the dimension of the embeddings it produces.
    pub fn output_dim(&self) -> usize {
        self.weight.dims()[1]
    }
}

/// Rows of a `[n, d]` tensor scaled to unit L2 norm (as `F.normalize`, with the same 1e-12 floor on
/// the norm, so an all-zero row stays zero instead of becoming NaN).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// ln(1/0.07): CLIP's initial log inverse temperature.
pub const LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778;

/// The learnable temperature, stored in log space (`exp(logit_scale)` multiplies cosine similarities).
#[derive(Module, Debug)]
pub struct LogitScale<B: Backend> {
    /// `logit_scale`, `[1]`: the log of the multiplier (open_clip stores a scalar; it is reshaped on
    /// import).
    pub value: Param<Tensor<B, 1>>,
}

impl<B: Backend> LogitScale<B> {
    /// A logit scale starting at `log_scale` ([`LOGIT_SCALE_INIT`] for CLIP).
    pub fn new(log_scale: f64, device: &B::Device) -> Self {
        Self {
            value: Param::from_tensor(Tensor::from_floats([log_scale as f32], device)),
        }
    }

    /// `exp(logit_scale)` as a `[1]` tensor.
    pub fn scale(&self) -> Tensor<B, 1> {
        self.value.val().exp()
    }

    /// `exp(logit_scale) · norm(a) · norm(b)ᵀ` for `[n, d]` and `[m, d]` embeddings → `[n, m]`.
    pub fn logits(&self, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
        let cosine = l2_normalize(a).matmul(l2_normalize(b).transpose());
        // embeddings may come in another float dtype than the scale (f32 rows from a half model)
        let scale = self.scale().cast(cosine.dtype());
        cosine * scale.unsqueeze()
    }
}
