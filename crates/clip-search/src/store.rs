//! The index on disk: one SQLite file holding every image's path, modification time, size, content
//! hash and unit-length embedding, and the model that made them.
//!
//! Paths are stored as their raw bytes (a BLOB), so names that are not UTF-8 survive. Vectors are
//! little-endian f32. A file that could not be decoded keeps its row with the error instead of a
//! vector, so it is not decoded again until it changes. Rows of files that vanished are marked
//! deleted (and left out of results) until `purge` removes them; their vectors stay reusable for a
//! file that reappears under another name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::exact::VectorSet;
use crate::SearchError;

/// `PRAGMA application_id` of our databases: "CLIP" in ASCII. A SQLite file without it was written
/// by another program and is never changed.
pub const APPLICATION_ID: i32 = 0x434C_4950;
/// Schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 1;
/// How long a writer waits for another process's lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL UNIQUE,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash BLOB NOT NULL,
    vector BLOB,
    error TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    -- 1 while the approximate index (ann.rs) holds this row's current vector
    ann INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX images_hash ON images (hash);
";

/// The model an index was built with: what a later run must match for its queries and new vectors
/// to be comparable with the stored ones.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// How the user named it (a path, or the bundled model's name).
    pub name: String,
    /// Embedding dimension.
    pub dim: usize,
    /// The image preprocessing, as JSON.
    pub preprocess: serde_json::Value,
    /// Unit embedding of a fixed synthetic image ([`crate::indexer::model_info`]): two models that agree on it (and
    /// on `probe_text`) put images and texts in the same space, whatever backend or precision each
    /// ran in.
    pub probe_image: Vec<f32>,
    /// Unit embedding of a fixed text.
    pub probe_text: Vec<f32>,
}

impl ModelInfo {
    /// Cosine similarity above which two probes are taken for the same model: f32 against bf16 on the
    /// same weights gives ≥ 0.9995 (docs/gpu.md), two different models far less.
    pub const SAME_MODEL: f32 = 0.999;

    /// Whether `other` is the same model (dimension and both probes).
    pub fn matches(&self, other: &ModelInfo) -> bool {
        self.dim == other.dim
            && cosine(&self.probe_image, &other.probe_image) >= Self::SAME_MODEL
            && cosine(&self.probe_text, &other.probe_text) >= Self::SAME_MODEL
    }

    /// "model NAME (dim N)", for messages.
    pub fn describe(&self) -> String {
        format!("model {} (dimension {})", self.name, self.dim)
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}

/// One stored file, as the indexer compares it with the file system.
#[derive(Clone, Debug)]
pub struct Row {
    /// Row id (stable: results and "more like this" refer to it).
    pub id: i64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Size in bytes.
    pub size: u64,
    /// Content hash ([`crate::scan::content_hash`]).
    pub hash: Vec<u8>,
    /// Marked deleted (vanished at the last scan).
    pub deleted: bool,
    /// Why it could not be decoded (no vector then).
    pub error: Option<String>,
}

/// What a file's row will hold.
#[derive(Clone, Debug)]
pub enum Content {
    /// Its unit-length embedding.
    Vector(Vec<f32>),
    /// Why it could not be read or decoded.
    Error(String),
}

/// A stored file's content found by hash, for a renamed or copied file.
pub type Reusable = Content;

/// Row counts of an index.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Files with a vector, not deleted: what searches see.
    pub searchable: u64,
    /// Files that could not be decoded (not deleted).
    pub unreadable: u64,
    /// Rows of vanished files, kept until `clip index --purge`.
    pub deleted: u64,
}

/// An open index.
pub struct Index {
    conn: Connection,
    path: PathBuf,
    /// Held while this process writes (see [`Index::lock`]).
    lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

/// The default database: `index.sqlite3` in the user's data directory (`$XDG_DATA_HOME/clip` or
/// `~/.local/share/clip` on Linux, `~/Library/Application Support/clip` on macOS, `%APPDATA%\clip` on
/// Windows); the current directory if the system names none.
pub fn default_path() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("clip"))
        .unwrap_or_default()
        .join("index.sqlite3")
}

