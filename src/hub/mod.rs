//! The hub: pulls every prober's window, merges them exactly and judges the
//! cluster as one, so scopes span nodes and every node's facts count.
//! Stateless: the probers hold the data, so a restarted hub loses nothing.
//!
//! - `wire::window`: the window document probers serve and the hub pulls.
//! - [`pull`]: the pulls, and each prober's state (up, stale, unreachable).
//! - [`view`]: the merge and the verdict ([`view::ClusterMatrix`]).
//!
//! Endpoints: `/api/v1/matrix`, `/api/v1/probers`, `/metrics`, `/healthz`,
//! `/readyz` (ready after the first round).

pub mod discover;
pub mod pull;
pub mod table;
pub mod view;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::Loaded;
use pull::{ProberState, Probers, Puller};
use view::ClusterMatrix;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Bind(#[from] crate::server::http::BindError),
    #[error(
        "the hub has no probers to pull; list them in [hub] probers, or add [kubernetes] to find the prober pods"
    )]
    NoProbers,
    #[error(transparent)]
    Kube(#[from] crate::targets::kubernetes::KubeError),
    #[error("cannot build the HTTP client ({0}); this is a bug, please report it")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Token(#[from] crate::server::token::TokenError),
    #[error(transparent)]
    Otlp(#[from] crate::export::otlp::OtlpError),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The hub's own metrics.
struct HubMetrics {
    registry: Registry,
    probers: Family<StateLabel, Gauge>,
    pulled_bytes: Counter,
    rounds: Counter,
    round_seconds: Gauge<f64, AtomicU64>,
    findings: crate::export::prometheus::FindingsMetrics,
}

impl HubMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tailprobe_hub");
        let probers = Family::<StateLabel, Gauge>::default();
        registry.register(
            "probers",
            "Probers by state: up, stale (last data still judged), unreachable",
            probers.clone(),
        );
        let pulled_bytes = Counter::default();
        registry.register(
            "pulled_bytes",
            "Window documents pulled, bytes on the wire",
            pulled_bytes.clone(),
        );
        let rounds = Counter::default();
        registry.register("rounds", "Rounds of pulling and judging", rounds.clone());
        let round_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "round_seconds",
            "How long the last round took (pull, merge, judge)",
            round_seconds.clone(),
        );
        let findings = crate::export::prometheus::FindingsMetrics::register(
            &mut registry,
            "Cluster findings now (1 while raised), by kind, scope, first cause and where the trouble lies (network, backend, dns, prober)",
        );
        Self {
            registry,
            probers,
            pulled_bytes,
            rounds,
            round_seconds,
            findings,
        }
    }
}

#[derive(Clone)]
struct HubState {
    probers: Arc<Mutex<Probers>>,
    matrix: Arc<RwLock<ClusterMatrix>>,
    metrics: Arc<HubMetrics>,
    ready: Arc<AtomicBool>,
}

fn router(state: HubState) -> Router {
    Router::new()
        .route("/", get(crate::server::page::page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<HubState>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "before the first round\n")
                }
            }),
        )
        .route(
            "/api/v1/matrix",
            get(|State(s): State<HubState>| async move {
                axum::Json(s.matrix.read().unwrap_or_else(|e| e.into_inner()).clone())
            }),
        )
        .route(
            "/api/v1/probers",
            get(|State(s): State<HubState>| async move {
                axum::Json(
                    s.probers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .statuses(),
                )
            }),
        )
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(s): State<HubState>, headers: axum::http::HeaderMap) -> Response {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &s.metrics.registry)
        .expect("writing to a String cannot fail");
    crate::export::exposition::respond(&headers, out)
}

/// One round: pull every prober, then merge and judge what is held.
pub async fn round(
    puller: &Puller,
    urls: &[String],
    probers: &Mutex<Probers>,
    loaded: &Loaded,
) -> ClusterMatrix {
    ask_and_judge(puller, urls, pull::Ask::Window, probers, loaded, |_| {}).await
}

/// Asks every prober (`ask`), then merges and judges what is held.
pub async fn ask_and_judge(
    puller: &Puller,
    urls: &[String],
    ask: pull::Ask,
    probers: &Mutex<Probers>,
    loaded: &Loaded,
    answered: impl Fn(&Result<(crate::wire::window::WindowDoc, u64), pull::PullError>),
) -> ClusterMatrix {
    let forget = loaded.config.hub.forget_after.get();
    probers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(urls);
    puller.ask_all(urls, ask, probers, forget, answered).await;
    let (docs, counts, stale) = {
        let p = probers.lock().unwrap_or_else(|e| e.into_inner());
        let stale: Vec<String> = p
            .statuses()
            .into_iter()
            .filter(|s| s.state == ProberState::Stale)
            .map(|s| match (&s.source_node, s.source_kind) {
                (Some(n), Some(k)) => format!("{n} {}", k.as_str()),
                _ => s.url.clone(),
            })
            .collect();
        (p.docs(), p.counts(), stale)
    };
    let cfg = loaded.config.detect.detector();
    // Merging and judging is CPU work: off the runtime's workers.
    tokio::task::spawn_blocking(move || {
        view::judge(&docs, &counts, &stale, &cfg, SystemTime::now())
    })
    .await
    .unwrap_or_else(|e| ClusterMatrix {
        rests_on: format!("the judge failed ({e}); this is a bug, please report it"),
        ..ClusterMatrix::default()
    })
}

