//! Zero-shot classification against open_clip's build_zero_shot_classifier and 100 · logits
//! probabilities, on the fixture models and real photos; classifier files; the linear probe.

mod common;

use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use clip::zeroshot::{LinearProbe, Templates, ZeroShotClassifier, ZeroShotError, DEFAULT_SCALE};
use clip::Pretrained;
use common::*;

fn classes() -> Vec<String> {
    clip::zeroshot::cifar10_classes()
}

#[test]
fn classifier_and_probabilities_match_open_clip() {
    let device = Default::default();
    for dir in ["vit_tiny", "rn_tiny"] {
        let clip = Pretrained::<B>::load(fixture(dir), &device).unwrap();
        let reference = Reference::open(&format!("reference/{dir}_zeroshot.safetensors"));
        let classifier = clip
            .zero_shot_classifier(&classes(), &Templates::cifar(), &device, |_| ())
            .unwrap();
        let (ref_w, shape) = reference.f32("classifier");
        assert_eq!(classifier.weights.dims().to_vec(), shape);
        let e = relative_error(&values(classifier.weights.clone()), &ref_w);
        assert!(e < 1e-4, "{dir}: classifier relative error {e}");

        let paths = images("images", &reference.metadata("images"));
        let embeds = clip.embed_image_files(&paths, &device).unwrap();
        let probs = values(classifier.probabilities(embeds, DEFAULT_SCALE));
        let (ref_p, _) = reference.f32("probs");
        let worst = probs
            .iter()
            .zip(&ref_p)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("{dir}: classifier error {e:.1e}, max probability difference {worst:.1e}");
        assert!(worst < 1e-4, "{dir}: probabilities differ by {worst}");
    }
}

#[test]
fn a_repeated_label_is_a_class_with_the_same_column() {
    // OpenAI's ImageNet names repeat two, at the positions of open_clip's IMAGENET_CLASSNAMES; the
    // whole list must build (it once failed with "label \"missile\" appears twice")
    let names = clip::zeroshot::imagenet_classes();
    assert_eq!(names.len(), 1000);
    assert_eq!([&names[657], &names[744]], ["missile", "missile"]);
    assert_eq!([&names[836], &names[837]], ["sunglasses", "sunglasses"]);

    let device = Default::default();
    let clip = Pretrained::<B>::load(fixture("vit_tiny"), &device).unwrap();
    let reference = Reference::open("reference/vit_tiny_zeroshot.safetensors");
    let (ref_w, shape) = reference.f32("classifier");
    let mut labels = classes();
    assert_eq!(labels[3], "cat");
    labels.push("cat".into());
    let classifier = clip
        .zero_shot_classifier(&labels, &Templates::cifar(), &device, |_| ())
        .unwrap();
    assert_eq!(classifier.weights.dims(), [shape[0], 11]);
    // [dim, 11] row-major: the first ten columns are open_clip's, the eleventh is its "cat" column
    let w = values(classifier.weights.clone());
    let column = |m: &[f32], width: usize, c: usize| -> Vec<f32> {
        m.chunks(width).map(|row| row[c]).collect()
    };
    for c in 0..10 {
        let e = relative_error(&column(&w, 11, c), &column(&ref_w, 10, c));
        assert!(e < 1e-4, "column {c}: relative error {e}");
    }
    let e = relative_error(&column(&w, 11, 10), &column(&ref_w, 10, 3));
    assert!(e < 1e-4, "the repeated label's column: relative error {e}");
    assert!(relative_error(&column(&w, 11, 10), &column(&w, 11, 4)) > 0.1);
}

#[test]
fn trimmed_padding_gives_the_same_text_embeddings() {
    let device = Default::default();
    let clip = Pretrained::<B>::load(fixture("vit_tiny"), &device).unwrap();
    let texts = [
        "a photo of a cat",
        "a much longer caption about a small dog on a red sofa",
    ];
    let full = values(
        clip.model
            .encode_text(clip.tokenize(&texts, &device).unwrap()),
    );
    let trimmed = values(clip.embed_texts(&texts, &device).unwrap());
    assert!(relative_error(&trimmed, &full) < 1e-6);
}

