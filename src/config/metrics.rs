//! `[metrics]`: what `/metrics` spends on series. Every series is paid for
//! in every Prometheus that scrapes every prober, so the default keeps the
//! one distribution that names a SYN-retransmit rung (connect) at the
//! resolution that separates every rung; the full-resolution distributions
//! of every phase stay in the HdrHistograms (the API, the hub, OTLP).

use serde::Deserialize;

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// The phases that get a histogram.
    pub phases: Vec<MetricPhase>,
    /// Their buckets.
    pub buckets: Buckets,
    /// The series' grain: per target, or per path kind only.
    pub per: Grain,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            phases: vec![MetricPhase::Connect],
            buckets: Buckets::Rungs,
            per: Grain::Target,
        }
    }
}

/// A probe phase, by its name in the metrics' `phase` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricPhase {
    Dns,
    Connect,
    /// The TLS handshake's end (`https://` targets only).
    Tls,
    FirstByte,
    Total,
}

/// Histogram buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Buckets {
    /// Each SYN-retransmit rung (classic and linear) in a bucket of its
    /// own, sub-second coarsely: 31 buckets.
    Rungs,
    /// The rungs plus sub-millisecond to sub-second detail, and the DNS
    /// and Windows timeouts: 46 buckets.
    Fine,
    /// No histograms: outcome and SYN-retransmit counters only.
    None,
}

/// Which dimensions the probe series carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    /// Source node and kind, destination node, target, path kind.
    Target,
    /// Source node and kind and path kind only (`destination_node` and
    /// `target` empty): for big clusters, where the node x node view comes
    /// from the hub instead.
    Path,
}
