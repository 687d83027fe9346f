//! The tests that need only tailprobe and loopback (and, where a test says
//! so, promtool, Prometheus or kubectl beside it): one binary, so the
//! library is linked once for all of them.

#[path = "../common/mod.rs"]
mod common;

mod alert_identity;
mod architecture;
mod cli;
mod daemon;
mod dashboard;
mod deploy;
mod detector_eval;
mod fresh_connection;
mod hardening;
mod https;
mod hub;
mod matrix_report;
mod outcomes;
mod probe_kinds;
mod prometheus;
mod properties;
mod scheduling;
mod slo;
