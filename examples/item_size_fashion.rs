//! Zero-shot accuracy of the bundled model (or `MODEL_DIR`) on Fashion-MNIST's grayscale test items drawn
//! at several sizes, centred on the black canvas: the benchmark's (a) shows them filling the whole input,
//! and this tells whether that size, rather than the items, is what the model finds hard.
//!
//!     cargo run --release --example item_size_fashion -- [MODEL_DIR]

use burn::backend::Flex;
use clip::data::fashion::CLASSES;
use clip::zeroshot::{to_rows, top_k_accuracy, ZeroShotClassifier, DEFAULT_SCALE};
use clip::{encode_texts, Pretrained};
use clip_train::benchmark::{
    default_dir, encode_images, grayscale_item, grayscale_templates, FashionMnist,
};
use image::{imageops, RgbImage};

type B = Flex;

/// The first 5000 test items (half the split), to keep four passes short.
const ITEMS: usize = 5000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let clip = match std::env::args().nth(1) {
        Some(dir) => Pretrained::<B>::load(dir, &device)?,
        None => Pretrained::<B>::bundled(&device)?,
    };
    let test = FashionMnist::load(default_dir(), false)?;
    let canvas = clip.config.image_size() as u32;
    let classes: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
    let classifier = ZeroShotClassifier::build(
        &classes,
        &grayscale_templates(),
        "item sizes",
        64,
        |texts| encode_texts(&clip.model, &clip.tokenizer, texts, &device),
        |_| (),
    )?;
    let targets: Vec<usize> = (0..ITEMS).map(|i| test.label(i)).collect();
    for side in [canvas * 3 / 4, canvas * 5 / 6, canvas * 11 / 12, canvas] {
        let images: Vec<RgbImage> = (0..ITEMS)
            .map(|i| {
                let mut image = RgbImage::new(canvas, canvas);
                let offset = ((canvas - side) / 2) as i64;
                imageops::overlay(&mut image, &grayscale_item(&test, i, side), offset, offset);
                image
            })
            .collect();
        let embeds = encode_images(&clip.model, &images, clip.threads, &device);
        let probs = to_rows(classifier.probabilities(embeds, DEFAULT_SCALE));
        let accuracy = top_k_accuracy(&probs, &targets, 1);
        println!(
            "items {side} px on a {canvas} px canvas: (a) {:.1} %",
            accuracy * 100.0
        );
    }
    Ok(())
}