impl Index {
    /// Opens the index at `path`, creating it (and its folder) when the file does not exist. A file
    /// that is not one of our indexes is refused and left as it was.
    pub fn open_or_create(path: &Path) -> Result<Self, SearchError> {
        // an empty file holds nothing to lose: a creation cut short, or `touch`ed for us
        let empty = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
        if path.exists() && !empty {
            return Self::open(path);
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| SearchError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| SearchError::Database {
            path: path.to_path_buf(),
            source,
        })?;
        let index = Index {
            conn,
            path: path.to_path_buf(),
            lock: None,
        };
        index.configure()?;
        index.create_schema()?;
        Ok(index)
    }

    fn create_schema(&self) -> Result<(), SearchError> {
        self.conn
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 BEGIN; PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};
                 {SCHEMA} COMMIT;"
            ))
            .map_err(|e| self.db_error(e))
    }

    /// Opens an existing index; a missing file, a file that is not SQLite, or a SQLite database of
    /// another program is an error naming it (and nothing is written to it).
    pub fn open(path: &Path) -> Result<Self, SearchError> {
        let not_an_index = |reason: String| SearchError::NotAnIndex {
            path: path.to_path_buf(),
            reason,
        };
        let mut header = [0u8; 16];
        {
            use std::io::Read;
            let mut file = std::fs::File::open(path).map_err(|source| SearchError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let read = file.read(&mut header).map_err(|source| SearchError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            if read < 16 || &header != b"SQLite format 3\0" {
                return Err(not_an_index("not a SQLite database".into()));
            }
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| not_an_index(e.to_string()))?;
        let index = Index {
            conn,
            path: path.to_path_buf(),
            lock: None,
        };
        index.configure()?;
        let pragma = |name: &str| {
            index
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i32>(0))
                .map_err(|e| not_an_index(e.to_string()))
        };
        let application_id = pragma("application_id")?;
        let tables: i32 = index
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| not_an_index(e.to_string()))?;
        if application_id == 0 && tables == 0 {
            // an empty SQLite file: one whose creation was cut short before its first commit
            index.create_schema()?;
            return Ok(index);
        }
        if application_id != APPLICATION_ID {
            let tables: Vec<String> = index
                .conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .and_then(|mut s| {
                    s.query_map([], |r| r.get(0))?
                        .collect::<Result<Vec<String>, _>>()
                })
                .unwrap_or_default();
            return Err(not_an_index(format!(
                "a SQLite database of another program: application id {application_id:#x}, tables [{}]",
                tables.join(", ")
            )));
        }
        let version = pragma("user_version")?;
        if version != SCHEMA_VERSION {
            return Err(not_an_index(format!(
                "schema version {version}; this clip reads version {SCHEMA_VERSION}"
            )));
        }
        Ok(index)
    }

    fn configure(&self) -> Result<(), SearchError> {
        self.conn
            .busy_timeout(LOCK_WAIT)
            .map_err(|e| self.db_error(e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_error(&self, source: rusqlite::Error) -> SearchError {
        if let rusqlite::Error::SqliteFailure(e, _) = &source {
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) {
                return SearchError::Locked {
                    path: self.path.clone(),
                    waited_s: LOCK_WAIT.as_secs(),
                };
            }
        }
        SearchError::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// Takes this process's exclusive right to write the index, waiting up to [`LOCK_WAIT`] for
    /// another writer (an advisory lock on the database file, released when the process ends, even
    /// by a kill). Readers are never blocked: SQLite's write-ahead log lets searches run meanwhile.
    pub fn lock(&mut self) -> Result<(), SearchError> {
        if self.lock.is_some() {
            return Ok(());
        }
        let file = std::fs::File::open(&self.path).map_err(|source| SearchError::Io {
            path: self.path.clone(),
            source,
        })?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(SearchError::Locked {
                        path: self.path.clone(),
                        waited_s: LOCK_WAIT.as_secs(),
                    })
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(SearchError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
        self.lock = Some(file);
        Ok(())
    }

    /// The model recorded in the index; `None` for a new, empty index.
    pub fn model(&self) -> Result<Option<ModelInfo>, SearchError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'model'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.db_error(e))?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| SearchError::NotAnIndex {
                path: self.path.clone(),
                reason: format!("its model record does not parse: {e}"),
            })
        })
        .transpose()
    }

    /// Checks that `model` is the index's model; records it when the index has none yet.
    pub fn adopt_model(&mut self, model: &ModelInfo) -> Result<(), SearchError> {
        match self.model()? {
            Some(indexed) if indexed.matches(model) => Ok(()),
            Some(indexed) => Err(SearchError::ModelMismatch {
                path: self.path.clone(),
                indexed: indexed.describe(),
                current: model.describe(),
            }),
            None => self.set_model(model),
        }
    }

    /// Forgets every stored file and records `model`: the start of `clip index --reindex`.
    pub fn reset(&mut self, model: &ModelInfo) -> Result<(), SearchError> {
        let tx = self.conn.transaction().map_err(|e| db(&self.path, e))?;
        tx.execute("DELETE FROM images", [])
            .map_err(|e| db(&self.path, e))?;
        tx.commit().map_err(|e| db(&self.path, e))?;
        self.set_model(model)
    }

    fn set_model(&mut self, model: &ModelInfo) -> Result<(), SearchError> {
        let json = serde_json::to_string(model).unwrap_or_default();
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('model', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [json],
            )
            .map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// Every stored row, by path bytes.
    pub fn rows(&self) -> Result<HashMap<Vec<u8>, Row>, SearchError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, path, mtime_ns, size, hash, deleted, error FROM images")
            .map_err(|e| self.db_error(e))?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(1)?,
                    Row {
                        id: r.get(0)?,
                        mtime_ns: r.get(2)?,
                        size: r.get::<_, i64>(3)? as u64,
                        hash: r.get(4)?,
                        deleted: r.get::<_, i64>(5)? != 0,
                        error: r.get(6)?,
                    },
                ))
            })
            .and_then(|rows| rows.collect::<Result<HashMap<_, _>, _>>())
            .map_err(|e| self.db_error(e))?;
        Ok(rows)
    }

    /// The vector (or error) of any row with this content hash, deleted rows included: what a
    /// renamed or copied file reuses.
    pub fn by_hash(&self, hash: &[u8], size: u64) -> Result<Option<Reusable>, SearchError> {
        self.conn
            .query_row(
                "SELECT vector, error FROM images WHERE hash = ?1 AND size = ?2
                 ORDER BY (vector IS NULL), deleted LIMIT 1",
                params![hash, size as i64],
                |r| {
                    let vector: Option<Vec<u8>> = r.get(0)?;
                    let error: Option<String> = r.get(1)?;
                    Ok(match vector {
                        Some(bytes) => Content::Vector(from_bytes(&bytes)),
                        None => Content::Error(error.unwrap_or_default()),
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_error(e))
    }

    /// Applies `changes` in one transaction: all of them or none.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), SearchError> {
        let path = self.path.clone();
        let err = |e| db(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO images (path, mtime_ns, size, hash, vector, error, deleted)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
                     ON CONFLICT (path) DO UPDATE SET mtime_ns = excluded.mtime_ns,
                         size = excluded.size, hash = excluded.hash, vector = excluded.vector,
                         error = excluded.error, deleted = 0, ann = 0",
                )
                .map_err(err)?;
            let mut touch = tx
                .prepare_cached("UPDATE images SET mtime_ns = ?2, deleted = 0 WHERE id = ?1")
                .map_err(err)?;
            let mut delete = tx
                .prepare_cached("UPDATE images SET deleted = 1 WHERE id = ?1")
                .map_err(err)?;
            for change in changes {
                match change {
                    Change::Store {
                        path,
                        mtime_ns,
                        size,
                        hash,
                        content,
                    } => {
                        let (vector, error) = match content {
                            Content::Vector(v) => (Some(to_bytes(v)), None),
                            Content::Error(e) => (None, Some(e.as_str())),
                        };
                        upsert
                            .execute(params![
                                path_bytes(path),
                                mtime_ns,
                                *size as i64,
                                hash,
                                vector,
                                error
                            ])
                            .map_err(err)?;
                    }
                    Change::Touch { id, mtime_ns } => {
                        touch.execute(params![id, mtime_ns]).map_err(err)?;
                    }
                    Change::Delete { id } => {
                        delete.execute([id]).map_err(err)?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| self.db_error(e))
    }

    /// Removes the rows of deleted files for good; returns how many.
    pub fn purge(&mut self) -> Result<usize, SearchError> {
        self.conn
            .execute("DELETE FROM images WHERE deleted = 1", [])
            .map_err(|e| self.db_error(e))
    }

    /// Row counts.
    pub fn counts(&self) -> Result<Counts, SearchError> {
        self.conn
            .query_row(
                "SELECT
                    COALESCE(SUM(deleted = 0 AND vector IS NOT NULL), 0),
                    COALESCE(SUM(deleted = 0 AND vector IS NULL), 0),
                    COALESCE(SUM(deleted = 1), 0)
                 FROM images",
                [],
                |r| {
                    Ok(Counts {
                        searchable: r.get::<_, i64>(0)? as u64,
                        unreadable: r.get::<_, i64>(1)? as u64,
                        deleted: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .map_err(|e| self.db_error(e))
    }

    /// The searchable vectors (not deleted, decoded), in one contiguous array.
    pub fn vectors(&self, dim: usize) -> Result<VectorSet, SearchError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, vector FROM images WHERE deleted = 0 AND vector IS NOT NULL ORDER BY id",
            )
            .map_err(|e| self.db_error(e))?;
        let mut set = VectorSet::new(dim);
        let mut rows = statement.query([]).map_err(|e| self.db_error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.db_error(e))? {
            let id: i64 = row.get(0).map_err(|e| self.db_error(e))?;
            let bytes = row
                .get_ref(1)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(|e| self.db_error(e))?;
            if bytes.len() != dim * 4 {
                return Err(SearchError::NotAnIndex {
                    path: self.path.clone(),
                    reason: format!(
                        "row {id} holds a vector of {} bytes, not {dim} f32",
                        bytes.len()
                    ),
                });
            }
            set.push(id, bytes);
        }
        Ok(set)
    }

    /// The path and vector of a searchable row.
    pub fn row_by_id(&self, id: i64) -> Result<Option<(PathBuf, Vec<f32>)>, SearchError> {
        self.conn
            .query_row(
                "SELECT path, vector FROM images WHERE id = ?1 AND deleted = 0 AND vector IS NOT NULL",
                [id],
                |r| {
                    Ok((
                        path_from_bytes(&r.get::<_, Vec<u8>>(0)?),
                        from_bytes(&r.get::<_, Vec<u8>>(1)?),
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db_error(e))
    }

    /// The id of a searchable file, by path.
    pub fn id_of(&self, path: &Path) -> Result<Option<i64>, SearchError> {
        self.conn
            .query_row(
                "SELECT id FROM images WHERE path = ?1 AND deleted = 0 AND vector IS NOT NULL",
                [path_bytes(path)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_error(e))
    }

    /// Paths of rows, by id (the ids of a search result).
    pub fn paths(&self, ids: &[i64]) -> Result<Vec<PathBuf>, SearchError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT path FROM images WHERE id = ?1")
            .map_err(|e| self.db_error(e))?;
        ids.iter()
            .map(|id| {
                statement
                    .query_row([id], |r| r.get::<_, Vec<u8>>(0))
                    .map(|b| path_from_bytes(&b))
                    .map_err(|e| self.db_error(e))
            })
            .collect()
    }

    /// Every unreadable file and why, not deleted.
    pub fn unreadable(&self) -> Result<Vec<(PathBuf, String)>, SearchError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT path, error FROM images WHERE deleted = 0 AND vector IS NULL ORDER BY path",
            )
            .map_err(|e| self.db_error(e))?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    path_from_bytes(&r.get::<_, Vec<u8>>(0)?),
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.db_error(e));
        rows
    }

    /// What the approximate index lacks: ids to remove from it (deleted, or stored anew since it took
    /// them) and ids to add (searchable, not in it with their current vector).
    pub fn ann_pending(&self) -> Result<(Vec<i64>, Vec<i64>), SearchError> {
        let ids = |sql: &str| -> Result<Vec<i64>, SearchError> {
            let mut statement = self.conn.prepare(sql).map_err(|e| self.db_error(e))?;
            let rows = statement
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.db_error(e));
            rows
        };
        Ok((
            ids("SELECT id FROM images WHERE ann = 1 AND (deleted = 1 OR vector IS NULL)")?,
            ids("SELECT id FROM images WHERE ann = 0 AND deleted = 0 AND vector IS NOT NULL ORDER BY id")?,
        ))
    }

    /// Records that the approximate index now holds `added` and no longer `removed` (one transaction,
    /// after its file was written).
    pub fn mark_ann(&mut self, added: &[i64], removed: &[i64]) -> Result<(), SearchError> {
        let path = self.path.clone();
        let err = |e| db(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut set = tx
                .prepare_cached("UPDATE images SET ann = ?2 WHERE id = ?1")
                .map_err(err)?;
            for id in added {
                set.execute([id, &1]).map_err(err)?;
            }
            for id in removed {
                set.execute([id, &0]).map_err(err)?;
            }
        }
        tx.commit().map_err(|e| self.db_error(e))
    }

    /// Forgets that any row is in the approximate index (its file is being rebuilt from nothing).
    pub fn clear_ann(&mut self) -> Result<(), SearchError> {
        self.conn
            .execute("UPDATE images SET ann = 0 WHERE ann = 1", [])
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// The searchable vectors of `ids` (which must be sorted), in one array.
    pub fn vectors_of(&self, dim: usize, ids: &[i64]) -> Result<VectorSet, SearchError> {
        let all = self.vectors(dim)?;
        if all.len() == ids.len() {
            return Ok(all);
        }
        let wanted: std::collections::HashSet<i64> = ids.iter().copied().collect();
        let mut set = VectorSet::new(dim);
        for (id, row) in all.ids().iter().zip(all.data().chunks_exact(dim.max(1))) {
            if wanted.contains(id) {
                set.push_f32(*id, row);
            }
        }
        Ok(set)
    }

    /// A number that changes whenever another connection commits to the database (`PRAGMA
    /// data_version`): a server's cue to reload its vectors after a `clip index` run.
    pub fn data_version(&self) -> Result<i64, SearchError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.db_error(e))
    }

    /// Whether SQLite finds the file sound (`PRAGMA integrity_check`).
    pub fn integrity_ok(&self) -> Result<bool, SearchError> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.db_error(e))?;
        Ok(result == "ok")
    }
}

fn db(path: &Path, source: rusqlite::Error) -> SearchError {
    SearchError::Database {
        path: path.to_path_buf(),
        source,
    }
}

/// One change to the index, applied by [`Index::apply`].
#[derive(Clone, Debug)]
pub enum Change {
    /// Insert or replace the row of `path`.
    Store {
        /// The file.
        path: PathBuf,
        /// Its modification time (ns since the epoch).
        mtime_ns: i64,
        /// Its size.
        size: u64,
        /// Its content hash.
        hash: Vec<u8>,
        /// Its vector or its error.
        content: Content,
    },
    /// The file changed time but not content, or came back: keep its vector.
    Touch {
        /// Row id.
        id: i64,
        /// The new modification time.
        mtime_ns: i64,
    },
    /// The file vanished: leave it out of results.
    Delete {
        /// Row id.
        id: i64,
    },
}

/// A path's raw bytes (its `OsStr` bytes on Unix, where names need not be UTF-8).
pub fn path_bytes(path: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned().into_bytes()
    }
}

