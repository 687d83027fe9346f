//! OTLP against a real receiver process (oteltest's gRPC and HTTP sinks,
//! started from tests/otlp_receiver.py): spans with their attributes and
//! parent/child structure, events for SYN retransmissions, metrics with an
//! exponential histogram, over HTTP configured only through OTEL_* variables
//! and over gRPC configured through [otlp].

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::otlp::{Receiver, attr, log_records, phase};
use common::{Behaviour, Server, SynBlackhole, TempDir, bin, free_port};
use serde_json::Value;

fn matrix(cfg: &std::path::Path, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args([
        "matrix",
        "--config",
        cfg.to_str().unwrap(),
        "--samples",
        "2",
    ]);
    for k in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_SERVICE_NAME",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Waits up to 10 s for `ready`, without failing: the assertions after it
/// say what was missing.
fn wait_until(mut ready: impl FnMut() -> bool) {
    common::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        ready().then_some(())
    });
}

#[test]
fn http_export_configured_only_by_otel_variables() {
    let rx = Receiver::start();
    let hole = SynBlackhole::new();
    let closed = free_port();
    let dir = TempDir::new("otlp-http");
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[matrix]\nspacing = \"0s\"\n\
             [[target]]\nname = \"refused\"\nurl = \"http://127.0.0.1:{closed}/\"\nnode = \"node1\"\n\
             [[target]]\nname = \"stalled\"\nurl = \"http://{}/\"\nnode = \"node1\"\ntimeout = \"1500ms\"\n",
            hole.addr
        ),
    );
    let out = matrix(
        &cfg,
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", rx.http),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_SERVICE_NAME", "tp-otel-test".into()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test".into(),
            ),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(|| rx.spans("http").len() >= 6);
    let spans = rx.spans("http");
    let roots: Vec<&(Value, Value)> = spans
        .iter()
        .filter(|(_, s)| s["name"].as_str().unwrap().starts_with("GET "))
        .collect();
    assert_eq!(roots.len(), 4, "failed probes are always kept: {spans:#?}");
    for (res, s) in &roots {
        assert_eq!(attr(res, "service.name").as_deref(), Some("tp-otel-test"));
        assert_eq!(attr(res, "deployment.environment").as_deref(), Some("test"));
        let a = &s["attributes"];
        assert_eq!(attr(a, "tailprobe.path").as_deref(), Some("cross-node"));
        assert_eq!(attr(a, "k8s.node.name").as_deref(), Some("node2"));
        assert_eq!(
            attr(a, "tailprobe.destination.node").as_deref(),
            Some("node1")
        );
        assert_eq!(attr(a, "tailprobe.source.kind").as_deref(), Some("host"));
        assert_eq!(attr(a, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(s["status"]["code"], "STATUS_CODE_ERROR");
        assert_eq!(s["kind"], "SPAN_KIND_CLIENT");
    }
    let refused = roots
        .iter()
        .find(|(_, s)| s["name"] == "GET refused")
        .unwrap();
    assert_eq!(
        attr(&refused.1["attributes"], "error.type").as_deref(),
        Some("refused")
    );
    assert_eq!(
        attr(&refused.1["attributes"], "server.port"),
        Some(closed.to_string())
    );
    // The stalled probe: a SYN retransmission seen while connecting, as an
    // event, and a connect child span under it.
    let stalled = &roots
        .iter()
        .find(|(_, s)| s["name"] == "GET stalled")
        .unwrap()
        .1;
    let a = &stalled["attributes"];
    assert_eq!(
        attr(a, "tailprobe.outcome").as_deref(),
        Some("connect-timeout")
    );
    assert_eq!(attr(a, "tailprobe.syn_retransmits").as_deref(), Some("1"));
    assert_eq!(attr(a, "tailprobe.rung_seconds").as_deref(), Some("1"));
    assert_eq!(
        stalled["events"][0]["name"], "SYN retransmitted",
        "{stalled:#}"
    );
    let connect = spans
        .iter()
        .find(|(_, s)| s["name"] == "connect" && s["parentSpanId"] == stalled["spanId"])
        .expect("a connect span under the probe span");
    assert_eq!(connect.1["traceId"], stalled["traceId"]);
    wait_until(|| !rx.metric_names("http").is_empty());
    let names: Vec<String> = rx
        .metric_names("http")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"tailprobe.probes".to_string()), "{names:?}");
    assert!(
        names.contains(&"tailprobe.syn_retransmits".to_string()),
        "{names:?}"
    );
    // A one-shot run raises its findings as alert records at its end, each
    // linked to an example probe trace that was exported too.
    wait_until(|| !log_records(&rx).is_empty());
    let records = log_records(&rx);
    let kinds: Vec<String> = records
        .iter()
        .filter_map(|r| attr(&r["attributes"], "tailprobe.finding.kind"))
        .collect();
    assert!(
        kinds.contains(&"probe-failures".to_string()),
        "{records:#?}"
    );
    for r in &records {
        assert_eq!(phase(r).as_deref(), Some("raised"), "{r:#}");
        let trace = r["traceId"].as_str().expect("an example trace");
        assert!(
            roots.iter().any(|(_, s)| s["traceId"] == trace),
            "the record's trace is one of the run's probes: {r:#}"
        );
    }
}

