//! From what the API server says to what this prober probes. Pure: the
//! watchers hand over a [`Snapshot`], and [`plan`] returns the targets, with
//! no I/O and no clock (the round number is an input).
//!
//! Every target knows its destination node before the first probe: a per-node
//! Service by its `tailprobe.io/node` annotation, a pod-network prober by the
//! `nodeName` of its registration slice, and an opted-in Service by the
//! `nodeName` of its ready EndpointSlice endpoints (one node: known; several:
//! mixed, and the echo's response header decides per probe; none: unknown).
//!
//! The node set is the per-node Services' nodes: a node that runs no prober
//! (Windows, virtual-kubelet, Fargate) has no Service, so it takes no
//! pinglist slot and counts in no coverage.

use std::collections::{BTreeMap, BTreeSet};

pub use super::snapshot::nodes_of;
use crate::config::KubernetesConfig;
use crate::config::ProbeConfig;
use crate::model::SourceKind;
use crate::model::{API_SERVER_TARGET, Target, TargetNode};

/// Labels and annotations that carry meaning between probers.
pub mod labels {
    /// Opts a Service in; the per-node Services carry it too.
    pub const PROBE: &str = "tailprobe.io/probe";
    /// `node` on the per-node Services.
    pub const ROLE: &str = "tailprobe.io/role";
    /// The full node name a per-node Service leads to (annotation).
    pub const NODE: &str = "tailprobe.io/node";
    /// `host` or `pod` on prober pods.
    pub const SOURCE_KIND: &str = "tailprobe.io/source-kind";
    /// Service annotations that say how to probe an opted-in Service.
    pub const PORT: &str = "tailprobe.io/port";
    pub const PATH: &str = "tailprobe.io/path";
    pub const SCHEME: &str = "tailprobe.io/scheme";
    pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
}

/// The name of the echo port on prober pods and in the per-node slices.
pub const ECHO_PORT_NAME: &str = "echo";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `None` for headless Services, which have no VIP to probe.
    pub cluster_ip: Option<String>,
    /// `spec.clusterIPs`: one per family on a dual-stack Service.
    pub cluster_ips: Vec<String>,
    /// TCP ports: name and number.
    pub ports: Vec<(String, u16)>,
    /// The cluster places its endpoints (pods it selects); without a
    /// selector, anyone who may write an EndpointSlice chooses them.
    pub has_selector: bool,
    /// The node port of the probe port, on a NodePort Service.
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceInfo {
    pub namespace: String,
    pub service: String,
    /// The node of every ready endpoint (`None`: the endpoint names none).
    pub ready_nodes: Vec<Option<String>>,
    /// The addresses of every ready endpoint.
    pub ready_addresses: Vec<String>,
}

/// A prober, from the EndpointSlice it registered for its node's Service.
#[derive(Debug, Clone, PartialEq)]
pub struct ProberInfo {
    pub namespace: String,
    /// A registration slice as probers write them: managed by tailprobe.io
    /// and naming its pod. Only the probers' ServiceAccount may write
    /// slices in their namespace (deploy/base/rbac.yaml).
    pub registered: bool,
    pub node: String,
    pub ip: String,
    pub kind: SourceKind,
    pub echo_port: Option<u16>,
    pub ready: bool,
}

/// What the watchers know, reduced to what planning needs.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<String>,
    pub probers: Vec<ProberInfo>,
    pub services: Vec<ServiceInfo>,
    pub slices: Vec<SliceInfo>,
}

/// The targets, and how much of the cluster they cover this round.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub targets: Vec<Target>,
    /// Nodes other than this one.
    pub remote_nodes: usize,
    /// Remote nodes probed this round.
    pub remote_nodes_probed: usize,
    /// Rounds until every remote node has been probed: 1 in a full mesh.
    pub rounds_per_cycle: u64,
    /// Opted-in Services that cannot be probed, with the reason: a headless
    /// Service, an annotation naming a port it lacks, an unknown scheme, a
    /// namespace or endpoint outside what `[kubernetes]` trusts, a path that
    /// is not a plain path, or one target past `max_targets`.
    pub rejected: Vec<String>,
    /// Targets left out because `max_targets` were planned.
    pub over_limit: usize,
    /// Past `node_services_max_nodes`: the nodes are reached through the
    /// pool of probe Services, not a Service each.
    pub pool: bool,
    /// The pool slot this node serves this round, if any.
    pub pool_slot: Option<usize>,
}

