//! open_clip's model options, each on a small model against open_clip's own embeddings
//! (scripts/gen_option_fixtures.py).

mod common;

use burn::backend::Flex;
use clip::tokenizer::TextTokenizer;
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

/// `clip`'s text embeddings of the fixture's texts (tokenized by `clip` itself) against open_clip's
/// (tokenized by its `HFTokenizer`), with the ids compared first.
fn text_parity_from_texts(clip: &Pretrained<Flex>, name: &str) -> f32 {
    let reference = Reference::open(&format!("options/{name}/reference.safetensors"));
    let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
    let (expected_ids, _) = reference.i64("hf_text_ids");
    let ids = clip.tokenizer.tokenize_data(&texts).unwrap();
    assert_eq!(
        ids.to_vec::<i64>().unwrap(),
        expected_ids,
        "{name}: token ids"
    );
    let got = values(clip.embed_texts(&texts, &Default::default()).unwrap());
    relative_error(&got, &reference.f32("hf_text_embeds").0)
}

#[test]
fn models_with_a_hugging_face_tokenizer_embed_texts_as_open_clip() {
    let device = Default::default();
    // CLIPA's text side (separator stripped, bidirectional, last position) and the worldwide
    // models' (canonicalized, causal, pooled at the tokenizer's own end token, padding trimmed)
    for (name, strip, trims) in [("hf_clipa", true, false), ("hf_eos", false, true)] {
        let clip = Pretrained::<Flex>::load(fixture(&format!("options/{name}")), &device).unwrap();
        let spec = clip.config.text.hf_tokenizer.clone().unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.strip_sep_token),
            ("bert-base-uncased", strip)
        );
        assert!(matches!(clip.tokenizer, TextTokenizer::HuggingFace(_)));
        assert_eq!(clip.model.text.trims_padding(), trims);
        let e_text = text_parity_from_texts(&clip, name);
        let (e_image, _) = parity(&clip, name);
        println!("{name}: text embeds from texts relative error {e_text:.2e}, image {e_image:.2e}");
        assert!(
            e_text < 1e-5 && e_image < 1e-5,
            "{name}: {e_text} {e_image}"
        );

        // every format we write keeps the tokenizer: its name in the config, its files beside
        for format in ["open_clip", "burn"] {
            let dir = tempfile::tempdir().unwrap();
            match format {
                "open_clip" => clip
                    .save_open_clip_as(dir.path(), StorageType::F32)
                    .unwrap(),
                _ => clip.save_burn(dir.path()).unwrap(),
            }
            assert!(dir.path().join("tokenizer.json").is_file(), "{format}");
            let back = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
            assert_eq!(back.config, clip.config, "{format}");
            assert!(text_parity_from_texts(&back, name) < 1e-5, "{format}");
        }
    }
}

#[test]
fn a_missing_or_wrong_hugging_face_tokenizer_is_named() {
    let device = Default::default();
    // the weights and config alone, as a hub download of CLIPA has them: images embed, texts are
    // refused naming the tokenizer, and --tokenizer (with_tokenizer) supplies it
    let dir = tempfile::tempdir().unwrap();
    for file in ["open_clip_config.json", "open_clip_model.safetensors"] {
        std::fs::copy(
            fixture(&format!("options/hf_clipa/{file}")),
            dir.path().join(file),
        )
        .unwrap();
    }
    let clip = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
    let (e_image, _) = parity(&clip, "hf_clipa");
    assert!(e_image < 1e-5, "{e_image}");
    let err = clip
        .embed_texts(&["a cat"], &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bert-base-uncased") && err.contains("--tokenizer"),
        "{err}"
    );
    // a tokenizer file of any name; a saved model carries it as tokenizer.json
    let renamed = dir.path().join("bert_tiny_tok.json");
    std::fs::copy(fixture("hf_tokenizer/bert_tiny/tokenizer.json"), &renamed).unwrap();
    let clip = clip.with_tokenizer(&renamed).unwrap();
    assert!(text_parity_from_texts(&clip, "hf_clipa") < 1e-5);
    let saved = dir.path().join("saved");
    clip.save_burn(&saved).unwrap();
    let back = Pretrained::<Flex>::load(&saved, &device).unwrap();
    assert!(text_parity_from_texts(&back, "hf_clipa") < 1e-5);

    // a tokenizer larger than the token table is another model's: refused with both sizes
    let mut config = clip.config.clone();
    config.text.vocab_size = 1000;
    let err = clip::tokenizer_for(&config, Some(&fixture("hf_tokenizer/bert_tiny")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2026 tokens") && err.contains("1000 rows"),
        "{err}"
    );

    // CLIP's own tokenizer is built in: a tokenizer file for such a model is a mistake
    let err = Pretrained::<Flex>::load(fixture("options/text_eos"), &device)
        .unwrap()
        .with_tokenizer(fixture("hf_tokenizer/bert_tiny"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("CLIP's own tokenizer"), "{err}");
}

#[test]
fn a_text_tower_without_a_projection_matches_open_clip() {
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("options/text_noproj"), &device).unwrap();
    assert!(!clip.config.text.projection && clip.model.text_projection.is_none());
    assert_eq!(clip.model.embed_dim(), 24);
    let (e_image, e_text) = parity(&clip, "text_noproj");
    println!("text_noproj: image embeds relative error {e_image:.2e}, text {e_text:.2e}");
    assert!(e_image < 1e-5 && e_text < 1e-5, "{e_image} {e_text}");
    // open_clip's layout keeps it (proj_type none); transformers' CLIPModel always projects
    let dir = tempfile::tempdir().unwrap();
    clip.save_open_clip_as(dir.path(), StorageType::F32)
        .unwrap();
    let back = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
    assert_eq!(back.config, clip.config);
    let (e_image, e_text) = parity(&back, "text_noproj");
    assert!(e_image < 1e-5 && e_text < 1e-5, "{e_image} {e_text}");
    let err = clip
        .save_hf(dir.path().join("hf"), StorageType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("proj_type none"), "{err}");
}
