//! The Fashion-MNIST scenes benchmark, zero-shot with prompt ensembling:
//! (a) 10-way class accuracy on the untouched grayscale test split; (b) 70-way colour×class accuracy
//! on test items in the held-out pairs; (c) the same on seen pairs; (d) image→text recall@1 on test
//! scenes with their captions.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use clip::{encode_texts, Clip};
pub use clip_data::fashion::{default_dir, FashionMnist, DEBIAN_FASHION_MNIST};
use clip_data::fashion::{is_held_out, render_scene, CLASSES, COLOURS};
use clip_tokenizer::TextTokenizer;
use clip_zeroshot::{
    retrieval_recall, to_rows, top_k_accuracy, Templates, ZeroShotClassifier, DEFAULT_SCALE,
};
use image::{imageops, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::TrainError;

/// The four measurements of [`evaluate`]; accuracies and recall are fractions in [0, 1].
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BenchmarkReport {
    /// Test items measured (the requested count, at most the split's size).
    pub samples: usize,
    /// (a) 10-way, grayscale test split, with prompts that call the items white (the colour word the
    /// training captions use for an uncoloured item).
    pub grayscale_class_top1: f64,
    /// (a) with the generic prompts, which name no colour.
    pub grayscale_class_top1_plain: f64,
    /// (b) 70-way colour×class on held-out pairs.
    pub held_out_pair_top1: f64,
    /// (c) 70-way colour×class on seen pairs.
    pub seen_pair_top1: f64,
    /// (d) image→text recall@1 on test scenes.
    pub retrieval_r1: f64,
}

/// Prompt templates of the benchmark (ensembled).
pub fn templates() -> Templates {
    Templates {
        name: "fashion".into(),
        templates: vec![
            "a {}".into(),
            "a photo of a {}".into(),
            "a {} on a black background".into(),
        ],
    }
}

/// The same templates for grayscale items, described as the captions describe them: white. (OpenAI's
/// ImageNet prompts say "a black and white photo of the {}" for the same reason.)
pub fn grayscale_templates() -> Templates {
    Templates {
        name: "fashion-grayscale".into(),
        templates: templates()
            .templates
            .iter()
            .map(|t| t.replace("{}", "white {}"))
            .collect(),
    }
}

/// Images of one size, normalized with CLIP's mean and std, as `[n, 3, h, w]` data.
pub(crate) fn normalized(images: &[RgbImage]) -> TensorData {
    let (w, h) = images.first().map(|i| i.dimensions()).unwrap_or((0, 0));
    let config = clip_data::PreprocessConfig::clip(w as usize);
    let mut values = Vec::with_capacity(images.len() * 3 * (w * h) as usize);
    for image in images {
        values.extend(clip_data::normalize(image, &config));
    }
    TensorData::new(values, [images.len(), 3, h as usize, w as usize])
}

fn pixels<B: Backend>(images: &[RgbImage], device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(normalized(images), device)
}

/// Image embeddings (not L2-normalized, `[n, embed_dim]`) of same-sized RGB images already at the
/// model's input size (their pixels are normalized with CLIP's mean and std here), in batches of 256,
/// each batch split over `threads` threads ([`Clip::encode_image_threaded`]).
pub fn encode_images<B: Backend>(
    clip: &Clip<B>,
    images: &[RgbImage],
    threads: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let parts: Vec<_> = images
        .chunks(256)
        .map(|c| clip.encode_image_threaded(pixels::<B>(c, device), threads))
        .collect();
    Tensor::cat(parts, 0)
}

/// The zero-shot classifier of `labels` under `templates`.
fn classifier<B: Backend>(
    clip: &Clip<B>,
    tokenizer: &TextTokenizer,
    templates: &Templates,
    labels: &[String],
    device: &B::Device,
) -> Result<ZeroShotClassifier<B>, TrainError> {
    Ok(ZeroShotClassifier::build(
        labels,
        templates,
        "benchmark",
        64,
        |t| encode_texts(clip, tokenizer, t, device),
        |_| (),
    )?)
}

/// Top-1 accuracy of `classifier` on images embedded as `image_embeds`.
fn accuracy<B: Backend>(
    classifier: &ZeroShotClassifier<B>,
    image_embeds: Tensor<B, 2>,
    targets: &[usize],
) -> f64 {
    let probs = to_rows(classifier.probabilities(image_embeds, DEFAULT_SCALE));
    top_k_accuracy(&probs, targets, 1)
}

/// Item `i` of `set` as (a) shows it: the grayscale item scaled to the whole `side`×`side` input.
pub fn grayscale_item(set: &FashionMnist, i: usize, side: u32) -> RgbImage {
    let item = imageops::resize(&set.item(i), side, side, imageops::FilterType::Triangle);
    RgbImage::from_fn(side, side, |x, y| image::Rgb([item.get_pixel(x, y)[0]; 3]))
}

/// Runs the four measurements on the first `samples` test items, encoding images on `threads` threads.
/// Each image set is encoded once and each classifier built once. The scenes are rendered at the
/// model's input size with a fixed seed, so the same model always gets the same report. Errors come
/// from tokenizing or embedding the prompts.
pub fn evaluate<B: Backend>(
    clip: &Clip<B>,
    tokenizer: &TextTokenizer,
    test: &FashionMnist,
    samples: usize,
    threads: usize,
    device: &B::Device,
) -> Result<BenchmarkReport, TrainError> {
    let canvas = clip.image_size() as u32;
    let n = samples.min(test.len());
    let classes: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();

    // (a) the grayscale split as it is, scaled to the model's input size
    let gray: Vec<RgbImage> = (0..n).map(|i| grayscale_item(test, i, canvas)).collect();
    let gray_embeds = encode_images(clip, &gray, threads, device);
    let targets: Vec<usize> = (0..n).map(|i| test.label(i)).collect();
    let white = classifier(clip, tokenizer, &grayscale_templates(), &classes, device)?;
    let grayscale_class_top1 = accuracy(&white, gray_embeds.clone(), &targets);
    let plain = classifier(clip, tokenizer, &templates(), &classes, device)?;
    let grayscale_class_top1_plain = accuracy(&plain, gray_embeds, &targets);

    // (b), (c): colour×class over all 70 pairs
    let pairs: Vec<String> = COLOURS
        .iter()
        .flat_map(|(c, _)| CLASSES.iter().map(move |k| format!("{c} {k}")))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(20_240_101);
    let mut held = (Vec::new(), Vec::new());
    let mut seen = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let class = test.label(i);
        let held_colour = class % 6;
        let scene = render_scene(&test.item(i), class, held_colour, canvas, &mut rng);
        held.0.push(scene.image);
        held.1.push(held_colour * CLASSES.len() + class);
        let colour = loop {
            let c = rng.random_range(0..COLOURS.len());
            if !is_held_out(class, c) {
                break c;
            }
        };
        let scene = render_scene(&test.item(i), class, colour, canvas, &mut rng);
        seen.0.push(scene.image);
        seen.1.push(colour * CLASSES.len() + class);
        seen.2.push(scene.caption);
    }
    let pair_classifier = classifier(clip, tokenizer, &templates(), &pairs, device)?;
    let held_embeds = encode_images(clip, &held.0, threads, device);
    let held_out_pair_top1 = accuracy(&pair_classifier, held_embeds, &held.1);
    let seen_embeds = encode_images(clip, &seen.0, threads, device);
    let seen_pair_top1 = accuracy(&pair_classifier, seen_embeds.clone(), &seen.1);

    // (d) image→text recall@1 over the seen scenes' own captions
    let image_embeds = clip_heads::l2_normalize(seen_embeds);
    let text_parts: Vec<_> = seen
        .2
        .chunks(256)
        .map(|c| encode_texts(clip, tokenizer, c, device))
        .collect::<Result<_, _>>()?;
    let text_embeds = clip_heads::l2_normalize(Tensor::cat(text_parts, 0));
    let similarity = to_rows(image_embeds.matmul(text_embeds.transpose()));
    let recall = retrieval_recall(&similarity, &(0..n).collect::<Vec<_>>(), &[1]);
    Ok(BenchmarkReport {
        samples: n,
        grayscale_class_top1,
        grayscale_class_top1_plain,
        held_out_pair_top1,
        seen_pair_top1,
        retrieval_r1: recall.image_to_text[0],
    })
}
