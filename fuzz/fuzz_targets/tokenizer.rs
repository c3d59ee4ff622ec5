//! CLIP's BPE tokenizer on arbitrary bytes (read as lossy UTF-8), whole and line by line as JSONL
//! strings: it must return ids or a typed error, never panic.
#![no_main]
use std::sync::OnceLock;

use clip::tokenizer::TextTokenizer;
use libfuzzer_sys::fuzz_target;

static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let tokenizer = TOKENIZER.get_or_init(|| TextTokenizer::clip(77).expect("CLIP's tokenizer"));
    let text = String::from_utf8_lossy(data);
    let _ = tokenizer.tokenize(&text);
    for line in text.lines() {
        if let Ok(line) = serde_json::from_str::<String>(line) {
            let _ = tokenizer.tokenize(&line);
        }
    }
});
