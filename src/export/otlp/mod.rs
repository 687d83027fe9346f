//! OTLP: one trace per probe, probe metrics and alert records, to any
//! OpenTelemetry collector. Configured the OpenTelemetry way:
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` (grpc or
//! http/protobuf), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! the TLS files ([`tls`]), `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` ([`resource`]), `OTEL_TRACES_SAMPLER`
//! ([`sampler`]), `OTEL_SDK_DISABLED` and the per-signal variants work with
//! no config entry; `[otlp]` can set the endpoint and protocol too.
//!
//! Spans are built after a probe ends, with its real timestamps, so sampling
//! is decided on the outcome ([`sampler`]). The SDK's batch processor holds
//! at most `max_queue` spans and drops past that: exporting never blocks
//! probing.
//!
//! Span names follow the HTTP semantic conventions' `{method} {target}`
//! for clients, with the probe target's name standing for the URL template
//! (bounded, chosen by the operator): `GET svc-on-node1`; a TCP probe is
//! `connect NAME`, a DNS probe `query NAME`. `error.type` is the status
//! code for an HTTP status outside the valid ranges, else the outcome
//! (`refused`, `connect-timeout`, ...), low-cardinality as the conventions
//! ask.

mod counters;
mod exporters;
mod resource;
pub mod sampler;
mod tls;
mod trace;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{Aggregation, Instrument, SdkMeterProvider, Stream};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

pub use self::counters::ExportCounters;
use self::sampler::Sampling;
use crate::config::OtlpConfig;
use crate::model::SynSchedule;
use crate::model::{Outcome, ProbeResult, TraceRef};

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(
        "OTLP protocol \"{0}\" is neither grpc nor http/protobuf; set OTEL_EXPORTER_OTLP_PROTOCOL or [otlp] protocol to one of them"
    )]
    Protocol(String),
    #[error(
        "cannot build the OTLP {signal} exporter ({message}); check OTEL_EXPORTER_OTLP_ENDPOINT or [otlp] endpoint"
    )]
    Build {
        signal: &'static str,
        message: String,
    },
    #[error("OTLP TLS: {0}")]
    Tls(String),
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Counts what the OTLP span exporter sent and lost, and says so in the log
/// at most once per period. `pending` is the bounded queue's occupancy: a
/// batch leaves the queue when it reaches the exporter.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    counters: ExportCounters,
    pending: Arc<AtomicUsize>,
    log: crate::ratelimit::RateLimit,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counting<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let n = batch.len();
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
        let n = n as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                self.counters.exported.inc_by(n);
            }
            Err(e) => {
                self.counters.failed.inc_by(n);
                if let Some(suppressed) = self.log.allow() {
                    tracing::warn!(error = %e, spans = n, suppressed, "OTLP export failed; spans dropped.");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch processor behind a bound of its own: a span that would find
/// `max` spans waiting is dropped here and counted (the SDK's own queue,
/// sized the same, then never fills and never drops in silence).
#[derive(Debug)]
struct BoundedQueue {
    inner: BatchSpanProcessor,
    pending: Arc<AtomicUsize>,
    max: usize,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl opentelemetry_sdk::trace::SpanProcessor for BoundedQueue {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        let admitted = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                (p < self.max).then_some(p + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts failed metric exports.
#[derive(Debug)]
struct CountingMetrics<E> {
    inner: E,
    failed: prometheus_client::metrics::counter::Counter,
    log: crate::ratelimit::RateLimit,
}

impl<E: opentelemetry_sdk::metrics::exporter::PushMetricExporter>
    opentelemetry_sdk::metrics::exporter::PushMetricExporter for CountingMetrics<E>
{
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if let Err(e) = &result {
            self.failed.inc();
            if let Some(suppressed) = self.log.allow() {
                tracing::warn!(error = %e, suppressed, "OTLP metric export failed.");
            }
        }
        result
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

/// Counts alert log records lost to failed exports.
#[derive(Debug)]
struct CountingLogs<E> {
    inner: E,
    failed: prometheus_client::metrics::counter::Counter,
    log: crate::ratelimit::RateLimit,
}

impl<E: opentelemetry_sdk::logs::LogExporter> opentelemetry_sdk::logs::LogExporter
    for CountingLogs<E>
{
    async fn export(
        &self,
        batch: opentelemetry_sdk::logs::LogBatch<'_>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let n = batch.iter().count() as u64;
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.failed.inc_by(n);
            if let Some(suppressed) = self.log.allow() {
                tracing::warn!(error = %e, records = n, suppressed, "OTLP alert export failed; records dropped.");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP pipeline of one prober.
pub struct Otlp {
    logs: opentelemetry_sdk::logs::SdkLoggerProvider,
    logger: opentelemetry_sdk::logs::SdkLogger,
    traces: SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::Tracer,
    meters: SdkMeterProvider,
    duration: Histogram<f64>,
    probes: Counter<u64>,
    retransmits: Counter<u64>,
    cfg: OtlpConfig,
    sampling: Sampling,
    /// Signals with an endpoint of their own or a general one, and not
    /// turned off (`OTEL_TRACES_EXPORTER=none`): a signal without one is
    /// not sent anywhere, so a traces-only backend is never sent metrics.
    traces_on: bool,
    logs_on: bool,
    schedule: SynSchedule,
}

/// `OTEL_SDK_DISABLED=true`: the specification's switch for every signal.
fn sdk_disabled() -> bool {
    env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Otlp {
    /// Whether OTLP is configured at all: an `[otlp]` table, or an endpoint
    /// in the standard variables.
    pub fn configured(cfg: Option<&OtlpConfig>) -> bool {
        !sdk_disabled()
            && (cfg.is_some()
                || [
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                ]
                .iter()
                .any(|v| env(v).is_some()))
    }

    /// Builds the pipeline; call it inside the tokio runtime (the gRPC
    /// exporter needs one). `None` when OTLP is not configured.
    pub fn start(
        cfg: Option<&OtlpConfig>,
        node: &str,
        schedule: SynSchedule,
        counters: ExportCounters,
    ) -> Result<Option<Self>, OtlpError> {
        if !Self::configured(cfg) {
            if sdk_disabled() {
                tracing::info!("OTEL_SDK_DISABLED is true: no OTLP export.");
            }
            return Ok(None);
        }
        // The exporter's HTTP client is built with TLS compiled in, which
        // wants the provider named.
        crate::install_crypto();
        let table = cfg.is_some();
        let cfg = cfg.cloned().unwrap_or_default();
        let resource = resource::resource(node, &env);
        let (sampling, warning) = Sampling::from_env(cfg.healthy_sample_ratio, &env);
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let on = |signal: &str| exporters::on(&cfg, table, signal);
        let traces_on = on("TRACES");
        // tailprobe decides on the outcome (`sampler`); the SDK's head
        // sampler, left to OTEL_TRACES_SAMPLER, would decide again blind.
        let mut traces = SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
            .with_resource(resource.clone());
        if traces_on {
            let pending = Arc::new(AtomicUsize::new(0));
            let spans = Counting {
                inner: exporters::spans(&cfg)?,
                counters: counters.clone(),
                pending: Arc::clone(&pending),
                log: crate::ratelimit::RateLimit::new(10),
            };
            let max = cfg.max_queue.max(1);
            traces = traces.with_span_processor(BoundedQueue {
                inner: BatchSpanProcessor::builder(spans)
                    .with_batch_config(
                        BatchConfigBuilder::default()
                            .with_max_queue_size(max)
                            .with_scheduled_delay(Duration::from_secs(1))
                            .build(),
                    )
                    .build(),
                pending,
                max,
                dropped: counters.dropped.clone(),
            });
        }
        let traces = traces.build();
        let mut meters = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_view(|i: &Instrument| {
                (i.name() == "tailprobe.probe.duration")
                    .then(|| {
                        Stream::builder()
                            .with_aggregation(Aggregation::Base2ExponentialHistogram {
                                max_size: 160,
                                max_scale: 20,
                                record_min_max: true,
                            })
                            .build()
                            .ok()
                    })
                    .flatten()
            });
        if on("METRICS") {
            meters = meters.with_periodic_exporter(CountingMetrics {
                inner: exporters::metrics(&cfg)?,
                failed: counters.metric_exports_failed.clone(),
                log: crate::ratelimit::RateLimit::new(10),
            });
        }
        let meters = meters.build();
        let logs_on = on("LOGS");
        let mut logs =
            opentelemetry_sdk::logs::SdkLoggerProvider::builder().with_resource(resource);
        if logs_on {
            logs = logs.with_batch_exporter(CountingLogs {
                inner: exporters::logs(&cfg)?,
                failed: counters.log_records_failed.clone(),
                log: crate::ratelimit::RateLimit::new(10),
            });
        }
        let logs = logs.build();
        let metrics_on = on("METRICS");
        tracing::info!(
            traces = traces_on,
            metrics = metrics_on,
            alerts = logs_on,
            "OTLP export."
        );
        if !logs_on {
            tracing::warn!(
                "OTLP log records are not exported (no endpoint for them): alerts go to this log and /metrics only."
            );
        }
        let meter = meters.meter("tailprobe");
        Ok(Some(Self {
            logger: opentelemetry::logs::LoggerProvider::logger(&logs, "tailprobe"),
            logs,
            tracer: traces.tracer("tailprobe"),
            traces,
            duration: meter
                .f64_histogram("tailprobe.probe.duration")
                .with_unit("s")
                .with_description("Time from probe start to its end")
                .build(),
            probes: meter
                .u64_counter("tailprobe.probes")
                .with_description("Probes finished, by outcome")
                .build(),
            retransmits: meter
                .u64_counter("tailprobe.syn_retransmits")
                .with_description("SYN retransmissions seen by the kernel (TCP_INFO)")
                .build(),
            meters,
            cfg,
            sampling,
            traces_on,
            logs_on,
            schedule,
        }))
    }

    /// Whether a probe's trace is kept.
    pub fn keep(&self, r: &ProbeResult) -> bool {
        self.sampling
            .keep(telling(&self.cfg, r), rand::random::<f64>())
    }

    /// How often an active alert is sent again.
    pub fn alert_resend(&self) -> Duration {
        self.cfg.alert_resend.get()
    }

    /// Sends an alert as a log record, linked to its first example trace.
    pub fn send(&self, a: &crate::export::alerts::Alert) {
        if !self.logs_on {
            return;
        }
        use crate::export::alerts::Severity as S;
        use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
        let mut rec = self.logger.create_log_record();
        let (number, text) = match a.severity {
            S::Info => (Severity::Info, "INFO"),
            S::Warn => (Severity::Warn, "WARN"),
            S::Error => (Severity::Error, "ERROR"),
        };
        rec.set_severity_number(number);
        rec.set_severity_text(text);
        rec.set_timestamp(std::time::SystemTime::now());
        rec.set_body(AnyValue::from(a.body.clone()));
        rec.add_attribute("tailprobe.alert.phase", a.phase.as_str());
        // The alert's identity: a backend deduplicates raised, updated,
        // re-sent and resolved records of one alert on it.
        rec.add_attribute("tailprobe.alert.key", a.condition.key.id());
        for (k, v) in &a.condition.attributes {
            rec.add_attribute(*k, v.clone());
        }
        if let Some(t) = a.condition.examples.first()
            && let (Ok(trace), Ok(span)) = (
                opentelemetry::trace::TraceId::from_hex(&t.trace_id),
                opentelemetry::trace::SpanId::from_hex(&t.span_id),
            )
        {
            rec.set_trace_context(trace, span, None);
        }
        self.logger.emit(rec);
    }

    /// The dimensions every probe metric and span carries.
    fn dims(r: &ProbeResult) -> Vec<KeyValue> {
        vec![
            KeyValue::new("k8s.node.name", r.source_node.to_string()),
            KeyValue::new("tailprobe.source.kind", r.source_kind.as_str()),
            KeyValue::new(
                "tailprobe.destination.node",
                r.destination_node.as_deref().unwrap_or("").to_string(),
            ),
            KeyValue::new("tailprobe.target", r.target.name.clone()),
            KeyValue::new("tailprobe.path", r.path.as_str()),
            // The semantic conventions' own attribute, with their values.
            KeyValue::new("network.type", crate::model::Dims::of(r).family.as_str()),
        ]
    }

    /// Sends what is queued and stops, within [`SHUTDOWN_BUDGET`] in all: the
    /// three signals flush side by side, and one whose collector does not
    /// answer is left behind (and said) rather than waited on for its
    /// export timeout. One-shot modes call it before exiting; the daemon
    /// before its servers drain.
    pub fn shutdown(&self) {
        type Flush = Box<dyn FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send>;
        let (logs, traces, meters) = (self.logs.clone(), self.traces.clone(), self.meters.clone());
        let signals: [(&str, Flush); 3] = [
            (
                "alerts",
                Box::new(move || logs.shutdown_with_timeout(SHUTDOWN_BUDGET)),
            ),
            (
                "traces",
                Box::new(move || traces.shutdown_with_timeout(SHUTDOWN_BUDGET)),
            ),
            ("metrics", Box::new(move || meters.shutdown())),
        ];
        let (tx, rx) = std::sync::mpsc::channel();
        for (name, flush) in signals {
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("otlp-flush-{name}"))
                .spawn(move || {
                    let _ = tx.send((name, flush()));
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, signal = name, "OTLP could not flush.");
            }
        }
        drop(tx);
        let deadline = std::time::Instant::now() + SHUTDOWN_BUDGET;
        let mut pending = vec!["alerts", "traces", "metrics"];
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((name, result)) => {
                    pending.retain(|p| *p != name);
                    if let Err(e) = result {
                        tracing::warn!(error = %e, signal = name, "OTLP did not flush.");
                    }
                }
                Err(_) => {
                    tracing::warn!(signals = ?pending, budget = ?SHUTDOWN_BUDGET, "OTLP flush abandoned: the collector did not answer in time.");
                    break;
                }
            }
        }
    }
}

/// A probe whose trace is evidence: failed, retransmitting or slow.
fn telling(cfg: &OtlpConfig, r: &ProbeResult) -> bool {
    !r.outcome.is_ok() || r.syn_retransmits > 0 || r.phases.total >= cfg.slow.get()
}

/// Whether a probe's trace is kept under `[otlp]` alone, `draw` being
/// uniform in [0, 1).
#[cfg(test)]
fn keep(cfg: &OtlpConfig, r: &ProbeResult, draw: f64) -> bool {
    Sampling::Healthy(cfg.healthy_sample_ratio).keep(telling(cfg, r), draw)
}

/// How long stopping may spend flushing OTLP, all signals together.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(3);

/// Probe metrics: every probe, whether its trace was kept or not.
impl crate::model::Record for Otlp {
    fn record(&self, r: &ProbeResult, _trace: Option<&TraceRef>) {
        if r.outcome == Outcome::Cancelled {
            return;
        }
        let dims = Self::dims(r);
        let mut with_outcome = dims.clone();
        with_outcome.push(KeyValue::new("tailprobe.outcome", r.outcome.as_str()));
        self.probes.add(1, &with_outcome);
        if r.outcome.completed() {
            self.duration.record(r.phases.total.as_secs_f64(), &dims);
        }
        if r.syn_retransmits > 0 {
            self.retransmits.add(u64::from(r.syn_retransmits), &dims);
        }
    }
}

#[cfg(test)]
mod tests;
