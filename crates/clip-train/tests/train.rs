//! CI-sized training runs on Fashion-MNIST scenes, from the subset in `fixtures/fashion-mnist`
//! (3,000 training and 1,000 test items).

use burn::backend::{Autodiff, Flex};
use clip::encoders::Activation;
use clip::{ClipConfig, TextConfig, VisionConfig};
use clip_data::AugmentConfig;
use clip_train::*;

type AD = Autodiff<Flex>;

/// The committed Fashion-MNIST subset.
const FASHION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/fashion-mnist");

/// burn's backend RNG (seeded for the initial weights) is process-wide: training runs in parallel test
/// threads would draw from it in turn and lose their determinism, so they take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny(output: &std::path::Path, steps: usize) -> TrainConfig {
    TrainConfig {
        model: ClipConfig {
            embed_dim: 32,
            vision: VisionConfig::Vit {
                image_size: 24,
                patch_size: 8,
                width: 32,
                layers: 1,
                heads: 1,
                mlp_ratio: 2.0,
                activation: Activation::Gelu,
                layer_scale: None,
                pool: clip::encoders::VitPool::Token,
                ln_pre: true,
                final_ln_after_pool: false,
            },
            text: TextConfig {
                context_length: 24,
                vocab_size: 49408,
                width: 32,
                heads: 1,
                layers: 1,
                mlp_ratio: 2.0,
                activation: Activation::Gelu,
                causal: true,
                pool: clip::encoders::TextPool::EndToken,
                end_token: None,
                hf_tokenizer: None,
                norm_eps: clip::encoders::LAYER_NORM_EPS,
                projection: true,
            },
            projection_bias: false,
            logit_bias: None,
        },
        data: DataConfig::FashionScenes {
            dir: FASHION.into(),
            plain_captions: 0.0,
        },
        output: output.to_path_buf(),
        seed: 5,
        steps,
        batch_size: 32,
        accumulation: 1,
        lr: 3e-3,
        warmup_steps: 5,
        weight_decay: 0.2,
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-6,
        grad_clip_norm: Some(1.0),
        loss: LossConfig::InfoNce {
            lambda: 0.5,
            label_smoothing: 0.0,
        },
        augment: AugmentConfig {
            brightness: 0.2,
            contrast: 0.2,
            ..AugmentConfig::default()
        },
        checkpoint_every: 1000,
        eval_every: 0,
        eval_samples: 400,
        lock_image: false,
        lock_text: false,
        stop_after: None,
        patch_dropout: 0.0,
        threads: 2,
        half_precision_model: false,
        init: None,
    }
}

#[test]
fn a_short_run_learns_and_transfers_to_held_out_pairs() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(dir.path(), 150);
    let report = train::<AD>(&config, None, &Default::default()).unwrap();
    let first = report.log[0].loss;
    let last: f64 = report.log[140..].iter().map(|l| l.loss).sum::<f64>() / 10.0;
    let eval = &report.evaluations.last().unwrap().1;
    println!(
        "loss {first:.3} → {last:.3}; {eval:?}; {:.0} images/s",
        report.images_per_second
    );
    assert!(last < 0.6 * first, "loss {first} → {last}");
    // chance is 1/70 on colour×class and 1/10 on class
    assert!(eval.held_out_pair_top1 > 3.0 / 70.0, "{eval:?}");
    assert!(eval.seen_pair_top1 > 3.0 / 70.0, "{eval:?}");
    // the final model is a directory `clip` loads
    let model = report.final_dir.unwrap();
    clip::Pretrained::<Flex>::load(&model, &Default::default()).unwrap();
}

/// Text embeddings of a fixed prompt set from a saved model, flattened.
fn text_embeddings(model: &std::path::Path) -> Vec<f32> {
    let device = Default::default();
    let loaded = clip::Pretrained::<Flex>::load(model, &device).unwrap();
    let texts = ["a red bag", "a small white sneaker in the top left", "coat"];
    loaded
        .embed_texts(&texts, &device)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap()
}

fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn fine_tuning_starts_from_the_init_weights() {
    let _turn = serial();
    let device = Default::default();
    let base_dir = tempfile::tempdir().unwrap();
    let base = train::<AD>(&tiny(base_dir.path(), 5), None, &device).unwrap();
    let base_model = base.final_dir.unwrap();
    let base_embeddings = text_embeddings(&base_model);

    // one step at a negligible learning rate keeps whatever the run started from
    let still = |dir: &std::path::Path, init: Option<&std::path::Path>| TrainConfig {
        lr: 1e-12,
        init: init.map(|p| p.to_path_buf()),
        ..tiny(dir, 1)
    };
    let from_init = tempfile::tempdir().unwrap();
    let kept = train::<AD>(&still(from_init.path(), Some(&base_model)), None, &device).unwrap();
    let from_scratch = tempfile::tempdir().unwrap();
    let fresh = train::<AD>(&still(from_scratch.path(), None), None, &device).unwrap();
    let kept_diff =
        max_abs_difference(&text_embeddings(&kept.final_dir.unwrap()), &base_embeddings);
    let fresh_diff = max_abs_difference(
        &text_embeddings(&fresh.final_dir.unwrap()),
        &base_embeddings,
    );
    println!("max |Δ| from the init model: fine-tuned {kept_diff:e}, from scratch {fresh_diff:e}");
    assert!(kept_diff < 1e-5, "{kept_diff}");
    assert!(fresh_diff > 1e-2, "{fresh_diff}");

    // at a real learning rate the loaded weights train: their gradients flow
    let moving = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        init: Some(base_model.clone()),
        ..tiny(moving.path(), 3)
    };
    let moved = train::<AD>(&config, None, &device).unwrap();
    let moved_diff = max_abs_difference(
        &text_embeddings(&moved.final_dir.unwrap()),
        &base_embeddings,
    );
    assert!(moved_diff > 1e-3, "{moved_diff}");

    // another architecture is refused, and the message shows the file's own
    let mut other = config.clone();
    other.model.embed_dim = 16;
    let err = train::<AD>(&other, None, &device).unwrap_err().to_string();
    assert!(
        err.contains("another architecture") && err.contains("embed_dim = 32"),
        "{err}"
    );
}

#[test]
fn resume_continues_exactly() {
    let _turn = serial();
    let device = Default::default();
    // with patch dropout: which patches are dropped must not depend on where the run restarted
    let with_dropout = |dir: &std::path::Path| TrainConfig {
        patch_dropout: 0.3,
        ..tiny(dir, 6)
    };
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = train::<AD>(&with_dropout(straight_dir.path()), None, &device).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut config = with_dropout(dir.path());
    config.checkpoint_every = 3;
    config.stop_after = Some(3);
    let first = train::<AD>(&config, None, &device).unwrap();
    assert_eq!(first.steps, 3);
    // an interrupted later checkpoint (never renamed into place) is not "latest"
    std::fs::create_dir_all(dir.path().join("checkpoints/.step-0000006.tmp")).unwrap();
    let latest = latest_checkpoint(&config).unwrap();
    assert!(latest.ends_with("step-0000003"), "{latest:?}");
    config.stop_after = None;
    let resumed = train::<AD>(&config, Some(&latest), &device).unwrap();
    assert_eq!(resumed.log.len(), 6);
    for (a, b) in straight.log.iter().zip(&resumed.log) {
        assert_eq!(a.step, b.step);
        assert!(
            (a.loss - b.loss).abs() < 1e-6,
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
    }
    println!(
        "losses: {:?}",
        resumed.log.iter().map(|l| l.loss).collect::<Vec<_>>()
    );

    // another architecture refuses the checkpoint, naming it
    let mut other = config.clone();
    other.model.embed_dim = 16;
    let err = train::<AD>(&other, Some(&latest), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step-0000003") && err.contains("another model"),
        "{err}"
    );
    // so does another global batch (step s's samples depend on it)
    let mut smaller = config.clone();
    smaller.batch_size = 16;
    let err = train::<AD>(&smaller, Some(&latest), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch_size 32") && err.contains("this config has 16"),
        "{err}"
    );
}

#[test]
fn two_threads_take_the_same_steps_as_one() {
    let _turn = serial();
    let device = Default::default();
    let run = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            threads,
            ..tiny(dir.path(), 4)
        };
        let log = train::<AD>(&config, None, &device).unwrap().log;
        log.iter()
            .map(|l| (l.loss, l.grad_norm))
            .collect::<Vec<_>>()
    };
    let (one, two) = (run(1), run(2));
    println!("one thread: {one:?}\ntwo threads: {two:?}");
    // each thread back-propagates its share of the whole batch's loss: the same gradient up to
    // rounding, so the same losses and gradient norms step after step
    for ((l1, g1), (l2, g2)) in one.iter().zip(&two) {
        assert!((l1 - l2).abs() < 1e-5, "loss {l1} vs {l2}");
        assert!(
            (g1 - g2).abs() < 1e-4 * g1.max(1.0),
            "gradient norm {g1} vs {g2}"
        );
    }
    assert!(one[3].0 < one[0].0 - 0.01, "the run must move: {one:?}");
}

