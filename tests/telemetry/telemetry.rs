//! The real Jaeger v2 and the real OpenTelemetry Collector, both built from
//! their Go modules by `scripts/telemetry`: the shipped collector config is
//! validated by the collector itself, and a probe that lost six SYNs goes
//! from `tailprobe matrix` through the collector to Jaeger, read back
//! through Jaeger's query API by its trace id, with its phases; the alert
//! records reach the collector's logs pipeline (a file), its metrics the
//! collector's Prometheus endpoint. Both programs run inside the lab's node
//! namespace, on its own loopback: nothing of the machine is touched.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TempDir, bin};

/// The folders `scripts/telemetry` built the programs into (cached: warm,
/// it builds nothing).
fn programs() -> (PathBuf, PathBuf) {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/telemetry"))
        .output()
        .expect("scripts/telemetry runs");
    assert!(
        out.status.success(),
        "scripts/telemetry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let dir = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|d| PathBuf::from(d).join(name))
            .unwrap_or_else(|| panic!("scripts/telemetry named no {name}: {text}"))
    };
    (dir("jaeger"), dir("otelcol"))
}

#[test]
fn the_shipped_collector_config_is_valid_and_a_typo_is_not() {
    let (_, otelcol) = programs();
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/otel-collector/collector-config.yaml"
    );
    let out = Command::new(&otelcol)
        .args(["validate", "--config", shipped])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = TempDir::new("otelcol-typo");
    let typo = std::fs::read_to_string(shipped)
        .unwrap()
        .replace("exporters: [prometheus]", "exporters: [promethues]");
    let typo = dir.file("typo.yaml", &typo);
    let out = Command::new(&otelcol)
        .args(["validate", "--config"])
        .arg(&typo)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a pipeline naming no exporter");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("promethues"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process inside a namespace, killed when dropped.
struct InNs(Child);

impl InNs {
    fn start(ns: &str, program: &std::path::Path, args: &[&str], log: &std::path::Path) -> Self {
        let log = std::fs::File::create(log).unwrap();
        InNs(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for InNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A lab of three nodes, removed when dropped.
struct Lab(String);

impl Lab {
    fn up() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "tj{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab(name);
        lab.run(&["up", "--nodes", "3", "--syn-linear-timeouts", "0"]);
        lab
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new(bin())
            .arg("lab")
            .args(args)
            .args(["--name", &self.0])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(bin())
            .args(["lab", "down", "--name", &self.0])
            .output();
    }
}

/// `tailprobe matrix` inside a namespace: two probes a target, JSON.
fn matrix_in(ns: &str, cfg: &std::path::Path) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, bin(), "matrix", "--samples", "2"])
        .args(["--format", "json", "--config"])
        .arg(cfg)
        .output()
        .unwrap()
}

fn curl(ns: &str, url: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf", "--max-time", "5", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json(ns: &str, url: &str) -> Option<serde_json::Value> {
    curl(ns, url).and_then(|t| serde_json::from_str(&t).ok())
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    common::eventually(what, limit, || f().ok_or_else(|| "nothing yet".to_string()))
}

fn attr<'a>(attrs: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    attrs
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

const JAEGER: &str = "\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {receivers: [otlp], exporters: [jaeger_storage_exporter]}
  telemetry:
    metrics: {level: none}
extensions:
  jaeger_storage:
    backends: {memstore: {memory: {max_traces: 10000}}}
  jaeger_query:
    storage: {traces: memstore}
    enable_tracing: false
    http: {endpoint: 127.0.0.1:16686}
    grpc: {endpoint: 127.0.0.1:16685}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:24317}
      http: {endpoint: 127.0.0.1:24318}
exporters:
  jaeger_storage_exporter: {trace_storage: memstore}
";

/// The shipped collector config, pointed at the lab's Jaeger, its alerts
/// written to a file beside the debug log, everything on loopback.
fn collector_config(alerts: &std::path::Path) -> String {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/otel-collector/collector-config.yaml"
    ))
    .unwrap();
    let edited = shipped
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("jaeger.tailprobe.svc:4317", "127.0.0.1:24317")
        .replace(
            "  debug/alerts:\n",
            &format!(
                "  file/alerts:\n    path: {}\n    flush_interval: 200ms\n  debug/alerts:\n",
                alerts.display()
            ),
        )
        .replace(
            "exporters: [debug/alerts]",
            "exporters: [file/alerts, debug/alerts]",
        )
        .replace(
            "service:\n",
            "service:\n  telemetry: {metrics: {level: none}}\n",
        );
    assert!(edited.contains("file/alerts, debug/alerts"), "{edited}");
    assert!(edited.contains("127.0.0.1:24317"), "{edited}");
    edited
}

