//! Embeddings, logits, preprocessing and token ids against open_clip and transformers on the
//! fixture models (scripts/gen_fixtures.py). Model parity is checked on the reference's own pixel
//! values so that it is independent of preprocessing, which is checked on its own.
//!
//! Every check runs on `flex`; with the facade's `ndarray`, `wgpu` or `cuda` feature it runs on that
//! backend too (`cargo test --test parity --features wgpu`), with a tolerance suited to its float math.

mod common;

use burn::tensor::backend::Backend;
use clip::data::{images_to_tensor, load_rgb};
use clip::Pretrained;
use common::*;

/// Loads a fixture model on `B` and checks every output against its reference, embeddings and
/// logits to `tolerance` (max abs difference over max abs reference value).
fn check_model<B: Backend>(dir: &str, backend: &str, tolerance: f32) -> Pretrained<B> {
    let device = Default::default();
    let clip = Pretrained::<B>::load(fixture(dir), &device).unwrap();
    let reference = Reference::open(&format!("reference/{dir}.safetensors"));

    // token ids
    let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
    let ids = clip.tokenize(&texts, &device).unwrap();
    let (ref_ids, _) = reference.i64("text_ids");
    assert_eq!(
        ids.clone()
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap(),
        ref_ids,
        "{dir}: token ids"
    );

    // image tower on the reference pixels
    let pixels = reference.tensor4::<B>("pixel_values", &device);
    let image = clip.model.encode_image(pixels.clone());
    let (ref_image, shape) = reference.f32("image_embeds");
    assert_eq!(image.dims().to_vec(), shape);
    let e = relative_error(&values(image.clone()), &ref_image);
    println!("{dir} on {backend}: image embeds relative error {e:.2e}");
    assert!(e < tolerance, "{dir}: image embeds relative error {e}");
    // the batch split over threads (more threads than images included)
    for threads in [2, 16] {
        let split = clip.model.encode_image_threaded(pixels.clone(), threads);
        let e = relative_error(&values(split), &ref_image);
        assert!(
            e < tolerance,
            "{dir}: image embeds on {threads} threads: {e}"
        );
    }

    // text tower
    let text = clip.model.encode_text(ids.clone());
    let (ref_text, _) = reference.f32("text_embeds");
    let e = relative_error(&values(text.clone()), &ref_text);
    println!("{dir} on {backend}: text embeds relative error {e:.2e}");
    assert!(e < tolerance, "{dir}: text embeds relative error {e}");
    let split = clip.model.encode_text_threaded(ids, 2);
    let e = relative_error(&values(split), &ref_text);
    assert!(e < tolerance, "{dir}: text embeds on 2 threads: {e}");

    // logits
    let logits = clip.model.logits_per_image(image, text);
    let (ref_logits, _) = reference.f32("logits_per_image");
    let e = relative_error(&values(logits), &ref_logits);
    assert!(e < tolerance, "{dir}: logits relative error {e}");

    // the whole pipeline from files: preprocessing within one uint8 step (/std)
    let paths = images("images", &reference.metadata("images"));
    let decoded: Vec<_> = paths.iter().map(|p| load_rgb(p).unwrap()).collect();
    let ours = values(images_to_tensor::<B>(&decoded, &clip.preprocess, &device));
    let (ref_pixels, _) = reference.f32("pixel_values");
    let step = 1.0 / 255.0 / clip.preprocess.std.iter().fold(f32::MAX, |m, s| m.min(*s));
    let worst = ours
        .iter()
        .zip(&ref_pixels)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!(
        "{dir}: preprocessing max difference {:.3} uint8 steps",
        worst / step
    );
    assert!(
        worst <= step * 1.001,
        "{dir}: preprocessing differs by {} steps",
        worst / step
    );
    clip
}

/// The model checks, instantiated once per backend.
macro_rules! parity_tests {
    ($backend:ident, $type:ty, $tolerance:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn vit_quickgelu_fp16_open_clip_dir() {
                let clip = check_model::<$type>("vit_tiny", stringify!($backend), $tolerance);
                assert_eq!(clip.layout, Some(clip::Layout::OpenClip));
            }

            #[test]
            fn modified_resnet_legacy_nested_checkpoint() {
                let clip = check_model::<$type>("rn_tiny", stringify!($backend), $tolerance);
                assert!(clip.weights.ends_with("epoch_3.pt"));
            }

            #[test]
            fn hugging_face_dir_with_hf_preprocessing() {
                let clip = check_model::<$type>("hf_tiny", stringify!($backend), $tolerance);
                assert_eq!(clip.layout, Some(clip::Layout::HuggingFace));
                // hidden_act: ReLU text tower, GELU image tower
                assert_eq!(
                    clip.config.text.activation,
                    clip::encoders::Activation::Relu
                );
                assert_eq!(
                    clip.preprocess.crop_rounding,
                    clip::data::CropRounding::Floor
                );
            }
        }
    };
}

parity_tests!(flex, burn::backend::Flex, 1e-4);
#[cfg(feature = "ndarray")]
parity_tests!(ndarray, burn::backend::NdArray, 1e-4);
// GPU drivers reorder sums and may use fused multiply-adds or TF32 tensor cores
#[cfg(feature = "wgpu")]
parity_tests!(wgpu, burn::backend::Wgpu, 2e-3);
#[cfg(feature = "cuda")]
parity_tests!(cuda, burn::backend::Cuda, 2e-3);

#[test]
fn fixture_images_are_discriminative() {
    // distinct photos must give clearly distinct reference embeddings, or parity proves little
    for dir in ["vit_tiny", "rn_tiny", "hf_tiny"] {
        let reference = Reference::open(&format!("reference/{dir}.safetensors"));
        let (v, s) = reference.f32("image_embeds");
        let rows: Vec<Vec<f32>> = v
            .chunks(s[1])
            .map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                r.iter().map(|x| x / n).collect()
            })
            .collect();
        for i in 0..rows.len() {
            for j in 0..i {
                let d: f32 = rows[i]
                    .iter()
                    .zip(&rows[j])
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f32>()
                    .sqrt();
                assert!(d > 0.05, "{dir}: images {i} and {j} embed {d} apart");
            }
        }
    }
}
