//! SigLIP in open_clip's layout (a timm `vit_*_siglip_*` image trunk with attention pooling, a
//! bidirectional text tower pooled at the last position with a biased projection, a learned logit
//! bias) against open_clip's own outputs on small random-init models (scripts/gen_siglip_fixtures.py).

mod common;

use burn::backend::Flex;
use clip::encoders::Activation;
use clip::tokenizer::TextTokenizer;
use clip::{Pretrained, VisionConfig};
use common::*;

#[test]
fn siglip_models_match_open_clip_from_pixels_and_texts() {
    let device = Default::default();
    for (name, activation) in [
        ("siglip", Activation::Gelu),
        ("siglip2", Activation::GeluTanh),
    ] {
        let clip = Pretrained::<Flex>::load(fixture(&format!("siglip/{name}")), &device).unwrap();
        let VisionConfig::SiglipVit {
            activation: vision_activation,
            width,
            ..
        } = clip.config.vision
        else {
            panic!("{name}: a SigLIP image tower, not {:?}", clip.config.vision)
        };
        assert_eq!(
            (vision_activation, clip.config.text.activation),
            (activation, activation)
        );
        assert_eq!((width, clip.config.text.norm_eps), (64, 1e-6));
        assert_eq!(clip.config.logit_bias, Some(-10.0));
        assert!(
            clip.model.visual_projection.is_none()
                && clip
                    .model
                    .text_projection
                    .as_ref()
                    .is_some_and(|p| p.bias.is_some())
        );
        assert!(matches!(clip.tokenizer, TextTokenizer::HuggingFace(_)));

        let reference = Reference::open(&format!("siglip/{name}/reference.safetensors"));
        let (e_image, e_text) = reference.errors_of(&clip.model);
        // the texts through our tokenizer: the same ids as open_clip's HFTokenizer, the same embeddings
        let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
        let ids = clip.tokenizer.tokenize_data(&texts).unwrap();
        assert_eq!(
            ids.to_vec::<i64>().unwrap(),
            reference.i64("text_ids").0,
            "{name}"
        );
        let text = clip.embed_texts(&texts, &device).unwrap();
        let e_from_texts = relative_error(&values(text.clone()), &reference.f32("text_embeds").0);
        // sigmoid logits: scale · cos + the loaded bias (-3.7, not the config's initial -10)
        let image = clip
            .model
            .encode_image(reference.tensor4::<Flex>("pixel_values", &device));
        let logits = values(clip.model.logits_per_image(image, text));
        let e_logits = relative_error(&logits, &reference.f32("logits_per_image").0);
        println!(
            "{name}: image embeds relative error {e_image:.2e}, text {e_text:.2e} (from texts \
             {e_from_texts:.2e}), logits {e_logits:.2e}"
        );
        for e in [e_image, e_text, e_from_texts, e_logits] {
            assert!(
                e < 1e-5,
                "{name}: {e_image} {e_text} {e_from_texts} {e_logits}"
            );
        }
    }
}

#[test]
fn open_clips_siglip_configs_load_by_name() {
    let c = clip::ClipConfig::named("ViT-SO400M-14-SigLIP-384").unwrap();
    let VisionConfig::SiglipVit {
        image_size,
        patch_size,
        width,
        layers,
        heads,
        mlp_ratio,
        activation,
        naflex,
    } = c.vision
    else {
        panic!("{:?}", c.vision)
    };
    assert_eq!(
        (image_size, patch_size, width, layers, heads, activation),
        (384, 14, 1152, 27, 16, Activation::Gelu)
    );
    assert!(!naflex);
    assert_eq!(mlp_ratio, 3.7362);
    assert_eq!(
        (c.embed_dim, c.logit_bias, c.text.context_length),
        (1152, Some(-10.0), 64)
    );
    // SigLIP 2's SO400M/16 towers use tanh GELU on both sides
    let c = clip::ClipConfig::named("ViT-SO400M-16-SigLIP2-256").unwrap();
    assert!(matches!(
        c.vision,
        VisionConfig::SiglipVit {
            activation: Activation::GeluTanh,
            ..
        }
    ));
    assert_eq!(c.text.activation, Activation::GeluTanh);
    // a timm tower that is not SigLIP's is refused by name
    let err = clip::ClipConfig::named("EVA02-B-16")
        .unwrap_err()
        .to_string();
    assert!(err.contains("timm_model_name"), "{err}");
}

