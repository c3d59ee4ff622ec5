//! What each fuzz target does with its input, shared by the cargo-fuzz targets (`fuzz_targets/`) and
//! by the stable test that replays the kept corpora and crash inputs (`crates/clip-cli/tests/
//! fuzz_corpus.rs`). Every function must return (an error is fine) and never panic, abort or hang.
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use clip::tokenizer::TextTokenizer;

/// Writes `data` to a file called `name` in a fresh temporary directory and calls `read` on it.
fn with_file(name: &str, data: &[u8], read: impl FnOnce(&Path)) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join(name);
    if std::fs::write(&path, data).is_ok() {
        read(&path);
    }
}

/// The first byte picks one of `names`; the rest is the content.
fn named<'a>(data: &'a [u8], names: &[&'static str]) -> (&'static str, &'a [u8]) {
    let name = names[data.first().copied().unwrap_or(0) as usize % names.len()];
    (name, data.get(1..).unwrap_or_default())
}

/// CLIP's BPE tokenizer on arbitrary bytes (read as lossy UTF-8), whole and line by line as JSONL
/// strings: ids or a typed error.
pub fn tokenizer(data: &[u8]) {
    static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();
    let tokenizer = TOKENIZER.get_or_init(|| TextTokenizer::clip(77).expect("CLIP's tokenizer"));
    let text = String::from_utf8_lossy(data);
    let _ = tokenizer.tokenize(&text);
    for line in text.lines() {
        if let Ok(line) = serde_json::from_str::<String>(line) {
            let _ = tokenizer.tokenize(&line);
        }
    }
}

/// Model configs as users hand them over: open_clip's model config and `open_clip_config.json`,
/// transformers' `config.json` and `preprocessor_config.json`, and this library's own format.
pub fn config_json(data: &[u8]) {
    use clip::pretrained::{preprocess_from_hf, preprocess_from_open_clip};
    use clip::ClipConfig;
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(config) = ClipConfig::from_open_clip_json(&json) {
        let _ = config.to_open_clip_json();
        let _ = config.to_hf_json();
    }
    let _ = ClipConfig::from_open_clip_json(json.get("model_cfg").unwrap_or(&json));
    let _ = ClipConfig::from_hf_json(&json);
    let _ = serde_json::from_value::<ClipConfig>(json.clone());
    let _ = preprocess_from_hf(&json, 224);
    let _ = preprocess_from_open_clip(Some(&json), 224);
}

/// Image files of any format we accept, then the preprocessing a model applies: decoding gives an
/// image or a typed error; an image that decodes is resized as CLIP's and NaFlex preprocessing do.
pub fn image_decode(data: &[u8]) {
    use clip::data::{decode_rgb, normalize, resize_and_crop, PreprocessConfig, ResizeMode};
    // the extension is part of how the format is chosen: the first byte picks one (and stays in
    // the data, as before the bodies were shared, so that old corpora keep their meaning)
    let names = ["f.jpg", "f.png", "f.webp", "f.gif", "f.bmp", "f.tiff", "f"];
    let name = names[data.first().copied().unwrap_or(0) as usize % names.len()];
    let Ok(image) = decode_rgb(data, Path::new(name)) else {
        return;
    };
    let clip = PreprocessConfig::clip(32);
    let _ = normalize(&resize_and_crop(&image, &clip), &clip);
    let naflex = PreprocessConfig {
        resize_mode: ResizeMode::Patches {
            patch_size: 8,
            max_patches: 24,
        },
        ..PreprocessConfig::clip(32)
    };
    let _ = normalize(&resize_and_crop(&image, &naflex), &naflex);
}

/// Weight files: safetensors, PyTorch pickles (zip and legacy) and TorchScript archives, read as
/// data (nothing in a pickle is executed): tensors or a typed error naming the file.
pub fn state_dict(data: &[u8]) {
    let (name, content) = named(data, &["w.safetensors", "w.bin", "w.pt", "w.pth"]);
    with_file(name, content, |path| {
        if let Ok(state) = clip::StateDict::read(path) {
            let _ = state.layout();
            let _ = state.shapes();
        }
    });
}

/// Captions files: `image,caption` CSV or `{"image", "caption"}` JSONL, as `clip train` and `clip
/// embed-dataset` read them; pairs or an error naming the line.
pub fn captions(data: &[u8]) {
    let (name, content) = named(data, &["captions.csv", "captions.jsonl"]);
    with_file(name, content, |path| {
        if let Ok(pairs) = clip::data::captions::read_caption_file(path) {
            for pair in pairs.iter().take(4) {
                let _ = pair.image.path();
            }
        }
    });
}

/// webdataset tar shards: indexed as a stream (members grouped by key, image headers probed), then
/// every indexed image read back from its offset and decoded.
pub fn tar_shard(data: &[u8]) {
    with_file("shard-000.tar", data, |path| {
        for strict in [false, true] {
            if let Ok((pairs, _report)) = clip::data::captions::index_shard(path, strict) {
                for pair in pairs.iter().take(8) {
                    let _ = pair.image.decode();
                }
            }
        }
    });
}

/// The search database (SQLite) and the approximate index's file beside it, as `clip search` and
/// `clip serve` open them: rows or a typed error (a foreign or damaged file is refused, never changed).
pub fn search_db(data: &[u8]) {
    use clip_search::Index;
    let (name, content) = named(data, &["index.sqlite3", "index.sqlite3.usearch"]);
    with_file(name, content, |path| {
        if name.ends_with(".usearch") {
            if let Ok(ann) = clip_search::ann::Ann::open(path, false) {
                let _ = ann.len();
            }
            return;
        }
        let Ok(index) = Index::open(path) else {
            return;
        };
        let dim = match index.model() {
            Ok(Some(model)) => model.dim.clamp(1, 4096),
            _ => 16,
        };
        let _ = index.counts();
        let _ = index.rows();
        let _ = index.unreadable();
        let _ = index.integrity_ok();
        let _ = index.ann_pending();
        if let Ok(vectors) = index.vectors(dim) {
            let _ = vectors.len();
        }
    });
}
