//! `/metrics` as Prometheus itself reads it: `promtool check metrics` on a
//! running daemon's exposition, the content type that matches the body, a
//! real Prometheus scrape that keeps every counter's type and help, the
//! series budget of a target, and the shipped rules checked and unit-tested
//! by `promtool`. The test command installs Debian's `prometheus` package.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Behaviour, Server, TempDir, free_port};

fn promtool() -> Command {
    assert!(
        std::path::Path::new("/usr/bin/promtool").exists(),
        "promtool is missing: apt-get install prometheus (./scripts/test installs it)"
    );
    Command::new("/usr/bin/promtool")
}

/// A GET with an Accept header: (content type, body).
async fn scrape(addr: &str, accept: Option<&str>) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept
        .map(|a| format!("accept: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET /metrics HTTP/1.0\r\nhost: x\r\n{accept}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let ct = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap();
    (ct, body.to_string())
}

fn check_metrics(body: &str) -> (bool, String) {
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_daemon_passes_promtool_and_a_real_scrape_keeps_types() {
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("prometheus");
    let listen = format!("127.0.0.1:{}", free_port());
    let refused = free_port();
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[probe]\ninterval = \"100ms\"\njitter = \"0s\"\n[server]\nlisten = \"{listen}\"\n\
             [[target]]\nname = \"far\"\nurl = \"{}\"\nnode = \"node1\"\n\
             [[target]]\nname = \"closed\"\nurl = \"http://127.0.0.1:{refused}/\"\nnode = \"node1\"\n\
             [[slo]]\nname = \"all\"\ntargets = [\"*\"]\nobjective = 0.99\nthreshold = \"1s\"\n",
            ok.url("/"),
        ),
    );
    let (_child, mut stderr) = common::daemon(&cfg, &[]);
    common::wait_for_line(&mut stderr, "Probing.", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    // curl and old scrapers: the text format, labelled as such.
    let (ct, text) = scrape(&listen, None).await;
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF"), "{text}");
    let (ok_, said) = check_metrics(&text);
    assert!(ok_, "promtool check metrics: {said}\n{text}");
    assert!(
        text.contains("# TYPE tailprobe_probes_total counter")
            && text.contains("# HELP tailprobe_probes_total "),
        "{text}"
    );
    // The budget: a target over one path costs 35 series by default (31
    // connect buckets, sum, count, ok, SYN retransmits), plus one per
    // other outcome seen.
    let series = |t: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!("target=\"{t}\"")))
            .count()
    };
    assert_eq!(series("far"), 35, "{text}");
    // Refused: no connect time, so counters only (ok at 0, refused, SYNs).
    assert_eq!(series("closed"), 3, "{text}");
    let zero = text
        .lines()
        .find(|l| l.starts_with("tailprobe_syn_retransmits_total{") && l.contains("\"far\""))
        .expect("SYN retransmits start at zero");
    assert!(zero.ends_with(" 0"), "{zero}");

    // Prometheus asks for OpenMetrics and gets it.
    let (ct, om) = scrape(
        &listen,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE tailprobe_probes counter"), "{om}");

    // A real Prometheus scrape: the metadata (type and help) arrives.
    let web = format!("127.0.0.1:{}", free_port());
    let prom_cfg = dir.file(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tailprobe\n    static_configs:\n      - targets: [\"{listen}\"]\n"
        ),
    );
    let data = prom_cfg.parent().unwrap().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut prom = tokio::process::Command::new("/usr/bin/prometheus")
        .args([
            &format!("--config.file={}", prom_cfg.display()),
            &format!("--storage.tsdb.path={}", data.display()),
            &format!("--web.listen-address={web}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus (Debian's prometheus package) runs");
    let client = {
        tailprobe::install_crypto();
        reqwest::Client::builder().no_proxy().build().unwrap()
    };
    let get = |path: String| {
        let client = client.clone();
        let url = format!("http://{web}{path}");
        async move {
            let r = client.get(url).send().await.ok()?;
            let v: serde_json::Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
            Some(v)
        }
    };
    let (meta, retrans) = common::eventually_async(
        "Prometheus showing tailprobe_probes' metadata and the SYN counter",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            // Over OpenMetrics the family is `tailprobe_probes`; over the text
            // format it is its sample name.
            let meta = get("/api/v1/metadata".into()).await;
            let retrans = get(
                "/api/v1/query?query=tailprobe_syn_retransmits_total%7Btarget%3D%22far%22%7D"
                    .into(),
            )
            .await;
            let has_meta = meta
                .as_ref()
                .is_some_and(|m| m["data"]["tailprobe_probes"].is_array());
            let has_value = retrans.as_ref().is_some_and(|r| {
                r["data"]["result"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            });
            match (meta, retrans) {
                (Some(m), Some(r)) if has_meta && has_value => Ok((m, r)),
                (meta, retrans) => Err(format!("{meta:?} {retrans:?}")),
            }
        },
    )
    .await;
    let m = &meta["data"]["tailprobe_probes"][0];
    assert_eq!(m["type"], "counter", "{meta}");
    assert_eq!(m["help"], "Probes finished, by outcome.", "{meta}");
    assert_eq!(retrans["data"]["result"][0]["value"][1], "0", "{retrans}");
    let _ = prom.kill().await;
}

/// The shipped PrometheusRule's spec as a plain rules file.
fn shipped_rules(dir: &TempDir) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus-operator/prometheusrule.yaml"
    ))
    .unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&shipped).unwrap();
    dir.file("rules.yml", &serde_norway::to_string(&doc["spec"]).unwrap())
}

