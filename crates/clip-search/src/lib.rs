//! Semantic search over your own images with CLIP, in the spirit of rclip and clip-retrieval: one
//! SQLite file indexes folders of images ([`Index`], [`index_folders`]), kept up to date incrementally
//! (unchanged files are not read, renamed and copied files reuse their vectors, vanished ones are left
//! out), and queried by text, by image, or by weighted sums of both ([`query::parse`]), exactly
//! ([`VectorSet::top_k`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use clip::Pretrained;
//! use clip_search::{index_folders, model_info, query, search, Index, IndexOptions};
//!
//! type B = burn::backend::Flex;
//! let device = Default::default();
//! let clip = Pretrained::<B>::load("ViT-B-32", &device)?; // an open_clip or Hugging Face model
//! let model = model_info(&clip, "ViT-B-32", &device)?;
//! let mut index = Index::open_or_create("photos.sqlite3".as_ref())?;
//! let report = index_folders(&mut index, &clip, &model, &["Photos".into()], &IndexOptions::default(),
//!     &device, |_| ())?;
//! println!("{} embedded, {} unchanged", report.embedded, report.unchanged);
//! let searcher = search::Searcher::load(&index, model.dim, true)?; // exact, or the ANN when current
//! let q = search::query_vector(&clip, &query::parse("a blue bag - 0.5:dark")?, &device)?;
//! for hit in search::search(&index, &searcher, &q, 10, -1.0, None)? {
//!     println!("{} {:.3} {}", hit.rank, hit.score, hit.path.display());
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

#[cfg(feature = "ann")]
pub mod ann;
pub mod error;
pub mod exact;
pub mod indexer;
pub mod query;
pub mod scan;
pub mod search;
#[cfg(feature = "server")]
pub mod server;
pub mod store;

pub use error::SearchError;
pub use exact::{Hit, VectorSet};
pub use indexer::{index_folders, model_info, IndexOptions, IndexReport, Progress};
pub use scan::ScanOptions;
pub use search::Searcher;
pub use store::{default_path, Index, ModelInfo};
