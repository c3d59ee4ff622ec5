//! Weight import and export: architecture inference against open_clip's real layouts, typed errors on
//! bad files, and round trips through open_clip safetensors and burn's own format.

mod common;

use std::collections::BTreeMap;

use burn::tensor::TensorData;
use clip::weights::{open_clip_state_dict, write_safetensors};
use clip::{ClipConfig, ClipError, Pretrained, StateDict};
use common::*;

fn architectures() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("architectures.json")).unwrap()).unwrap()
}

fn shapes_of(arch: &serde_json::Value) -> BTreeMap<String, Vec<usize>> {
    serde_json::from_value(arch["shapes"].clone()).unwrap()
}

#[test]
fn infers_openai_architectures_from_open_clip_shapes() {
    let archs = architectures();
    for (name, preset) in [
        ("ViT-B-32-quickgelu", "ViT-B/32"),
        ("RN50-quickgelu", "RN50"),
        ("ViT-B-16", "ViT-B/16"),
        ("ViT-L-14", "ViT-L/14"),
    ] {
        let inferred = ClipConfig::infer(&shapes_of(&archs[name])).unwrap();
        assert_eq!(inferred, ClipConfig::preset(preset).unwrap(), "{name}");
    }
}

#[test]
fn parameter_counts_and_shapes_equal_open_clip() {
    // Every tensor of open_clip's ViT-B/32 and RN50 exists here with the same shape, and nothing else.
    let archs = architectures();
    let device = Default::default();
    for (name, preset, count) in [
        ("ViT-B-32-quickgelu", "ViT-B/32", 151_277_313),
        ("RN50-quickgelu", "RN50", 102_007_137),
    ] {
        let model = ClipConfig::preset(preset)
            .unwrap()
            .init::<B>(&device)
            .unwrap();
        assert_eq!(model.parameter_count(), count, "{name}");
        assert_eq!(archs[name]["parameters"].as_u64().unwrap() as usize, count);
        let ours: BTreeMap<String, Vec<usize>> = open_clip_state_dict(&model)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.shape.to_vec()))
            .collect();
        let theirs: BTreeMap<String, Vec<usize>> = shapes_of(&archs[name])
            .into_iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .collect();
        assert_eq!(ours, theirs, "{name}");
    }
}

fn tiny_weights() -> StateDict {
    StateDict::read(fixture("vit_tiny/open_clip_model.safetensors")).unwrap()
}

/// Writes a copy of the vit_tiny directory whose weights went through `edit`.
fn edited_model(
    edit: impl FnOnce(&mut BTreeMap<String, TensorData>),
) -> (tempfile::TempDir, Result<Pretrained<B>, ClipError>) {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = tiny_weights();
    edit(&mut sd.tensors);
    write_safetensors(&dir.path().join("open_clip_model.safetensors"), &sd.tensors).unwrap();
    std::fs::copy(
        fixture("vit_tiny/open_clip_config.json"),
        dir.path().join("open_clip_config.json"),
    )
    .unwrap();
    let result = Pretrained::<B>::load(dir.path(), &Default::default());
    (dir, result)
}

#[test]
fn missing_tensor_is_named() {
    let (_dir, result) = edited_model(|t| {
        t.remove("visual.ln_post.bias");
    });
    match result {
        Err(ClipError::MissingKey { key, .. }) => assert_eq!(key, "visual.ln_post.bias"),
        other => panic!("{other:?}"),
    }
}

