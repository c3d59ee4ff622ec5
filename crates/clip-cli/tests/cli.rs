//! The `clip` binary's public contracts: JSON shapes of `embed`, `tokenize` lines, `info`, and
//! errors that name the problem with a non-zero exit.

#[path = "../../../tests/common.rs"]
mod common;

use std::process::{Command, Stdio};

use clip::Pretrained;
use common::*;

fn clip_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clip"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = clip_bin().args(args).output().expect("run clip");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn embed_writes_the_documented_json() {
    let model = fixture("vit_tiny");
    let (a, b) = (fixture("images/chelsea.jpg"), fixture("images/rocket.jpg"));
    let (ok, stdout, stderr) = run(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--image",
        a.to_str().unwrap(),
        "--image",
        b.to_str().unwrap(),
        "--text",
        "a cat",
        "--text",
        "a rocket",
        "--text",
        "a diagram",
        "--batch-size",
        "2",
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = |k: &str| -> Vec<Vec<f32>> { serde_json::from_value(json[k].clone()).unwrap() };
    let (images, texts, logits) = (
        rows("image_embeds"),
        rows("text_embeds"),
        rows("logits_per_image"),
    );
    assert_eq!((images.len(), images[0].len()), (2, 32));
    assert_eq!((texts.len(), texts[0].len()), (3, 32));
    assert_eq!((logits.len(), logits[0].len()), (2, 3));
    // the same numbers as the library (raw projections, as open_clip's encode_* return them)
    let device = Default::default();
    let lib = Pretrained::<B>::load(&model, &device).unwrap();
    let expected = values(lib.embed_image_files(&[a, b], &device).unwrap());
    let got: Vec<f32> = images.concat();
    assert!(relative_error(&got, &expected) < 1e-6);

    let (ok, stdout, _) = run(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "only text",
    ]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        json.get("text_embeds").is_some()
            && json.get("image_embeds").is_none()
            && json.get("logits_per_image").is_none()
    );
}

