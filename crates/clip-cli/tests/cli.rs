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
