//! Decoding: formats, colour layouts and bad files.

mod common;

use clip::data::{load_rgb, ImageError};
use common::*;

#[test]
fn sixteen_bit_png_equals_its_eight_bit_twin() {
    // coins16.png holds v·257 for every v of coins8.png; PIL would clip it to white instead
    let eight = load_rgb(fixture("images/coins8.png")).unwrap();
    let sixteen = load_rgb(fixture("images/coins16.png")).unwrap();
    assert_eq!(eight.dimensions(), (163, 201));
    assert_eq!(eight, sixteen);
}

#[test]
fn gray_palette_and_alpha_become_rgb() {
    let gray = load_rgb(fixture("images/camera_gray.png")).unwrap();
    assert!(gray.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    assert!(gray.pixels().any(|p| p[0] != gray.get_pixel(0, 0)[0]));
    let rgba = load_rgb(fixture("images/hubble_rgba.png")).unwrap();
    assert_eq!(rgba.dimensions(), (317, 250));
    let gif = load_rgb(fixture("images/chelsea_palette.gif")).unwrap();
    assert_eq!(gif.dimensions(), (150, 113));
}

#[test]
fn bad_files_are_named_errors() {
    match load_rgb(fixture("images/not_an_image.jpg")) {
        Err(e @ ImageError::UnknownFormat { .. }) => {
            assert!(e.to_string().contains("not_an_image.jpg"))
        }
        other => panic!("{other:?}"),
    }
    match load_rgb(fixture("images/truncated.jpg")) {
        Err(e @ ImageError::Decode { .. }) => assert!(e.to_string().contains("truncated"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        load_rgb(fixture("images/missing.png")),
        Err(ImageError::Read { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let cut_png = dir.path().join("cut.png");
    let png = std::fs::read(fixture("images/coffee.png")).unwrap();
    std::fs::write(&cut_png, &png[..png.len() / 2]).unwrap();
    assert!(matches!(load_rgb(&cut_png), Err(ImageError::Decode { .. })));
}

/// JPEGs in the layouts photos come in (4:2:0, 4:2:2, 4:4:4, progressive, grayscale, restart markers,
/// arithmetic coding, odd sizes) and the two fixture photos decode to exactly the bytes PIL 13's libjpeg-turbo gives
/// (`scripts/gen_jpeg_fixtures.py`). The pure-Rust decoder is off by a few levels on most of them,
/// so this fails if JPEGs stop going through libjpeg.
#[cfg(any(feature = "exact-jpeg", feature = "system-libjpeg-turbo"))]
#[test]
fn jpeg_decodes_to_pils_bytes() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jpeg/manifest.json")).unwrap())
            .unwrap();
    let names = manifest["files"].as_array().unwrap();
    assert_eq!(names.len(), 12);
    let mut inexact_elsewhere = 0;
    for name in names {
        let name = name.as_str().unwrap();
        let jpeg = match name {
            "chelsea" | "rocket" => fixture(&format!("images/{name}.jpg")),
            _ => fixture(&format!("jpeg/{name}.jpg")),
        };
        let ours = load_rgb(&jpeg).unwrap();
        let pil = image::open(fixture(&format!("jpeg/{name}.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(ours.dimensions(), pil.dimensions(), "{name}");
        let worst = ours
            .as_raw()
            .iter()
            .zip(pil.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        // the pure-Rust decoder, for contrast (it cannot read arithmetic coding at all)
        let worst_pure_rust = image::open(&jpeg).ok().map(|pure_rust| {
            let pure_rust = pure_rust.to_rgb8();
            pure_rust
                .as_raw()
                .iter()
                .zip(pil.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap()
        });
        println!("{name}: max difference {worst} (pure-Rust decoder: {worst_pure_rust:?})");
        assert_eq!(worst, 0, "{name}: {worst} levels from PIL");
        inexact_elsewhere += usize::from(worst_pure_rust != Some(0));
    }
    assert!(
        inexact_elsewhere >= 5,
        "the fixtures must tell decoders apart"
    );
}

/// A JPEG libjpeg refuses (here: a 3-bit sample precision in its frame header) is a typed error that
/// names the file, never an abort or a panic out of the C decoder.
#[test]
fn a_jpeg_libjpeg_refuses_is_a_named_error() {
    let mut bytes = std::fs::read(fixture("jpeg/baseline_420_q75.jpg")).unwrap();
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    bytes[sof + 4] = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precision3.jpg");
    std::fs::write(&path, &bytes).unwrap();
    match load_rgb(&path) {
        Err(e @ ImageError::Decode { .. }) => {
            let message = e.to_string();
            println!("{message}");
            assert!(message.contains("precision3.jpg"), "{message}");
            // libjpeg itself refused it (the pure-Rust decoder would refuse it too, in other words)
            #[cfg(all(feature = "exact-jpeg", not(feature = "system-libjpeg-turbo")))]
            assert!(message.contains("libjpeg fatal error"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
