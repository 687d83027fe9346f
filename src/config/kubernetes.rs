//! `[kubernetes]`: discovery and self-registration.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use super::{Dur, LabelSelector};
use std::time::Duration;

use super::ConfigError;
use super::validate::{Checker, DAY};

/// `[kubernetes]`: discovery and self-registration. The table's presence turns
/// both on; the API is found in-cluster, else through `KUBECONFIG`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Where the per-node Services live; else `POD_NAMESPACE`, else the
    /// service account's namespace.
    pub namespace: Option<String>,
    /// Narrows the Services opted in with `tailprobe.io/probe=true`.
    #[serde(deserialize_with = "selector_from_str")]
    pub service_selector: LabelSelector,
    /// Finds the prober pods (both DaemonSets).
    pub prober_selector: String,
    /// The echo target the per-node Service leads to.
    pub echo_listen: SocketAddr,
    /// The per-node Services' port.
    pub node_service_port: u16,
    /// Also probe every pod-network prober by its pod IP: the path without
    /// DNAT, which tells a broken Service path from a broken overlay.
    pub pod_ip_targets: bool,
    /// Up to this many nodes, every prober probes every node.
    pub full_mesh_max_nodes: usize,
    /// Above it, this many remote nodes per round, rotating.
    pub remote_nodes_per_round: usize,
    /// Up to this many nodes, each node has a Service of its own (a
    /// ClusterIP, and kube-proxy rules on every node, per node).
    pub node_services_max_nodes: usize,
    /// Above it, this many probe Services in all, each leading to one node
    /// at a time, rotating every round: ClusterIPs and kube-proxy rules stay
    /// bounded by the pool, and every node is still reached through a real
    /// Service.
    pub service_pool: usize,
    pub round: Dur,
    /// How often the per-node Service and EndpointSlice are applied again,
    /// which repairs hand edits and deletions.
    pub reapply: Dur,
    /// Namespaces whose opted-in Services are probed; empty: only the
    /// prober's own; `["*"]`: every namespace.
    pub service_namespaces: Vec<String>,
    /// Address ranges an opted-in Service's endpoints may use. Empty: only
    /// Services with a selector (their endpoints are pods the cluster
    /// placed) are probed, never hand-written EndpointSlices.
    pub endpoint_cidrs: Vec<Cidr>,
    /// At most this many discovered targets; the rest are named in a
    /// warning and counted.
    pub max_targets: usize,
    /// The API server is probed through the `kubernetes` Service at this
    /// path (`/readyz`, `/livez`); empty: not probed.
    pub api_server_path: String,
    /// Also probe every node's Service through this node's own NodePort:
    /// kube-proxy's NodePort DNAT and the masquerade that follows it, where
    /// reverse-path filters and SNAT port clashes bite. Costs a node port
    /// per node (the Services become type NodePort).
    pub node_ports: bool,
}

/// An address range, `10.244.0.0/16` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u8) {
            match a {
                IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (x, xw)) = (bits(self.addr), bits(ip));
        if width != xw {
            return false;
        }
        let keep = u32::from(self.prefix);
        let mask = if keep == 0 {
            0
        } else {
            u128::MAX << (128 - keep)
        };
        net & mask == x & mask
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "\"{s}\" is not an address range; write it like \"10.244.0.0/16\" or \"fd00::/8\""
            )
        };
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            service_selector: LabelSelector::default(),
            prober_selector: "app.kubernetes.io/name=tailprobe".into(),
            echo_listen: SocketAddr::from(([0, 0, 0, 0], 9798)),
            node_service_port: 80,
            pod_ip_targets: true,
            full_mesh_max_nodes: 100,
            remote_nodes_per_round: 20,
            node_services_max_nodes: 1000,
            service_pool: 64,
            round: Dur::secs(60),
            reapply: Dur::secs(300),
            service_namespaces: Vec::new(),
            endpoint_cidrs: Vec::new(),
            max_targets: 1000,
            api_server_path: "/readyz".into(),
            node_ports: false,
        }
    }
}

