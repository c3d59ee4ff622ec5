//! `clip index` and `clip search`: an incremental SQLite index of image folders, queried by text,
//! image, or weighted sums of both (`clip_search`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use clip::Pretrained;
use clip_search::query::{Term, TermKind};
use clip_search::{index_folders, model_info, Index, IndexOptions, Progress, ScanOptions};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::CliError;

/// The name an index records for the bundled model.
pub const BUNDLED: &str = "bundled";

/// `clip index` arguments.
#[derive(clap::Args)]
pub struct IndexArgs {
    /// Folders of images to index (their sub-folders too).
    #[arg(required = true)]
    pub folders: Vec<PathBuf>,
    /// The index file (default: index.sqlite3 in your data directory, e.g. ~/.local/share/clip).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Model directory or weights file; the bundled Fashion-MNIST scenes model when absent.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Images per forward pass (and per commit).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Decoding threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Leave out paths matching this glob (repeatable); a pattern without `/` matches a name at any
    /// depth: `--exclude thumbnails --exclude '*.gif'`.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Also index hidden files and folders (names starting with a dot).
    #[arg(long)]
    pub include_hidden: bool,
    /// Forget every stored vector and embed everything again (needed to switch models).
    #[arg(long)]
    pub reindex: bool,
    /// Remove the rows of files that vanished (kept, left out of results, until then).
    #[arg(long)]
    pub purge: bool,
    /// Build (or update) the approximate index now, whatever the collection's size; it is built on
    /// its own from 1,000,000 images and kept up to date once it exists.
    #[arg(long)]
    pub ann: bool,
    /// Print the run's report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `clip search` arguments.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// The query: text, an image path, or a weighted sum such as `beach + sunset - 2:people`
    /// (`+`/`-` between spaces, `W:` weights a term, quotes keep a term whole).
    pub query: Vec<String>,
    /// An image file to search by (repeatable; added to the query).
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// "More like this": an indexed file, added to the query and left out of the results.
    #[arg(long)]
    pub like: Option<PathBuf>,
    /// The index file (default: index.sqlite3 in your data directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The model (default: the one the index was built with).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Results to show.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub top: usize,
    /// Only results with at least this cosine similarity.
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    pub min_score: f32,
    /// One JSON object per line, best first: {"rank": 1, "score": 0.31, "path": "/abs/path.jpg"}.
    #[arg(long, conflicts_with = "paths_only")]
    pub json: bool,
    /// Only the paths, one per line, best first.
    #[arg(long)]
    pub paths_only: bool,
}

fn db_path(db: &Option<PathBuf>) -> PathBuf {
    db.clone().unwrap_or_else(clip_search::default_path)
}

