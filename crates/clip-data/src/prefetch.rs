//! Image files decoded and preprocessed on a pool of CPU threads ahead of the model, batch by batch,
//! so that a GPU encoding one batch does not wait for the next to be decoded.
//!
//! A producer thread walks the files in batches; each batch is decoded and preprocessed in parallel
//! on a `workers`-thread pool, then queued. At most `depth` finished batches wait in the queue, so
//! memory stays bounded whatever the number of files. Batches come out in order; a file that cannot be
//! read or decoded is reported in its batch and does not stop the others.
//!
//! ```no_run
//! use clip_data::prefetch::{prefetch, PrefetchOptions};
//! use clip_data::PreprocessConfig;
//!
//! let files = vec!["a.jpg".into(), "b.png".into()];
//! for batch in prefetch(files, PreprocessConfig::clip(224), PrefetchOptions::default()) {
//!     for (index, error) in &batch.failed {
//!         eprintln!("skipped file {index}: {error}");
//!     }
//!     // batch.pixels: [batch.len(), 3, 224, 224], ready for `batch.groups::<B>(&device)`
//! }
//! ```

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use crate::{load_rgb, normalize, resize_and_crop, ImageError, PreprocessConfig};

/// How [`prefetch`] batches and parallelizes.
#[derive(Clone, Copy, Debug)]
pub struct PrefetchOptions {
    /// Files per batch (at least 1).
    pub batch_size: usize,
    /// Decoding threads (at least 1); default: one per core.
    pub workers: usize,
    /// Finished batches allowed to wait for the consumer (at least 1).
    pub depth: usize,
}

impl Default for PrefetchOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            depth: 2,
        }
    }
}

/// One batch of files, decoded and preprocessed.
#[derive(Debug)]
pub struct PreparedBatch {
    /// The normalized `[3, height, width]` pixels of the files that decoded, in file order, one after
    /// the other; each image's shape is in `shapes`.
    pub pixels: Vec<f32>,
    /// Positions, in the list given to [`prefetch`], of the files whose pixels are in `pixels`.
    pub decoded: Vec<usize>,
    /// The batch's files that could not be read or decoded (position and error).
    pub failed: Vec<(usize, ImageError)>,
    /// `(height, width)` of each image in `pixels`: all the square `size` of the preprocessing,
    /// except with [`ResizeMode::Patches`](crate::ResizeMode::Patches), where each image keeps its
    /// aspect ratio.
    pub shapes: Vec<(usize, usize)>,
}

impl PreparedBatch {
    /// An empty batch.
    fn new() -> Self {
        Self {
            pixels: Vec::new(),
            decoded: Vec::new(),
            failed: Vec::new(),
            shapes: Vec::new(),
        }
    }

    /// Already decoded images preprocessed with `config`, numbered from 0.
    pub fn from_images(images: &[RgbImage], config: &PreprocessConfig) -> Self {
        let mut batch = Self::new();
        for (i, image) in images.iter().enumerate() {
            batch.push(i, &resize_and_crop(image, config), config);
        }
        batch
    }

    /// Appends one resized image, the file at position `index`.
    fn push(&mut self, index: usize, image: &RgbImage, config: &PreprocessConfig) {
        self.push_normalized(index, prepared(image, config));
    }

    /// Appends one image's [`prepared`] pixels, the file at position `index`.
    fn push_normalized(&mut self, index: usize, (shape, pixels): Prepared) {
        self.pixels.extend(pixels);
        self.shapes.push(shape);
        self.decoded.push(index);
    }

    /// Images in `pixels`.
    pub fn len(&self) -> usize {
        self.decoded.len()
    }

    /// Whether no file of the batch decoded.
    pub fn is_empty(&self) -> bool {
        self.decoded.is_empty()
    }

