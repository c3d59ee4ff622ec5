//! The approximate index for large collections: an HNSW graph (USearch) over the same vectors, in a
//! file beside the database (`index.sqlite3.usearch`).
//!
//! Why USearch: its C++ core (built by `cc`, no system library) stores vectors in f16 — 5 million
//! 512-d vectors take 5 GB instead of 10 — takes additions from many threads at once, removes keys
//! (files deleted or changed), and can memory-map a saved index instead of reading it. `hnsw_rs`, the
//! pure-Rust alternative, keeps f32 vectors and has no f16 distance. Measurements: docs/search.md.
//!
//! Row ids are the graph's keys. The database marks which rows the file holds (`images.ann`), so a
//! `clip index` run brings the graph up to date by removing and adding only what changed, and a search
//! uses it only when nothing is pending (otherwise exact search, which is always right). Results are
//! re-scored with the stored f32 vectors, so an approximate search returns the same scores as an exact
//! one for what it finds.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use usearch::{IndexOptions, MetricKind, ScalarKind};

use crate::exact::{dot, Hit, VectorSet};
use crate::store::Index;
use crate::SearchError;

/// How the graph is built and searched.
#[derive(Clone, Copy, Debug)]
pub struct AnnParams {
    /// Links per node (HNSW's M).
    pub connectivity: usize,
    /// Candidates kept while inserting (efConstruction).
    pub expansion_add: usize,
    /// Candidates kept while searching (ef); at least the `k` asked for.
    pub expansion_search: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        // ef 512: recall@10 0.999 at 100 k and 0.988 at 1 M in 8 ms (ef 128: 0.951 and 0.857;
        // docs/search.md)
        Self {
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 512,
        }
    }
}

/// An approximate index over unit vectors (inner product).
pub struct Ann {
    index: usearch::Index,
}

impl std::fmt::Debug for Ann {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ann")
            .field("size", &self.index.size())
            .finish()
    }
}

/// The graph file of the database at `db`.
pub fn ann_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".usearch");
    PathBuf::from(name)
}

