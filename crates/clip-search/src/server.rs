//! `clip serve`: a JSON API and one embedded web page over an index.
//!
//! One thread owns the model and runs every embedding, fed by a bounded queue: a request that finds
//! the queue full gets `429` at once instead of waiting without end, and work whose client has gone
//! is dropped unrun. What one request may cost is bounded ([`ServeOptions`]): its body's size and the
//! time to send it, the pixels of an image, the results it asks for; and so is what all of them may
//! cost together: requests in flight (more get `429`), images decoded at once, cached thumbnails.
//! Searches score the vectors on tokio's blocking pool; the vectors are reloaded when another process
//! (`clip index`) has committed to the database since. Every error is JSON, `{"error": "..."}`, with a 4xx status for bad input.
//! Thumbnails are served by row id only, so a client can never name a file the index does not hold.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /` | | the web page |
//! | `GET /api/status` | | `{"images", "model", "dim", "db", "approximate"}` |
//! | `POST /api/search` | `{"query": "a blue bag - 0.5:dark"}`, `{"image": BASE64}` or `{"id": 7}`; `"k"`, `"min_score"` | `{"results": [{"rank", "score", "id", "path"}], "took_ms"}` |
//! | `POST /api/classify` | `{"image": BASE64, "labels": [...], "templates": "simple" or [...]}` | `{"labels": [{"label", "probability"}]}`, best first |
//! | `GET /api/thumb/{id}` | | a JPEG at most 256 px on a side |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use burn::tensor::backend::Backend;
use clip::zeroshot::Templates;
use clip::Pretrained;
use image::RgbImage;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::indexer::unit_rows;
use crate::query::{parse_text, Term};
use crate::search::Searcher;
use crate::store::{Index, ModelInfo};
use crate::SearchError;

const PAGE: &str = include_str!("server/page.html");

/// Limits and address of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where to listen (loopback by default: the index shows your files to whoever connects).
    pub addr: SocketAddr,
    /// Embedding requests allowed to wait for the model; more get `429`.
    pub queue: usize,
    /// Largest request body, in bytes (a base64 image is 4/3 of the file).
    pub max_body: usize,
    /// Largest image accepted, in pixels (width × height, read from the header before decoding).
    pub max_pixels: u64,
    /// Most results a search may ask for.
    pub max_results: usize,
    /// Requests handled at once; more get `429` (with `Retry-After`). With `max_body`, this bounds the
    /// memory request bodies can take.
    pub max_requests: usize,
    /// Time a client has to send a request's body; a slower one gets `408`.
    pub body_timeout: std::time::Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            queue: 16,
            max_body: 16 << 20,
            max_pixels: 64_000_000,
            max_results: 500,
            max_requests: 64,
            body_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// An error answered as `{"error": message}` with its status.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::BadQuery { .. } | SearchError::Clip(clip::ClipError::Image(_)) => {
                Self::bad(e.to_string())
            }
            e => Self(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// `Json<T>` whose rejections (bad JSON, unknown fields, wrong content type, too large) are JSON
/// errors too.
struct ApiJson<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequest<Shared> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Shared) -> Result<Self, Self::Rejection> {
        // the body is read here: a client that sends it slowly, or stops, is cut off in time
        let read = Json::<T>::from_request(req, app);
        match tokio::time::timeout(app.options.body_timeout, read).await {
            Ok(Ok(Json(value))) => Ok(Self(value)),
            Ok(Err(rejection)) => Err(rejection_error(rejection)),
            Err(_) => Err(ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body took longer than {} s to arrive",
                    app.options.body_timeout.as_secs_f64()
                ),
            )),
        }
    }
}