#[test]
fn a_nan_loss_stops_the_run_and_names_the_last_good_checkpoint() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny(dir.path(), 10);
    // weight decay with this rate sends the matrices to ±inf after the first step
    config.lr = 1e30;
    config.warmup_steps = 0;
    config.checkpoint_every = 1;
    let err = train::<AD>(&config, None, &Default::default()).unwrap_err();
    let TrainError::NonFinite { step, checkpoint } = &err else {
        panic!("expected a non-finite loss, got {err}");
    };
    println!("{err}");
    assert!(*step >= 2, "{err}");
    // the named checkpoint is the newest complete one, and it is whole
    let latest = latest_checkpoint(&config).unwrap();
    assert_eq!(std::path::Path::new(checkpoint), latest.as_path());
    assert!(latest.ends_with(format!("step-{:07}", step - 1)), "{err}");
    assert!(latest.join("state.json").is_file() && latest.join("model.bin").is_file());
    assert!(err.to_string().contains(checkpoint.as_str()));
}

#[test]
fn bad_configs_are_refused() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny(dir.path(), 5);
    config.batch_size = 1;
    assert!(train::<AD>(&config, None, &Default::default())
        .unwrap_err()
        .to_string()
        .contains("batch_size"));
    let mut config = tiny(dir.path(), 5);
    config.data = DataConfig::FashionScenes {
        dir: dir.path().join("missing"),
        plain_captions: 0.0,
    };
    assert!(train::<AD>(&config, None, &Default::default())
        .unwrap_err()
        .to_string()
        .contains("missing"));
    let toml = dir.path().join("c.toml");
    std::fs::write(&toml, "output = 'x'\nsteps = 'many'\n").unwrap();
    assert!(TrainConfig::from_file(&toml)
        .unwrap_err()
        .to_string()
        .contains("c.toml"));
}