#[test]
fn siglip_is_written_in_every_layout_and_reads_back_the_same() {
    let device = Default::default();
    for name in ["siglip", "siglip2", "hf_siglip"] {
        let clip = Pretrained::<Flex>::load(fixture(&format!("siglip/{name}")), &device).unwrap();
        let reference = Reference::open(&format!("siglip/{name}/reference.safetensors"));
        let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
        for layout in ["burn", "open_clip", "hf"] {
            let dir = tempfile::tempdir().unwrap();
            match layout {
                "burn" => clip.save_burn(dir.path()).unwrap(),
                "open_clip" => clip.save_open_clip(dir.path()).unwrap(),
                _ => clip.save_hf(dir.path(), clip::StorageType::F32).unwrap(),
            }
            let back = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
            assert_eq!(back.config.vision, clip.config.vision, "{name} {layout}");
            assert_eq!(back.config.text.activation, clip.config.text.activation);
            assert_eq!(back.preprocess.resize_mode, clip.preprocess.resize_mode);
            let (e_image, e_text) = reference.errors_of(&back.model);
            // the tokenizer and the logit bias come along
            assert!(
                matches!(back.tokenizer, TextTokenizer::HuggingFace(_)),
                "{name} {layout}"
            );
            let text = back.embed_texts(&texts, &device).unwrap();
            let image = back
                .model
                .encode_image(reference.tensor4::<Flex>("pixel_values", &device));
            let e_logits = relative_error(
                &values(back.model.logits_per_image(image, text)),
                &reference.f32("logits_per_image").0,
            );
            assert!(
                e_image < 1e-5 && e_text < 1e-5 && e_logits < 1e-5,
                "{name} written as {layout}: {e_image} {e_text} {e_logits}"
            );
        }
    }
    // transformers' SiglipModel has no causal text tower: such a model is refused by name
    let mut clip = Pretrained::<Flex>::load(fixture("siglip/siglip"), &device).unwrap();
    clip.config.text.causal = true;
    let dir = tempfile::tempdir().unwrap();
    let err = clip
        .save_hf(dir.path(), clip::StorageType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("SiglipModel"), "{err}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn siglip_zero_shot_scores_each_label_with_a_sigmoid() {
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("siglip/siglip"), &device).unwrap();
    let reference = Reference::open("siglip/siglip/reference.safetensors");
    let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
    // each text its own class (template "{}"): the class vectors are the normalized text embeddings,
    // so the scores are sigmoid of open_clip's logits
    let classifier = clip
        .zero_shot_classifier(&texts, &clip::zeroshot::Templates::none(), &device, |_| ())
        .unwrap();
    let scoring = clip.model.zero_shot_scoring(clip::zeroshot::DEFAULT_SCALE);
    let clip::zeroshot::Scoring::Sigmoid { scale, bias } = scoring else {
        panic!("{scoring:?}")
    };
    assert!(
        (scale - 2.3f64.exp()).abs() < 1e-4 && (bias + 3.7).abs() < 1e-6,
        "{scale} {bias}"
    );
    let image = clip
        .model
        .encode_image(reference.tensor4::<Flex>("pixel_values", &device));
    let got = values(classifier.scores(image, scoring));
    let want: Vec<f32> = reference
        .f32("logits_per_image")
        .0
        .iter()
        .map(|l| 1.0 / (1.0 + (-l).exp()))
        .collect();
    let e = relative_error(&got, &want);
    assert!(e < 1e-5, "{e}: {got:?} {want:?}");
    // not a distribution over the labels
    let first: f32 = got[..texts.len()].iter().sum();
    assert!((first - 1.0).abs() > 0.1, "{first}");
    // a CLIP model keeps the softmax
    let clip = Pretrained::<Flex>::load(fixture("vit_tiny"), &device).unwrap();
    assert_eq!(
        clip.model.zero_shot_scoring(100.0),
        clip::zeroshot::Scoring::Softmax { scale: 100.0 }
    );
}

