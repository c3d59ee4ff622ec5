//! What can go wrong while indexing or searching; every variant names the file, folder or query.

use std::path::PathBuf;

/// An indexing or search error.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The file exists but is not a database this library wrote (not SQLite, or SQLite of another
    /// program): it is left untouched.
    #[error("{path} is not a clip search index ({reason}); it was left untouched — choose another file with --db")]
    NotAnIndex {
        /// The database file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The index was built with another model: its vectors are in another space.
    #[error(
        "{path} was built with {indexed}; this run uses {current}. Their embeddings do not compare: \
         use the same --model, rebuild the index with --reindex, or choose another file with --db"
    )]
    ModelMismatch {
        /// The database file.
        path: PathBuf,
        /// The model the index records.
        indexed: String,
        /// The model of this run.
        current: String,
    },
    /// Another process is writing the index.
    #[error("{path} is being written by another process (another `clip index`?); waited {waited_s} s — try again when it has finished")]
    Locked {
        /// The database file.
        path: PathBuf,
        /// Seconds waited for the lock.
        waited_s: u64,
    },
    /// SQLite failed on an index that opened fine (disk full, I/O error, …).
    #[error("{path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A folder to index does not exist or is not a folder.
    #[error("{0} is not a folder")]
    NotAFolder(PathBuf),
    /// An `--exclude` pattern is not a valid glob.
    #[error("bad --exclude pattern {pattern:?}: {reason}")]
    BadGlob {
        /// The pattern as given.
        pattern: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A search query that cannot be understood.
    #[error("bad query {query:?}: {reason}")]
    BadQuery {
        /// The query as given.
        query: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A query names a file that the index does not hold (`--like`).
    #[error("{0} is not in the index (index it first, or search with --image to embed it)")]
    NotIndexed(PathBuf),
    /// The build lacks a cargo feature the request needs.
    #[error("this build of clip has no {0}: rebuild with the `{1}` feature")]
    Unsupported(&'static str, &'static str),
    /// The model failed (loading, an image of a query, …).
    #[error(transparent)]
    Clip(#[from] clip::ClipError),
}
