//! The one fan-out every driver (daemon, matrix, lab) records through.

use std::sync::Arc;

use super::otlp;
use crate::model::{ProbeResult, Record, SkipReason, Target, TraceRef};
use crate::ratelimit::RateLimit;

/// The one fan-out every driver (daemon, matrix, lab) records through: the
/// OTLP tracer first (its trace id is what the others keep as an example),
/// then every consumer in the order added.
pub struct Recorder {
    tracer: Option<Arc<otlp::Otlp>>,
    exporters: Vec<Arc<dyn Record>>,
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

    /// Adds a consumer.
    pub fn with(mut self, e: Arc<dyn Record>) -> Self {
        self.exporters.push(e);
        self
    }
}

impl Record for Recorder {
    /// Traces the probe (unless a trace comes with it), then hands it with
    /// its trace to every consumer in order.
    fn record(&self, r: &ProbeResult, trace: Option<&TraceRef>) {
        let trace = match trace {
            Some(t) => Some(t.clone()),
            None => self.tracer.as_ref().and_then(|o| o.trace(r)),
        };
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