#[test]
fn trains_from_a_captions_file_and_skips_broken_images() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let items = clip_data::fashion::FashionMnist::load(FASHION, false).unwrap();
    let mut lines = String::from("image,caption\n");
    for i in 0..40 {
        let name = format!("{i}.png");
        items.item(i).save(dir.path().join(&name)).unwrap();
        lines.push_str(&format!(
            "{name},a {}\n",
            clip_data::fashion::CLASSES[items.label(i)]
        ));
    }
    // valid headers, cut-off pixel data: they pass the first check and fail when decoded (a fifth of
    // the pairs, so 96 draws meet them)
    for i in 0..10 {
        let name = format!("cut-{i}.png");
        let mut bytes = std::fs::read(dir.path().join(format!("{i}.png"))).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(dir.path().join(&name), bytes).unwrap();
        lines.push_str(&format!("{name},a cut-off item\n"));
    }
    std::fs::write(dir.path().join("decodable.csv"), &lines).unwrap();
    lines.push_str("missing.png,a ghost\n");
    std::fs::write(dir.path().join("captions.csv"), lines).unwrap();
    let mut config = tiny(&dir.path().join("run"), 3);
    config.data = DataConfig::Captions {
        file: dir.path().join("captions.csv"),
        strict: false,
    };
    let report = train::<AD>(&config, None, &Default::default()).unwrap();
    assert_eq!(report.log.len(), 3);
    assert!(report.log.iter().all(|l| l.loss.is_finite()));
    assert!(report.evaluations.is_empty());
    assert!(
        !report.unreadable_images.is_empty()
            && report.unreadable_images.iter().all(|w| w.contains("cut-")),
        "{:?}",
        report.unreadable_images
    );
    // the replacement draws are part of the run: the same run again takes the same steps
    let again = train::<AD>(&config, None, &Default::default()).unwrap();
    assert_eq!(again.log, report.log);
    // strict: the missing file is refused before training, a cut-off one when it is drawn
    config.data.set_strict();
    let err = train::<AD>(&config, None, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.png"), "{err}");
    config.data = DataConfig::Captions {
        file: dir.path().join("decodable.csv"),
        strict: true,
    };
    let err = train::<AD>(&config, None, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cut-") && err.contains("--strict"), "{err}");
}

#[test]
fn trains_from_webdataset_shards() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let items = clip_data::fashion::FashionMnist::load(FASHION, false).unwrap();
    let mut files = Vec::new();
    for shard in 0..2 {
        let path = dir.path().join(format!("shard-{shard}.tar"));
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut add = |name: String, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, bytes).unwrap();
        };
        for i in 0..20 {
            let k = shard * 20 + i;
            let mut png = Vec::new();
            items
                .item(k)
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            let class = clip_data::fashion::CLASSES[items.label(k)];
            add(format!("{k:05}.png"), &png);
            add(format!("{k:05}.txt"), format!("a {class}").as_bytes());
        }
        add("99999.txt".into(), b"a caption without its image");
        builder.finish().unwrap();
        files.push(path);
    }
    let mut config = tiny(&dir.path().join("run"), 2);
    config.data = DataConfig::Shards {
        files: files.clone(),
        strict: false,
    };
    let report = train::<AD>(&config, None, &Default::default()).unwrap();
    assert_eq!(report.log.len(), 2);
    assert!(report.log.iter().all(|l| l.loss.is_finite()));
    assert!(report.unreadable_images.is_empty());
    config.data.set_strict();
    let err = train::<AD>(&config, None, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("99999") && err.contains("no image"), "{err}");
}

#[test]
fn siglip_with_accumulation_and_a_locked_image_tower() {
    let _turn = serial();
    use burn::module::AutodiffModule;
    use burn_store::ModuleSnapshot;
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny(dir.path(), 3);
    config.loss = LossConfig::Siglip;
    config.accumulation = 2;
    config.patch_dropout = 0.5;
    config.lock_image = true;
    config.checkpoint_every = 3;
    config.eval_every = 0;
    let report = train::<AD>(&config, None, &Default::default()).unwrap();
    assert_eq!(report.log.len(), 3);
    assert!(report.log.iter().all(|l| l.loss.is_finite()));
    // the image tower is where it started: the same seed re-creates the initial weights
    let trained =
        clip::Pretrained::<Flex>::load(report.final_dir.unwrap(), &Default::default()).unwrap();
    <Flex as burn::tensor::backend::Backend>::seed(&Default::default(), config.seed);
    let initial = config
        .model
        .init::<AD>(&Default::default())
        .unwrap()
        .valid();
    let tensors = |m: &clip::Clip<Flex>, prefix: &str| -> Vec<Vec<f32>> {
        m.collect(None, None, true)
            .into_iter()
            .filter(|s| s.full_path().starts_with(prefix))
            .map(|s| s.to_data().unwrap().to_vec::<f32>().unwrap())
            .collect()
    };
    let changed = |prefix: &str| tensors(&trained.model, prefix) != tensors(&initial, prefix);
    assert!(!changed("visual"), "the locked image tower moved");
    assert!(changed("text."), "the text tower did not train");
}

