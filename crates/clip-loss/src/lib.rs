//! Contrastive losses that make CLIP learn.
//!
//! [`contrastive_loss`] is the paper's symmetric InfoNCE, written with a weight λ between its two
//! directions: `L = 1/N Σᵢ (λ·lᵢ(v→u) + (1−λ)·lᵢ(u→v))`, where `lᵢ(v→u)` is the cross-entropy of image i
//! against all texts with its own caption as the target, and `lᵢ(u→v)` the same for text i. λ = ½ is
//! open_clip's `ClipLoss`. [`siglip_loss`] is the sigmoid loss of Zhai et al. 2023 (open_clip's
//! `SigLipLoss`). Both take raw embeddings (they L2-normalize them) and a log-space scale, and work under
//! autodiff on any backend.

use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{backend::Backend, Int, Tensor};

/// `ln 100`: open_clip clamps the learned log-scale to [0, ln 100] after every optimizer step.
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;
/// `ln(1/0.07)`: CLIP's initial log-scale (temperature 0.07).
pub const CLIP_LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778;
/// SigLIP's initial log-scale (`ln 10`) and bias.
pub const SIGLIP_LOGIT_SCALE_INIT: f64 = std::f64::consts::LN_10;
pub const SIGLIP_LOGIT_BIAS_INIT: f64 = -10.0;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LossError {
    #[error("{images} image embeddings but {texts} text embeddings: a contrastive batch pairs them one to one")]
    BatchMismatch { images: usize, texts: usize },
    #[error("image embeddings have {image_dim} dimensions, text embeddings {text_dim}")]
    DimMismatch { image_dim: usize, text_dim: usize },
    #[error("an empty batch has no loss")]
    EmptyBatch,
    #[error("{0} holds NaN or infinite values")]
    NonFinite(&'static str),
    #[error("λ = {0} is outside [0, 1]")]
    Lambda(f64),
    #[error("label smoothing {0} is outside [0, 1)")]
    LabelSmoothing(f64),
}

/// Weights of [`contrastive_loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContrastiveWeights {
    /// λ: weight of the image→text direction; ½ is CLIP's symmetric loss.
    pub lambda: f64,
    /// ε of cross-entropy with label smoothing (0: none), as PyTorch's `label_smoothing`.
    pub label_smoothing: f64,
}

impl Default for ContrastiveWeights {
    fn default() -> Self {
        Self {
            lambda: 0.5,
            label_smoothing: 0.0,
        }
    }
}

fn check_finite<B: Backend, const D: usize>(
    t: &Tensor<B, D>,
    what: &'static str,
) -> Result<(), LossError> {
    let finite = t.clone().is_finite().all().into_scalar();
    if burn::tensor::ElementConversion::elem::<bool>(finite) {
        Ok(())
    } else {
        Err(LossError::NonFinite(what))
    }
}

fn check_pair<B: Backend>(
    image: &Tensor<B, 2>,
    text: &Tensor<B, 2>,
    scale: &Tensor<B, 1>,
) -> Result<(), LossError> {
    let ([n, d], [m, e]) = (image.dims(), text.dims());
    if n != m {
        return Err(LossError::BatchMismatch {
            images: n,
            texts: m,
        });
    }
    if d != e {
        return Err(LossError::DimMismatch {
            image_dim: d,
            text_dim: e,
        });
    }
    if n == 0 {
        return Err(LossError::EmptyBatch);
    }
    check_finite(image, "the image embeddings")?;
    check_finite(text, "the text embeddings")?;
    check_finite(scale, "the logit scale")
}

fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `exp(logit_scale) · norm(image) · norm(text)ᵀ`: `[N, N]` with matching pairs on the diagonal.
pub fn scaled_cosine_logits<B: Backend>(
    image: Tensor<B, 2>,
    text: Tensor<B, 2>,
    logit_scale: Tensor<B, 1>,
) -> Tensor<B, 2> {
    l2_normalize(image).matmul(l2_normalize(text).transpose()) * logit_scale.exp().unsqueeze()
}

/// Per-row cross-entropy against the diagonal (`[N]`), with label smoothing ε:
/// `(1−ε)·(−log pᵢᵢ) + ε·mean_k(−log pᵢₖ)`.
fn diagonal_cross_entropy<B: Backend>(logits: Tensor<B, 2>, label_smoothing: f64) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    let log_p = log_softmax(logits, 1);
    // the diagonal, gathered (an N×N identity product would cost as much as the softmax)
    let diagonal = Tensor::<B, 1, Int>::arange(0..n as i64, &log_p.device()).reshape([n, 1]);
    let nll = -log_p.clone().gather(1, diagonal).reshape([n]);
    if label_smoothing == 0.0 {
        return nll;
    }
    let uniform = -log_p.mean_dim(1).reshape([n]);
    nll * (1.0 - label_smoothing) + uniform * label_smoothing
}

/// CLIP's λ-weighted symmetric InfoNCE on a batch of N matching (image, text) pairs; a `[1]` tensor.
pub fn contrastive_loss<B: Backend>(
    image: Tensor<B, 2>,
    text: Tensor<B, 2>,
    logit_scale: Tensor<B, 1>,
    weights: ContrastiveWeights,
) -> Result<Tensor<B, 1>, LossError> {
    check_pair(&image, &text, &logit_scale)?;
    if !(0.0..=1.0).contains(&weights.lambda) {
        return Err(LossError::Lambda(weights.lambda));
    }
    if !(0.0..1.0).contains(&weights.label_smoothing) {
        return Err(LossError::LabelSmoothing(weights.label_smoothing));
    }
    let logits = scaled_cosine_logits(image, text, logit_scale);
    let image_to_text = diagonal_cross_entropy(logits.clone(), weights.label_smoothing);
    let text_to_image = diagonal_cross_entropy(logits.transpose(), weights.label_smoothing);
    let per_pair = image_to_text * weights.lambda + text_to_image * (1.0 - weights.lambda);
    Ok(per_pair.mean())
}

/// SigLIP: every (image, text) cell is a binary "is this the pair?" decision,
/// `−1/N Σᵢⱼ log σ(zᵢⱼ · (exp(t)·cosᵢⱼ + b))` with `zᵢⱼ = 1` on the diagonal and −1 elsewhere.
pub fn siglip_loss<B: Backend>(
    image: Tensor<B, 2>,
    text: Tensor<B, 2>,
    logit_scale: Tensor<B, 1>,
    logit_bias: Tensor<B, 1>,
) -> Result<Tensor<B, 1>, LossError> {
    check_pair(&image, &text, &logit_scale)?;
    check_finite(&logit_bias, "the logit bias")?;
    let [n, _] = image.dims();
    let logits = scaled_cosine_logits(image, text, logit_scale) + logit_bias.unsqueeze();
    let signs = Tensor::<B, 2>::eye(n, &logits.device()) * 2.0 - 1.0;
    Ok(-log_sigmoid(logits * signs).sum() / n as f64)
}

/// The clamp open_clip's trainer applies to the log-scale after each step: `[0, ln 100]`.
pub fn clamp_logit_scale<B: Backend>(logit_scale: Tensor<B, 1>) -> Tensor<B, 1> {
    logit_scale.clamp(0.0, MAX_LOGIT_SCALE)
}