#[test]
fn the_shipped_rules_pass_promtool_and_fire_on_what_they_claim() {
    let dir = TempDir::new("rules");
    let rules = shipped_rules(&dir);
    let out = promtool()
        .args(["check", "rules", rules.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A finding held for 2 m pages once, with its labels; discovery down
    // for 15 m raises a ticket; an SLO whose every probe fails pages.
    let tests = dir.file(
        "tests.yml",
        &format!(
            r#"rule_files: ["{}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'tailprobe_findings{{kind="syn-retransmit-ladder",scope="kind-path/host/cross-node",cause="vxlan-udp-checksum-offload",locus="network",pod="p1"}}'
        values: '1x5'
      - series: 'tailprobe_kubernetes_watch_up{{namespace="tailprobe",pod="p1",resource="services"}}'
        values: '0x20'
      - series: 'tailprobe_slo_probes_total{{slo="cross-node-services"}}'
        values: '0+60x70'
      - series: 'tailprobe_slo_good_total{{slo="cross-node-services"}}'
        values: '0x70'
    alert_rule_test:
      - eval_time: 2m
        alertname: TailprobeFinding
        exp_alerts:
          - exp_labels:
              severity: page
              kind: syn-retransmit-ladder
              scope: kind-path/host/cross-node
              cause: vxlan-udp-checksum-offload
              locus: network
            exp_annotations:
              summary: "tailprobe finds syn-retransmit-ladder on kind-path/host/cross-node (network)"
              description: "A prober's detector raised syn-retransmit-ladder on kind-path/host/cross-node; it lies in the network, likeliest cause vxlan-udp-checksum-offload. The probers' /api/v1/findings carry the evidence and the remediation."
              runbook_url: "https://github.com/tailprobe/tailprobe/blob/main/README.md#how-the-detector-decides"
      - eval_time: 15m
        alertname: TailprobeDiscoveryDown
        exp_alerts:
          - exp_labels:
              severity: ticket
              namespace: tailprobe
              pod: p1
              resource: services
            exp_annotations:
              summary: "tailprobe cannot watch services"
              description: "The prober p1 keeps probing its last targets, but new nodes and Services go unprobed until the watch of services works again (API server unreachable, or RBAC)."
              runbook_url: "https://github.com/tailprobe/tailprobe/blob/main/README.md#kubernetes"
      - eval_time: 5m
        alertname: TailprobeDiscoveryDown
        exp_alerts: []
      - eval_time: 65m
        alertname: TailprobeSloBurnPage
        exp_alerts:
          - exp_labels:
              severity: page
              slo: cross-node-services
            exp_annotations:
              summary: "SLO cross-node-services burns its error budget over 14.4x too fast"
              description: "Over 1h and 5m, more than 0.0144 of probes (14.4x the budget of 0.1%) were not ok within 1s. See /api/v1/findings on the probers for the cause."
              runbook_url: "https://github.com/tailprobe/tailprobe/blob/main/README.md#slos"
"#,
            rules.display()
        ),
    );
    let out = promtool()
        .args(["test", "rules", tests.to_str().unwrap()])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool test rules: {said}");
}
