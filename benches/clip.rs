//! Throughput of the main paths on the CPU backend (random weights: speed does not depend on them).
//!
//!     cargo bench --bench clip              (all; ViT-B/32 and RN50 take a while on 2 cores)
//!     cargo bench --bench clip -- loss      (a subset by name)

use std::time::Duration;

use burn::tensor::{Distribution, Tensor};
use clip::data::{images_to_tensor, load_rgb, PreprocessConfig};
use clip::loss::{contrastive_loss, ContrastiveWeights};
use clip::zeroshot::{imagenet_classes, Templates};
use clip::{ClipConfig, Pretrained};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

type B = burn::backend::Flex;

fn pretrained(preset: &str) -> Pretrained<B> {
    let device = Default::default();
    let config = ClipConfig::preset(preset).expect("preset");
    Pretrained::from_model(config.init::<B>(&device).expect("init"), config).expect("wrap")
}

fn image_encoding(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("encode_image");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for preset in ["ViT-B/32", "RN50"] {
        let clip = pretrained(preset);
        for batch in [1, 16] {
            let images = Tensor::<B, 4>::random(
                [batch, 3, 224, 224],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new(preset, batch), &images, |b, images| {
                b.iter(|| clip.model.encode_image(images.clone()).into_data())
            });
            if batch > 1 && clip.threads > 1 {
                // what `Pretrained::embed_*` and the CLI run: the batch split over the cores
                let id =
                    BenchmarkId::new(format!("{preset} split over {} cores", clip.threads), batch);
                group.bench_with_input(id, &images, |b, images| {
                    b.iter(|| {
                        clip.model
                            .encode_image_threaded(images.clone(), clip.threads)
                            .into_data()
                    })
                });
            }
        }
    }
    group.finish();
}

fn text_encoding(c: &mut Criterion) {
    let device = Default::default();
    let clip = pretrained("ViT-B/32");
    // full 77-token rows (no padding to trim): the worst case
    let text = "a photo of ".repeat(40);
    let ids = clip.tokenize(&vec![text; 16], &device).expect("tokenize");
    let mut group = c.benchmark_group("encode_text");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(16));
    group.bench_function("ViT-B/32 16x77", |b| {
        b.iter(|| clip.model.encode_text(ids.clone()).into_data())
    });
    if clip.threads > 1 {
        let name = format!("ViT-B/32 16x77 split over {} cores", clip.threads);
        group.bench_function(name, |b| {
            b.iter(|| {
                clip.model
                    .encode_text_threaded(ids.clone(), clip.threads)
                    .into_data()
            })
        });
    }
    group.finish();
}

fn preprocessing(c: &mut Criterion) {
    let device = Default::default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    let paths: Vec<_> = ["chelsea.jpg", "rocket.jpg"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    let config = PreprocessConfig::clip(224);
    let mut group = c.benchmark_group("preprocess");
    group.throughput(Throughput::Elements(paths.len() as u64));
    group.bench_function("jpeg decode + resize + crop + normalize", |b| {
        b.iter(|| {
            let images: Vec<_> = paths.iter().map(|p| load_rgb(p).expect("image")).collect();
            images_to_tensor::<B>(&images, &config, &device).into_data()
        })
    });
    group.finish();
}

fn loss(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("contrastive_loss");
    for n in [256, 4096] {
        let image = Tensor::<B, 2>::random([n, 512], Distribution::Normal(0.0, 1.0), &device);
        let text = Tensor::<B, 2>::random([n, 512], Distribution::Normal(0.0, 1.0), &device);
        let scale = Tensor::<B, 1>::from_floats([2.659], &device);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                contrastive_loss(
                    image.clone(),
                    text.clone(),
                    scale.clone(),
                    ContrastiveWeights::default(),
                )
                .expect("loss")
                .into_data()
            })
        });
    }
    group.finish();
}

fn classifier(c: &mut Criterion) {
    // 1000 × 80 takes ~7 min per iteration here (examples/imagenet_classifier times it once);
    // 10 classes × 80 templates, scale by 100
    let device = Default::default();
    let clip = pretrained("ViT-B/32");
    let classes: Vec<String> = imagenet_classes().into_iter().take(10).collect();
    let templates = Templates::imagenet();
    let mut group = c.benchmark_group("zero_shot_classifier");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(
        (classes.len() * templates.templates.len()) as u64,
    ));
    group.bench_function("ViT-B/32 10 classes x 80 templates", |b| {
        b.iter(|| {
            clip.zero_shot_classifier(&classes, &templates, &device, |_| ())
                .expect("classifier")
                .weights
                .into_data()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    loss,
    preprocessing,
    text_encoding,
    image_encoding,
    classifier
);
criterion_main!(benches);
