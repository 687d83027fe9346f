//! `[otlp]`: where traces, metrics and alert records go. The standard
//! `OTEL_*` variables alone also enable export; this table adds what they
//! cannot say (sampling of healthy probes, the queue bound, alert resends).

use serde::Deserialize;

use super::ConfigError;
use super::Dur;
use super::validate::{Checker, DAY, HOUR, MS, SEC, TIMING};

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

impl OtlpConfig {
    /// Every bound of `[otlp]`.
    pub(super) fn check(&self, k: &Checker<'_>) -> Result<(), ConfigError> {
        let o = self;
        if !(0.0..=1.0).contains(&o.healthy_sample_ratio) {
            return Err(k.err(
                &["otlp", "healthy_sample_ratio"],
                format!(
                    "[otlp] healthy_sample_ratio = {} must be from 0 to 1; the default is 0.01",
                    o.healthy_sample_ratio
                ),
            ));
        }
        k.dur(&["otlp", "slow"], o.slow.get(), MS..=HOUR, TIMING)?;
        k.num(
            &["otlp", "max_queue"],
            o.max_queue,
            1..=1_000_000,
            "the span queue is held in memory (the default is 4096)",
        )?;
        k.dur(
            &["otlp", "alert_resend"],
            o.alert_resend.get(),
            SEC..=7 * DAY,
            "an active alert is sent again this often",
        )?;

        Ok(())
    }
}