#[test]
fn transformers_siglip_model_directories_match_transformers() {
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("siglip/hf_siglip"), &device).unwrap();
    assert_eq!(clip.layout, Some(clip::Layout::HuggingFace));
    let VisionConfig::SiglipVit {
        activation, width, ..
    } = clip.config.vision
    else {
        panic!("{:?}", clip.config.vision)
    };
    // transformers runs tanh GELU in both towers (gelu_pytorch_tanh)
    assert_eq!(
        (activation, clip.config.text.activation),
        (Activation::GeluTanh, Activation::GeluTanh)
    );
    assert_eq!((width, clip.config.embed_dim), (48, 48));
    // SiglipImageProcessor: a plain resize to the square, no crop, mean and std 0.5
    assert_eq!(clip.preprocess.resize_mode, clip::data::ResizeMode::Squash);
    assert_eq!((clip.preprocess.size, clip.preprocess.mean), (32, [0.5; 3]));
    let reference = Reference::open("siglip/hf_siglip/reference.safetensors");
    let (e_image, e_text) = reference.errors_of(&clip.model);
    let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
    let text = clip.embed_texts(&texts, &device).unwrap();
    let e_from_texts = relative_error(&values(text.clone()), &reference.f32("text_embeds").0);
    let image = clip
        .model
        .encode_image(reference.tensor4::<Flex>("pixel_values", &device));
    let e_logits = relative_error(
        &values(clip.model.logits_per_image(image, text)),
        &reference.f32("logits_per_image").0,
    );
    println!(
        "hf_siglip: image embeds relative error {e_image:.2e}, text {e_text:.2e} (from texts \
         {e_from_texts:.2e}), logits {e_logits:.2e}"
    );
    for e in [e_image, e_text, e_from_texts, e_logits] {
        assert!(e < 1e-5, "{e_image} {e_text} {e_from_texts} {e_logits}");
    }
}

#[test]
fn siglip_runs_at_other_sizes_as_transformers_interpolates_its_positions() {
    let device = Default::default();
    let reference = Reference::open("siglip/hf_siglip/resized.safetensors");
    for size in [48, 24] {
        let clip = Pretrained::<Flex>::load(fixture("siglip/hf_siglip"), &device)
            .unwrap()
            .with_image_size(size)
            .unwrap();
        assert_eq!(
            (clip.model.image_size(), clip.preprocess.size),
            (size, size)
        );
        let image = clip
            .model
            .encode_image(reference.tensor4::<Flex>(&format!("pixel_values_{size}"), &device));
        let e = relative_error(
            &values(image),
            &reference.f32(&format!("image_embeds_{size}")).0,
        );
        println!("hf_siglip at {size} px: image embeds relative error {e:.2e}");
        assert!(e < 1e-5, "{size}: {e}");
    }
    let err = Pretrained::<Flex>::load(fixture("siglip/hf_siglip"), &device)
        .unwrap()
        .with_image_size(4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("smaller than the patch size"), "{err}");
}

#[test]
fn siglip_export_edge_cases_are_named() {
    // open_clip's configs name the timm model of the tower; one of the same sizes but another GELU
    // (transformers runs tanh GELU in SigLIP 1) would compute other numbers there: refused
    let c = clip::ClipConfig::named("ViT-B-16-SigLIP").unwrap();
    let json = c.to_open_clip_json().unwrap();
    assert_eq!(
        json["vision_cfg"]["timm_model_name"],
        "vit_base_patch16_siglip_224"
    );
    assert_eq!(clip::ClipConfig::from_open_clip_json(&json).unwrap(), c);
    let mut tanh = c.clone();
    if let VisionConfig::SiglipVit { activation, .. } = &mut tanh.vision {
        *activation = Activation::GeluTanh;
    }
    let err = tanh.to_open_clip_json().unwrap_err().to_string();
    assert!(
        err.contains("vit_base_patch16_siglip_224") && err.contains("--to hf"),
        "{err}"
    );
    // transformers' SiglipModel always has a logit bias
    let mut no_bias = c;
    no_bias.logit_bias = None;
    let err = no_bias.to_hf_json().unwrap_err().to_string();
    assert!(err.contains("logit bias"), "{err}");

    // an image size on the same patch grid changes the input size only
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("siglip/hf_siglip"), &device)
        .unwrap()
        .with_image_size(35)
        .unwrap();
    assert_eq!(
        (
            clip.config.image_size(),
            clip.model.image_size(),
            clip.preprocess.size
        ),
        (35, 35, 35)
    );
}