fn rejection_error(rejection: JsonRejection) -> ApiError {
    ApiError(rejection.status(), rejection.body_text())
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// Work for the model's thread.
enum Work {
    Query(Vec<Term>, Reply<Vec<f32>>),
    Image(Box<RgbImage>, Reply<Vec<f32>>),
    Classify {
        image: Box<RgbImage>,
        labels: Vec<String>,
        templates: Templates,
        reply: Reply<Vec<(String, f32)>>,
    },
}

/// The model's thread: takes work off the queue until every sender is gone.
fn encoder<B: Backend>(
    clip: Pretrained<B>,
    device: B::Device,
    queue: std::sync::mpsc::Receiver<Work>,
) {
    // the last classifier, reused while the labels and templates stay the same (a page classifying
    // several images against one list)
    let mut cached: Option<(
        Vec<String>,
        Templates,
        clip::zeroshot::ZeroShotClassifier<B>,
    )> = None;
    let embed_image = |image: &RgbImage| -> Result<_, SearchError> {
        Ok(clip.embed_images(std::slice::from_ref(image), &device)?)
    };
    let first = |rows: Vec<Vec<f32>>| rows.into_iter().next().unwrap_or_default();
    for work in queue {
        // a client that went away while its work waited (disconnected, timed out) costs no encoding
        let gone = match &work {
            Work::Query(_, reply) | Work::Image(_, reply) => reply.is_closed(),
            Work::Classify { reply, .. } => reply.is_closed(),
        };
        if gone {
            continue;
        }
        match work {
            Work::Query(terms, reply) => {
                let _ = reply.send(
                    crate::search::query_vector(&clip, &terms, &device).map_err(ApiError::from),
                );
            }
            Work::Image(image, reply) => {
                let result = embed_image(&image).and_then(unit_rows).map(first);
                let _ = reply.send(result.map_err(ApiError::from));
            }
            Work::Classify {
                image,
                labels,
                templates,
                reply,
            } => {
                let result = (|| -> Result<Vec<(String, f32)>, SearchError> {
                    if !matches!(&cached, Some((l, t, _)) if *l == labels && *t == templates) {
                        let built =
                            clip.zero_shot_classifier(&labels, &templates, &device, |_| ())?;
                        cached = Some((labels.clone(), templates.clone(), built));
                    }
                    let Some((_, _, classifier)) = &cached else {
                        return Ok(Vec::new());
                    };
                    // SigLIP: sigmoid per label with the model's scale and bias; CLIP: softmax
                    let scoring = clip.model.zero_shot_scoring(clip::zeroshot::DEFAULT_SCALE);
                    let ranked = classifier.ranked_by(embed_image(&image)?, scoring);
                    Ok(ranked
                        .into_iter()
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(i, p)| (labels[i].clone(), p))
                        .collect())
                })();
                let _ = reply.send(result.map_err(ApiError::from));
            }
        }
    }
}

/// What the handlers share.
struct App {
    queue: SyncSender<Work>,
    index: Mutex<Index>,
    vectors: RwLock<(i64, Arc<Searcher>)>,
    model: ModelInfo,
    db: PathBuf,
    options: ServeOptions,
    thumbs: Mutex<HashMap<i64, Bytes>>,
    /// One permit per request being handled ([`ServeOptions::max_requests`]).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// One permit per image being decoded: at most one per core at once, whatever the requests.
    decoding: tokio::sync::Semaphore,
}

/// Thumbnails kept in memory (each at most 256 px on a side, a few tens of KB).
const THUMB_CACHE: usize = 4096;

type Shared = Arc<App>;

impl App {
    /// Sends work to the model and waits for its answer; `429` when the queue is full.
    async fn ask<T>(&self, work: impl FnOnce(Reply<T>) -> Work) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        match self.queue.try_send(work(tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "busy: {} requests are waiting for the model; try again shortly",
                        self.options.queue
                    ),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the model has stopped".into(),
                ))
            }
        }
        rx.await.map_err(|_| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model has stopped".into(),
            )
        })?
    }

    /// Decodes an uploaded image on the blocking pool, as many at once as there are cores.
    async fn decode(&self, base64: String) -> Result<RgbImage, ApiError> {
        let _permit = self.decoding.acquire().await.map_err(|_| poisoned())?;
        let max = self.options.max_pixels;
        blocking(move || decode_upload(&base64, max)).await
    }

    /// The vectors (or the approximate index), reloaded first when the database changed since they
    /// were read.
    fn vectors(&self) -> Result<Arc<Searcher>, ApiError> {
        let index = self.index.lock().map_err(|_| poisoned())?;
        let version = index.data_version()?;
        if let Ok(current) = self.vectors.read() {
            if current.0 == version {
                return Ok(current.1.clone());
            }
        }
        let fresh = Arc::new(Searcher::load(&index, self.model.dim, false)?);
        if let Ok(mut slot) = self.vectors.write() {
            *slot = (version, fresh.clone());
        }
        if let Ok(mut thumbs) = self.thumbs.lock() {
            thumbs.clear(); // ids may now name other files
        }
        Ok(fresh)
    }
}