/// The seed's 63 s probe through the real collector into the real Jaeger.
#[test]
fn a_probe_that_lost_six_syns_is_read_back_from_jaeger_through_the_collector_as_root() {
    common::require_root("the telemetry tests");
    let (jaeger, otelcol) = programs();
    let lab = Lab::up();
    let ns = format!("{}-n1", lab.0);
    let dir = TempDir::new("telemetry");
    let alerts = dir.0.join("alerts.jsonl");
    let jcfg = dir.file("jaeger.yaml", JAEGER);
    let ccfg = dir.file("collector.yaml", &collector_config(&alerts));
    let _jaeger = InNs::start(
        &ns,
        &jaeger,
        &["--config", jcfg.to_str().unwrap()],
        &dir.0.join("jaeger.log"),
    );
    let collector = InNs::start(
        &ns,
        &otelcol,
        &["--config", ccfg.to_str().unwrap()],
        &dir.0.join("collector.log"),
    );
    wait_for("Jaeger's query API", Duration::from_secs(30), || {
        curl(&ns, "http://127.0.0.1:16686/api/services")
    });
    wait_for("the collector's health", Duration::from_secs(30), || {
        curl(&ns, "http://127.0.0.1:13133/")
    });

    // Six SYNs dropped from node1 to node2: the classic ladder's 63 s rung.
    lab.run(&[
        "fault", "drop-syn", "--from", "node1", "--to", "node2", "--count", "6",
    ]);
    let cfg = dir.file(
        "c.toml",
        "node = \"node1\"\n[probe]\ninterval = \"1s\"\njitter = \"0s\"\n\
         [otlp]\nendpoint = \"http://127.0.0.1:4318\"\nhealthy_sample_ratio = 0.0\n\
         [[target]]\nname = \"svc-node2\"\nurl = \"http://10.96.0.12/\"\nnode = \"node2\"\n\
         [[target]]\nname = \"svc-node3\"\nurl = \"http://10.96.0.13/\"\nnode = \"node3\"\n",
    );
    let out = matrix_in(&ns, &cfg);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let finding = &report["findings"][0];
    assert_eq!(finding["kind"], "syn-retransmit-ladder", "{report:#}");
    let trace_id = finding["examples"][0]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("an example trace: {finding:#}"))
        .to_string();

    // The trace, by its id, through Jaeger's own API (OTLP/JSON).
    let trace = wait_for("the trace in Jaeger", Duration::from_secs(30), || {
        json(
            &ns,
            &format!("http://127.0.0.1:16686/api/v3/traces/{trace_id}"),
        )
    });
    let rs = &trace["result"]["resourceSpans"][0];
    assert_eq!(
        attr(&rs["resource"]["attributes"], "service.name").and_then(|v| v["stringValue"].as_str()),
        Some("tailprobe"),
        "{trace:#}"
    );
    let spans: Vec<&serde_json::Value> = trace["result"]["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["scopeSpans"].as_array().unwrap())
        .flat_map(|s| s["spans"].as_array().unwrap())
        .collect();
    let root = spans
        .iter()
        .find(|s| s["name"] == "GET svc-node2")
        .unwrap_or_else(|| panic!("the probe's span: {trace:#}"));
    let retransmits = attr(&root["attributes"], "tailprobe.syn_retransmits")
        .and_then(|v| v["intValue"].as_str())
        .and_then(|v| v.parse::<u32>().ok());
    assert_eq!(retransmits, Some(6), "{root:#}");
    let rung =
        attr(&root["attributes"], "tailprobe.rung_seconds").and_then(|v| v["doubleValue"].as_f64());
    assert_eq!(rung, Some(63.0), "{root:#}");
    // The SYNs as the kernel counted them while the probe waited: one
    // event per retransmission seen, in order (the last may land with the
    // SYN-ACK, before the next look).
    let seen: Vec<i64> = root["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "SYN retransmitted")
        .filter_map(|e| attr(&e["attributes"], "tailprobe.syn_retransmits"))
        .filter_map(|v| v["intValue"].as_str()?.parse().ok())
        .collect();
    assert!(
        seen.len() >= 5 && seen.windows(2).all(|w| w[0] < w[1]),
        "{root:#}"
    );
    let phases: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    for phase in ["connect", "first byte"] {
        assert!(phases.contains(&phase), "{phase}: {phases:?}");
    }
    // The sampler keeps the ladder's probes and drops the healthy ones:
    // every trace Jaeger holds is a probe of svc-node2.
    let all = json(
        &ns,
        "http://127.0.0.1:16686/api/traces?service=tailprobe&lookback=1h&limit=100",
    )
    .expect("Jaeger's search");
    let names: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap())
        .filter_map(|s| s["operationName"].as_str())
        .filter(|n| n.starts_with("GET "))
        .map(str::to_string)
        .collect();
    assert_eq!(names, ["GET svc-node2", "GET svc-node2"], "{all:#}");

    // The alert records through the collector's logs pipeline.
    let records = wait_for(
        "the alert records in the file",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&alerts).ok()?;
            let recs: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .flat_map(|doc| {
                    doc["resourceLogs"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .flat_map(|r| r["scopeLogs"].as_array().cloned().unwrap_or_default())
                        .flat_map(|s| s["logRecords"].as_array().cloned().unwrap_or_default())
                })
                .collect();
            (!recs.is_empty()).then_some(recs)
        },
    );
    let raised = records
        .iter()
        .find(|r| {
            attr(&r["attributes"], "tailprobe.alert.phase").and_then(|v| v["stringValue"].as_str())
                == Some("raised")
        })
        .unwrap_or_else(|| panic!("a raised alert: {records:#?}"));
    assert!(
        attr(&raised["attributes"], "tailprobe.alert.key").is_some(),
        "{raised:#}"
    );
    assert!(
        raised["body"]["stringValue"]
            .as_str()
            .is_some_and(|b| b.contains("svc-node2")),
        "{raised:#}"
    );

    // The probes' metrics on the collector's Prometheus endpoint.
    let metrics = wait_for(
        "tailprobe's metrics on the collector",
        Duration::from_secs(30),
        || curl(&ns, "http://127.0.0.1:8889/metrics").filter(|m| m.contains("tailprobe_")),
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tailprobe_") && l.contains("svc-node2")),
        "{metrics}"
    );

    // Scraped by a real Prometheus, as a cluster's would scrape the
    // collector: tailprobe's series arrive with their labels.
    let data = dir.0.join("prometheus");
    std::fs::create_dir_all(&data).unwrap();
    let prom_cfg = dir.file(
        "prometheus.yml",
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: collector\n    static_configs:\n      - targets: [\"127.0.0.1:8889\"]\n",
    );
    let _prometheus = InNs::start(
        &ns,
        std::path::Path::new("/usr/bin/prometheus"),
        &[
            &format!("--config.file={}", prom_cfg.display()),
            &format!("--storage.tsdb.path={}", data.display()),
            "--web.listen-address=127.0.0.1:9090",
        ],
        &dir.0.join("prometheus.log"),
    );
    let all_tailprobe =
        "http://127.0.0.1:9090/api/v1/query?query=%7B__name__%3D~%22tailprobe_.%2A%22%7D";
    let scraped = wait_for(
        "tailprobe's series in Prometheus",
        Duration::from_secs(60),
        || {
            json(&ns, all_tailprobe).filter(|v| {
                v["data"]["result"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|r| r["metric"].to_string().contains("svc-node2"))
                })
            })
        },
    );
    let series = &scraped["data"]["result"][0]["metric"];
    assert_eq!(series["job"], "collector", "{scraped:#}");
    assert_eq!(series["exported_job"], "tailprobe", "{scraped:#}");

    // The collector gone: the run still ends on time, its exports dropped
    // and said, never waited on past the flush budget.
    drop(collector);
    lab.run(&["fault", "clear"]);
    let t0 = Instant::now();
    let out = matrix_in(&ns, &cfg);
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}: {err}");
    assert!(err.contains("OTLP"), "the dropped exports are said: {err}");
}

