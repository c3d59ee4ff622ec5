//! What training optimizes: the CLIP model (for SigLIP, with its logit bias: `Clip::logit_bias`, so that
//! the saved model carries it).

use burn::module::Module;
use burn::tensor::backend::Backend;
use clip::Clip;

/// What is optimized: the CLIP model, SigLIP's logit bias included.
#[derive(Module, Debug)]
pub struct TrainModel<B: Backend> {
    /// The model being trained.
    pub clip: Clip<B>,
}
