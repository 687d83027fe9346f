//! The three OTLP exporters, each to its own endpoint and protocol: the
//! per-signal variables win over the general ones, `[otlp]` over both; an
//! `https://` endpoint gets TLS ([`super::tls`]). A signal with no endpoint
//! at all, or whose `OTEL_{SIGNAL}_EXPORTER` is `none`, is not exported:
//! a traces-only backend (Jaeger) is never sent metrics or log records it
//! would refuse.

use opentelemetry_otlp::{
    LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig,
    WithTonicConfig,
};

use super::{OtlpError, env, tls};
use crate::config::OtlpConfig;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Grpc,
    Http,
}

/// `signal` is `TRACES`, `METRICS` or `LOGS` throughout.
fn wire(cfg: &OtlpConfig, signal: &str) -> Result<Wire, OtlpError> {
    let p = cfg
        .protocol
        .clone()
        .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")))
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    match p.as_str() {
        "grpc" => Ok(Wire::Grpc),
        "http/protobuf" => Ok(Wire::Http),
        other => Err(OtlpError::Protocol(other.into())),
    }
}

/// The collector endpoint one signal goes to: `[otlp] endpoint`, else the
/// per-signal variable, else the general one.
fn endpoint(cfg: &OtlpConfig, signal: &str) -> Option<String> {
    cfg.endpoint
        .clone()
        .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// Whether a signal is exported: an `[otlp]` table (`table`: every signal,
/// to the standard default endpoints when it names none) or an endpoint
/// for it, and its exporter variable not `none`.
pub fn on(cfg: &OtlpConfig, table: bool, signal: &str) -> bool {
    let none = env(&format!("OTEL_{signal}_EXPORTER"))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !none && (table || endpoint(cfg, signal).is_some())
}

/// The TLS files of a signal whose endpoint is `https://`; `None` for a
/// plain one (where certificate files are said to be ignored).
fn tls_for(cfg: &OtlpConfig, signal: &str) -> Option<tls::TlsFiles> {
    let files = tls::TlsFiles::from_env(signal, &env);
    let https = endpoint(cfg, signal).is_some_and(|e| e.starts_with("https://"));
    if !https && files.any() {
        tracing::warn!(
            signal,
            "OTLP certificate files are set but the endpoint is not https://; they are ignored."
        );
    }
    https.then_some(files)
}

/// `[otlp] endpoint` with the signal's HTTP path.
fn url(cfg: &OtlpConfig, path: &str) -> Option<String> {
    cfg.endpoint
        .as_ref()
        .map(|e| format!("{}{path}", e.trim_end_matches('/')))
}

fn built<T>(
    signal: &'static str,
    r: Result<T, opentelemetry_otlp::ExporterBuildError>,
) -> Result<T, OtlpError> {
    r.map_err(|e| OtlpError::Build {
        signal,
        message: e.to_string(),
    })
}

/// One builder per signal and wire, the same steps each time.
macro_rules! exporter {
    ($cfg:expr, $builder:expr, $signal:literal, $path:literal, $what:literal) => {{
        let cfg = $cfg;
        match wire(cfg, $signal)? {
            Wire::Grpc => {
                let mut b = $builder.with_tonic();
                if let Some(e) = &cfg.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                if let Some(files) = tls_for(cfg, $signal) {
                    b = b.with_tls_config(tls::grpc(&files)?);
                }
                built($what, b.build())
            }
            Wire::Http => {
                let mut b = $builder.with_http().with_protocol(Protocol::HttpBinary);
                if let Some(e) = url(cfg, $path) {
                    b = b.with_endpoint(e);
                }
                if let Some(files) = tls_for(cfg, $signal) {
                    b = b.with_http_client(tls::http(&files, tls::timeout($signal, &env))?);
                }
                built($what, b.build())
            }
        }
    }};
}

pub fn spans(cfg: &OtlpConfig) -> Result<SpanExporter, OtlpError> {
    exporter!(
        cfg,
        SpanExporter::builder(),
        "TRACES",
        "/v1/traces",
        "trace"
    )
}

pub fn metrics(cfg: &OtlpConfig) -> Result<MetricExporter, OtlpError> {
    exporter!(
        cfg,
        MetricExporter::builder(),
        "METRICS",
        "/v1/metrics",
        "metric"
    )
}

pub fn logs(cfg: &OtlpConfig) -> Result<LogExporter, OtlpError> {
    exporter!(cfg, LogExporter::builder(), "LOGS", "/v1/logs", "log")
}
