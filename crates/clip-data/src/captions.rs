//! Image–caption datasets: a folder of images with a captions CSV or JSONL (`image`, `caption`), and
//! tar shards in the webdataset convention (`key.jpg|png|webp` next to `key.txt`).
//!
//! Nothing is decoded up front. A captions file lists image paths; a shard is read once, as a stream,
//! into an index of where each image's bytes lie in it. Training decodes a sample when it draws it,
//! on the data loader's workers, so memory holds captions and offsets, not pixels. A first pass reads
//! each image's header only: missing, unknown or unreadable images are skipped and counted there (or
//! refused with `strict`); an image whose pixel data turns out broken is met at decoding time.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use crate::image_io::{decode_rgb, probe_image, ImageLimits};

/// Why a caption dataset could not be loaded, or one of its images read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The captions file or shard (the path) does not exist.
    #[error("dataset {0} does not exist")]
    Missing(PathBuf),
    /// A file exists but reading it failed (also a shard member cut short).
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file, or `shard.tar/member`.
        path: PathBuf,
        /// The I/O or tar error.
        message: String,
    },
    /// A captions file has a malformed line: bad CSV/JSON, a missing column or key, an empty caption.
    #[error("{path} line {line}: {message}")]
    Line {
        /// The captions file.
        path: PathBuf,
        /// 1-based line number (the CSV header is line 1).
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// In strict mode, some samples were unusable (image missing or unreadable, caption missing).
    #[error("{count} unreadable images (first: {first}); run without --strict to skip them")]
    Unreadable {
        /// How many samples were refused.
        count: usize,
        /// The first refused one, with why.
        first: String,
    },
    /// An image that fails to decode (the error names it).
    #[error(transparent)]
    Image(#[from] crate::ImageError),
}

/// Where a sample's image bytes are: a file of its own, or a member of a tar shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// An image file of its own.
    File(PathBuf),
    /// `len` bytes at `offset` of `shard`, the member called `name`.
    Member {
        /// The tar file (shared by all samples of the shard).
        shard: Arc<PathBuf>,
        /// The member's path inside the tar.
        name: String,
        /// Byte offset of the member's data in the tar file.
        offset: u64,
        /// Length of the member's data in bytes.
        len: u64,
    },
}

impl ImageSource {
    /// How errors name the image: its path, or `shard.tar/member`.
    pub fn path(&self) -> PathBuf {
        match self {
            ImageSource::File(path) => path.clone(),
            ImageSource::Member { shard, name, .. } => shard.join(name),
        }
    }

    /// The image's encoded bytes.
    pub fn read(&self) -> Result<Vec<u8>, DatasetError> {
        let failed = |e: std::io::Error| DatasetError::Read {
            path: self.path(),
            message: e.to_string(),
        };
        let max = ImageLimits::default().max_bytes;
        let too_large = |size: u64| {
            DatasetError::Image(crate::ImageError::TooLarge {
                path: self.path(),
                what: format!("the file is {size} bytes, more than {max}"),
            })
        };
        match self {
            ImageSource::File(path) => {
                let size = std::fs::metadata(path).map_err(failed)?.len();
                if size > max {
                    return Err(too_large(size));
                }
                std::fs::read(path).map_err(failed)
            }
            ImageSource::Member {
                shard, offset, len, ..
            } => {
                if *len > max {
                    return Err(too_large(*len));
                }
                let mut file = std::fs::File::open(shard.as_path()).map_err(failed)?;
                file.seek(SeekFrom::Start(*offset)).map_err(failed)?;
                let mut bytes = Vec::with_capacity(*len as usize);
                file.take(*len).read_to_end(&mut bytes).map_err(failed)?;
                if bytes.len() as u64 != *len {
                    return Err(failed(std::io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(bytes)
            }
        }
    }

    /// Reads and decodes the image into 8-bit RGB.
    pub fn decode(&self) -> Result<RgbImage, DatasetError> {
        Ok(decode_rgb(&self.read()?, &self.path())?)
    }

    /// Reads only the image's header (format and size): cheap, and catches missing files, unknown
    /// formats and broken headers, not broken pixel data.
    fn probe(&self) -> Result<(), String> {
        let result = match self {
            ImageSource::File(path) => std::fs::File::open(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|f| {
                    probe_image(std::io::BufReader::new(f), path).map_err(|e| e.to_string())
                }),
            ImageSource::Member { .. } => self.read().map_err(|e| e.to_string()).and_then(|b| {
                probe_image(std::io::Cursor::new(b), &self.path()).map_err(|e| e.to_string())
            }),
        };
        result.map(|_| ())
    }
}

/// An image and its caption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptionPair {
    /// Where the image's encoded bytes are.
    pub image: ImageSource,
    /// The caption, non-empty.
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

/// Reads `image,caption` CSV (with a header; a `.csv` extension) or, for any other extension,
/// `{"image": …, "caption": …}` JSONL (blank lines skipped); image paths are relative to the file's
/// directory. Images are not opened here (see [`probe_pairs`]); an empty caption is a
/// [`DatasetError::Line`].
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
                image: ImageSource::File(base.join(record.get(ic).unwrap_or_default())),
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
                image: ImageSource::File(base.join(image)),
                caption: caption.to_string(),
            });
        }
    }
    Ok(pairs)
}

/// What loading skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkipReport {
    /// How many samples were skipped.
    pub skipped: usize,
    /// The first few (at most 5) skipped names, with why.
    pub first: Vec<String>,
}

impl SkipReport {
    /// Counts one skipped sample; `name` (with why) is kept if fewer than 5 are.
    pub fn skip(&mut self, name: String) {
        self.skipped += 1;
        if self.first.len() < 5 {
            self.first.push(name);
        }
    }

