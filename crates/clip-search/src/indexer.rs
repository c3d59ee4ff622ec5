//! `clip index`: bring an index up to date with folders, decoding only what is new.
//!
//! A run scans the folders, then sorts every image file into: unchanged (same modification time and
//! size as stored: not read at all), or to be hashed. A hashed file whose content the index already
//! holds — the same file touched, renamed or copied — reuses the stored vector; the rest are decoded
//! on a pool of threads ahead of the model ([`clip::data::prefetch`]) and stored batch by batch, one
//! transaction each, so a killed run loses at most the batch in flight and the next run goes on from
//! there. Files under the folders that are gone are marked deleted.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use clip::data::prefetch::{prefetch, PrefetchOptions};
use clip::Pretrained;
use rayon::prelude::*;
use serde::Serialize;

use crate::exact::normalize;
use crate::scan::{content_hash, scan, FileEntry, ScanOptions};
use crate::store::{path_bytes, path_from_bytes, Change, Content, Counts, Index, ModelInfo};
use crate::SearchError;

/// How [`index_folders`] runs.
#[derive(Clone, Debug)]
pub struct IndexOptions {
    /// What to walk into.
    pub scan: ScanOptions,
    /// Images per forward pass (and per committed transaction).
    pub batch_size: usize,
    /// Decoding threads (default: one per core).
    pub workers: usize,
    /// Forget every stored vector first (another model, or a fresh start).
    pub reindex: bool,
    /// Remove the rows of deleted files at the end.
    pub purge: bool,
    /// Build (or update) the approximate index whatever the collection's size (`ann` feature); it
    /// is built on its own from [`ANN_THRESHOLD`] searchable images,
    /// and kept up to date once it exists.
    pub ann: bool,
}

/// Searchable images from which a run builds the approximate index on its own.
pub const ANN_THRESHOLD: u64 = 1_000_000;

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            scan: ScanOptions::default(),
            batch_size: 32,
            workers: PrefetchOptions::default().workers,
            reindex: false,
            purge: false,
            ann: false,
        }
    }
}

/// Where a run is, for a progress display.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    /// The folders were walked: this many image files.
    Scanned(usize),
    /// Content hashes of new or changed files: `done` of `total`.
    Hashing {
        /// Hashed so far.
        done: usize,
        /// To hash.
        total: usize,
    },
    /// Adding vectors to the approximate index: `done` of `total`.
    Ann {
        /// Added so far.
        done: usize,
        /// To add.
        total: usize,
    },
    /// Decoding and embedding: `done` files of `total` (`failed` of them unreadable), committed.
    Embedding {
        /// Files stored so far.
        done: usize,
        /// Files to embed in this run.
        total: usize,
        /// Of `done`, the files that could not be decoded.
        failed: usize,
    },
}

/// What a run did, counted per file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndexReport {
    /// Image files found under the folders.
    pub scanned: usize,
    /// Same time and size as stored: not read.
    pub unchanged: usize,
    /// New time, same content (hash): vector kept.
    pub touched: usize,
    /// Deleted earlier, back now with the same time and size: vector kept.
    pub restored: usize,
    /// New names of stored content (renamed or copied): vector reused, not decoded.
    pub reused: usize,
    /// Decoded and embedded.
    pub embedded: usize,
    /// New or changed files that could not be decoded, and why (stored, not retried until they change).
    pub failed: Vec<(PathBuf, String)>,
    /// Unreadable files from earlier runs, unchanged (not retried).
    pub known_unreadable: usize,
    /// Folders or files the scan could not read.
    pub scan_errors: Vec<(PathBuf, String)>,
    /// Files gone from the folders, now marked deleted.
    pub deleted: usize,
    /// Rows of deleted files removed (`purge`).
    pub purged: usize,
    /// What the run did to the approximate index, when there is one.
    #[cfg(feature = "ann")]
    pub ann: Option<crate::ann::AnnReport>,
    /// Seconds the run took.
    pub seconds: f64,
    /// The index's rows after the run.
    pub counts: Counts,
}

