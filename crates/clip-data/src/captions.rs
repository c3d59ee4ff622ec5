//! Image–caption datasets: a folder of images with a captions CSV or JSONL (`image`, `caption`), and
//! tar shards in the webdataset convention (`key.jpg|png|webp` next to `key.txt`), read as a stream.
//! Missing or corrupt images are skipped and counted, or refused with `strict`.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::image_io::decode_rgb;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset {0} does not exist")]
    Missing(PathBuf),
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{count} unreadable images (first: {first}); run without --strict to skip them")]
    Unreadable { count: usize, first: String },
}

/// An image path and its caption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptionPair {
    pub image: PathBuf,
    pub caption: String,
}

fn check_caption(path: &Path, line: usize, caption: &str) -> Result<(), DatasetError> {
    if caption.trim().is_empty() {
        return Err(DatasetError::Line {
            path: path.to_path_buf(),
            line,
            message: "empty caption".into(),
        });
    }
    Ok(())
}

/// Reads `image,caption` CSV (with a header) or `{"image": …, "caption": …}` JSONL; image paths are
/// relative to the file's directory.
pub fn read_caption_file(path: &Path) -> Result<Vec<CaptionPair>, DatasetError> {
    if !path.exists() {
        return Err(DatasetError::Missing(path.to_path_buf()));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut pairs = Vec::new();
    if path.extension().and_then(|e| e.to_str()) == Some("csv") {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| DatasetError::Line {
                path: path.to_path_buf(),
                line: 1,
                message: e.to_string(),
            })?
            .clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| DatasetError::Line {
                    path: path.to_path_buf(),
                    line: 1,
                    message: format!("no {name:?} column in the header"),
                })
        };
        let (ic, cc) = (column("image")?, column("caption")?);
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.map_err(|e| DatasetError::Line {
                path: path.to_path_buf(),
                line,
                message: e.to_string(),
            })?;
            let caption = record.get(cc).unwrap_or_default().to_string();
            check_caption(path, line, &caption)?;
            pairs.push(CaptionPair {
                image: base.join(record.get(ic).unwrap_or_default()),
                caption,
            });
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| DatasetError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            let image = v["image"]
                .as_str()
                .ok_or_else(|| bad("no \"image\" string".into()))?;
            let caption = v["caption"]
                .as_str()
                .ok_or_else(|| bad("no \"caption\" string".into()))?;
            check_caption(path, i + 1, caption)?;
            pairs.push(CaptionPair {
                image: base.join(image),
                caption: caption.to_string(),
            });
        }
    }
    Ok(pairs)
}

/// What loading skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkipReport {
    pub skipped: usize,
    /// The first few skipped names, with why.
    pub first: Vec<String>,
}

impl SkipReport {
    fn skip(&mut self, name: String) {
        self.skipped += 1;
        if self.first.len() < 5 {
            self.first.push(name);
        }
    }

    fn finish(self, strict: bool) -> Result<Self, DatasetError> {
        match (strict, self.first.first()) {
            (true, Some(first)) => Err(DatasetError::Unreadable {
                count: self.skipped,
                first: first.clone(),
            }),
            _ => Ok(self),
        }
    }
}

/// Decodes every pair's image; unreadable ones are skipped (or, with `strict`, an error).
pub fn load_pairs(
    pairs: &[CaptionPair],
    strict: bool,
) -> Result<(Vec<(RgbImage, String)>, SkipReport), DatasetError> {
    let mut report = SkipReport::default();
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        match crate::load_rgb(&pair.image) {
            Ok(image) => out.push((image, pair.caption.clone())),
            Err(e) => report.skip(e.to_string()),
        }
    }
    Ok((out, report.finish(strict)?))
}

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// A webdataset sample being gathered: its key, image (member name, bytes) and caption.
type PendingSample = Option<(String, Option<(String, Vec<u8>)>, Option<String>)>;