    /// Adds another report's skips (of another shard, say).
    pub fn merge(&mut self, other: SkipReport) {
        self.skipped += other.skipped;
        let room = 5 - self.first.len().min(5);
        self.first.extend(other.first.into_iter().take(room));
    }

    /// The report, or with `strict` and anything skipped, the error that names the first.
    pub fn finish(self, strict: bool) -> Result<Self, DatasetError> {
        match (strict, self.first.first()) {
            (true, Some(first)) => Err(DatasetError::Unreadable {
                count: self.skipped,
                first: first.clone(),
            }),
            _ => Ok(self),
        }
    }
}

/// Keeps the pairs whose image header reads (see [`ImageSource`]); the others are skipped and
/// counted, or with `strict` an error.
pub fn probe_pairs(
    pairs: Vec<CaptionPair>,
    strict: bool,
) -> Result<(Vec<CaptionPair>, SkipReport), DatasetError> {
    let mut report = SkipReport::default();
    let mut kept = Vec::with_capacity(pairs.len());
    for pair in pairs {
        match pair.image.probe() {
            Ok(()) => kept.push(pair),
            Err(why) => report.skip(why),
        }
    }
    Ok((kept, report.finish(strict)?))
}

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// The most of a caption member read from a shard (the rest is never tokenized).
const MAX_CAPTION_BYTES: u64 = 1 << 20;

/// A webdataset sample being gathered: its key, image member and caption.
/// (The image is already probed: `Err` says why it cannot be used.)
type PendingSample = Option<(String, Option<Result<ImageSource, String>>, Option<String>)>;

/// Indexes one webdataset tar shard, read once as a stream: consecutive members sharing a key form a
/// sample. Samples with an image (whose header reads) and a non-empty caption are returned with where
/// their image lies in the shard; the others are counted in the report (or, with `strict`, an error).
pub fn index_shard(
    path: &Path,
    strict: bool,
) -> Result<(Vec<CaptionPair>, SkipReport), DatasetError> {
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
    let shard = Arc::new(path.to_path_buf());
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut report = SkipReport::default();
    let mut pairs = Vec::new();
    let mut current: PendingSample = None;
    let mut flush = |sample: PendingSample, report: &mut SkipReport| {
        let Some((key, image, caption)) = sample else {
            return;
        };
        match (image, caption) {
            (_, Some(c)) if c.trim().is_empty() => report.skip(format!("{key}: empty caption")),
            (Some(Ok(image)), Some(caption)) => pairs.push(CaptionPair {
                image,
                caption: caption.trim().to_string(),
            }),
            (Some(Err(why)), Some(_)) => report.skip(why),
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
        let (offset, len) = (entry.raw_file_position(), entry.size());
        // only images and captions are read, each within a bound; other members are skipped unread
        if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            let max = ImageLimits::default().max_bytes;
            if len > max {
                sample.1 = Some(Err(format!(
                    "{}: {name} is {len} bytes, more than an image may be ({max})",
                    sample.0
                )));
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(read_err)?;
            // the bytes pass by anyway: probe the header now, keep only where they lie
            let image = ImageSource::Member {
                shard: shard.clone(),
                name: name.clone(),
                offset,
                len,
            };
            sample.1 = Some(
                probe_image(std::io::Cursor::new(bytes), &image.path())
                    .map(|_| image)
                    .map_err(|e| format!("{key}: {e}", key = sample.0)),
            );
        } else if ext == "txt" {
            // a caption is cut to a few dozen tokens: its first MiB is more than enough
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_CAPTION_BYTES)
                .read_to_end(&mut bytes)
                .map_err(read_err)?;
            sample.2 = Some(String::from_utf8_lossy(&bytes).to_string());
        }
    }
    flush(current.take(), &mut report);
    Ok((pairs, report.finish(strict)?))
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
        let (pairs, report) = index_shard(&path, false).unwrap();
        let got: Vec<_> = pairs
            .iter()
            .map(|p| {
                (
                    p.image.decode().unwrap().get_pixel(0, 0)[0],
                    p.caption.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (10, "a red square".to_string()),
                (30, "another red square".to_string())
            ]
        );
        assert_eq!(pairs[1].image.path(), path.join("a/0006.png"));
        assert_eq!(report.skipped, 4);
        assert!(report.first[0].starts_with("a/0002"), "{:?}", report.first);
        assert!(matches!(
            index_shard(&path, true),
            Err(DatasetError::Unreadable { count: 4, .. })
        ));
        assert!(matches!(
            index_shard(&dir.path().join("nope.tar"), false),
            Err(DatasetError::Missing(_))
        ));
    }

    #[test]
    fn broken_pixel_data_passes_the_header_probe_and_fails_at_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let mut cut = png(40);
        cut.truncate(cut.len() - 20);
        let path = shard(
            dir.path(),
            &[("k.png", cut), ("k.txt", b"a cut-off square".to_vec())],
        );
        let (pairs, report) = index_shard(&path, true).unwrap();
        assert_eq!((pairs.len(), report.skipped), (1, 0));
        let err = pairs[0].image.decode().unwrap_err().to_string();
        assert!(err.contains("shard-000.tar/k.png"), "{err}");
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
        let (kept, report) = probe_pairs(pairs.clone(), false).unwrap();
        assert_eq!((kept.len(), report.skipped), (1, 1));
        assert!(
            report.first[0].contains("missing.png"),
            "{:?}",
            report.first
        );
        assert_eq!(kept[0].image.decode().unwrap().dimensions(), (4, 3));
        assert!(probe_pairs(pairs, true).is_err());
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