#[test]
fn embed_to_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e.json");
    let (ok, _, stderr) = run(&[
        "embed",
        "--model",
        fixture("hf_tiny").to_str().unwrap(),
        "--text",
        "x",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(json["text_embeds"][0].as_array().unwrap().len(), 24);
}

#[test]
fn tokenize_prints_a_line_per_text() {
    let (ok, stdout, _) = run(&[
        "tokenize",
        "--context-length",
        "8",
        "a photo of a cat",
        "hi",
    ]);
    assert!(ok);
    let lines: Vec<Vec<u32>> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec![49406, 320, 1125, 539, 320, 2368, 49407, 0],
            vec![49406, 1883, 49407, 0, 0, 0, 0, 0]
        ]
    );

    let mut child = clip_bin()
        .args(["tokenize", "--jsonl", "--context-length", "6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\"two\\nlines\"\n\"x\"\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "[49406,1237,3418,49407,0,0]\n[49406,343,49407,0,0,0]\n"
    );

    let mut child = clip_bin()
        .args(["tokenize", "--jsonl"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\"ok\"\nnot json\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[test]
fn info_describes_the_model() {
    let (ok, stdout, stderr) = run(&[
        "info",
        "--model",
        fixture("rn_tiny").to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["layout"], "open_clip/OpenAI");
    assert_eq!(json["config"]["vision"]["type"], "modified_resnet");
    assert!(json["parameters"].as_u64().unwrap() > 0);
    let (ok, stdout, _) = run(&["info", "--model", fixture("hf_tiny").to_str().unwrap()]);
    assert!(ok);
    assert!(stdout.contains("Hugging Face") && stdout.contains("Floor"));
}

#[test]
fn other_sizes_and_openai_torchscript_files() {
    // a ViT at another resolution and a shorter context, on every command that loads a model
    let vit = fixture("vit_tiny");
    let (ok, stdout, stderr) = run(&[
        "info",
        "--model",
        vit.to_str().unwrap(),
        "--image-size",
        "96",
        "--context-length",
        "32",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["config"]["vision"]["image_size"], 96);
    assert_eq!(json["config"]["text"]["context_length"], 32);
    let chelsea = fixture("images/chelsea.jpg");
    let (ok, stdout, stderr) = run(&[
        "embed",
        "--model",
        vit.to_str().unwrap(),
        "--image-size",
        "96",
        "--image",
        chelsea.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("image_embeds"));
    let (ok, _, stderr) = run(&[
        "info",
        "--model",
        vit.to_str().unwrap(),
        "--image-size",
        "50",
    ]);
    assert!(!ok && stderr.contains("patch size 16"), "{stderr}");

    // OpenAI's TorchScript format
    let pt = fixture("torchscript/vit_openai.pt");
    let (ok, stdout, stderr) = run(&["info", "--model", pt.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["config"]["vision"]["image_size"], 32);
    let (ok, stdout, stderr) = run(&[
        "embed",
        "--model",
        pt.to_str().unwrap(),
        "--image",
        chelsea.to_str().unwrap(),
    ]);
    assert!(ok && stdout.contains("image_embeds"), "{stderr}");
}

#[test]
fn info_describes_configs_without_weights_and_models_load_by_config_name() {
    let (ok, stdout, stderr) = run(&["info", "--config", "ViT-B-16-plus-240", "--json"]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["config"]["vision"]["image_size"], 240);
    assert_eq!(json["config"]["embed_dim"], 640);
    // a config this library cannot run: non-zero, naming the option
    let (ok, _, stderr) = run(&["info", "--config", "coca_ViT-B-32"]);
    assert!(!ok && stderr.contains("multimodal_cfg"), "{stderr}");
    // a config whose text side reads a Hugging Face tokenizer says which
    let (ok, stdout, stderr) = run(&["info", "--config", "ViT-H-14-CLIPA"]);
    assert!(
        ok && stdout.contains("tokenizer bert-base-uncased"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["info", "--config", "convnext_base"]);
    assert!(!ok && stderr.contains("timm"), "{stderr}");
    let (ok, stdout, stderr) = run(&["info", "--config", "ViT-B-16-SigLIP"]);
    assert!(ok && stdout.contains("SigLIP ViT"), "{stderr}");
    // files: transformers' config.json, open_clip's
    for file in ["hf_tiny/config.json", "vit_tiny/open_clip_config.json"] {
        let (ok, stdout, stderr) = run(&["info", "--config", fixture(file).to_str().unwrap()]);
        assert!(ok && stdout.contains("image tower"), "{file}: {stderr}");
    }
    let (ok, stdout, _) = run(&["info", "--config", "list"]);
    assert!(ok);
    assert_eq!(stdout.lines().count(), 144);
    assert_eq!(stdout.lines().filter(|l| l.ends_with("\tok")).count(), 81);
    // --model CONFIG --weights FILE, as create_model_and_transforms(name, pretrained=FILE)
    let (ok, stdout, stderr) = run(&[
        "embed",
        "--model",
        fixture("vit_tiny/open_clip_config.json").to_str().unwrap(),
        "--weights",
        fixture("vit_tiny/open_clip_model.safetensors")
            .to_str()
            .unwrap(),
        "--text",
        "a cat",
    ]);
    assert!(ok && stdout.contains("text_embeds"), "{stderr}");
    let (ok, _, stderr) = run(&[
        "embed",
        "--weights",
        fixture("vit_tiny/open_clip_model.safetensors")
            .to_str()
            .unwrap(),
        "--text",
        "a cat",
    ]);
    assert!(
        !ok && stderr.contains("--weights needs --model"),
        "{stderr}"
    );
}

#[test]
fn models_with_a_hugging_face_tokenizer_embed_texts_and_take_tokenizer() {
    let reference = Reference::open("options/hf_clipa/reference.safetensors");
    let texts: Vec<String> = serde_json::from_str(&reference.metadata("texts")).unwrap();
    let (want, _) = reference.f32("hf_text_embeds");
    let embed = |model: &str, extra: &[&str]| {
        let mut args = vec![
            "embed", "--model", model, "--text", &texts[0], "--text", &texts[1],
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    // the tokenizer.json beside the weights is found
    let model = fixture("options/hf_clipa");
    let (ok, stdout, stderr) = embed(model.to_str().unwrap(), &[]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(json["text_embeds"].clone()).unwrap();
    let e = relative_error(&rows.concat(), &want[..2 * rows[0].len()]);
    assert!(e < 1e-5, "{e}");
    let (ok, stdout, _) = run(&["info", "--model", model.to_str().unwrap()]);
    assert!(
        ok && stdout.contains("tokenizer.json (2026 tokens)"),
        "{stdout}"
    );
    // clip tokenize --model: the model's tokenizer and context length, open_clip's ids
    let (ok, stdout, stderr) = run(&[
        "tokenize",
        "--model",
        model.to_str().unwrap(),
        &texts[0],
        &texts[1],
    ]);
    assert!(ok, "{stderr}");
    let ids: Vec<Vec<i64>> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ids.concat(), reference.i64("hf_text_ids").0[..2 * 16]);

    // without it, texts are refused naming the tokenizer and the flag; --tokenizer supplies it
    let dir = tempfile::tempdir().unwrap();
    for file in ["open_clip_config.json", "open_clip_model.safetensors"] {
        std::fs::copy(model.join(file), dir.path().join(file)).unwrap();
    }
    let bare = dir.path().to_str().unwrap();
    let (ok, _, stderr) = embed(bare, &[]);
    assert!(
        !ok && stderr.contains("bert-base-uncased") && stderr.contains("--tokenizer"),
        "{stderr}"
    );
    let tokenizer = fixture("hf_tokenizer/bert_tiny/tokenizer.json");
    let (ok, stdout, stderr) = embed(bare, &["--tokenizer", tokenizer.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let again: Vec<Vec<f32>> = serde_json::from_value(json["text_embeds"].clone()).unwrap();
    assert_eq!(again, rows);
}

#[test]
fn convert_writes_each_layout_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let vit = fixture("vit_tiny");
    for (to, dtype, file) in [
        ("hf", "f16", "model.safetensors"),
        ("open_clip", "bf16", "open_clip_model.safetensors"),
        ("burn", "f32", "model.bpk"),
    ] {
        let out = dir.path().join(format!("{to}-{dtype}"));
        let (ok, _, stderr) = run(&[
            "convert",
            vit.to_str().unwrap(),
            out.to_str().unwrap(),
            "--to",
            to,
            "--dtype",
            dtype,
        ]);
        assert!(ok && out.join(file).is_file(), "{to}: {stderr}");
        let (ok, stdout, stderr) = run(&["info", "--model", out.to_str().unwrap(), "--json"]);
        assert!(ok, "{to}: {stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json["config"]["vision"]["image_size"], 64, "{to}");
    }
    let (ok, _, stderr) = run(&[
        "convert",
        vit.to_str().unwrap(),
        dir.path().join("x").to_str().unwrap(),
        "--dtype",
        "bf16",
    ]);
    assert!(!ok && stderr.contains("bf16"), "{stderr}");
    let (ok, _, stderr) = run(&[
        "convert",
        fixture("rn_tiny").to_str().unwrap(),
        dir.path().join("rn").to_str().unwrap(),
        "--to",
        "hf",
    ]);
    assert!(!ok && stderr.contains("ModifiedResNet"), "{stderr}");
}

#[test]
fn bad_inputs_fail_with_a_named_error() {
    let model = fixture("vit_tiny");
    let m = model.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["embed".into(), "--model".into(), m.into()],
            "nothing to embed",
        ),
        (
            vec![
                "embed".into(),
                "--model".into(),
                m.into(),
                "--image".into(),
                "missing.jpg".into(),
            ],
            "missing.jpg",
        ),
        (
            vec![
                "embed".into(),
                "--model".into(),
                m.into(),
                "--image".into(),
                fixture("images/not_an_image.jpg").to_str().unwrap().into(),
            ],
            "not_an_image.jpg",
        ),
        (
            vec![
                "embed".into(),
                "--model".into(),
                "no/such/model".into(),
                "--text".into(),
                "a".into(),
            ],
            "no/such/model",
        ),
        (
            vec![
                "embed".into(),
                "--model".into(),
                fixture("images").to_str().unwrap().into(),
                "--text".into(),
                "a".into(),
            ],
            "no weights",
        ),
        (
            vec![
                "info".into(),
                "--model".into(),
                m.into(),
                "--device".into(),
                "tpu".into(),
            ],
            "unknown device",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, stderr) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

fn s(p: std::path::PathBuf) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn classify_json_lists_every_label_in_input_order() {
    let model = s(fixture("vit_tiny"));
    let (a, b, bad) = (
        s(fixture("images/chelsea.jpg")),
        s(fixture("images/rocket.jpg")),
        s(fixture("images/not_an_image.jpg")),
    );
    let (ok, stdout, stderr) = run(&[
        "classify",
        "--model",
        &model,
        "--labels",
        "cat, rocket,coffee",
        "--templates",
        "cifar",
        "--json",
        &a,
        &bad,
        &b,
    ]);
    assert!(!ok, "a non-image makes the exit status non-zero");
    assert!(stderr.contains("1 of 3 images"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["image"], a.as_str());
    assert!(items[1]["error"]
        .as_str()
        .unwrap()
        .contains("not_an_image.jpg"));
    assert_eq!(items[2]["image"], b.as_str());
    // every label, sorted by probability, equal to the library's zero-shot probabilities
    let device = Default::default();
    let lib = Pretrained::<B>::load(fixture("vit_tiny"), &device).unwrap();
    let labels: Vec<String> = ["cat", "rocket", "coffee"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let classifier = lib
        .zero_shot_classifier(
            &labels,
            &clip::zeroshot::Templates::cifar(),
            &device,
            |_| (),
        )
        .unwrap();
    let embeds = lib
        .embed_image_files(&[fixture("images/chelsea.jpg")], &device)
        .unwrap();
    let expected = values(classifier.probabilities(embeds, 100.0));
    let predictions = items[0]["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    let probs: Vec<f32> = predictions
        .iter()
        .map(|p| p["prob"].as_f64().unwrap() as f32)
        .collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]));
    for p in predictions {
        let i = labels
            .iter()
            .position(|l| l == p["label"].as_str().unwrap())
            .unwrap();
        assert!((p["prob"].as_f64().unwrap() as f32 - expected[i]).abs() < 1e-6);
    }
}

#[test]
fn classify_table_and_classifier_cache() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.txt");
    std::fs::write(&labels, "cat\nrocket\n\n").unwrap();
    let cache = dir.path().join("classifier.safetensors");
    let model = s(fixture("vit_tiny"));
    let image = s(fixture("images/chelsea.jpg"));
    let args = |templates: &str| {
        vec![
            "classify".to_string(),
            "--model".into(),
            model.clone(),
            "--labels-file".into(),
            s(labels.clone()),
            "--templates".into(),
            templates.into(),
            "--classifier".into(),
            s(cache.clone()),
            "--top-k".into(),
            "1".into(),
            image.clone(),
        ]
    };
    let run_args = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&a)
    };
    let (ok, first, stderr) = run_args(args("none"));
    assert!(ok, "{stderr}");
    assert_eq!(first.lines().count(), 2, "{first}");
    assert!(cache.is_file());
    let (ok, second, stderr) = run_args(args("none"));
    assert!(ok && !stderr.contains("rebuilding"), "{stderr}");
    assert_eq!(first, second);
    let (ok, _, stderr) = run_args(args("simple"));
    assert!(
        ok && stderr.contains("rebuilding") && stderr.contains("templates"),
        "{stderr}"
    );
}

#[test]
fn classify_rejects_bad_labels_and_templates() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("t.txt");
    std::fs::write(&templates, "a photo of a {}\nno marker\n").unwrap();
    let model = s(fixture("vit_tiny"));
    let image = s(fixture("images/chelsea.jpg"));
    let (ok, _, stderr) = run(&[
        "classify",
        "--model",
        &model,
        "--labels",
        "cat,dog,cat",
        &image,
    ]);
    assert!(
        !ok && stderr.contains("label \"cat\" appears twice in --labels"),
        "{stderr}"
    );
    // a labels file is a dataset's class list, where a name may stand for two classes
    let labels = dir.path().join("labels.txt");
    std::fs::write(&labels, "cat\ndog\ncat\n").unwrap();
    let (ok, stdout, stderr) = run(&[
        "classify",
        "--model",
        &model,
        "--labels-file",
        &s(labels),
        "--json",
        &image,
    ]);
    assert!(ok, "{stderr}");
    let out: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let probs: Vec<f64> = out[0]["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["label"] == "cat")
        .map(|p| p["prob"].as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 2, "{stdout}");
    assert_eq!(probs[0], probs[1], "{stdout}");
    let (ok, _, stderr) = run(&["classify", "--model", &model, "--labels", "cat,", &image]);
    assert!(!ok && stderr.contains("empty"), "{stderr}");
    let (ok, _, stderr) = run(&[
        "classify",
        "--model",
        &model,
        "--labels",
        "cat",
        "--templates",
        &s(templates),
        &image,
    ]);
    assert!(!ok && stderr.contains("line 2"), "{stderr}");
}

#[test]
fn similarity_prints_the_matrix_and_draws_the_figure() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("sim.png");
    let (ok, stdout, stderr) = run(&[
        "similarity",
        "--model",
        &s(fixture("rn_tiny")),
        "--image",
        &s(fixture("images/chelsea.jpg")),
        "--image",
        &s(fixture("images/coffee.png")),
        "--text",
        "a cat",
        "--text",
        "coffee",
        "--text",
        "a dog",
        "--plot",
        &s(plot.clone()),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 4);
    let png = image::open(&plot).unwrap();
    assert!(png.width() > 2 * 96 && png.height() > 3 * 96);
}

#[test]
fn eval_zeroshot_and_retrieval_reports() {
    let dir = tempfile::tempdir().unwrap();
    for (class, files) in [
        ("house_cat", vec!["chelsea.jpg", "chelsea_palette.gif"]),
        ("rocket", vec!["rocket.jpg"]),
    ] {
        let d = dir.path().join(class);
        std::fs::create_dir_all(&d).unwrap();
        for f in files {
            std::fs::copy(fixture("images").join(f), d.join(f)).unwrap();
        }
    }
    let (ok, stdout, stderr) = run(&[
        "eval",
        "zeroshot",
        "--model",
        &s(fixture("vit_tiny")),
        "--data",
        &s(dir.path().to_path_buf()),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["images"], 3);
    assert_eq!(
        report["classes"],
        serde_json::json!(["house cat", "rocket"])
    );
    assert_eq!(report["top5"], 1.0);
    let confusion: Vec<Vec<usize>> =
        serde_json::from_value(report["confusion_matrix"].clone()).unwrap();
    assert_eq!(
        confusion
            .iter()
            .map(|r| r.iter().sum::<usize>())
            .collect::<Vec<_>>(),
        vec![2, 1]
    );

    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"image\": \"house_cat/chelsea.jpg\", \"caption\": \"a cat\"}\n{\"image\": \"rocket/rocket.jpg\", \"caption\": \"a rocket\"}\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&[
        "eval",
        "retrieval",
        "--model",
        &s(fixture("vit_tiny")),
        "--data",
        &s(pairs.clone()),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["recall"]["k"], serde_json::json!([1, 5, 10]));
    assert_eq!(report["recall"]["image_to_text"][1], 1.0);
    std::fs::write(&pairs, "{\"image\": \"x.jpg\"}\n").unwrap();
    let (ok, _, stderr) = run(&[
        "eval",
        "retrieval",
        "--model",
        &s(fixture("vit_tiny")),
        "--data",
        &s(pairs),
    ]);
    assert!(
        !ok && stderr.contains("line 1") && stderr.contains("caption"),
        "{stderr}"
    );
}

#[test]
fn without_a_model_the_bundled_one_classifies() {
    // the bundled Fashion-MNIST scenes model never saw a blue bag in training
    let samples = fixture("../assets/samples");
    let (ok, stdout, stderr) = run(&[
        "classify",
        "--labels",
        "blue bag,red sneaker,green sandal,blue shirt",
        "--templates",
        "none",
        "--json",
        &s(samples.join("blue_bag.png")),
        &s(samples.join("red_sneaker.png")),
        &s(samples.join("green_sandal.png")),
    ]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let top: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["predictions"][0]["label"].as_str().unwrap())
        .collect();
    assert_eq!(top, vec!["blue bag", "red sneaker", "green sandal"]);
    let (ok, stdout, _) = run(&["embed", "--text", "a blue bag"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["text_embeds"][0].as_array().unwrap().len(), 96);
}

/// Every subcommand that takes `--model` falls back to the bundled model.
#[test]
fn without_a_model_every_subcommand_uses_the_bundled_one() {
    let samples = fixture("../assets/samples");
    let (ok, stdout, stderr) = run(&[
        "similarity",
        "--image",
        &s(samples.join("blue_bag.png")),
        "--image",
        &s(samples.join("red_sneaker.png")),
        "--text",
        "a blue bag",
        "--text",
        "a red sneaker",
    ]);
    assert!(ok, "{stderr}");
    // each text is most similar to its own image
    let rows: Vec<Vec<f64>> = stdout
        .lines()
        .filter(|l| l.starts_with("a "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(
        rows[0][0] > rows[0][1] && rows[1][1] > rows[1][0],
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(&["info", "--json"]);
    assert!(ok, "{stderr}");
    let info: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(info["config"]["embed_dim"], 96, "{info}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundled");
    let (ok, _, stderr) = run(&["convert", "--output", &s(out.clone())]);
    assert!(ok, "{stderr}");
    assert!(out.join("clip_config.json").is_file() && out.join("model.bpk").is_file());
}

#[test]
fn eval_fashion_scenes_measures_the_bundled_model() {
    let subset = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/fashion-mnist");
    let (ok, stdout, stderr) = run(&[
        "eval",
        "fashion-scenes",
        "--data",
        subset,
        "--samples",
        "300",
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let at = |k: &str| report[k].as_f64().unwrap();
    assert_eq!(report["samples"], 300);
    // far above chance (10 %, 1.4 %, 1.4 %, 0.3 %) for the shipped weights; the README has the full
    // numbers on all 10000 test items
    assert!(at("grayscale_class_top1") > 0.6, "{report}");
    assert!(at("grayscale_class_top1_plain") > 0.6, "{report}");
    assert!(at("held_out_pair_top1") > 0.4, "{report}");
    assert!(at("seen_pair_top1") > 0.5, "{report}");
    assert!(at("retrieval_r1") > 0.1, "{report}");

    // a missing dataset names the file looked for, the package and the flag
    let (ok, _, stderr) = run(&["eval", "fashion-scenes", "--data", "/nonexistent"]);
    assert!(!ok);
    assert!(
        stderr.contains("/nonexistent/t10k-images-idx3-ubyte.gz")
            && stderr.contains("dataset-fashion-mnist")
            && stderr.contains("--data DIR")
            && stderr.contains("FASHION_MNIST_DIR"),
        "{stderr}"
    );
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn dtype_runs_the_model_in_half_precision() {
    let model = fixture("vit_tiny");
    let image = fixture("images/chelsea.jpg");
    let embed = |dtype: &str| -> (Vec<f32>, Vec<f32>) {
        let (ok, stdout, stderr) = run(&[
            "embed",
            "--dtype",
            dtype,
            "--model",
            model.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--text",
            "a cat",
        ]);
        assert!(ok, "--dtype {dtype}: {stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let row = |k: &str| -> Vec<f32> {
            let rows: Vec<Vec<f32>> = serde_json::from_value(json[k].clone()).unwrap();
            rows[0].clone()
        };
        (row("image_embeds"), row("text_embeds"))
    };
    let (image32, text32) = embed("f32");
    for dtype in ["bf16", "f16"] {
        let (image, text) = embed(dtype);
        // computed in half precision: close to f32, not equal to it
        assert_ne!(image, image32, "{dtype}");
        let (ci, ct) = (cosine(&image, &image32), cosine(&text, &text32));
        assert!(ci > 0.999 && ct > 0.999, "{dtype}: cosines {ci} {ct}");
    }
    // a classifier saved by a half-precision run is read back and used by the next one
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("classifier.safetensors");
    let classify = || {
        run(&[
            "classify",
            "--dtype",
            "f16",
            "--model",
            model.to_str().unwrap(),
            "--labels",
            "cat,rocket",
            "--classifier",
            cache.to_str().unwrap(),
            "--json",
            image.to_str().unwrap(),
        ])
    };
    let (ok, first, stderr) = classify();
    assert!(ok && cache.is_file(), "{stderr}");
    let (ok, second, stderr) = classify();
    assert!(ok && !stderr.contains("rebuilding"), "{stderr}");
    // the same probabilities (to rounding: the saved classifier is contiguous, the built one a transpose)
    let probs = |out: &str| -> Vec<f64> {
        let json: serde_json::Value = serde_json::from_str(out).unwrap();
        json[0]["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["prob"].as_f64().unwrap())
            .collect()
    };
    let (a, b) = (probs(&first), probs(&second));
    assert_eq!(a.len(), 2);
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
        "{a:?} {b:?}"
    );
    // a dtype that does not exist, and training or conversion (f32 only): refused before any work
    let (ok, _, stderr) = run(&["embed", "--dtype", "fp8", "--text", "a"]);
    assert!(!ok && stderr.contains("unknown dtype \"fp8\""), "{stderr}");
    let (ok, _, stderr) = run(&["train", "--dtype", "bf16", "--config", "missing.toml"]);
    assert!(!ok && stderr.contains("training runs in f32"), "{stderr}");
    // for convert, --dtype is how the weights are stored; --half says f16 too
    let (ok, _, stderr) = run(&["convert", "--dtype", "bf16", "--half", "--output", "out"]);
    assert!(!ok && stderr.contains("disagree"), "{stderr}");
}

#[test]
fn classify_says_a_siglip_model_scores_with_a_sigmoid() {
    let image = s(fixture("images/chelsea.jpg"));
    let scores = |model: &str| {
        let (ok, stdout, stderr) = run(&[
            "classify",
            "--model",
            model,
            "--labels",
            "a cat,a dog,a rocket",
            "--templates",
            "none",
            "--json",
            &image,
        ]);
        assert!(ok, "{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let item = json[0].clone();
        let sum: f64 = item["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["prob"].as_f64().unwrap())
            .sum();
        (item["scoring"].as_str().unwrap().to_string(), sum, stderr)
    };
    let (scoring, sum, stderr) = scores(&s(fixture("siglip/siglip")));
    assert_eq!(scoring, "sigmoid");
    assert!(stderr.contains("sigmoid(scale · cos + bias)"), "{stderr}");
    // independent per label: far from a distribution with these small random models
    assert!((sum - 1.0).abs() > 0.05, "{sum}");
    let (scoring, sum, _) = scores(&s(fixture("vit_tiny")));
    assert_eq!(scoring, "softmax");
    assert!((sum - 1.0).abs() < 1e-5, "{sum}");
}
