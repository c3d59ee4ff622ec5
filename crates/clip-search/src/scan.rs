//! Finding the images under folders, and the content hash that recognizes a file under a new name.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::SearchError;

/// File extensions indexed (lower case): what `clip_data` decodes.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// What [`scan`] walks into.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Also walk folders and files whose names start with a dot.
    pub include_hidden: bool,
    /// Glob patterns of paths to leave out (`**/thumbnails/**`, `*.gif`); a pattern without a `/`
    /// matches a file or folder name anywhere.
    pub exclude: Vec<String>,
}

/// An image file found by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute path.
    pub path: PathBuf,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Size in bytes.
    pub size: u64,
}

/// What a scan found, and what it could not read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Image files, sorted by path.
    pub files: Vec<FileEntry>,
    /// Folders and files that could not be read (permissions, a broken link), with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`].
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn exclusions(patterns: &[String]) -> Result<GlobSet, SearchError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        // a bare name (no slash) matches at any depth, as .gitignore does
        let full = if pattern.contains('/') {
            pattern.clone()
        } else {
            format!("**/{pattern}")
        };
        let glob = Glob::new(&full).map_err(|e| SearchError::BadGlob {
            pattern: pattern.clone(),
            reason: e.kind().to_string(),
        })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| SearchError::BadGlob {
        pattern: patterns.join(" "),
        reason: e.to_string(),
    })
}

/// The image files under `roots` (each an existing folder), following symbolic links to files but
/// not into folders (no loops), sorted and without duplicates.
pub fn scan(roots: &[PathBuf], options: &ScanOptions) -> Result<Scan, SearchError> {
    let excluded = exclusions(&options.exclude)?;
    let mut out = Scan::default();
    for root in roots {
        let root = std::path::absolute(root).map_err(|source| SearchError::Io {
            path: root.clone(),
            source,
        })?;
        if !root.is_dir() {
            return Err(SearchError::NotAFolder(root));
        }
        let walker = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || ((options.include_hidden
                        || !e.file_name().to_string_lossy().starts_with('.'))
                        && !excluded.is_match(e.path())
                        && !e
                            .path()
                            .strip_prefix(&root)
                            .is_ok_and(|r| excluded.is_match(r)))
            });
        for entry in walker {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| root.clone());
                    out.unreadable.push((path, e.to_string()));
                    continue;
                }
            };
            if entry.file_type().is_dir() || !is_image_path(entry.path()) {
                continue;
            }
            // a link to a file is indexed under its own name; metadata follows it
            match std::fs::metadata(entry.path()) {
                Ok(meta) if meta.is_file() => out.files.push(FileEntry {
                    path: entry.path().to_path_buf(),
                    mtime_ns: mtime_ns(&meta),
                    size: meta.len(),
                }),
                Ok(_) => {}
                Err(e) => out
                    .unreadable
                    .push((entry.path().to_path_buf(), e.to_string())),
            }
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// Bytes hashed from the start of a file.
pub const HASH_HEAD: u64 = 1 << 20;
/// Bytes hashed from its end.
pub const HASH_TAIL: u64 = 1 << 10;

/// SHA-256 of a file's size, first MiB and last KiB (rclip's choice): enough to recognize a renamed
/// or copied photo without reading all of a large file.
pub fn content_hash(path: &Path, size: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    hasher.update(size.to_le_bytes());
    let mut head = Vec::with_capacity(HASH_HEAD.min(size) as usize);
    (&mut file).take(HASH_HEAD).read_to_end(&mut head)?;
    hasher.update(&head);
    if size > HASH_HEAD {
        let mut tail = Vec::with_capacity(HASH_TAIL as usize);
        file.seek(SeekFrom::Start(
            size.saturating_sub(HASH_TAIL).max(HASH_HEAD),
        ))?;
        file.take(HASH_TAIL).read_to_end(&mut tail)?;
        hasher.update(&tail);
    }
    Ok(hasher.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_images_skipping_hidden_and_excluded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in [
            "a.jpg",
            "B.PNG",
            "notes.txt",
            "sub/c.webp",
            ".hidden/d.jpg",
            "sub/.e.png",
            "thumbs/f.jpg",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
        let names = |options: &ScanOptions| -> Vec<String> {
            scan(&[root.to_path_buf()], options)
                .unwrap()
                .files
                .iter()
                .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            names(&ScanOptions::default()),
            ["B.PNG", "a.jpg", "sub/c.webp", "thumbs/f.jpg"]
        );
        let options = ScanOptions {
            include_hidden: true,
            exclude: vec!["thumbs".into(), "sub/*.webp".into()],
        };
        assert_eq!(
            names(&options),
            [".hidden/d.jpg", "B.PNG", "a.jpg", "sub/.e.png"]
        );
        let bad = ScanOptions {
            exclude: vec!["a[".into()],
            ..ScanOptions::default()
        };
        assert!(scan(&[root.to_path_buf()], &bad)
            .unwrap_err()
            .to_string()
            .contains("a["));
        let missing = root.join("nope");
        assert!(matches!(
            scan(&[missing], &ScanOptions::default()),
            Err(SearchError::NotAFolder(_))
        ));
    }

    #[test]
    fn hash_sees_head_tail_and_size_but_not_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(HASH_HEAD as usize + 5000))
            .map(|i| (i % 251) as u8)
            .collect();
        let a = dir.path().join("a.jpg");
        let b = dir.path().join("b.jpg");
        std::fs::write(&a, &big).unwrap();
        std::fs::write(&b, &big).unwrap();
        let h = |p: &Path| content_hash(p, std::fs::metadata(p).unwrap().len()).unwrap();
        assert_eq!(h(&a), h(&b));
        let mut tail_changed = big.clone();
        *tail_changed.last_mut().unwrap() ^= 1;
        std::fs::write(&b, &tail_changed).unwrap();
        assert_ne!(h(&a), h(&b));
        let mut head_changed = big.clone();
        head_changed[10] ^= 1;
        std::fs::write(&b, &head_changed).unwrap();
        assert_ne!(h(&a), h(&b));
        std::fs::write(&b, &big[..100]).unwrap();
        std::fs::write(&a, &big[..101]).unwrap();
        assert_ne!(h(&a), h(&b));
    }
}
