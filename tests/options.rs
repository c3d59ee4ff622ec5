//! open_clip's model options, each on a small model against open_clip's own embeddings
//! (scripts/gen_option_fixtures.py).

mod common;

use burn::backend::Flex;
use clip::{Pretrained, StorageType, VisionConfig};
use common::*;

/// The relative errors of `clip`'s image and text embeddings against open_clip's on fixture `name`.
fn parity(clip: &Pretrained<Flex>, name: &str) -> (f32, f32) {
    Reference::open(&format!("options/{name}/reference.safetensors")).errors_of(&clip.model)
}

#[test]
fn layer_scale_matches_open_clip_and_survives_export() {
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("options/vit_ls"), &device).unwrap();
    let VisionConfig::Vit { layer_scale, .. } = clip.config.vision else {
        panic!("a ViT")
    };
    assert_eq!(layer_scale, Some(1e-4));
    let (e_image, e_text) = parity(&clip, "vit_ls");
    println!("vit_ls: image embeds relative error {e_image:.2e}, text {e_text:.2e}");
    assert!(e_image < 1e-5 && e_text < 1e-5, "{e_image} {e_text}");

    // written back in open_clip's layout (ls_1.gamma, ls_init_value) it reads back the same
    let dir = tempfile::tempdir().unwrap();
    clip.save_open_clip_as(dir.path(), StorageType::F32)
        .unwrap();
    let back = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
    assert_eq!(back.config, clip.config);
    let (e_image, e_text) = parity(&back, "vit_ls");
    assert!(e_image < 1e-5 && e_text < 1e-5, "{e_image} {e_text}");
    // transformers' CLIPModel has no place for the gains
    let err = clip
        .save_hf(dir.path().join("hf"), StorageType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer scale"), "{err}");
}

#[test]
fn average_pooling_and_clipas_image_tower_match_open_clip() {
    let device = Default::default();
    for (name, ln_pre, final_ln) in [("vit_avg", true, false), ("vit_clipa", false, true)] {
        let clip = Pretrained::<Flex>::load(fixture(&format!("options/{name}")), &device).unwrap();
        let VisionConfig::Vit {
            pool,
            ln_pre: has_ln_pre,
            final_ln_after_pool,
            ..
        } = clip.config.vision
        else {
            panic!("a ViT")
        };
        assert_eq!(
            (pool, has_ln_pre, final_ln_after_pool),
            (clip::encoders::VitPool::Average, ln_pre, final_ln)
        );
        let (e_image, e_text) = parity(&clip, name);
        println!("{name}: image embeds relative error {e_image:.2e}, text {e_text:.2e}");
        assert!(
            e_image < 1e-5 && e_text < 1e-5,
            "{name}: {e_image} {e_text}"
        );
        // open_clip's layout keeps the options; transformers' has no place for them
        let dir = tempfile::tempdir().unwrap();
        clip.save_open_clip_as(dir.path(), StorageType::F32)
            .unwrap();
        let back = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
        assert_eq!(back.config, clip.config);
        let err = clip
            .save_hf(dir.path().join("hf"), StorageType::F32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pool"), "{err}");
    }
}

#[test]
fn bidirectional_text_pooled_at_the_last_position_and_eos_pooling_match_open_clip() {
    let device = Default::default();
    for (name, causal, pool, end_token) in [
        ("text_last", false, clip::encoders::TextPool::Last, None),
        (
            "text_eos",
            true,
            clip::encoders::TextPool::EndToken,
            Some(7),
        ),
    ] {
        let clip = Pretrained::<Flex>::load(fixture(&format!("options/{name}")), &device).unwrap();
        let t = &clip.config.text;
        assert_eq!((t.causal, t.pool, t.end_token), (causal, pool, end_token));
        // neither may cut the padding: the bidirectional tower sees it, and pools the last position
        assert_eq!(clip.model.text.trims_padding(), name == "text_eos");
        let (e_image, e_text) = parity(&clip, name);
        println!("{name}: image embeds relative error {e_image:.2e}, text {e_text:.2e}");
        assert!(
            e_image < 1e-5 && e_text < 1e-5,
            "{name}: {e_image} {e_text}"
        );
        let dir = tempfile::tempdir().unwrap();
        clip.save_open_clip_as(dir.path(), StorageType::F32)
            .unwrap();
        let back = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
        assert_eq!(back.config, clip.config);
        let err = clip
            .save_hf(dir.path().join("hf"), StorageType::F32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("text tower"), "{err}");
    }
}
