//! The lab's Jaeger and OpenTelemetry Collector (`lab demo --telemetry`):
//! the programs `scripts/telemetry` builds from the Go modules pinned in
//! `tools/`, run on this machine's loopback so a person opens the traces
//! from here. The probers' traces reach the collector through the lab's
//! relay, the verdict's alert records from this process; the collector
//! sends the traces on to Jaeger. Both stay up after the demo, so its
//! link opens the trace, until `lab down` stops them (their pids are kept
//! in the lab's state folder, checked against the program before a
//! signal).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::LabError;
use super::kube::Bins;
use super::kube::bins::pinned;

const JAEGER_GO_MOD: &str = include_str!("../../tools/jaeger/go.mod");
const OTELCOL_GO_MOD: &str = include_str!("../../tools/otelcol/go.mod");

/// The two programs, where `scripts/telemetry` built them.
#[derive(Debug, Clone)]
pub struct Programs {
    pub jaeger: PathBuf,
    pub otelcol: PathBuf,
}

impl Programs {
    /// The pinned builds in the cache, or an error saying how to build them.
    pub fn find() -> Result<Self, LabError> {
        let cache = Bins::cache_dir();
        let version = |go_mod, module| {
            pinned(go_mod, module).ok_or_else(|| {
                LabError::Usage(format!("tools/ pins no {module}: the build is broken"))
            })
        };
        let p = Programs {
            jaeger: cache
                .join("jaeger")
                .join(version(JAEGER_GO_MOD, "github.com/jaegertracing/jaeger")?)
                .join("jaeger"),
            otelcol: cache
                .join("otelcol")
                .join(version(
                    OTELCOL_GO_MOD,
                    "go.opentelemetry.io/collector/otelcol",
                )?)
                .join("otelcol"),
        };
        for bin in [&p.jaeger, &p.otelcol] {
            if !bin.is_file() {
                return Err(LabError::Usage(format!(
                    "--telemetry needs Jaeger and the OpenTelemetry Collector: {} is missing; \
                     run scripts/telemetry (it builds both from the Go modules pinned in tools/, \
                     about 11 minutes on 2 cores the first time)",
                    bin.display()
                )));
            }
        }
        Ok(p)
    }
}

/// The running pair: where a person reads traces, where OTLP goes in.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Jaeger's query API (`/api/v3/traces/<id>`).
    pub jaeger: SocketAddr,
    /// The collector's OTLP/HTTP receiver.
    pub otlp_http: SocketAddr,
}

impl Telemetry {
    /// The collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.otlp_http)
    }

    /// A trace in Jaeger's query API, by id.
    pub fn trace_url(&self, trace_id: &str) -> String {
        format!("http://{}/api/v3/traces/{trace_id}", self.jaeger)
    }
}

/// `n` distinct free loopback ports: held together while they are picked,
/// so none is handed out twice, then released for the programs to bind.
fn free_ports(n: usize) -> Result<Vec<u16>, LabError> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LabError::Kernel {
            what: format!("cannot find a free port on the loopback ({e})"),
        })?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| LabError::Kernel {
            what: format!("cannot read a port ({e})"),
        })
}

fn folder(prefix: &str) -> PathBuf {
    super::state_dir(prefix).join("telemetry")
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::Kernel {
        what: format!("cannot write {} ({e})", path.display()),
    })
}

