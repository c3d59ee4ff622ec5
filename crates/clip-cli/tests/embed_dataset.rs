//! `clip embed-dataset`: clip-retrieval's layout, shards that together equal one run, reruns that skip
//! finished shards and redo a killed one, and refusals named.

use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/images");
const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/vit_tiny");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clip"))
        .args(args)
        .output()
        .expect("run clip");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Six captioned images in nested folders (the listing is sorted: a/… before b/…).
fn dataset(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    for (name, folder, caption) in [
        ("chelsea.jpg", "a", "a cat"),
        ("coffee.png", "a", "a cup of coffee"),
        ("rocket.jpg", "b", "a rocket on its pad"),
        ("camera_gray.png", "b", "a man with a camera"),
        ("coins8.png", "b/c", "old coins"),
        ("astronaut.webp", "b/c", "an astronaut"),
    ] {
        let to = root.join(folder);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(Path::new(IMAGES).join(name), to.join(name)).unwrap();
        let stem = Path::new(name)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::write(to.join(format!("{stem}.txt")), caption).unwrap();
    }
    root
}

/// An `.npy` file of f32 as (rows, dim, values), read by hand: magic, version 1.0, header dict.
fn npy(path: &Path) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.ends_with('\n'),
        "{header}"
    );
    assert_eq!((10 + len) % 64, 0, "the data is 64-byte aligned");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let shape: Vec<usize> = shape[..shape.find(')').unwrap()]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values: Vec<f32> = bytes[10 + len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values.len(), shape[0] * shape[1]);
    (shape[0], shape[1], values)
}

/// The `image_path` and `caption` columns and the sizes of a metadata parquet file.
fn metadata(path: &Path) -> Vec<(String, String, i32, i32)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            (
                row.get_string(0).unwrap().clone(),
                row.get_string(1).unwrap().clone(),
                row.get_int(2).unwrap(),
                row.get_int(3).unwrap(),
            )
        })
        .collect()
}

#[test]
fn shards_together_equal_one_run_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let arg = |p: &Path| p.to_string_lossy().into_owned();
    let (ok, out, err) = run(&[
        "embed-dataset",
        "--input",
        &arg(&data),
        "--output",
        &arg(&one),
        "--batch-size",
        "4",
    ]);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["items"], 6);
    for shard in ["0/2", "1/2"] {
        let (ok, _, err) = run(&[
            "embed-dataset",
            "--input",
            &arg(&data),
            "--output",
            &arg(&two),
            "--shard",
            shard,
            "--batch-size",
            "2",
        ]);
        assert!(ok, "{err}");
    }
    let (rows, dim, whole) = npy(&one.join("img_emb/img_emb_0.npy"));
    assert_eq!((rows, dim), (6, 96));
    let texts = npy(&one.join("text_emb/text_emb_0.npy"));
    assert_eq!((texts.0, texts.1), (6, 96));
    let meta = metadata(&one.join("metadata/metadata_0.parquet"));
    let names: Vec<&str> = meta.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "a/chelsea.jpg",
            "a/coffee.png",
            "b/c/astronaut.webp",
            "b/c/coins8.png",
            "b/camera_gray.png",
            "b/rocket.jpg"
        ]
    );
    assert_eq!(
        (meta[0].1.as_str(), meta[0].2, meta[0].3),
        ("a cat", 451, 300)
    );
    // unit rows, and clearly different images
    for row in whole.chunks(dim) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    let cos: f32 = whole[..dim]
        .iter()
        .zip(&whole[dim..2 * dim])
        .map(|(a, b)| a * b)
        .sum();
    assert!(cos < 0.99, "{cos}");
    // item k went to shard k mod 2: interleaved, they are the unsharded rows
    let shards: Vec<(usize, usize, Vec<f32>)> = (0..2)
        .map(|s| npy(&two.join(format!("img_emb/img_emb_{s}.npy"))))
        .collect();
    assert_eq!((shards[0].0, shards[1].0), (3, 3));
    let mut worst = 0f32;
    for k in 0..6 {
        let (s, r) = (k % 2, k / 2);
        let got = &shards[s].2[r * dim..(r + 1) * dim];
        let want = &whole[k * dim..(k + 1) * dim];
        worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(worst, f32::max);
        let meta_s = metadata(&two.join(format!("metadata/metadata_{s}.parquet")));
        assert_eq!(meta_s[r], meta[k]);
    }
    println!("sharded against unsharded: max |difference| {worst:.1e}");
    assert!(worst < 1e-6, "{worst}");

    // a rerun skips what is done
    let (ok, out, _) = run(&[
        "embed-dataset",
        "--input",
        &arg(&data),
        "--output",
        &arg(&two),
        "--shard",
        "1/2",
    ]);
    assert!(ok && out.contains("already done"), "{out}");
    // a shard killed half-way (its temporary files left, no done marker) is redone whole
    std::fs::remove_file(two.join("done/1.json")).unwrap();
    std::fs::remove_file(two.join("img_emb/img_emb_1.npy")).unwrap();
    std::fs::write(
        two.join("img_emb/.img_emb_1.npy.tmp-999999"),
        b"half a file",
    )
    .unwrap();
    let (ok, _, err) = run(&[
        "embed-dataset",
        "--input",
        &arg(&data),
        "--output",
        &arg(&two),
        "--shard",
        "1/2",
    ]);
    assert!(ok, "{err}");
    let redone = npy(&two.join("img_emb/img_emb_1.npy"));
    assert_eq!(redone.0, 3);
    let diff = redone
        .2
        .iter()
        .zip(&shards[1].2)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "{diff}");
    assert!(!two.join("img_emb/.img_emb_1.npy.tmp-999999").exists());
}

#[test]
fn bad_shards_and_another_models_output_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let out = dir.path().join("out");
    let arg = |p: &Path| p.to_string_lossy().into_owned();
    let (ok, _, err) = run(&[
        "embed-dataset",
        "--input",
        &arg(&data),
        "--output",
        &arg(&out),
        "--shard",
        "2/2",
    ]);
    assert!(!ok && err.contains("shard 2 of 2 is out of range"), "{err}");
    let (ok, _, err) = run(&[
        "embed-dataset",
        "--input",
        &arg(&data),
        "--output",
        &arg(&out),
        "--shard",
        "1",
    ]);
    assert!(!ok && err.contains("INDEX/COUNT"), "{err}");
    let (ok, _, err) = run(&[
        "embed-dataset",
        "--input",
        &arg(&data),
        "--output",
        &arg(&out),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&[
        "embed-dataset",
        "--model",
        TINY,
        "--input",
        &arg(&data),
        "--output",
        &arg(&out),
    ]);
    assert!(
        !ok && err.contains("holds embeddings of model bundled"),
        "{err}"
    );
    // another listing would put other items under the same shard numbers
    let (ok, _, err) = run(&[
        "embed-dataset",
        "--input",
        &arg(&data.join("b")),
        "--output",
        &arg(&out),
    ]);
    assert!(
        !ok && err.contains("(6 items); this run lists") && err.contains("(4 items)"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "embed-dataset",
        "--input",
        &arg(&dir.path().join("nothing")),
        "--output",
        &arg(&out),
    ]);
    assert!(!ok && err.contains("no such file or folder"), "{err}");
}
