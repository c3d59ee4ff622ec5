//! "Fashion-MNIST scenes": real Fashion-MNIST items, coloured and placed on a black canvas, with
//! captions naming colour and class (and sometimes size and position). Ten (class, colour) pairs never
//! appear in training, so recognising "a blue bag" must come from composing "blue" and "bag".

use std::io::Read;
use std::path::{Path, PathBuf};

use image::{imageops, GrayImage, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where Debian's `dataset-fashion-mnist` package puts the IDX files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The environment variable that points the tools and examples at a Fashion-MNIST directory.
pub const FASHION_MNIST_DIR_VAR: &str = "FASHION_MNIST_DIR";

/// Where the full dataset is looked for when no directory is given: `$FASHION_MNIST_DIR` when set,
/// else Debian's [`DEBIAN_FASHION_MNIST`].
pub fn default_dir() -> PathBuf {
    std::env::var_os(FASHION_MNIST_DIR_VAR)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_FASHION_MNIST))
}

/// How to get the dataset, appended to the errors of a missing or damaged file.
const HOW_TO_GET: &str = "install Debian's `dataset-fashion-mnist` package (it fills \
/usr/share/datasets/fashion-mnist), or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist \
into a directory and name it with `--data DIR` (clip eval), `dir` under a training config's [data], or \
FASHION_MNIST_DIR";

/// Fashion-MNIST's class names as captions use them, indexed by label (0 = t-shirt … 9 = ankle boot).
pub const CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Caption colour words and their sRGB values; a scene's `colour` indexes this table.
pub const COLOURS: [(&str, [u8; 3]); 7] = [
    ("red", [255, 0, 0]),
    ("green", [0, 128, 0]),
    ("blue", [0, 0, 255]),
    ("yellow", [255, 255, 0]),
    ("purple", [128, 0, 128]),
    ("orange", [255, 165, 0]),
    ("white", [255, 255, 255]),
];

/// Class c in colour c mod 6 is held out of training (red t-shirt, green trouser, …, yellow ankle boot).
/// `class` indexes [`CLASSES`], `colour` indexes [`COLOURS`]; white is never held out.
pub fn is_held_out(class: usize, colour: usize) -> bool {
    colour == class % 6
}