#[test]
fn grpc_export_configured_in_the_file_keeps_healthy_probes_at_its_ratio() {
    let rx = Receiver::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(Server::start(Behaviour::ok()));
    let dir = TempDir::new("otlp-grpc");
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node1\"\n[matrix]\nspacing = \"0s\"\n\
             [otlp]\nendpoint = \"http://127.0.0.1:{}\"\nprotocol = \"grpc\"\nhealthy_sample_ratio = 1.0\n\
             [[target]]\nname = \"fine\"\nurl = \"{}\"\nnode = \"node1\"\n",
            rx.grpc,
            ok.url("/")
        ),
    );
    let out = matrix(&cfg, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(|| rx.spans("grpc").len() >= 6);
    let spans = rx.spans("grpc");
    let roots: Vec<&Value> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s["name"] == "GET fine")
        .collect();
    assert_eq!(roots.len(), 2, "{spans:#?}");
    for root in roots {
        let a = &root["attributes"];
        assert_eq!(attr(a, "http.response.status_code").as_deref(), Some("200"));
        assert_eq!(attr(a, "tailprobe.path").as_deref(), Some("same-node"));
        let children: Vec<&str> = spans
            .iter()
            .filter(|(_, s)| s["parentSpanId"] == root["spanId"])
            .map(|(_, s)| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(children, ["connect", "first byte"], "{spans:#?}");
    }
    wait_until(|| {
        rx.metric_names("grpc")
            .iter()
            .any(|(n, _)| n == "tailprobe.probe.duration")
    });
    let (_, duration) = rx
        .metric_names("grpc")
        .into_iter()
        .find(|(n, _)| n == "tailprobe.probe.duration")
        .expect("the duration histogram");
    let points = &duration["exponentialHistogram"]["dataPoints"];
    assert_eq!(points[0]["count"], "2", "{duration:#}");
}

