//! The vocabulary every other module speaks: what a probe is and learned,
//! the dimensions of a series, a node's facts, the kernel's SYN schedule, the
//! detector's parameters and alert severities.
//!
//! Invariant: this module is a leaf. It does no I/O, reads no clock and
//! imports nothing of the crate (`tests/architecture.rs` holds it to that),
//! so the detector, the stats and every driver can share it without a cycle.

mod facts;
mod probe;
mod record;
mod schedule;
mod series;
mod target;

pub use facts::{Counters, NodeFacts, OverlayDevice, parse_kernel};
pub use probe::{Network, Outcome, PathKind, Phases, ProbeResult, SourceKind, SynEvent, TcpInfo};
pub use record::{Record, SkipReason};
pub use schedule::{DNS_RUNGS_S, SynSchedule, match_dns_rung};
pub use series::{
    Dims, Family, PROBER_LATE_MS, Pending, Sample, SeriesWindow, TraceRef, Via, attach_pending,
};
pub use target::{
    API_SERVER_TARGET, DnsQuery, ProbeKind, Target, TargetList, TargetNode, Timing, TlsOptions,
    dns_parallel,
};

use serde::{Deserialize, Serialize};

/// The detector's thresholds (`[detect]` sets the first two).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// SYN loss per probe on a healthy network.
    pub background_syn_loss: f64,
    /// Fewer probes on rungs than this never raise a finding.
    pub min_rung_probes: u64,
    /// The binomial tail below which rung probes are significant.
    pub alpha: f64,
    /// A served certificate that ends sooner than this is a finding.
    pub cert_expiry_warning: std::time::Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            background_syn_loss: 1e-4,
            min_rung_probes: 2,
            alpha: 1e-3,
            // Two weeks: past a renewal job's weekly retry, before a
            // 90-day certificate's last third is gone.
            cert_expiry_warning: std::time::Duration::from_secs(14 * 86_400),
        }
    }
}

/// How loud an alert or a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}
