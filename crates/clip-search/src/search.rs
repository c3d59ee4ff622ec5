//! Turning a parsed query into a vector, and a vector into ranked paths.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use clip::Pretrained;
use serde::Serialize;

use crate::exact::{normalize, VectorSet};
use crate::indexer::unit_rows;
use crate::query::{Term, TermKind};
use crate::store::Index;
use crate::SearchError;

/// A ranked search result.
#[derive(Clone, Debug, Serialize)]
pub struct SearchHit {
    /// 1 for the best.
    pub rank: usize,
    /// Cosine similarity to the query.
    pub score: f32,
    /// The file.
    pub path: PathBuf,
    /// Its row id in the index (for "more like this").
    pub id: i64,
}

/// The unit query vector of `terms`: the normalized sum of each term's unit embedding times its
/// weight, as rclip combines them. An image term that cannot be decoded is an error naming it.
pub fn query_vector<B: Backend>(
    clip: &Pretrained<B>,
    terms: &[Term],
    device: &B::Device,
) -> Result<Vec<f32>, SearchError> {
    let mut sum = vec![0f32; clip.config.embed_dim];
    for term in terms {
        let embedding = match &term.kind {
            TermKind::Text(text) => clip.embed_texts(&[text], device)?,
            TermKind::Image(path) => clip.embed_image_files(&[path], device)?,
        };
        let unit = unit_rows(embedding)?.into_iter().next().unwrap_or_default();
        for (s, x) in sum.iter_mut().zip(unit) {
            *s += term.weight * x;
        }
    }
    Ok(normalize(sum))
}

/// How a search finds its candidates.
#[derive(Debug)]
pub enum Searcher {
    /// Every stored vector scored (always right).
    Exact(VectorSet),
    /// The approximate index (`ann` feature), re-scored exactly.
    #[cfg(feature = "ann")]
    Approximate(crate::ann::Ann),
}

impl Searcher {
    /// The approximate index of `index` when it is current (`view`: memory-map it), else the stored
    /// vectors for an exact search.
    pub fn load(index: &Index, dim: usize, view: bool) -> Result<Self, SearchError> {
        #[cfg(feature = "ann")]
        if let Some(ann) = crate::ann::current(index, view)? {
            return Ok(Searcher::Approximate(ann));
        }
        let _ = view;
        Ok(Searcher::Exact(index.vectors(dim)?))
    }

    /// Vectors searched.
    pub fn len(&self) -> usize {
        match self {
            Searcher::Exact(v) => v.len(),
            #[cfg(feature = "ann")]
            Searcher::Approximate(a) => a.len(),
        }
    }

    /// Whether there is nothing to search.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether results are approximate.
    pub fn is_approximate(&self) -> bool {
        !matches!(self, Searcher::Exact(_))
    }
}

/// The `k` best files for the unit vector `query` with a score of at least `min_score`, best first;
/// `exclude` leaves one row out (the file of a "more like this" query).
pub fn search(
    index: &Index,
    searcher: &Searcher,
    query: &[f32],
    k: usize,
    min_score: f32,
    exclude: Option<i64>,
) -> Result<Vec<SearchHit>, SearchError> {
    let exact = |vectors: &VectorSet| -> Vec<_> {
        let extra = usize::from(exclude.is_some());
        vectors
            .top_k(query, k + extra, min_score)
            .into_iter()
            .filter(|h| Some(h.id) != exclude)
            .take(k)
            .collect()
    };
    let hits: Vec<_> = match searcher {
        Searcher::Exact(vectors) => exact(vectors),
        // asking for most of the collection: a graph need not reach every node after removals, a
        // scan does, and costs about as much at that size
        #[cfg(feature = "ann")]
        Searcher::Approximate(ann) if 2 * k + 1 >= ann.len() => exact(&index.vectors(query.len())?),
        #[cfg(feature = "ann")]
        Searcher::Approximate(ann) => crate::ann::search(index, ann, query, k, min_score, exclude)?,
    };
    let ids: Vec<i64> = hits.iter().map(|h| h.id).collect();
    let paths = index.paths(&ids)?;
    Ok(hits
        .iter()
        .zip(paths)
        .enumerate()
        .map(|(i, (hit, path))| SearchHit {
            rank: i + 1,
            score: hit.score,
            path,
            id: hit.id,
        })
        .collect())
}
