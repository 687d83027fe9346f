//! What the OTLP pipeline delivered and lost, as `/metrics` counters.

/// What the OTLP pipeline delivered and every way it lost something, shared
/// with the Prometheus registry: nothing is lost without a count.
#[derive(Debug, Clone, Default)]
pub struct ExportCounters {
    /// Spans the exporter delivered.
    pub exported: prometheus_client::metrics::counter::Counter,
    /// Spans lost because an export failed (collector down or slow).
    pub failed: prometheus_client::metrics::counter::Counter,
    /// Spans dropped before export because `max_queue` spans were waiting.
    pub dropped: prometheus_client::metrics::counter::Counter,
    /// Metric exports that failed (each loses one interval's metrics).
    pub metric_exports_failed: prometheus_client::metrics::counter::Counter,
    /// Alert log records lost because an export failed.
    pub log_records_failed: prometheus_client::metrics::counter::Counter,
}

impl ExportCounters {
    /// The counters, registered in `/metrics`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let otlp = Self::default();
        registry.register(
            "otlp_spans_exported",
            "Probe spans the OTLP exporter delivered",
            otlp.exported.clone(),
        );
        registry.register(
            "otlp_spans_failed",
            "Probe spans lost because an OTLP export failed (collector down or slow)",
            otlp.failed.clone(),
        );
        registry.register(
            "otlp_spans_dropped",
            "Probe spans dropped before export because [otlp] max_queue spans were already waiting",
            otlp.dropped.clone(),
        );
        registry.register(
            "otlp_metric_exports_failed",
            "OTLP metric exports that failed (each loses one export interval of probe metrics)",
            otlp.metric_exports_failed.clone(),
        );
        registry.register(
            "otlp_log_records_failed",
            "Alert log records lost because an OTLP export failed",
            otlp.log_records_failed.clone(),
        );
        otlp
    }
}