/// The path of [`path_bytes`].
pub fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
    }
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(seed: f32) -> ModelInfo {
        ModelInfo {
            name: format!("m{seed}"),
            dim: 3,
            preprocess: serde_json::json!({}),
            probe_image: vec![1.0, seed, 0.0],
            probe_text: vec![0.0, 1.0, seed],
        }
    }

    #[test]
    fn refuses_files_it_did_not_write_and_leaves_them_alone() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello, not a database at all").unwrap();
        let err = Index::open_or_create(&text).unwrap_err().to_string();
        assert!(
            err.contains("notes.txt") && err.contains("not a SQLite database"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&text).unwrap(),
            b"hello, not a database at all"
        );

        let foreign = dir.path().join("other.db");
        let conn = Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE photos (x); INSERT INTO photos VALUES (1);")
            .unwrap();
        drop(conn);
        let before = std::fs::read(&foreign).unwrap();
        let err = Index::open_or_create(&foreign).unwrap_err().to_string();
        assert!(
            err.contains("another program") && err.contains("photos"),
            "{err}"
        );
        assert_eq!(std::fs::read(&foreign).unwrap(), before);
    }

    #[test]
    fn a_model_is_recorded_once_and_another_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/index.sqlite3");
        let mut index = Index::open_or_create(&path).unwrap();
        assert!(index.model().unwrap().is_none());
        index.adopt_model(&model(0.0)).unwrap();
        drop(index);
        let mut index = Index::open(&path).unwrap();
        // the same model in another precision: probes within 0.999
        index.adopt_model(&model(0.01)).unwrap();
        let err = index.adopt_model(&model(1.0)).unwrap_err().to_string();
        assert!(
            err.contains("m0") && err.contains("m1") && err.contains("--reindex"),
            "{err}"
        );
        index.reset(&model(1.0)).unwrap();
        assert_eq!(index.model().unwrap().unwrap().name, "m1");
    }

    #[test]
    fn rows_round_trip_with_non_utf8_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open_or_create(&dir.path().join("i.db")).unwrap();
        #[cfg(unix)]
        let odd = {
            use std::os::unix::ffi::OsStrExt;
            PathBuf::from(std::ffi::OsStr::from_bytes(b"/photos/caf\xe9.jpg"))
        };
        #[cfg(not(unix))]
        let odd = PathBuf::from("/photos/café.jpg");
        let store = |path: &Path, content| Change::Store {
            path: path.to_path_buf(),
            mtime_ns: 7,
            size: 10,
            hash: vec![1, 2],
            content,
        };
        index
            .apply(&[
                store(&odd, Content::Vector(vec![0.6, 0.8, 0.0])),
                store(
                    Path::new("/photos/bad.jpg"),
                    Content::Error("truncated".into()),
                ),
            ])
            .unwrap();
        let rows = index.rows().unwrap();
        assert_eq!(rows.len(), 2);
        let id = index.id_of(&odd).unwrap().unwrap();
        assert_eq!(index.paths(&[id]).unwrap(), vec![odd.clone()]);
        assert_eq!(index.row_by_id(id).unwrap().unwrap().1, vec![0.6, 0.8, 0.0]);
        assert_eq!(
            index.counts().unwrap(),
            Counts {
                searchable: 1,
                unreadable: 1,
                deleted: 0
            }
        );
        index.apply(&[Change::Delete { id }]).unwrap();
        assert_eq!(index.vectors(3).unwrap().len(), 0);
        // a deleted row's vector is still there for a renamed file
        match index.by_hash(&[1, 2], 10).unwrap() {
            Some(Content::Vector(v)) => assert_eq!(v, vec![0.6, 0.8, 0.0]),
            other => panic!("{other:?}"),
        }
        assert_eq!(index.purge().unwrap(), 1);
        assert_eq!(index.counts().unwrap().deleted, 0);
    }
}
