//! Encoding throughput of one model on one backend, as one JSON line: the project's side of
//! `scripts/compare.py`, which runs it alternately with open_clip on PyTorch.
//!
//!     cargo run --release --example throughput -- --model DIR --task image --batch 16
//!     cargo run --release --example throughput --features cuda -- --backend cuda --dtype bf16 \
//!         --preset ViT-B/32 --task image --batch 256
//!
//! Model loading and the first (warm-up) batches are not timed. Peak memory is the process's peak
//! resident set (VmHWM), read the same way on the PyTorch side.

use std::time::Instant;

use burn::tensor::{backend::Backend, Distribution, Int, Tensor};
use clap::{Parser, ValueEnum};
use clip::zeroshot::imagenet_classes;
use clip::{ClipConfig, Pretrained};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Task {
    /// Random 224×224 (or the model's size) pixels through the image tower.
    Image,
    /// ImageNet prompts padded to the full context (77 tokens) through the text tower.
    Text,
    /// The same prompts as the library encodes them: padding after the last end token trimmed.
    TextTrimmed,
    /// One training step of a random-weight model on random images and ImageNet prompts (77 tokens):
    /// both towers, CLIP's contrastive loss, backward, AdamW. Items/s counts pairs.
    TrainStep,
    /// Image files of `--files` decoded and preprocessed on a thread pool ahead of the model
    /// (`clip::data::prefetch`), then encoded: the data path of `clip embed` / `clip classify`.
    Files,
}

#[derive(Parser, Debug)]
struct Args {
    /// flex, ndarray, wgpu or cuda (the last three need the cargo feature of that name).
    #[arg(long, default_value = "flex")]
    backend: String,
    /// f32, f16 or bf16 (`clip::set_precision`; where the backend computes in it).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// A model directory or file (open_clip or Hugging Face layout).
    #[arg(long, conflicts_with = "preset")]
    model: Option<std::path::PathBuf>,
    /// A named architecture with random weights, when no --model is given.
    #[arg(long, default_value = "ViT-B/32")]
    preset: String,
    #[arg(long, value_enum, default_value = "image")]
    task: Task,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Split each batch over this many threads (`Clip::encode_image_threaded`); 1 for GPUs.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A folder of images for `--task files` (each step encodes `--batch` of them, cycling).
    #[arg(long)]
    files: Option<std::path::PathBuf>,
    /// Decoding threads for `--task files` (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    match args.backend.as_str() {
        "flex" => run::<burn::backend::Flex>(&args),
        #[cfg(feature = "ndarray")]
        "ndarray" => run::<burn::backend::NdArray>(&args),
        #[cfg(feature = "wgpu")]
        "wgpu" => run::<burn::backend::Wgpu>(&args),
        #[cfg(feature = "cuda")]
        "cuda" => run::<burn::backend::Cuda>(&args),
        backend => {
            Err(format!("backend {backend} is not compiled in (see the cargo features)").into())
        }
    }
}

