//! `clip`: embed images and texts, tokenize, and inspect CLIP models from the command line.

mod classify;
mod device;
mod embed_dataset;
mod eval;
mod heatmap;
mod search;
mod similarity;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use clap::{Parser, Subcommand};
use clip::zeroshot::{to_rows, Templates};
use clip::{ClipError, Pretrained, VisionConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use device::DeviceChoice;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Clip(#[from] ClipError),
    #[error(transparent)]
    Search(#[from] clip_search::SearchError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Parser)]
#[command(
    name = "clip",
    version,
    about = "CLIP on burn: embed images and texts with open_clip / Hugging Face checkpoints"
)]
struct Cli {
    /// Backend and device: flex (CPU), ndarray, wgpu[:N], vulkan[:N], metal[:N], cuda[:N].
    #[arg(long, global = true)]
    device: Option<DeviceChoice>,
    /// Float precision the model runs in: f32, f16 or bf16 (half precision on backends and devices that
    /// compute in it: flex, cuda; f16 on GPUs with 16-bit shader floats). Embeddings are written as f32.
    #[arg(long, global = true, default_value = "f32")]
    dtype: clip::Precision,
    /// Run a ViT at this input size (a multiple of its patch size): its position grid is resized as
    /// open_clip's resize_pos_embed does, and images are cropped to the new size. For a SigLIP 2
    /// NaFlex model, a patch budget instead: at most (N / patch)² patches per image.
    #[arg(long, global = true)]
    image_size: Option<usize>,
    /// Read at most this many tokens per text (at most the model's own context length).
    #[arg(long, global = true)]
    context_length: Option<usize>,
    /// Weights file for `--model NAME|CONFIG`: a bundled open_clip config name (`ViT-B-16-plus-240`) or
    /// an open_clip config file, as open_clip's create_model_and_transforms(name, pretrained=FILE).
    #[arg(long, global = true)]
    weights: Option<PathBuf>,
    /// The `tokenizer.json` (or a directory holding it) of a model whose config names a Hugging Face
    /// tokenizer (CLIPA, the worldwide models), when it is not beside the weights.
    #[arg(long, global = true)]
    tokenizer: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `clip convert --to`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportLayout {
    /// `clip_config.json` + `model.bpk`.
    Burn,
    /// `open_clip_model.safetensors` + `open_clip_config.json`.
    #[value(name = "open_clip")]
    OpenClip,
    /// `model.safetensors` + `config.json` + `preprocessor_config.json`.
    Hf,
}

#[derive(Subcommand)]
enum Command {
    /// Embed images and/or texts; writes JSON {"image_embeds", "text_embeds", "logits_per_image"}.
    Embed {
        /// Model directory (weights + open_clip_config.json or config.json) or a weights file;
        /// the bundled Fashion-MNIST scenes model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Image file (repeatable).
        #[arg(long = "image")]
        images: Vec<PathBuf>,
        /// Text (repeatable).
        #[arg(long = "text")]
        texts: Vec<String>,
        /// Write the JSON here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Inputs encoded per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Embed a dataset into clip-retrieval's layout (img_emb/, text_emb/, metadata/ parquet) in
    /// shards that separate machines or array jobs write: `--shard i/N`, or Slurm's / Kubernetes'
    /// array index (docs/distributed.md).
    EmbedDataset {
        /// Model directory or weights file; the bundled model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        /// A folder of images (captions from same-stem .txt files), a webdataset .tar shard, or a
        /// captions .csv / .jsonl.
        #[arg(long)]
        input: PathBuf,
        /// Output folder; a rerun skips the shards already done there.
        #[arg(long)]
        output: PathBuf,
        /// This run's shard, INDEX/COUNT (default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or
        /// JOB_COMPLETION_INDEX of --shards; else every shard in turn).
        #[arg(long)]
        shard: Option<String>,
        /// Shards in all when --shard does not say (item k goes to shard k mod COUNT).
        #[arg(long, default_value_t = 1)]
        shards: usize,
        /// Images encoded per forward pass.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
    },
    /// Index folders of images for `clip search`: new and changed files are embedded, unchanged ones
    /// skipped, renamed or copied ones reuse their vectors, vanished ones are left out.
    Index(search::IndexArgs),
    /// Search indexed images by text, by image, or by a weighted sum: `clip search "a blue bag"`,
    /// `clip search beach + sunset - 2:people`, `clip search --like photo.jpg`.
    Search(search::SearchArgs),
    /// Serve an index over HTTP: a web page to search by text or by a dropped image, "more like
    /// this", zero-shot classification, and a JSON API (docs/search.md).
    Serve(search::ServeArgs),
    /// Print the token ids of texts, one JSON array per line (padded to the context length).
    Tokenize {
        /// Tokenize as this model does (its tokenizer: CLIP's, or the Hugging Face `tokenizer.json`
        /// its config names, and its context length); CLIP's tokenizer when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Pad or cut every text to this many tokens (default: the model's, 77 for CLIP's).
        #[arg(long)]
        context_length: Option<usize>,
        /// Read texts from standard input, one JSON string per line.
        #[arg(long)]
        jsonl: bool,
        texts: Vec<String>,
    },
    /// Zero-shot classification of images into labels through prompt templates.
    Classify {
        /// The bundled Fashion-MNIST scenes model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Comma-separated labels, each once.
        #[arg(
            long,
            conflicts_with = "labels_file",
            required_unless_present = "labels_file"
        )]
        labels: Option<String>,
        /// A file with one label per line; a line may repeat an earlier one (a dataset's class list,
        /// such as OpenAI's ImageNet names, where "missile" and "sunglasses" each name two classes).
        #[arg(long)]
        labels_file: Option<PathBuf>,
        /// imagenet (OpenAI's 80), simple (7), cifar (18), none (the bare label), or a file of templates.
        #[arg(long, default_value = "simple")]
        templates: String,
        /// Labels shown per image in the table (the JSON lists every label).
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Logit multiplier: a number (100, the reference notebooks' choice) or "model" (its learned scale).
        #[arg(long, default_value = "100")]
        scale: String,
        /// Reuse the classifier saved here when it was built for this model, labels and templates;
        /// otherwise build it and save it here.
        #[arg(long)]
        classifier: Option<PathBuf>,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Cosine similarities between images and texts, as a table and optionally a PNG heatmap.
    Similarity {
        /// The model directory or weights file; the bundled Fashion-MNIST scenes model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long = "image", required = true)]
        images: Vec<PathBuf>,
        #[arg(long = "text", required = true)]
        texts: Vec<String>,
        /// Draw the heatmap with image thumbnails and text labels into this PNG.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Evaluate a model: zero-shot classification or image–text retrieval.
    Eval {
        #[command(subcommand)]
        task: EvalTask,
    },
    /// Contrastive training from a TOML or JSON config (see configs/fashion-scenes.toml).
    Train {
        #[arg(long)]
        config: PathBuf,
        /// `latest` (the newest checkpoint under the config's output) or a checkpoint directory.
        #[arg(long)]
        resume: Option<String>,
        /// Refuse unreadable images in a captions file or shard instead of skipping them (overrides
        /// the config's `strict`).
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        ranks: RankArgs,
    },
    /// Write a model (any layout `--model` reads) in this library's burn format: `clip_config.json`
    /// and `model.bpk`.
    ///
    /// `clip convert IN OUT`, `clip convert OUT` (the bundled model), or `--model IN --output OUT`.
    /// `--dtype` chooses how the weights are stored (f16 and bf16: half the size).
    Convert {
        /// IN (any model `clip` loads) and OUT (a directory), or OUT alone.
        #[arg(num_args = 0..=2)]
        paths: Vec<PathBuf>,
        /// The model directory or weights file (instead of IN).
        #[arg(long)]
        model: Option<PathBuf>,
        /// The directory to write (instead of OUT).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The layout to write: burn (this library's), open_clip, or hf (a transformers CLIPModel).
        #[arg(long, default_value = "burn")]
        to: ExportLayout,
        /// Store the weights in f16 (the same as --dtype f16).
        #[arg(long)]
        half: bool,
    },
    /// Describe a model: architecture, parameters, weight layout, preprocessing.
    Info {
        /// The model directory or weights file; the bundled Fashion-MNIST scenes model when absent.
        #[arg(long, conflicts_with = "config")]
        model: Option<PathBuf>,
        /// Describe an architecture without weights: an open_clip config name (`clip info --config
        /// list` lists them, `table` sums them up by family), an open_clip model config JSON, an open_clip_config.json or a
        /// transformers config.json. Exits non-zero, naming the option, for one this library cannot run.
        #[arg(long)]
        config: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EvalTask {
    /// Zero-shot accuracy on a folder with one sub-folder of images per class (the folder name, `_` read
    /// as a space, is the label).
    Zeroshot {
        /// The model directory or weights file; the bundled Fashion-MNIST scenes model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "simple")]
        templates: String,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// The Fashion-MNIST scenes benchmark on the test split: (a) 10-way class accuracy on the
    /// grayscale items, (b) / (c) 70-way colour×class accuracy on held-out / seen pairs, (d) image→text
    /// recall@1. Prints one JSON object.
    FashionScenes {
        /// The bundled model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The directory of Fashion-MNIST's IDX files (default: $FASHION_MNIST_DIR, else
        /// /usr/share/datasets/fashion-mnist, where Debian's dataset-fashion-mnist puts them).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Test items to use (at most 10000).
        #[arg(long, default_value_t = 1000)]
        samples: usize,
    },
    /// Retrieval recall@1/5/10 both ways on a captions file: JSONL of {"image": path, "caption": text}
    /// lines, or CSV with an `image,caption` header (paths relative to the file).
    Retrieval {
        /// The model directory or weights file; the bundled Fashion-MNIST scenes model when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--image-size` and `--context-length`, applied to every model a command loads.
static MODEL_SIZE: std::sync::OnceLock<(Option<usize>, Option<usize>)> = std::sync::OnceLock::new();

/// `--weights`: `--model` then names the architecture, not a checkpoint.
static WEIGHTS: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// `--tokenizer`: a Hugging Face tokenizer file for the model.
static TOKENIZER: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// The model at `path` (the bundled one when `None`), at the `--image-size` and `--context-length`
/// asked for.
pub(crate) fn load_model<B: Backend>(
    path: Option<&Path>,
    device: &B::Device,
) -> Result<Pretrained<B>, ClipError> {
    let mut clip =
        match (WEIGHTS.get().and_then(Option::as_ref), path) {
            (Some(weights), Some(config)) => {
                Pretrained::<B>::load_named(&config.to_string_lossy(), weights, device)?
            }
            (Some(_), None) => return Err(ClipError::Input(
                "--weights needs --model NAME (a bundled open_clip config) or an open_clip config \
                 file for its architecture"
                    .into(),
            )),
            (None, path) => Pretrained::<B>::load_or_bundled(path, device)?,
        };
    if let Some(tokenizer) = TOKENIZER.get().and_then(Option::as_ref) {
        clip = clip.with_tokenizer(tokenizer)?;
    }
    let (image_size, context_length) = MODEL_SIZE.get().copied().unwrap_or_default();
    if let Some(size) = image_size {
        clip = clip.with_image_size(size)?;
    }
    if let Some(length) = context_length {
        clip = clip.with_context_length(length)?;
    }
    Ok(clip)
}

fn run(cli: Cli) -> Result<(), CliError> {
    let choice = cli.device.unwrap_or_else(DeviceChoice::default_choice);
    let _ = MODEL_SIZE.set((cli.image_size, cli.context_length));
    let _ = WEIGHTS.set(cli.weights.clone());
    let _ = TOKENIZER.set(cli.tokenizer.clone());
    let dtype = cli.dtype;
    match cli.command {
        Command::Embed {
            model,
            images,
            texts,
            output,
            batch_size,
        } => {
            if images.is_empty() && texts.is_empty() {
                return Err(CliError::Usage(
                    "nothing to embed: give --image FILE and/or --text TEXT".into(),
                ));
            }
            if batch_size == 0 {
                return Err(CliError::Usage("--batch-size must be at least 1".into()));
            }
            // Check every input before loading the model, so a typo fails fast and names the file.
            for image in &images {
                if !image.is_file() {
                    return Err(CliError::Usage(format!(
                        "image {} does not exist",
                        image.display()
                    )));
                }
            }
            let result = dispatch!(
                choice,
                dtype,
                embed(model.as_deref(), &images, &texts, batch_size)
            )?;
            write_output(output.as_deref(), &result)
        }
        Command::EmbedDataset {
            model,
            input,
            output,
            shard,
            shards,
            batch_size,
        } => {
            let chosen = embed_dataset::Shard::choose(shard.as_deref(), shards)?;
            let (count, mine) = match chosen {
                Some(s) => (s.count, vec![s.index]),
                None if shards == 0 => {
                    return Err(CliError::Usage("--shards must be at least 1".into()))
                }
                None => (shards, (0..shards).collect()),
            };
            let items = embed_dataset::list_items(&input)?;
            // recorded in the output as the listing's identity: the same folder however it is named
            let input = input.canonicalize().unwrap_or(input);
            if items.is_empty() {
                return Err(CliError::Usage(format!(
                    "{}: no images found",
                    input.display()
                )));
            }
            let result = dispatch!(
                choice,
                dtype,
                embed_dataset_cmd(
                    model.as_deref(),
                    &input,
                    &items,
                    &output,
                    &mine,
                    count,
                    batch_size
                )
            )?;
            println!("{result}");
            Ok(())
        }
        Command::Index(args) => dispatch!(choice, dtype, search::index(&args)),
        Command::Search(args) => dispatch!(choice, dtype, search::search(&args)),
        Command::Serve(args) => dispatch!(choice, dtype, search::serve(&args)),
        Command::Tokenize {
            model: None,
            context_length,
            jsonl,
            texts,
        } => {
            let length = context_length.unwrap_or(clip::tokenizer::DEFAULT_CONTEXT_LENGTH);
            let tokenizer =
                clip::tokenizer::TextTokenizer::clip(length).map_err(ClipError::from)?;
            tokenize(&tokenizer, jsonl, texts)
        }
        Command::Tokenize {
            model: Some(model),
            context_length,
            jsonl,
            texts,
        } => dispatch!(
            choice,
            dtype,
            tokenize_as_model(&model, context_length, jsonl, texts)
        ),
        Command::Info {
            config: Some(config),
            json,
            ..
        } => describe_config(&config, json),
        Command::Info { model, json, .. } => {
            dispatch!(choice, dtype, info(model.as_deref(), json))
        }
        Command::Convert {
            paths,
            model,
            output,
            to,
            half,
        } => {
            let (model, output) =
                match (paths.as_slice(), model, output) {
                    ([input, out], None, None) => (Some(input.clone()), out.clone()),
                    ([out], model, None) => (model, out.clone()),
                    ([], model, Some(out)) => (model, out),
                    _ => return Err(CliError::Usage(
                        "give IN OUT, OUT alone (the bundled model), or --model IN --output OUT"
                            .into(),
                    )),
                };
            let storage = match (dtype, half) {
                (clip::Precision::F32, false) => clip::StorageType::F32,
                (clip::Precision::F32 | clip::Precision::F16, true)
                | (clip::Precision::F16, false) => clip::StorageType::F16,
                (clip::Precision::Bf16, false) => clip::StorageType::BF16,
                (clip::Precision::Bf16, true) => {
                    return Err(CliError::Usage("--half and --dtype bf16 disagree".into()))
                }
            };
            // the model is read in f32 whatever it is stored as
            dispatch!(
                choice,
                clip::Precision::F32,
                convert(model.as_deref(), &output, to, storage)
            )
        }
        Command::Train {
            config,
            resume,
            strict,
            ranks,
        } => {
            if dtype != clip::Precision::F32 {
                return Err(CliError::Usage(format!(
                    "training runs in f32 (--dtype {dtype} is for embed, classify, similarity, eval and info)"
                )));
            }
            let mut config = clip_train::TrainConfig::from_file(&config)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            if strict {
                config.data.set_strict();
            }
            let resume = match resume.as_deref() {
                None => None,
                Some("latest") => {
                    Some(clip_train::latest_checkpoint(&config).ok_or_else(|| {
                        CliError::Usage(format!(
                            "no checkpoint under {} to resume",
                            config.output.join("checkpoints").display()
                        ))
                    })?)
                }
                Some(dir) => Some(PathBuf::from(dir)),
            };
            let launch = ranks.launch()?;
            dispatch!(
                choice,
                dtype,
                train(&config, resume.as_deref(), launch.as_ref())
            )
        }
        Command::Classify {
            model,
            labels,
            labels_file,
            templates,
            top_k,
            json,
            scale,
            classifier,
            batch_size,
            images,
        } => {
            let labels = match (labels, labels_file) {
                (Some(list), _) => inline_labels(&list)?,
                (None, Some(file)) => std::fs::read_to_string(&file)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| l.trim().to_string())
                    .collect(),
                (None, None) => Vec::new(),
            };
            let templates = Templates::from_name_or_file(&templates).map_err(ClipError::from)?;
            let options = classify::Options {
                labels,
                templates,
                top_k,
                json,
                scale,
                classifier,
                batch_size: batch_size.max(1),
            };
            dispatch!(
                choice,
                dtype,
                classify::run(model.as_deref(), &images, &options)
            )
        }
        Command::Similarity {
            model,
            images,
            texts,
            plot,
        } => {
            dispatch!(
                choice,
                dtype,
                similarity::run(model.as_deref(), &images, &texts, plot.as_deref())
            )
        }
        Command::Eval { task } => match task {
            EvalTask::Zeroshot {
                model,
                data,
                templates,
                json,
                batch_size,
            } => {
                let templates =
                    Templates::from_name_or_file(&templates).map_err(ClipError::from)?;
                dispatch!(
                    choice,
                    dtype,
                    eval::zeroshot(model.as_deref(), &data, &templates, json, batch_size.max(1))
                )
            }
            EvalTask::FashionScenes {
                model,
                data,
                samples,
            } => {
                let data = data.unwrap_or_else(clip::data::fashion::default_dir);
                dispatch!(
                    choice,
                    dtype,
                    fashion_scenes(model.as_deref(), &data, samples)
                )
            }
            EvalTask::Retrieval {
                model,
                data,
                json,
                batch_size,
            } => {
                dispatch!(
                    choice,
                    dtype,
                    eval::retrieval(model.as_deref(), &data, json, batch_size.max(1))
                )
            }
        },
    }
}

pub(crate) fn write_output(path: Option<&Path>, value: &Value) -> Result<(), CliError> {
    let text = value.to_string();
    match path {
        Some(path) => {
            clip::weights::write_atomic(path, format!("{text}\n").as_bytes())?;
            Ok(())
        }
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").map_err(|source| CliError::Write {
                path: "standard output".into(),
                source,
            })
        }
    }
}

/// Image files → raw embeddings, `batch` at a time, with a progress bar. Files are decoded and
/// preprocessed on a pool of threads ahead of the model (`clip::data::prefetch`), so a GPU does not
/// wait for the CPU between batches; the first file that cannot be read stops the run with its name.
pub(crate) fn embed_images<B: Backend>(
    clip: &Pretrained<B>,
    paths: &[PathBuf],
    batch: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2>, CliError> {
    use clip::data::prefetch::{prefetch, PrefetchOptions};
    let bar = progress(paths.len(), "images");
    let options = PrefetchOptions {
        batch_size: batch,
        ..PrefetchOptions::default()
    };
    let mut parts = Vec::new();
    for mut prepared in prefetch(paths.to_vec(), clip.preprocess.clone(), options) {
        if let Some((_, error)) = std::mem::take(&mut prepared.failed).into_iter().next() {
            return Err(ClipError::Image(error).into());
        }
        let count = prepared.len();
        if let Some(embeds) = clip.embed_prepared(&prepared, device) {
            parts.push(embeds);
        }
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    if parts.is_empty() {
        return Err(CliError::Usage("no images to embed".into()));
    }
    Ok(Tensor::cat(parts, 0))
}

/// Texts → raw embeddings, `batch` at a time, with a progress bar.
pub(crate) fn embed_texts<B: Backend>(
    clip: &Pretrained<B>,
    texts: &[String],
    batch: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2>, CliError> {
    let bar = progress(texts.len(), "texts");
    let mut parts = Vec::new();
    for chunk in texts.chunks(batch) {
        parts.push(clip.embed_texts(chunk, device)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Tensor::cat(parts, 0))
}

pub(crate) fn progress(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

fn embed<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    images: &[PathBuf],
    texts: &[String],
    batch_size: usize,
) -> Result<Value, CliError> {
    let clip = load_model::<B>(model, device)?;
    let mut out = serde_json::Map::new();
    let image_embeds = (!images.is_empty())
        .then(|| embed_images(&clip, images, batch_size, device))
        .transpose()?;
    let text_embeds = (!texts.is_empty())
        .then(|| embed_texts(&clip, texts, batch_size, device))
        .transpose()?;
    if let Some(i) = &image_embeds {
        out.insert("image_embeds".into(), json!(to_rows(i.clone())));
    }
    if let Some(t) = &text_embeds {
        out.insert("text_embeds".into(), json!(to_rows(t.clone())));
    }
    if let (Some(i), Some(t)) = (image_embeds, text_embeds) {
        out.insert(
            "logits_per_image".into(),
            json!(to_rows(clip.model.logits_per_image(i, t))),
        );
    }
    Ok(Value::Object(out))
}

/// `clip tokenize --model M`: the model's tokenizer, at `context_length` or the model's.
fn tokenize_as_model<B: Backend>(
    device: &B::Device,
    model: &Path,
    context_length: Option<usize>,
    jsonl: bool,
    texts: Vec<String>,
) -> Result<(), CliError> {
    let clip = load_model::<B>(Some(model), device)?;
    let tokenizer = match context_length {
        Some(length) => clip
            .tokenizer
            .with_context_length(length)
            .map_err(ClipError::from)?,
        None => clip.tokenizer,
    };
    tokenize(&tokenizer, jsonl, texts)
}

fn tokenize(
    tokenizer: &clip::tokenizer::TextTokenizer,
    jsonl: bool,
    mut texts: Vec<String>,
) -> Result<(), CliError> {
    if jsonl {
        if !texts.is_empty() {
            return Err(CliError::Usage(
                "--jsonl reads texts from standard input; do not also pass TEXT arguments".into(),
            ));
        }
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.map_err(|e| CliError::Usage(format!("reading standard input: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let text: String = serde_json::from_str(&line).map_err(|e| {
                CliError::Usage(format!(
                    "standard input line {}: not a JSON string ({e})",
                    i + 1
                ))
            })?;
            texts.push(text);
        }
    }
    if texts.is_empty() {
        return Err(CliError::Usage("no texts to tokenize".into()));
    }
    let mut out = std::io::stdout().lock();
    for text in &texts {
        let ids = tokenizer.tokenize(text).map_err(ClipError::from)?;
        writeln!(out, "{}", json!(ids)).map_err(|source| CliError::Write {
            path: "standard output".into(),
            source,
        })?;
    }
    Ok(())
}

fn train<B: Backend>(
    device: &B::Device,
    config: &clip_train::TrainConfig,
    resume: Option<&Path>,
    launch: Option<&clip_distributed::Launch>,
) -> Result<(), CliError> {
    // refused before joining, rather than after the others wait for this rank
    if let Some(launch) = launch {
        config
            .check_world_size(launch.world_size)
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    let ranks = match launch.filter(|l| l.world_size > 1) {
        Some(launch) => Some(
            clip_distributed::join::<B>(launch, device)
                .map_err(|e| CliError::Usage(e.to_string()))?,
        ),
        None => None,
    };
    let collective = ranks.as_ref().map(|r| r as &dyn clip_train::Collective<B>);
    let report =
        clip_train::train_with::<burn::backend::Autodiff<B>>(config, resume, device, collective)
            .map_err(|e| CliError::Usage(e.to_string()))?;
    if ranks
        .as_ref()
        .is_some_and(|r| clip_train::Collective::<B>::rank(r) != 0)
    {
        // rank 0 reports and writes report.json
        return Ok(());
    }
    let summary = json!({
        "steps": report.steps, "seconds": report.seconds, "images_per_second": report.images_per_second,
        "final_loss": report.log.last().map(|l| l.loss), "evaluations": report.evaluations, "model": report.final_dir,
        "unreadable_images": report.unreadable_images,
    });
    std::fs::create_dir_all(&config.output).ok();
    let path = config.output.join("report.json");
    clip::weights::write_atomic(
        &path,
        serde_json::to_string_pretty(&json!({"summary": summary, "log": report.log}))
            .unwrap_or_default()
            .as_bytes(),
    )?;
    println!("{summary}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn embed_dataset_cmd<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    input: &Path,
    items: &[embed_dataset::Item],
    output: &Path,
    shards: &[usize],
    count: usize,
    batch_size: usize,
) -> Result<Value, CliError> {
    let clip = load_model::<B>(model, device)?;
    let name = model.map_or_else(|| "bundled".to_string(), |m| m.display().to_string());
    embed_dataset::run(
        device, &clip, &name, input, items, output, shards, count, batch_size,
    )
}

fn convert<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    output: &Path,
    to: ExportLayout,
    storage: clip::StorageType,
) -> Result<(), CliError> {
    let clip = load_model::<B>(model, device)?;
    match (to, storage) {
        (ExportLayout::Burn, clip::StorageType::F32) => clip.save_burn(output)?,
        (ExportLayout::Burn, clip::StorageType::F16) => clip.save_burn_half(output)?,
        (ExportLayout::Burn, clip::StorageType::BF16) => {
            return Err(CliError::Usage(
                "this library's format stores f32 or f16; bf16 is for --to open_clip or hf".into(),
            ))
        }
        (ExportLayout::OpenClip, storage) => clip.save_open_clip_as(output, storage)?,
        (ExportLayout::Hf, storage) => clip.save_hf(output, storage)?,
    }
    if matches!(to, ExportLayout::Hf)
        && clip.preprocess.crop_rounding != clip::data::CropRounding::Floor
    {
        eprintln!(
            "note: transformers' CLIPImageProcessor rounds its center crop down, this model's \
             preprocessing to nearest: crops of odd margins can be one pixel apart"
        );
    }
    eprintln!("wrote {} ({to:?}, {storage:?})", output.display());
    Ok(())
}

fn fashion_scenes<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    data: &Path,
    samples: usize,
) -> Result<(), CliError> {
    let clip = load_model::<B>(model, device)?;
    let test = clip_train::benchmark::FashionMnist::load(data, false)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let report = clip_train::evaluate(
        &clip.model,
        &clip.tokenizer,
        &test,
        samples,
        clip.threads,
        device,
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    println!("{}", json!(report));
    Ok(())
}

/// Data-parallel training across processes, as torchrun launches them: flags, or the environment
/// variables of the same names (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`).
#[derive(clap::Args, Debug)]
struct RankArgs {
    /// This process's rank, 0 to world size − 1 (env RANK). Rank 0 runs the coordinator.
    #[arg(long)]
    rank: Option<usize>,
    /// Processes training together (env WORLD_SIZE); each takes batch_size / world size pairs of
    /// every micro-batch.
    #[arg(long)]
    world_size: Option<usize>,
    /// Host of rank 0, where the coordinator listens (env MASTER_ADDR, default 127.0.0.1).
    #[arg(long)]
    master_addr: Option<String>,
    /// The coordinator's port (env MASTER_PORT, default 29500); rank r serves on MASTER_PORT + 1 + r.
    #[arg(long)]
    master_port: Option<u16>,
    /// The address the other ranks reach this one at (env CLIP_NODE_ADDR; default: this machine's
    /// address toward MASTER_ADDR).
    #[arg(long)]
    node_addr: Option<String>,
    /// Seconds to wait for the coordinator and for any one exchange before giving up and naming the
    /// ranks that stopped answering.
    #[arg(long, default_value_t = 120)]
    collective_timeout: u64,
}

impl RankArgs {
    /// The launch the flags and the environment describe; `None` for a single process.
    fn launch(&self) -> Result<Option<clip_distributed::Launch>, CliError> {
        let usage = |e: clip_distributed::DistributedError| CliError::Usage(e.to_string());
        let from_env = match clip_distributed::Launch::from_env() {
            Ok(launch) => launch,
            // the flags name this rank: what the environment lacks (RANK beside WORLD_SIZE) does not
            // matter, and MASTER_ADDR / MASTER_PORT are read below
            Err(_) if self.rank.is_some() && self.world_size.is_some() => None,
            Err(e) => return Err(usage(e)),
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let world_size = self.world_size.or(from_env.as_ref().map(|l| l.world_size));
        let Some(world_size) = world_size else {
            if self.rank.is_some() {
                return Err(CliError::Usage(
                    "--rank needs --world-size (or WORLD_SIZE)".into(),
                ));
            }
            return Ok(None);
        };
        let rank = self
            .rank
            .or(from_env.as_ref().map(|l| l.rank))
            .ok_or_else(|| CliError::Usage("--world-size needs --rank (or RANK)".into()))?;
        let launch = clip_distributed::Launch {
            rank,
            world_size,
            master_addr: self
                .master_addr
                .clone()
                .or(from_env.as_ref().map(|l| l.master_addr.clone()))
                .or_else(|| env("MASTER_ADDR"))
                .unwrap_or_else(|| "127.0.0.1".into()),
            master_port: match self
                .master_port
                .or(from_env.as_ref().map(|l| l.master_port))
            {
                Some(port) => port,
                None => match env("MASTER_PORT") {
                    Some(p) => p.parse().map_err(|_| {
                        CliError::Usage(format!("MASTER_PORT={p:?} is not a port number"))
                    })?,
                    None => 29500,
                },
            },
            node_host: self
                .node_addr
                .clone()
                .or(from_env.as_ref().and_then(|l| l.node_host.clone())),
            node_port: from_env.as_ref().and_then(|l| l.node_port),
            timeout: std::time::Duration::from_secs(self.collective_timeout.max(1)),
        };
        launch.validate().map_err(usage)?;
        Ok(Some(launch))
    }
}

/// One line for each tower of `c`.
fn towers(c: &clip::ClipConfig) -> (String, String) {
    let vision = match &c.vision {
        VisionConfig::Vit { image_size, patch_size, width, layers, heads, activation, .. } => format!(
            "ViT: {image_size}px, patch {patch_size}, width {width}, {layers} layers, {heads} heads, {activation:?}"
        ),
        VisionConfig::SiglipVit { image_size, patch_size, width, layers, heads, activation, naflex: false, .. } => format!(
            "SigLIP ViT (attention-pooled): {image_size}px, patch {patch_size}, width {width}, {layers} layers, {heads} heads, {activation:?}"
        ),
        VisionConfig::SiglipVit { image_size, patch_size, width, layers, heads, activation, naflex: true, .. } => format!(
            "SigLIP 2 NaFlex ViT (attention-pooled, any aspect ratio): {0}×{0} position grid, patch {patch_size}, width {width}, {layers} layers, {heads} heads, {activation:?}",
            image_size / patch_size
        ),
        VisionConfig::ModifiedResnet { image_size, layers, width, heads } => format!(
            "ModifiedResNet: {image_size}px, layers {layers:?}, width {width}, attention pool {heads} heads"
        ),
    };
    let t = &c.text;
    let mut text = format!(
        "Transformer: context {}, vocab {}, width {}, {} layers, {} heads, {:?}",
        t.context_length, t.vocab_size, t.width, t.layers, t.heads, t.activation
    );
    if let Some(hf) = &t.hf_tokenizer {
        text.push_str(&format!(
            ", tokenizer {} ({} cleaning",
            hf.name,
            hf.cleaning.name()
        ));
        text.push_str(if hf.strip_sep_token {
            ", separator stripped)"
        } else {
            ")"
        });
    }
    (vision, text)
}

/// One line on the tokenizer a loaded model reads its texts with.
fn describe_tokenizer(tokenizer: &clip::tokenizer::TextTokenizer) -> String {
    use clip::tokenizer::TextTokenizer;
    match tokenizer {
        TextTokenizer::Clip(_) => "CLIP BPE (built in)".into(),
        TextTokenizer::HuggingFace(t) => format!(
            "Hugging Face {} ({} tokens)",
            t.files()
                .first()
                .map_or_else(String::new, |f| f.display().to_string()),
            t.vocab_size()
        ),
        TextTokenizer::Missing { name, looked_in } => {
            format!("Hugging Face {name:?}: not found ({looked_in}; --tokenizer FILE gives it)")
        }
    }
}

/// `clip info --config NAME|FILE`: the architecture a config describes, or why it cannot run.
fn describe_config(config: &str, as_json: bool) -> Result<(), CliError> {
    if config == "table" {
        print!("{}", clip::supported_models_table());
        return Ok(());
    }
    if config == "list" {
        for name in clip::open_clip_config_names() {
            let status = match clip::ClipConfig::named(name) {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("refused: {e}"),
            };
            println!("{name}\t{status}");
        }
        return Ok(());
    }
    let path = Path::new(config);
    let (parsed, source) = if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| ClipError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|source| ClipError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let hf = json.get("text_config").is_some() || json.get("vision_config").is_some();
        let parsed = if hf {
            clip::ClipConfig::from_hf_json(&json)
        } else {
            clip::ClipConfig::from_open_clip_json(&json)
        }
        .map_err(|e| CliError::Usage(format!("{config}: {e}")))?;
        let kind = if hf {
            "transformers config.json"
        } else {
            "open_clip config"
        };
        (parsed, format!("{kind} {config}"))
    } else {
        (
            clip::ClipConfig::named(config)?,
            format!("bundled open_clip config {config}"),
        )
    };
    let (vision, text) = towers(&parsed);
    if as_json {
        println!("{}", json!({ "config_source": source, "config": parsed }));
    } else {
        println!("config from:   {source}");
        println!("embedding dim: {}", parsed.embed_dim);
        println!("image tower:   {vision}");
        println!("text tower:    {text}");
    }
    Ok(())
}

fn info<B: Backend>(
    device: &B::Device,
    model: Option<&Path>,
    as_json: bool,
) -> Result<(), CliError> {
    let clip = load_model::<B>(model, device)?;
    let c = &clip.config;
    let (vision, text) = towers(c);
    let layout = clip.layout.map(|l| l.name()).unwrap_or("burnpack");
    let source = format!("{:?}", clip.config_source);
    let p = &clip.preprocess;
    if as_json {
        let value = json!({
            "weights": clip.weights, "layout": layout, "config_source": source,
            "parameters": clip.parameter_count(), "config": c, "preprocess": p,
            "tokenizer": describe_tokenizer(&clip.tokenizer),
        });
        println!("{value}");
    } else {
        println!("weights:       {}", clip.weights.display());
        println!("layout:        {layout}");
        println!("config from:   {source}");
        println!("parameters:    {}", clip.parameter_count());
        println!("embedding dim: {}", c.embed_dim);
        println!("image tower:   {vision}");
        println!("text tower:    {text}");
        println!("tokenizer:     {}", describe_tokenizer(&clip.tokenizer));
        if let clip::data::ResizeMode::Patches {
            patch_size,
            max_patches,
        } = p.resize_mode
        {
            println!(
                "preprocessing: each image resized ({:?}) to its aspect ratio's grid of at most {max_patches} patches of {patch_size}px, no crop, mean {:?}, std {:?}",
                p.interpolation, p.mean, p.std
            );
        } else {
            println!(
                "preprocessing: resize {} ({:?}, {:?}) → crop {} ({:?} offset), mean {:?}, std {:?}",
                p.resize_size, p.resize_mode, p.interpolation, p.size, p.crop_rounding, p.mean, p.std
            );
        }
    }
    Ok(())
}

/// The labels of `--labels`: typed by hand, so a repeat is a slip and is refused (a labels file may
/// repeat one: classes are positions, as in a dataset's class list).
fn inline_labels(list: &str) -> Result<Vec<String>, CliError> {
    let labels: Vec<String> = list.split(',').map(|l| l.trim().to_string()).collect();
    let mut seen = std::collections::HashSet::new();
    match labels
        .iter()
        .find(|l| !l.is_empty() && !seen.insert(l.as_str()))
    {
        Some(label) => Err(CliError::Usage(format!(
            "label {label:?} appears twice in --labels"
        ))),
        None => Ok(labels),
    }
}
