//! The node agent: what stands in for the kubelet on a lab node, where no
//! container runtime exists. With the node's own credentials (so the Node
//! authorizer and NodeRestriction judge it as they judge a kubelet) it keeps
//! the node's Lease and Ready condition, and runs every pod bound to its
//! node as processes: host-network pods in the node's namespace, the others
//! in a network namespace of their own (`sandbox`), each from its spec
//! (`spec`) until it is deleted (`pod`).
//!
//! Invariant: the agent touches only its own node's objects and its own
//! pods' namespaces; a pod it cannot run says why in its status.

mod container;
mod pod;
pub mod sandbox;
pub mod spec;
mod status;
mod volumes;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::lab::{LabError, Plan};

/// What every pod of the node shares.
pub struct Ctx {
    pub client: kube::Client,
    pub plan: Plan,
    pub node_index: usize,
    pub node: String,
    pub node_ip: Ipv4Addr,
    /// The tailprobe binary, bound at `/tailprobe` in every container.
    pub exe: PathBuf,
    /// Where the node's pods keep their files: `<state>/kubernetes/pods/<node>`.
    pub dir: PathBuf,
    pub system: Vec<sandbox::SystemDir>,
    pub http: reqwest::Client,
    slots: Mutex<Vec<Option<String>>>,
}

impl Ctx {
    fn take_slot(&self, uid: &str) -> Option<usize> {
        let mut s = self.slots.lock().expect("slots lock");
        let k = s.iter().position(Option::is_none)?;
        s[k] = Some(uid.to_string());
        Some(k)
    }
    fn free_slot(&self, k: usize) {
        if let Some(slot) = self.slots.lock().expect("slots lock").get_mut(k) {
            *slot = None;
        }
    }
}

/// Runs the agent of node `i` until cancelled. It runs inside the node's
/// namespace (`lab up` starts it there).
pub async fn run(plan: Plan, i: usize, cancel: CancellationToken) -> Result<(), LabError> {
    crate::install_crypto();
    let node = plan.node_name(i);
    let kubeconfig = super::kubeconfig_path(&plan.prefix, &super::pki::Identity::node(&node));
    let client = super::client_from(&kubeconfig).await?;
    let exe = std::env::current_exe().map_err(|e| LabError::Kernel {
        what: format!("cannot find this program's path ({e})"),
    })?;
    let dir = super::state(&plan.prefix).join("pods").join(&node);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::Kernel {
        what: format!("cannot create {} ({e})", dir.display()),
    })?;
    sweep(&plan, i, &dir);
    // Readiness and liveness checks over plain HTTP: no system roots.
    let http = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([])
        .build()
        .map_err(|e| LabError::Usage(e.to_string()))?;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        node_ip: plan.underlay_ip(i),
        plan,
        node_index: i,
        node: node.clone(),
        exe,
        dir,
        system: sandbox::system_dirs(),
        http,
        slots: Mutex::new(vec![None; crate::lab::plan::MAX_PODS_PER_NODE]),
    });
    tracing::info!(node = %node, "Node agent started.");
    let beat = tokio::spawn(heartbeat(Arc::clone(&ctx), cancel.clone()));
    let pods = tokio::spawn(pods(Arc::clone(&ctx), cancel.clone()));
    cancel.cancelled().await;
    let _ = beat.await;
    let _ = pods.await;
    Ok(())
}

/// Pods of an agent that died: their processes (pids in the pod folders)
/// and network namespaces go before this agent runs the pods anew.
fn sweep(plan: &Plan, i: usize, dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.path().extension().is_some_and(|e| e == "pid")
                && let Ok(pid) = std::fs::read_to_string(f.path())
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
    let prefix = format!("{}-k{i}-", plan.prefix);
    for ns in crate::lab::sh::namespaces().unwrap_or_default() {
        if ns.starts_with(&prefix) {
            let _ = crate::lab::sh::run("ip", &["netns", "del", &ns], None);
        }
    }
}

/// The node's Lease every 10 s (the node lifecycle controller's measure of
/// a live node) and its status every minute and at start.
async fn heartbeat(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(ctx.client.clone());
    let since = k8s_openapi::jiff::Timestamp::now();
    let mut tick = 0u64;
    loop {
        if let Err(e) = renew(&leases, &ctx.node).await {
            tracing::warn!(error = %e, "Cannot renew the node's Lease; retrying.");
        }
        if tick.is_multiple_of(6)
            && let Err(e) = nodes
                .patch_status(
                    &ctx.node,
                    &PatchParams::default(),
                    &Patch::Merge(&node_status(&ctx, since)),
                )
                .await
        {
            tracing::warn!(error = %e, "Cannot report the node's status; retrying.");
            tick = 0;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
            }
        }
        tick += 1;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

async fn renew(leases: &Api<Lease>, node: &str) -> Result<(), kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match leases.get_opt(node).await? {
        Some(_) => leases
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"renewTime": now, "holderIdentity": node}})),
            )
            .await
            .map(drop),
        None => leases
            .create(
                &PostParams::default(),
                &Lease {
                    metadata: ObjectMeta {
                        name: Some(node.into()),
                        namespace: Some("kube-node-lease".into()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(node.into()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                },
            )
            .await
            .map(drop),
    }
}

fn node_status(ctx: &Ctx, since: k8s_openapi::jiff::Timestamp) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "0".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let capacity = json!({"cpu": cpus.to_string(), "memory": format!("{mem}Ki"),
                          "pods": crate::lab::plan::MAX_PODS_PER_NODE.to_string()});
    json!({"status": {
        "conditions": [
            condition("Ready", "True", "KubeletReady", "the lab's node agent is posting ready status"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": ctx.node_ip.to_string()},
            {"type": "Hostname", "address": ctx.node},
        ],
        "capacity": capacity,
        "allocatable": capacity,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": kernel,
            "osImage": "tailprobe lab",
            "containerRuntimeVersion": format!("tailprobe-lab-agent://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": super::bins::kubernetes_version(),
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": super::arch(),
        },
    }})
}

/// Follows the pods bound to this node (a field selector: the Node
/// authorizer lets a node list no others) and runs one task per pod.
async fn pods(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node));
    let mut stream = watcher(api, cfg).boxed();
    let mut running: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut listed: Option<Vec<String>> = None;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            e = stream.next() => e,
        };
        let Some(event) = event else { break };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "The pod watch failed; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match event {
            watcher::Event::Init => listed = Some(Vec::new()),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                if let Some(l) = listed.as_mut() {
                    l.push(uid.clone());
                }
                match running.get(&uid) {
                    Some(tx) if !tx.is_closed() => {
                        let _ = tx.send(Some(p));
                    }
                    _ => {
                        let (tx, rx) = watch::channel(Some(p));
                        running.insert(uid, tx);
                        tokio::spawn(pod::run(Arc::clone(&ctx), rx));
                    }
                }
            }
            watcher::Event::Delete(p) => {
                if let Some(tx) = running.remove(&p.metadata.uid.clone().unwrap_or_default()) {
                    let _ = tx.send(None);
                }
            }
            watcher::Event::InitDone => {
                // A relist: pods that are no longer there left while the
                // watch was down.
                if let Some(seen) = listed.take() {
                    running.retain(|uid, tx| {
                        let keep = seen.contains(uid);
                        if !keep {
                            let _ = tx.send(None);
                        }
                        keep
                    });
                }
            }
        }
        running.retain(|_, tx| !tx.is_closed());
    }
}