/// Why Fashion-MNIST could not be read; each names the file and says how to get the dataset.
#[derive(Debug, thiserror::Error)]
pub enum FashionError {
    /// The file is not there: the dataset is not installed, or `dir` points elsewhere.
    #[error("Fashion-MNIST not found: {path} does not exist; {HOW_TO_GET}")]
    Missing {
        /// The file that was looked for (the `.gz` name when neither form exists).
        path: PathBuf,
    },
    /// The file exists but reading or decompressing it failed (a cut-off `.gz` lands here).
    #[error("cannot read {path}: {source}; if the file is damaged, get it again: {HOW_TO_GET}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O or gzip error.
        source: std::io::Error,
    },
    /// The file is not the IDX file expected, or is cut short.
    #[error("{path} is not an IDX file of {expected} ({message}); if it is damaged, get it again: {HOW_TO_GET}")]
    Format {
        /// The file (or the directory, when images and labels disagree).
        path: PathBuf,
        /// What the file should hold.
        expected: &'static str,
        /// What was wrong.
        message: String,
    },
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, FashionError> {
    let raw = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => FashionError::Missing {
            path: path.to_path_buf(),
        },
        _ => FashionError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| FashionError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn idx(
    path: &Path,
    magic: u32,
    dims: usize,
    expected: &'static str,
) -> Result<(Vec<usize>, Vec<u8>), FashionError> {
    let bytes = read_maybe_gz(path)?;
    let bad = |message: String| FashionError::Format {
        path: path.to_path_buf(),
        expected,
        message,
    };
    if bytes.len() < 4 + 4 * dims {
        return Err(bad(format!("only {} bytes", bytes.len())));
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    if word(0) != magic {
        return Err(bad(format!("magic {:#x}, expected {magic:#x}", word(0))));
    }
    let shape: Vec<usize> = (1..=dims).map(|i| word(i) as usize).collect();
    let body = &bytes[4 + 4 * dims..];
    // a crafted header must not overflow the size (a panic with overflow checks on)
    let expected_len = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    if body.len() != expected_len {
        let what = if body.len() < expected_len {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(bad(format!(
            "{} data bytes for shape {shape:?}, {expected_len} expected: {what}",
            body.len()
        )));
    }
    Ok((shape, body.to_vec()))
}

/// One split of Fashion-MNIST: 28×28 grayscale items and their class labels.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    /// The items' pixels, 784 bytes (28 rows of 28, row-major, 0 = black) per item, in order.
    pub images: Vec<u8>,
    /// One class label (0–9, indexing [`CLASSES`]) per item.
    pub labels: Vec<u8>,
}

impl FashionMnist {
    /// Reads `{train,t10k}-images-idx3-ubyte[.gz]` and the matching labels from `dir`.
    pub fn load(dir: impl AsRef<Path>, train: bool) -> Result<Self, FashionError> {
        let dir = dir.as_ref();
        let prefix = if train { "train" } else { "t10k" };
        let find = |stem: String| {
            let gz = dir.join(format!("{stem}.gz"));
            let plain = dir.join(&stem);
            if gz.is_file() || !plain.is_file() {
                gz
            } else {
                plain
            }
        };
        let images_path = find(format!("{prefix}-images-idx3-ubyte"));
        let labels_path = find(format!("{prefix}-labels-idx1-ubyte"));
        let (ishape, images) = idx(&images_path, 0x803, 3, "images")?;
        let (lshape, labels) = idx(&labels_path, 0x801, 1, "labels")?;
        if ishape[1..] != [28, 28] {
            return Err(FashionError::Format {
                path: images_path,
                expected: "28×28 images",
                message: format!("images of {}×{}", ishape[1], ishape[2]),
            });
        }
        if ishape[0] != lshape[0] || labels.is_empty() {
            return Err(FashionError::Format {
                path: labels_path,
                expected: "one label for each image, at least one",
                message: format!("{} labels for {} images", lshape[0], ishape[0]),
            });
        }
        // the scenes and the benchmark index CLASSES with these
        if let Some(i) = labels.iter().position(|&l| l as usize >= CLASSES.len()) {
            return Err(FashionError::Format {
                path: labels_path,
                expected: "labels 0–9",
                message: format!("label {} at item {i}", labels[i]),
            });
        }
        Ok(Self { images, labels })
    }

    /// How many items the split holds.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no items.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Item `i` as a 28×28 grayscale image. Panics if `i >= self.len()`.
    pub fn item(&self, i: usize) -> GrayImage {
        GrayImage::from_raw(28, 28, self.images[i * 784..(i + 1) * 784].to_vec())
            .unwrap_or_default()
    }

    /// Item `i`'s class, indexing [`CLASSES`]. Panics if `i >= self.len()`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }
}

/// An item of intensity p becomes p/255 × colour (rounded), on black; the size is kept.
pub fn colourize(item: &GrayImage, colour: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(item.width(), item.height(), |x, y| {
        let p = item.get_pixel(x, y)[0] as u32;
        Rgb(colour.map(|c| ((p * c as u32 + 127) / 255) as u8))
    })
}

/// Item sides (px on a 48 px canvas) of each size word. "large" reaches the whole canvas: the benchmark's
/// (a) shows its grayscale items filling the input, and a model that never saw an item that large did
/// about a point worse on them than on the same items at 40–44 px.
const SIZES: [(&str, u32, u32); 3] = [("small", 14, 22), ("medium", 24, 32), ("large", 34, 48)];

fn position_word(cx: f32, cy: f32) -> &'static str {
    let col = if cx < 1.0 / 3.0 {
        0
    } else if cx < 2.0 / 3.0 {
        1
    } else {
        2
    };
    let row = if cy < 1.0 / 3.0 {
        0
    } else if cy < 2.0 / 3.0 {
        1
    } else {
        2
    };
    [
        ["top left", "top", "top right"],
        ["left", "center", "right"],
        ["bottom left", "bottom", "bottom right"],
    ][row][col]
}

/// A rendered scene and its caption.
#[derive(Clone, Debug)]
pub struct Scene {
    /// The `canvas`×`canvas` RGB image.
    pub image: RgbImage,
    /// A caption naming the colour and class (sometimes also size and position).
    pub caption: String,
    /// The item's class, indexing [`CLASSES`].
    pub class: usize,
    /// The item's colour, indexing [`COLOURS`].
    pub colour: usize,
    /// The size word of the scene ("small", "large", …).
    pub size: &'static str,
    /// Where the item is ("top left", "center", …).
    pub position: &'static str,
}

/// Renders item `item` (class `class`) in colour `colour` at a random size and position on a
/// `canvas`×`canvas` black square, with a caption from varied templates. `class` indexes [`CLASSES`]
/// and `colour` [`COLOURS`]; `canvas` must be at least 8 (px). Deterministic for a given `rng` state.
pub fn render_scene(
    item: &GrayImage,
    class: usize,
    colour: usize,
    canvas: u32,
    rng: &mut impl Rng,
) -> Scene {
    let (size_word, lo, hi) = SIZES[rng.random_range(0..SIZES.len())];
    let side = (rng.random_range(lo..=hi) as f32 * canvas as f32 / 48.0)
        .round()
        .clamp(8.0, canvas as f32) as u32;
    let coloured = colourize(item, COLOURS[colour].1);
    let resized = imageops::resize(&coloured, side, side, imageops::FilterType::Triangle);
    let x = rng.random_range(0..=canvas - side);
    let y = rng.random_range(0..=canvas - side);
    let mut image = RgbImage::new(canvas, canvas);
    imageops::overlay(&mut image, &resized, x as i64, y as i64);
    let where_ = position_word(
        (x + side / 2) as f32 / canvas as f32,
        (y + side / 2) as f32 / canvas as f32,
    );
    let (c, k) = (COLOURS[colour].0, CLASSES[class]);
    let caption = match rng.random_range(0..8) {
        0 => format!("a {c} {k}"),
        1 => format!("a photo of a {c} {k}"),
        2 => format!("a {size_word} {c} {k}"),
        3 => format!("a {c} {k} in the {where_}"),
        4 => format!("a {size_word} {c} {k} in the {where_}"),
        5 => format!("a {k} in {c}"),
        6 => format!("a {c} {k} on a black background"),
        _ => format!("{c} {k}, {size_word}, {where_}"),
    };
    Scene {
        image,
        caption,
        class,
        colour,
        size: size_word,
        position: where_,
    }
}

/// A caption of `scene` that names its class but not its colour — "a small sneaker in the top left",
/// "coat, large, center" — as people type search queries. Training on a share of these
/// ([`SceneSampler::plain_captions`]) teaches the model class words without a colour word. They keep the
/// size and position: a caption that said only "a sneaker" would fit every sneaker of a training batch
/// equally, and the contrastive loss would push it away from all but one (a first run with such captions
/// lost 25 points on held-out pairs: docs/training.md).
pub fn plain_caption(scene: &Scene, rng: &mut impl Rng) -> String {
    let (k, size, where_) = (CLASSES[scene.class], scene.size, scene.position);
    match rng.random_range(0..4) {
        0 => format!("a {size} {k} in the {where_}"),
        1 => format!("a photo of a {size} {k} in the {where_}"),
        2 => format!("a {k} in the {where_}"),
        _ => format!("{k}, {size}, {where_}"),
    }
}

/// Deterministic training scenes: item, colour, layout and caption of sample `index` depend only on
/// `(seed, index)`, so any step can be regenerated exactly (this is what makes resuming exact).
#[derive(Clone, Debug)]
pub struct SceneSampler {
    /// The Fashion-MNIST split items are drawn from (must not be empty).
    pub items: FashionMnist,
    /// Seed of the whole sequence of scenes.
    pub seed: u64,
    /// Side of the square scenes, in pixels (at least 8).
    pub canvas: u32,
    /// Leave out the held-out (class, colour) pairs (training); keep them (evaluation).
    pub exclude_held_out: bool,
    /// Share of scenes (0 to 1) captioned without their colour ([`plain_caption`]); 0 keeps every
    /// caption (and the sequence of scenes) as it was before this option existed.
    pub plain_captions: f32,
}

impl SceneSampler {
    /// Scene number `index`: a random item in a random colour (never a held-out pair with
    /// `exclude_held_out`), rendered by [`render_scene`]. The same `(seed, index)` gives the same scene.
    pub fn sample(&self, index: u64) -> Scene {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let i = rng.random_range(0..self.items.len());
        let class = self.items.label(i);
        let colour = loop {
            let c = rng.random_range(0..COLOURS.len());
            if !(self.exclude_held_out && is_held_out(class, c)) {
                break c;
            }
        };
        let mut scene = render_scene(&self.items.item(i), class, colour, self.canvas, &mut rng);
        if self.plain_captions > 0.0 && rng.random::<f32>() < self.plain_captions {
            scene.caption = plain_caption(&scene, &mut rng);
        }
        scene
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subset() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fashion-mnist")
    }

    #[test]
    fn plain_captions_name_the_class_and_no_colour() {
        let items = FashionMnist::load(subset(), false).unwrap();
        let sampler = |plain_captions| SceneSampler {
            items: items.clone(),
            seed: 3,
            canvas: 32,
            exclude_held_out: true,
            plain_captions,
        };
        let (never, always, some) = (sampler(0.0), sampler(1.0), sampler(0.25));
        let mut plain = 0;
        for i in 0..200 {
            let (a, b, c) = (never.sample(i), always.sample(i), some.sample(i));
            // the same scene whatever the share: only the caption changes
            assert_eq!(
                (a.image.as_raw(), a.class, a.colour),
                (b.image.as_raw(), b.class, b.colour)
            );
            assert!(a.caption.contains(COLOURS[a.colour].0), "{}", a.caption);
            assert!(b.caption.contains(CLASSES[b.class]), "{}", b.caption);
            assert!(
                COLOURS
                    .iter()
                    .all(|(colour, _)| !b.caption.contains(colour)),
                "{}",
                b.caption
            );
            plain += usize::from(c.caption != a.caption);
        }
        assert!((30..=70).contains(&plain), "{plain} of 200 plain at 0.25");
    }

    #[test]
    fn the_committed_subset_loads_with_every_class() {
        let train = FashionMnist::load(subset(), true).unwrap();
        let test = FashionMnist::load(subset(), false).unwrap();
        assert_eq!((train.len(), test.len()), (3000, 1000));
        assert_eq!(train.images.len(), 3000 * 784);
        // Fashion-MNIST's first labels (train: ankle boot, t-shirt, t-shirt, dress; test: ankle
        // boot, pullover, trouser, trouser)
        assert_eq!(&train.labels[..4], &[9, 0, 0, 3]);
        assert_eq!(&test.labels[..4], &[9, 2, 1, 1]);
        for class in 0..10u8 {
            let count = test.labels.iter().filter(|&&l| l == class).count();
            assert!((80..=120).contains(&count), "class {class}: {count}");
        }
    }

    #[test]
    fn a_missing_dataset_says_where_it_looked_and_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = FashionMnist::load(dir.path().join("nowhere"), false).unwrap_err();
        assert!(matches!(err, FashionError::Missing { .. }), "{err:?}");
        let message = err.to_string();
        let looked = dir.path().join("nowhere/t10k-images-idx3-ubyte.gz");
        assert!(message.contains(&looked.display().to_string()), "{message}");
        assert!(message.contains("dataset-fashion-mnist"), "{message}");
        assert!(message.contains("--data DIR") && message.contains(FASHION_MNIST_DIR_VAR));
    }

    #[test]
    fn bad_headers_and_labels_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), bytes).unwrap();
        let idx = |magic: u32, dims: &[u32], body: &[u8]| -> Vec<u8> {
            let mut bytes = magic.to_be_bytes().to_vec();
            dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
            bytes.extend(body);
            bytes
        };
        let load = || {
            FashionMnist::load(dir.path(), false)
                .unwrap_err()
                .to_string()
        };
        write(
            "t10k-images-idx3-ubyte",
            idx(0x803, &[2, 28, 28], &[0; 2 * 784]),
        );
        // a label past the ten classes
        write("t10k-labels-idx1-ubyte", idx(0x801, &[2], &[3, 10]));
        let err = load();
        assert!(
            err.contains("t10k-labels-idx1-ubyte") && err.contains("label 10"),
            "{err}"
        );
        // fewer labels than images
        write("t10k-labels-idx1-ubyte", idx(0x801, &[1], &[3]));
        let err = load();
        assert!(err.contains("1 labels for 2 images"), "{err}");
        // a size that overflows
        write(
            "t10k-images-idx3-ubyte",
            idx(0x803, &[u32::MAX, u32::MAX, u32::MAX], &[]),
        );
        let err = load();
        assert!(
            err.contains("t10k-images-idx3-ubyte") && err.contains("too large"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            std::fs::copy(subset().join(name), dir.path().join(name)).unwrap();
        }
        // a cut-off gzip stream
        let images = dir.path().join("t10k-images-idx3-ubyte.gz");
        let bytes = std::fs::read(&images).unwrap();
        std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
        let err = FashionMnist::load(dir.path(), false).unwrap_err();
        assert!(matches!(err, FashionError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().contains("t10k-images-idx3-ubyte.gz"),
            "{err}"
        );
        // a whole stream with fewer items than its header says
        let plain = dir.path().join("t10k-images-idx3-ubyte");
        std::fs::remove_file(&images).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .unwrap();
        std::fs::write(&plain, &raw[..raw.len() - 784]).unwrap();
        let err = FashionMnist::load(dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t10k-images-idx3-ubyte") && err.contains("truncated"),
            "{err}"
        );
    }
}
