//! Exports in the layouts other tools load, read back: the same embeddings as the model exported.
//! (That transformers and open_clip load these files is checked against them in
//! scripts/check_exports.py, which CI does not run.)

mod common;

use burn::backend::Flex;
use clip::{Pretrained, StorageType};
use common::*;

fn embeddings(clip: &Pretrained<Flex>) -> (Vec<f32>, Vec<f32>) {
    Reference::open("reference/vit_tiny.safetensors").embeddings_of(&clip.model)
}

#[test]
fn a_transformers_export_reads_back_to_the_same_embeddings() {
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("vit_tiny"), &device).unwrap();
    let reference = Reference::open("reference/vit_tiny.safetensors");
    let (want_image, _) = reference.f32("image_embeds");
    let (want_text, _) = reference.f32("text_embeds");
    // vit_tiny's weights are fp16 values: f16 storage loses nothing, bf16 rounds them
    for (storage, tolerance) in [
        (StorageType::F32, 1e-5),
        (StorageType::F16, 1e-5),
        (StorageType::BF16, 2e-2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        clip.save_hf(dir.path(), storage).unwrap();
        let back = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
        assert_eq!(back.layout, Some(clip::Layout::HuggingFace));
        assert_eq!(back.config, clip.config);
        let (image, text) = embeddings(&back);
        let (ei, et) = (
            relative_error(&image, &want_image),
            relative_error(&text, &want_text),
        );
        println!("hf export {storage:?}: relative error image {ei:.2e}, text {et:.2e}");
        assert!(ei < tolerance && et < tolerance, "{storage:?}: {ei} {et}");
        let size = std::fs::metadata(dir.path().join("model.safetensors"))
            .unwrap()
            .len();
        println!("  model.safetensors: {size} bytes");
    }
}

#[test]
fn an_open_clip_export_in_half_precision_reads_back() {
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("rn_tiny"), &device).unwrap();
    let (want_image, want_text) = embeddings(&clip);
    let dir = tempfile::tempdir().unwrap();
    clip.save_open_clip_as(dir.path(), StorageType::F16)
        .unwrap();
    let back = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
    let (image, text) = embeddings(&back);
    let (ei, et) = (
        relative_error(&image, &want_image),
        relative_error(&text, &want_text),
    );
    println!("open_clip export f16 (rn_tiny): relative error image {ei:.2e}, text {et:.2e}");
    assert!(ei < 1e-2 && et < 1e-2, "{ei} {et}");
    assert!(ei > 0.0, "f16 storage must round rn_tiny's f32 weights");
}

#[test]
fn what_transformers_cannot_hold_is_refused_before_writing() {
    let device = Default::default();
    let rn = Pretrained::<Flex>::load(fixture("rn_tiny"), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rn-hf");
    let err = rn.save_hf(&out, StorageType::F32).unwrap_err().to_string();
    assert!(err.contains("ModifiedResNet"), "{err}");
    assert!(!out.exists());
}
