//! The API part: the endpoints on `[server] listen`, their readiness, and
//! the rounds they may run. It stops last, so a final scrape sees the
//! cancelled probes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Core, DaemonError};
use crate::export::prometheus::Metrics;
use crate::model::TargetList;
use crate::server::api::{self, ApiState};
use crate::wire::findings::FindingsDoc;

pub(super) struct Api {
    pub addr: SocketAddr,
    ready: Arc<AtomicBool>,
    /// The server outlives probing by a moment; it stops on its own token.
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Api {
    /// Binds the listener and serves; not ready until [`Api::ready`].
    pub async fn start(
        core: &Core,
        listen: Option<SocketAddr>,
        verdict: Arc<std::sync::RwLock<FindingsDoc>>,
        targets: watch::Receiver<TargetList>,
        cancel: &CancellationToken,
    ) -> Result<Self, DaemonError> {
        let Core {
            loaded,
            prober,
            stats,
            metrics,
            ..
        } = core;
        let addr = listen.unwrap_or(loaded.config.server.listen);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| crate::server::http::BindError { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let ready = Arc::new(AtomicBool::new(false));
        let state = ApiState {
            source_node: Arc::clone(&prober.source_node),
            source_kind: prober.source_kind,
            window: loaded.config.detect.window.get(),
            metrics: Arc::clone(metrics),
            stats: Arc::clone(stats),
            trace_url: loaded.config.ui.trace_url.clone(),
            node_labels: crate::node::labels_from_env(),
            ready: Arc::clone(&ready),
            verdict,
            targets: targets.clone(),
            token: match &loaded.config.server.token_file {
                Some(path) => Some(crate::server::token::read(path)?),
                None => None,
            },
            round: Some(round_fn(core, targets, cancel.clone())),
            round_busy: Arc::default(),
        };
        let stop = CancellationToken::new();
        let server = tokio::spawn(crate::server::http::serve(
            listener,
            api::router(state),
            crate::server::http::Limits::api(&loaded.config.server),
            server_counters(metrics, "api"),
            stop.clone(),
        ));
        Ok(Self {
            addr,
            ready,
            stop,
            server,
        })
    }

    /// The token the echo target stops on too: it answers until the
    /// endpoints stop, after registration is withdrawn.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// `/readyz` answers ready from now on (`false`: no longer).
    pub fn ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Stops serving, within the server's shutdown grace.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.server.await {
            tracing::warn!(error = %e, "The HTTP server task ended abnormally.");
        }
    }
}

/// A server's counters, registered under its name.
pub(super) fn server_counters(
    metrics: &Metrics,
    server: &str,
) -> crate::server::http::ServerCounters {
    let (refused, cut_at_shutdown) = metrics.server_counters(server);
    crate::server::http::ServerCounters {
        refused,
        cut_at_shutdown,
    }
}

/// `POST /api/v1/round`: one fresh round over the current targets, through
/// the same probe as the schedule (its own stats, so the window is not
/// touched), the node's facts read before and after.
fn round_fn(
    core: &Core,
    current: watch::Receiver<TargetList>,
    cancel: CancellationToken,
) -> api::RoundFn {
    let prober = Arc::clone(&core.prober);
    let mut base = crate::matrix::MatrixOptions::from_loaded(&core.loaded);
    // A requested round's probes are traced as the schedule's are: the
    // findings judged on them link to their traces.
    base.otlp = core.otlp.clone();
    Arc::new(move |samples| {
        let (prober, cancel) = (Arc::clone(&prober), cancel.clone());
        let targets = TargetList::clone(&current.borrow());
        let mut opts = base.clone();
        opts.samples = samples;
        opts.progress = false;
        Box::pin(async move {
            let before = crate::node::gather(&prober.source_node).await;
            let started = std::time::Instant::now();
            let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (_, series) =
                crate::matrix::run_with(Arc::clone(&prober), &targets, &opts, &cancel, &done).await;
            let facts =
                crate::node::with_rise(&before, crate::node::gather(&prober.source_node).await);
            crate::wire::window::WindowDoc::of_round(
                &prober.source_node,
                prober.source_kind,
                &series,
                started.elapsed(),
                Some(facts),
            )
        })
    })
}
