//! A linear probe on the bundled model's frozen image embeddings: how far full supervision on top of
//! the image tower gets on Fashion-MNIST's grayscale items, to compare with its zero-shot accuracy
//! (`clip eval fashion-scenes`, (a)). If the probe is not much better, the tower is what limits (a).
//!
//!     cargo run --release --example linear_probe_fashion

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use clip::data::fashion::{FashionMnist, DEBIAN_FASHION_MNIST};
use clip::zeroshot::LinearProbe;
use clip::Pretrained;
use image::{imageops, Rgb, RgbImage};

type B = Flex;

/// Unit-length image embeddings of items `range` of `set`, shown as the benchmark shows them: the
/// grayscale item scaled to the whole input.
fn embed(
    clip: &Pretrained<B>,
    set: &FashionMnist,
    range: std::ops::Range<usize>,
) -> (TensorData, Vec<usize>) {
    let side = clip.config.image_size() as u32;
    let indices: Vec<usize> = range.collect();
    let parts: Vec<Tensor<B, 2>> = indices
        .chunks(256)
        .map(|chunk| {
            let mut pixels = Vec::with_capacity(chunk.len() * 3 * (side * side) as usize);
            for &i in chunk {
                let item =
                    imageops::resize(&set.item(i), side, side, imageops::FilterType::Triangle);
                let rgb = RgbImage::from_fn(side, side, |x, y| Rgb([item.get_pixel(x, y)[0]; 3]));
                pixels.extend(clip::data::preprocess::normalize(&rgb, &clip.preprocess));
            }
            let shape = [chunk.len(), 3, side as usize, side as usize];
            let x = Tensor::from_data(TensorData::new(pixels, shape), &Default::default());
            let e = clip.model.encode_image_threaded(x, clip.threads);
            let norm = e.clone().powf_scalar(2.0).sum_dim(1).sqrt();
            e / norm
        })
        .collect();
    let labels = indices.iter().map(|&i| set.label(i)).collect();
    (Tensor::cat(parts, 0).into_data(), labels)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let clip = Pretrained::<B>::bundled(&device)?;
    let train = FashionMnist::load(DEBIAN_FASHION_MNIST, true)?;
    let test = FashionMnist::load(DEBIAN_FASHION_MNIST, false)?;
    // fit on 20000 training items, choose the L2 strength on 5000 others, report on the whole test split
    let (fit_x, fit_y) = embed(&clip, &train, 0..20000);
    let (val_x, val_y) = embed(&clip, &train, 50000..55000);
    let (test_x, test_y) = embed(&clip, &test, 0..test.len());
    let probe = LinearProbe::<B>::fit::<Autodiff<B>>(
        Tensor::from_data(fit_x, &device),
        &fit_y,
        Tensor::from_data(val_x, &device),
        &val_y,
        10,
        &[0.0, 1e-4, 1e-3, 1e-2],
        500,
    )?;
    let accuracy = probe.accuracy(Tensor::from_data(test_x, &device), &test_y);
    println!(
        "linear probe (L2 {}): validation {:.1} %, test {:.1} % of {} items",
        probe.l2,
        probe.val_accuracy * 100.0,
        accuracy * 100.0,
        test_y.len()
    );
    Ok(())
}
