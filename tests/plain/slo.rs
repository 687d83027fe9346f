//! SLOs: the PrometheusRule is valid YAML with the policy's alerts, the
//! shipped one matches the deployed configuration, and a daemon fires a
//! burn-rate alert from its own counts.

use crate::common;

use std::time::Duration;

use common::{TempDir, bin, get};

#[test]
fn rules_are_a_prometheus_rule_with_every_window_and_alert() {
    let out = std::process::Command::new(bin())
        .args([
            "rules",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base/tailprobe.toml"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus-operator/prometheusrule.yaml"
    ))
    .unwrap();
    assert_eq!(
        text, shipped,
        "deploy/prometheus-operator/prometheusrule.yaml is `tailprobe rules --config deploy/base/tailprobe.toml`"
    );
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(doc["kind"].as_str(), Some("PrometheusRule"));
    let rules = doc["spec"]["groups"][0]["rules"].as_sequence().unwrap();
    let records: Vec<&str> = rules.iter().filter_map(|r| r["record"].as_str()).collect();
    assert_eq!(
        records,
        [
            "tailprobe:slo_error_ratio:rate5m",
            "tailprobe:slo_error_ratio:rate30m",
            "tailprobe:slo_error_ratio:rate1h",
            "tailprobe:slo_error_ratio:rate6h"
        ]
    );
    let page = rules
        .iter()
        .find(|r| r["alert"].as_str() == Some("TailprobeSloBurnPage"))
        .unwrap();
    let expr = page["expr"].as_str().unwrap();
    assert!(
        expr.contains("rate1h{slo=\"cross-node-services\"} > (14.4 * 0.001)")
            && expr.contains("rate5m{slo=\"cross-node-services\"}"),
        "{expr}"
    );
    assert_eq!(page["labels"]["severity"].as_str(), Some("page"));
}

#[test]
fn a_bad_slo_is_a_located_config_error() {
    let dir = TempDir::new("slo");
    let cfg = dir.file(
        "c.toml",
        "[[slo]]\nname = \"x\"\nobjective = 99.9\nthreshold = \"1s\"\n\
         [[target]]\nname = \"t\"\nurl = \"http://127.0.0.1:1/\"\n",
    );
    let out = std::process::Command::new(bin())
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("c.toml:2:8: SLO \"x\" has objective 99.9; write a share below 1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_fires_a_burn_rate_alert_from_its_own_counts() {
    // Every probe to this listener loses its SYNs and fails: the budget burns
    // at 1000x, past the 14.4x of a 1 s / 3 s policy.
    let hole = common::SynBlackhole::new();
    let dir = TempDir::new("slo-daemon");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[probe]\ninterval = \"100ms\"\njitter = \"0s\"\ntimeout = \"300ms\"\n\
             [server]\nlisten = \"{listen}\"\n[detect]\ninterval = \"500ms\"\n\
             [[target]]\nname = \"svc-lossy\"\nurl = \"http://{}/\"\nnode = \"node1\"\n\
             [[slo]]\nname = \"cross\"\npath = \"cross-node\"\nobjective = 0.999\nthreshold = \"1s\"\n\
             alerts = [{{ long = \"3s\", short = \"1s\", factor = 14.4, severity = \"page\" }}]\n",
            hole.addr
        ),
    );
    let (_child, mut lines) = common::daemon(&cfg, &[]);
    let firing =
        common::wait_for_line(&mut lines, "SLO alert firing.", Duration::from_secs(15)).await;
    assert!(firing.contains("SLO cross (page)"), "{firing}");
    let (_, _, metrics) = get(&listen, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("tailprobe_slo_alert{slo=\"cross\",severity=\"page\",window=\"3s\"} 1")),
        "{metrics}"
    );
    let good = metrics
        .lines()
        .find(|l| l.starts_with("tailprobe_slo_good_total"))
        .is_some_and(|l| !l.ends_with(" 0"));
    assert!(!good, "no probe was good");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tailprobe_slo_probes_total{slo=\"cross\"}")),
        "{metrics}"
    );
}