fn poisoned() -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "a request failed while holding the index".into(),
    )
}

/// Decodes a base64 image (optionally a `data:` URL), checking its size from the header first.
fn decode_upload(text: &str, max_pixels: u64) -> Result<RgbImage, ApiError> {
    let data = text.split_once(";base64,").map_or(text, |(_, d)| d);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::bad(format!("image: not base64 ({e})")))?;
    let name = Path::new("the uploaded image");
    let limits = clip::data::ImageLimits {
        max_pixels,
        ..Default::default()
    };
    // the size is checked from the header before any pixel is decoded
    clip::data::decode_rgb_within(&bytes, name, &limits).map_err(|e| match e {
        clip::data::ImageError::TooLarge { .. } => {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        e => ApiError::bad(e.to_string()),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: Option<String>,
    image: Option<String>,
    id: Option<i64>,
    k: Option<usize>,
    min_score: Option<f32>,
}

async fn search(
    State(app): State<Shared>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<Value>, ApiError> {
    let start = Instant::now();
    let k = request.k.unwrap_or(20);
    if k == 0 || k > app.options.max_results {
        return Err(ApiError::bad(format!(
            "k must be 1 to {}",
            app.options.max_results
        )));
    }
    let (query, exclude) = match (request.query, request.image, request.id) {
        (Some(text), None, None) => {
            if text.chars().count() > 1000 {
                return Err(ApiError::bad("query: longer than 1000 characters"));
            }
            let terms = parse_text(&text)?;
            (app.ask(|reply| Work::Query(terms, reply)).await?, None)
        }
        (None, Some(image), None) => {
            let image = app.decode(image).await?;
            (
                app.ask(|reply| Work::Image(Box::new(image), reply)).await?,
                None,
            )
        }
        (None, None, Some(id)) => {
            let index = app.index.lock().map_err(|_| poisoned())?;
            let (_, vector) = index.row_by_id(id)?.ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no image with id {id} in the index"),
                )
            })?;
            (vector, Some(id))
        }
        _ => return Err(ApiError::bad("give exactly one of query, image or id")),
    };
    let min_score = request.min_score.unwrap_or(-1.0);
    let app2 = app.clone();
    let hits = blocking(move || {
        let vectors = app2.vectors()?;
        let index = app2.index.lock().map_err(|_| poisoned())?;
        Ok(crate::search::search(
            &index, &vectors, &query, k, min_score, exclude,
        )?)
    })
    .await?;
    let results: Vec<Value> = hits
        .iter()
        .map(|h| json!({"rank": h.rank, "score": h.score, "id": h.id, "path": h.path.to_string_lossy()}))
        .collect();
    Ok(Json(
        json!({"results": results, "took_ms": start.elapsed().as_secs_f64() * 1000.0}),
    ))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TemplateChoice {
    Named(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    image: String,
    labels: Vec<String>,
    templates: Option<TemplateChoice>,
}

async fn classify(
    State(app): State<Shared>,
    ApiJson(request): ApiJson<ClassifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let labels: Vec<String> = request
        .labels
        .iter()
        .map(|l| l.trim().to_string())
        .collect();
    if labels.is_empty()
        || labels
            .iter()
            .any(|l| l.is_empty() || l.chars().count() > 200)
    {
        return Err(ApiError::bad(
            "labels: give 1 to 200 non-empty labels of at most 200 characters",
        ));
    }
    let templates = match request.templates {
        None => Templates::simple(),
        Some(TemplateChoice::Named(name)) => match name.as_str() {
            "imagenet" => Templates::imagenet(),
            "simple" => Templates::simple(),
            "cifar" => Templates::cifar(),
            "none" => Templates::none(),
            other => {
                return Err(ApiError::bad(format!(
                    "templates: unknown set {other:?} (imagenet, simple, cifar, none, or a list)"
                )))
            }
        },
        Some(TemplateChoice::List(list)) => Templates::parse(&list.join("\n"), "the request")
            .map_err(|e| ApiError::bad(format!("templates: {e}")))?,
    };
    if labels.len() > 200 || labels.len() * templates.templates.len() > 4000 {
        return Err(ApiError::bad(
            "at most 200 labels and 4000 prompts (labels × templates)",
        ));
    }
    let image = app.decode(request.image).await?;
    let ranked = app
        .ask(|reply| Work::Classify {
            image: Box::new(image),
            labels,
            templates,
            reply,
        })
        .await?;
    let labels: Vec<Value> = ranked
        .iter()
        .map(|(label, p)| json!({"label": label, "probability": p}))
        .collect();
    Ok(Json(json!({ "labels": labels })))
}

async fn thumb(State(app): State<Shared>, UrlPath(id): UrlPath<i64>) -> Result<Response, ApiError> {
    let cached = app.thumbs.lock().map_err(|_| poisoned())?.get(&id).cloned();
    let jpeg = match cached {
        Some(jpeg) => jpeg,
        None => {
            let app2 = app.clone();
            let jpeg = blocking(move || {
                let path = {
                    let index = app2.index.lock().map_err(|_| poisoned())?;
                    index.row_by_id(id)?.map(|(path, _)| path)
                };
                let path = path.ok_or_else(|| {
                    ApiError(
                        StatusCode::NOT_FOUND,
                        format!("no image with id {id} in the index"),
                    )
                })?;
                let image = clip::data::load_rgb(&path)
                    .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
                let (w, h) = image.dimensions();
                let scale = (256.0 / w.max(h) as f32).min(1.0);
                let side = |v: u32| ((v as f32 * scale).round() as u32).max(1);
                let small = image::imageops::thumbnail(&image, side(w), side(h));
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
                    .encode_image(&small)
                    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                Ok(Bytes::from(out))
            })
            .await?;
            let mut thumbs = app.thumbs.lock().map_err(|_| poisoned())?;
            if thumbs.len() >= THUMB_CACHE {
                thumbs.clear(); // bounded memory; thumbnails are cheap to make again
            }
            thumbs.insert(id, jpeg.clone());
            jpeg
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        jpeg,
    )
        .into_response())
}

async fn status(State(app): State<Shared>) -> Result<Json<Value>, ApiError> {
    let app2 = app.clone();
    let (images, approximate) = blocking(move || {
        let searcher = app2.vectors()?;
        Ok((searcher.len(), searcher.is_approximate()))
    })
    .await?;
    Ok(Json(json!({
        "images": images, "model": app.model.name, "dim": app.model.dim, "db": app.db.to_string_lossy(),
        "approximate": approximate,
    })))
}

async fn page() -> impl IntoResponse {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        )],
        Html(PAGE),
    )
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such route (see /api/status, /api/search, /api/classify, /api/thumb/ID)".into(),
    )
}