fn selector_from_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LabelSelector, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl KubernetesConfig {
    /// Whether opted-in Services in `namespace` are probed by a prober in
    /// `own`.
    pub fn allows_namespace(&self, namespace: &str, own: &str) -> bool {
        if self.service_namespaces.is_empty() {
            return namespace == own;
        }
        self.service_namespaces
            .iter()
            .any(|n| n == "*" || n == namespace)
    }

    /// The namespace of the per-node Services.
    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "tailprobe".into())
    }

    /// What is wrong with the table, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.remote_nodes_per_round == 0 || self.full_mesh_max_nodes == 0 {
            return Some("[kubernetes] full_mesh_max_nodes and remote_nodes_per_round must be at least 1; the defaults are 100 and 20".into());
        }
        if self.round.get().is_zero() || self.reapply.get().is_zero() {
            return Some("[kubernetes] round and reapply must be longer than zero; the defaults are \"60s\" and \"300s\"".into());
        }
        None
    }
}

impl KubernetesConfig {
    /// Every bound of `[kubernetes]`.
    pub(super) fn check(&self, k: &Checker<'_>) -> Result<(), ConfigError> {
        let kc = self;
        k.dur(
            &["kubernetes", "round"],
            kc.round.get(),
            Duration::from_millis(100)..=DAY,
            "the pinglist rotates this often",
        )?;
        k.dur(
            &["kubernetes", "reapply"],
            kc.reapply.get(),
            Duration::from_millis(100)..=DAY,
            "the node's Service is applied again this often, each time a write to the API server",
        )?;
        k.num(
            &["kubernetes", "full_mesh_max_nodes"],
            kc.full_mesh_max_nodes,
            1..=100_000,
            "the default is 100",
        )?;
        k.num(
            &["kubernetes", "remote_nodes_per_round"],
            kc.remote_nodes_per_round,
            1..=100_000,
            "the default is 20",
        )?;
        k.num(
            &["kubernetes", "node_services_max_nodes"],
            kc.node_services_max_nodes,
            1..=100_000,
            "a Service per node costs a ClusterIP and kube-proxy rules on every node per node (the default is 1000; a /20 Service range holds 4,096)",
        )?;
        k.num(
            &["kubernetes", "service_pool"],
            kc.service_pool,
            1..=4096,
            "each probe Service costs a ClusterIP (the default is 64)",
        )?;
        k.num(
            &["kubernetes", "max_targets"],
            kc.max_targets,
            1..=100_000,
            "each target is probed every interval (the default is 1000)",
        )?;
        let path = &kc.api_server_path;
        if !path.is_empty()
            && (!path.starts_with('/')
                || path.len() > 256
                || !path.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(k.err(
                &["kubernetes", "api_server_path"],
                format!("[kubernetes] api_server_path = \"{}\" is not a plain path; write \"/readyz\", \"/livez\", or \"\" not to probe the API server", path.escape_default()),
            ));
        }

        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_what_they_should() {
        let c: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(c.contains("10.244.3.7".parse().unwrap()));
        assert!(!c.contains("10.245.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(
            v6.contains("fd12::1".parse().unwrap()) && !v6.contains("fe80::1".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!(
            "10.0.0.0"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("10.244.0.0/16")
        );
    }

    #[test]
    fn services_come_from_allowed_namespaces_only() {
        let k = KubernetesConfig::default();
        assert!(k.allows_namespace("tailprobe", "tailprobe"));
        assert!(!k.allows_namespace("payments", "tailprobe"));
        let k = KubernetesConfig {
            service_namespaces: vec!["payments".into()],
            ..KubernetesConfig::default()
        };
        assert!(k.allows_namespace("payments", "tailprobe"));
        assert!(!k.allows_namespace("tailprobe", "tailprobe"));
        let all = KubernetesConfig {
            service_namespaces: vec!["*".into()],
            ..KubernetesConfig::default()
        };
        assert!(all.allows_namespace("anything", "tailprobe"));
    }
}