/// The model as an index records it: `name`, dimension, preprocessing and its embeddings of a fixed
/// probe image and text (see [`ModelInfo`]).
pub fn model_info<B: Backend>(
    clip: &Pretrained<B>,
    name: &str,
    device: &B::Device,
) -> Result<ModelInfo, SearchError> {
    let size = clip.preprocess.size;
    // smooth stripes in every channel: the same input on any machine
    let pixels: Vec<f32> = (0..3 * size * size)
        .map(|i| {
            let (c, y, x) = (i / (size * size), (i / size) % size, i % size);
            (0.07 * x as f32 + 0.11 * y as f32 + 1.3 * c as f32).sin() * 1.5
        })
        .collect();
    let image = Tensor::<B, 4>::from_data(TensorData::new(pixels, [1, 3, size, size]), device);
    let probe_image = first_row(clip.embed_pixels(image))?;
    let probe_text = first_row(clip.embed_texts(&["a photo of a red bag on a beach"], device)?)?;
    Ok(ModelInfo {
        name: name.to_string(),
        dim: clip.config.embed_dim,
        preprocess: serde_json::to_value(&clip.preprocess).unwrap_or_default(),
        probe_image,
        probe_text,
    })
}

/// Unit-length rows of an `[n, d]` embedding tensor.
pub fn unit_rows<B: Backend>(t: Tensor<B, 2>) -> Result<Vec<Vec<f32>>, SearchError> {
    let [_, d] = t.dims();
    let values = t
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| clip::ClipError::Input(format!("reading embeddings: {e:?}")))?;
    Ok(values
        .chunks(d.max(1))
        .map(|row| normalize(row.to_vec()))
        .collect())
}

fn first_row<B: Backend>(t: Tensor<B, 2>) -> Result<Vec<f32>, SearchError> {
    unit_rows(t)?
        .into_iter()
        .next()
        .ok_or_else(|| clip::ClipError::Input("the model returned no embedding".into()).into())
}

/// A file to decode, and the other new files with the same content (stored with its result).
struct Pending {
    entry: FileEntry,
    hash: Vec<u8>,
    copies: Vec<FileEntry>,
}

