//! Half-precision parity: a fixture model run in f16 or bf16 against open_clip / transformers run
//! under `torch.autocast` in the same dtype (scripts/gen_half_fixtures.py), and against the f32
//! reference. burn fixes a device's float dtype at its first use, for the whole process, so each dtype
//! has a test binary of its own (`precision_bf16.rs`, `precision_f16.rs`).

use burn::tensor::backend::Backend;
use clip::{set_precision, Precision, Pretrained};

use crate::common::*;

/// Cosine similarity of each row of `a` with the same row of `b` (`dim` columns).
fn row_cosines(a: &[f32], b: &[f32], dim: usize) -> Vec<f32> {
    a.chunks(dim)
        .zip(b.chunks(dim))
        .map(|(x, y)| {
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let nx = x.iter().map(|p| p * p).sum::<f32>().sqrt();
            let ny = y.iter().map(|q| q * q).sum::<f32>().sqrt();
            dot / (nx * ny)
        })
        .collect()
}

fn argmax_rows(values: &[f32], columns: usize) -> Vec<usize> {
    values
        .chunks(columns)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                )
                .0
        })
        .collect()
}

/// Loads fixture `dir` on `B` in `precision` and checks its embeddings (cosine ≥ `min_cosine` per row
/// against the autocast reference and the f32 one) and its zero-shot top-1 (each image's best text
/// as in the f32 reference).
pub fn check_half<B: Backend>(dir: &str, precision: Precision, min_cosine: f32) {
    let device = B::Device::default();
    set_precision::<B>(&device, precision).unwrap();
    let clip = Pretrained::<B>::load(fixture(dir), &device).unwrap();
    assert_eq!(Precision::of_device::<B>(&device), Some(precision));
    let reference = Reference::open(&format!("reference/{dir}.safetensors"));
    let half = Reference::open(&format!("reference/half/{dir}.safetensors"));
    let suffix = precision.name();

    let pixels = reference.tensor4::<B>("pixel_values", &device);
    let image = clip.model.encode_image(pixels);
    assert_eq!(
        image.dtype(),
        precision.dtype().into(),
        "{dir}: the image tower ran in another dtype"
    );
    let ids = reference.ids::<B>("text_ids", &device);
    let text = clip.model.encode_text(ids);
    let dim = image.dims()[1];
    let logits = values(clip.model.logits_per_image(image.clone(), text.clone()));
    let (image, text) = (values(image), values(text));

    for (what, ours) in [("image", &image), ("text", &text)] {
        let (autocast, _) = half.f32(&format!("{what}_embeds_{suffix}"));
        let (exact, _) = reference.f32(&format!("{what}_embeds"));
        let vs_autocast = row_cosines(ours, &autocast, dim);
        let vs_f32 = row_cosines(ours, &exact, dim);
        let worst = |c: &[f32]| c.iter().fold(1f32, |m, x| m.min(*x));
        println!(
            "{dir} in {suffix}: {what} embeds, min cosine {:.6} against autocast, {:.6} against f32",
            worst(&vs_autocast),
            worst(&vs_f32)
        );
        assert!(
            worst(&vs_autocast) >= min_cosine && worst(&vs_f32) >= min_cosine,
            "{dir} in {suffix}: {what} cosines {vs_autocast:?} (autocast), {vs_f32:?} (f32)"
        );
    }
    let (exact_logits, shape) = reference.f32("logits_per_image");
    assert_eq!(
        argmax_rows(&logits, shape[1]),
        argmax_rows(&exact_logits, shape[1]),
        "{dir} in {suffix}: zero-shot top-1 changed"
    );
    // the library's embed_* methods hand half-precision embeddings back as f32
    let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
    let rows = clip.embed_texts(&texts, &device).unwrap();
    assert_eq!(rows.dtype(), burn::tensor::DType::F32);
}
