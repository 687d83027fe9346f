//! What discovery costs the control plane and the prober at 100, 1,000 and
//! 5,000 nodes, against the fake API server scaled up with realistic churn.
//!
//! The fake holds, per node, a Node object, its per-node Service and the two
//! probers' registration slices (host and pod). One real prober
//! (`tailprobe run` with `[kubernetes]`) discovers from it. Then, for
//! the churn: every Node's status is written as the kubelet does (at least
//! every 5 minutes per node; here spread evenly, N / 300 writes a second),
//! and the DaemonSets roll (10 % of the nodes at a time: each restarted
//! pod's slice is deleted and written again). Last, history is compacted
//! and every watch relists at once (410 Gone), the prober's memory peak
//! read while it holds both the old and the new lists.
//!
//! Printed per size: the heartbeats written and the watch events the
//! prober received during the churn (none should come from heartbeats: no
//! Node watch), those events per restarted node and for a whole rollout of
//! the cluster (2 probers a node, each seeing every restart), objects
//! relisted, and the prober's RSS after discovery and its peak across the
//! run, relist included, against the DaemonSets' 256 MiB memory limit. `cargo bench --bench kube_scale`
//! (20 s of churn a size); under `cargo test` 50 nodes and 3 s of churn run
//! as a smoke test, with the same assertions. `cargo bench --bench
//! kube_scale -- --real [N...]` measures the real API server instead
//! (`kube_scale_real.rs`; 1,000 nodes by default): the fake stays for the
//! 5,000-node runs, which the real control plane, kube-proxy and its
//! controllers on two cores cannot hold beside the prober.

#[path = "../tests/fake_kube/mod.rs"]
mod fake_kube;
mod machine;
#[path = "kube_scale_real.rs"]
mod real;

use std::time::{Duration, Instant};

use fake_kube::FakeApi;
use serde_json::{Value, json};

const NS: &str = "tailprobe";
/// The DaemonSets' memory limit.
const LIMIT_MIB: u64 = 256;

fn node(n: usize) -> String {
    format!("node-{n:04}")
}

/// A loopback address per node, so nothing leaves the machine.
fn ip(n: usize, kind: u8) -> String {
    format!("127.{}.{}.{}", 10 + kind, n / 250, 1 + n % 250)
}

fn node_object(n: usize, beat: u64) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node(n), "labels": {"kubernetes.io/os": "linux"}},
        "status": {"conditions": [{"type": "Ready", "status": "True",
            "lastHeartbeatTime": format!("2026-12-01T00:{:02}:{:02}Z", (beat / 60) % 60, beat % 60)}]}})
}

fn service(n: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("tailprobe-node-{}", node(n)), "namespace": NS,
            "labels": {"tailprobe.io/probe": "true", "tailprobe.io/role": "node",
                "app.kubernetes.io/name": "tailprobe"},
            "annotations": {"tailprobe.io/node": node(n)}},
        "spec": {"type": "ClusterIP", "clusterIP": ip(n, 0),
            "ports": [{"name": "http", "port": 9, "protocol": "TCP"}]}})
}

