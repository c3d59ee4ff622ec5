//! The CLIP model: an image tower and a text tower projected into one space, compared by a
//! temperature-scaled cosine similarity.

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Int, Tensor};
use burn_store::ModuleSnapshot;
use clip_encoders::{ModifiedResNet, SiglipVisionTransformer, TextTransformer, VisionTransformer};
use clip_heads::{LogitScale, Projection, ProjectionConfig, LOGIT_SCALE_INIT};

use crate::config::{ClipConfig, ImageTower};

/// The image tower. (A model holds one, so the variants' size difference does not matter.)
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ImageEncoder<B: Backend> {
    /// A vision transformer, pooled at its class token.
    Vit(VisionTransformer<B>),
    /// SigLIP's ViT (attention-pooled, unprojected).
    Siglip(SiglipVisionTransformer<B>),
    /// OpenAI's modified ResNet, pooled by attention straight into the joint space.
    ResNet(ModifiedResNet<B>),
}

/// A CLIP model: build one with [`ClipConfig::init`], or load weights with
/// [`Pretrained`](crate::Pretrained). Embeddings come out raw (not normalized), as open_clip's
/// `encode_image` / `encode_text` give them.
#[derive(Module, Debug)]
pub struct Clip<B: Backend> {
    /// The image tower.
    pub visual: ImageEncoder<B>,
    /// ViT's `visual.proj`; the ResNet's attention pool projects by itself.
    pub visual_projection: Option<Projection<B>>,
    /// The text tower (token embedding, causal transformer, final layer norm).
    pub text: TextTransformer<B>,
    /// `text_projection`: text width → `embed_dim`.
    pub text_projection: Option<Projection<B>>,
    /// The learned temperature shared by both directions.
    pub logit_scale: LogitScale<B>,
    /// SigLIP's learned bias on the logits, `[1]` (None in CLIP).
    pub logit_bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Clip<B> {
    pub(crate) fn new(config: &ClipConfig, device: &B::Device) -> Self {
        let projection = |input| {
            ProjectionConfig::new(input, config.embed_dim)
                .with_bias(config.projection_bias)
                .init(device)
        };
        let (visual, visual_projection) = match config.image_tower() {
            ImageTower::Vit(vit) => (
                ImageEncoder::Vit(vit.init(device)),
                Some(projection(vit.width)),
            ),
            // SigLIP's tower is as wide as the joint space, and pools with attention: no projection
            ImageTower::Siglip(siglip) => (ImageEncoder::Siglip(siglip.init(device)), None),
            // the ResNet's attention pool projects into the joint space itself
            ImageTower::ResNet(resnet) => (ImageEncoder::ResNet(resnet.init(device)), None),
        };
        Self {
            visual,
            visual_projection,
            text: config.text_encoder().init(device),
            // open_clip's `proj_type: none`: the text tower is as wide as the joint space
            text_projection: config
                .text
                .projection
                .then(|| projection(config.text.width)),
            logit_scale: LogitScale::new(LOGIT_SCALE_INIT, device),
            logit_bias: config
                .logit_bias
                .map(|b| Param::from_tensor(Tensor::from_floats([b as f32], device))),
        }
    }

    /// `[n, 3, size, size]` normalized pixels → `[n, embed_dim]` raw (unnormalized) image embeddings,
    /// as open_clip's `encode_image(normalize=False)`.
    pub fn encode_image(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match &self.visual {
            ImageEncoder::Vit(vit) => {
                let pooled = vit.forward(images);
                match &self.visual_projection {
                    Some(p) => p.forward(pooled),
                    None => pooled,
                }
            }
            ImageEncoder::Siglip(siglip) => siglip.forward(images),
            ImageEncoder::ResNet(resnet) => resnet.forward(images),
        }
    }

    /// `[n, context]` token ids → `[n, embed_dim]` raw text embeddings. Each text is pooled at its
    /// first end token (the last position if it has none), so `context` may be shorter than
    /// [`context_length`](Self::context_length) as long as every row keeps its end token
    /// ([`tokenize_trimmed`](crate::tokenize_trimmed) cuts the padding that way).
    pub fn encode_text(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.project_text(self.text.forward(ids))
    }

    /// The pooled text features projected into the joint space (as they are, without a projection).
    fn project_text(&self, pooled: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.text_projection {
            Some(p) => p.forward(pooled),
            None => pooled,
        }
    }

    /// [`Clip::encode_text`] on token embeddings looked up elsewhere
    /// ([`TextTransformer::forward_embedded`]).
    pub fn encode_text_embedded(
        &self,
        tokens: Tensor<B, 3>,
        ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 2> {
        self.project_text(self.text.forward_embedded(tokens, ids))
    }

    /// `exp(logit_scale) · norm(image) · norm(text)ᵀ` (`+ logit_bias` for SigLIP): `[images, texts]`;
    /// its transpose is per text.
    pub fn logits_per_image(
        &self,
        image_embeds: Tensor<B, 2>,
        text_embeds: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let logits = self.logit_scale.logits(image_embeds, text_embeds);
        match &self.logit_bias {
            // as the scale: rows may come in another float dtype than the model (f32 from a half model)
            Some(bias) => {
                let bias = bias.val().cast(logits.dtype());
                logits + bias.unsqueeze()
            }
            None => logits,
        }
    }

    /// Side of the square input image.
    pub fn image_size(&self) -> usize {
        match &self.visual {
            ImageEncoder::Vit(v) => v.image_size,
            ImageEncoder::Siglip(v) => v.image_size,
            ImageEncoder::ResNet(r) => r.image_size,
        }
    }

    /// Longest token sequence the text tower accepts.
    pub fn context_length(&self) -> usize {
        self.text.context_length()
    }

    /// How zero-shot scores are made for this model: SigLIP's `sigmoid(scale · cos + bias)` per class
    /// with its learned scale and bias when it has a logit bias, else CLIP's softmax at `softmax_scale`.
    pub fn zero_shot_scoring(&self, softmax_scale: f64) -> clip_zeroshot::Scoring {
        use burn::tensor::ElementConversion;
        match &self.logit_bias {
            Some(bias) => clip_zeroshot::Scoring::Sigmoid {
                scale: f64::from(self.logit_scale.scale().into_scalar().elem::<f32>()),
                bias: f64::from(bias.val().into_scalar().elem::<f32>()),
            },
            None => clip_zeroshot::Scoring::Softmax {
                scale: softmax_scale,
            },
        }
    }

    /// Learnable parameters, as PyTorch's `sum(p.numel() for p in model.parameters())` counts them
    /// (BatchNorm running statistics are buffers, not parameters; burn's `num_params` includes them).
    pub fn parameter_count(&self) -> usize {
        self.collect(None, None, true)
            .iter()
            .filter(|s| !s.full_path().contains(".running_"))
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }

    /// Dimension of the joint embedding space.
    pub fn embed_dim(&self) -> usize {
        self.text_projection
            .as_ref()
            .map_or_else(|| self.text.width(), Projection::output_dim)
    }

    /// [`encode_image`](Self::encode_image) with the batch cut into `threads` parts encoded side by
    /// side. burn's CPU backends run matrix products on every core but most element-wise operations
    /// (layer norms, GELU, softmax, layout copies) on one; splitting the batch puts every core to work
    /// on those too. Each row is computed as in one call. On a GPU keep 1.
    pub fn encode_image_threaded(&self, images: Tensor<B, 4>, threads: usize) -> Tensor<B, 2> {
        split_batch(images, threads, |part| self.encode_image(part))
    }

    /// [`encode_text`](Self::encode_text) split over `threads`, as
    /// [`encode_image_threaded`](Self::encode_image_threaded).
    pub fn encode_text_threaded(&self, ids: Tensor<B, 2, Int>, threads: usize) -> Tensor<B, 2> {
        split_batch(ids, threads, |part| self.encode_text(part))
    }
}

/// `f` with rayon (which `flex` and `gemm` split their work with) limited to `threads` threads of its
/// own: each part of a split batch keeps to its share of the cores instead of every part's matrix
/// products contending for the whole shared pool (on 2 cores, one thread per part: ViT-B/32 image
/// +19 %, RN50 +15 %; README, Performance).
fn on_own_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// `encode` on up to `threads` consecutive parts of the batch, on as many threads, concatenated in order.
fn split_batch<B: Backend, const D: usize, K, F>(
    batch: Tensor<B, D, K>,
    threads: usize,
    encode: F,
) -> Tensor<B, 2>
where
    K: burn::tensor::TensorKind<B> + burn::tensor::BasicOps<B>,
    F: Fn(Tensor<B, D, K>) -> Tensor<B, 2> + Sync,
{
    let n = batch.dims()[0];
    let parts = threads.clamp(1, n.max(1));
    if parts == 1 {
        return encode(batch);
    }
    // the cores divided among the parts (a batch smaller than `threads` leaves several per part)
    let share = (threads / parts).max(1);
    let encoded = std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunk(parts, 0)
            .into_iter()
            .map(|part| s.spawn(|| on_own_threads(share, || encode(part))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                // a panic in a part is a bug, not bad input: re-raise it here
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Vec<_>>()
    });
    Tensor::cat(encoded, 0)
}