fn ann_error(path: &Path, e: impl std::fmt::Display) -> SearchError {
    SearchError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Ann {
    /// An empty graph for `dim`-dimensional vectors, stored in f16.
    pub fn new(dim: usize, params: AnnParams) -> Result<Self, SearchError> {
        let options = IndexOptions {
            dimensions: dim,
            metric: MetricKind::IP,
            quantization: ScalarKind::F16,
            connectivity: params.connectivity,
            expansion_add: params.expansion_add,
            expansion_search: params.expansion_search,
            multi: false,
        };
        let index =
            usearch::Index::new(&options).map_err(|e| ann_error(Path::new("usearch"), e))?;
        Ok(Self { index })
    }

    /// Reads a saved graph (`view`: memory-map it instead, for a one-off search).
    pub fn open(path: &Path, view: bool) -> Result<Self, SearchError> {
        let name = path
            .to_str()
            .ok_or_else(|| ann_error(path, "the path is not UTF-8"))?;
        let index = if view {
            usearch::Index::restore_view(name)
        } else {
            usearch::Index::restore(name)
        }
        .map_err(|e| ann_error(path, e))?;
        // the file keeps the links per node, not these: new nodes are linked as in a fresh build
        index.change_expansion_add(AnnParams::default().expansion_add);
        index.change_expansion_search(AnnParams::default().expansion_search);
        Ok(Self { index })
    }

    /// Sets the candidates kept while searching (ef): more is slower and finds more of the true best.
    pub fn set_expansion_search(&self, ef: usize) {
        self.index.change_expansion_search(ef);
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory it uses.
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage()
    }

    /// Adds every row of `vectors` (replacing a key already there), on all cores, in chunks;
    /// `progress` gets the number added after each.
    pub fn add(
        &self,
        vectors: &VectorSet,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(), SearchError> {
        const CHUNK: usize = 20_000;
        let threads = rayon::current_num_threads();
        self.index
            .reserve_capacity_and_threads(self.index.size() + vectors.len(), threads)
            .map_err(|e| ann_error(Path::new("usearch"), e))?;
        let dim = vectors.dim().max(1);
        let mut done = 0;
        for (ids, rows) in vectors
            .ids()
            .chunks(CHUNK)
            .zip(vectors.data().chunks(CHUNK * dim))
        {
            ids.par_iter()
                .zip(rows.par_chunks(dim))
                .try_for_each(|(&id, row)| {
                    let key = id as u64;
                    if self.index.contains(key) {
                        self.index
                            .remove(key)
                            .map_err(|e| ann_error(Path::new("usearch"), e))?;
                    }
                    self.index
                        .add(key, row)
                        .map_err(|e| ann_error(Path::new("usearch"), e))
                })?;
            done += ids.len();
            progress(done);
        }
        Ok(())
    }

    /// Removes rows.
    pub fn remove(&self, ids: &[i64]) -> Result<(), SearchError> {
        for &id in ids {
            self.index
                .remove(id as u64)
                .map_err(|e| ann_error(Path::new("usearch"), e))?;
        }
        Ok(())
    }

    /// Writes the graph to `path` through a temporary file, so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), SearchError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let name = tmp
            .to_str()
            .ok_or_else(|| ann_error(path, "the path is not UTF-8"))?;
        self.index.save(name).map_err(|e| ann_error(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|source| SearchError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The approximate `count` best rows for a unit `query`, with their graph scores (from f16
    /// vectors), best first.
    pub fn search(&self, query: &[f32], count: usize) -> Result<Vec<Hit>, SearchError> {
        let found = self
            .index
            .search(query, count)
            .map_err(|e| ann_error(Path::new("usearch"), e))?;
        Ok(found
            .keys
            .iter()
            .zip(&found.distances)
            .map(|(&key, &distance)| Hit {
                id: key as i64,
                score: 1.0 - distance,
            })
            .collect())
    }
}

/// What [`sync`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AnnReport {
    /// Rows added.
    pub added: usize,
    /// Rows removed.
    pub removed: usize,
    /// Rows the graph holds now.
    pub size: usize,
    /// Seconds spent.
    pub seconds: f64,
}

/// Brings the graph file of `index` up to date (creating it when absent), then records what it holds.
pub fn sync(
    index: &mut Index,
    dim: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AnnReport, SearchError> {
    let start = std::time::Instant::now();
    let path = ann_path(index.path());
    let ann = if path.exists() {
        Ann::open(&path, false)?
    } else {
        index.clear_ann()?;
        Ann::new(dim, AnnParams::default())?
    };
    let (remove, add) = index.ann_pending()?;
    if remove.is_empty() && add.is_empty() && path.exists() {
        return Ok(AnnReport {
            size: ann.len(),
            seconds: start.elapsed().as_secs_f64(),
            ..AnnReport::default()
        });
    }
    ann.remove(&remove)?;
    let vectors = index.vectors_of(dim, &add)?;
    let total = vectors.len();
    ann.add(&vectors, &mut |n| progress(n, total))?;
    ann.save(&path)?;
    index.mark_ann(&add, &remove)?;
    Ok(AnnReport {
        added: add.len(),
        removed: remove.len(),
        size: ann.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The graph of `index`, when it exists and holds exactly the searchable rows; `None` otherwise
/// (search exactly then).
pub fn current(index: &Index, view: bool) -> Result<Option<Ann>, SearchError> {
    let path = ann_path(index.path());
    if !path.exists() {
        return Ok(None);
    }
    let (remove, add) = index.ann_pending()?;
    if !(remove.is_empty() && add.is_empty()) {
        return Ok(None);
    }
    Ann::open(&path, view).map(Some)
}

/// The `k` best rows through the graph, re-scored with the stored vectors: `2k` candidates from the
/// graph (its f16 scores), then their exact cosines; rows below `min_score` or equal to `exclude` are
/// left out.
pub fn search(
    index: &Index,
    ann: &Ann,
    query: &[f32],
    k: usize,
    min_score: f32,
    exclude: Option<i64>,
) -> Result<Vec<Hit>, SearchError> {
    let candidates = ann.search(query, (2 * k + 1).max(16))?;
    let mut hits = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if Some(candidate.id) == exclude {
            continue;
        }
        if let Some((_, vector)) = index.row_by_id(candidate.id)? {
            let score = dot(&vector, query);
            if score >= min_score {
                hits.push(Hit {
                    id: candidate.id,
                    score,
                });
            }
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    hits.truncate(k);
    Ok(hits)
}
