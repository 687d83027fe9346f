//! What discovery reads of the API's objects: a Service, an EndpointSlice
//! and a prober's registration slice into the plain records the planner
//! takes (pure), and the node set they name.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::plan::{ProberInfo, ServiceInfo, SliceInfo, labels};

impl From<&Service> for ServiceInfo {
    fn from(s: &Service) -> Self {
        let spec = s.spec.clone().unwrap_or_default();
        Self {
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            name: s.metadata.name.clone().unwrap_or_default(),
            labels: s.metadata.labels.clone().unwrap_or_default(),
            annotations: s.metadata.annotations.clone().unwrap_or_default(),
            cluster_ip: spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None"),
            cluster_ips: spec.cluster_ips.unwrap_or_default(),
            ports: spec
                .ports
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                .filter_map(|p| Some((p.name.unwrap_or_default(), u16::try_from(p.port).ok()?)))
                .collect(),
            has_selector: spec.selector.is_some_and(|s| !s.is_empty()),
            node_port: spec
                .ports
                .iter()
                .flatten()
                .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                .find(|p| p.name.as_deref() == Some("http"))
                .and_then(|p| p.node_port)
                .and_then(|n| u16::try_from(n).ok()),
        }
    }
}

/// A slice's ready endpoints (Kubernetes: an unset `ready` reads as ready).
fn ready(s: &EndpointSlice) -> impl Iterator<Item = &k8s_openapi::api::discovery::v1::Endpoint> {
    s.endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
}

impl From<&EndpointSlice> for SliceInfo {
    fn from(s: &EndpointSlice) -> Self {
        Self {
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            service: s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::SERVICE_NAME))
                .cloned()
                .unwrap_or_default(),
            ready_nodes: ready(s).map(|e| e.node_name.clone()).collect(),
            ready_addresses: ready(s).flat_map(|e| e.addresses.iter().cloned()).collect(),
        }
    }
}

/// The nodes that run a prober, sorted: those with a per-node Service in
/// `own` (the prober's namespace), and those whose probers registered there
/// (past `node_services_max_nodes` there are no per-node Services).
pub fn nodes_of(services: &[ServiceInfo], probers: &[ProberInfo], own: &str) -> Vec<String> {
    let nodes: BTreeSet<String> = services
        .iter()
        .filter(|s| s.namespace == own)
        .filter(|s| s.labels.get(labels::ROLE).map(String::as_str) == Some("node"))
        .filter_map(|s| s.annotations.get(labels::NODE).cloned())
        .chain(
            probers
                .iter()
                .filter(|p| p.namespace == own && p.registered)
                .map(|p| p.node.clone()),
        )
        .collect();
    nodes.into_iter().collect()
}

impl ProberInfo {
    /// A prober's registration slice (`register::node_slice`): its kind, node,
    /// address, echo port and readiness; `None` for any other slice.
    pub fn from_slice(s: &EndpointSlice) -> Option<Self> {
        let l = s.metadata.labels.as_ref()?;
        if l.get(labels::ROLE).map(String::as_str) != Some("node") {
            return None;
        }
        let kind = l.get(labels::SOURCE_KIND)?.parse().ok()?;
        let e = s.endpoints.as_ref()?.first()?;
        let registered = l
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("tailprobe.io")
            && e.target_ref.as_ref().and_then(|r| r.kind.as_deref()) == Some("Pod");
        let ready = e.conditions.as_ref().and_then(|c| c.ready) != Some(false);
        Some(Self {
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            registered,
            node: e.node_name.clone()?,
            ip: e.addresses.first().cloned().filter(|ip| !ip.is_empty())?,
            kind,
            echo_port: s
                .ports
                .iter()
                .flatten()
                .find_map(|p| p.port.and_then(|n| u16::try_from(n).ok())),
            ready,
        })
    }
}