fn slice(n: usize, kind: &str) -> Value {
    let k = u8::from(kind == "pod");
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("tailprobe-node-{}-{kind}", node(n)), "namespace": NS,
            "labels": {"tailprobe.io/probe": "true", "tailprobe.io/role": "node",
                "tailprobe.io/source-kind": kind,
                "kubernetes.io/service-name": format!("tailprobe-node-{}", node(n)),
                "endpointslice.kubernetes.io/managed-by": "tailprobe.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip(n, 1 + k)], "nodeName": node(n),
            "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "name": format!("tp-{kind}-{n}"), "namespace": NS}}],
        "ports": [{"name": "http", "port": 9, "protocol": "TCP"}]})
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn metric(addr: &str, name: &str) -> Option<f64> {
    let body = reqwest::Client::builder()
        .no_proxy()
        .build()
        .ok()?
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

struct Row {
    nodes: usize,
    beats: u64,
    events: u64,
    restarted: usize,
    listed: u64,
    rss_mib: u64,
    peak_mib: u64,
    relist_s: f64,
}

async fn run(n: usize, churn: Duration, dir: &std::path::Path) -> Row {
    // The simulated probers sit on loopback addresses.
    let api = FakeApi::start_on_loopback().await;
    for i in 0..n {
        api.put("nodes", node_object(i, 0));
        api.put("services", service(i));
        api.put("endpointslices", slice(i, "host"));
        api.put("endpointslices", slice(i, "pod"));
    }
    let kubeconfig = dir.join(format!("kubeconfig-{n}"));
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let cfg = dir.join(format!("prober-{n}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "node = \"{}\"\nsource_kind = \"host\"\n[probe]\ninterval = \"10s\"\ntimeout = \"1s\"\n\
             [server]\nlisten = \"{listen}\"\n\
             [kubernetes]\nnamespace = \"{NS}\"\necho_listen = \"127.0.0.1:0\"\n",
            node(0)
        ),
    )
    .unwrap();
    let mut prober = tokio::process::Command::new(env!("CARGO_BIN_EXE_tailprobe"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("POD_NAME")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = prober.id().unwrap();
    // Discovery is done when the prober counts every other node.
    let t0 = Instant::now();
    while metric(&listen, "tailprobe_kubernetes_remote_nodes ").await != Some((n - 1) as f64) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{n} nodes: discovery never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_mib = status_kib(pid, "VmRSS:") / 1024;

    // Churn: node heartbeats at N / 300 a second, and a rolling restart.
    let (events0, listed0) = api.sent();
    let start = Instant::now();
    let beats_per_s = (n as f64 / 300.0).max(1.0);
    let mut beat = 0u64;
    let mut restarted = 0usize;
    let steps = 10usize;
    while start.elapsed() < churn {
        let second = start.elapsed().as_secs_f64();
        while (beat as f64) < second * beats_per_s {
            api.put("nodes", node_object(beat as usize % n, beat + 1));
            beat += 1;
        }
        // One tenth of the nodes per churn / steps, each pod's slice gone
        // and back.
        let due = ((second / churn.as_secs_f64()) * steps as f64) as usize * n / steps;
        while restarted < due.min(n) {
            for kind in ["host", "pod"] {
                let name = format!("tailprobe-node-{}-{kind}", node(restarted));
                api.delete("endpointslices", NS, &name);
                api.put("endpointslices", slice(restarted, kind));
            }
            restarted += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (events1, listed1) = api.sent();

    // Every watch relists at once; the peak is read across it.
    let t1 = Instant::now();
    api.compact();
    let mut peak = 0;
    let mut settled = None;
    while t1.elapsed() < Duration::from_secs(30) {
        peak = peak.max(status_kib(pid, "VmHWM:"));
        let (_, listed) = api.sent();
        if settled.is_none() && listed >= listed1 + (3 * n) as u64 {
            settled = Some(t1.elapsed().as_secs_f64());
        }
        if settled.is_some_and(|s| t1.elapsed().as_secs_f64() > s + 2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = prober.kill().await;
    let (_, listed2) = api.sent();
    Row {
        nodes: n,
        beats: beat,
        events: events1 - events0,
        restarted,
        listed: (listed1 - listed0) + (listed2 - listed1),
        rss_mib,
        peak_mib: peak / 1024,
        relist_s: settled.unwrap_or(f64::NAN),
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--real") {
        // The real API server: 1,000 nodes unless sizes are given.
        let mut sizes: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
        if sizes.is_empty() {
            sizes.push(1000);
        }
        tailprobe::install_crypto();
        tokio::task::spawn_blocking(move || real::main(&sizes, Duration::from_secs(20), LIMIT_MIB))
            .await
            .unwrap();
        return;
    }
    let (sizes, benching) = machine::sizes(&[100, 1000, 5000], &[50]);
    let churn = Duration::from_secs(if benching { 20 } else { 3 });
    tailprobe::install_crypto();
    let dir = std::env::temp_dir().join(format!("tailprobe-kube-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "kube scale on {}: one prober against the fake API server; churn for {} s: node heartbeats (N/300 a second) and a rolling restart of both DaemonSets; then a relist of everything",
        machine::describe(),
        churn.as_secs()
    );
    println!(
        "targets: node heartbeats reach no prober; memory under the {LIMIT_MIB} MiB limit with a relist in progress"
    );
    println!(
        "{:>6} {:>11} {:>9} {:>10} {:>14} {:>16} {:>8} {:>8} {:>9} {:>9}",
        "nodes",
        "heartbeats",
        "events",
        "per node",
        "per rollout",
        "cluster rollout",
        "relisted",
        "RSS MiB",
        "peak MiB",
        "relist s"
    );
    for n in sizes {
        let r = run(n, churn, &dir).await;
        let per_node = r.events as f64 / r.restarted.max(1) as f64;
        let per_rollout = per_node * r.nodes as f64;
        println!(
            "{:>6} {:>11} {:>9} {:>10.1} {:>14.0} {:>16.2e} {:>8} {:>8} {:>9} {:>9.1}",
            r.nodes,
            r.beats,
            r.events,
            per_node,
            per_rollout,
            per_rollout * 2.0 * r.nodes as f64,
            r.listed,
            r.rss_mib,
            r.peak_mib,
            r.relist_s
        );
        // Node heartbeats are not watched: what arrives is the rollout,
        // 2 slices a node, each deleted and written again.
        assert!(r.beats > 0 && r.restarted > 0);
        assert_eq!(
            r.events,
            4 * r.restarted as u64,
            "{n} nodes: events beyond the rollout's 4 a node: heartbeats reach the prober"
        );
        assert!(
            r.listed >= 3 * r.nodes as u64,
            "{n} nodes: the relist listed {} objects",
            r.listed
        );
        assert!(
            r.peak_mib < LIMIT_MIB,
            "{n} nodes: {} MiB at the relist",
            r.peak_mib
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
