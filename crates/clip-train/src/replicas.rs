//! One micro-batch split over threads. burn's CPU backends run most tensor operations on one core, so a
//! training step on one thread leaves the others idle. Here each thread encodes its part of the batch
//! on its own replica of the model, then computes the loss of the *whole* batch with the other parts'
//! embeddings as constants and back-propagates it: that gives exactly its part's share of the full
//! gradient (open_clip's trick for a global batch across GPUs), and the shares sum to the gradient of
//! the single-thread step, up to float rounding.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::embedding;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use clip::ImageEncoder;
use clip_loss::{contrastive_loss, siglip_loss, ContrastiveWeights};
use clip_tokenizer::TextTokenizer;

use crate::collective::{gather_rows, Collective};
use crate::config::{LossConfig, TrainConfig};
use crate::loader::MicroBatch;
use crate::model::TrainModel;
use crate::token_rows::{tracked_rows, TokenRows};
use crate::TrainError;

/// The model with new autodiff leaves over the same weights: its graph shares no node with another
/// replica's, so burn back-propagates the replicas in parallel (graphs that share a node are merged
/// under one lock).
struct FreshLeaves;

impl<B: AutodiffBackend> ModuleMapper<B> for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| {
            let tracked = t.is_require_grad();
            let t = Tensor::from_inner(t.inner());
            if tracked {
                t.require_grad()
            } else {
                t
            }
        })
    }
}

/// Seed of the patch-dropout choice for part `part` of micro-batch `index`.
fn dropout_seed(seed: u64, index: u64, part: usize) -> u64 {
    seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ (part as u64).wrapping_mul(0x9E37_79B9)
}

/// How many threads share a micro-batch of `n` pairs.
pub(crate) fn thread_count<B: AutodiffBackend>(
    model: &TrainModel<B>,
    wanted: usize,
    n: usize,
) -> usize {
    if matches!(model.clip.visual, ImageEncoder::ResNet(_)) {
        // BatchNorm's running statistics are shared state: updating them from two threads would
        // make the run depend on timing
        return 1;
    }
    let wanted = if wanted == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        wanted
    };
    wanted.clamp(1, (n / 2).max(1))
}

/// What one micro-batch gives the optimizer.
pub(crate) struct MicroBatchGrads<B: AutodiffBackend> {
    /// The whole micro-batch's loss (non-finite as it is, for the caller to report).
    pub loss: f64,
    /// Each part's gradients, in part order.
    pub parts: Vec<GradientsParams>,
    /// With [`TokenRows`]: the gradient of the tracked token rows, summed over the parts.
    pub token_rows: Option<Tensor<B::InnerBackend, 2>>,
}

