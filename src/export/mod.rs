//! Where numbers leave the process: Prometheus text, the matrix report.
//! Exporting never blocks probing: everything here is fed by [`Recorder`],
//! which only touches in-memory state.

pub mod alerts;
pub mod otlp;
pub mod prometheus;
pub mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::probe::ProbeResult;
use crate::probe::scheduler::{Sink, SkipReason};
use crate::stats::Stats;
use crate::targets::Target;

/// Feeds every finished probe to the stats, the metrics and the SLOs.
pub struct Recorder {
    pub stats: Arc<Stats>,
    pub metrics: Arc<prometheus::Metrics>,
    pub slos: Arc<std::sync::Mutex<crate::slo::Tracker>>,
    /// SLO time is seconds since this instant.
    pub epoch: std::time::Instant,
    pub otlp: Option<Arc<otlp::Otlp>>,
    skip_log: RateLimit,
}

impl Recorder {
    pub fn new(
        stats: Arc<Stats>,
        metrics: Arc<prometheus::Metrics>,
        slos: crate::slo::Tracker,
    ) -> Self {
        Self {
            stats,
            metrics,
            slos: Arc::new(std::sync::Mutex::new(slos)),
            epoch: std::time::Instant::now(),
            otlp: None,
            skip_log: RateLimit::new(10),
        }
    }
}

impl Sink for Recorder {
    fn record(&self, r: &ProbeResult) {
        let trace = self.otlp.as_ref().and_then(|o| o.record(r));
        self.stats.record_traced(r, trace);
        self.metrics.observe(r);
        let mut slos = self.slos.lock().unwrap_or_else(|e| e.into_inner());
        if !slos.is_empty() {
            for (slo, good) in slos.record(self.epoch.elapsed().as_secs(), r) {
                self.metrics.slo_probe(slo, good);
            }
        }
        drop(slos);
        tracing::debug!(
            target_name = %r.target.name,
            outcome = r.outcome.as_str(),
            total_ms = r.phases.total.as_secs_f64() * 1e3,
            syn_retransmits = r.syn_retransmits,
            "Probe finished."
        );
    }

    fn skipped(&self, target: &Target, reason: SkipReason) {
        self.metrics.skipped(target, reason);
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

/// Lets one log line through per period and counts the ones held back.
#[derive(Debug)]
pub struct RateLimit {
    period_secs: u64,
    last: AtomicU64,
    held: AtomicU64,
}

impl RateLimit {
    pub fn new(period_secs: u64) -> Self {
        Self {
            period_secs,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last one)` when a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last.load(Ordering::Relaxed);
        if now >= last + self.period_secs
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_through_per_period() {
        let r = RateLimit::new(3600);
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        assert_eq!(r.held.load(Ordering::Relaxed), 2);
    }
}
