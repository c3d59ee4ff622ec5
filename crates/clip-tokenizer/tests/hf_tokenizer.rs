//! A Hugging Face `tokenizer.json` against open_clip's `HFTokenizer` on the same texts and settings
//! (fixtures/hf_tokenizer, scripts/gen_hf_tokenizer_fixtures.py: a small BERT-style WordPiece tokenizer).

use std::collections::HashMap;

use clip_tokenizer::{Cleaning, HfTokenizer};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/hf_tokenizer");

#[test]
fn ids_match_open_clips_hf_tokenizer_for_every_cleaning_and_sep_setting() {
    let expected = std::fs::read_to_string(format!("{DIR}/expected.jsonl")).unwrap();
    let mut tokenizers: HashMap<(String, bool), HfTokenizer> = HashMap::new();
    let (mut rows, mut cut, mut stripped) = (0, 0, 0);
    for line in expected.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let clean = row["clean"].as_str().unwrap().to_string();
        let strip = row["strip_sep_token"].as_bool().unwrap();
        let tokenizer = tokenizers.entry((clean.clone(), strip)).or_insert_with(|| {
            HfTokenizer::from_dir(format!("{DIR}/bert_tiny"))
                .unwrap()
                .with_context_length(16)
                .unwrap()
                .with_cleaning(Cleaning::from_name(&clean).unwrap())
                .with_strip_sep_token(strip)
        });
        let want: Vec<u32> = serde_json::from_value(row["ids"].clone()).unwrap();
        let text = row["text"].as_str().unwrap();
        let got = tokenizer.tokenize(text).unwrap();
        assert_eq!(got, want, "{clean}, strip {strip}: {text:?}");
        rows += 1;
        cut += usize::from(want[15] != 0);
        stripped += usize::from(strip && !want.contains(&3));
    }
    println!("{rows} rows; {cut} cut at the context length; {stripped} with the separator zeroed");
    // the fixture exercises what it should: cuts, and separators removed
    assert!(
        rows == 1440 && cut > 100 && stripped > 100,
        "{rows} {cut} {stripped}"
    );
}

#[test]
fn a_missing_or_broken_tokenizer_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = HfTokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::write(dir.path().join("tokenizer.json"), b"{ not json").unwrap();
    let err = HfTokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}
