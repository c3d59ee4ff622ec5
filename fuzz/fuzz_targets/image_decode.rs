//! Image files of every accepted format, then preprocessing (what it does: `fuzz/bodies.rs`).
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::image_decode(data));
