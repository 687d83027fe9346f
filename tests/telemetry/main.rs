//! The tests against real telemetry receivers: oteltest's OTLP sinks, and
//! the Jaeger and OpenTelemetry Collector that `scripts/telemetry` builds.

#[path = "../common/mod.rs"]
mod common;

mod otlp;
mod otlp_env;
mod telemetry;
