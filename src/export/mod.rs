//! Where numbers leave the process: the stats a reader copies, Prometheus
//! text, OTLP traces, metrics and alert records, the matrix report. Every
//! probe of every driver arrives through [`Recorder`], and exporting never
//! blocks probing: the fan-out only touches memory and bounded queues.

pub mod alerts;
pub mod exposition;
pub mod otlp;
pub mod page;
pub mod prometheus;
pub mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::model::{ProbeResult, Target, TraceRef};
use crate::probe::scheduler::{Sink, SkipReason};
use crate::ratelimit::RateLimit;
use crate::stats::Stats;

/// Where a finished probe goes. Implementations must be quick and never
/// block on I/O: they run on the probe's task.
pub trait Exporter: Send + Sync {
    /// One finished probe, with the trace it was exported as, if any.
    fn record(&self, r: &ProbeResult, trace: Option<&TraceRef>);
    /// One probe that was not started.
    fn skipped(&self, _target: &Target, _reason: SkipReason) {}
}

/// The one fan-out every driver (daemon, matrix, lab) records through: the
/// OTLP tracer first (its trace id is what the others keep as an example),
/// then every exporter in the order added.
pub struct Recorder {
    tracer: Option<Arc<otlp::Otlp>>,
    exporters: Vec<Arc<dyn Exporter>>,
    skip_log: RateLimit,
}

impl Recorder {
    /// A fan-out that traces through `otlp` when it is configured; its
    /// metrics are recorded too.
    pub fn new(otlp: Option<Arc<otlp::Otlp>>) -> Self {
        let mut r = Self {
            tracer: otlp.clone(),
            exporters: Vec::new(),
            skip_log: RateLimit::new(10),
        };
        if let Some(o) = otlp {
            r.exporters.push(o);
        }
        r
    }

    /// Adds an exporter.
    pub fn with(mut self, e: Arc<dyn Exporter>) -> Self {
        self.exporters.push(e);
        self
    }
}

/// Ends a one-shot run's export: its findings go out as alert records,
/// raised at the end of the run with their example trace ids, then
/// everything queued is flushed. Without OTLP there is nothing to do.
pub async fn finish_one_shot(otlp: Option<Arc<otlp::Otlp>>, findings: &[crate::detect::Finding]) {
    let Some(o) = otlp else { return };
    for a in alerts::raised(findings) {
        o.send(&a);
    }
    let _ = tokio::task::spawn_blocking(move || o.shutdown()).await;
}

impl Sink for Recorder {
    fn record(&self, r: &ProbeResult) {
        let trace = self.tracer.as_ref().and_then(|o| o.trace(r));
        for e in &self.exporters {
            e.record(r, trace.as_ref());
        }
        tracing::debug!(
            target_name = %r.target.name,
            outcome = r.outcome.as_str(),
            total_ms = r.phases.total.as_secs_f64() * 1e3,
            syn_retransmits = r.syn_retransmits,
            "Probe finished."
        );
    }

    fn skipped(&self, target: &Target, reason: SkipReason) {
        for e in &self.exporters {
            e.skipped(target, reason);
        }
        if let Some(suppressed) = self.skip_log.allow() {
            tracing::warn!(
                target_name = %target.name,
                reason = reason.as_str(),
                suppressed,
                "Probe skipped: the in-flight limit is reached; raise probe.max_in_flight or lengthen intervals."
            );
        }
    }
}

impl Exporter for Stats {
    fn record(&self, r: &ProbeResult, trace: Option<&TraceRef>) {
        self.record_traced(r, trace.cloned());
    }
}

/// Counts probes toward the SLOs, and publishes each count as a metric.
pub struct SloExporter {
    pub tracker: Arc<Mutex<crate::slo::Tracker>>,
    pub metrics: Arc<prometheus::Metrics>,
    /// SLO time is seconds since this instant.
    pub epoch: Instant,
}

impl Exporter for SloExporter {
    fn record(&self, r: &ProbeResult, _trace: Option<&TraceRef>) {
        let mut slos = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        if slos.is_empty() {
            return;
        }
        for (slo, good) in slos.record(self.epoch.elapsed().as_secs(), r) {
            self.metrics.slo_probe(slo, good);
        }
    }
}

/// The finished probes of a one-shot run, for its progress display.
impl Exporter for AtomicU64 {
    fn record(&self, _r: &ProbeResult, _trace: Option<&TraceRef>) {
        self.fetch_add(1, Ordering::Relaxed);
    }
}
