//! The one interface every consumer of probes implements: the stats, the
//! Prometheus registry, OTLP, the SLO tracker, a one-shot run's progress,
//! and the fan-out that feeds them all. Each implements it in its own file.

use super::{ProbeResult, Target, TraceRef};

/// Why a probe was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `max_in_flight` probes were already running.
    InFlightLimit,
}

impl SkipReason {
    pub const ALL: [SkipReason; 1] = [SkipReason::InFlightLimit];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::InFlightLimit => "in-flight-limit",
        }
    }
}

/// Receives every finished probe and every skipped one. Implementations
/// must be quick and never block on I/O: they run on the probe's task.
pub trait Record: Send + Sync {
    /// One finished probe, with the trace it was exported as, if any (the
    /// fan-out passes the trace it made to everything after it).
    fn record(&self, r: &ProbeResult, trace: Option<&TraceRef>);
    /// One probe that was not started.
    fn skipped(&self, _target: &Target, _reason: SkipReason) {}
}
