//! `clip embed-dataset`: a dataset's embeddings in clip-retrieval's layout, in shards that separate
//! machines or array jobs write independently.
//!
//! Output (what autofaiss and the LAION tools read): `img_emb/img_emb_{s}.npy` (unit image embeddings,
//! f32 `[rows, dim]`), `text_emb/text_emb_{s}.npy` (when every item has a caption) and
//! `metadata/metadata_{s}.parquet` (`image_path`, `caption`, `width`, `height`), row for row. Items are
//! listed in sorted order and item `k` belongs to shard `k mod N`, so the assignment does not depend on
//! which machine runs what. Each shard's files are written under temporary names, renamed, then marked
//! done (`done/{s}.json`); a rerun skips done shards, and a shard killed half-way is redone whole.
//! `embed-dataset.json` records the model (its probe embeddings, as `clip index` does): another model's
//! output directory is refused.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use clip::data::captions::{index_shard, read_caption_file, ImageSource};
use clip::data::prefetch::PreparedBatch;
use clip::data::{normalize, resize_and_crop, PreprocessConfig};
use clip::Pretrained;
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::CliError;

/// One item of the dataset: where its image is, what the metadata calls it, its caption.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    image: ImageSource,
    name: String,
    caption: Option<String>,
}

/// Which share of the items this run writes: shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `i/N` from the flag, else a Slurm array task (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN`
    /// of `SLURM_ARRAY_TASK_COUNT`), else a Kubernetes indexed Job's `JOB_COMPLETION_INDEX` of
    /// `shards`. `None`: every shard, one after the other.
    pub fn choose(flag: Option<&str>, shards: usize) -> Result<Option<Shard>, CliError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |what: &str, value: &str| -> Result<usize, CliError> {
            value
                .trim()
                .parse()
                .map_err(|_| CliError::Usage(format!("{what} {value:?} is not a number")))
        };
        let shard = if let Some(text) = flag {
            let (i, n) = text.split_once('/').ok_or_else(|| {
                CliError::Usage(format!(
                    "--shard {text:?}: write it as INDEX/COUNT, e.g. 3/8"
                ))
            })?;
            Shard {
                index: number("--shard index", i)?,
                count: number("--shard count", n)?,
            }
        } else if let (Some(i), Some(n)) =
            (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT"))
        {
            // an array may start at another index than 0 (--array=1-8)
            let first = match var("SLURM_ARRAY_TASK_MIN") {
                Some(min) => number("SLURM_ARRAY_TASK_MIN", &min)?,
                None => 0,
            };
            Shard {
                index: number("SLURM_ARRAY_TASK_ID", &i)?.saturating_sub(first),
                count: number("SLURM_ARRAY_TASK_COUNT", &n)?,
            }
        } else if let Some(i) = var("JOB_COMPLETION_INDEX") {
            Shard {
                index: number("JOB_COMPLETION_INDEX", &i)?,
                count: shards,
            }
        } else {
            return Ok(None);
        };
        if shard.count == 0 || shard.index >= shard.count {
            return Err(CliError::Usage(format!(
                "shard {} of {} is out of range (shards are 0 to count − 1)",
                shard.index, shard.count
            )));
        }
        Ok(Some(shard))
    }
}

const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// The items of `input`, sorted: a folder (images at any depth, each captioned by the `.txt` of the
/// same stem when there is one), a webdataset `.tar` shard, or a captions `.csv` / `.jsonl`.
pub(crate) fn list_items(input: &Path) -> Result<Vec<Item>, CliError> {
    let data = |e: clip::data::captions::DatasetError| CliError::Usage(e.to_string());
    if input.is_dir() {
        let mut files = Vec::new();
        walk(input, &mut files)?;
        files.sort();
        let items = files
            .into_iter()
            .map(|path| {
                let caption = std::fs::read_to_string(path.with_extension("txt"))
                    .ok()
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty());
                let name = path
                    .strip_prefix(input)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                Item {
                    image: ImageSource::File(path),
                    name,
                    caption,
                }
            })
            .collect();
        return Ok(items);
    }
    let extension = input
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let pairs = if extension == "tar" {
        index_shard(input, false).map_err(data)?.0
    } else if !input.exists() {
        return Err(CliError::Usage(format!(
            "{}: no such file or folder",
            input.display()
        )));
    } else {
        read_caption_file(input).map_err(data)?
    };
    Ok(pairs
        .into_iter()
        .map(|pair| {
            let name = match &pair.image {
                ImageSource::File(path) => path.to_string_lossy().into_owned(),
                ImageSource::Member { name, .. } => name.clone(),
            };
            Item {
                image: pair.image,
                name,
                caption: Some(pair.caption),
            }
        })
        .collect())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CliError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| {
            IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())
        }) {
            files.push(path);
        }
    }
    Ok(())
}