    /// The pixels as `[n, 3, height, width]` tensors on `device`, one per image shape, in the order
    /// each shape first occurs, each with the rows (positions in `decoded`) of its images. A square
    /// preprocessing gives one group of every image; none when no file decoded.
    pub fn groups<B: Backend>(&self, device: &B::Device) -> Vec<(Vec<usize>, Tensor<B, 4>)> {
        let mut shapes: Vec<((usize, usize), Vec<usize>)> = Vec::new();
        for (row, shape) in self.shapes.iter().enumerate() {
            match shapes.iter_mut().find(|(s, _)| s == shape) {
                Some((_, rows)) => rows.push(row),
                None => shapes.push((*shape, vec![row])),
            }
        }
        let mut starts = Vec::with_capacity(self.shapes.len());
        let mut at = 0;
        for (h, w) in &self.shapes {
            starts.push(at);
            at += 3 * h * w;
        }
        shapes
            .into_iter()
            .map(|((h, w), rows)| {
                let len = 3 * h * w;
                let mut values = Vec::with_capacity(rows.len() * len);
                for &row in &rows {
                    values.extend_from_slice(&self.pixels[starts[row]..starts[row] + len]);
                }
                let shape = [rows.len(), 3, h, w];
                (
                    rows,
                    Tensor::from_data(TensorData::new(values, shape), device),
                )
            })
            .collect()
    }
}

/// The batches of [`prefetch`], in order. Dropping it stops the producer after the batch in hand.
pub struct Prefetch {
    batches: Option<Receiver<PreparedBatch>>,
    producer: Option<JoinHandle<()>>,
}

impl Iterator for Prefetch {
    type Item = PreparedBatch;

    fn next(&mut self) -> Option<PreparedBatch> {
        match self.batches.as_ref()?.recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                // the producer is done; if it died, its panic goes on here rather than the batches
                // silently ending early
                self.batches.take();
                if let Some(Err(panic)) = self.producer.take().map(JoinHandle::join) {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // closing the queue makes the producer's next send fail, and it returns
        self.batches.take();
        if let Some(producer) = self.producer.take() {
            let _ = producer.join();
        }
    }
}

/// Starts decoding and preprocessing `paths` with `preprocess`, `options.batch_size` at a time, on
/// `options.workers` threads, ahead of the consumer by at most `options.depth` batches.
pub fn prefetch(
    paths: Vec<PathBuf>,
    preprocess: PreprocessConfig,
    options: PrefetchOptions,
) -> Prefetch {
    let (sender, batches) = sync_channel(options.depth.max(1));
    let batch_size = options.batch_size.max(1);
    let workers = options.workers.max(1);
    let producer = std::thread::spawn(move || {
        // without a pool (the OS refused threads) each batch is decoded on this thread
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("clip-decode-{i}"))
            .build()
            .ok();
        for (b, chunk) in paths.chunks(batch_size).enumerate() {
            let start = b * batch_size;
            let prepare = |path: &PathBuf| prepare_file(path, &preprocess);
            let results: Vec<Result<Prepared, ImageError>> = match &pool {
                Some(pool) => pool.install(|| chunk.par_iter().map(prepare).collect()),
                None => chunk.iter().map(prepare).collect(),
            };
            let mut batch = PreparedBatch::new();
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(image) => batch.push_normalized(start + i, image),
                    Err(e) => batch.failed.push((start + i, e)),
                }
            }
            if sender.send(batch).is_err() {
                return; // the consumer stopped
            }
        }
    });
    Prefetch {
        batches: Some(batches),
        producer: Some(producer),
    }
}

/// An image's `(height, width)` and its normalized pixels.
type Prepared = ((usize, usize), Vec<f32>);

/// A resized image's shape and normalized pixels.
fn prepared(image: &RgbImage, config: &PreprocessConfig) -> Prepared {
    let shape = (image.height() as usize, image.width() as usize);
    (shape, normalize(image, config))
}

