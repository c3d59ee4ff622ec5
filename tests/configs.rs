//! Configs as open_clip and transformers ship them.

mod common;

use clip::encoders::Activation;
use clip::{ClipConfig, VisionConfig};
use common::*;

fn read(name: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("configs/{name}.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn open_clip_quickgelu_configs_equal_openai_presets() {
    for (file, preset) in [
        ("ViT-B-32-quickgelu", "ViT-B/32"),
        ("RN50-quickgelu", "RN50"),
        ("RN101-quickgelu", "RN101"),
    ] {
        assert_eq!(
            ClipConfig::from_open_clip_json(&read(file)).unwrap(),
            ClipConfig::preset(preset).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn open_clip_plain_configs_use_exact_gelu() {
    // open_clip's configs without -quickgelu train with nn.GELU: same shapes as OpenAI's, other activation
    for (file, preset) in [
        ("RN50x4", "RN50x4"),
        ("RN50x64", "RN50x64"),
        ("ViT-B-16", "ViT-B/16"),
        ("ViT-L-14-336", "ViT-L/14@336px"),
    ] {
        let mut expected = ClipConfig::preset(preset).unwrap();
        expected.text.activation = Activation::Gelu;
        if let VisionConfig::Vit { activation, .. } = &mut expected.vision {
            *activation = Activation::Gelu;
        }
        assert_eq!(
            ClipConfig::from_open_clip_json(&read(file)).unwrap(),
            expected,
            "{file}"
        );
    }
    let h14 = ClipConfig::from_open_clip_json(&read("ViT-H-14")).unwrap();
    assert!(matches!(
        h14.vision,
        VisionConfig::Vit {
            width: 1280,
            layers: 32,
            heads: 16,
            patch_size: 14,
            ..
        }
    ));
    assert_eq!(
        (
            h14.embed_dim,
            h14.text.width,
            h14.text.heads,
            h14.text.layers
        ),
        (1024, 1024, 16, 24)
    );
}

#[test]
fn unsupported_open_clip_variants_are_refused_by_name() {
    let siglip = ClipConfig::from_open_clip_json(&read("ViT-B-16-SigLIP"))
        .unwrap_err()
        .to_string();
    assert!(
        siglip.contains("init_logit_bias") || siglip.contains("timm_model_name"),
        "{siglip}"
    );
    let coca = ClipConfig::from_open_clip_json(&read("coca_ViT-B-32"))
        .unwrap_err()
        .to_string();
    assert!(
        coca.contains("multimodal_cfg") || coca.contains("coca"),
        "{coca}"
    );
}

#[test]
fn hf_default_config_is_vit_b_32() {
    assert_eq!(
        ClipConfig::from_hf_json(&read("hf-clip-vit-base-patch32")).unwrap(),
        ClipConfig::preset("ViT-B/32").unwrap()
    );
    let mut other = read("hf-clip-vit-base-patch32");
    other["model_type"] = "siglip".into();
    assert!(ClipConfig::from_hf_json(&other)
        .unwrap_err()
        .to_string()
        .contains("siglip"));
    let mut act = read("hf-clip-vit-base-patch32");
    act["vision_config"]["hidden_act"] = "relu".into();
    let relu = ClipConfig::from_hf_json(&act).unwrap();
    assert!(matches!(
        relu.vision,
        VisionConfig::Vit {
            activation: Activation::Relu,
            ..
        }
    ));
    assert_eq!(relu.text.activation, Activation::QuickGelu);
    act["vision_config"]["hidden_act"] = "gelu_new".into();
    assert!(ClipConfig::from_hf_json(&act)
        .unwrap_err()
        .to_string()
        .contains("vision_config.hidden_act"));
}