/// Starts Jaeger (memory store) and the collector (traces to Jaeger, alert
/// records to a file beside their logs) on free loopback ports, and waits
/// until both answer, at most 30 s.
pub async fn start(prefix: &str) -> Result<Telemetry, LabError> {
    let programs = Programs::find()?;
    let dir = folder(prefix);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::Kernel {
        what: format!("cannot create {} ({e})", dir.display()),
    })?;
    let mut ports = free_ports(7)?;
    let mut next = || ports.pop().expect("seven ports");
    let (query, query_grpc, j_grpc, j_http) = (next(), next(), next(), next());
    let (c_grpc, c_http, health) = (next(), next(), next());
    // Their own metrics listeners (8888 by default) stay off: two labs
    // would collide on them.
    let jaeger_cfg = dir.join("jaeger.yaml");
    write(
        &jaeger_cfg,
        &format!(
            "service:\n  extensions: [jaeger_storage, jaeger_query]\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [jaeger_storage_exporter]}}\n  telemetry:\n    metrics: {{level: none}}\n\
             extensions:\n  jaeger_storage:\n    backends: {{memstore: {{memory: {{max_traces: 100000}}}}}}\n  jaeger_query:\n    storage: {{traces: memstore}}\n    enable_tracing: false\n    http: {{endpoint: 127.0.0.1:{query}}}\n    grpc: {{endpoint: 127.0.0.1:{query_grpc}}}\n\
             receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: 127.0.0.1:{j_grpc}}}\n      http: {{endpoint: 127.0.0.1:{j_http}}}\n\
             exporters:\n  jaeger_storage_exporter: {{trace_storage: memstore}}\n"
        ),
    )?;
    let alerts = dir.join("alerts.jsonl");
    let collector_cfg = dir.join("collector.yaml");
    write(
        &collector_cfg,
        &format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: 127.0.0.1:{c_grpc}}}\n      http: {{endpoint: 127.0.0.1:{c_http}}}\n\
             processors:\n  batch: {{}}\n\
             exporters:\n  otlp_grpc/jaeger: {{endpoint: 127.0.0.1:{j_grpc}, tls: {{insecure: true}}}}\n  file/alerts: {{path: {}}}\n\
             extensions:\n  health_check: {{endpoint: 127.0.0.1:{health}}}\n\
             service:\n  extensions: [health_check]\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp_grpc/jaeger]}}\n    logs: {{receivers: [otlp], processors: [batch], exporters: [file/alerts]}}\n",
            alerts.display()
        ),
    )?;
    for (name, bin, cfg) in [
        ("jaeger", &programs.jaeger, &jaeger_cfg),
        ("otelcol", &programs.otelcol, &collector_cfg),
    ] {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| {
            LabError::Kernel {
                what: format!("cannot write {name}'s log in {} ({e})", dir.display()),
            }
        })?;
        let child = std::process::Command::new(bin)
            .arg("--config")
            .arg(cfg)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| LabError::Kernel {
                what: format!("cannot start {} ({e})", bin.display()),
            })?;
        write(&dir.join(format!("{name}.pid")), &child.id().to_string())?;
        // Not waited on (dropping a child neither kills nor reaps it): it
        // outlives this process, and `lab down` stops it by its pid.
        drop(child);
    }
    let t = Telemetry {
        jaeger: SocketAddr::from(([127, 0, 0, 1], query)),
        otlp_http: SocketAddr::from(([127, 0, 0, 1], c_http)),
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| LabError::Usage(e.to_string()))?;
    for (what, url) in [
        ("Jaeger", format!("http://{}/api/services", t.jaeger)),
        ("the collector", format!("http://127.0.0.1:{health}/")),
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                stop(prefix);
                return Err(LabError::Kernel {
                    what: format!(
                        "{what} did not answer {url} within 30 s; its log is in {}",
                        dir.display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(t)
}

impl Telemetry {
    /// Waits until Jaeger holds the trace (the probers export in batches,
    /// through a relay that lives as long as this process), at most 30 s.
    pub async fn wait_for_trace(&self, trace_id: &str) -> bool {
        let Ok(client) = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
        else {
            return false;
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if client
                .get(self.trace_url(trace_id))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    }
}

/// Stops the lab's Jaeger and collector, if it started them: each pid is
/// signalled only while it still runs the program it was started as.
/// Returns how many were stopped.
pub fn stop(prefix: &str) -> usize {
    let dir = folder(prefix);
    let mut stopped = 0;
    for name in ["jaeger", "otelcol"] {
        let Ok(pid) = std::fs::read_to_string(dir.join(format!("{name}.pid"))) else {
            continue;
        };
        let pid = pid.trim();
        let runs = std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.file_name().is_some_and(|f| f == name));
        if runs {
            super::signal(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..20 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            super::signal(pid, nix::sys::signal::Signal::SIGKILL);
            stopped += 1;
        }
        let _ = std::fs::remove_file(dir.join(format!("{name}.pid")));
    }
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pins_are_read_from_the_wrapper_modules() {
        assert_eq!(
            pinned(JAEGER_GO_MOD, "github.com/jaegertracing/jaeger"),
            Some("v1.75.0")
        );
        let otelcol = pinned(OTELCOL_GO_MOD, "go.opentelemetry.io/collector/otelcol").unwrap();
        assert!(otelcol.starts_with("v0."), "{otelcol}");
    }
}
