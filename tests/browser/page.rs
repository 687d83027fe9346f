//! The page in a real headless Chromium: the self-contained report of the
//! incident (heatmap, rung marks, cell detail by keyboard, the verdict with
//! its scope highlighted, the table view, grouping by zone, 200 % zoom),
//! and the live page of a hub and of a prober, which change in place.
//! Screenshots go to target/page-artifacts/.

use crate::common;

use std::time::{Duration, SystemTime};

use common::browser::Browser;
use serde_json::json;
use tailprobe::model::{
    Counters, DetectorConfig, Dims, NodeFacts, Outcome, OverlayDevice, PathKind, Phases, Sample,
    SeriesWindow, SourceKind, TraceRef,
};
use tailprobe::wire::report::{Cell, ClusterCell, ClusterMatrix, rungs_of};

const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn facts(node: &str) -> NodeFacts {
    NodeFacts {
        node: node.into(),
        kernel: Some("3.10.0-1160.el7.x86_64".into()),
        syn_retries: Some(6),
        syn_linear_timeouts: None,
        txrehash: Some(0),
        udp_in_csum_errors: Some(40),
        udp_in_csum_errors_delta: Some(40),
        conntrack_insert_failed: Some(0),
        conntrack_udp_timeout: Some(30),
        conntrack_udp_timeout_stream: Some(120),
        kube_proxy_ipvs: Some(false),
        overlays: vec![OverlayDevice {
            name: "vxlan.calico".into(),
            tx_checksumming: Some(true),
            tx_checksum_ip_generic: Some(true),
        }],
        counters: Counters::zero(),
        rises: Counters::zero(),
        ..NodeFacts::default()
    }
}

/// The incident: host-network cross-node probes on the 63 s rung, the rest
/// fast; node3's pod network to node1 refused (a failure, not slowness).
fn incident() -> ClusterMatrix {
    let mut windows = Vec::new();
    let mut n = 0u64;
    for src in NODES {
        for kind in [SourceKind::Host, SourceKind::Pod] {
            for dst in NODES {
                let cross = src != dst;
                let samples: Vec<Sample> = (0..20)
                    .map(|i| {
                        n += 1;
                        let (connect, r, outcome) = if cross && kind == SourceKind::Host {
                            (Some(Duration::from_millis(64_400 + i * 10)), 6, Outcome::Ok)
                        } else if src == "node3" && dst == "node1" && kind == SourceKind::Pod {
                            (None, 0, Outcome::Refused)
                        } else {
                            (Some(Duration::from_micros(600 + i * 20)), 0, Outcome::Ok)
                        };
                        Sample {
                            prober_lag_ms: None,
                            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + i),
                            phases: Phases {
                                tls: None,
                                dns: None,
                                connect,
                                first_byte: connect,
                                total: connect.unwrap_or(Duration::from_millis(1))
                                    + Duration::from_micros(300),
                            },
                            outcome,
                            syn_retransmits: r,
                            body_bytes: 2,
                            trace: Some(TraceRef {
                                trace_id: format!(
                                    "{:032x}",
                                    u128::from(n)
                                        .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                                ),
                                span_id: format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                            }),
                        }
                    })
                    .collect();
                windows.push(SeriesWindow::new(
                    Dims {
                        source_node: src.into(),
                        source_kind: kind,
                        destination_node: Some(dst.into()),
                        target: format!("svc-{dst}").into(),
                        path: if cross {
                            PathKind::CrossNode
                        } else {
                            PathKind::SameNode
                        },
                        family: Default::default(),
                    },
                    samples,
                    2,
                ));
            }
        }
    }
    let facts: Vec<NodeFacts> = NODES.iter().map(|n| facts(n)).collect();
    let findings = tailprobe::detect::detect(&windows, &facts, &DetectorConfig::default());
    let mut cells: Vec<ClusterCell> = windows
        .iter()
        .map(|w| ClusterCell {
            cell: Cell::from_samples(w.dims.clone(), "http://10.96.0.11/", &w.samples),
            prober: format!("{} {}", w.dims.source_node, w.dims.source_kind.as_str()),
        })
        .collect();
    // node2's pod network to node3: three probes stalled right now.
    cells
        .iter_mut()
        .find(|c| {
            &*c.cell.dims.source_node == "node2"
                && c.cell.dims.source_kind == SourceKind::Pod
                && c.cell.dims.destination_node.as_deref() == Some("node3")
        })
        .unwrap()
        .cell
        .waiting = [(2, 3)].into();
    ClusterMatrix {
        generated_at: Some("2026-12-01T12:00:00.000Z".into()),
        rests_on: "judged on 6 of 6 probers".into(),
        probers: [("up".to_string(), 6)].into(),
        cells,
        rungs: rungs_of(&facts),
        facts,
        findings,
        window: "10m".into(),
        windows: vec![],
        trace_url: Some("https://jaeger.example/trace/{trace_id}".into()),
        node_labels: NODES
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let zone = if i < 2 { "zone-a" } else { "zone-b" };
                (
                    n.to_string(),
                    [("topology.kubernetes.io/zone".to_string(), zone.to_string())].into(),
                )
            })
            .collect(),
    }
}

