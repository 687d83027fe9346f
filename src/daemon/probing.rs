//! The probing part: one fixed-rate timeline per target, following the
//! targets channel. A change of targets reaches the known nodes, the
//! schedules, and the stats and metrics of targets no longer probed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::export::Recorder;
use crate::export::prometheus::Metrics;
use crate::model::{Target, TargetList};
use crate::probe::Prober;
use crate::probe::scheduler::Scheduler;
use crate::stats::Stats;

pub(super) struct Probing {
    task: tokio::task::JoinHandle<()>,
}

/// What probing writes to and how.
struct ProbingParts {
    pub prober: Arc<Prober>,
    pub recorder: Arc<Recorder>,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub max_in_flight: usize,
    /// `[probe] enabled`: with probing off, the targets still name passive
    /// destinations and serve requested rounds; no timeline runs.
    pub enabled: bool,
    /// A dropped target's series stay while the detector's window holds
    /// their samples.
    pub window: Duration,
}

impl Probing {
    /// Schedules the current targets before it returns (so the daemon is
    /// probing when it says so), then follows `targets` until `cancel`.
    pub fn start(
        core: &super::Core,
        recorder: Arc<Recorder>,
        mut targets: watch::Receiver<TargetList>,
        cancel: CancellationToken,
    ) -> (Self, usize) {
        let config = &core.loaded.config;
        let parts = ProbingParts {
            prober: Arc::clone(&core.prober),
            recorder,
            stats: Arc::clone(&core.stats),
            metrics: Arc::clone(&core.metrics),
            max_in_flight: config.probe.max_in_flight,
            enabled: config.probe.enabled,
            window: config.detect.window.get(),
        };
        let mut scheduler = Scheduler::new(
            Arc::clone(&parts.prober),
            Arc::clone(&parts.recorder) as _,
            parts.max_in_flight,
            cancel.clone(),
        );
        let enabled = parts.enabled;
        let scheduled = move |all: &[Arc<Target>]| if enabled { all.to_vec() } else { Vec::new() };
        scheduler.sync(&scheduled(&targets.borrow_and_update()));
        let count = scheduler.len();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    changed = targets.changed() => {
                        if changed.is_err() {
                            // No sender left: the targets stay as they are.
                            cancel.cancelled().await;
                            break;
                        }
                        let all = TargetList::clone(&targets.borrow_and_update());
                        follow(&parts, &mut scheduler, &scheduled(&all), &all);
                    }
                }
            }
            scheduler.wait().await;
        });
        (Self { task }, count)
    }

    /// Waits for the probes in flight to end (as `cancelled` once the
    /// token fired) and be recorded.
    pub async fn shutdown(self) {
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "The probing task ended abnormally.");
        }
    }
}

/// Applies a change of targets: `scheduled` are probed, `all` name nodes.
fn follow(
    parts: &ProbingParts,
    scheduler: &mut Scheduler,
    scheduled: &[Arc<Target>],
    all: &[Arc<Target>],
) {
    let p = &parts.prober;
    p.known_nodes.set(&p.source_node, all);
    scheduler.sync(scheduled);
    let probed = |t: &str| all.iter().any(|a| *a.name == *t);
    let forgotten = parts.stats.forget(probed, SystemTime::now() - parts.window);
    let dropped = parts.metrics.retain_targets(probed);
    if dropped > 0 {
        tracing::debug!(
            dropped,
            "Dropped the metric series of targets no longer probed."
        );
    }
    if forgotten > 0 {
        tracing::debug!(forgotten, "Dropped the series of targets no longer probed.");
    }
    tracing::debug!(targets = scheduler.len(), "Schedules follow discovery.");
}
