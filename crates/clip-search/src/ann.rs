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

/// Checks a graph file's counts against its size before USearch reads it: USearch allocates what
/// the file's header declares (vectors, nodes, their levels) before reading the data, so a damaged
/// or forged header would make it allocate gigabytes (found by `fuzz/`'s `search_db` target). The
/// layout, as USearch 2.x's `index_dense_gt::save_to_stream` writes it: the vectors as `rows: u32`,
/// `cols: u32` (bytes per vector) and `rows × cols` bytes; a 64-byte head (`usearch` magic, version,
/// kinds, counts, `dimensions: u64` at byte 33); then the graph's header (`size`, `connectivity`,
/// `connectivity_base`, `max_level`, `entry_slot`, each `u64`), `size` levels of 2 bytes, and the
/// nodes. The neighbours' slots inside the nodes are not checked (that would read the whole graph).
fn check_file(path: &Path) -> Result<(), SearchError> {
    use std::io::{Read, Seek, SeekFrom};
    let damaged = |what: &str| {
        ann_error(
            path,
            format!("not an approximate index written by clip index ({what})"),
        )
    };
    let io = |source| SearchError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut start = [0u8; 8];
    file.read_exact(&mut start)
        .map_err(|_| damaged("shorter than its header"))?;
    let u32_at = |b: &[u8], at: usize| {
        u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
    };
    let (rows, cols) = (u32_at(&start, 0), u32_at(&start, 4));
    if cols == 0 || cols > 8 << 16 {
        return Err(damaged("bytes per vector out of range"));
    }
    let head_at = rows
        .checked_mul(cols)
        .and_then(|v| v.checked_add(8))
        .filter(|&at| at.saturating_add(104) <= len)
        .ok_or_else(|| damaged("more vectors declared than the file holds"))?;
    let mut head = [0u8; 104];
    file.seek(SeekFrom::Start(head_at)).map_err(io)?;
    file.read_exact(&mut head).map_err(io)?;
    let u64_at = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    if &head[..7] != b"usearch" {
        return Err(damaged("no usearch header after the vectors"));
    }
    let dimensions = u64_at(33);
    if dimensions == 0 || dimensions > 1 << 16 {
        return Err(damaged("dimensions out of range"));
    }
    let (size, connectivity, base, max_level, entry) =
        (u64_at(64), u64_at(72), u64_at(80), u64_at(88), u64_at(96));
    let levels_fit = size
        .checked_mul(2)
        .and_then(|b| b.checked_add(head_at + 104))
        .is_some_and(|end| end <= len);
    if size != rows
        || !levels_fit
        || !(2..=1024).contains(&connectivity)
        || !(2..=2048).contains(&base)
        || max_level > 64
        || (size > 0 && entry >= size)
    {
        return Err(damaged("graph header out of range"));
    }
    // each node's level sizes its record: key (8), level (2), then a count (4) and its neighbours'
    // slots (4 each) per level, `base` on level 0 and `connectivity` above; the records fill the rest
    // of the file exactly
    let mut levels = vec![0u8; 2 * size as usize];
    file.read_exact(&mut levels).map_err(io)?;
    let mut nodes_bytes = 0u64;
    for level in levels.chunks_exact(2) {
        let level = i16::from_le_bytes([level[0], level[1]]);
        if level < 0 || level as u64 > max_level {
            return Err(damaged("a node's level out of range"));
        }
        nodes_bytes += 10 + 4 + 4 * base + level as u64 * (4 + 4 * connectivity);
    }
    if head_at + 104 + 2 * size + nodes_bytes != len {
        return Err(damaged("the graph's nodes do not fill the file"));
    }
    Ok(())
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
        check_file(path)?;
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
        if let Err(e) = self.index.save(name) {
            let _ = std::fs::remove_file(&tmp);
            return Err(ann_error(&tmp, e));
        }
        clip::durable::commit_file(&tmp, path).map_err(|source| SearchError::Io {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph of `n` 4-d vectors saved to `dir`, and its bytes.
    fn saved(dir: &Path, n: i64) -> (PathBuf, Vec<u8>) {
        let ann = Ann::new(4, AnnParams::default()).unwrap();
        let data: Vec<f32> = (0..4 * n)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let vectors = VectorSet::from_parts(4, (1..=n).collect(), data);
        ann.add(&vectors, &mut |_| ()).unwrap();
        let path = dir.join("index.sqlite3.usearch");
        ann.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    #[test]
    fn a_saved_graph_opens_and_a_forged_header_is_refused_before_usearch_allocates() {
        let dir = tempfile::tempdir().unwrap();
        // a graph with nodes above level 0 (about 1 in 16 at M = 16) passes the check
        let (large, _) = saved(dir.path(), 3000);
        assert_eq!(Ann::open(&large, false).unwrap().len(), 3000);
        let (path, bytes) = saved(dir.path(), 5);
        assert_eq!(Ann::open(&path, false).unwrap().len(), 5);
        assert_eq!(Ann::open(&path, true).unwrap().len(), 5);
        let forged = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            edit(&mut b);
            std::fs::write(&path, &b).unwrap();
            Ann::open(&path, false).unwrap_err().to_string()
        };
        let rows = 5usize;
        let cols = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let head = 8 + rows * cols;
        // 2^32 - 1 vectors declared in a file of a few hundred bytes
        let err = forged(&|b| b[..4].copy_from_slice(&u32::MAX.to_le_bytes()));
        assert!(err.contains("more vectors declared"), "{err}");
        // zero bytes per vector would let any count through
        let err = forged(&|b| b[4..8].copy_from_slice(&0u32.to_le_bytes()));
        assert!(err.contains("bytes per vector"), "{err}");
        // a graph of 2^40 nodes (its levels alone 2 TB)
        let err = forged(&|b| b[head + 64..head + 72].copy_from_slice(&(1u64 << 40).to_le_bytes()));
        assert!(err.contains("graph header"), "{err}");
        let err = forged(&|b| b[head + 33..head + 41].copy_from_slice(&(1u64 << 40).to_le_bytes()));
        assert!(err.contains("dimensions"), "{err}");
        // a node of level -25088 (what the fuzzer found: USearch sized the node from it and crashed)
        let err =
            forged(&|b| b[head + 112..head + 114].copy_from_slice(&(-25088i16).to_le_bytes()));
        assert!(err.contains("level out of range"), "{err}");
        let err = forged(&|b| b.push(0));
        assert!(err.contains("do not fill the file"), "{err}");
        let err = forged(&|b| b.truncate(20));
        assert!(err.contains("index.sqlite3.usearch"), "{err}");
    }
}