/// Runs the hub until `cancel` fires.
pub async fn run(
    loaded: Loaded,
    listen: Option<SocketAddr>,
    cancel: CancellationToken,
) -> Result<(), HubError> {
    let hub = &loaded.config.hub;
    // A static list, else the prober pods of the hub's namespace.
    let pods = match (&loaded.config.kubernetes, hub.probers.is_empty()) {
        (_, false) => None,
        (Some(k), true) => {
            let client = crate::targets::kubernetes::client().await?;
            let ns = k.namespace();
            tracing::info!(namespace = %ns, selector = %k.prober_selector, "Finding the probers in Kubernetes.");
            Some(discover::start(
                client,
                &ns,
                &k.prober_selector,
                cancel.clone(),
            ))
        }
        (None, true) => return Err(HubError::NoProbers),
    };
    let token = match &hub.token_file {
        Some(p) => Some(crate::server::token::read(p)?),
        None => None,
    };
    let puller = Puller::new(hub, token)?;
    let addr = listen.unwrap_or(loaded.config.server.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::server::http::BindError { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let state = HubState {
        probers: Arc::default(),
        matrix: Arc::default(),
        metrics: Arc::new(HubMetrics::new()),
        ready: Arc::default(),
    };
    // Cluster findings go out as alert records, said to come from the hub.
    let otlp = crate::export::otlp::Otlp::start(
        loaded.config.otlp.as_ref(),
        "tailprobe-hub",
        crate::model::SynSchedule::classic(),
        Default::default(),
    )?
    .map(Arc::new);
    let mut alerter = crate::export::alerts::Alerter::new(
        otlp.as_ref()
            .map(|o| o.alert_resend())
            .unwrap_or(std::time::Duration::from_secs(600)),
    );
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(crate::server::http::serve(
        listener,
        router(state.clone()),
        crate::server::http::Limits::api(&loaded.config.server),
        Default::default(),
        server_stop.clone(),
    ));
    tracing::info!(listen = %bound, "Hub started.");
    let mut tick = tokio::time::interval(hub.interval.get());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        let urls = match &pods {
            Some(store) => discover::urls(&store.state()),
            None => hub.probers.clone(),
        };
        let m = tokio::select! {
            _ = cancel.cancelled() => break,
            m = round(&puller, &urls, &state.probers, &loaded) => m,
        };
        let metrics = &state.metrics;
        metrics.rounds.inc();
        metrics.round_seconds.set(started.elapsed().as_secs_f64());
        metrics.pulled_bytes.inc_by(pulled(&state.probers));
        for (s, n) in &m.probers {
            metrics
                .probers
                .get_or_create(&StateLabel { state: s.clone() })
                .set(*n as i64);
        }
        metrics.findings.set(&m.findings);
        tracing::debug!(findings = m.findings.len(), rests_on = %m.rests_on, took = ?started.elapsed(), "Cluster judged.");
        let conditions = m
            .findings
            .iter()
            .map(|f| crate::export::alerts::finding(f, crate::export::alerts::Source::Hub))
            .collect();
        for a in alerter.update(Instant::now(), conditions) {
            if a.phase == crate::export::alerts::Phase::Raised {
                tracing::warn!(finding = %a.condition.summary, "Cluster finding raised.");
            }
            if let Some(o) = &otlp {
                o.send(&a);
            }
        }
        let mut m = m;
        m.trace_url = loaded.config.ui.trace_url.clone();
        *state.matrix.write().unwrap_or_else(|e| e.into_inner()) = m;
        state.ready.store(true, Ordering::Relaxed);
    }
    if let Some(o) = otlp {
        let _ = tokio::task::spawn_blocking(move || o.shutdown()).await;
    }
    server_stop.cancel();
    let _ = server.await;
    Ok(())
}

/// What the round pulled: the documents of the probers that answered.
fn pulled(probers: &Mutex<Probers>) -> u64 {
    probers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .statuses()
        .iter()
        .filter(|s| s.state == ProberState::Up)
        .map(|s| s.bytes)
        .sum()
}
