//! The fuzz targets' kept inputs, replayed as ordinary tests on stable: `fuzz/regressions/TARGET/`
//! holds each target's minimized corpus (`corpus.tar.gz`: what reached new code while fuzzing, packed
//! by `scripts/fuzz-keep.sh`) and every input that ever crashed it, fixed since (`crash-*`). Each runs
//! through the same function the fuzz target calls (`fuzz/bodies.rs`), which must return without a
//! panic. `scripts/fuzz.sh` does the fuzzing.

use std::io::Read;
use std::path::PathBuf;

#[path = "../../../fuzz/bodies.rs"]
mod bodies;

/// Every kept input of `target`: (name, bytes).
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "corpus.tar.gz" {
            let file = std::fs::File::open(&path).unwrap();
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
            for member in archive.entries().unwrap() {
                let mut member = member.unwrap();
                let name = member.path().unwrap().to_string_lossy().into_owned();
                let mut bytes = Vec::new();
                member.read_to_end(&mut bytes).unwrap();
                inputs.push((format!("corpus.tar.gz:{name}"), bytes));
            }
        } else {
            inputs.push((name, std::fs::read(&path).unwrap()));
        }
    }
    inputs.sort();
    inputs
}

fn replay(target: &str, body: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(inputs.len() >= 10, "{target}: only {} inputs", inputs.len());
    for (name, data) in &inputs {
        // a panic names the input that caused it
        let result = std::panic::catch_unwind(|| body(data));
        assert!(result.is_ok(), "{target}: {name} panicked");
    }
    println!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn tokenizer() {
    replay("tokenizer", bodies::tokenizer);
}

#[test]
fn config_json() {
    replay("config_json", bodies::config_json);
}

#[test]
fn image_decode() {
    replay("image_decode", bodies::image_decode);
}

#[test]
fn state_dict() {
    replay("state_dict", bodies::state_dict);
}

#[test]
fn captions() {
    replay("captions", bodies::captions);
}

#[test]
fn tar_shard() {
    replay("tar_shard", bodies::tar_shard);
}

#[test]
fn search_db() {
    replay("search_db", bodies::search_db);
}
