//! A linear probe on the bundled model's frozen image embeddings: how far full supervision on top of
//! the image tower gets on Fashion-MNIST's grayscale items, to compare with its zero-shot accuracy
//! (`clip eval fashion-scenes`, (a)). If the probe is not much better, the tower is what limits (a).
//!
//!     cargo run --release --example linear_probe_fashion

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use clip::heads::l2_normalize;
use clip::zeroshot::LinearProbe;
use clip::Pretrained;
use clip_train::benchmark::{default_dir, encode_images, grayscale_item, FashionMnist};

type B = Flex;

/// Unit-length embeddings of items `range` of `set`, shown as the benchmark's (a) shows them, and their labels.
fn embed(
    clip: &Pretrained<B>,
    set: &FashionMnist,
    range: std::ops::Range<usize>,
) -> (Tensor<B, 2>, Vec<usize>) {
    let side = clip.config.image_size() as u32;
    let images: Vec<_> = range
        .clone()
        .map(|i| grayscale_item(set, i, side))
        .collect();
    let embeds = encode_images(&clip.model, &images, clip.threads, &Default::default());
    (l2_normalize(embeds), range.map(|i| set.label(i)).collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let clip = Pretrained::<B>::bundled(&device)?;
    let train = FashionMnist::load(default_dir(), true)?;
    let test = FashionMnist::load(default_dir(), false)?;
    if train.len() < 55000 {
        return Err(format!(
            "the probe needs the full Fashion-MNIST training split (60,000 items), found {} in {}",
            train.len(),
            default_dir().display()
        )
        .into());
    }
    // fit on 20000 training items, choose the L2 strength on 5000 others, report on the whole test split
    let (fit_x, fit_y) = embed(&clip, &train, 0..20000);
    let (val_x, val_y) = embed(&clip, &train, 50000..55000);
    let (test_x, test_y) = embed(&clip, &test, 0..test.len());
    let probe = LinearProbe::<B>::fit::<Autodiff<B>>(
        Tensor::from_inner(fit_x),
        &fit_y,
        val_x,
        &val_y,
        10,
        &[0.0, 1e-4, 1e-3, 1e-2],
        500,
    )?;
    let accuracy = probe.accuracy(test_x, &test_y);
    println!(
        "linear probe (L2 {}): validation {:.1} %, test {:.1} % of {} items",
        probe.l2,
        probe.val_accuracy * 100.0,
        accuracy * 100.0,
        test_y.len()
    );
    Ok(())
}