/// The first `rows` patches of image `i` of a NaFlex batch (`[images, max_patches, patch²·3]`,
/// each patch in (row, column, channel) order) back as a `[3, height, width]` image.
fn unpatchify(
    patches: &(Vec<f32>, Vec<usize>),
    i: usize,
    (rows, columns): (usize, usize),
    patch: usize,
) -> Vec<f32> {
    let (values, shape) = patches;
    let (height, width) = (rows * patch, columns * patch);
    let per = shape[2];
    let mut image = vec![0f32; 3 * height * width];
    for (y, x, c) in (0..height)
        .flat_map(|y| (0..width).map(move |x| (y, x)))
        .flat_map(|(y, x)| (0..3).map(move |c| (y, x, c)))
    {
        let p = (y / patch) * columns + x / patch;
        let inside = ((y % patch) * patch + x % patch) * 3 + c;
        image[(c * height + y) * width + x] = values[(i * shape[1] + p) * per + inside];
    }
    image
}

#[test]
fn transformers_siglip2_naflex_directories_match_transformers() {
    use clip::data::{normalize, resize_and_crop, ResizeMode};
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("siglip/hf_siglip2"), &device).unwrap();
    assert!(matches!(
        clip.config.vision,
        VisionConfig::SiglipVit {
            naflex: true,
            image_size: 32,
            patch_size: 8,
            ..
        }
    ));
    // Siglip2ImageProcessor: its patch size and budget, bilinear, mean and std 0.5
    assert_eq!(
        clip.preprocess.resize_mode,
        ResizeMode::Patches {
            patch_size: 8,
            max_patches: 24
        }
    );
    assert_eq!(
        (clip.preprocess.interpolation, clip.preprocess.mean),
        (clip::data::Interpolation::Bilinear, [0.5; 3])
    );
    let reference = Reference::open("siglip/hf_siglip2/reference.safetensors");
    let files: Vec<std::path::PathBuf> =
        serde_json::from_str::<Vec<String>>(&reference.metadata("images"))
            .unwrap()
            .iter()
            .map(|f| fixture(f.trim_start_matches("fixtures/")))
            .collect();
    let (shapes, _) = reference.i64("spatial_shapes");
    let grids: Vec<(usize, usize)> = shapes
        .chunks(2)
        .map(|s| (s[0] as usize, s[1] as usize))
        .collect();
    // four aspect ratios, one of them shrinking the 4×4 position grid to 2 rows
    assert_eq!(grids, [(4, 6), (4, 6), (4, 5), (2, 10)]);

    // our preprocessing is the PIL processor's to the bit; the default (torchvision) one resizes
    // 8-bit images slightly differently
    let (pil, tv) = (
        reference.f32("pixel_values_pil"),
        reference.f32("pixel_values"),
    );
    let (mut worst_pil, mut worst_tv) = (0f32, 0f32);
    for (i, file) in files.iter().enumerate() {
        let image = resize_and_crop(&clip::data::load_rgb(file).unwrap(), &clip.preprocess);
        assert_eq!(
            (image.height() as usize, image.width() as usize),
            (grids[i].0 * 8, grids[i].1 * 8)
        );
        let ours = normalize(&image, &clip.preprocess);
        for (patches, worst) in [(&pil, &mut worst_pil), (&tv, &mut worst_tv)] {
            let theirs = unpatchify(patches, i, grids[i], 8);
            let diff = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            *worst = worst.max(diff);
        }
    }
    println!("hf_siglip2 pixels: max |diff| vs PIL processor {worst_pil:.1e}, vs torchvision {worst_tv:.1e}");
    assert!(worst_pil < 1e-6, "{worst_pil}");
    assert!(worst_tv < 2.0 / 255.0 + 1e-6, "{worst_tv}");

    // the model on transformers' own (padded, masked) pixels, each image at its grid
    let (image_embeds, _) = reference.f32("image_embeds");
    let mut e_model = 0f32;
    for (i, &(rows, columns)) in grids.iter().enumerate() {
        let pixels = unpatchify(&tv, i, (rows, columns), 8);
        let tensor = burn::tensor::Tensor::<Flex, 4>::from_data(
            burn::tensor::TensorData::new(pixels, [1, 3, rows * 8, columns * 8]),
            &device,
        );
        let got = values(clip.model.encode_image(tensor));
        let want = &image_embeds[i * 48..(i + 1) * 48];
        e_model = e_model.max(relative_error(&got, want));
    }
    // from the files, grouped by shape in one batch, against the PIL processor's pixels
    let from_files = clip.embed_image_files(&files, &device).unwrap();
    let e_files = relative_error(
        &values(from_files.clone()),
        &reference.f32("image_embeds_pil").0,
    );
    let e_files_tv = relative_error(&values(from_files.clone()), &image_embeds);
    let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
    let ids: Vec<i64> = texts
        .iter()
        .flat_map(|t| clip.tokenizer.tokenize(t).unwrap())
        .map(i64::from)
        .collect();
    // transformers' Siglip2Tokenizer: the tokenizer.json (`<bos> … <eos>`), lowercased, spaces kept
    assert_eq!(ids, reference.i64("text_ids").0);
    let text = clip.embed_texts(&texts, &device).unwrap();
    let e_text = relative_error(&values(text.clone()), &reference.f32("text_embeds").0);
    let image = burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(image_embeds.clone(), [4, 48]),
        &device,
    );
    let e_logits = relative_error(
        &values(clip.model.logits_per_image(image, text)),
        &reference.f32("logits_per_image").0,
    );
    println!(
        "hf_siglip2: image embeds relative error {e_model:.2e} (from transformers' pixels), \
         {e_files:.2e} (from files, vs the PIL processor; {e_files_tv:.2e} vs torchvision's), \
         text {e_text:.2e}, logits {e_logits:.2e}"
    );
    for e in [e_model, e_files, e_text, e_logits] {
        assert!(e < 1e-5, "{e_model} {e_files} {e_text} {e_logits}");
    }

    // written back as a Siglip2Model directory, read again: the same model
    let dir = tempfile::tempdir().unwrap();
    clip.save_hf(dir.path(), clip::StorageType::F32).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "siglip2");
    assert_eq!(config["vision_config"]["num_patches"], 16);
    let again = Pretrained::<Flex>::load(dir.path(), &device).unwrap();
    assert_eq!(again.preprocess, clip.preprocess);
    let e_again = relative_error(
        &values(again.embed_image_files(&files, &device).unwrap()),
        &values(from_files),
    );
    assert!(e_again < 1e-7, "{e_again}");
    // open_clip has no NaFlex tower: refused, naming the way out
    let err = clip.config.to_open_clip_json().unwrap_err().to_string();
    assert!(err.contains("NaFlex") && err.contains("--to hf"), "{err}");
}

#[test]
fn naflex_image_size_is_a_patch_budget() {
    let device = Default::default();
    let clip = Pretrained::<Flex>::load(fixture("siglip/hf_siglip2"), &device)
        .unwrap()
        .with_image_size(48)
        .unwrap();
    assert_eq!(
        clip.preprocess.resize_mode,
        clip::data::ResizeMode::Patches {
            patch_size: 8,
            max_patches: 36
        }
    );
    // the chelsea photo (451×300) now gets a 5×7 grid, and still embeds
    let file = fixture("images/chelsea.jpg");
    let image =
        clip::data::resize_and_crop(&clip::data::load_rgb(&file).unwrap(), &clip.preprocess);
    assert_eq!(image.dimensions(), (56, 40));
    assert_eq!(
        clip.embed_image_files(&[file], &device).unwrap().dims(),
        [1, 48]
    );
    let err = Pretrained::<Flex>::load(fixture("siglip/hf_siglip2"), &device)
        .unwrap()
        .with_image_size(50)
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiple of the patch size"), "{err}");
}
