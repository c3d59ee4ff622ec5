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
    // a timm tower other than SigLIP's ViT, and an option of SigLIP's that is not implemented
    let mut convnext = read("ViT-B-16-SigLIP");
    convnext["vision_cfg"]["timm_model_name"] = "convnext_base".into();
    let err = ClipConfig::from_open_clip_json(&convnext)
        .unwrap_err()
        .to_string();
    assert!(err.contains("timm_model_name \"convnext_base\""), "{err}");
    let mut gap = read("ViT-B-16-SigLIP");
    gap["vision_cfg"]["timm_pool"] = "avg".into();
    let err = ClipConfig::from_open_clip_json(&gap)
        .unwrap_err()
        .to_string();
    assert!(err.contains("vision_cfg.timm_pool"), "{err}");
    let mut act = read("ViT-B-16-SigLIP");
    act["text_cfg"]["act_kwargs"] = serde_json::json!({"approximate": "none", "inplace": true});
    let err = ClipConfig::from_open_clip_json(&act)
        .unwrap_err()
        .to_string();
    assert!(err.contains("text_cfg.act_kwargs"), "{err}");
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
    other["model_type"] = "align".into();
    assert!(ClipConfig::from_hf_json(&other)
        .unwrap_err()
        .to_string()
        .contains("\"align\""));
    // a CLIP config relabelled siglip is read as SigLIP's, and its CLIP epsilon refused
    other["model_type"] = "siglip".into();
    let err = ClipConfig::from_hf_json(&other).unwrap_err().to_string();
    assert!(err.contains("layer_norm_eps"), "{err}");
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

/// The 55 open_clip 3.3.0 configs with its standard towers (computed from its `model_configs/` in
/// Python: no timm or Hugging Face tower, no CoCa): the plain ones, CLIPA's (BERT tokenizer, no
/// `ln_pre`, average pooling) and the worldwide MetaCLIP 2 ones (mT5 / XLM-V tokenizers, `eos` pooling).
const STANDARD_OPEN_CLIP_CONFIGS: [&str; 55] = [
    "RN101-quickgelu",
    "RN101",
    "RN50-quickgelu",
    "RN50",
    "RN50x16-quickgelu",
    "RN50x16",
    "RN50x4-quickgelu",
    "RN50x4",
    "RN50x64-quickgelu",
    "RN50x64",
    "ViT-B-16-plus-240",
    "ViT-B-16-plus",
    "ViT-B-16-quickgelu",
    "ViT-B-16",
    "ViT-B-32-256",
    "ViT-B-32-plus-256",
    "ViT-B-32-quickgelu",
    "ViT-B-32",
    "ViT-H-14-378-quickgelu",
    "ViT-H-14-378",
    "ViT-H-14-quickgelu",
    "ViT-H-14",
    "ViT-H-16",
    "ViT-L-14-280",
    "ViT-L-14-336-quickgelu",
    "ViT-L-14-336",
    "ViT-L-14-quickgelu",
    "ViT-L-14",
    "ViT-L-16-320",
    "ViT-L-16",
    "ViT-M-16",
    "ViT-M-16-alt",
    "ViT-M-32-alt",
    "ViT-M-32",
    "ViT-S-16-alt",
    "ViT-S-16",
    "ViT-S-32-alt",
    "ViT-S-32",
    "ViT-bigG-14-quickgelu",
    "ViT-bigG-14",
    "ViT-e-14",
    "ViT-g-14",
    "ViT-H-14-CLIPA",
    "ViT-H-14-CLIPA-336",
    "ViT-L-14-CLIPA",
    "ViT-L-14-CLIPA-336",
    "ViT-bigG-14-CLIPA",
    "ViT-bigG-14-CLIPA-336",
    "ViT-H-14-worldwide",
    "ViT-H-14-worldwide-378",
    "ViT-H-14-worldwide-quickgelu",
    "ViT-L-14-worldwide",
    "ViT-L-14-worldwide-quickgelu",
    "ViT-bigG-14-worldwide",
    "ViT-bigG-14-worldwide-378",
];

/// open_clip 3.3.0's SigLIP and SigLIP 2 configs (timm `vit_*_siglip_*` towers) that load: all but the
/// NLLB ones (Hugging Face text towers).
const SIGLIP_OPEN_CLIP_CONFIGS: [&str; 26] = [
    "ViT-B-16-SigLIP",
    "ViT-B-16-SigLIP-256",
    "ViT-B-16-SigLIP-384",
    "ViT-B-16-SigLIP-512",
    "ViT-B-16-SigLIP-i18n-256",
    "ViT-B-16-SigLIP2",
    "ViT-B-16-SigLIP2-256",
    "ViT-B-16-SigLIP2-384",
    "ViT-B-16-SigLIP2-512",
    "ViT-B-32-SigLIP2-256",
    "ViT-L-16-SigLIP-256",
    "ViT-L-16-SigLIP-384",
    "ViT-L-16-SigLIP2-256",
    "ViT-L-16-SigLIP2-384",
    "ViT-L-16-SigLIP2-512",
    "ViT-SO400M-14-SigLIP",
    "ViT-SO400M-14-SigLIP-378",
    "ViT-SO400M-14-SigLIP-384",
    "ViT-SO400M-14-SigLIP2",
    "ViT-SO400M-14-SigLIP2-378",
    "ViT-SO400M-16-SigLIP-i18n-256",
    "ViT-SO400M-16-SigLIP2-256",
    "ViT-SO400M-16-SigLIP2-384",
    "ViT-SO400M-16-SigLIP2-512",
    "ViT-gopt-16-SigLIP2-256",
    "ViT-gopt-16-SigLIP2-384",
];

