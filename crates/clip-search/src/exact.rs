//! Exact search: every stored vector scored against the query in one pass over a contiguous array,
//! the best `k` found by partial selection (no full sort).

use rayon::prelude::*;

/// Vectors of one dimension in one contiguous row-major array, with the id of each row.
#[derive(Clone, Debug, Default)]
pub struct VectorSet {
    dim: usize,
    ids: Vec<i64>,
    data: Vec<f32>,
}

/// One search result: a row id and its cosine similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Row id in the index.
    pub id: i64,
    /// Cosine similarity (vectors are unit length).
    pub score: f32,
}

/// Rows scored per parallel task: large enough that a task outweighs its scheduling.
const ROWS_PER_TASK: usize = 8192;

impl VectorSet {
    /// An empty set of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
    }

    /// A set from row-major `data` (`ids.len() × dim`).
    ///
    /// # Panics
    /// When `data.len() != ids.len() * dim`.
    pub fn from_parts(dim: usize, ids: Vec<i64>, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), ids.len() * dim, "data is not ids × dim");
        Self { dim, ids, data }
    }

    /// Appends row `id` from `dim` little-endian f32 values.
    pub(crate) fn push(&mut self, id: i64, le_bytes: &[u8]) {
        self.ids.push(id);
        self.data.extend(
            le_bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }

    /// Appends row `id`.
    pub(crate) fn push_f32(&mut self, id: i64, row: &[f32]) {
        self.ids.push(id);
        self.data.extend_from_slice(row);
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Their dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The row ids, in row order.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// The row-major vectors.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The `k` rows most similar to `query` (a unit vector of this set's dimension) with a score of at
    /// least `min_score`, best first (ties by row order).
    pub fn top_k(&self, query: &[f32], k: usize, min_score: f32) -> Vec<Hit> {
        if k == 0 || self.is_empty() || query.len() != self.dim {
            return Vec::new();
        }
        let dim = self.dim;
        // Each task keeps its own best k, so the merge sees at most tasks × k candidates.
        let mut candidates: Vec<(usize, f32)> = self
            .data
            .par_chunks(ROWS_PER_TASK * dim)
            .enumerate()
            .flat_map_iter(|(task, chunk)| {
                let first = task * ROWS_PER_TASK;
                let mut scored: Vec<(usize, f32)> = chunk
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(i, row)| (first + i, dot(row, query)))
                    .filter(|&(_, s)| s >= min_score)
                    .collect();
                keep_best(&mut scored, k);
                scored
            })
            .collect();
        keep_best(&mut candidates, k);
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        candidates
            .into_iter()
            .map(|(row, score)| Hit {
                id: self.ids[row],
                score,
            })
            .collect()
    }
}

/// Cuts `scored` to its `k` best, in no particular order.
fn keep_best(scored: &mut Vec<(usize, f32)>, k: usize) {
    if scored.len() > k {
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
    }
}

/// Dot product in eight independent lanes, which the compiler turns into SIMD.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `v` scaled to unit length (left as it is when it is zero).
pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = dot(&v, &v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A brute-force reference: every score, fully sorted.
    fn reference(set: &VectorSet, q: &[f32], k: usize) -> Vec<i64> {
        let mut all: Vec<(i64, f32)> = set
            .ids()
            .iter()
            .zip(set.data().chunks_exact(set.dim()))
            .map(|(id, row)| (*id, row.iter().zip(q).map(|(a, b)| a * b).sum()))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.into_iter().take(k).map(|(id, _)| id).collect()
    }

    #[test]
    fn top_k_matches_a_full_sort_across_tasks() {
        // more rows than one task holds, in a deterministic pseudo-random spread
        let (n, dim) = (3 * ROWS_PER_TASK + 17, 12);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut data = Vec::new();
        for _ in 0..n {
            data.extend(normalize((0..dim).map(|_| next()).collect()));
        }
        let ids: Vec<i64> = (0..n as i64).map(|i| 1000 + i).collect();
        let set = VectorSet::from_parts(dim, ids, data);
        let q = normalize((0..dim).map(|_| next()).collect());
        let hits = set.top_k(&q, 10, -1.0);
        assert_eq!(
            hits.iter().map(|h| h.id).collect::<Vec<_>>(),
            reference(&set, &q, 10)
        );
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // a threshold keeps only what reaches it
        let above = set.top_k(&q, n, hits[4].score);
        assert_eq!(above.len(), 5);
        assert!(set.top_k(&q, 0, -1.0).is_empty());
        assert!(set.top_k(&q[..3], 5, -1.0).is_empty());
    }
}
