//! Image files of any format we accept, then the preprocessing a model applies: decoding must return
//! an image or a typed error; an image that decodes is resized as CLIP's and NaFlex preprocessing do.
#![no_main]
use std::path::Path;

use clip::data::{decode_rgb, normalize, resize_and_crop, PreprocessConfig, ResizeMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the extension is part of how the format is chosen: let the first byte pick one
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
});
