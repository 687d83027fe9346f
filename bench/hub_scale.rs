//! The hub at cluster scale, simulated: one process serves the window
//! documents of N nodes' probers (host and pod network, 20 remote nodes and
//! the node itself each, 20 probes per series over the window) on loopback,
//! with a planted fault (every path to node-0042 loses its first 2 SYNs);
//! a real `tailprobe hub` pulls them all, merges and judges. Printed per
//! size: bytes per prober per pull (gzip), the round's time (pull, merge,
//! judge), the hub's peak RSS, and whether the planted fault was found with
//! its scope.
//!
//!   cargo bench --bench hub_scale                  100, 1000 and 5000 nodes
//!   cargo bench --bench hub_scale -- 5000          one size

#[path = "machine.rs"]
mod machine;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tailprobe::model::{Dims, Outcome, PathKind, SourceKind};
use tailprobe::wire::window::{VERSION, WindowDoc, WindowSeries, WireSample};

const REMOTE: usize = 20;
const SAMPLES: usize = 20;
const PLANTED: &str = "node-0042";

fn node(i: usize) -> String {
    format!("node-{i:04}")
}

/// Prober `p` of `nodes`: node p / 2, host when p is even.
fn doc(p: usize, nodes: usize, now_ms: u64) -> WindowDoc {
    let n = p / 2;
    let kind = if p.is_multiple_of(2) {
        SourceKind::Host
    } else {
        SourceKind::Pod
    };
    let step = (nodes / REMOTE).max(1);
    let mut dests: Vec<usize> = (0..REMOTE)
        .map(|k| (n + 1 + k * step + p / 7) % nodes)
        .collect();
    dests.push(n);
    dests.sort_unstable();
    dests.dedup();
    let mut rng = p as u64 * 2_654_435_761 + 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % 1000
    };
    let series = dests
        .into_iter()
        .map(|d| {
            let dest = node(d);
            let fault = dest == PLANTED && d != n;
            let samples = (0..SAMPLES)
                .map(|s| {
                    let jitter = next();
                    let (connect, r) = if fault {
                        (3_000_000 + 400 + jitter * 20, 2)
                    } else {
                        (400 + jitter, 0)
                    };
                    WireSample {
                        tl: None,
                        l: None,
                        t: now_ms - 600_000 + (s as u64) * 30_000 + jitter,
                        dns: None,
                        c: Some(connect),
                        fb: Some(connect + 300),
                        z: connect + 350,
                        o: Outcome::Ok,
                        r,
                        b: 2,
                        x: None,
                    }
                })
                .collect();
            WindowSeries {
                cert_not_after: None,
                dims: Dims {
                    source_node: node(n).into(),
                    source_kind: kind,
                    destination_node: Some(dest.clone().into()),
                    target: format!("node/{dest}").into(),
                    path: if d == n {
                        PathKind::SameNode
                    } else {
                        PathKind::CrossNode
                    },
                    family: Default::default(),
                },
                url: format!("http://tailprobe-node-{dest}.tailprobe.svc/"),
                body_bytes: 2,
                dropped: 0,
                samples,
                pending: Vec::new(),
            }
        })
        .collect();
    WindowDoc {
        version: VERSION,
        source_node: node(n),
        source_kind: kind,
        generated_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        window_s: 600,
        labels: Default::default(),
        facts: Some(tailprobe::model::NodeFacts {
            node: node(n),
            kernel: Some("6.1.0-18-amd64".into()),
            syn_retries: Some(6),
            syn_linear_timeouts: Some(0),
            txrehash: Some(1),
            conntrack_udp_timeout: Some(30),
            ..Default::default()
        }),
        series,
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn median(v: &mut [usize]) -> usize {
    v.sort_unstable();
    v[v.len() / 2]
}

async fn get(url: &str) -> Option<String> {
    tailprobe::install_crypto();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .ok()?
        .get(url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

async fn run(nodes: usize) {
    let probers = nodes * 2;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let t = Instant::now();
    let docs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..probers)
            .map(|p| doc(p, nodes, now_ms).to_gzip())
            .collect(),
    );
    let built = t.elapsed();
    let mut sizes: Vec<usize> = docs.iter().map(Vec::len).collect();
    let (size_median, size_max) = (median(&mut sizes), *sizes.last().unwrap());

    let served = Arc::clone(&docs);
    let app = axum::Router::new().route(
        "/p/{i}/api/v1/window",
        axum::routing::get(move |axum::extract::Path(i): axum::extract::Path<usize>| {
            let docs = Arc::clone(&served);
            async move {
                (
                    [
                        ("content-type", "application/json"),
                        ("content-encoding", "gzip"),
                    ],
                    docs[i].clone(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = std::env::temp_dir().join(format!("tailprobe-hub-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hub_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("hub.toml");
    let mut f = std::fs::File::create(&cfg).unwrap();
    let _ = writeln!(
        f,
        "[server]\nlisten = \"127.0.0.1:{hub_port}\"\n[hub]\ninterval = \"10m\"\nforget_after = \"20m\"\ntimeout = \"10s\"\nmax_doc_bytes = 8388608\nprobers = ["
    );
    for p in 0..probers {
        let _ = writeln!(f, "  \"http://{addr}/p/{p}\",");
    }
    let _ = writeln!(f, "]");
    drop(f);
    let mut hub = tokio::process::Command::new(env!("CARGO_BIN_EXE_tailprobe"))
        .args(["hub", "--config", cfg.to_str().unwrap()])
        .env("TAILPROBE_LOG", "error")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = hub.id().unwrap();
    let base = format!("http://127.0.0.1:{hub_port}");
    let deadline = Instant::now() + Duration::from_secs(600);
    let matrix: serde_json::Value = loop {
        if let Some(body) = get(&format!("{base}/readyz")).await
            && body.starts_with("ready")
        {
            let m = get(&format!("{base}/api/v1/matrix")).await.unwrap();
            break serde_json::from_str(&m).unwrap();
        }
        assert!(Instant::now() < deadline, "the hub never finished a round");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let metrics = get(&format!("{base}/metrics")).await.unwrap_or_default();
    let round_s: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tailprobe_hub_round_seconds "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN);
    let rss = peak_rss_kib(pid);
    let _ = hub.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let found = matrix["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["kind"] == "syn-retransmit-ladder" && f["destination_node"] == PLANTED);
    let scope = found
        .map(|f| {
            format!(
                "{} ({} pairs)",
                f["scope_key"]["grouping"].as_str().unwrap_or("?"),
                f["pairs"].as_array().map_or(0, Vec::len)
            )
        })
        .unwrap_or_else(|| "NOT FOUND".into());
    let others = matrix["findings"].as_array().map_or(0, Vec::len) - usize::from(found.is_some());
    assert!(
        found.is_some() && others == 0,
        "the planted fault, and nothing else: {:#}",
        matrix["findings"]
    );
    println!(
        "{nodes:>6} {probers:>8} {:>9.1} {:>9.1} {:>9.2} {:>9.0} {:>8} {:>26} {:>6}   (documents built in {:.1} s)",
        size_median as f64 / 1024.0,
        size_max as f64 / 1024.0,
        round_s,
        rss as f64 / 1024.0,
        matrix["cells"].as_array().map_or(0, Vec::len),
        scope,
        others,
        built.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let (sizes, _) = machine::sizes(&[100, 1000, 5000], &[60]);
    println!(
        "hub scale on {}: probers host and pod, {REMOTE} remote nodes + self, {SAMPLES} probes per series; fault: every path to {PLANTED} loses 2 SYNs",
        machine::describe()
    );
    println!(
        "targets: a round within 15 s, hub RSS under 1536 MiB, at most 32 KiB per prober per pull"
    );
    println!(
        "{:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>26} {:>6}",
        "nodes",
        "probers",
        "KiB med",
        "KiB max",
        "round s",
        "RSS MiB",
        "cells",
        "planted fault scope",
        "other"
    );
    for n in sizes {
        run(n).await;
    }
}