/// A Hugging Face checkpoint missing one of a layer's q/k/v projections: the error names that
/// tensor in the file's own naming (the three are packed into one on import).
#[test]
fn missing_hf_attention_part_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture(&format!("hf_tiny/{file}")), dir.path().join(file)).unwrap();
    }
    let mut sd = StateDict::read(fixture("hf_tiny/model.safetensors")).unwrap();
    let key = "vision_model.encoder.layers.1.self_attn.k_proj.weight";
    assert!(sd.tensors.remove(key).is_some(), "hf_tiny has {key}");
    write_safetensors(&dir.path().join("model.safetensors"), &sd.tensors).unwrap();
    match Pretrained::<B>::load(dir.path(), &Default::default()) {
        Err(ClipError::MissingKey { key: named, .. }) => assert_eq!(named, key),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_shape_names_key_and_both_shapes() {
    let (_dir, result) = edited_model(|t| {
        t.insert(
            "visual.proj".into(),
            TensorData::new(vec![0f32; 64 * 16], [64, 16]),
        );
    });
    match result {
        Err(e @ ClipError::Shape { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("visual.proj") && msg.contains("[64, 16]") && msg.contains("[64, 32]"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    // a Linear weight is reported in the file's own [out, in] orientation
    let (_dir, result) = edited_model(|t| {
        t.insert(
            "transformer.resblocks.0.mlp.c_fc.weight".into(),
            TensorData::new(vec![0f32; 100 * 32], [100, 32]),
        );
    });
    match result {
        Err(ClipError::Shape {
            key,
            expected,
            found,
            ..
        }) => {
            assert_eq!(key, "transformer.resblocks.0.mlp.c_fc.weight");
            assert_eq!((expected, found), (vec![128, 32], vec![100, 32]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unexpected_tensor_is_named() {
    let (_dir, result) = edited_model(|t| {
        t.insert(
            "visual.extra_head.weight".into(),
            TensorData::new(vec![0f32; 4], [4]),
        );
    });
    match result {
        Err(ClipError::UnexpectedKey { key, .. }) => assert_eq!(key, "visual.extra_head.weight"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_and_garbage_weight_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("vit_tiny/open_clip_model.safetensors")).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    match StateDict::read(&cut) {
        // the first tensor past the cut is named
        Err(ClipError::Weights { message, .. }) => {
            assert!(
                message.starts_with("tensor ") && message.contains("truncated"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let header_only = dir.path().join("header_only.safetensors");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    std::fs::write(&header_only, &bytes[..8 + header_len]).unwrap();
    assert!(matches!(
        StateDict::read(&header_only),
        Err(ClipError::Weights { .. })
    ));
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"definitely not a checkpoint").unwrap();
    let err = StateDict::read(&junk).unwrap_err();
    assert!(err.to_string().contains("junk.bin"), "{err}");
}

#[test]
fn config_errors_name_the_field() {
    let base: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("vit_tiny/open_clip_config.json")).unwrap(),
    )
    .unwrap();
    let mut unknown = base.clone();
    unknown["model_cfg"]["vision_cfg"]["wdith"] = 3.into();
    let err = ClipConfig::from_open_clip_json(&unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("vision_cfg.wdith"), "{err}");
    let mut variant = base.clone();
    // a pooling that gives no single vector per text
    variant["model_cfg"]["text_cfg"]["pool_type"] = "none".into();
    let err = ClipConfig::from_open_clip_json(&variant)
        .unwrap_err()
        .to_string();
    assert!(err.contains("text_cfg.pool_type"), "{err}");
    let mut inconsistent = base.clone();
    inconsistent["model_cfg"]["text_cfg"]["heads"] = 3.into();
    let err = ClipConfig::from_open_clip_json(&inconsistent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("text width 32") && err.contains("3 heads"),
        "{err}"
    );
    assert!(ClipConfig::preset("ViT-Q/99").is_err());
}

fn embeddings(clip: &Pretrained<B>) -> (Vec<f32>, Vec<f32>) {
    let device = Default::default();
    let reference = Reference::open("reference/vit_tiny.safetensors");
    let pixels = reference.tensor4::<B>("pixel_values", &device);
    let size = clip.model.image_size();
    let pixels = burn::tensor::module::interpolate(
        pixels,
        [size, size],
        burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Nearest),
    );
    let image = values(clip.model.encode_image(pixels));
    let text = values(
        clip.embed_texts(&["a photo of a cat", "rocket launch"], &device)
            .unwrap(),
    );
    (image, text)
}

#[test]
fn open_clip_export_round_trips() {
    let device = Default::default();
    for source in ["vit_tiny", "rn_tiny"] {
        let original = Pretrained::<B>::load(fixture(source), &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        original.save_open_clip(dir.path()).unwrap();
        let exported = StateDict::read(dir.path().join("open_clip_model.safetensors")).unwrap();
        if source == "vit_tiny" {
            // identical tensors to the file we read (there fp16, here f32), same key set
            let theirs = tiny_weights();
            assert_eq!(
                exported.tensors.keys().collect::<Vec<_>>(),
                theirs.tensors.keys().collect::<Vec<_>>()
            );
            for (k, v) in &theirs.tensors {
                let a = v.clone().convert::<f32>().to_vec::<f32>().unwrap();
                let b = exported.tensors[k].to_vec::<f32>().unwrap();
                assert_eq!(a, b, "{k}");
            }
        }
        let reloaded = Pretrained::<B>::load(dir.path(), &device).unwrap();
        assert_eq!(reloaded.config, original.config, "{source}");
        assert_eq!(embeddings(&reloaded), embeddings(&original), "{source}");
    }
}

/// hf_tiny's text tower uses ReLU, which open_clip's configs cannot say: the export is refused, by
/// name, and writes nothing.
#[test]
fn open_clip_export_refuses_activations_it_cannot_express() {
    let device = Default::default();
    let hf = Pretrained::<B>::load(fixture("hf_tiny"), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("export");
    let err = hf.save_open_clip(&target).unwrap_err().to_string();
    assert!(err.contains("image tower Gelu, text tower Relu"), "{err}");
    assert!(!target.exists());
}

#[test]
fn burn_format_round_trips() {
    let device = Default::default();
    let original = Pretrained::<B>::load(fixture("rn_tiny"), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    original.save_burn(dir.path()).unwrap();
    let reloaded = Pretrained::<B>::load(dir.path(), &device).unwrap();
    assert_eq!(
        reloaded.config_source,
        clip::ConfigSource::Burn(dir.path().join("clip_config.json"))
    );
    assert_eq!(reloaded.preprocess, original.preprocess);
    assert_eq!(embeddings(&reloaded), embeddings(&original));

    // f16 storage: about half the bytes, read back as f32 with f16's rounding only
    let half = tempfile::tempdir().unwrap();
    original.save_burn_half(half.path()).unwrap();
    let size = |d: &std::path::Path| std::fs::metadata(d.join("model.bpk")).unwrap().len();
    let (full_bytes, half_bytes) = (size(dir.path()), size(half.path()));
    assert!(
        half_bytes * 10 < full_bytes * 6,
        "{half_bytes} bytes in f16 vs {full_bytes} in f32"
    );
    let from_half = Pretrained::<B>::load(half.path(), &device).unwrap();
    let flat = |(i, t): (Vec<f32>, Vec<f32>)| [i, t].concat();
    let (a, b) = (flat(embeddings(&from_half)), flat(embeddings(&original)));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        worst > 0.0,
        "f16 rounding must show: were the weights stored in f16?"
    );
    assert!(
        worst < 1e-2 * scale,
        "f16 weights moved an embedding by {worst} (scale {scale})"
    );
}

#[test]
fn bare_weights_file_with_inferred_architecture() {
    // A model with OpenAI's 64-wide heads, saved as a bare state dict, loads without any config.
    let device = Default::default();
    let mut config = ClipConfig::tiny_vit();
    config.text.width = 64;
    config.text.heads = 1;
    if let clip::VisionConfig::Vit { heads, .. } = &mut config.vision {
        *heads = 1;
    }
    let model = config.init::<B>(&device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weights.safetensors");
    clip::weights::save_open_clip_safetensors(&model, &file).unwrap();
    let loaded = Pretrained::<B>::load(&file, &device).unwrap();
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.config_source, clip::ConfigSource::Inferred);
    let ids = loaded.tokenize(&["a diagram"], &device).unwrap();
    assert_eq!(
        values(loaded.model.encode_text(ids.clone())),
        values(model.encode_text(ids))
    );
    // the tiny fixture's 32-wide text tower cannot be inferred: the error says why
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.safetensors");
    std::fs::copy(fixture("vit_tiny/open_clip_model.safetensors"), &bare).unwrap();
    let err = Pretrained::<B>::load(&bare, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiple of 64"), "{err}");
}
