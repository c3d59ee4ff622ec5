//! Where training pairs come from: Fashion-MNIST scenes rendered on the fly, or image–caption pairs
//! from a captions file or webdataset shards, each sample a function of the seed and its index.

use clip_data::captions::{CaptionPair, SkipReport};
use clip_data::fashion::{FashionMnist, SceneSampler};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{DataConfig, TrainConfig};
use crate::TrainError;

/// How many draws a sample gets before a dataset counts as broken: an unreadable image is replaced
/// by another draw from the same sample's generator, so the replacement is repeatable too.
const DRAWS: usize = 16;

/// A training sample, and the images that could not be decoded on the way to it ("path: why").
pub(crate) struct Drawn {
    pub image: RgbImage,
    pub caption: String,
    pub unreadable: Vec<String>,
}

/// Where training pairs come from; `sample(i)` depends only on the seed and `i`.
pub(crate) enum Source {
    Scenes(SceneSampler),
    /// Image–caption pairs drawn at random, decoded when drawn (on the loader's workers) and fitted to
    /// the model's input size.
    Pairs {
        pairs: Vec<CaptionPair>,
        seed: u64,
        canvas: u32,
    },
}

impl Source {
    pub(crate) fn sample(&self, index: u64) -> Result<Drawn, String> {
        match self {
            Source::Scenes(s) => {
                let scene = s.sample(index);
                Ok(Drawn {
                    image: scene.image,
                    caption: scene.caption,
                    unreadable: Vec::new(),
                })
            }
            Source::Pairs {
                pairs,
                seed,
                canvas,
            } => {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut unreadable = Vec::new();
                for _ in 0..DRAWS {
                    let pair = &pairs[rand::Rng::random_range(&mut rng, 0..pairs.len())];
                    match pair.image.decode() {
                        Ok(image) => {
                            let fit = clip_data::PreprocessConfig::clip(*canvas as usize);
                            return Ok(Drawn {
                                image: clip_data::resize_and_crop(&image, &fit),
                                caption: pair.caption.clone(),
                                unreadable,
                            });
                        }
                        Err(e) => unreadable.push(e.to_string()),
                    }
                }
                Err(format!(
                    "sample {index}: {DRAWS} draws in a row found no readable image (last: {})",
                    unreadable.last().map(String::as_str).unwrap_or("")
                ))
            }
        }
    }
}

pub(crate) fn load_source(
    config: &TrainConfig,
    canvas: u32,
) -> Result<(Source, Option<FashionMnist>), TrainError> {
    let pairs = |pairs: Vec<CaptionPair>, report: SkipReport| -> Result<Source, TrainError> {
        if report.skipped > 0 {
            eprintln!(
                "skipped {} unreadable samples (first: {})",
                report.skipped,
                report.first.join("; ")
            );
        }
        if pairs.len() < config.batch_size {
            return Err(TrainError::Config(format!(
                "{} usable pairs, fewer than one batch of {}",
                pairs.len(),
                config.batch_size
            )));
        }
        Ok(Source::Pairs {
            pairs,
            seed: config.seed,
            canvas,
        })
    };
    match &config.data {
        DataConfig::FashionScenes {
            dir,
            plain_captions,
        } => {
            let train_items = FashionMnist::load(dir, true)?;
            let test_items = FashionMnist::load(dir, false)?;
            Ok((
                Source::Scenes(SceneSampler {
                    items: train_items,
                    seed: config.seed,
                    canvas,
                    exclude_held_out: true,
                    plain_captions: *plain_captions,
                }),
                Some(test_items),
            ))
        }
        DataConfig::Captions { file, strict } => {
            let list = clip_data::captions::read_caption_file(file)?;
            let (kept, report) = clip_data::captions::probe_pairs(list, *strict)?;
            Ok((pairs(kept, report)?, None))
        }
        DataConfig::Shards { files, strict } => {
            let mut all = Vec::new();
            let mut report = SkipReport::default();
            for file in files {
                let (kept, r) = clip_data::captions::index_shard(file, *strict)?;
                all.extend(kept);
                report.merge(r);
            }
            Ok((pairs(all, report)?, None))
        }
    }
}
