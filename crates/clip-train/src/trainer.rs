//! The training loop. A custom loop rather than burn-train's `Learner`: CLIP needs a decay mask,
//! global-norm clipping, the temperature clamp after each step and bit-exact resume from a data
//! pipeline that is a pure function of (seed, sample index), none of which `Learner` expresses.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, Optimizer};
use burn::record::Recorder;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use clip::Clip;
use clip_data::captions::SkipReport;
use clip_loss::{clamp_logit_scale, SIGLIP_LOGIT_BIAS_INIT};
use clip_tokenizer::TextTokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::benchmark::{self, BenchmarkReport};
use crate::checkpoint_file::CheckedBinFileRecorder;
use crate::collective::{broadcast_parameters, check_same_start, Collective};
use crate::config::{LossConfig, TrainConfig};
use crate::model::TrainModel;
use crate::optim::{clip_and_lock, learning_rate, DecayMapper, ParamGroups};
use crate::source::load_source;
use crate::token_rows::{AdamWSettings, TokenRows, TokenRowsRecord};
use crate::TrainError;

/// One optimizer step's numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepLog {
    /// The step just taken, 1-based.
    pub step: usize,
    /// Mean loss of its micro-batches.
    pub loss: f64,
    /// Learning rate it used.
    pub lr: f64,
    /// The logit scale (`exp` of the learnable temperature parameter) after the step's clamp.
    pub temperature: f64,
    /// Global L2 norm of the gradients before clipping (locked towers excluded).
    pub grad_norm: f64,
}

/// What [`train`] did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// Steps completed in all, counting those before a resume.
    pub steps: usize,
    /// Wall-clock seconds of this invocation's steps (evaluations and checkpoints included).
    pub seconds: f64,
    /// Training images per second in this invocation.
    pub images_per_second: f64,
    /// One entry per step, from the first step of the run (a resume keeps the checkpoint's log).
    pub log: Vec<StepLog>,
    /// Benchmark reports of this invocation, with the step each was taken after (Fashion-MNIST
    /// scenes data only).
    pub evaluations: Vec<(usize, BenchmarkReport)>,
    /// `output/model`, where the trained model was written, once the run reached `steps`; `None`
    /// when stopped earlier (`stop_after`).
    pub final_dir: Option<PathBuf>,
    /// Images that passed the first check (their header) but failed to decode when drawn; each draw
    /// was replaced by another ("path: why").
    pub unreadable_images: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    model: clip::ClipConfig,
    loss: LossConfig,
    log: Vec<StepLog>,
    /// The global micro-batch and the accumulation it was trained with (absent in checkpoints of
    /// versions before this field): the samples of step `s` depend on them.
    #[serde(default)]
    batch: Option<(usize, usize)>,
}

fn recorder() -> CheckedBinFileRecorder {
    CheckedBinFileRecorder
}

fn checkpoint_root(config: &TrainConfig) -> PathBuf {
    config.output.join("checkpoints")
}

/// The newest complete checkpoint under `output/checkpoints` (incomplete ones are `.tmp` directories).
pub fn latest_checkpoint(config: &TrainConfig) -> Option<PathBuf> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoint_root(config))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path()
                .join("state.json")
                .is_file()
                .then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// The weights a fine-tuning run starts from ([`TrainConfig::init`]), checked against the config's
/// architecture. A mismatch is a [`TrainError::Architecture`] that prints the file's architecture as
/// the `[model]` table to put in the config.
fn initial_weights<B: AutodiffBackend>(
    path: &Path,
    model: &clip::ClipConfig,
    device: &B::Device,
) -> Result<clip::Clip<B>, TrainError> {
    let pretrained = clip::Pretrained::<B>::load(path, device)?;
    // whether the model carries a logit bias follows the loss (SigLIP's adds one), not [model]
    let mut own = pretrained.config.clone();
    own.logit_bias = model.logit_bias;
    if &own != model {
        let table = toml::to_string(&pretrained.config)
            .unwrap_or_else(|e| format!("(cannot be shown as TOML: {e})"));
        return Err(TrainError::Architecture(format!(
            "init {} is another architecture than the config's [model]; its own, as [model]:\n{table}",
            path.display()
        )));
    }
    eprintln!("fine-tuning from {}", path.display());
    Ok(pretrained.model)
}

