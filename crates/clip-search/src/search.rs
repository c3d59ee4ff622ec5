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

/// The `k` best files for the unit vector `query` with a score of at least `min_score`, best first;
/// `exclude` leaves one row out (the file of a "more like this" query).
pub fn search(
    index: &Index,
    vectors: &VectorSet,
    query: &[f32],
    k: usize,
    min_score: f32,
    exclude: Option<i64>,
) -> Result<Vec<SearchHit>, SearchError> {
    let extra = usize::from(exclude.is_some());
    let hits: Vec<_> = vectors
        .top_k(query, k + extra, min_score)
        .into_iter()
        .filter(|h| Some(h.id) != exclude)
        .take(k)
        .collect();
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