fn model_name(model: Option<&Path>) -> String {
    match model {
        Some(path) => std::path::absolute(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string(),
        None => BUNDLED.to_string(),
    }
}

fn bar(style: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(style).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `clip index`.
pub fn index<B: Backend>(device: &B::Device, args: &IndexArgs) -> Result<(), CliError> {
    for folder in &args.folders {
        if !folder.is_dir() {
            return Err(CliError::Usage(format!(
                "{} is not a folder",
                folder.display()
            )));
        }
    }
    let path = db_path(&args.db);
    // Open (and check) the index before loading the model: a foreign file fails fast.
    let mut index = Index::open_or_create(&path)?;
    let clip = crate::load_model::<B>(args.model.as_deref(), device)?;
    let model = model_info(&clip, &model_name(args.model.as_deref()), device)?;
    let options = IndexOptions {
        scan: ScanOptions {
            include_hidden: args.include_hidden,
            exclude: args.exclude.clone(),
        },
        batch_size: args.batch_size.max(1),
        workers: args
            .workers
            .unwrap_or_else(|| IndexOptions::default().workers)
            .max(1),
        reindex: args.reindex,
        purge: args.purge,
        ann: args.ann,
    };
    let spinner = bar("{spinner} {msg}");
    spinner.set_message("scanning folders");
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let embedding = bar("embedding [{bar:30}] {pos}/{len} files ({per_sec}, eta {eta}) {msg}");
    let ann_bar = bar("approximate index [{bar:30}] {pos}/{len} vectors ({per_sec}, eta {eta})");
    let mut started: Option<Instant> = None;
    let report = index_folders(
        &mut index,
        &clip,
        &model,
        &args.folders,
        &options,
        device,
        |event| match event {
            Progress::Scanned(n) => spinner.set_message(format!("found {n} images")),
            Progress::Hashing { done, total } if done < total => {
                spinner.set_message(format!("hashing {total} new or changed files"))
            }
            Progress::Hashing { .. } => {}
            Progress::Ann { done, total } => {
                spinner.finish_and_clear();
                embedding.finish_and_clear();
                ann_bar.set_length(total as u64);
                ann_bar.set_position(done as u64);
            }
            Progress::Embedding {
                done,
                total,
                failed,
            } => {
                if started.is_none() {
                    spinner.finish_and_clear();
                    embedding.set_length(total as u64);
                    started = Some(Instant::now());
                }
                embedding.set_position(done as u64);
                let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
                if seconds > 0.0 {
                    embedding.set_message(format!(
                        "{:.1} images/s{}",
                        (done - failed.min(done)) as f64 / seconds,
                        if failed > 0 {
                            format!(", {failed} unreadable")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
        },
    );
    spinner.finish_and_clear();
    embedding.finish_and_clear();
    ann_bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", json!({"db": path, "report": report}));
    } else {
        let r = &report;
        eprintln!(
            "{} image files: {} unchanged, {} embedded, {} renamed or copied (vectors reused), {} touched, \
             {} restored, {} unreadable, {} vanished{}",
            r.scanned,
            r.unchanged,
            r.embedded,
            r.reused,
            r.touched,
            r.restored,
            r.failed.len() + r.known_unreadable,
            r.deleted,
            if r.purged > 0 { format!(", {} purged", r.purged) } else { String::new() }
        );
        eprintln!(
            "{} holds {} searchable images ({} unreadable, {} deleted); {:.1} s{}",
            path.display(),
            r.counts.searchable,
            r.counts.unreadable,
            r.counts.deleted,
            r.seconds,
            if r.embedded > 0 {
                format!(", {:.1} images/s", r.embedded as f64 / r.seconds.max(1e-9))
            } else {
                String::new()
            }
        );
        if let Some(ann) = &r.ann {
            eprintln!(
                "approximate index: {} vectors ({} added, {} removed) in {:.1} s",
                ann.size, ann.added, ann.removed, ann.seconds
            );
        }
        const SHOWN: usize = 20;
        for (file, why) in r.failed.iter().chain(&r.scan_errors).take(SHOWN) {
            eprintln!("unreadable: {}: {why}", file.display());
        }
        let more = (r.failed.len() + r.scan_errors.len()).saturating_sub(SHOWN);
        if more > 0 {
            eprintln!("… and {more} more (--json lists them all)");
        }
    }
    if report.scanned == 0 {
        return Err(CliError::Usage(format!(
            "no image files under {} (looked for {})",
            args.folders
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            clip_search::scan::IMAGE_EXTENSIONS.join(", ")
        )));
    }
    Ok(())
}

/// The model of a search: `--model`, else the one the index records.
fn search_model<B: Backend>(
    index: &Index,
    model: Option<&Path>,
    device: &B::Device,
) -> Result<(Pretrained<B>, String), CliError> {
    if let Some(path) = model {
        return Ok((Pretrained::load(path, device)?, model_name(Some(path))));
    }
    let recorded = index.model()?.ok_or_else(|| {
        CliError::Usage(format!(
            "{} is empty: index a folder first (clip index DIR --db {0})",
            index.path().display()
        ))
    })?;
    if recorded.name == BUNDLED {
        return Ok((crate::load_model(None, device)?, recorded.name));
    }
    let path = PathBuf::from(&recorded.name);
    if !path.exists() {
        return Err(CliError::Usage(format!(
            "the index was built with {}, which is not there any more: pass its new place with --model",
            recorded.name
        )));
    }
    Ok((Pretrained::load(&path, device)?, recorded.name))
}

/// The index at `--db` (or the default), which must exist.
fn open_existing(db: &Option<PathBuf>) -> Result<(PathBuf, Index), CliError> {
    let path = db_path(db);
    if !path.exists() {
        return Err(CliError::Usage(format!(
            "no index at {}: run `clip index DIR` first{}",
            path.display(),
            if db.is_some() {
                " with the same --db"
            } else {
                ""
            }
        )));
    }
    let index = Index::open(&path)?;
    Ok((path, index))
}

/// The model for queries on `index` (`--model`, else the recorded one), checked against the index.
fn checked_model<B: Backend>(
    index: &Index,
    model: Option<&Path>,
    device: &B::Device,
) -> Result<(Pretrained<B>, clip_search::ModelInfo), CliError> {
    let (clip, name) = search_model::<B>(index, model, device)?;
    let info = model_info(&clip, &name, device)?;
    if let Some(recorded) = index.model()?.filter(|r| !r.matches(&info)) {
        return Err(clip_search::SearchError::ModelMismatch {
            path: index.path().to_path_buf(),
            indexed: recorded.describe(),
            current: info.describe(),
        }
        .into());
    }
    Ok((clip, info))
}

/// `clip search`.
pub fn search<B: Backend>(device: &B::Device, args: &SearchArgs) -> Result<(), CliError> {
    let (path, index) = open_existing(&args.db)?;
    let mut terms = if args.query.iter().any(|w| !w.trim().is_empty()) {
        clip_search::query::parse(&args.query.join(" "))?
    } else {
        Vec::new()
    };
    for image in &args.images {
        if !image.is_file() {
            return Err(CliError::Usage(format!(
                "image {} does not exist",
                image.display()
            )));
        }
        terms.push(Term {
            weight: 1.0,
            kind: TermKind::Image(image.clone()),
        });
    }
    let like = match &args.like {
        Some(file) => {
            let absolute = std::path::absolute(file).unwrap_or_else(|_| file.clone());
            Some(
                index
                    .id_of(&absolute)?
                    .ok_or(clip_search::SearchError::NotIndexed(absolute))?,
            )
        }
        None => None,
    };
    if terms.is_empty() && like.is_none() {
        return Err(CliError::Usage(
            "nothing to search for: give a QUERY, --image FILE or --like FILE".into(),
        ));
    }
    let (clip, model) = checked_model::<B>(&index, args.model.as_deref(), device)?;
    let mut query = if terms.is_empty() {
        vec![0.0; model.dim]
    } else {
        clip_search::search::query_vector(&clip, &terms, device)?
    };
    if let Some(id) = like {
        if let Some((_, vector)) = index.row_by_id(id)? {
            query.iter_mut().zip(vector).for_each(|(q, v)| *q += v);
            query = clip_search::exact::normalize(query);
        }
    }
    // the approximate index when it is current (memory-mapped: no load), else every stored vector
    let searcher = clip_search::Searcher::load(&index, model.dim, true)?;
    let hits =
        clip_search::search::search(&index, &searcher, &query, args.top, args.min_score, like)?;
    let mut out = std::io::stdout().lock();
    let write_error = |source| CliError::Write {
        path: "standard output".into(),
        source,
    };
    if args.paths_only {
        for hit in &hits {
            out.write_all(&clip_search::store::path_bytes(&hit.path))
                .and_then(|()| out.write_all(b"\n"))
                .map_err(write_error)?;
        }
    } else if args.json {
        for hit in &hits {
            // written by hand to keep the documented key order and a short score
            let path = json!(hit.path.to_string_lossy());
            let bytes = match hit.path.to_str() {
                Some(_) => String::new(),
                // not UTF-8: the exact bytes too, for scripts that must open the file
                None => format!(
                    ", \"path_bytes\": {}",
                    json!(clip_search::store::path_bytes(&hit.path))
                ),
            };
            writeln!(
                out,
                "{{\"rank\": {}, \"score\": {:.6}, \"path\": {path}{bytes}}}",
                hit.rank, hit.score
            )
            .map_err(write_error)?;
        }
    } else {
        if hits.is_empty() {
            eprintln!(
                "no results ({} searchable images in {})",
                searcher.len(),
                path.display()
            );
        }
        for hit in &hits {
            writeln!(
                out,
                "{:>4}  {:.4}  {}",
                hit.rank,
                hit.score,
                hit.path.display()
            )
            .map_err(write_error)?;
        }
    }
    Ok(())
}

/// `clip serve` arguments.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The index file (default: index.sqlite3 in your data directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The model (default: the one the index was built with).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free one. Anything but loopback lets other machines
    /// search your images and see their thumbnails.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Embedding requests allowed to wait for the model (more get 429 Too Many Requests).
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Requests handled at once, of every kind (more get 429 Too Many Requests).
    #[arg(long, default_value_t = 64)]
    pub max_requests: usize,
    /// Seconds a client has to send a request's body (a slower one gets 408 Request Timeout).
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout: f64,
    /// Largest request body in MiB (an uploaded image travels as base64: 4/3 of its size).
    #[arg(long, default_value_t = 16)]
    pub max_body_mib: usize,
}

/// `clip serve`.
pub fn serve<B: Backend>(device: &B::Device, args: &ServeArgs) -> Result<(), CliError> {
    let (path, index) = open_existing(&args.db)?;
    let (clip, model) = checked_model::<B>(&index, args.model.as_deref(), device)?;
    if !args.addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {}: anyone who can reach this machine can search your images and \
             see their thumbnails",
            args.addr
        );
    }
    let images = index.counts()?.searchable;
    let options = clip_search::server::ServeOptions {
        addr: args.addr,
        queue: args.queue.max(1),
        max_body: args.max_body_mib.max(1) << 20,
        max_requests: args.max_requests.max(1),
        body_timeout: std::time::Duration::from_secs_f64(args.body_timeout.clamp(0.001, 86_400.0)),
        ..Default::default()
    };
    clip_search::server::serve(index, clip, model, device.clone(), options, |addr| {
        println!(
            "serving {} ({images} images) at http://{addr}/ — Ctrl-C stops",
            path.display()
        );
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
