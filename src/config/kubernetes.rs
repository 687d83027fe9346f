//! `[kubernetes]`: discovery and self-registration.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{Dur, LabelSelector};

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
    pub round: Dur,
    /// How often the per-node Service and EndpointSlice are applied again,
    /// which repairs hand edits and deletions.
    pub reapply: Dur,
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
            round: Dur::secs(60),
            reapply: Dur::secs(300),
        }
    }
}

fn selector_from_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LabelSelector, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl KubernetesConfig {
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