#[test]
fn bundled_open_clip_configs_load_by_name_or_are_refused_naming_the_option() {
    let names = clip::open_clip_config_names();
    assert_eq!(names.len(), 144);
    let mut loaded = Vec::new();
    for name in names {
        match ClipConfig::named(name) {
            Ok(_) => loaded.push(name),
            Err(e) => {
                let e = e.to_string();
                // the refusal names the config and an option it uses
                assert!(e.contains(name), "{e}");
                assert!(
                    [
                        "timm_model_name",
                        "hf_model_name",
                        "hf_tokenizer_name",
                        "ls_init_value",
                        "no_ln_pre",
                        "pool_type",
                        "multimodal_cfg",
                        "no_causal_mask",
                        "eos_id",
                        "final_ln_after_pool",
                        "tokenizer_kwargs",
                        "custom_text",
                        "init_logit_bias",
                        "attentional_pool",
                        "proj_type",
                        "act_kwargs",
                        "norm_kwargs",
                    ]
                    .iter()
                    .any(|o| e.contains(o)),
                    "{e}"
                );
            }
        }
    }
    let mut expected = STANDARD_OPEN_CLIP_CONFIGS.to_vec();
    expected.extend(SIGLIP_OPEN_CLIP_CONFIGS);
    expected.sort_unstable();
    loaded.sort_unstable();
    assert_eq!(loaded, expected);
    // the text side names its tokenizer and how open_clip runs it
    let clipa = ClipConfig::named("ViT-L-14-CLIPA").unwrap().text;
    let tokenizer = clipa.hf_tokenizer.unwrap();
    assert_eq!(
        (
            tokenizer.name.as_str(),
            tokenizer.strip_sep_token,
            clipa.context_length
        ),
        ("bert-base-uncased", true, 32)
    );
    let worldwide = ClipConfig::named("ViT-L-14-worldwide").unwrap().text;
    assert_eq!(worldwide.end_token, Some(1));
    assert_eq!(
        worldwide.hf_tokenizer.unwrap().cleaning,
        clip::tokenizer::Cleaning::Canonicalize
    );
    // the non-default shapes come through: 80-wide heads, 240 px, a 4.9231 MLP
    let ViT { heads, .. } = vit(ClipConfig::named("ViT-H-14").unwrap()) else {
        unreachable!()
    };
    assert_eq!(heads, 16);
    let c = ClipConfig::named("ViT-B-16-plus-240").unwrap();
    assert_eq!((c.image_size(), c.embed_dim), (240, 640));
    let err = ClipConfig::named("ViT-B-32x").unwrap_err().to_string();
    assert!(err.contains("ViT-B-32"), "{err}");
}

use VisionConfig::Vit as ViT;

fn vit(c: ClipConfig) -> VisionConfig {
    c.vision
}

#[test]
fn load_named_reads_weights_into_the_named_architecture() {
    let device = Default::default();
    type B = burn::backend::Flex;
    let config = fixture("vit_tiny/open_clip_config.json");
    let weights = fixture("vit_tiny/open_clip_model.safetensors");
    let clip =
        clip::Pretrained::<B>::load_named(config.to_str().unwrap(), &weights, &device).unwrap();
    let reference = Reference::open("reference/vit_tiny.safetensors");
    let image = clip
        .model
        .encode_image(reference.tensor4::<B>("pixel_values", &device));
    let (want, _) = reference.f32("image_embeds");
    let e = relative_error(&values(image), &want);
    assert!(e < 1e-5, "{e}");
    // weights of another architecture are refused, naming a tensor
    let err = clip::Pretrained::<B>::load_named("RN50", &weights, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("open_clip_model.safetensors") && err.contains("has shape"),
        "{err}"
    );
}

#[test]
fn the_readme_table_of_supported_models_is_the_generated_one() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let (start, end) = (
        "<!-- supported-models:start -->\n",
        "<!-- supported-models:end -->",
    );
    let from = readme.find(start).expect("start marker") + start.len();
    let to = readme.find(end).expect("end marker");
    let table = clip::supported_models_table();
    assert_eq!(
        &readme[from..to],
        table,
        "README.md's table is out of date: replace it with `clip info --config table`"
    );
    // the counts add up to the 144 configs, 81 of which load
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(2)
        .map(|l| l.split(" | ").collect())
        .collect();
    let total: usize = rows.iter().map(|r| r[1].parse::<usize>().unwrap()).sum();
    let loading: usize = rows.iter().map(|r| r[2].parse::<usize>().unwrap()).sum();
    assert_eq!((total, loading), (144, 81));
}
