//! The SLO tracker as a consumer of probes: each probe counted toward the
//! SLOs it falls under, each count published as a metric.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::prometheus;
use crate::model::{ProbeResult, Record, TraceRef};

/// Counts probes toward the SLOs, and publishes each count as a metric.
pub struct SloExporter {
    pub tracker: Arc<Mutex<crate::slo::Tracker>>,
    pub metrics: Arc<prometheus::Metrics>,
    /// SLO time is seconds since this instant.
    pub epoch: Instant,
}

impl Record for SloExporter {
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
