//! Builds OpenAI's ImageNet zero-shot classifier (1000 classes × 80 templates) and reports how long it
//! takes. Without a model it uses a randomly initialized ViT-B/32 (the time does not depend on the
//! weights). `--classes N` builds only the first N classes and extrapolates.
//!
//!     cargo run --release --example imagenet_classifier -- [--model DIR] [--classes N] [--save FILE]

use std::time::Instant;

use clip::zeroshot::{imagenet_classes, Templates};
use clip::{ClipConfig, Pretrained};

type B = burn::backend::Flex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let device = Default::default();
    let clip = match value("--model") {
        Some(path) => Pretrained::<B>::load(path, &device)?,
        None => {
            let config = ClipConfig::preset("ViT-B/32")?;
            Pretrained::from_model(config.init::<B>(&device)?, config)?
        }
    };
    let all = imagenet_classes();
    let n: usize = value("--classes")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(all.len())
        .min(all.len());
    let templates = Templates::imagenet();
    let start = Instant::now();
    let mut done = 0;
    let classifier = clip.zero_shot_classifier(&all[..n], &templates, &device, |k| {
        done += k;
        eprint!(
            "\r{done}/{n} classes, {:.1} s",
            start.elapsed().as_secs_f64()
        );
    })?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!();
    let prompts = n * templates.templates.len();
    println!(
        "{n} classes × {} templates = {prompts} prompts in {secs:.1} s ({:.1} prompts/s); 1000 classes: {:.0} s",
        templates.templates.len(),
        prompts as f64 / secs,
        secs * 1000.0 / n as f64
    );
    if let Some(path) = value("--save") {
        classifier.save(path)?;
    }
    Ok(())
}
