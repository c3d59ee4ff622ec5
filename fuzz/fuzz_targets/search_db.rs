//! The search database and its approximate index file (what it does: `fuzz/bodies.rs`).
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::search_db(data));
