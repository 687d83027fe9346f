//! The daemon's endpoints: `/metrics`, `/healthz`, `/readyz`,
//! `/api/v1/histograms` (serialized histograms), `/api/v1/window` (the
//! window document the hub pulls), `/api/v1/findings` and `/api/v1/targets`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::export::prometheus::Metrics;
use crate::model::Dims;
use crate::stats::{Retention, Stats};

/// What the endpoints read.
#[derive(Clone)]
pub struct ApiState {
    pub source_node: Arc<str>,
    pub source_kind: crate::model::SourceKind,
    /// How far back `/api/v1/window` reaches: the detector's window.
    pub window: Duration,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<Stats>,
    /// `[ui] trace_url`, for the page.
    pub trace_url: Option<String>,
    /// This node's labels (`TAILPROBE_NODE_LABELS`), for the page and the
    /// hub.
    pub node_labels: BTreeMap<String, String>,
    /// Set once probing has started.
    pub ready: Arc<AtomicBool>,
    /// The detector's latest verdict.
    pub verdict: Arc<std::sync::RwLock<FindingsDoc>>,
    /// What is being probed now: configured and discovered targets (the
    /// daemon's targets channel).
    pub targets: tokio::sync::watch::Receiver<crate::model::TargetList>,
    /// When set, every endpoint but the health checks wants
    /// `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    /// Runs one fresh round over the prober's current targets, `samples`
    /// probes each (`POST /api/v1/round`); one at a time.
    pub round: Option<RoundFn>,
    pub round_busy: Arc<tokio::sync::Mutex<()>>,
}

/// A fresh one-shot round: `samples` probes per current target, returned as
/// a window document.
pub type RoundFn = Arc<
    dyn Fn(u32) -> futures::future::BoxFuture<'static, crate::wire::window::WindowDoc>
        + Send
        + Sync,
>;

/// The most probes per target one requested round may take: a round is a
/// check, not a load test.
pub const MAX_ROUND_SAMPLES: u32 = 20;

pub use crate::wire::findings::{FindingsDoc, TargetDoc};

pub fn router(state: ApiState) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/histograms", get(histograms))
        .route("/api/v1/findings", get(findings))
        .route("/api/v1/window", get(window))
        .route("/api/v1/matrix", get(super::page::matrix))
        .route("/api/v1/round", axum::routing::post(round))
        .route(
            "/api/v1/targets",
            get(|State(s): State<ApiState>| async move {
                let docs: Vec<TargetDoc> = s
                    .targets
                    .borrow()
                    .iter()
                    .map(|t| TargetDoc::from(t.as_ref()))
                    .collect();
                axum::Json(docs)
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), bearer));
    // Liveness and readiness stay open: the kubelet carries no token.
    // The page itself holds no data: it asks for the token when the API
    // wants one.
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(super::page::page))
        .merge(guarded)
        .with_state(state)
}

/// Lets a request through when no token is configured, or when it carries
/// the token (compared in constant time).
async fn bearer(
    State(s): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &s.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this endpoint wants Authorization: Bearer <token> ([server] token_file)\n",
        )
            .into_response()
    }
}

async fn metrics(State(s): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    crate::export::exposition::respond(&headers, s.metrics.encode())
}

async fn findings(State(s): State<ApiState>) -> Response {
    let doc = s.verdict.read().unwrap_or_else(|e| e.into_inner()).clone();
    axum::Json(doc).into_response()
}

/// The window document, gzipped when the client accepts it (the hub does).
async fn window(State(s): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let facts = s
        .verdict
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .facts
        .clone();
    let (node, kind, stats, w) = (
        Arc::clone(&s.source_node),
        s.source_kind,
        Arc::clone(&s.stats),
        s.window,
    );
    let labels = s.node_labels.clone();
    // Copying and compressing every series is CPU work: off the runtime's
    // workers, as for the histograms.
    let built = tokio::task::spawn_blocking(move || {
        let mut doc = crate::wire::window::WindowDoc::build(&node, kind, stats.reading(), w, facts);
        doc.labels = labels;
        if gzip {
            doc.to_gzip()
        } else {
            serde_json::to_vec(&doc).expect("a window document always serializes")
        }
    })
    .await;
    match built {
        Ok(body) if gzip => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            body,
        )
            .into_response(),
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the window failed ({e})\n"),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct RoundQuery {
    samples: Option<u32>,
}