/// The colour of heatmap cell (row, column), as [r, g, b].
const PIXEL: &str = "const c = document.getElementById('heatmap'); const g = JSON.parse(c.dataset.geom); \
    const dpr = window.devicePixelRatio || 1; \
    const x = (g.label + arguments[1] * g.size + g.size * 0.25) * dpr, y = (g.top + arguments[0] * g.size + g.size * 0.75) * dpr; \
    return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));";

#[tokio::test(flavor = "multi_thread")]
async fn the_report_shows_the_incident_at_a_glance_and_in_detail() {
    let m = incident();
    assert_eq!(m.findings.len(), 2, "the ladder and the refused path");
    let dir = common::TempDir::new("page");
    let file = dir.file("report.html", &tailprobe::wire::page::report(&m));
    let b = Browser::start(1400, 1000).await;
    b.goto(&format!("file://{}", file.display())).await;
    b.until(
        "return document.body.dataset.cells",
        Duration::from_secs(10),
    )
    .await;
    // Rows: node x network (6), columns: destination (3).
    let cells = b
        .exec("return document.body.dataset.cells", json!([]))
        .await;
    assert_eq!(cells, "18");
    let rows = b
        .exec(
            "return JSON.parse(document.getElementById('heatmap').dataset.geom).nr",
            json!([]),
        )
        .await;
    assert_eq!(rows, 6);
    // Row 0 is node1 host: same-node fast (dark), cross-node slow (light).
    let same = b.exec(PIXEL, json!([0, 0])).await;
    let cross = b.exec(PIXEL, json!([0, 1])).await;
    let lum = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        lum(&cross) > lum(&same) + 200,
        "slow is light: {cross} vs {same}"
    );
    // Pointing at a cell says what it holds: stalls in progress too
    // (row 3 is node2 pod, column 2 node3).
    let said = b
        .exec(
            "const c = document.getElementById('heatmap'); const g = JSON.parse(c.dataset.geom); const r = c.getBoundingClientRect(); \
             c.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + g.label + 2.5 * g.size, clientY: r.top + g.top + 3.5 * g.size})); \
             return document.getElementById('cursor-info').textContent;",
            json!([]),
        )
        .await;
    assert!(
        said.as_str().unwrap().starts_with("node2 pod → node3")
            && said
                .as_str()
                .unwrap()
                .contains("3 still waiting on SYN retransmission"),
        "{said}"
    );
    // Keyboard: focus the heatmap, move right, open the cell.
    b.keys("#heatmap", "\u{E014}").await;
    let said = b
        .exec(
            "return document.getElementById('cursor-info').textContent",
            json!([]),
        )
        .await;
    assert!(
        said.as_str().unwrap().contains("node1 host → node2")
            && said.as_str().unwrap().contains("on the 63 s rung"),
        "{said}"
    );
    b.keys("#heatmap", "\u{E007}").await;
    let detail = b
        .exec(
            "return document.getElementById('detail-body').innerText",
            json!([]),
        )
        .await;
    let detail = detail.as_str().unwrap();
    assert!(
        detail.contains("svc-node2") && detail.contains("connect p50 / p90 / p99 / max"),
        "{detail}"
    );
    let rung_lines = b
        .exec(
            "return document.querySelectorAll('#detail-body line.rung').length",
            json!([]),
        )
        .await;
    assert_eq!(rung_lines, 6, "the classic ladder's six rungs are marked");
    let bars = b
        .exec(
            "return document.querySelectorAll('#detail-body rect.bar').length",
            json!([]),
        )
        .await;
    assert!(bars.as_u64().unwrap() >= 1);
    let link = b
        .exec(
            "return document.querySelector('#detail-body a').href",
            json!([]),
        )
        .await;
    assert!(
        link.as_str()
            .unwrap()
            .starts_with("https://jaeger.example/trace/"),
        "{link}"
    );
    b.screenshot("report-incident-detail").await;

    // The verdict: the checksum bug first, a command to copy; selecting the
    // finding outlines its scope.
    let verdict = b
        .exec(
            "return document.getElementById('verdict-body').innerText",
            json!([]),
        )
        .await;
    let verdict = verdict.as_str().unwrap();
    assert!(verdict.contains("syn-retransmit-ladder"), "{verdict}");
    assert!(
        verdict.contains("ethtool --offload vxlan.calico rx off tx off"),
        "{verdict}"
    );
    assert!(
        verdict.contains("present:") && verdict.contains("Likely:"),
        "{verdict}"
    );
    b.click(".finding").await;
    let pressed = b
        .exec(
            "return document.querySelector('.finding').getAttribute('aria-pressed')",
            json!([]),
        )
        .await;
    assert_eq!(pressed, "true");
    let outlined = b.exec(
        "const c = document.getElementById('heatmap'); const g = JSON.parse(c.dataset.geom); const dpr = window.devicePixelRatio || 1; \
         return Array.from(c.getContext('2d').getImageData((g.label + g.size + 2) * dpr, (g.top + g.size / 2) * dpr, 1, 1).data.slice(0, 3));",
        json!([]),
    ).await;
    assert_eq!(
        outlined,
        json!([255, 140, 0]),
        "the scope's cells are outlined"
    );
    b.exec("window.scrollTo(0, 0)", json!([])).await;
    b.screenshot("report-incident").await;

    // Text alternative: every cell as a table row.
    b.click("#toggle-table").await;
    let table_rows = b
        .exec(
            "return document.querySelectorAll('#table-body tbody tr').length",
            json!([]),
        )
        .await;
    assert_eq!(table_rows, 18);
    b.click("#toggle-table").await;

    // Grouped by zone: two zones, host and pod.
    b.exec(
        "const g = document.getElementById('group'); g.value = 'topology.kubernetes.io/zone'; g.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    let cells = b
        .exec("return document.body.dataset.cells", json!([]))
        .await;
    assert_eq!(cells, "8", "(zone x network) x zone");
    b.exec("window.scrollTo(0, 0)", json!([])).await;
    b.screenshot("report-by-zone").await;

    // 200 % zoom: a 700 px wide window; nothing but the heatmap scrolls.
    b.resize(700, 1000).await;
    b.exec(
        "document.body.style.zoom = '2'; window.dispatchEvent(new Event('resize'));",
        json!([]),
    )
    .await;
    let overflow = b
        .exec(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "no page-wide horizontal scroll: {overflow}"
    );
    b.exec("window.scrollTo(0, 0)", json!([])).await;
    b.screenshot("report-zoom-200").await;
}

