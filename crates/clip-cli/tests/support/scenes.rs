//! Fashion-MNIST scenes as image files, for the search and server tests.

use std::path::{Path, PathBuf};

use clip::data::fashion::{FashionMnist, SceneSampler, CLASSES, COLOURS};

/// `n` scenes of the committed Fashion-MNIST test subset as `canvas`-pixel PNGs named
/// `0007_blue_bag.png` (number, colour, class), with their (class, colour).
pub fn render(dir: &Path, n: usize, seed: u64, canvas: u32) -> Vec<(PathBuf, usize, usize)> {
    let subset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fashion-mnist");
    let sampler = SceneSampler {
        items: FashionMnist::load(subset, false).unwrap(),
        seed,
        canvas,
        exclude_held_out: false,
        plain_captions: 0.0,
    };
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let scene = sampler.sample(i as u64);
            let name = format!(
                "{i:04}_{}_{}.png",
                COLOURS[scene.colour].0, CLASSES[scene.class]
            );
            let path = dir.join(name.replace(' ', "_"));
            scene.image.save(&path).unwrap();
            (path, scene.class, scene.colour)
        })
        .collect()
}
