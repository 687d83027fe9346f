//! `[otlp]`: where traces, metrics and alert records go. The standard
//! `OTEL_*` variables alone also enable export; this table adds what they
//! cannot say (sampling of healthy probes, the queue bound, alert resends).

use serde::Deserialize;

use super::Dur;

/// `[otlp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Base URL of the collector; else `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`; else `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<String>,
    pub healthy_sample_ratio: f64,
    /// A probe at least this slow is always kept.
    pub slow: Dur,
    pub max_queue: usize,
    /// An active alert is sent again this often.
    pub alert_resend: Dur,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: None,
            healthy_sample_ratio: 0.01,
            slow: Dur::secs(1),
            max_queue: 4096,
            alert_resend: Dur::secs(600),
        }
    }
}