fn run<B: Backend>(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = B::Device::default();
    // before anything else touches the device: weights load and inputs are made in this precision
    clip::set_precision::<B>(&device, args.dtype.parse()?)?;
    if matches!(args.task, Task::TrainStep) {
        return train_steps::<B>(args, &device);
    }
    let clip = match &args.model {
        Some(path) => Pretrained::<B>::load(path, &device)?,
        None => {
            let config = ClipConfig::preset(&args.preset)?;
            Pretrained::from_model(config.init::<B>(&device)?, config)?
        }
    };
    let clip = clip.with_threads(args.threads);
    let size = clip.model.image_size();
    let images = Tensor::<B, 4>::random(
        [args.batch, 3, size, size],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let prompts: Vec<String> = imagenet_classes()
        .iter()
        .cycle()
        .take(args.batch)
        .map(|c| format!("a photo of a {c}."))
        .collect();
    let full: Tensor<B, 2, Int> = clip.tokenize(&prompts, &device)?;
    let files: Vec<std::path::PathBuf> = match (&args.task, &args.files) {
        (Task::Files, Some(dir)) => {
            let mut files: Vec<_> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            files
        }
        (Task::Files, None) => return Err("--task files needs --files DIR".into()),
        _ => Vec::new(),
    };
    let options = clip::data::prefetch::PrefetchOptions {
        batch_size: args.batch,
        workers: args
            .workers
            .unwrap_or(clip::data::prefetch::PrefetchOptions::default().workers),
        depth: 2,
    };
    // every step's files, in one prefetching stream: decoding overlaps the encoding of earlier batches
    let steps = args.warmup + args.iters;
    let mut stream = (!files.is_empty()).then(|| {
        let list: Vec<_> = files
            .iter()
            .cycle()
            .take(steps * args.batch)
            .cloned()
            .collect();
        clip::data::prefetch::prefetch(list, clip.preprocess.clone(), options)
    });
    let mut step = || -> Result<(), clip::ClipError> {
        match args.task {
            Task::TrainStep => unreachable!("handled by train_steps"),
            Task::Files => {
                let mut batch = stream
                    .as_mut()
                    .and_then(|s| s.next())
                    .ok_or_else(|| clip::ClipError::Input("no images in --files".into()))?;
                if let Some((_, e)) = std::mem::take(&mut batch.failed).into_iter().next() {
                    return Err(e.into());
                }
                if let Some(embeds) = clip.embed_prepared(&batch, &device) {
                    embeds.into_data();
                }
            }
            Task::Image => {
                clip.model
                    .encode_image_threaded(images.clone(), args.threads)
                    .into_data();
            }
            Task::Text => {
                clip.model
                    .encode_text_threaded(full.clone(), args.threads)
                    .into_data();
            }
            Task::TextTrimmed => {
                let ids = clip::tokenize_trimmed(&clip.tokenizer, &prompts, &device)?;
                clip.model
                    .encode_text_threaded(ids, args.threads)
                    .into_data();
            }
        }
        Ok(())
    };
    for _ in 0..args.warmup {
        step()?;
    }
    let start = Instant::now();
    for _ in 0..args.iters {
        step()?;
    }
    let seconds = start.elapsed().as_secs_f64() / args.iters as f64;
    let report = serde_json::json!({
        "side": "burn",
        "backend": args.backend,
        "dtype": args.dtype,
        "model": args.model.as_ref().map_or(args.preset.clone(), |p| p.display().to_string()),
        "task": match args.task {
            Task::Image => "image",
            Task::Text => "text",
            Task::TextTrimmed => "text-trimmed",
            Task::Files => "image-files",
            Task::TrainStep => "train-step",
        },
        "batch": args.batch,
        "seconds_per_batch": seconds,
        "items_per_s": args.batch as f64 / seconds,
        "peak_rss_mib": peak_rss_mib(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "batch_threads": args.threads,
    });
    println!("{report}");
    Ok(())
}

/// `--task train-step`: the seconds of one training step (after `--warmup` untimed ones), as JSON.
fn train_steps<B: Backend>(
    args: &Args,
    device: &B::Device,
) -> Result<(), Box<dyn std::error::Error>> {
    use burn::backend::Autodiff;
    use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
    type A<B> = Autodiff<B>;
    let config = ClipConfig::preset(&args.preset)?;
    let mut model = config.init::<A<B>>(device)?;
    let mut optim = AdamWConfig::new().init::<A<B>, clip::Clip<A<B>>>();
    let size = model.image_size();
    let images = Tensor::<A<B>, 4>::random(
        [args.batch, 3, size, size],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let tokenizer = clip::tokenizer::ClipTokenizer::new()?;
    let prompts: Vec<String> = imagenet_classes()
        .iter()
        .cycle()
        .take(args.batch)
        .map(|c| format!("a photo of a {c}."))
        .collect();
    let ids: Tensor<A<B>, 2, Int> = tokenizer.tokenize_batch(&prompts, device)?;
    let mut seconds = 0.0;
    for i in 0..args.warmup + args.iters {
        let start = Instant::now();
        let image = model.encode_image(images.clone());
        let text = model.encode_text(ids.clone());
        let loss = clip::loss::contrastive_loss(
            image,
            text,
            model.logit_scale.value.val(),
            Default::default(),
        )?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-5, model, grads);
        // wait for the step: read one parameter back
        model.logit_scale.value.val().into_data();
        if i >= args.warmup {
            seconds += start.elapsed().as_secs_f64();
        }
    }
    let seconds = seconds / args.iters.max(1) as f64;
    let report = serde_json::json!({
        "side": "burn", "backend": args.backend, "dtype": args.dtype, "model": args.preset,
        "task": "train-step", "batch": args.batch, "seconds_per_batch": seconds,
        "items_per_s": args.batch as f64 / seconds, "peak_rss_mib": peak_rss_mib(),
    });
    println!("{report}");
    Ok(())
}

/// Peak resident set of this process (Linux `VmHWM`), in MiB; `null` elsewhere.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
