//! `tailprobe run`: probe continuously, serve the endpoints, stop cleanly.
//! The daemon is five parts, each started with what it owns and stopped in
//! turn: the API (`api.rs`), probing (`probing.rs`), passive mode
//! (`passive.rs`), Kubernetes (`kube.rs`) and the judge (`judge.rs`). The
//! targets of the moment travel on one watch channel: Kubernetes sends,
//! the others subscribe. On cancellation, in-flight probes end as
//! `cancelled` and are counted before the server stops.

mod api;
mod judge;
mod kube;
mod passive;
mod probing;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Loaded;
use crate::export::prometheus::Metrics;
use crate::export::{Recorder, SloExporter};
use crate::probe::Prober;
use crate::stats::{Retention, Stats};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Bind(#[from] crate::server::http::BindError),
    #[error(transparent)]
    Otlp(#[from] crate::export::otlp::OtlpError),
    #[error(transparent)]
    OpenFiles(#[from] crate::probe::limits::FdLimitError),
    #[error(transparent)]
    Token(#[from] crate::server::token::TokenError),
    #[error(transparent)]
    Kube(#[from] crate::targets::kubernetes::KubeError),
    #[error(
        "cannot listen on {addr} for the echo target ({source}); pick a free port with [kubernetes] echo_listen"
    )]
    EchoBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the parts share, built once by [`run`]: each part takes from it
/// what it uses.
struct Core {
    loaded: Loaded,
    prober: Arc<Prober>,
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
    otlp: Option<Arc<crate::export::otlp::Otlp>>,
}

/// Runs until `cancel` fires. `bound` (if given) receives the bound address.
pub async fn run(
    loaded: Loaded,
    listen: Option<SocketAddr>,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), DaemonError> {
    let files = crate::probe::limits::raise_open_files(loaded.config.probe.max_in_flight)?;
    tracing::debug!(open_files = files, "Open-files limit raised.");
    let prober = Arc::new(Prober::from_loaded(&loaded));
    let stats = Arc::new(Stats::with_live(
        Retention {
            max_age: Some(loaded.config.detect.window.get()),
            ..Retention::DAEMON
        },
        Arc::clone(&prober.live),
    ));
    let metrics = Arc::new(Metrics::new(
        Arc::clone(stats.live()),
        &loaded.config.metrics,
    ));
    let facts = crate::node::gather(&prober.source_node).await;
    let otlp = crate::export::otlp::Otlp::start(
        loaded.config.otlp.as_ref(),
        &prober.source_node,
        facts.syn_schedule(),
        metrics.otlp.clone(),
    )?
    .map(Arc::new);
    let slo = Arc::new(SloExporter {
        tracker: Arc::new(std::sync::Mutex::new(crate::slo::Tracker::new(
            &loaded.config.slos,
        ))),
        metrics: Arc::clone(&metrics),
        epoch: std::time::Instant::now(),
    });
    let (slos, epoch) = (Arc::clone(&slo.tracker), slo.epoch);
    let recorder = Arc::new(
        Recorder::new(otlp.clone())
            .with(Arc::clone(&stats) as _)
            .with(Arc::clone(&metrics) as _)
            .with(slo),
    );
    let verdict = Arc::new(std::sync::RwLock::new(crate::wire::findings::FindingsDoc {
        source_node: prober.source_node.to_string(),
        ..Default::default()
    }));
    let (targets, _) = watch::channel(Arc::new(loaded.targets.clone()));
    let core = Core {
        loaded,
        prober: Arc::clone(&prober),
        stats: Arc::clone(&stats),
        metrics: Arc::clone(&metrics),
        otlp: otlp.clone(),
    };
    let api = api::Api::start(
        &core,
        listen,
        Arc::clone(&verdict),
        targets.subscribe(),
        &cancel,
    )
    .await?;
    let (probing, scheduled) =
        probing::Probing::start(&core, recorder, targets.subscribe(), cancel.clone());
    let passive = passive::start(&core, targets.subscribe(), &cancel);
    let kube = match &core.loaded.config.kubernetes {
        Some(k) => Some(kube::Kube::start(&core, k, targets, &cancel, api.stop_token()).await?),
        None => None,
    };
    let judge = judge::Judge {
        stats: Arc::clone(&stats),
        metrics: Arc::clone(&metrics),
        verdict,
        slos,
        epoch,
        otlp: otlp.clone(),
        cfg: core.loaded.config.detect.clone(),
        kind: prober.source_kind,
    }
    .start(cancel.clone());
    api.ready(true);
    tracing::info!(
        addr = %api.addr,
        node = %prober.source_node,
        source_kind = prober.source_kind.as_str(),
        targets = scheduled,
        "Probing."
    );
    if let Some(tx) = bound {
        let _ = tx.send(api.addr);
    }
    cancel.cancelled().await;
    api.ready(false);
    if let Some(k) = kube {
        k.shutdown().await;
    }
    probing.shutdown().await;
    if let Some(p) = passive {
        p.shutdown().await;
    }
    let _ = judge.await;
    let cancelled = stats.count(crate::model::Outcome::Cancelled);
    // Flush what probing exported before the servers drain, so a client
    // holding a connection open cannot delay the flush.
    if let Some(o) = otlp {
        let _ = tokio::task::spawn_blocking(move || o.shutdown()).await;
    }
    api.shutdown().await;
    tracing::info!(cancelled_probes = cancelled, "Stopped.");
    Ok(())
}
