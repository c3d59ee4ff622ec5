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
