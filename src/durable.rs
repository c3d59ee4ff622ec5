//! Crash-safe writes: everything the library writes that a user cannot afford to lose (weights,
//! checkpoints, indexes, embedding shards) goes to a temporary sibling first, is flushed to the disk
//! (`fsync`), and is renamed over its final name, and then the directory holding it is flushed so that
//! the rename itself survives a power cut. A process killed at any moment leaves either the old file or
//! the new one, never half of one; a full disk leaves the old one and an error that says so.
//!
//! The functions return `std::io::Error` so that each caller wraps it in its own typed error naming
//! the file; [`describe`] turns one into the message those errors carry (a full disk says "no space").

use std::fs::File;
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The temporary sibling `path` is written through: `.NAME.tmp-PID` beside it, so that two processes
/// writing the same file never share one, and a leftover is recognisable (hidden, `.tmp-`).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "file".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Flushes a directory's entries (new, renamed or removed names in it) to the disk. Where the
/// platform cannot open a directory (Windows), there is nothing to do.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Makes `tmp` (a finished file) the file at `path`: flushes its data, renames it and flushes the
/// directory. On an error `tmp` is removed and whatever was at `path` is untouched.
pub fn commit_file(tmp: &Path, path: &Path) -> io::Result<()> {
    let done = File::open(tmp)
        .and_then(|f| f.sync_all())
        .and_then(|_| std::fs::rename(tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(parent(path))
}

/// Writes `bytes` to `path` crash-safely (temporary sibling, fsync, rename, directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    commit_file(&tmp, path)
}

/// Makes the directory `tmp` (finished, holding only files) the directory `path`: flushes every file
/// in it and its own entries, renames it and flushes the parent. `path` must not exist (a rename
/// cannot replace a non-empty directory); on an error `tmp` is left for the caller to remove.
pub fn commit_dir(tmp: &Path, path: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(tmp)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(tmp)?;
    std::fs::rename(tmp, path)?;
    sync_dir(parent(path))
}

/// An I/O error as the message of a write error: the OS's own words, and for a full disk (or quota)
/// a plain "no space left" first, since that is the one a user can act on.
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            format!("no space left on the device ({e})")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_files_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.safetensors");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["weights.safetensors"]);
    }

    #[test]
    fn a_failed_commit_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.usearch");
        write_atomic(&path, b"old").unwrap();
        // the temporary file is missing: the commit fails and the old file stays
        let err = commit_file(&dir.path().join(".missing.tmp"), &path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn commit_dir_moves_a_finished_directory() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(".step-1.tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("state.json"), b"{}").unwrap();
        commit_dir(&tmp, &dir.path().join("step-1")).unwrap();
        assert!(!tmp.exists());
        assert_eq!(
            std::fs::read(dir.path().join("step-1/state.json")).unwrap(),
            b"{}"
        );
    }

    #[test]
    fn a_full_disk_says_no_space() {
        let e = io::Error::from(ErrorKind::StorageFull);
        assert!(
            describe(&e).starts_with("no space left"),
            "{}",
            describe(&e)
        );
        let other = io::Error::from(ErrorKind::PermissionDenied);
        assert!(!describe(&other).contains("no space"));
    }
}