/// Streams the samples of one webdataset tar shard: consecutive members sharing a key form a sample;
/// samples with an image and a caption are yielded, the others counted in the report.
pub fn read_shard(
    path: &Path,
    strict: bool,
    mut each: impl FnMut(RgbImage, String),
) -> Result<SkipReport, DatasetError> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DatasetError::Missing(path.to_path_buf()),
        _ => DatasetError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    })?;
    let read_err = |e: std::io::Error| DatasetError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut report = SkipReport::default();
    let mut current: PendingSample = None;
    let mut flush = |sample: PendingSample, report: &mut SkipReport| {
        let Some((key, image, caption)) = sample else {
            return;
        };
        match (image, caption) {
            (_, Some(c)) if c.trim().is_empty() => report.skip(format!("{key}: empty caption")),
            (Some((name, bytes)), Some(caption)) => match decode_rgb(&bytes, &path.join(&name)) {
                Ok(image) => each(image, caption.trim().to_string()),
                Err(e) => report.skip(format!("{key}: {e}")),
            },
            (None, _) => report.skip(format!("{key}: no image")),
            (_, None) => report.skip(format!("{key}: no caption")),
        }
    };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(read_err)?
            .to_string_lossy()
            .to_string();
        // webdataset: the key is everything before the first dot of the file name
        let file_name = name.rsplit('/').next().unwrap_or(&name);
        let (stem, ext) = match file_name.split_once('.') {
            Some((s, e)) => (
                format!("{}{}", &name[..name.len() - file_name.len()], s),
                e.to_ascii_lowercase(),
            ),
            None => (name.clone(), String::new()),
        };
        if current.as_ref().is_some_and(|(k, _, _)| *k != stem) {
            flush(current.take(), &mut report);
        }
        let sample = current.get_or_insert_with(|| (stem.clone(), None, None));
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(read_err)?;
        if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            sample.1 = Some((name.clone(), bytes));
        } else if ext == "txt" {
            sample.2 = Some(String::from_utf8_lossy(&bytes).to_string());
        }
    }
    flush(current.take(), &mut report);
    report.finish(strict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(v: u8) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::from_pixel(4, 3, image::Rgb([v, 0, 0]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn shard(dir: &Path, members: &[(&str, Vec<u8>)]) -> PathBuf {
        let path = dir.join("shard-000.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &bytes[..]).unwrap();
        }
        builder.finish().unwrap();
        path
    }

    #[test]
    fn shards_stream_samples_and_count_the_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = shard(
            dir.path(),
            &[
                ("a/0001.png", png(10)),
                ("a/0001.txt", b"a red square".to_vec()),
                ("a/0002.jpg", b"not a jpeg".to_vec()),
                ("a/0002.txt", b"broken".to_vec()),
                ("a/0003.txt", b"caption without image".to_vec()),
                ("a/0004.webp.json", b"{}".to_vec()),
                ("a/0005.txt", b"   ".to_vec()),
                ("a/0005.png", png(20)),
                ("a/0006.png", png(30)),
                ("a/0006.txt", b"another red square\n".to_vec()),
            ],
        );
        let mut got = Vec::new();
        let report = read_shard(&path, false, |image, caption| {
            got.push((image.get_pixel(0, 0)[0], caption))
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                (10, "a red square".to_string()),
                (30, "another red square".to_string())
            ]
        );
        assert_eq!(report.skipped, 4);
        assert!(report.first[0].starts_with("a/0002"), "{:?}", report.first);
        assert!(matches!(
            read_shard(&path, true, |_, _| ()),
            Err(DatasetError::Unreadable { count: 4, .. })
        ));
        assert!(matches!(
            read_shard(&dir.path().join("nope.tar"), false, |_, _| ()),
            Err(DatasetError::Missing(_))
        ));
    }

    #[test]
    fn caption_files_csv_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.png"), png(1)).unwrap();
        let csv = dir.path().join("c.csv");
        std::fs::write(
            &csv,
            "image,caption\nx.png,\"a red, small square\"\nmissing.png,gone\n",
        )
        .unwrap();
        let pairs = read_caption_file(&csv).unwrap();
        assert_eq!(pairs[0].caption, "a red, small square");
        let (loaded, report) = load_pairs(&pairs, false).unwrap();
        assert_eq!((loaded.len(), report.skipped), (1, 1));
        assert!(report.first[0].contains("missing.png"));
        assert!(load_pairs(&pairs, true).is_err());
        let jsonl = dir.path().join("c.jsonl");
        std::fs::write(&jsonl, "{\"image\": \"x.png\", \"caption\": \"ok\"}\n{\"image\": \"x.png\", \"caption\": \"\"}\n").unwrap();
        let err = read_caption_file(&jsonl).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("empty caption"),
            "{err}"
        );
        assert!(matches!(
            read_caption_file(&dir.path().join("none.csv")),
            Err(DatasetError::Missing(_))
        ));
    }
}