/// Brings `index` up to date with the image files under `roots`, embedding with `clip` (whose
/// [`model_info`] is `model`). Takes the index's write lock for the run.
pub fn index_folders<B: Backend>(
    index: &mut Index,
    clip: &Pretrained<B>,
    model: &ModelInfo,
    roots: &[PathBuf],
    options: &IndexOptions,
    device: &B::Device,
    mut progress: impl FnMut(Progress),
) -> Result<IndexReport, SearchError> {
    let start = Instant::now();
    index.lock()?;
    if options.reindex {
        index.reset(model)?;
    } else {
        index.adopt_model(model)?;
    }
    let found = scan(roots, &options.scan)?;
    progress(Progress::Scanned(found.files.len()));
    let mut report = IndexReport {
        scanned: found.files.len(),
        scan_errors: found.unreadable,
        ..IndexReport::default()
    };
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|r| std::path::absolute(r).unwrap_or_else(|_| r.clone()))
        .collect();

    // 1. What changed, from times and sizes alone.
    let rows = index.rows()?;
    let mut changes = Vec::new();
    let mut to_hash = Vec::new();
    let mut present = HashSet::new();
    for file in found.files {
        let key = path_bytes(&file.path);
        match rows.get(&key) {
            Some(row) if row.mtime_ns == file.mtime_ns && row.size == file.size => {
                if row.deleted {
                    changes.push(Change::Touch {
                        id: row.id,
                        mtime_ns: file.mtime_ns,
                    });
                    report.restored += 1;
                } else if row.error.is_some() {
                    report.known_unreadable += 1;
                } else {
                    report.unchanged += 1;
                }
            }
            row => to_hash.push((file, row.cloned())),
        }
        present.insert(key);
    }
    for (key, row) in &rows {
        if !row.deleted && !present.contains(key) && is_under(&path_from_bytes(key), &roots) {
            changes.push(Change::Delete { id: row.id });
            report.deleted += 1;
        }
    }

    // 2. Content hashes of new and changed files, in parallel (reads at most 1 MiB + 1 KiB each).
    let total = to_hash.len();
    progress(Progress::Hashing { done: 0, total });
    let hashed: Vec<_> = to_hash
        .into_par_iter()
        .map(|(file, row)| {
            let hash = content_hash(&file.path, file.size);
            (file, row, hash)
        })
        .collect();
    progress(Progress::Hashing { done: total, total });

    // 3. Same content as a stored row: keep or reuse its vector; otherwise decode (once per content).
    let mut pending: Vec<Pending> = Vec::new();
    let mut pending_by_hash: HashMap<Vec<u8>, usize> = HashMap::new();
    for (file, row, hash) in hashed {
        let hash = match hash {
            Ok(hash) => hash,
            Err(e) => {
                let error = format!("cannot read: {e}");
                report.failed.push((file.path.clone(), error.clone()));
                changes.push(store(&file, Vec::new(), Content::Error(error)));
                continue;
            }
        };
        if let Some(row) = row.filter(|r| r.hash == hash && r.size == file.size) {
            changes.push(Change::Touch {
                id: row.id,
                mtime_ns: file.mtime_ns,
            });
            report.touched += 1;
        } else if let Some(content) = index.by_hash(&hash, file.size)? {
            if let Content::Error(e) = &content {
                report.failed.push((file.path.clone(), e.clone()));
            } else {
                report.reused += 1;
            }
            changes.push(store(&file, hash, content));
        } else if let Some(&i) = pending_by_hash.get(&hash) {
            pending[i].copies.push(file);
        } else {
            pending_by_hash.insert(hash.clone(), pending.len());
            pending.push(Pending {
                entry: file,
                hash,
                copies: Vec::new(),
            });
        }
    }
    index.apply(&changes)?;

    // 4. Decode ahead on a pool, embed, commit each batch.
    let total: usize = pending.iter().map(|p| 1 + p.copies.len()).sum();
    progress(Progress::Embedding {
        done: 0,
        total,
        failed: 0,
    });
    let files: Vec<PathBuf> = pending.iter().map(|p| p.entry.path.clone()).collect();
    let prefetch_options = PrefetchOptions {
        batch_size: options.batch_size.max(1),
        workers: options.workers.max(1),
        depth: 2,
    };
    let mut done = 0;
    for batch in prefetch(files, clip.preprocess.clone(), prefetch_options) {
        let mut results: Vec<(usize, Content)> = batch
            .failed
            .iter()
            .map(|(i, e)| (*i, Content::Error(e.to_string())))
            .collect();
        if let Some(embeds) = clip.embed_prepared(&batch, device) {
            let vectors = unit_rows(embeds)?;
            results.extend(
                batch
                    .decoded
                    .iter()
                    .zip(vectors)
                    .map(|(&i, v)| (i, Content::Vector(v))),
            );
        }
        let mut changes = Vec::new();
        for (i, content) in results {
            let item = &pending[i];
            for file in std::iter::once(&item.entry).chain(&item.copies) {
                match &content {
                    Content::Error(e) => report.failed.push((file.path.clone(), e.clone())),
                    Content::Vector(_) => report.embedded += 1,
                }
                changes.push(store(file, item.hash.clone(), content.clone()));
            }
        }
        index.apply(&changes)?;
        done += changes.len();
        progress(Progress::Embedding {
            done,
            total,
            failed: report.failed.len(),
        });
    }

    let searchable = index.counts()?.searchable;
    #[cfg(feature = "ann")]
    if options.ann || searchable >= ANN_THRESHOLD || crate::ann::ann_path(index.path()).exists() {
        report.ann = Some(crate::ann::sync(index, model.dim, &mut |done, total| {
            progress(Progress::Ann { done, total })
        })?);
    }
    #[cfg(not(feature = "ann"))]
    if options.ann {
        return Err(SearchError::Unsupported("approximate index", "ann"));
    }
    let _ = searchable;
    if options.purge {
        report.purged = index.purge()?;
    }
    report.counts = index.counts()?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn store(file: &FileEntry, hash: Vec<u8>, content: Content) -> Change {
    Change::Store {
        path: file.path.clone(),
        mtime_ns: file.mtime_ns,
        size: file.size,
        hash,
        content,
    }
}

/// Whether `path` is under one of `roots` (both absolute).
fn is_under(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}
