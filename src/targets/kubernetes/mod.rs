//! Targets from the Kubernetes API, and this prober's own entry in it.
//!
//! - [`discovery`]: one watch per kind (nodes, prober pods, Services,
//!   EndpointSlices) into reflector stores; the stores become a [`plan::Snapshot`]
//!   and then targets, within a second of any change.
//! - [`plan`]: pure; which targets, which destination node, which subset of
//!   remote nodes this round.
//! - [`register`]: the per-node Service and this pod's EndpointSlice, written
//!   by server-side apply and owned by the pod.
//! - [`names`]: object names that fit Kubernetes' limits.
//!
//! Invariant: when the API server is unreachable, the last targets stay and
//! probing goes on; the outage shows in `tailprobe_kubernetes_watch_up`.

pub mod discovery;
pub mod names;
pub mod plan;
pub mod register;
pub mod selector;

use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::Dur;
pub use selector::LabelSelector;

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

/// Errors talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "no Kubernetes API found ({0}); run in a pod with a service account, or point KUBECONFIG at a kubeconfig"
    )]
    Config(String),
    #[error(
        "self-registration needs {0} from the downward API; set it as in deploy/base/daemonset-host.yaml"
    )]
    MissingEnv(&'static str),
    #[error("{what} failed ({source}); check the API server and the RBAC in deploy/base/rbac.yaml")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// A client for the cluster this process runs in, or the one `KUBECONFIG` names.
pub async fn client() -> Result<kube::Client, KubeError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| KubeError::Config(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))
}
