//! What discovery costs the control plane and the prober at 100, 1,000 and
//! 5,000 nodes, against the real API server (`lab up --kubernetes`:
//! kube-apiserver, etcd, the controllers and three kube-proxies, built from
//! the release `tools/` pins) with realistic churn.
//!
//! N Node objects, N per-node Services and the two probers' registration
//! slices per node (4N objects) are written through the API; one real
//! prober (probing nothing, `[probe] enabled = false`) discovers from it
//! inside a lab node, with the ServiceAccount and Role of deploy/. Then, for
//! the churn: every Node's status is written as the kubelet does (at least
//! every 5 minutes per node; here spread evenly, N / 300 writes a second),
//! and the DaemonSets roll (10 % of the nodes at a time: each restarted
//! pod's slice deleted and written again). Last, every watch relists at
//! once: the API server stopped, etcd's history compacted past every watch,
//! the API server started again, so each watch resumes into 410 Gone.
//!
//! Printed per size: objects written and their rate, heartbeats, watch
//! events at the prober (`tailprobe_kubernetes_watch_events_total`; none
//! should come from heartbeats: no Node watch) and their rate, events per
//! restarted node, the API server's CPU during the churn (cores) and its
//! RSS, the prober's RSS after discovery and its peak across the relist,
//! against the DaemonSets' 256 MiB memory limit. `cargo bench --bench
//! kube_scale [-- N...]`; needs root and the control plane's build
//! (`scripts/control-plane`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tailprobe::lab::Plan;
use tailprobe::lab::kube::{self as lab, Proc};

mod machine;

const NS: &str = "tailprobe";
/// The DaemonSets' memory limit.
const LIMIT_MIB: u64 = 256;

fn node(n: usize) -> String {
    format!("node-{n:04}")
}

/// An address per node and kind outside every lab range, so nothing is
/// reached: the prober probes nothing anyway.
fn ip(n: usize, kind: u8) -> String {
    format!("10.{}.{}.{}", 250 + kind, n / 250, 1 + n % 250)
}

fn service(n: usize) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": format!("tailprobe-node-{}", node(n)), "namespace": NS,
            "labels": {"tailprobe.io/probe": "true", "tailprobe.io/role": "node",
                "app.kubernetes.io/name": "tailprobe"},
            "annotations": {"tailprobe.io/node": node(n)}},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "targetPort": 9798, "protocol": "TCP"}]}
    }))
    .unwrap()
}

fn slice(n: usize, kind: &str) -> EndpointSlice {
    let k = u8::from(kind == "pod");
    serde_json::from_value(json!({
        "metadata": {"name": format!("tailprobe-node-{}-{kind}", node(n)), "namespace": NS,
            "labels": {"tailprobe.io/probe": "true", "tailprobe.io/role": "node",
                "tailprobe.io/source-kind": kind,
                "kubernetes.io/service-name": format!("tailprobe-node-{}", node(n)),
                "endpointslice.kubernetes.io/managed-by": "tailprobe.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip(n, k)], "nodeName": node(n),
            "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "name": format!("tp-{kind}-{n}"), "namespace": NS}}],
        "ports": [{"name": "http", "port": 9798, "protocol": "TCP"}]
    }))
    .unwrap()
}

fn node_object(n: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": node(n), "labels": {"kubernetes.io/os": "linux"}},
    }))
    .unwrap()
}

fn kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A metric of the prober, read from inside node 1 (the sum over series).
fn metric(plan: &Plan, name: &str) -> Option<f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &plan.node_ns(1)])
        .args(["curl", "-s", "-m", "5", "http://127.0.0.1:9897/metrics"])
        .output()
        .ok()?;
    let body = String::from_utf8_lossy(&out.stdout);
    let values: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn kubectl(plan: &Plan, bins: &lab::Bins, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &plan.control_ns()])
        .arg(bins.kubectl())
        .arg(format!(
            "--kubeconfig={}",
            lab::admin_kubeconfig(&plan.prefix).display()
        ))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// etcd's JSON gateway, inside the control plane's namespace.