/// One file decoded and preprocessed. A decoder that panics on a file (a bug in it, not in the file's
/// handling here) is reported as that file's decode error, so one file cannot end the whole run.
fn prepare_file(path: &PathBuf, preprocess: &PreprocessConfig) -> Result<Prepared, ImageError> {
    let run = || -> Result<Prepared, ImageError> {
        let image = load_rgb(path)?;
        Ok(prepared(&resize_and_crop(&image, preprocess), preprocess))
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the decoder panicked".into());
        Err(ImageError::Decode {
            path: path.clone(),
            message,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/images")
            .join(name)
    }

    #[test]
    fn batches_in_order_with_failures_reported() {
        let names = [
            "chelsea.jpg",
            "not_an_image.jpg",
            "coffee.png",
            "rocket.jpg",
            "missing.png",
        ];
        let paths: Vec<PathBuf> = names.iter().map(|n| fixture(n)).collect();
        let config = PreprocessConfig::clip(32);
        let options = PrefetchOptions {
            batch_size: 2,
            workers: 3,
            depth: 1,
        };
        let batches: Vec<PreparedBatch> =
            prefetch(paths.clone(), config.clone(), options).collect();
        assert_eq!(batches.len(), 3);
        let decoded: Vec<usize> = batches.iter().flat_map(|b| b.decoded.clone()).collect();
        assert_eq!(decoded, [0, 2, 3]);
        let failed: Vec<usize> = batches
            .iter()
            .flat_map(|b| b.failed.iter().map(|f| f.0))
            .collect();
        assert_eq!(failed, [1, 4]);
        // the same numbers as decoding one file at a time
        for (b, batch) in batches.iter().enumerate() {
            for (row, &i) in batch.decoded.iter().enumerate() {
                let one = normalize(
                    &resize_and_crop(&load_rgb(&paths[i]).unwrap(), &config),
                    &config,
                );
                let n = one.len();
                assert_eq!(
                    batch.pixels[row * n..(row + 1) * n],
                    one[..],
                    "batch {b}, file {i}"
                );
            }
        }
    }

    #[test]
    fn naflex_batches_group_images_by_shape() {
        let config = PreprocessConfig {
            resize_mode: crate::ResizeMode::Patches {
                patch_size: 8,
                max_patches: 24,
            },
            ..PreprocessConfig::clip(32)
        };
        let images: Vec<RgbImage> = ["chelsea.jpg", "camera_gray.png", "coffee.png"]
            .iter()
            .map(|n| load_rgb(fixture(n)).unwrap())
            .collect();
        let batch = PreparedBatch::from_images(&images, &config);
        // chelsea 451×300 and coffee 583×397 share a grid, camera 301×257 has its own (transformers'
        // get_image_size_for_max_num_patches gives the same sizes)
        assert_eq!(batch.shapes, [(32, 48), (32, 40), (32, 48)]);
        let groups = batch.groups::<burn_flex::Flex>(&Default::default());
        let rows: Vec<(Vec<usize>, [usize; 4])> =
            groups.iter().map(|(r, t)| (r.clone(), t.dims())).collect();
        assert_eq!(
            rows,
            [(vec![0, 2], [2, 3, 32, 48]), (vec![1], [1, 3, 32, 40])]
        );
        let coffee = normalize(&resize_and_crop(&images[2], &config), &config);
        let second: Vec<f32> = groups[0]
            .1
            .clone()
            .narrow(0, 1, 1)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(second, coffee);
    }

    #[test]
    fn dropping_early_stops_the_producer() {
        let paths: Vec<PathBuf> = (0..64).map(|_| fixture("coffee.png")).collect();
        let mut batches = prefetch(
            paths,
            PreprocessConfig::clip(16),
            PrefetchOptions {
                batch_size: 4,
                workers: 2,
                depth: 1,
            },
        );
        let first = batches.next().expect("a batch");
        assert_eq!(first.len(), 4);
        drop(batches); // joins the producer: the test would hang if it kept going
    }
}
