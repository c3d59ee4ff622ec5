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
}

#[derive(Parser, Debug)]
struct Args {
    /// flex, ndarray, wgpu or cuda (the last three need the cargo feature of that name).
    #[arg(long, default_value = "flex")]
    backend: String,
    /// f32, or on GPUs bf16 / f16.
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
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    match (args.backend.as_str(), args.dtype.as_str()) {
        ("flex", "f32") => run::<burn::backend::Flex>(&args),
        #[cfg(feature = "ndarray")]
        ("ndarray", "f32") => run::<burn::backend::NdArray>(&args),
        #[cfg(feature = "wgpu")]
        ("wgpu", "f32") => run::<burn::backend::Wgpu>(&args),
        #[cfg(feature = "wgpu")]
        ("wgpu", "f16") => run::<burn::backend::Wgpu<burn::tensor::f16>>(&args),
        #[cfg(feature = "cuda")]
        ("cuda", "f32") => run::<burn::backend::Cuda>(&args),
        #[cfg(feature = "cuda")]
        ("cuda", "bf16") => run::<burn::backend::Cuda<burn::tensor::bf16>>(&args),
        #[cfg(feature = "cuda")]
        ("cuda", "f16") => run::<burn::backend::Cuda<burn::tensor::f16>>(&args),
        (backend, dtype) => Err(format!(
            "backend {backend} with {dtype} is not compiled in (see the cargo features)"
        )
        .into()),
    }
}

fn run<B: Backend>(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = B::Device::default();
    let clip = match &args.model {
        Some(path) => Pretrained::<B>::load(path, &device)?,
        None => {
            let config = ClipConfig::preset(&args.preset)?;
            Pretrained::from_model(config.init::<B>(&device)?, config)?
        }
    };
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
    let step = || -> Result<(), clip::ClipError> {
        match args.task {
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

/// Peak resident set of this process (Linux `VmHWM`), in MiB; `null` elsewhere.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
