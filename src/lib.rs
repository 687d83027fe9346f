//! tailprobe: a synthetic latency prober that opens a fresh TCP connection per
//! probe, times every phase, reads the kernel's own evidence (`TCP_INFO`) and
//! knows which node answered.
//!
//! Code map (ARCHITECTURE.md states the invariants):
//! - [`model`]: the vocabulary (results, dimensions, facts, the SYN
//!   schedule); a leaf that imports nothing of the crate.
//! - [`config`]: the typed `config.toml`, with file:line:column errors.
//! - [`targets`]: what to probe and which node serves it.
//! - [`probe`]: one fresh connection and its evidence; the fixed-rate scheduler.
//! - [`stats`]: HdrHistograms per series, rolling sample windows, exact merge.
//! - [`detect`]: the pure detector: SYN ladders, scope, named causes.
//! - [`export`]: Prometheus metrics and the matrix report (table, JSON).
//! - [`server`]: the daemon's HTTP endpoints and the `echo` target server.
//! - [`matrix`]: the one-shot run; [`daemon`]: the continuous one.
//! - [`hub`]: pulls every prober and judges the cluster as one.
//! - [`lab`]: an emulated cluster in network namespaces, with faults.
//! - [`slo`]: objectives over probes, multi-window burn-rate alerts, rules.
//! - [`node`]: read-only facts about the host.
//! - [`cli`]: the command line; `main.rs` only calls [`cli::main`].
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod export;
pub mod hub;
pub mod lab;
pub mod matrix;
pub mod model;
pub mod node;
pub mod passive;
pub mod probe;
pub mod ratelimit;
pub mod server;
pub mod shutdown;
pub mod slo;
pub mod stats;
pub mod targets;
pub mod wire;

/// The version reported in metrics, the `User-Agent` and traces.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Makes ring the process's rustls crypto provider, once; every HTTP client
/// that may speak TLS (the hub's pulls, OTLP over HTTPS) is built after it.
/// ring is the one provider compiled in (kube brings it), and rustls will
/// not guess one for a client that does not name it.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
