//! A short contrastive training run on the Fashion-MNIST scenes benchmark (a few minutes on a laptop
//! CPU), then the four benchmark numbers. The bundled model is the same recipe, run for 13,000 steps:
//! `clip train --config configs/fashion-scenes.toml`.
//!
//!     cargo run --release --example train_fashion_scenes -- [STEPS]

use burn::backend::{Autodiff, Flex};
use clip_train::{train, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(300);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/fashion-scenes.toml"
    ))?;
    let mut config: TrainConfig = toml::from_str(&text)?;
    config.steps = steps;
    config.warmup_steps = steps / 10;
    config.eval_every = 0;
    config.checkpoint_every = steps;
    config.output = std::env::temp_dir().join("clip-train-example");
    let report = train::<Autodiff<Flex>>(&config, None, &Default::default())?;
    let (first, last) = (report.log[0].loss, report.log[report.log.len() - 1].loss);
    println!(
        "{} steps in {:.0} s ({:.0} images/s); loss {first:.3} → {last:.3}",
        report.steps, report.seconds, report.images_per_second
    );
    if let Some((_, eval)) = report.evaluations.last() {
        println!(
            "(a) grayscale class {:.1}% (plain prompts {:.1}%)  (b) held-out pairs {:.1}%  (c) seen pairs {:.1}%  (d) retrieval R@1 {:.1}%",
            eval.grayscale_class_top1 * 100.0,
            eval.grayscale_class_top1_plain * 100.0,
            eval.held_out_pair_top1 * 100.0,
            eval.seen_pair_top1 * 100.0,
            eval.retrieval_r1 * 100.0
        );
    }
    Ok(())
}