/// One metric's value from the Prometheus text, summed over its series.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_costs_probing_nothing_and_export_resumes() {
    let ok = Server::start(Behaviour::ok()).await;
    let collector = free_port();
    let dir = TempDir::new("otlp-down");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node1\"\n[probe]\ninterval = \"50ms\"\njitter = \"0s\"\n[server]\nlisten = \"{listen}\"\n\
             [otlp]\nendpoint = \"http://127.0.0.1:{collector}\"\nprotocol = \"http/protobuf\"\nhealthy_sample_ratio = 1.0\nmax_queue = 256\n\
             [[target]]\nname = \"fine\"\nurl = \"{}\"\nnode = \"node1\"\n",
            ok.url("/")
        ),
    );
    let (child, mut lines) = common::daemon(&cfg, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "500")]);
    let warned = common::wait_for_line(
        &mut lines,
        "OTLP export failed; spans dropped.",
        Duration::from_secs(15),
    )
    .await;
    assert!(warned.contains("spans="), "{warned}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, _, text) = common::get(&listen, "/metrics").await;
    assert!(
        metric(&text, "tailprobe_otlp_spans_failed_total") > 0.0,
        "{text}"
    );
    // Probing kept its schedule: every probe started within 100 ms of its slot.
    let started = metric(&text, "tailprobe_probe_start_lag_seconds_count");
    let on_time = text
        .lines()
        .find(|l| l.starts_with("tailprobe_probe_start_lag_seconds_bucket{le=\"0.1\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap();
    assert!(
        started >= 40.0 && on_time == started,
        "{on_time} of {started} on time"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    assert!(rss_kib < 64 * 1024, "memory stays bounded: {rss_kib} KiB");

    // The collector comes back: export resumes.
    let rx = Receiver::start_on(free_port(), collector);
    wait_until(|| !rx.spans("http").is_empty());
    assert!(
        !rx.spans("http").is_empty(),
        "spans arrive once the collector is back"
    );
    let (_, _, text) = common::get(&listen, "/metrics").await;
    assert!(
        metric(&text, "tailprobe_otlp_spans_exported_total") > 0.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn findings_are_raised_and_resolved_as_log_records_linked_to_traces() {
    let rx = Receiver::start();
    let hole = SynBlackhole::new();
    let dir = TempDir::new("otlp-alerts");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node1\"\n[probe]\ninterval = \"100ms\"\njitter = \"0s\"\ntimeout = \"1500ms\"\n\
             [server]\nlisten = \"{listen}\"\n[detect]\ninterval = \"500ms\"\nwindow = \"3s\"\n\
             [otlp]\nendpoint = \"http://127.0.0.1:{}\"\nhealthy_sample_ratio = 0.0\nalert_resend = \"1h\"\n\
             [[target]]\nname = \"lossy\"\nurl = \"tcp://{}\"\nnode = \"node2\"\n",
            rx.http, hole.addr
        ),
    );
    let mut child = tokio::process::Command::new(bin())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until(|| {
        log_records(&rx)
            .iter()
            .any(|r| phase(r).as_deref() == Some("raised"))
    });
    let records = log_records(&rx);
    let raised = records
        .iter()
        .find(|r| phase(r).as_deref() == Some("raised"))
        .expect("an alert record");
    let a = &raised["attributes"];
    assert_eq!(
        attr(a, "tailprobe.finding.kind").as_deref(),
        Some("syn-retransmit-ladder"),
        "{raised:#}"
    );
    assert!(
        attr(a, "tailprobe.finding.scope")
            .unwrap()
            .contains("from node1"),
        "{raised:#}"
    );
    assert!(attr(a, "tailprobe.remediation").is_some());
    assert!(matches!(
        raised["severityText"].as_str(),
        Some("ERROR" | "WARN")
    ));
    assert!(
        raised["body"]["stringValue"]
            .as_str()
            .unwrap()
            .starts_with("Raised: syn-retransmit-ladder")
    );
    // The record points at an example probe's trace, which was exported too.
    let trace = raised["traceId"]
        .as_str()
        .expect("the record carries an example trace");
    let examples = attr(a, "tailprobe.example_trace_ids").unwrap();
    assert!(!examples.is_empty());
    wait_until(|| rx.spans("http").iter().any(|(_, s)| s["traceId"] == trace));
    assert!(
        rx.spans("http").iter().any(|(_, s)| s["traceId"] == trace),
        "the example trace arrived"
    );

    // Repaired: once the bad probes leave the 3 s window, the alert resolves.
    hole.repair();
    wait_until(|| {
        log_records(&rx)
            .iter()
            .any(|r| phase(r).as_deref() == Some("resolved"))
    });
    let records = log_records(&rx);
    let resolved = records
        .iter()
        .find(|r| phase(r).as_deref() == Some("resolved"))
        .expect("a resolve record");
    assert_eq!(resolved["severityText"], "INFO");
    assert_eq!(
        records
            .iter()
            .filter(|r| phase(r).as_deref() == Some("raised"))
            .count(),
        1,
        "raised once"
    );
    common::terminate(child.id().unwrap());
    let _ = child.wait().await;
}

/// Nothing is lost without a count: spans past `max_queue` are dropped and
/// counted before they reach the SDK, failed span, metric and alert exports
/// each have a counter, and probing keeps its schedule throughout.
#[tokio::test(flavor = "multi_thread")]
async fn every_loss_is_counted_when_the_queue_is_full_or_the_collector_down() {
    let ok = Server::start(Behaviour::ok()).await;
    let collector = free_port();
    let refused = free_port();
    let dir = TempDir::new("otlp-losses");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node1\"\n[probe]\ninterval = \"10ms\"\njitter = \"0s\"\n[server]\nlisten = \"{listen}\"\n\
             [detect]\ninterval = \"500ms\"\nwindow = \"10s\"\n\
             [otlp]\nendpoint = \"http://127.0.0.1:{collector}\"\nprotocol = \"http/protobuf\"\nhealthy_sample_ratio = 1.0\nmax_queue = 8\n\
             [[target]]\nname = \"fine\"\nurl = \"{}\"\nnode = \"node1\"\n\
             [[target]]\nname = \"refused\"\nurl = \"http://127.0.0.1:{refused}/\"\nnode = \"node2\"\n",
            ok.url("/")
        ),
    );
    let (mut child, mut lines) = common::daemon(
        &cfg,
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ],
    );
    common::wait_for_line(&mut lines, "Probing.", Duration::from_secs(10)).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let names = [
        "tailprobe_otlp_spans_dropped_total",
        "tailprobe_otlp_spans_failed_total",
        "tailprobe_otlp_metric_exports_failed_total",
        "tailprobe_otlp_log_records_failed_total",
    ];
    let text = common::eventually_async(
        "every loss counted",
        Duration::from_secs(15),
        Duration::from_millis(250),
        || async {
            let (_, _, text) = common::get(&listen, "/metrics").await;
            if names.iter().all(|n| metric(&text, n) > 0.0) {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    // 200 probes a second against a queue of 8 flushed every second: most
    // spans are dropped, and no more spans are lost than were made (a probe
    // is at most 4 spans: itself, dns, connect, first byte).
    let probes = metric(&text, "tailprobe_probes_total");
    let dropped = metric(&text, "tailprobe_otlp_spans_dropped_total");
    let failed = metric(&text, "tailprobe_otlp_spans_failed_total");
    assert!(dropped > failed, "dropped {dropped}, failed {failed}");
    assert!(
        dropped + failed <= 4.0 * probes,
        "{dropped} + {failed} spans lost of {probes} probes"
    );
    let late = metric(&text, "tailprobe_probe_start_lag_seconds_count")
        - metric(
            &text,
            "tailprobe_probe_start_lag_seconds_bucket{le=\"0.1\"}",
        );
    assert_eq!(late, 0.0, "probing kept its schedule");
    common::terminate(child.id().unwrap());
    let _ = child.wait().await;
}

/// A collector that never answers (its SYNs are dropped) cannot hold up a
/// stop: the flush has a budget of its own, and what it abandons is said.
#[tokio::test(flavor = "multi_thread")]
async fn a_black_holed_collector_does_not_delay_shutdown() {
    let ok = Server::start(Behaviour::ok()).await;
    let hole = SynBlackhole::new();
    let dir = TempDir::new("otlp-blackhole");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node1\"\n[probe]\ninterval = \"50ms\"\njitter = \"0s\"\n[server]\nlisten = \"{listen}\"\n\
             [otlp]\nendpoint = \"http://{}\"\nprotocol = \"http/protobuf\"\nhealthy_sample_ratio = 1.0\n\
             [[target]]\nname = \"fine\"\nurl = \"{}\"\nnode = \"node1\"\n",
            hole.addr,
            ok.url("/")
        ),
    );
    let (mut child, mut lines) = common::daemon(&cfg, &[]);
    common::wait_for_line(&mut lines, "Probing.", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t0 = Instant::now();
    common::terminate(child.id().unwrap());
    let abandoned =
        common::wait_for_line(&mut lines, "OTLP flush abandoned", Duration::from_secs(10)).await;
    assert!(abandoned.contains("signals="), "{abandoned}");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the daemon exits")
        .unwrap();
    assert!(status.success());
    assert!(
        t0.elapsed() < Duration::from_secs(7),
        "stopping took {:?}",
        t0.elapsed()
    );
}

/// Exporting never hurts probing, whatever the collector does: one that
/// accepts and never answers, and one whose SYNs are dropped. Probes keep
/// their schedule and none is skipped.
#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_hangs_or_drops_syns_costs_probing_nothing() {
    let ok = Server::start(Behaviour::ok()).await;
    let hang = Server::start(Behaviour::Hang).await;
    let hole = SynBlackhole::new();
    for (what, collector) in [("hangs", hang.addr), ("drops SYNs", hole.addr)] {
        let dir = TempDir::new("otlp-stuck");
        let listen = format!("127.0.0.1:{}", free_port());
        let cfg = dir.file(
            "c.toml",
            &format!(
                "node = \"node1\"\n[probe]\ninterval = \"20ms\"\njitter = \"0s\"\n[server]\nlisten = \"{listen}\"\n\
                 [otlp]\nendpoint = \"http://{collector}\"\nprotocol = \"http/protobuf\"\nhealthy_sample_ratio = 1.0\nmax_queue = 64\n\
                 [[target]]\nname = \"a\"\nurl = \"{}\"\nnode = \"node1\"\n\
                 [[target]]\nname = \"b\"\nurl = \"{}\"\nnode = \"node2\"\n",
                ok.url("/"),
                ok.url("/")
            ),
        );
        let (mut child, mut lines) =
            common::daemon(&cfg, &[("OTEL_METRIC_EXPORT_INTERVAL", "500")]);
        common::wait_for_line(&mut lines, "Probing.", Duration::from_secs(10)).await;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, _, text) = common::get(&listen, "/metrics").await;
        let started = metric(&text, "tailprobe_probe_start_lag_seconds_count");
        let late = started
            - metric(
                &text,
                "tailprobe_probe_start_lag_seconds_bucket{le=\"0.05\"}",
            );
        // Two targets every 20 ms for about 3 s.
        assert!(
            started >= 250.0,
            "collector {what}: {started} probes started"
        );
        assert_eq!(late, 0.0, "collector {what}: {late} probes started late");
        assert_eq!(
            metric(&text, "tailprobe_probes_skipped_total"),
            0.0,
            "collector {what}: no probe skipped"
        );
        assert!(
            metric(&text, "tailprobe_otlp_spans_dropped_total") > 0.0,
            "collector {what}: the full queue is counted: {text}"
        );
        common::terminate(child.id().unwrap());
        let _ = child.wait().await;
    }
}
