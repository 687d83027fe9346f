//! deploy/grafana's dashboard asks only for what tailprobe exports: every
//! metric name in every query is one that a running prober, a running hub
//! or the shipped recording rules produce, and every query parses as
//! PromQL (`promtool check rules`, Grafana's variables filled in).

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Behaviour, Server, SynBlackhole, TempDir, free_port, get};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every sample name in a text-format exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Scrapes `addr` until every `needle` shows.
async fn scrape_until(addr: &str, needles: &[&str]) -> String {
    common::eventually_async(
        &format!("{addr}/metrics showing {needles:?}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let body = match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => get(addr, "/metrics").await.2,
                Err(_) => String::new(),
            };
            if needles.iter().all(|n| body.contains(n)) {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await
}

/// Every (panel title, expr) of the dashboard, rows' panels included.
fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The metric names an expression reads: tailprobe's own, by prefix.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("tailprobe") {
        let start = i + at;
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b':')
        {
            end += 1;
        }
        // Inside a string (a label value) it is not a metric.
        let quotes = expr[..start].matches('"').count();
        if boundary && quotes.is_multiple_of(2) {
            out.push(expr[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_reads_metrics_tailprobe_exports() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/deploy/grafana/tailprobe-dashboard.json"))
            .unwrap(),
    )
    .unwrap();

    // A prober whose targets make every family show: an ok and a refused
    // target (probes, connect histogram, SYN counter, a finding), one whose
    // SYNs are dropped (stalls in progress), an SLO, and a Kubernetes API
    // that does not answer (the watch is down).
    let ok = Server::start(Behaviour::ok()).await;
    let hole = SynBlackhole::new();
    let dir = TempDir::new("dashboard");
    let closed = free_port();
    let kubeconfig = dir.file(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{closed}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    );
    let prober = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "prober.toml",
        &format!(
            "node = \"node2\"\n[probe]\ninterval = \"50ms\"\njitter = \"0s\"\n[server]\nlisten = \"{prober}\"\n\
             [detect]\ninterval = \"300ms\"\n\
             [kubernetes]\nnamespace = \"tailprobe\"\necho_listen = \"127.0.0.1:0\"\n\
             [[target]]\nname = \"fine\"\nurl = \"{}\"\nnode = \"node1\"\n\
             [[target]]\nname = \"gone\"\nurl = \"http://127.0.0.1:{closed}/\"\nnode = \"node1\"\n\
             [[target]]\nname = \"stuck\"\nurl = \"http://{}/\"\nnode = \"node1\"\n\
             [[slo]]\nname = \"all\"\ntargets = [\"*\"]\nobjective = 0.99\nthreshold = \"1s\"\n",
            ok.url("/"),
            hole.addr
        ),
    );
    let (_prober, _log) = common::daemon(&cfg, &[("KUBECONFIG", kubeconfig.to_str().unwrap())]);
    let prober_text = scrape_until(
        &prober,
        &[
            "tailprobe_findings{",
            "tailprobe_kubernetes_watch_up{",
            "tailprobe_slo_burn_rate{",
            "tailprobe_probes_stalled{",
        ],
    )
    .await;

    let hub = format!("127.0.0.1:{}", free_port());
    let hub_cfg = dir.file(
        "hub.toml",
        &format!(
            "[server]\nlisten = \"{hub}\"\n[hub]\nprobers = [\"http://{prober}\"]\ninterval = \"1s\"\ntimeout = \"800ms\"\n"
        ),
    );
    let _hub = tokio::process::Command::new(common::bin())
        .args(["hub", "--config", hub_cfg.to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let hub_text = scrape_until(&hub, &["tailprobe_hub_findings{", "tailprobe_hub_probers{"]).await;

    let mut exported = sample_names(&prober_text);
    exported.extend(sample_names(&hub_text));
    let rules: Value = serde_norway::from_str(
        &std::fs::read_to_string(format!(
            "{ROOT}/deploy/prometheus-operator/prometheusrule.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    for g in rules["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            if let Some(rec) = r["record"].as_str() {
                exported.insert(rec.to_string());
            }
        }
    }

    let qs = queries(&dash);
    assert!(qs.len() >= 12, "{qs:?}");
    let mut rules_file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, expr)) in qs.iter().enumerate() {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{title}: reads no tailprobe metric: {expr}"
        );
        for n in &names {
            assert!(
                exported.contains(n),
                "{title}: {n} is not exported (have {exported:?})"
            );
        }
        let promql = expr
            .replace("$__rate_interval", "5m")
            .replace("$source_node", ".*")
            .replace("$source_kind", ".*");
        assert!(
            !promql.contains('$'),
            "{title}: an unknown variable in {expr}"
        );
        rules_file += &format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&promql).unwrap()
        );
    }
    let file = dir.file("dashboard-rules.yml", &rules_file);
    let out = std::process::Command::new("/usr/bin/promtool")
        .args(["check", "rules", file.to_str().unwrap()])
        .output()
        .expect("promtool (Debian's prometheus package; ./scripts/test installs it)");
    assert!(
        out.status.success(),
        "the dashboard's PromQL: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every panel and variable asks the chosen Prometheus data source.
    assert_eq!(dash["templating"]["list"][0]["type"], "datasource");
    for (title, _) in &qs {
        let p = dash["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"] == title.as_str())
            .unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
    }
}

#[test]
fn metric_names_are_read_outside_label_values_only() {
    assert_eq!(
        metric_names(
            r#"sum(rate(tailprobe_probes_total{target="tailprobe_x"}[5m])) / tailprobe:slo_error_ratio:rate5m"#
        ),
        ["tailprobe_probes_total", "tailprobe:slo_error_ratio:rate5m"]
    );
}