/// Trains as `config` says, resuming from `resume` (a checkpoint directory) when given, on `device`
/// of the autodiff backend `B`.
///
/// Checkpoints go to `output/checkpoints/step-NNNNNNN` (written to a `.tmp` directory, then renamed,
/// so a crash leaves no half checkpoint); the finished model goes to `output/model` ([`save_model`]).
/// Resuming from a checkpoint continues the run exactly: the same batches and, with the same
/// `threads`, the same weights bit for bit as without the interruption. Errors: an invalid config, missing or unreadable data, a checkpoint
/// that does not match the config ([`TrainError::Architecture`]), a loss that became NaN or infinite
/// ([`TrainError::NonFinite`]), a checkpoint that cannot be written.
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    resume: Option<&Path>,
    device: &B::Device,
) -> Result<TrainReport, TrainError> {
    train_with::<B>(config, resume, device, None)
}

/// [`train`] as one rank of a data-parallel run ([`crate::collective`]): `config.batch_size` is the
/// global batch, of which this process renders and encodes its `batch_size / world_size` share; the
/// loss is the global batch's and the gradients are summed over the ranks, so the ranks take the
/// steps one process would take on the whole batch. Rank 0 alone writes checkpoints, evaluates and
/// saves the final model; every rank resumes from the same checkpoint. Every rank must run the same
/// config (checked at the start, naming the field that differs). `None` is a single process.
pub fn train_with<B: AutodiffBackend>(
    config: &TrainConfig,
    resume: Option<&Path>,
    device: &B::Device,
    collective: Option<&dyn Collective<B::InnerBackend>>,
) -> Result<TrainReport, TrainError> {
    config.validate()?;
    let (rank, world) = collective.map_or((0, 1), |c| (c.rank(), c.world_size()));
    config.check_world_size(world)?;
    if let Some(c) = collective {
        crate::collective::check_same_config(c, config, device)?;
    }
    let local_batch = config.batch_size / world;
    let lead = rank == 0;
    let canvas = config.model.image_size() as u32;
    let (sampler, test_items) = load_source(config, canvas)?;
    let sampler = std::sync::Arc::new(sampler);
    // a Hugging Face tokenizer comes with the weights fine-tuned from (also when resuming such a run)
    let init_dir = config
        .init
        .as_deref()
        .and_then(|p| if p.is_dir() { Some(p) } else { p.parent() });
    let tokenizer: TextTokenizer = clip::tokenizer_for(&config.model, init_dir)?;

    // the same seed gives the same initial weights (and so the same run); the backend's RNG is
    // process-wide, so two runs in one process must not initialise concurrently
    B::seed(device, config.seed);
    let fine_tune = config.init.as_deref().filter(|_| resume.is_none());
    let mut model = TrainModel {
        clip: match fine_tune {
            Some(path) => initial_weights::<B>(path, &config.model, device)?,
            None => config.model.init::<B>(device)?,
        },
    };
    // SigLIP's loss learns a bias on the logits, which the model carries (a SigLIP model already has
    // one; a CLIP model fine-tuned with SigLIP's loss gets one)
    if matches!(config.loss, LossConfig::Siglip) && model.clip.logit_bias.is_none() {
        model.clip.logit_bias = Some(Param::from_tensor(Tensor::from_floats(
            [SIGLIP_LOGIT_BIAS_INIT as f32],
            device,
        )));
    }
    if let clip::ImageEncoder::Vit(vit) = &mut model.clip.visual {
        vit.patch_dropout = config.patch_dropout;
    }
    let threads = crate::replicas::thread_count(&model, config.threads, local_batch);
    if world > 1 {
        eprintln!(
            "rank {rank} of {world}: {local_batch} of each micro-batch's {} pairs on {threads} thread(s)",
            config.batch_size
        );
    } else {
        eprintln!("training on {threads} thread(s) per micro-batch");
    }
    // SigLIP starts from its own temperature; a fine-tuned model keeps the one it learned
    if matches!(config.loss, LossConfig::Siglip) && fine_tune.is_none() {
        model.clip.logit_scale =
            clip_heads::LogitScale::new(clip_loss::SIGLIP_LOGIT_SCALE_INIT, device);
    }
    // one set of AdamW settings for burn's optimizer and for the token rows
    let adam = AdamWSettings {
        beta1: config.beta1 as f32,
        beta2: config.beta2 as f32,
        eps: config.eps as f32,
    };
    let mut optim = AdamWConfig::new()
        .with_beta_1(adam.beta1)
        .with_beta_2(adam.beta2)
        .with_epsilon(adam.eps)
        .with_weight_decay(0.0)
        .init::<B, TrainModel<B>>();
    // the token table's AdamW runs on the rows captions use (`token_rows`); a locked text tower
    // leaves the table alone
    let table_width = model.clip.text.width();
    let mut token_rows =
        (!config.lock_text).then(|| TokenRows::<B::InnerBackend>::new(table_width));
    let mut start = 0;
    let mut log = Vec::new();
    if let Some(dir) = resume {
        let state: CheckpointState = serde_json::from_str(
            &std::fs::read_to_string(dir.join("state.json"))
                .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", dir.display())))?,
        )
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", dir.display())))?;
        if let Some((batch, accumulation)) = state.batch {
            if (batch, accumulation) != (config.batch_size, config.accumulation) {
                return Err(TrainError::Architecture(format!(
                    "checkpoint {} was trained with batch_size {batch} and accumulation \
                     {accumulation}, this config has {} and {}: the global batch must stay the \
                     same to resume (the number of ranks may change)",
                    dir.display(),
                    config.batch_size,
                    config.accumulation
                )));
            }
        }
        if state.model != config.model || state.loss != config.loss {
            return Err(TrainError::Architecture(format!(
                "checkpoint {} was trained with another model or loss than this config describes",
                dir.display()
            )));
        }
        model = model
            .load_file(dir.join("model"), &recorder(), device)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", dir.display())))?;
        let record = recorder()
            .load(dir.join("optim"), device)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", dir.display())))?;
        optim = optim.load_record(record);
        if token_rows.is_some() {
            let record: TokenRowsRecord =
                Recorder::<B>::load(&recorder(), dir.join("token_rows"), device).map_err(|e| {
                    TrainError::Checkpoint(format!(
                        "{}: no token-table optimizer state ({e}); it was written by a run with \
                         the text tower locked or by a version before this state existed",
                        dir.display()
                    ))
                })?;
            token_rows = Some(TokenRows::from_record(record, table_width, device)?);
        }
        start = state.step;
        log = state.log;
    }
    if let Some(c) = collective {
        check_same_start(
            c,
            start,
            token_rows.as_ref().map_or(0, TokenRows::len),
            device,
        )?;
        model = broadcast_parameters(model, c)?;
    }
    let groups = ParamGroups::new(&model, config.lock_image, config.lock_text);

    let end = config
        .stop_after
        .map_or(config.steps, |s| (start + s).min(config.steps));
    // the other ranks train silently: one progress bar per run
    let bar = if lead {
        ProgressBar::new((end - start) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let micro_batches = crate::loader::micro_batches::<B::InnerBackend>(
        sampler.clone(),
        config.augment.clone(),
        config.seed,
        config.batch_size,
        rank * local_batch..(rank + 1) * local_batch,
        (start * config.accumulation) as u64,
        (end * config.accumulation) as u64,
        workers,
    );
    let t0 = Instant::now();
    let mut evaluations = Vec::new();
    // images that failed to decode during training (each replaced by another draw)
    let mut unreadable = std::collections::BTreeSet::new();
    let mut last_good = resume.map(Path::to_path_buf);
    for step in start..end {
        let lr = learning_rate(step, config.lr, config.warmup_steps, config.steps);
        let mut accumulator = GradientsAccumulator::new();
        let mut row_grads: Option<Tensor<B::InnerBackend, 2>> = None;
        let mut loss_sum = 0.0;
        for _ in 0..config.accumulation {
            let (_, batch) = micro_batches
                .recv()
                .map_err(|_| TrainError::Loader("the batch loader stopped".into()))?;
            let batch = batch.map_err(TrainError::Loader)?;
            for why in &batch.unreadable {
                if unreadable.insert(why.clone()) && unreadable.len() <= 5 {
                    bar.println(format!("skipping an unreadable image: {why}"));
                }
            }
            if config.data.strict() && !batch.unreadable.is_empty() {
                let mut report = SkipReport::default();
                batch.unreadable.iter().for_each(|w| report.skip(w.clone()));
                report.finish(true)?;
            }
            let non_finite = || TrainError::NonFinite {
                step: step + 1,
                checkpoint: last_good
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "none yet".into()),
            };
            // the loss refuses NaN embeddings: the same divergence, one step earlier
            let micro = match crate::replicas::micro_batch_grads(
                &model,
                batch,
                threads,
                token_rows.as_mut(),
                &tokenizer,
                config,
                collective,
                device,
            ) {
                Err(TrainError::Loss(clip_loss::LossError::NonFinite(_))) => {
                    return Err(non_finite())
                }
                other => other?,
            };
            if !micro.loss.is_finite() {
                return Err(non_finite());
            }
            loss_sum += micro.loss;
            for grads in micro.parts {
                accumulator.accumulate(&model, grads);
            }
            // a later micro-batch may have brought new rows: earlier sums get zeros for them
            row_grads = match (row_grads, micro.token_rows, &token_rows) {
                (Some(sum), Some(g), Some(rows)) => Some(rows.pad(sum) + g),
                (sum, g, _) => sum.or(g),
            };
        }
        let mut grads = accumulator.grads();
        if let Some(c) = collective {
            grads = crate::collective::sum_gradients(&model, grads, c)?;
            row_grads = match row_grads {
                Some(g) if world > 1 => {
                    let dims = g.dims();
                    Some(c.sum(g.reshape([dims[0] * dims[1]]))?.reshape(dims))
                }
                other => other,
            };
        }
        let row_squares = row_grads.as_ref().map_or(0.0, |g| {
            let s: f32 = g.clone().square().sum().into_scalar().elem();
            s as f64
        });
        let (grad_norm, clip_scale) = clip_and_lock::<B, _>(
            &model,
            &mut grads,
            &groups,
            config.grad_clip_norm,
            row_squares,
        );
        model = optim.step(lr, model, grads);
        if let (Some(rows), Some(grad)) = (token_rows.as_mut(), row_grads) {
            let grad = match clip_scale {
                Some(scale) => grad * scale,
                None => grad,
            };
            // moved out and back, not cloned: the table's only owner updates its rows in place
            let table = model.clip.text.token_embedding.weight;
            model.clip.text.token_embedding.weight = table
                .map(|t| Tensor::from_inner(rows.step(t.inner(), grad, lr, adam)).require_grad());
        }
        model = model.map(&mut DecayMapper {
            decay: &groups.decay,
            factor: 1.0 - lr * config.weight_decay,
        });
        model.clip.logit_scale.value = model
            .clip
            .logit_scale
            .value
            .clone()
            .map(|t| Tensor::from_inner(clamp_logit_scale(t.inner())).require_grad());
        let temperature: f64 = model.clip.logit_scale.scale().into_scalar().elem::<f32>() as f64;
        let entry = StepLog {
            step: step + 1,
            loss: loss_sum / config.accumulation as f64,
            lr,
            temperature,
            grad_norm,
        };
        let done = step + 1 - start;
        let per_sec =
            (done * config.batch_size * config.accumulation) as f64 / t0.elapsed().as_secs_f64();
        let line = format!(
            "loss {:.4} lr {:.2e} scale {:.1} {:.0} img/s",
            entry.loss, lr, temperature, per_sec
        );
        if lead && bar.is_hidden() && (done % 100 == 0 || done == 1) {
            // no terminal (a log file, CI): plain lines instead of the bar
            eprintln!("step {}/{}: {line}", step + 1, config.steps);
        }
        bar.set_message(line);
        bar.inc(1);
        log.push(entry);

        let finished = step + 1 == config.steps;
        if lead && ((step + 1) % config.checkpoint_every == 0 || step + 1 == end) {
            last_good = Some(save_checkpoint(
                config,
                &model,
                &optim,
                token_rows.as_ref(),
                step + 1,
                &log,
            )?);
        }
        let due = (config.eval_every > 0 && (step + 1) % config.eval_every == 0) || finished;
        if let (true, true, Some(test_items)) = (lead, due, &test_items) {
            let report = benchmark::evaluate(
                &model.valid().clip,
                &tokenizer,
                test_items,
                config.eval_samples,
                threads,
                &device.clone(),
            )?;
            let line = format!("step {}: {report:?}", step + 1);
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            evaluations.push((step + 1, report));
        }
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let trained = end - start;
    let final_dir = if end == config.steps && lead {
        let dir = config.output.join("model");
        save_model(&model.valid().clip, config, &tokenizer, &dir)?;
        Some(dir)
    } else {
        None
    };
    Ok(TrainReport {
        steps: end,
        seconds,
        images_per_second: (trained * config.batch_size * config.accumulation) as f64
            / seconds.max(1e-9),
        log,
        evaluations,
        final_dir,
        unreadable_images: unreadable.into_iter().collect(),
    })
}

fn save_checkpoint<B: AutodiffBackend, O: Optimizer<TrainModel<B>, B>>(
    config: &TrainConfig,
    model: &TrainModel<B>,
    optim: &O,
    token_rows: Option<&TokenRows<B::InnerBackend>>,
    step: usize,
    log: &[StepLog],
) -> Result<PathBuf, TrainError> {
    let root = checkpoint_root(config);
    let final_dir = root.join(format!("step-{step:07}"));
    let tmp = root.join(format!(".step-{step:07}.tmp"));
    let written =
        write_checkpoint(config, model, optim, token_rows, step, log, &tmp).and_then(|()| {
            // a checkpoint of this step from an earlier run that went further: the new one replaces it
            if final_dir.exists() {
                std::fs::remove_dir_all(&final_dir).map_err(|e| clip::durable::describe(&e))?;
            }
            // the rename is the commit point: a crash before it leaves only a .tmp directory, which
            // the next checkpoint of this step removes and `latest_checkpoint` never picks
            clip::durable::commit_dir(&tmp, &final_dir).map_err(|e| clip::durable::describe(&e))
        });
    if let Err(message) = written {
        // a full disk gets its room back; the previous checkpoints are untouched
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(TrainError::Checkpoint(format!(
            "writing {}: {message}",
            final_dir.display()
        )));
    }
    Ok(final_dir)
}

/// Writes a checkpoint's files into `tmp` (created afresh); every file is flushed by the commit.
fn write_checkpoint<B: AutodiffBackend, O: Optimizer<TrainModel<B>, B>>(
    config: &TrainConfig,
    model: &TrainModel<B>,
    optim: &O,
    token_rows: Option<&TokenRows<B::InnerBackend>>,
    step: usize,
    log: &[StepLog],
    tmp: &Path,
) -> Result<(), String> {
    let io = |e: std::io::Error| clip::durable::describe(&e);
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(io)?;
    }
    std::fs::create_dir_all(tmp).map_err(io)?;
    model
        .clone()
        .save_file(tmp.join("model"), &recorder())
        .map_err(|e| no_space_first(e.to_string()))?;
    recorder()
        .record(optim.to_record(), tmp.join("optim"))
        .map_err(|e| no_space_first(e.to_string()))?;
    if let Some(rows) = token_rows {
        Recorder::<B>::record(
            &recorder(),
            rows.to_record().map_err(|e| e.to_string())?,
            tmp.join("token_rows"),
        )
        .map_err(|e| no_space_first(e.to_string()))?;
    }
    let state = CheckpointState {
        step,
        model: config.model.clone(),
        loss: config.loss.clone(),
        log: log.to_vec(),
        batch: Some((config.batch_size, config.accumulation)),
    };
    let json = serde_json::to_string(&state).map_err(|e| e.to_string())?;
    std::fs::write(tmp.join("state.json"), json).map_err(io)
}

/// burn's recorder reports I/O errors as the `Debug` text of its error: a full disk is said plainly.
fn no_space_first(message: String) -> String {
    if message.contains("StorageFull") || message.contains("No space left") {
        "no space left on the device".to_string()
    } else {
        message
    }
}

/// Writes the trained model as a model directory `clip` loads (`clip_config.json` + `model.bpk`),
/// with f16 weights when `config.half_precision_model` is set, and the files of a Hugging Face `tokenizer`.
pub fn save_model<B: Backend>(
    clip: &Clip<B>,
    config: &TrainConfig,
    tokenizer: &TextTokenizer,
    dir: &Path,
) -> Result<(), TrainError> {
    // a model trained with SigLIP's loss keeps its bias: the config says it has one
    let mut architecture = config.model.clone();
    if clip.logit_bias.is_some() && architecture.logit_bias.is_none() {
        architecture.logit_bias = Some(SIGLIP_LOGIT_BIAS_INIT);
    }
    let mut pretrained = clip::Pretrained::from_model(clip.clone(), architecture)?;
    // a Hugging Face tokenizer's files go beside the weights, where `Pretrained::load` finds them
    pretrained.tokenizer = tokenizer.clone();
    if config.half_precision_model {
        pretrained.save_burn_half(dir)?;
    } else {
        pretrained.save_burn(dir)?;
    }
    Ok(())
}
