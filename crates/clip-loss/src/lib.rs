//! Contrastive losses that make CLIP learn.
//!
//! [`contrastive_loss`] is the paper's symmetric InfoNCE, written with a weight λ between its two
//! directions: `L = 1/N Σᵢ (λ·lᵢ(v→u) + (1−λ)·lᵢ(u→v))`, where `lᵢ(v→u)` is the cross-entropy of image i
//! against all texts with its own caption as the target, and `lᵢ(u→v)` the same for text i. λ = ½ is
//! open_clip's `ClipLoss`. [`siglip_loss`] is the sigmoid loss of Zhai et al. 2023 (open_clip's
//! `SigLipLoss`). Both take raw embeddings (they L2-normalize them) and a log-space scale, and work under
//! autodiff on any backend.
//!
//! The trainer (`clip-train`) calls these on the embeddings the `clip` model produces for a batch; the
//! functions check their inputs and return a [`LossError`] rather than a NaN loss.
//!
//! ```
//! use burn::tensor::Tensor;
//! use clip_loss::{contrastive_loss, ContrastiveWeights};
//!
//! type B = burn::backend::Flex;
//! let device = Default::default();
//! // two pairs whose image and text embeddings coincide, orthogonal to the other pair
//! let image = Tensor::<B, 2>::from_floats([[3.0, 0.0], [0.0, 2.0]], &device);
//! let text = Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.0, 5.0]], &device);
//! let logit_scale = Tensor::<B, 1>::from_floats([0.0], &device); // exp(0) = 1
//! let loss = contrastive_loss(image, text, logit_scale, ContrastiveWeights::default())?;
//! // each row's logits are [1, 0] with the target first: −log(e / (e + 1)) = ln(1 + 1/e)
//! let expected = (1.0 + (-1.0f32).exp()).ln();
//! assert!((loss.into_scalar() - expected).abs() < 1e-5);
//! # Ok::<(), clip_loss::LossError>(())
//! ```

#![warn(missing_docs)]

use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::{backend::Backend, Int, Tensor};

/// `ln 100`: open_clip clamps the learned log-scale to [0, ln 100] after every optimizer step.
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;
/// `ln(1/0.07)`: CLIP's initial log-scale (temperature 0.07).
pub const CLIP_LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778;
/// SigLIP's initial log-scale (`ln 10`).
pub const SIGLIP_LOGIT_SCALE_INIT: f64 = std::f64::consts::LN_10;
/// SigLIP's initial logit bias: all but N of a batch's N² cells are negatives, and starting every cell
/// near "no" keeps them from dominating the first steps.
pub const SIGLIP_LOGIT_BIAS_INIT: f64 = -10.0;

/// Why a loss could not be computed: the inputs do not form a valid batch.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LossError {
    /// The image and text embeddings have different row counts.
    #[error("{images} image embeddings but {texts} text embeddings: a contrastive batch pairs them one to one")]
    BatchMismatch {
        /// Rows of the image embeddings.
        images: usize,
        /// Rows of the text embeddings.
        texts: usize,
    },
    /// The image and text embeddings have different widths.
    #[error("image embeddings have {image_dim} dimensions, text embeddings {text_dim}")]
    DimMismatch {
        /// Columns of the image embeddings.
        image_dim: usize,
        /// Columns of the text embeddings.
        text_dim: usize,
    },
    /// The batch has no pairs.
    #[error("an empty batch has no loss")]
    EmptyBatch,
    /// An input (named) holds NaN or ±∞, which would make the loss NaN.
    #[error("{0} holds NaN or infinite values")]
    NonFinite(&'static str),
    /// [`ContrastiveWeights::lambda`] is outside `[0, 1]`.
    #[error("λ = {0} is outside [0, 1]")]
    Lambda(f64),
    /// [`ContrastiveWeights::label_smoothing`] is outside `[0, 1)`.
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

/// `exp(logit_scale) · norm(image) · norm(text)ᵀ` for `[N, d]` image and text embeddings and a `[1]`
/// log-scale: `[N, N]`, with matching pairs on the diagonal.
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

/// CLIP's λ-weighted symmetric InfoNCE on a batch of N matching (image, text) pairs: row i of the
/// `[N, d]` `image` embeddings belongs with row i of `text`; `logit_scale` is the `[1]` log-scale.
/// Returns the mean loss per pair as a `[1]` tensor.
///
/// # Errors
///
/// A [`LossError`] if the shapes do not pair up, the batch is empty, an input is not finite, or the
/// weights are out of range.
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
/// `image` and `text` are `[N, d]`, `logit_scale` (`t`) and `logit_bias` (`b`) are `[1]`; returns a `[1]`
/// tensor.
///
/// # Errors
///
/// A [`LossError`] if the shapes do not pair up, the batch is empty or an input is not finite.
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