/// Who is planning: this prober's node, namespace and echo port.
#[derive(Debug, Clone)]
pub struct Me<'a> {
    pub node: &'a str,
    pub namespace: &'a str,
    pub echo_port: u16,
    /// The API server as this pod's environment names it, when it does.
    pub api_server: Option<&'a super::apiserver::ApiServer>,
    /// This node's own address (`HOST_IP`): where its NodePorts listen.
    pub host_ip: Option<&'a str>,
}

pub fn plan(
    snap: &Snapshot,
    me: &Me<'_>,
    cfg: &KubernetesConfig,
    probe: &ProbeConfig,
    round: u64,
) -> Plan {
    let remote: Vec<&str> = snap
        .nodes
        .iter()
        .map(String::as_str)
        .filter(|n| *n != me.node)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (chosen, rounds_per_cycle) = pinglist(
        &remote,
        me.node,
        cfg.full_mesh_max_nodes,
        cfg.remote_nodes_per_round,
        round,
    );
    let wanted: BTreeSet<&str> = chosen.iter().copied().chain([me.node]).collect();
    let pool = pool_mode(snap.nodes.len(), cfg);
    let mut targets = Vec::new();
    let mut rejected = Vec::new();
    let mut add = |r: Result<Target, String>| match r {
        Ok(t) => targets.push(t),
        Err(why) => rejected.push(why),
    };
    let ready = |svc: &ServiceInfo| ready_nodes(snap, svc);
    for svc in &snap.services {
        let role = svc.labels.get(labels::ROLE).map(String::as_str);
        if role == Some("pool") {
            // Every slot, every round: each leads to one node at a time.
            if !pool || svc.namespace != me.namespace {
                continue;
            }
            let (Some(node), Some(ip)) = (ready(svc), &svc.cluster_ip) else {
                continue;
            };
            let Some(port) = http_port(svc) else { continue };
            add(target(
                format!("pool/{}", svc.name),
                &url("http", ip, port, "/"),
                node,
                probe,
            ));
        } else if role == Some("node") {
            if pool || svc.namespace != me.namespace {
                continue;
            }
            let Some(node) = svc.annotations.get(labels::NODE) else {
                continue;
            };
            if !wanted.contains(node.as_str()) || ready(svc).is_none() {
                continue;
            }
            let Some(ip) = &svc.cluster_ip else { continue };
            let Some(port) = http_port(svc) else { continue };
            add(target(
                format!("node/{node}"),
                &url("http", ip, port, "/"),
                TargetNode::Known(node.clone()),
                probe,
            ));
            // The same Service through this node's own NodePort: DNAT on
            // the way in, masquerade when the backend is elsewhere.
            if let (true, Some(host), Some(node_port)) = (cfg.node_ports, me.host_ip, svc.node_port)
            {
                add(target(
                    format!("nodeport/{node}"),
                    &url("http", host, node_port, "/"),
                    TargetNode::Known(node.clone()),
                    probe,
                ));
            }
        } else if cfg.service_selector.matches(&svc.labels) {
            let trust = trusted(snap, svc, me, cfg);
            for t in super::families::targets(svc, trust, |s| service_target(s, ready(s), probe)) {
                add(t);
            }
        }
    }
    if let Some(api) = me.api_server.filter(|_| !cfg.api_server_path.is_empty()) {
        add(api.target(cfg, probe));
    }
    if cfg.pod_ip_targets {
        for p in &snap.probers {
            // A prober only in this namespace and by its own registration:
            // a slice elsewhere that copies the labels takes no target over.
            let trusted = p.namespace == me.namespace && p.registered;
            if p.kind != SourceKind::Pod
                || !p.ready
                || !trusted
                || !wanted.contains(p.node.as_str())
            {
                continue;
            }
            let port = p.echo_port.unwrap_or(me.echo_port);
            add(target(
                format!("pod/{}", p.node),
                &url("http", &p.ip, port, "/"),
                TargetNode::Known(p.node.clone()),
                probe,
            ));
        }
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    targets.dedup_by(|a, b| a.name == b.name);
    // Past the cap, the cluster's own mesh (node/ and pod/ targets) is kept
    // first, then opted-in Services in name order.
    // The API server's own probe is kept with the mesh.
    targets.sort_by_key(|t| t.name.starts_with("svc/") && t.name != API_SERVER_TARGET);
    let over_limit = targets.len().saturating_sub(cfg.max_targets);
    for t in targets.drain(cfg.max_targets.min(targets.len())..) {
        rejected.push(format!(
            "{}: past [kubernetes] max_targets = {}",
            t.name, cfg.max_targets
        ));
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    let (remote_nodes_probed, rounds_per_cycle) = if pool {
        let behind: BTreeSet<&str> = targets
            .iter()
            .filter(|t| t.name.starts_with("pool/"))
            .filter_map(|t| match &t.node {
                TargetNode::Known(n) if n != me.node => Some(n.as_str()),
                _ => None,
            })
            .collect();
        let slots = cfg.service_pool.min(snap.nodes.len()).max(1);
        (behind.len(), snap.nodes.len().div_ceil(slots) as u64)
    } else {
        (chosen.len(), rounds_per_cycle)
    };
    Plan {
        targets,
        remote_nodes: remote.len(),
        remote_nodes_probed,
        rounds_per_cycle,
        rejected,
        over_limit,
        pool,
        pool_slot: pool
            .then(|| pool_slot(&snap.nodes, me.node, round, cfg.service_pool))
            .flatten(),
    }
}

/// Whether the cluster is past the per-node Services' bound.
pub fn pool_mode(nodes: usize, cfg: &KubernetesConfig) -> bool {
    nodes > cfg.node_services_max_nodes
}

/// The pool slot `me` serves in `round`: slot `k` leads to node
/// `(round * pool + k) mod N` of the sorted node list, so each round the
/// pool covers the next `pool` nodes and `ceil(N / pool)` rounds cover
/// them all. Every prober computes the same from the same node list.
pub fn pool_slot(nodes: &[String], me: &str, round: u64, pool: usize) -> Option<usize> {
    let n = nodes.len() as u64;
    let i = nodes.iter().position(|x| x == me)? as u64;
    let slots = (pool as u64).min(n);
    let start = (round % n) * slots % n;
    let k = (i + n - start) % n;
    (k < slots).then_some(k as usize)
}

/// A Service's probe port: the one named `http`, else its first.
fn http_port(svc: &ServiceInfo) -> Option<u16> {
    svc.ports
        .iter()
        .find(|(n, _)| n == "http")
        .or(svc.ports.first())
        .map(|(_, p)| *p)
}

/// Whether an opted-in Service is one this prober may probe: from an
/// allowed namespace, and with endpoints the cluster placed (a selector) or
/// inside `endpoint_cidrs`. A host-network prober's GETs leave from the
/// node's own address, past NetworkPolicies: a hand-written EndpointSlice
/// must not be able to aim them anywhere.
fn trusted(
    snap: &Snapshot,
    svc: &ServiceInfo,
    me: &Me<'_>,
    cfg: &KubernetesConfig,
) -> Result<(), String> {
    let name = format!("svc/{}/{}", svc.namespace, svc.name);
    if !cfg.allows_namespace(&svc.namespace, me.namespace) {
        return Err(format!(
            "{name}: namespace {} is not in [kubernetes] service_namespaces (default: the prober's own)",
            svc.namespace
        ));
    }
    if cfg.endpoint_cidrs.is_empty() {
        if !svc.has_selector {
            return Err(format!(
                "{name}: it has no selector, so its endpoints are hand-written; list the ranges they may use in [kubernetes] endpoint_cidrs to probe it"
            ));
        }
        return Ok(());
    }
    let outside = snap
        .slices
        .iter()
        .filter(|s| s.namespace == svc.namespace && s.service == svc.name)
        .flat_map(|s| s.ready_addresses.iter())
        .find(|a| {
            a.parse::<std::net::IpAddr>().map_or(true, |ip| {
                !cfg.endpoint_cidrs.iter().any(|c| c.contains(ip))
            })
        });
    match outside {
        Some(a) => Err(format!(
            "{name}: endpoint {a} is outside [kubernetes] endpoint_cidrs"
        )),
        None => Ok(()),
    }
}

/// A `tailprobe.io/path` is a plain path (and query), made absolute when
/// the URL is built: printable ASCII, no spaces, at most 256 bytes, not a
/// URL of its own.
fn valid_path(p: &str) -> bool {
    !p.starts_with("//")
        && p.len() <= 256
        && p.bytes().all(|b| b.is_ascii_graphic())
        && !p.contains("://")
}

/// The remote nodes to probe in `round`. Up to `full_mesh` nodes in all, every
/// one; above, `per_round` consecutive nodes of the sorted list, starting at an
/// offset that moves by `per_round` each round and differs per prober (so the
/// load spreads). Any `ceil(remote / per_round)` consecutive rounds cover every
/// remote node: that many rounds is the cycle.
pub fn pinglist<'a>(
    remote: &[&'a str],
    me: &str,
    full_mesh: usize,
    per_round: usize,
    round: u64,
) -> (Vec<&'a str>, u64) {
    let m = remote.len();
    // `m + 1` nodes in all, this one included.
    if m < full_mesh || per_round >= m {
        return (remote.to_vec(), 1);
    }
    let k = per_round.max(1);
    let offset = (fnv(me) % m as u64) as usize;
    let start = (offset + (round % m as u64) as usize * k) % m;
    let chosen = (0..k).map(|j| remote[(start + j) % m]).collect();
    (chosen, m.div_ceil(k) as u64)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The nodes of a Service's ready endpoints; `None` when it has none (nobody
/// would answer, so there is nothing to measure).
fn ready_nodes(snap: &Snapshot, svc: &ServiceInfo) -> Option<TargetNode> {
    let mut nodes = BTreeSet::new();
    let mut unnamed = false;
    let mut any = false;
    for s in snap
        .slices
        .iter()
        .filter(|s| s.namespace == svc.namespace && s.service == svc.name)
    {
        for n in &s.ready_nodes {
            any = true;
            match n {
                Some(n) => {
                    nodes.insert(n.clone());
                }
                None => unnamed = true,
            }
        }
    }
    if !any {
        return None;
    }
    Some(match (nodes.len(), unnamed) {
        (1, false) => TargetNode::Known(nodes.into_iter().next().unwrap_or_default()),
        (0, _) => TargetNode::Unknown,
        _ => TargetNode::Mixed(nodes.into_iter().collect()),
    })
}

/// An opted-in Service, probed as its annotations say: `tailprobe.io/port`
/// (name or number; else the first port), `tailprobe.io/scheme` (`http` or
/// `tcp`), `tailprobe.io/path`.
fn service_target(
    svc: &ServiceInfo,
    node: Option<TargetNode>,
    probe: &ProbeConfig,
) -> Result<Target, String> {
    let name = format!("svc/{}/{}", svc.namespace, svc.name);
    let Some(ip) = &svc.cluster_ip else {
        return Err(format!(
            "{name}: headless, so there is no ClusterIP to probe"
        ));
    };
    let port = match svc.annotations.get(labels::PORT) {
        Some(p) => match p.parse::<u16>() {
            Ok(n) => svc.ports.iter().find(|(_, q)| *q == n),
            Err(_) => svc.ports.iter().find(|(port_name, _)| port_name == p),
        }
        .ok_or_else(|| {
            format!(
                "{name}: {} \"{p}\" names no TCP port of the Service",
                labels::PORT
            )
        })?,
        None => svc
            .ports
            .first()
            .ok_or_else(|| format!("{name}: the Service has no TCP port"))?,
    }
    .1;
    let path = svc
        .annotations
        .get(labels::PATH)
        .map(String::as_str)
        .unwrap_or("/");
    if !valid_path(path) {
        return Err(format!(
            "{name}: {} \"{}\" is not a plain path such as \"/healthz\" (printable, no spaces, at most 256 bytes)",
            labels::PATH,
            path.escape_default()
        ));
    }
    let url = match svc.annotations.get(labels::SCHEME).map(String::as_str) {
        None | Some("http") => url("http", ip, port, path),
        Some("tcp") => url("tcp", ip, port, ""),
        Some(other) => {
            return Err(format!(
                "{name}: {} \"{other}\" is not http or tcp",
                labels::SCHEME
            ));
        }
    };
    // No ready endpoint: probe anyway, since a user asked for this Service
    // and its failures are the news.
    target(name, &url, node.unwrap_or(TargetNode::Unknown), probe)
}

fn url(scheme: &str, ip: &str, port: u16, path: &str) -> String {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let path = if path.starts_with('/') || path.is_empty() {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("{scheme}://{host}:{port}{path}")
}

fn target(
    name: String,
    url: &str,
    node: TargetNode,
    probe: &ProbeConfig,
) -> Result<Target, String> {
    Target::parse(&name, url)
        .map(|t| {
            let mut t = t.with_node(node).with_timing(&probe.timing());
            t.valid_status = probe.valid_status();
            t
        })
        .map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_paths_tests.rs"]
mod paths_tests;
