//! Projection heads into CLIP's joint embedding space, L2 normalization and the learnable logit scale.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Distribution, Tensor};

#[derive(Config, Debug)]
pub struct ProjectionConfig {
    pub input: usize,
    pub output: usize,
    /// OpenAI/open_clip/HF projections have no bias; some fine-tunes add one.
    #[config(default = false)]
    pub bias: bool,
}

impl ProjectionConfig {
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
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Projection<B> {
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = x.matmul(self.weight.val());
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }

    pub fn input_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn output_dim(&self) -> usize {
        self.weight.dims()[1]
    }
}

/// Rows scaled to unit L2 norm (as `F.normalize`, with the same 1e-12 floor on the norm).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// ln(1/0.07): CLIP's initial log inverse temperature.
pub const LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778;

/// The learnable temperature, stored in log space (`exp(logit_scale)` multiplies cosine similarities).
#[derive(Module, Debug)]
pub struct LogitScale<B: Backend> {
    pub value: Param<Tensor<B, 1>>,
}

impl<B: Backend> LogitScale<B> {
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
        cosine * self.scale().unsqueeze()
    }
}
