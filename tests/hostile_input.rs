//! Bounded resources on hostile input: a 10 MB text tokenizes in linear time into the same row as its
//! first words, a real 16384 × 16384 PNG is refused from its header, and an 8192 × 8192 one (under the
//! limit) decodes and preprocesses; each phase prints its time and the peak memory it added, and the
//! memory is asserted against what the limits promise.
//!
//! One test in its own binary, phases in sequence: the peak resident size (`VmHWM`, reset through
//! `/proc/self/clear_refs` before each phase) is this phase's alone.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use clip::data::{
    decode_rgb, load_rgb, normalize, resize_and_crop, ImageError, ImageLimits, PreprocessConfig,
};
use clip::tokenizer::ClipTokenizer;

/// `(current RSS, peak RSS since the last reset)` in MB, from /proc (None off Linux).
fn memory() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak to the current size (Linux 4.0+: writing 5 to clear_refs).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `phase`, printing how long it took and how much memory it added at its peak (MB).
fn measured<T>(name: &str, phase: impl FnOnce() -> T) -> (T, f64) {
    reset_peak();
    let before = memory().map_or(0.0, |m| m.0);
    let start = Instant::now();
    let out = phase();
    let seconds = start.elapsed().as_secs_f64();
    let added = memory().map_or(0.0, |m| m.1 - before);
    println!("{name}: {seconds:.2} s, peak memory +{added:.0} MB");
    (out, added)
}

/// A PNG of `side` × `side` gray RGB pixels, written row by row (its pixels never held in memory):
/// a real image, about `side² × 3 / 1000` bytes once compressed.
fn write_png(path: &Path, side: u32) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, side, side);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let mut row = vec![128u8; side as usize * 3];
    for y in 0..side {
        // a diagonal line, so that the image is not one colour
        let x = (y as usize * 3) % row.len();
        row[x] = 255;
        stream.write_all(&row).unwrap();
        row[x] = 128;
    }
    stream.finish().unwrap();
}

#[test]
fn a_10_mb_text_and_a_16k_image_stay_within_their_bounds() {
    // 10 MB of words, entities and non-ASCII text, in lines
    let words = [
        "a", "photo", "of", "the", "CAT", "&amp;", "naïve", "café", "東京", "don't", "x2", "🙂",
    ];
    let mut text = String::with_capacity(10_500_000);
    let mut i = 0usize;
    while text.len() < 10_000_000 {
        text.push_str(words[(i * 7 + i / 13) % words.len()]);
        text.push(if i % 17 == 16 { '\n' } else { ' ' });
        i += 1;
    }
    let tokenizer = ClipTokenizer::new().unwrap();
    let (ids, added) = measured("tokenize a 10 MB text", || tokenizer.tokenize(&text));
    // the row is the one of the text's first words (the rest is cut): the same as for a 2 KB prefix
    let prefix = &text[..text[..2000].rfind(' ').unwrap()];
    assert_eq!(ids, tokenizer.tokenize(prefix));
    assert_eq!(ids.len(), 77);
    // cleaning copies the text a few times: bounded by 10 copies of it
    assert!(added < 100.0 + 10.0 * 10.0, "+{added:.0} MB");
    // linear: twice the text, at most about twice the time (plus noise); measured, not asserted
    let double = text.repeat(2);
    measured("tokenize a 20 MB text", || tokenizer.tokenize(&double));

    let dir = tempfile::tempdir().unwrap();
    // 16384 × 16384 = 268 M pixels, over the default limit (179 M, PIL's): refused from the header
    let huge = dir.path().join("huge.png");
    write_png(&huge, 16384);
    let bytes = std::fs::read(&huge).unwrap();
    println!("16384 × 16384 PNG: {} bytes", bytes.len());
    let (refused, added) = measured("refuse a 16384 × 16384 PNG", || {
        decode_rgb(&bytes, &huge).unwrap_err()
    });
    assert!(
        matches!(&refused, ImageError::TooLarge { .. })
            && refused
                .to_string()
                .contains("16384x16384 is 268435456 pixels"),
        "{refused}"
    );
    assert!(added < 20.0, "+{added:.0} MB to refuse from the header");
    // a JPEG whose frame header claims 20000 × 20000: libjpeg reads the header, nothing is decoded
    let mut jpeg = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jpeg/baseline_420_q75.jpg"),
    )
    .unwrap();
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&20000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&20000u16.to_be_bytes());
    let (refused, added) = measured("refuse a JPEG header of 20000 × 20000", || {
        decode_rgb(&jpeg, Path::new("bomb.jpg")).unwrap_err()
    });
    assert!(
        refused
            .to_string()
            .contains("20000x20000 is 400000000 pixels"),
        "{refused}"
    );
    assert!(added < 20.0, "+{added:.0} MB");
    // a lower limit refuses the 16384 × 16384 one too, of course
    let (tight, _) = measured("refuse it under a 1 M pixel limit", || {
        let limits = ImageLimits {
            max_pixels: 1_000_000,
            ..ImageLimits::default()
        };
        clip::data::decode_rgb_within(&bytes, &huge, &limits).unwrap_err()
    });
    assert!(matches!(tight, ImageError::TooLarge { .. }), "{tight}");

    // 8192 × 8192 (67 M pixels, under the limit): decoded (201 MB of RGB) and preprocessed
    let large = dir.path().join("large.png");
    write_png(&large, 8192);
    let config = PreprocessConfig::clip(224);
    let (pixels, added) = measured("decode and preprocess an 8192 × 8192 PNG", || {
        let image = load_rgb(&large).unwrap();
        assert_eq!(image.dimensions(), (8192, 8192));
        normalize(&resize_and_crop(&image, &config), &config)
    });
    assert_eq!(pixels.len(), 3 * 224 * 224);
    // the RGB image, the decoder's buffers and the resize's intermediate: under 4 bytes per pixel
    // twice over, far below the limit's 8 bytes per pixel of the largest image allowed
    let rgb = 8192.0 * 8192.0 * 3.0 / 1e6 / 1.048_576;
    assert!(
        added < 2.5 * rgb,
        "+{added:.0} MB for {rgb:.0} MB of pixels"
    );
}
