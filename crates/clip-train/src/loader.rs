//! Training batches rendered, augmented and normalized on burn's multi-threaded data loader, and
//! handed to the training loop in step order.
//!
//! Every micro-batch is a pure function of the seed and its index (that is what makes resume exact),
//! but burn's loader gives each worker a contiguous share of the dataset and yields batches as they
//! finish. So the dataset lists micro-batch indices interleaved to match that split (workers render
//! neighbouring batches at the same time), and a feeder thread puts the finished batches back in
//! order. The feeder builds one loader per window of a few batches per worker, which bounds the
//! memory of batches rendered ahead.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::tensor::backend::Backend;
use burn::tensor::TensorData;
use clip_data::AugmentConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::source::Source;

/// One micro-batch, ready to become tensors: normalized pixels `[n, 3, h, w]` and captions.
#[derive(Clone, Debug)]
pub(crate) struct MicroBatch {
    pub index: u64,
    pub pixels: TensorData,
    pub captions: Vec<String>,
    /// Images that failed to decode and were replaced by another draw ("path: why").
    pub unreadable: Vec<String>,
}

/// A micro-batch as the loader hands it over: its index, and the batch or why it could not be made.
pub(crate) type Rendered = (u64, Result<MicroBatch, String>);

/// Micro-batch indices `start..start + count`, listed so that burn's split into `workers`
/// contiguous shares gives worker `s` the indices `s, s + workers, s + 2·workers, …`.
struct BatchIndices {
    start: u64,
    count: usize,
    workers: usize,
}

impl Dataset<u64> for BatchIndices {
    fn get(&self, position: usize) -> Option<u64> {
        if position >= self.count {
            return None;
        }
        // burn's split: the first `count % workers` shares hold one item more
        let (base, extra) = (self.count / self.workers, self.count % self.workers);
        let long = extra * (base + 1);
        let (share, offset) = if position < long {
            (position / (base + 1), position % (base + 1))
        } else {
            let p = position - long;
            (extra + p / base, p % base)
        };
        Some(self.start + (offset * self.workers + share) as u64)
    }

    fn len(&self) -> usize {
        self.count
    }
}

/// Renders (scenes) or decodes (pairs) the samples of a micro-batch and augments them.
#[derive(Clone)]
struct MicroBatcher {
    source: Arc<Source>,
    augment: AugmentConfig,
    seed: u64,
    batch_size: usize,
    /// The samples of each micro-batch this process renders (its rank's share; all of them in a
    /// single-process run).
    slice: std::ops::Range<usize>,
}

impl MicroBatcher {
    fn render(&self, index: u64) -> Result<MicroBatch, String> {
        let first = index * self.batch_size as u64;
        let mut images = Vec::with_capacity(self.slice.len());
        let mut captions = Vec::with_capacity(self.slice.len());
        let mut unreadable = Vec::new();
        for i in first + self.slice.start as u64..first + self.slice.end as u64 {
            let drawn = self.source.sample(i)?;
            let mut rng = ChaCha8Rng::seed_from_u64(
                self.seed
                    .wrapping_mul(31)
                    .wrapping_add(i)
                    .wrapping_mul(0xD6E8_FEB8_6659_FD93),
            );
            images.push(self.augment.apply(&drawn.image, &mut rng));
            captions.push(drawn.caption);
            unreadable.extend(drawn.unreadable);
        }
        Ok(MicroBatch {
            index,
            pixels: crate::benchmark::normalized(&images),
            captions,
            unreadable,
        })
    }
}

impl<B: Backend> Batcher<B, u64, Rendered> for MicroBatcher {
    fn batch(&self, items: Vec<u64>, _device: &B::Device) -> Rendered {
        // the loader's batch size is 1: one item is one whole micro-batch
        let index = items.first().copied().unwrap_or_default();
        (index, self.render(index))
    }
}

/// Micro-batches `first..end` in order, rendered ahead on `workers` loader threads; of each, the
/// samples `slice` of its `batch_size`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn micro_batches<B: Backend>(
    source: Arc<Source>,
    augment: AugmentConfig,
    seed: u64,
    batch_size: usize,
    slice: std::ops::Range<usize>,
    first: u64,
    end: u64,
    workers: usize,
) -> Receiver<Rendered> {
    let workers = workers.max(1);
    // two batches queued for the training loop: enough to hide rendering, little memory
    let (sender, receiver) = sync_channel(2);
    let batcher = MicroBatcher {
        source,
        augment,
        seed,
        batch_size,
        slice,
    };
    std::thread::spawn(move || {
        let window = 4 * workers as u64;
        let mut next = first;
        let mut finished = BTreeMap::new();
        while next < end {
            let count = window.min(end - next) as usize;
            let loader = DataLoaderBuilder::<B, u64, Rendered>::new(batcher.clone())
                .batch_size(1)
                .num_workers(workers)
                .build(BatchIndices {
                    start: next,
                    count,
                    workers,
                });
            for batch in loader.iter() {
                finished.insert(batch.0, batch);
                while let Some(batch) = finished.remove(&next) {
                    if sender.send(batch).is_err() {
                        return; // the training loop has stopped
                    }
                    next += 1;
                }
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_indices_cover_every_batch_once_in_worker_order() {
        for (count, workers) in [(8, 2), (7, 2), (9, 4), (3, 8), (1, 1), (10, 3)] {
            let d = BatchIndices {
                start: 100,
                count,
                workers,
            };
            let mut all: Vec<u64> = (0..count).filter_map(|p| d.get(p)).collect();
            // each of burn's contiguous shares must run through its worker's batches in order
            let shares = burn::data::dataset::transform::PartialDataset::split_chunks(
                BatchIndices {
                    start: 100,
                    count,
                    workers,
                },
                workers,
                1,
            );
            for (s, share) in shares.iter().enumerate() {
                let got: Vec<u64> = (0..share.len()).filter_map(|p| share.get(p)).collect();
                let want: Vec<u64> = (0..got.len())
                    .map(|k| 100 + (k * workers + s) as u64)
                    .collect();
                assert_eq!(got, want, "count {count}, workers {workers}, share {s}");
            }
            all.sort();
            assert_eq!(all, (100..100 + count as u64).collect::<Vec<_>>());
            assert_eq!(d.get(count), None);
        }
    }
}