/// Loss of the whole micro-batch and the gradients of each part (of the loss divided by the number of
/// accumulated micro-batches) on `parts` threads ([`thread_count`]). With `rows`, the captions' tokens
/// are tracked there and looked up in those rows of the table, whose gradient comes back on its own.
///
/// With a `collective` of several ranks, `batch` is this rank's slice of the global micro-batch (the
/// ranks' slices in rank order make it up): the loss is the global batch's, over every rank's
/// embeddings, and the gradients are this rank's share of it (summed over the ranks by the caller).
#[allow(clippy::too_many_arguments)]
pub(crate) fn micro_batch_grads<B: AutodiffBackend>(
    model: &TrainModel<B>,
    batch: MicroBatch,
    parts: usize,
    mut rows: Option<&mut TokenRows<B::InnerBackend>>,
    tokenizer: &TextTokenizer,
    config: &TrainConfig,
    collective: Option<&dyn Collective<B::InnerBackend>>,
    device: &B::Device,
) -> Result<MicroBatchGrads<B>, TrainError> {
    let (loss, divisor) = (&config.loss, config.accumulation as f64);
    let n = batch.captions.len();
    let parts = parts.clamp(1, n.max(1));
    let pixels = Tensor::<B, 4>::from_data(batch.pixels, device);
    let bounds: Vec<_> = (0..parts)
        .map(|p| p * n / parts..(p + 1) * n / parts)
        .collect();
    let rank = collective.map_or(0, |c| c.rank());
    // every part's tokens are tracked before any part looks them up. Across ranks, every rank tracks
    // the whole global batch's tokens, as one process would (the ids gathered, then cut to the
    // longest caption of the global batch), so all hold the same rows in the same slots
    let distributed = collective.filter(|c| c.world_size() > 1 && rows.is_some());
    let ids = match distributed {
        Some(c) => {
            let full = tokenizer.tokenize_data(&batch.captions)?;
            let context = full.shape[1];
            // ids below 2²⁴ are exact in f32
            let as_float: Vec<f32> = full.iter::<i64>().map(|id| id as f32).collect();
            let local = Tensor::<B::InnerBackend, 2>::from_data(
                TensorData::new(as_float, [n, context]),
                device,
            );
            let gathered: Vec<i64> = gather_rows(c, local)?
                .into_data()
                .to_vec::<f32>()
                .map_err(|e| TrainError::Collective(format!("token ids: {e:?}")))?
                .into_iter()
                .map(|id| id as i64)
                .collect();
            let world = c.world_size();
            clip::trim_ids_for(
                &model.clip.text,
                TensorData::new(gathered, [world * n, context]),
            )
        }
        None => clip::text_ids(&model.clip.text, tokenizer, &batch.captions)?,
    };
    let context = ids.shape[1];
    let slots = rows
        .as_deref_mut()
        .map(|rows| rows.track(&ids.iter::<i64>().collect::<Vec<_>>()));
    // this rank's rows of the (global) ids and slots
    let own = if distributed.is_some() {
        rank * n * context
    } else {
        0
    };
    let slots = slots.map(|all| all[own..own + n * context].to_vec());
    let id_rows: Vec<i64> = ids.iter::<i64>().skip(own).take(n * context).collect();
    let mut tokens = Vec::with_capacity(parts);
    for range in &bounds {
        let span = range.start * context..range.end * context;
        let shape = [range.len(), context];
        let part_ids = TensorData::new(id_rows[span.clone()].to_vec(), shape);
        let part_slots = slots.as_ref().map(|slots| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(slots[span].to_vec(), shape), device)
        });
        tokens.push((Tensor::<B, 2, Int>::from_data(part_ids, device), part_slots));
    }
    let index = rows.as_deref().map(|rows| rows.index(device));
    let mut inputs = Vec::with_capacity(parts);
    for ((p, range), (ids, slots)) in bounds.iter().enumerate().zip(tokens) {
        let mut replica = model.clone().map(&mut FreshLeaves);
        if let ImageEncoder::Vit(vit) = &mut replica.clip.visual {
            vit.patch_dropout_seed = Some(dropout_seed(config.seed, batch.index, rank * parts + p));
        }
        let pixels = pixels.clone().narrow(0, range.start, range.len());
        inputs.push((replica, pixels, ids, slots));
    }

    // each part's embeddings, tracked: (image, text, the leaf of token rows the text looked up)
    type Encoded<B> = (Tensor<B, 2>, Tensor<B, 2>, Option<Tensor<B, 2>>);
    let encoded: Vec<Encoded<B>> = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|(replica, pixels, ids, slots)| {
                let index = index.clone();
                s.spawn(move || {
                    let image = replica.clip.encode_image(pixels.clone());
                    match (slots, index) {
                        (Some(slots), Some(index)) => {
                            let table = &replica.clip.text.token_embedding.weight;
                            let leaf = tracked_rows(table, index);
                            let tokens = embedding(leaf.clone(), slots.clone());
                            let text = replica.clip.encode_text_embedded(tokens, ids.clone());
                            (image, text, Some(leaf))
                        }
                        _ => (image, replica.clip.encode_text(ids.clone()), None),
                    }
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    // the whole (global) batch's embeddings as constants, and where this rank's rows start in it
    let gather = |pick: &dyn Fn(&Encoded<B>) -> Tensor<B, 2>| -> Result<_, TrainError> {
        let local = Tensor::cat(encoded.iter().map(|e| pick(e).inner()).collect(), 0);
        match collective {
            Some(c) => gather_rows(c, local),
            None => Ok(local),
        }
    };
    let images = gather(&|(i, _, _)| i.clone())?;
    let texts = gather(&|(_, t, _)| t.clone())?;
    let offset = rank * n;

    // each part back-propagates the whole batch's loss through its own embeddings
    type PartGrads<B> = (
        f64,
        GradientsParams,
        Option<Tensor<<B as AutodiffBackend>::InnerBackend, 2>>,
    );
    let results: Vec<Result<PartGrads<B>, TrainError>> = std::thread::scope(|s| {
        let handles: Vec<_> = encoded
            .into_iter()
            .enumerate()
            .map(|(p, (image, text, leaf))| {
                let (replica, images, texts) = (&inputs[p].0, &images, &texts);
                let own = offset + bounds[p].start..offset + bounds[p].end;
                s.spawn(move || {
                    // the whole batch, this part's rows tracked, the others constants
                    let whole = |tracked: Tensor<B, 2>, all: &Tensor<B::InnerBackend, 2>| {
                        let [total, _] = all.dims();
                        let mut pieces = Vec::with_capacity(3);
                        if own.start > 0 {
                            pieces.push(Tensor::from_inner(all.clone().narrow(0, 0, own.start)));
                        }
                        pieces.push(tracked);
                        if own.end < total {
                            pieces.push(Tensor::from_inner(all.clone().narrow(
                                0,
                                own.end,
                                total - own.end,
                            )));
                        }
                        Tensor::cat(pieces, 0)
                    };
                    let images = whole(image, images);
                    let texts = whole(text, texts);
                    // the temperature (and SigLIP bias) is shared: only part 0 of rank 0 carries
                    // its gradient, so the sum over parts and ranks counts it once
                    let tracked = |t: Tensor<B, 1>| {
                        if p == 0 && rank == 0 {
                            t
                        } else if p == 0 {
                            // the other ranks' first part gets an exact zero gradient for it, so
                            // every rank sums the same parameters in the same order
                            Tensor::from_inner(t.clone().inner()) + t * 0.0
                        } else {
                            Tensor::from_inner(t.inner())
                        }
                    };
                    let scale = tracked(replica.clip.logit_scale.value.val());
                    let bias = replica.clip.logit_bias.as_ref().map(|b| tracked(b.val()));
                    let value = whole_batch_loss(images, texts, scale, bias, loss)?;
                    let number: f64 = value.clone().into_scalar().elem::<f32>() as f64;
                    let value = if divisor != 1.0 {
                        value / divisor
                    } else {
                        value
                    };
                    if !number.is_finite() {
                        return Ok((number, GradientsParams::new(), None));
                    }
                    let mut grads = value.backward();
                    let rows = leaf.and_then(|leaf| leaf.grad_remove(&mut grads));
                    Ok((number, GradientsParams::from_grads(grads, replica), rows))
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    let mut value = 0.0;
    let mut grads = Vec::with_capacity(parts);
    let mut token_rows: Option<Tensor<B::InnerBackend, 2>> = None;
    for (p, result) in results.into_iter().enumerate() {
        let (v, g, rows) = result?;
        if p == 0 {
            value = v;
        }
        grads.push(g);
        token_rows = match (token_rows, rows) {
            (Some(sum), Some(r)) => Some(sum + r),
            (sum, r) => sum.or(r),
        };
    }
    Ok(MicroBatchGrads {
        loss: value,
        parts: grads,
        token_rows,
    })
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    // a panic in a part is a bug, not bad input: re-raise it on the training thread
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn whole_batch_loss<B: AutodiffBackend>(
    image: Tensor<B, 2>,
    text: Tensor<B, 2>,
    scale: Tensor<B, 1>,
    bias: Option<Tensor<B, 1>>,
    loss: &LossConfig,
) -> Result<Tensor<B, 1>, TrainError> {
    Ok(match (loss, bias) {
        (
            LossConfig::InfoNce {
                lambda,
                label_smoothing,
            },
            _,
        ) => contrastive_loss(
            image,
            text,
            scale,
            ContrastiveWeights {
                lambda: *lambda,
                label_smoothing: *label_smoothing,
            },
        )?,
        (LossConfig::Siglip, Some(bias)) => siglip_loss(image, text, scale, bias)?,
        (LossConfig::Siglip, None) => {
            return Err(TrainError::Config("SigLIP needs a logit bias".into()))
        }
    })
}