#[test]
fn classifier_files_remember_what_they_were_built_from() {
    let device = Default::default();
    let clip = Pretrained::<B>::load(fixture("vit_tiny"), &device).unwrap();
    let templates = Templates::simple();
    let labels = vec!["cat".to_string(), "rocket".to_string()];
    let built = clip
        .zero_shot_classifier(&labels, &templates, &device, |_| ())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("classifier.safetensors");
    built.save(&file).unwrap();
    let loaded = ZeroShotClassifier::<B>::load(&file, &device).unwrap();
    assert_eq!(
        values(loaded.weights.clone()),
        values(built.weights.clone())
    );
    loaded
        .check_built_for(&clip.fingerprint(), &labels, &templates)
        .unwrap();
    assert!(matches!(
        loaded.check_built_for(&clip.fingerprint(), &labels[..1], &templates),
        Err(ZeroShotError::Stale(_))
    ));
    assert!(matches!(
        loaded.check_built_for(&clip.fingerprint(), &labels, &Templates::cifar()),
        Err(ZeroShotError::Stale(_))
    ));
    let other = Pretrained::<B>::load(fixture("hf_tiny"), &device).unwrap();
    assert!(matches!(
        loaded.check_built_for(&other.fingerprint(), &labels, &templates),
        Err(ZeroShotError::Stale(_))
    ));
}

#[test]
fn labels_and_templates_are_checked() {
    let device = Default::default();
    let clip = Pretrained::<B>::load(fixture("vit_tiny"), &device).unwrap();
    let t = Templates::none();
    let err = |labels: &[&str]| {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        clip.zero_shot_classifier(&labels, &t, &device, |_| ())
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[]).contains("no labels"));
    assert!(err(&["cat", " "]).contains("empty"));
    let bad = Templates::parse("a photo of a {}.\nno marker here\n", "my.txt")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("my.txt line 2"), "{bad}");
    assert_eq!(
        Templates::parse("a {c} photo\n\n", "x")
            .unwrap()
            .fill("dog"),
        vec!["a dog photo"]
    );
    assert_eq!(Templates::imagenet().templates.len(), 80);
    assert_eq!(Templates::simple().templates.len(), 7);
    assert_eq!(Templates::cifar().templates.len(), 18);
    assert_eq!(clip::zeroshot::imagenet_classes().len(), 1000);
    assert_eq!(clip::zeroshot::cifar100_classes().len(), 100);
}

#[test]
fn linear_probe_learns_the_informative_feature_and_picks_l2_on_validation() {
    type AD = Autodiff<B>;
    let device = Default::default();
    // Two classes apart by ±1 on feature 0 (clean) and ±3 on feature 1 (buried in ±10 noise). A heavily
    // penalised probe only follows the class means, which lean on the noisy feature; a lightly
    // penalised one learns to trust feature 0 and separates the classes perfectly.
    let make = |n: usize, seed: usize| {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let class = i % 2;
            let sign = if class == 0 { -1.0 } else { 1.0 };
            let noise =
                |k: usize| ((((i + seed) * 7919 + k * 104_729) % 2001) as f32 / 1000.0) - 1.0;
            x.push(sign + 0.2 * noise(1));
            x.push(3.0 * sign + 10.0 * noise(2));
            y.push(class);
        }
        (x, y)
    };
    let (tx, ty) = make(200, 0);
    let (vx, vy) = make(100, 5000);
    let train = Tensor::<AD, 2>::from_data(TensorData::new(tx, [200, 2]), &device);
    let val = Tensor::<B, 2>::from_data(TensorData::new(vx, [100, 2]), &device);
    let strong = LinearProbe::fit(train.clone(), &ty, val.clone(), &vy, 2, &[1e2], 300).unwrap();
    let chosen = LinearProbe::fit(train, &ty, val.clone(), &vy, 2, &[1e2, 1e-4], 300).unwrap();
    println!(
        "val accuracy: l2=1e2 {}, chosen l2={} {}",
        strong.val_accuracy, chosen.l2, chosen.val_accuracy
    );
    assert!(strong.val_accuracy < 0.95, "{}", strong.val_accuracy);
    assert_eq!(chosen.l2, 1e-4);
    assert_eq!(chosen.val_accuracy, 1.0);
    assert_eq!(chosen.accuracy(val, &vy), 1.0);
}

#[test]
fn linear_probe_rejects_mismatched_inputs() {
    type AD = Autodiff<B>;
    let device = Default::default();
    let x = Tensor::<AD, 2>::ones([4, 2], &device);
    let v = Tensor::<B, 2>::ones([2, 2], &device);
    assert!(LinearProbe::fit(x.clone(), &[0, 1, 0], v.clone(), &[0, 1], 2, &[1e-3], 5).is_err());
    assert!(LinearProbe::fit(x, &[0, 1, 0, 5], v, &[0, 1], 2, &[1e-3], 5).is_err());
}
