//! `tailprobe matrix` end to end: the JSON contract, the table, exit codes.

use crate::common;

use common::{Behaviour, Server, TempDir, bin};
use tailprobe::stats::Latency;

fn config(servers: &[(&str, String, Option<&str>)]) -> String {
    let mut c = String::from("node = \"node2\"\n[matrix]\nspacing = \"1ms\"\n");
    for (name, url, node) in servers {
        c += &format!("[[target]]\nname = \"{name}\"\nurl = \"{url}\"\n");
        if let Some(n) = node {
            c += &format!("node = \"{n}\"\n");
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn json_report_holds_the_contract() {
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("matrix");
    let cfg = dir.file(
        "c.toml",
        &config(&[
            ("far", ok.url("/"), Some("node1")),
            ("near", ok.url("/"), Some("node2")),
            ("nowhere", ok.url("/"), None),
        ]),
    );
    let out = dir.0.join("report.json");
    let status = tokio::process::Command::new(bin())
        .args([
            "matrix",
            "--config",
            cfg.to_str().unwrap(),
            "--samples",
            "7",
            "--format",
            "json",
            "--output",
        ])
        .arg(&out)
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "a healthy run exits 0");
    assert_eq!(ok.accepts(), 21);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for key in [
        "source_node",
        "started_at",
        "finished_at",
        "cells",
        "findings",
    ] {
        assert!(v.get(key).is_some(), "top-level {key}");
    }
    assert_eq!(v["source_node"], "node2");
    assert_eq!(v["findings"], serde_json::json!([]));
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    let cell = |t: &str| cells.iter().find(|c| c["target"] == t).unwrap();
    assert_eq!(cell("far")["path"], "cross-node");
    assert_eq!(cell("near")["path"], "same-node");
    assert_eq!(cell("nowhere")["path"], "unknown");
    assert_eq!(cell("nowhere")["destination_node"], serde_json::Value::Null);
    for c in cells {
        for key in [
            "target",
            "url",
            "source_node",
            "destination_node",
            "path",
            "samples",
            "failures",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "syn_retransmits",
            "histogram",
        ] {
            assert!(c.get(key).is_some(), "cell key {key}");
        }
        assert_eq!(
            (c["samples"].as_u64(), c["failures"].as_u64()),
            (Some(7), Some(0))
        );
        let h = Latency::from_base64(c["histogram"].as_str().unwrap()).unwrap();
        assert_eq!(h.len(), 7, "the histogram holds every sample");
        let max_ms = h.max().unwrap().as_secs_f64() * 1e3;
        assert!((max_ms - c["max_ms"].as_f64().unwrap()).abs() < 0.01);
        assert!(c["p50_ms"].as_f64() <= c["p99_ms"].as_f64());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_exit_1_and_show_in_the_table() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("matrix");
    let cfg = dir.file(
        "c.toml",
        &config(&[("gone", format!("http://127.0.0.1:{port}/"), Some("node1"))]),
    );
    let out = tokio::process::Command::new(bin())
        .args([
            "matrix",
            "--config",
            cfg.to_str().unwrap(),
            "--samples",
            "3",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).unwrap();
    let row = table.lines().find(|l| l.starts_with("gone")).expect(&table);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..4], ["gone", "node1", "cross-node", "3"], "{row}");
    assert_eq!(cols[8], "3", "three failures: {row}");
}

#[test]
fn config_errors_exit_2_with_a_location() {
    let dir = TempDir::new("check");
    let cfg = dir.file("bad.toml", "node = \"a\"\n[probe]\nintervall = \"1s\"\n");
    for sub in ["check", "matrix", "run"] {
        let out = std::process::Command::new(bin())
            .args([sub, "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains(
                "bad.toml:3:1: unknown key \"intervall\" in [probe]; did you mean \"interval\"?"
            ),
            "{sub}: {err}"
        );
    }
    let ok = std::process::Command::new(bin())
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// A finding alone, with every probe ok, makes the run unhealthy: exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_finding_without_a_failed_probe_exits_1() {
    let hole = common::SynBlackhole::new();
    let dir = TempDir::new("matrix-finding");
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[matrix]\nspacing = \"0s\"\n\
             [[target]]\nname = \"late\"\nurl = \"tcp://{}\"\nnode = \"node1\"\ntimeout = \"10s\"\n",
            hole.addr
        ),
    );
    let run = tokio::process::Command::new(bin())
        .args([
            "matrix",
            "--config",
            cfg.to_str().unwrap(),
            "--samples",
            "3",
        ])
        .args(["--format", "json"])
        .output();
    // Every first SYN is dropped; once the listener accepts, the retransmitted
    // SYNs get through on the 1 s rung and every probe ends ok.
    let repair = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        hole.repair();
    };
    let (out, ()) = tokio::join!(run, repair);
    let out = out.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let cells = report["cells"].as_array().unwrap();
    assert!(cells.iter().all(|c| c["failures"] == 0), "{report:#}");
    assert!(
        cells.iter().all(|c| c["syn_retransmits"] == 3),
        "{report:#}"
    );
    assert_eq!(
        report["findings"][0]["kind"], "syn-retransmit-ladder",
        "{report:#}"
    );
    assert_eq!(out.status.code(), Some(1), "a finding is unhealthy");
}

/// `--format html`: the page with the run inside, one file, its data the
/// run's cells and this node's rungs.
#[tokio::test(flavor = "multi_thread")]
async fn the_html_report_carries_the_run() {
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("matrix-html");
    let cfg = dir.file(
        "c.toml",
        &config(&[
            ("far", ok.url("/"), Some("node1")),
            ("near", ok.url("/"), Some("node2")),
        ]),
    );
    let out = dir.0.join("report.html");
    let status = tokio::process::Command::new(bin())
        .args([
            "matrix",
            "--config",
            cfg.to_str().unwrap(),
            "--samples",
            "3",
        ])
        .args(["--format", "html", "--output"])
        .arg(&out)
        .env("TAILPROBE_NODE_LABELS", "topology.kubernetes.io/zone=eu-1a")
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    let start = html.find("type=\"application/json\">").unwrap() + 24;
    let end = start + html[start..].find("</script>").unwrap();
    let m: tailprobe::wire::report::ClusterMatrix =
        serde_json::from_str(&html[start..end]).unwrap();
    assert_eq!(m.cells.len(), 2);
    assert!(
        m.cells.iter().all(|c| c.cell.samples == 3
            && c.cell.connect_log_hist.iter().map(|b| b.1).sum::<u64>() == 3)
    );
    assert_eq!(m.cells[0].prober, "node2 host");
    assert_eq!(m.window, "run");
    assert!(m.rungs["node2"].len() >= 5, "{:?}", m.rungs);
    assert_eq!(
        m.node_labels["node2"]["topology.kubernetes.io/zone"],
        "eu-1a"
    );
}