/// A `.npy` file of f32 rows written as they come; the row count goes into the header at the end
/// (the header is padded to a fixed 128 bytes so that it can be rewritten in place).
struct NpyWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    dim: usize,
    rows: usize,
}

impl NpyWriter {
    const HEADER: usize = 128;

    fn create(path: &Path, dim: usize) -> Result<Self, CliError> {
        let file = std::fs::File::create(path).map_err(|source| CliError::Write {
            path: path.display().to_string(),
            source,
        })?;
        let mut writer = Self {
            file: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
            dim,
            rows: 0,
        };
        writer.header()?;
        Ok(writer)
    }

    fn failed(&self, source: std::io::Error) -> CliError {
        CliError::Write {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// NPY 1.0: magic, version, header length, then the dict padded with spaces to `HEADER` bytes.
    fn header(&mut self) -> Result<(), CliError> {
        let dict = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
            self.rows, self.dim
        );
        let mut header = Vec::with_capacity(Self::HEADER);
        header.extend_from_slice(b"\x93NUMPY\x01\x00");
        header.extend_from_slice(&((Self::HEADER - 10) as u16).to_le_bytes());
        header.extend_from_slice(dict.as_bytes());
        header.resize(Self::HEADER - 1, b' ');
        header.push(b'\n');
        self.file.write_all(&header).map_err(|e| self.failed(e))
    }

    fn push(&mut self, rows: &[f32]) -> Result<(), CliError> {
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.file.write_all(&bytes).map_err(|e| self.failed(e))?;
        self.rows += rows.len() / self.dim;
        Ok(())
    }

    fn finish(mut self) -> Result<(), CliError> {
        self.file.flush().map_err(|e| self.failed(e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| self.failed(e))?;
        self.header()?;
        self.file.flush().map_err(|e| self.failed(e))?;
        self.file.get_ref().sync_all().map_err(|e| self.failed(e))
    }
}

/// One metadata row.
struct Row {
    name: String,
    caption: Option<String>,
    width: i32,
    height: i32,
}

/// `metadata_{s}.parquet`: `image_path`, `caption` (null without one), `width`, `height`, one row
/// group.
fn write_parquet(path: &Path, rows: &[Row]) -> Result<(), CliError> {
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let failed = |e: parquet::errors::ParquetError| CliError::Write {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let schema = parse_message_type(
        "message schema {
            REQUIRED BYTE_ARRAY image_path (UTF8);
            OPTIONAL BYTE_ARRAY caption (UTF8);
            REQUIRED INT32 width;
            REQUIRED INT32 height;
        }",
    )
    .map_err(failed)?;
    let file = std::fs::File::create(path).map_err(|source| CliError::Write {
        path: path.display().to_string(),
        source,
    })?;
    let properties = Arc::new(WriterProperties::builder().build());
    let mut writer =
        SerializedFileWriter::new(file, Arc::new(schema), properties).map_err(failed)?;
    let mut group = writer.next_row_group().map_err(failed)?;
    let mut column = 0;
    while let Some(mut writer) = group.next_column().map_err(failed)? {
        match (column, writer.untyped()) {
            (0, ColumnWriter::ByteArrayColumnWriter(w)) => {
                let values: Vec<ByteArray> = rows.iter().map(|r| r.name.as_str().into()).collect();
                w.write_batch(&values, None, None).map_err(failed)?;
            }
            (1, ColumnWriter::ByteArrayColumnWriter(w)) => {
                let values: Vec<ByteArray> = rows
                    .iter()
                    .filter_map(|r| r.caption.as_deref().map(ByteArray::from))
                    .collect();
                let defined: Vec<i16> = rows
                    .iter()
                    .map(|r| i16::from(r.caption.is_some()))
                    .collect();
                w.write_batch(&values, Some(&defined), None)
                    .map_err(failed)?;
            }
            (2 | 3, ColumnWriter::Int32ColumnWriter(w)) => {
                let values: Vec<i32> = rows
                    .iter()
                    .map(|r| if column == 2 { r.width } else { r.height })
                    .collect();
                w.write_batch(&values, None, None).map_err(failed)?;
            }
            _ => {
                return Err(CliError::Usage(
                    "internal: unexpected parquet column".into(),
                ))
            }
        }
        writer.close().map_err(failed)?;
        column += 1;
    }
    group.close().map_err(failed)?;
    let file = writer.into_inner().map_err(failed)?;
    file.sync_all().map_err(|source| CliError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// What decoding one batch gives: the batch for the model, the original sizes of the decoded
/// items, and why the others failed (item position in the batch, message).
type Decoded = (PreparedBatch, Vec<(u32, u32)>, Vec<(usize, String)>);

/// One decoded item: its original (width, height), the (height, width) the model sees, the pixels.
type Pixels = ((u32, u32), (usize, usize), Vec<f32>);

/// Decodes and preprocesses `items` on the rayon pool.
fn decode(items: &[Item], preprocess: &PreprocessConfig) -> Decoded {
    let results: Vec<Result<Pixels, String>> = items
        .par_iter()
        .map(|item| {
            let image = item.image.decode().map_err(|e| e.to_string())?;
            let resized = resize_and_crop(&image, preprocess);
            let shape = (resized.height() as usize, resized.width() as usize);
            Ok((image.dimensions(), shape, normalize(&resized, preprocess)))
        })
        .collect();
    let mut batch = PreparedBatch {
        pixels: Vec::new(),
        decoded: Vec::new(),
        failed: Vec::new(),
        shapes: Vec::new(),
    };
    let (mut sizes, mut failed) = (Vec::new(), Vec::new());
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok((size, shape, pixels)) => {
                batch.pixels.extend(pixels);
                batch.shapes.push(shape);
                batch.decoded.push(i);
                sizes.push(size);
            }
            Err(why) => failed.push((i, why)),
        }
    }
    (batch, sizes, failed)
}

/// Embeddings as unit rows, flattened on the host (clip-retrieval stores normalized embeddings).
fn unit_rows<B: Backend>(embeds: burn::tensor::Tensor<B, 2>) -> Result<Vec<f32>, CliError> {
    clip::heads::l2_normalize(embeds)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| CliError::Usage(format!("embeddings: {e:?}")))
}

/// The zero-padded shard number, as clip-retrieval names its partitions (`int(log10(N)) + 1`
/// digits: the digits of N).
fn shard_name(index: usize, count: usize) -> String {
    let width = count.max(1).to_string().len();
    format!("{index:0width$}")
}

/// Embeds `items` (the whole sorted listing) for the shards `shards` of `count` into `output`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<B: Backend>(
    device: &B::Device,
    clip: &Pretrained<B>,
    model_name: &str,
    input: &Path,
    items: &[Item],
    output: &Path,
    shards: &[usize],
    count: usize,
    batch_size: usize,
) -> Result<Value, CliError> {
    for dir in ["img_emb", "text_emb", "metadata", "done"] {
        let path = output.join(dir);
        std::fs::create_dir_all(&path).map_err(|source| CliError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    // the model the directory holds embeddings of, recorded by the first run
    let info = clip_search::model_info(clip, model_name, device)?;
    let record = output.join("embed-dataset.json");
    match std::fs::read_to_string(&record) {
        Ok(text) => {
            let existing: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", record.display())))?;
            let theirs: clip_search::ModelInfo = serde_json::from_value(existing["model"].clone())
                .map_err(|e| CliError::Usage(format!("{}: {e}", record.display())))?;
            if !theirs.matches(&info) || existing["shards"] != json!(count) {
                return Err(CliError::Usage(format!(
                    "{} holds embeddings of {} in {} shards; this run is {} in {count} shards: \
                     use another --output",
                    output.display(),
                    theirs.describe(),
                    existing["shards"],
                    info.describe()
                )));
            }
            // item k's shard is k mod N of this listing: another listing would mix datasets
            if existing["input"] != json!(input) || existing["items"] != json!(items.len()) {
                return Err(CliError::Usage(format!(
                    "{} holds shards of {} ({} items); this run lists {} ({} items): finish it \
                     with the same input, or use another --output",
                    output.display(),
                    existing["input"],
                    existing["items"],
                    input.display(),
                    items.len()
                )));
            }
        }
        Err(_) => {
            remove_stale_temporaries(&record);
            let record_json =
                json!({"model": info, "shards": count, "input": input, "items": items.len()});
            let text = serde_json::to_string_pretty(&record_json).unwrap_or_default();
            clip::weights::write_atomic(&record, text.as_bytes())?;
        }
    }
    let with_text = items.iter().all(|i| i.caption.is_some());
    let mut summary = Vec::new();
    for &shard in shards {
        let name = shard_name(shard, count);
        let done = output.join("done").join(format!("{name}.json"));
        if done.is_file() {
            summary.push(json!({"shard": shard, "skipped": "already done"}));
            continue;
        }
        // a marker whose writing was interrupted: the shard is redone, its marker written anew
        remove_stale_temporaries(&done);
        let mine: Vec<Item> = items.iter().skip(shard).step_by(count).cloned().collect();
        let report = embed_shard(
            device, clip, &mine, output, &name, with_text, batch_size, shard, count,
        )?;
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        clip::weights::write_atomic(&done, text.as_bytes())?;
        summary.push(report);
    }
    Ok(json!({"output": output, "items": items.len(), "shards": count, "written": summary}))
}

/// Removes the temporary files an interrupted run left for `path` (`.NAME.tmp-PID`).
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn embed_shard<B: Backend>(
    device: &B::Device,
    clip: &Pretrained<B>,
    items: &[Item],
    output: &Path,
    name: &str,
    with_text: bool,
    batch_size: usize,
    shard: usize,
    count: usize,
) -> Result<Value, CliError> {
    let final_paths = [
        output.join("img_emb").join(format!("img_emb_{name}.npy")),
        output.join("text_emb").join(format!("text_emb_{name}.npy")),
        output
            .join("metadata")
            .join(format!("metadata_{name}.parquet")),
    ];
    // `.NAME.tmp-PID`: another process never shares them; a killed run's are removed here, since the
    // shard is redone whole
    let temporary = clip::durable::temp_path;
    for path in &final_paths {
        remove_stale_temporaries(path);
    }
    let dim = clip.config.embed_dim;
    let mut images = NpyWriter::create(&temporary(&final_paths[0]), dim)?;
    let mut texts = if with_text {
        Some(NpyWriter::create(&temporary(&final_paths[1]), dim)?)
    } else {
        None
    };
    let mut rows = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    let bar = crate::progress(items.len(), &format!("shard {shard}/{count}"));
    // batches are decoded on the rayon pool one ahead of the model
    let (sender, batches) = sync_channel::<(usize, Decoded)>(1);
    let preprocess = clip.preprocess.clone();
    let owned: Vec<Item> = items.to_vec();
    let size = batch_size.max(1);
    let mut handled_total = 0;
    let producer = std::thread::spawn(move || {
        for (b, chunk) in owned.chunks(size).enumerate() {
            if sender.send((b * size, decode(chunk, &preprocess))).is_err() {
                return;
            }
        }
    });
    for (start, (batch, sizes, failed)) in batches {
        let handled = batch.decoded.len() + failed.len();
        handled_total += handled;
        for (i, why) in failed {
            skipped.push(json!({"item": items[start + i].name, "error": why}));
        }
        if let Some(embeds) = clip.embed_prepared(&batch, device) {
            images.push(&unit_rows(embeds)?)?;
            let kept: Vec<&Item> = batch.decoded.iter().map(|&i| &items[start + i]).collect();
            if let Some(texts) = texts.as_mut() {
                let captions: Vec<&str> =
                    kept.iter().filter_map(|i| i.caption.as_deref()).collect();
                texts.push(&unit_rows(clip.embed_texts(&captions, device)?)?)?;
            }
            for (item, (width, height)) in kept.into_iter().zip(sizes) {
                rows.push(Row {
                    name: item.name.clone(),
                    caption: item.caption.clone(),
                    width: width as i32,
                    height: height as i32,
                });
            }
        }
        bar.inc(handled as u64);
    }
    bar.finish_and_clear();
    // a decoder that died leaves the shard short: nothing is renamed or marked done
    if producer.join().is_err() || handled_total != items.len() {
        return Err(CliError::Usage(format!(
            "shard {shard}: only {handled_total} of {} items were read (the decoder stopped); rerun \
             to redo the shard",
            items.len()
        )));
    }
    images.finish()?;
    if let Some(texts) = texts {
        texts.finish()?;
    }
    write_parquet(&temporary(&final_paths[2]), &rows)?;
    // the renames commit the shard; the done marker (written by the caller) comes after them
    for (i, path) in final_paths.iter().enumerate() {
        let from = temporary(path);
        // only the text embeddings may be absent (items without captions)
        if i != 1 || from.exists() {
            clip::durable::commit_file(&from, path).map_err(|source| CliError::Write {
                path: path.display().to_string(),
                source,
            })?;
        }
    }
    Ok(json!({"shard": shard, "rows": rows.len(), "skipped": skipped, "text": with_text}))
}