/// A prober on `node` probing `svc-<n>` for every node at `target`, and a
/// second Service on `n2` at `flaky`.
fn prober_config(node: &str, listen: &str, target: &str, flaky: &str) -> String {
    let mut c = format!(
        "node = \"{node}\"\n[probe]\ninterval = \"200ms\"\njitter = \"0s\"\n\
         [server]\nlisten = \"{listen}\"\n[detect]\ninterval = \"500ms\"\n\
         [ui]\ntrace_url = \"https://jaeger.example/trace/{{trace_id}}\"\n"
    );
    for n in ["n1", "n2"] {
        c += &format!("[[target]]\nname = \"svc-{n}\"\nurl = \"{target}\"\nnode = \"{n}\"\n");
    }
    c += &format!("[[target]]\nname = \"svc-n2-b\"\nurl = \"{flaky}\"\nnode = \"n2\"\n");
    c
}

/// The hub's live page over two probers on loopback: it draws the cluster,
/// then, without a reload, the failures of a backend that went away and a
/// prober that stopped answering; each prober serves its own rows too.
#[tokio::test(flavor = "multi_thread")]
async fn the_live_page_changes_in_place() {
    use common::{Behaviour, Server, TempDir, free_port};
    let target = Server::start(Behaviour::ok()).await;
    let flaky = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("live-page");
    let mut probers = Vec::new();
    let mut urls = Vec::new();
    for (n, zone) in [("n1", "zone-a"), ("n2", "zone-b")] {
        let listen = format!("127.0.0.1:{}", free_port());
        let cfg = dir.file(
            &format!("{n}.toml"),
            &prober_config(n, &listen, &target.url("/"), &flaky.url("/")),
        );
        let labels = format!("topology.kubernetes.io/zone={zone}");
        probers.push(common::daemon(&cfg, &[("TAILPROBE_NODE_LABELS", &labels)]));
        urls.push(format!("http://{listen}"));
    }
    let hub_listen = format!("127.0.0.1:{}", free_port());
    let list = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let hub_cfg = dir.file(
        "hub.toml",
        &format!(
            "[server]\nlisten = \"{hub_listen}\"\n[hub]\nprobers = [{list}]\n\
             interval = \"1s\"\ntimeout = \"500ms\"\nforget_after = \"30s\"\n"
        ),
    );
    let _hub = tokio::process::Command::new(common::bin())
        .args(["hub", "--config", hub_cfg.to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let b = Browser::start(1200, 900).await;
    // The hub may still be starting: the page says so and keeps polling.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.goto(&format!("http://{hub_listen}/")).await;
    // Two sources (host), two destinations.
    b.until(
        "return document.body.dataset.cells === '4'",
        Duration::from_secs(30),
    )
    .await;
    b.exec("window.__loaded = 42", json!([])).await;
    assert_eq!(
        b.exec("return document.body.dataset.failing", json!([]))
            .await,
        "0"
    );
    let zones = b
        .exec(
            "return Array.from(document.getElementById('group').options).map(o => o.value)",
            json!([]),
        )
        .await;
    assert_eq!(zones, json!(["", "topology.kubernetes.io/zone"]));
    b.screenshot("live-hub").await;

    // A backend goes away: its cells fail, in place.
    drop(flaky);
    b.until(
        "return document.body.dataset.failing === '2'",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        b.exec("return window.__loaded", json!([])).await,
        42,
        "no reload"
    );
    let verdict = b
        .exec(
            "return document.getElementById('verdict-body').innerText",
            json!([]),
        )
        .await;
    assert!(
        verdict.as_str().unwrap().contains("probe-failures"),
        "{verdict}"
    );
    b.screenshot("live-hub-failing").await;

    // A prober stops answering: shown stale, its last data kept.
    let (mut n2, _) = probers.pop().unwrap();
    n2.kill().await.unwrap();
    let stale = b
        .until(
            "const li = document.querySelector('#probers-list li.stale'); return li ? li.innerText : ''",
            Duration::from_secs(30),
        )
        .await;
    assert!(stale.as_str().unwrap().contains("n2"), "{stale}");
    assert_eq!(
        b.exec("return window.__loaded", json!([])).await,
        42,
        "no reload"
    );
    b.screenshot("live-hub-stale").await;

    // A prober's own page: its rows, with the windows it offers.
    b.goto(&format!("{}/", urls[0])).await;
    b.until(
        "return document.body.dataset.cells === '2'",
        Duration::from_secs(20),
    )
    .await;
    let windows = b
        .exec(
            "return Array.from(document.getElementById('window').options).map(o => o.value)",
            json!([]),
        )
        .await;
    assert_eq!(windows, json!(["1m", "10m", "cumulative"]));
    b.exec(
        "const w = document.getElementById('window'); w.value = 'cumulative'; w.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.until(
        "return document.getElementById('status').textContent.startsWith('live')",
        Duration::from_secs(10),
    )
    .await;
    b.screenshot("live-prober").await;
}