#[test]
fn patch_dropout_acts_only_while_training() {
    use burn::module::AutodiffModule;
    use burn::tensor::{Distribution, Tensor};
    let _turn = serial();
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let mut model = tiny(dir.path(), 1).model.init::<AD>(&device).unwrap();
    let images = Tensor::<AD, 4>::random([2, 3, 24, 24], Distribution::Normal(0.0, 1.0), &device);
    let values = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().unwrap();
    let full = values(model.encode_image(images.clone()).inner());
    if let clip::ImageEncoder::Vit(vit) = &mut model.visual {
        vit.patch_dropout = 0.5;
    }
    let dropped = values(model.encode_image(images.clone()).inner());
    assert_ne!(
        full, dropped,
        "half the patches dropped must change the training forward pass"
    );
    let evaluated = values(model.valid().encode_image(images.inner()));
    let diff = full
        .iter()
        .zip(&evaluated)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-6, "evaluation must see every patch ({diff})");
}

#[test]
fn the_shipped_fine_tuning_config_starts_from_the_base_run() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let base = TrainConfig::from_file(&dir.join("fashion-scenes.toml")).unwrap();
    let plain = TrainConfig::from_file(&dir.join("fashion-scenes-plain.toml")).unwrap();
    assert_eq!(base.init, None);
    // the second stage fine-tunes the first one's final model, with the same architecture and loss
    assert_eq!(plain.init, Some(base.output.join("model")));
    assert_ne!(plain.output, base.output);
    assert_eq!((&plain.model, &plain.loss), (&base.model, &base.loss));
    match (&base.data, &plain.data) {
        (
            DataConfig::FashionScenes {
                dir: a,
                plain_captions: 0.0,
            },
            DataConfig::FashionScenes {
                dir: b,
                plain_captions,
            },
        ) => assert_eq!((a, *plain_captions), (b, 0.25)),
        other => panic!("{other:?}"),
    }
    assert!(plain.steps < base.steps / 5 && plain.lr < base.lr);
}

#[test]
fn siglip_towers_train_with_siglip_loss_and_keep_their_bias() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny(dir.path(), 40);
    // SigLIP's architecture: timm's attention-pooled ViT (as wide as the embedding), a bidirectional
    // text tower pooled at the last position with a biased projection, LayerNorm eps 1e-6
    config.model.vision = VisionConfig::SiglipVit {
        image_size: 24,
        patch_size: 8,
        width: 32,
        layers: 1,
        heads: 2,
        mlp_ratio: 2.0,
        activation: Activation::GeluTanh,
        naflex: false,
    };
    config.model.text.causal = false;
    config.model.text.pool = clip::encoders::TextPool::Last;
    config.model.text.norm_eps = 1e-6;
    config.model.text.activation = Activation::GeluTanh;
    config.model.projection_bias = true;
    config.loss = LossConfig::Siglip;
    let report = train::<AD>(&config, None, &Default::default()).unwrap();
    let first = report.log[0].loss;
    let last: f64 = report.log[35..].iter().map(|l| l.loss).sum::<f64>() / 5.0;
    println!("SigLIP towers, SigLIP loss: {first:.4} → {last:.4}");
    assert!(last < 0.8 * first, "loss {first} → {last}");
    // the saved model carries the learned bias, and scores zero-shot with it
    let trained =
        clip::Pretrained::<Flex>::load(report.final_dir.unwrap(), &Default::default()).unwrap();
    assert!(matches!(
        trained.config.vision,
        VisionConfig::SiglipVit { .. }
    ));
    let scoring = trained.model.zero_shot_scoring(100.0);
    let clip::zeroshot::Scoring::Sigmoid { bias, .. } = scoring else {
        panic!("{scoring:?}")
    };
    assert!(
        bias.is_finite() && (bias + 10.0).abs() > 1e-3,
        "the bias did not train: {bias}"
    );
}
