//! What training optimizes: the CLIP model and, for SigLIP, its logit bias.

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use clip::Clip;

/// What is optimized: the CLIP model and, for SigLIP, its logit bias.
#[derive(Module, Debug)]
pub struct TrainModel<B: Backend> {
    /// The model being trained.
    pub clip: Clip<B>,
    /// SigLIP's learnable logit bias, `[1]`; `None` for InfoNCE.
    pub logit_bias: Option<Param<Tensor<B, 1>>>,
}
