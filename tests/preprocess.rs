//! Preprocessing against PIL + torchvision (open_clip) and HF's CLIPImageProcessor at 224 px on
//! real photos of odd sizes: at most one uint8 step anywhere. Some of the photos are JPEGs, so the
//! exact result needs libjpeg's decoding (the default `exact-jpeg`, or `system-libjpeg-turbo`).
#![cfg(any(feature = "exact-jpeg", feature = "system-libjpeg-turbo"))]

mod common;

use clip::data::{load_rgb, resize_and_crop, CropRounding, PreprocessConfig, ResizeMode};
use common::*;

fn check(convention: &str, rounding: CropRounding) {
    check_mode(convention, rounding, ResizeMode::Shortest)
}

fn check_mode(convention: &str, rounding: CropRounding, mode: ResizeMode) {
    let reference = Reference::open("preprocess.safetensors");
    let (expected, shape) = reference.u8(convention);
    let paths = images("images", &reference.metadata("images"));
    let mut config = PreprocessConfig::clip(224);
    config.crop_rounding = rounding;
    config.resize_mode = mode;
    let plane = shape[1] * shape[2] * shape[3];
    let mut worst_all = 0;
    for (i, path) in paths.iter().enumerate() {
        let ours = resize_and_crop(&load_rgb(path).unwrap(), &config);
        let exp = &expected[i * plane..(i + 1) * plane];
        let diffs: Vec<i32> = ours
            .as_raw()
            .iter()
            .zip(exp)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .collect();
        let worst = diffs.iter().copied().max().unwrap();
        let off = diffs.iter().filter(|d| **d > 0).count();
        println!(
            "{convention} {}: max {worst}, {off} of {} values differ",
            path.display(),
            diffs.len()
        );
        worst_all = worst_all.max(worst);
    }
    // The requirement is one uint8 step; with Pillow's resampling and libjpeg-turbo it is exact.
    assert_eq!(
        worst_all, 0,
        "{convention}: max difference {worst_all} uint8 steps"
    );
}

#[test]
fn matches_open_clip_pil_pipeline() {
    check("open_clip", CropRounding::Round);
}

#[test]
fn matches_hf_image_processor() {
    check("hf", CropRounding::Floor);
}

#[test]
fn matches_open_clip_longest_side_with_padding() {
    check_mode(
        "open_clip_longest",
        CropRounding::Round,
        ResizeMode::Longest,
    );
}

#[test]
fn matches_open_clip_squash() {
    check_mode("open_clip_squash", CropRounding::Round, ResizeMode::Squash);
}