/// The router over an index and a model thread (what [`serve`] listens with).
fn router(app: Shared) -> Router {
    let max_body = app.options.max_body;
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/search", post(search))
        .route("/api/classify", post(classify))
        .route("/api/thumb/{id}", get(thumb))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limit_in_flight,
        ))
        .with_state(app)
}

/// Answers `429` when [`ServeOptions::max_requests`] requests are already being handled.
async fn limit_in_flight(
    State(app): State<Shared>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    match app.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "busy: {} requests are being handled; try again shortly",
                app.options.max_requests
            ),
        )
        .into_response(),
    }
}

/// Serves `index` with `clip` (whose [`crate::model_info`] is `model`, already checked against the
/// index) until Ctrl-C. `ready` is called with the bound address once the server listens.
pub fn serve<B: Backend>(
    index: Index,
    clip: Pretrained<B>,
    model: ModelInfo,
    device: B::Device,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), SearchError> {
    let io = |source| SearchError::Io {
        path: PathBuf::from(options.addr.to_string()),
        source,
    };
    let (queue, work) = sync_channel(options.queue.max(1));
    let encoder_thread = std::thread::Builder::new()
        .name("clip-model".into())
        .spawn(move || encoder(clip, device, work))
        .map_err(io)?;
    let version = index.data_version()?;
    let vectors = Arc::new(Searcher::load(&index, model.dim, false)?);
    let app = Arc::new(App {
        queue,
        db: index.path().to_path_buf(),
        index: Mutex::new(index),
        vectors: RwLock::new((version, vectors)),
        model,
        options: options.clone(),
        thumbs: Mutex::new(HashMap::new()),
        in_flight: Arc::new(tokio::sync::Semaphore::new(options.max_requests.max(1))),
        decoding: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(io)?;
        ready(listener.local_addr().map_err(io)?);
        axum::serve(listener, router(app))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(io)
    })?;
    drop(encoder_thread);
    Ok(())
}
