//! The passive part: the node's own connections, read from the kernel by
//! a BPF program on a thread of their own, recorded with the probes.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::export::Recorder;
use crate::model::TargetList;

/// The reader thread; it ends when the daemon's token does.
pub(super) struct Passive(std::thread::JoinHandle<()>);

impl Passive {
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || self.0.join()).await;
    }
}

/// Starts passive mode when `[passive]` turns it on. A node where it cannot
/// load keeps probing: the error is logged and `tailprobe_passive_up`
/// stays 0.
pub(super) fn start(
    core: &super::Core,
    targets: watch::Receiver<TargetList>,
    cancel: &CancellationToken,
) -> Option<Passive> {
    let super::Core {
        loaded,
        prober,
        stats,
        metrics,
        ..
    } = core;
    let cfg = &loaded.config.passive;
    if !cfg.enabled {
        return None;
    }
    if prober.source_kind != crate::model::SourceKind::Host {
        // Its own namespace would read as the host's.
        tracing::error!(
            "Passive mode is off: it runs in the host-network prober (source_kind = \"host\"), which tells the host's connections from the pods'."
        );
        return None;
    }
    // No tracer: a passive connect has no probe to trace.
    let sink = Arc::new(
        Recorder::new(None)
            .with(Arc::clone(stats) as _)
            .with(Arc::clone(metrics) as _),
    );
    let ctx = crate::passive::Context {
        source_node: Arc::clone(&prober.source_node),
        targets,
        sink,
        live: Arc::clone(stats.live()),
        metrics: metrics.passive.clone(),
    };
    match crate::passive::start(cfg, ctx, cancel.clone()) {
        Ok(reader) => Some(Passive(reader)),
        Err(e) => {
            tracing::error!(error = %e, "Passive mode is off.");
            None
        }
    }
}
