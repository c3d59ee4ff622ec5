//! TorchScript archives (OpenAI's `clip.load` files) read as data, against what PyTorch reads from the
//! same file: `fixtures/torchscript/` (scripts/gen_torchscript_fixtures.py).

mod common;

use std::io::Write;

use burn::backend::Flex;
use clip::weights::StateDict;
use clip::Pretrained;
use common::*;

const ARCHIVE: &str = "torchscript/vit_openai.pt";

#[test]
fn the_state_dict_is_what_torch_jit_load_gives() {
    let listing: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("torchscript/vit_openai.json")).unwrap(),
    )
    .unwrap();
    let expected = listing["state_dict"].as_object().unwrap();
    let ours = clip::torchscript::read_state_dict(&fixture(ARCHIVE)).unwrap();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        expected
            .keys()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let mut halves = 0;
    for (key, data) in &ours {
        let want = &expected[key];
        let dtype = format!("{:?}", data.dtype).to_lowercase();
        let want_dtype = match want["dtype"].as_str().unwrap() {
            "float32" => "f32",
            "float16" => "f16",
            "int64" => "i64",
            other => panic!("{key}: {other}"),
        };
        assert_eq!(dtype, want_dtype, "{key}");
        halves += (dtype == "f16") as usize;
        let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).unwrap();
        assert_eq!(data.shape.to_vec(), shape, "{key}");
        let sum: f64 = data
            .clone()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap()
            .iter()
            .filter(|v| v.is_finite())
            .sum();
        let want_sum = want["sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() <= 1e-9 * want_sum.abs().max(1.0),
            "{key}: sum {sum} vs {want_sum}"
        );
    }
    // OpenAI's quirks are all there: fp16 storages beside f32 ones, the sizes as tensors, the mask
    assert!(halves > 20, "{halves} fp16 tensors");
    for key in [
        "input_resolution",
        "context_length",
        "vocab_size",
        "attn_mask",
    ] {
        assert!(ours.contains_key(key), "{key}");
    }
}

#[test]
fn a_scripted_model_loads_and_gives_open_clips_embeddings() {
    let device = Default::default();
    // the derived tensors are left out of the state dict a model is built from
    let sd = StateDict::read(fixture(ARCHIVE)).unwrap();
    assert!(!sd.tensors.contains_key("attn_mask") && !sd.tensors.contains_key("input_resolution"));
    let clip = Pretrained::<Flex>::load(fixture(ARCHIVE), &device).unwrap();
    assert_eq!(clip.config.text.vocab_size, 512);
    assert_eq!(clip.config.image_size(), 32);
    let reference = Reference::open("torchscript/vit_openai_reference.safetensors");
    let image = clip
        .model
        .encode_image(reference.tensor4::<Flex>("pixel_values", &device));
    let (want, shape) = reference.f32("image_embeds");
    assert_eq!(image.dims().to_vec(), shape);
    let e = relative_error(&values(image), &want);
    let text = clip
        .model
        .encode_text(reference.ids::<Flex>("text_ids", &device));
    let (want_text, _) = reference.f32("text_embeds");
    let t = relative_error(&values(text), &want_text);
    println!("vit_openai.pt: image embeds relative error {e:.2e}, text {t:.2e}");
    assert!(e < 1e-5 && t < 1e-5, "{e} {t}");
    // its 512-token table cannot take CLIP's tokenizer output: an error, not an out-of-bounds read
    let err = clip
        .embed_texts(&["a cat"], &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("512") && err.contains("49408"), "{err}");
}

/// A copy of the fixture archive with one entry replaced.
fn archive_with(replace: &str, bytes: &[u8]) -> tempfile::TempPath {
    let mut source = zip::ZipArchive::new(std::fs::File::open(fixture(ARCHIVE)).unwrap()).unwrap();
    let out = tempfile::Builder::new().suffix(".pt").tempfile().unwrap();
    let mut writer = zip::ZipWriter::new(out.reopen().unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..source.len() {
        let mut entry = source.by_index(i).unwrap();
        let entry_name = entry.name().to_string();
        writer.start_file(entry_name.as_str(), options).unwrap();
        if entry_name == format!("vit_openai/{replace}") {
            writer.write_all(bytes).unwrap();
        } else {
            std::io::copy(&mut entry, &mut writer).unwrap();
        }
    }
    writer.finish().unwrap();
    out.into_temp_path()
}

#[test]
fn a_pickle_that_would_run_code_is_refused_and_nothing_runs() {
    // GLOBAL os.system + REDUCE: what a malicious pickle does
    let pickle = b"\x80\x02cos\nsystem\nq\x00X\x1b\x00\x00\x00touch /tmp/clip-pwned-by-pt\x85R.";
    let path = archive_with("data.pkl", pickle);
    let err = StateDict::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("os.system") && err.contains("refused"),
        "{err}"
    );
    assert!(!std::path::Path::new("/tmp/clip-pwned-by-pt").exists());
}

#[test]
fn a_truncated_storage_is_named() {
    // data/0 is the first tensor's storage: cut it short
    let path = archive_with("data/0", &[0u8; 6]);
    let err = StateDict::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("TorchScript") && err.contains("data/0"),
        "{err}"
    );
}