/// One fresh round over this prober's current targets, as `cluster matrix`
/// asks for it: its probes only, samples capped, one round at a time (429
/// while one runs). The answer is the round's window document.
async fn round(
    State(s): State<ApiState>,
    Query(q): Query<RoundQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(run) = s.round.clone() else {
        return (StatusCode::NOT_FOUND, "this prober runs no rounds\n").into_response();
    };
    let samples = q.samples.unwrap_or(3);
    if !(1..=MAX_ROUND_SAMPLES).contains(&samples) {
        return (
            StatusCode::BAD_REQUEST,
            format!("samples must be 1 to {MAX_ROUND_SAMPLES}, not {samples}\n"),
        )
            .into_response();
    }
    let Ok(_one) = s.round_busy.try_lock() else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "30")],
            "a round is running on this prober; ask again when it ends\n",
        )
            .into_response();
    };
    let doc = run(samples).await;
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    if gzip {
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            doc.to_gzip(),
        )
            .into_response()
    } else {
        axum::Json(doc).into_response()
    }
}

async fn readyz(State(s): State<ApiState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

#[derive(Debug, Deserialize)]
struct HistogramQuery {
    window: Option<String>,
}

/// One series' histograms on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesHistograms {
    /// `target`, `source_node`, `source_kind`, `destination_node`, `path`.
    #[serde(flatten)]
    pub dims: Dims,
    pub url: String,
    pub samples: u64,
    pub failures: u64,
    pub syn_retransmits: u64,
    /// Phase name to V2 deflate base64.
    pub histograms: std::collections::BTreeMap<String, String>,
}

/// The `/api/v1/histograms` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistogramsDoc {
    pub source_node: String,
    pub generated_at: String,
    /// `cumulative`, or the window's length such as `1m`.
    pub window: String,
    pub series: Vec<SeriesHistograms>,
}

async fn histograms(State(s): State<ApiState>, Query(q): Query<HistogramQuery>) -> Response {
    let window = match q.window.as_deref() {
        None | Some("cumulative") => None,
        Some(w) => match humantime::parse_duration(w) {
            Ok(d) if Retention::DAEMON.max_age.is_some_and(|max| d <= max) => Some(d),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("window \"{w}\" is not \"cumulative\" or a duration up to 10m, such as \"1m\"\n"),
                )
                    .into_response();
            }
        },
    };
    // Copying and encoding every series is CPU work: it runs on the blocking
    // pool, so a burst of readers never takes the runtime's workers from the
    // probes' timers.
    let (node, stats) = (Arc::clone(&s.source_node), Arc::clone(&s.stats));
    match tokio::task::spawn_blocking(move || histograms_doc(&node, &stats, window)).await {
        Ok(doc) => axum::Json(doc).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the histograms failed ({e})\n"),
        )
            .into_response(),
    }
}

/// Builds the document: cumulative, or over the last `window`.
pub fn histograms_doc(source_node: &str, stats: &Stats, window: Option<Duration>) -> HistogramsDoc {
    let now = SystemTime::now();
    // Each series is copied under its own lock only (a memory copy, so a
    // probe recording to it waits microseconds); the deflate encoding runs
    // after every lock is released.
    let mut copies = Vec::new();
    stats.visit(|s| {
        let h = match window {
            None => s.histograms.clone(),
            Some(w) => s.window(now - w),
        };
        let meta = SeriesHistograms {
            dims: s.key.clone(),
            url: s.url.clone(),
            samples: s.samples(),
            failures: s.failures(),
            syn_retransmits: s.syn_retransmits,
            histograms: Default::default(),
        };
        copies.push((meta, h));
    });
    let series = copies
        .into_iter()
        .map(|(mut meta, h)| {
            meta.histograms = crate::stats::Phase::ALL
                .iter()
                // A plain-HTTP series has no TLS phase to show.
                .filter(|p| **p != crate::stats::Phase::Tls || h.tls.is_some())
                .map(|p| (p.as_str().to_string(), h.get(*p).to_base64()))
                .collect();
            meta
        })
        .collect();
    HistogramsDoc {
        source_node: source_node.to_string(),
        generated_at: humantime::format_rfc3339_millis(now).to_string(),
        window: window
            .map(|w| humantime::format_duration(w).to_string())
            .unwrap_or_else(|| "cumulative".into()),
        series,
    }
}