/// `lab demo --telemetry`: the lab's own Jaeger and collector, the demo's
/// last lines a link that opens the verdict's example trace (a probe that
/// lost the scenario's two SYNs); `lab down` stops both.
#[test]
fn the_demo_prints_a_jaeger_link_that_opens_the_verdicts_trace_as_root() {
    programs();
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "tk{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    );
    // Removed however the test ends.
    let lab = Lab(name.clone());
    let out = Command::new(bin())
        .args(["lab", "demo", "--fault", "drop-syn", "--samples", "3"])
        .args(["--telemetry", "--name", &name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = text
        .lines()
        .find_map(|l| l.strip_prefix("the verdict's example trace: "))
        .unwrap_or_else(|| panic!("a trace link: {text}"))
        .to_string();
    assert!(link.starts_with("http://127.0.0.1:"), "{link}");
    let get = |url: &str| {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", url])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .flatten()
    };
    let trace = wait_for(
        "the linked trace in Jaeger",
        Duration::from_secs(30),
        || get(&link),
    );
    let root = trace["result"]["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["scopeSpans"].as_array().unwrap())
        .flat_map(|s| s["spans"].as_array().unwrap())
        .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("GET ")))
        .cloned()
        .unwrap_or_else(|| panic!("the probe's span: {trace:#}"));
    let retransmits = attr(&root["attributes"], "tailprobe.syn_retransmits")
        .and_then(|v| v["intValue"].as_str())
        .and_then(|v| v.parse::<u32>().ok());
    assert_eq!(retransmits, Some(2), "the scenario's 3 s rung: {root:#}");
    drop(lab);
    assert!(get(&link).is_none(), "lab down stops Jaeger");
}