fn etcd(plan: &Plan, call: &str, body: Value) -> Value {
    let out = Command::new("ip")
        .args(["netns", "exec", &plan.control_ns()])
        .args(["curl", "-s", "-m", "10", "-X", "POST"])
        .arg(format!("http://127.0.0.1:2379/v3/kv/{call}"))
        .args(["-d", &body.to_string()])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

struct Row {
    nodes: usize,
    objects: usize,
    write_s: f64,
    beats: u64,
    events: u64,
    churn_s: f64,
    restarted: usize,
    api_cores: f64,
    api_mib: u64,
    rss_mib: u64,
    peak_mib: u64,
    relist_s: f64,
}

fn run(n: usize, churn: Duration) -> Row {
    let bins = lab::Bins::find(None).unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("ks{}", std::process::id() % 100_000);
    let mut holder = Command::new(env!("CARGO_BIN_EXE_tailprobe"))
        .args(["lab", "up", "--kubernetes", "--hold", "--name", &prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = holder.stdout.take().unwrap();
    let up = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("node3:"));
    assert!(up, "lab up --kubernetes failed");
    let plan = Plan::new(&prefix, 3).unwrap().with_kubernetes(true);
    let root = env!("CARGO_MANIFEST_DIR");
    kubectl(
        &plan,
        &bins,
        &["apply", "-f", &format!("{root}/deploy/base/namespace.yaml")],
    );
    kubectl(
        &plan,
        &bins,
        &[
            "apply",
            "-n",
            NS,
            "-f",
            &format!("{root}/deploy/base/rbac.yaml"),
        ],
    );
    let token = kubectl(
        &plan,
        &bins,
        &["create", "token", "-n", NS, "tailprobe", "--duration=2h"],
    );
    let ca = std::fs::read_to_string(lab::state(&prefix).join("pki/ca.crt")).unwrap();
    let dir = lab::state(&prefix).join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("prober.kubeconfig");
    std::fs::write(
        &kubeconfig,
        json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {"server": format!("https://{}:6443", plan.api_ip()),
                "certificate-authority-data": b64(&ca)}}],
            "users": [{"name": "tailprobe", "user": {"token": token.trim()}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "tailprobe"}}],
            "current-context": "lab"})
        .to_string(),
    )
    .unwrap();

    // Every object through the API, 32 requests at a time.
    let t0 = Instant::now();
    lab::with_admin(&plan, move |client| async move {
        let nodes: Api<Node> = Api::all(client.clone());
        let services: Api<Service> = Api::namespaced(client.clone(), NS);
        let slices: Api<EndpointSlice> = Api::namespaced(client, NS);
        let pp = PostParams::default();
        futures::stream::iter(0..n)
            .map(|i| {
                let (nodes, services, slices, pp) = (&nodes, &services, &slices, &pp);
                async move {
                    nodes.create(pp, &node_object(i)).await.unwrap();
                    services.create(pp, &service(i)).await.unwrap();
                    for kind in ["host", "pod"] {
                        slices.create(pp, &slice(i, kind)).await.unwrap();
                    }
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        Ok(())
    })
    .unwrap();
    let write_s = t0.elapsed().as_secs_f64();

    let cfg = dir.join("prober.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"{}\"\nsource_kind = \"host\"\n[probe]\nenabled = false\n\
             [server]\nlisten = \"127.0.0.1:9897\"\n\
             [kubernetes]\nnamespace = \"{NS}\"\necho_listen = \"127.0.0.1:0\"\n",
            node(0)
        ),
    )
    .unwrap();
    let mut prober = Command::new("ip")
        .args(["netns", "exec", &plan.node_ns(1)])
        .arg(env!("CARGO_BIN_EXE_tailprobe"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("POD_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = prober.id();
    let t1 = Instant::now();
    while metric(&plan, "tailprobe_kubernetes_remote_nodes") != Some((n - 1) as f64) {
        assert!(
            t1.elapsed() < Duration::from_secs(300),
            "{n} nodes: discovery never finished"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let rss_mib = kib(pid, "VmRSS:") / 1024;

    // Churn: heartbeats at N / 300 a second and a rolling restart, through
    // the API, while the API server's CPU is read.
    let apiserver = Proc::load(&prefix, lab::APISERVER).unwrap();
    let api_pid = apiserver.pids()[0].to_string();
    let events0 = metric(&plan, "tailprobe_kubernetes_watch_events_total").unwrap_or(0.0);
    let cpu0 = machine::cpu_secs(&api_pid, false);
    let t2 = Instant::now();
    // The heartbeats and the rollout run side by side, each at its own
    // pace: a rollout step of thousands of writes must not starve the
    // heartbeats, as it would not in a cluster.
    let (beats, restarted) = lab::with_admin(&plan, move |client| async move {
        let nodes: Api<Node> = Api::all(client.clone());
        let slices: Api<EndpointSlice> = Api::namespaced(client, NS);
        let start = Instant::now();
        let beats_per_s = (n as f64 / 300.0).max(1.0);
        let heartbeats = async {
            let mut beat = 0u64;
            while start.elapsed() < churn {
                while (beat as f64) < start.elapsed().as_secs_f64() * beats_per_s {
                    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                        "reason": "KubeletReady", "lastHeartbeatTime": k8s_openapi::jiff::Timestamp::now()}]}});
                    let _ = nodes
                        .patch_status(&node(beat as usize % n), &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                    beat += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            beat
        };
        let rollout = async {
            // 10 % of the nodes at a time, each pod's slice gone and back,
            // 16 pods at once.
            let (mut restarted, steps) = (0usize, 10usize);
            while start.elapsed() < churn {
                let second = start.elapsed().as_secs_f64();
                let due = (((second / churn.as_secs_f64()) * steps as f64) as usize * n / steps).min(n);
                if restarted < due {
                    futures::stream::iter(restarted..due)
                        .map(|i| {
                            let slices = &slices;
                            async move {
                                for kind in ["host", "pod"] {
                                    let s = slice(i, kind);
                                    let name = s.metadata.name.clone().unwrap();
                                    let _ = slices.delete(&name, &DeleteParams::default()).await;
                                    let _ = slices.create(&PostParams::default(), &s).await;
                                }
                            }
                        })
                        .buffer_unordered(16)
                        .collect::<Vec<()>>()
                        .await;
                    restarted = due;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            restarted
        };
        Ok(futures::join!(heartbeats, rollout))
    })
    .unwrap();
    let churn_s = t2.elapsed().as_secs_f64();
    let api_cores = (machine::cpu_secs(&api_pid, false) - cpu0) / churn_s;
    let api_mib = kib(api_pid.parse().unwrap(), "VmRSS:") / 1024;
    // Events still in flight when the churn ends arrive within a second.
    std::thread::sleep(Duration::from_secs(2));
    let events = metric(&plan, "tailprobe_kubernetes_watch_events_total").unwrap_or(0.0) - events0;

    // Every watch relists: the history compacted past it while the API
    // server is down, so each resumes into 410 Gone.
    let relists0 = metric(&plan, "tailprobe_kubernetes_watch_relists_total").unwrap_or(0.0);
    apiserver.stop();
    let put = etcd(
        &plan,
        "put",
        json!({"key": b64("/tailprobe-bench/bump"), "value": b64("1")}),
    );
    let rev: u64 = put["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    etcd(&plan, "compaction", json!({"revision": rev}));
    let t3 = Instant::now();
    apiserver.start(&prefix).unwrap();
    let mut peak = 0;
    let mut settled = None;
    while t3.elapsed() < Duration::from_secs(300) {
        peak = peak.max(kib(pid, "VmHWM:"));
        let relisted = metric(&plan, "tailprobe_kubernetes_watch_relists_total").unwrap_or(0.0)
            >= relists0 + 2.0;
        let whole = metric(&plan, "tailprobe_kubernetes_remote_nodes") == Some((n - 1) as f64);
        if relisted && whole {
            settled = Some(t3.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    peak = peak.max(kib(pid, "VmHWM:"));
    let _ = prober.kill();
    let _ = prober.wait();
    drop(holder.stdin.take());
    let _ = holder.wait();
    Row {
        nodes: n,
        objects: 4 * n,
        write_s,
        beats,
        events: events as u64,
        churn_s,
        restarted,
        api_cores,
        api_mib,
        rss_mib,
        peak_mib: peak / 1024,
        relist_s: settled.unwrap_or(f64::NAN),
    }
}

fn main() {
    let (sizes, benching) = machine::sizes(&[100, 1000, 5000], &[100]);
    let churn = Duration::from_secs(if benching { 20 } else { 5 });
    let limit_mib = LIMIT_MIB;
    tailprobe::install_crypto();
    println!(
        "kube scale on {}: one prober against the real API server (Kubernetes {}, lab up --kubernetes); churn for {} s: node heartbeats (N/300 a second) and a rolling restart of both DaemonSets; then a relist of everything (API server stopped, etcd compacted, started)",
        machine::describe(),
        lab::bins::kubernetes_version(),
        churn.as_secs()
    );
    println!(
        "{:>6} {:>8} {:>9} {:>11} {:>8} {:>9} {:>9} {:>10} {:>10} {:>8} {:>9} {:>9}",
        "nodes",
        "objects",
        "writes/s",
        "heartbeats",
        "events",
        "events/s",
        "per node",
        "API cores",
        "API MiB",
        "RSS MiB",
        "peak MiB",
        "relist s"
    );
    for n in sizes {
        let r = run(n, churn);
        println!(
            "{:>6} {:>8} {:>9.0} {:>11} {:>8} {:>9.1} {:>9.1} {:>10.2} {:>10} {:>8} {:>9} {:>9.1}",
            r.nodes,
            r.objects,
            r.objects as f64 / r.write_s,
            r.beats,
            r.events,
            r.events as f64 / r.churn_s,
            r.events as f64 / r.restarted.max(1) as f64,
            r.api_cores,
            r.api_mib,
            r.rss_mib,
            r.peak_mib,
            r.relist_s
        );
        assert!(r.beats > 0 && r.restarted > 0);
        assert_eq!(
            r.events,
            4 * r.restarted as u64,
            "{n} nodes: events beyond the rollout's 4 a node: heartbeats reach the prober"
        );
        assert!(
            r.relist_s.is_finite(),
            "{n} nodes: the relist never settled"
        );
        assert!(
            r.peak_mib < limit_mib,
            "{n} nodes: {} MiB at the relist",
            r.peak_mib
        );
    }
}
