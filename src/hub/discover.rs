//! Finding the probers in Kubernetes: the prober pods of the hub's own
//! namespace, by `[kubernetes] prober_selector`, watched (list once, then
//! changes) into a store. A Role in that namespace is all it needs.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

/// The container port probers serve their API on.
pub const API_PORT_NAME: &str = "metrics";

/// Starts the watch; it stops with `cancel`.
pub fn start(
    client: kube::Client,
    namespace: &str,
    selector: &str,
    cancel: CancellationToken,
) -> Store<Pod> {
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(
        Api::<Pod>::namespaced(client, namespace),
        watcher::Config::default().labels(selector),
    )
    .modify(|p: &mut Pod| p.metadata.managed_fields = None)
    .default_backoff()
    .reflect(writer)
    .applied_objects();
    tokio::spawn(async move {
        tokio::pin!(stream);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "Watching the prober pods failed; retrying."),
                    None => return,
                },
            }
        }
    });
    reader
}

/// A running, not deleted prober pod's address and API port (9797 when
/// it names no `metrics` port).
fn reachable(p: &Pod) -> Option<(std::net::IpAddr, u16)> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = p.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip = status.pod_ip.as_deref()?.parse().ok()?;
    let port = p
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|port| port.name.as_deref() == Some(API_PORT_NAME))
        .map_or(9797, |port| port.container_port);
    Some((ip, u16::try_from(port).ok()?))
}

/// The probers' base URLs, straight to their addresses.
pub fn urls<P: std::ops::Deref<Target = Pod>>(pods: &[P]) -> Vec<String> {
    let mut out: Vec<String> = pods
        .iter()
        .filter_map(|p| reachable(p))
        .map(|(ip, port)| format!("http://{}", std::net::SocketAddr::new(ip, port)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The probers' bases through the API server's pod proxy, for a client
/// with no route to pod addresses.
pub fn proxy_bases(namespace: &str, pods: &[Pod]) -> Vec<String> {
    let mut out: Vec<String> = pods
        .iter()
        .filter_map(|p| {
            let (_, port) = reachable(p)?;
            let name = p.metadata.name.as_deref()?;
            Some(format!(
                "/api/v1/namespaces/{namespace}/pods/{name}:{port}/proxy"
            ))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ip: &str, phase: &str, port: Option<i32>) -> std::sync::Arc<Pod> {
        let ports = port.map(|p| serde_json::json!([{"name": "metrics", "containerPort": p}]));
        std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "ports": ports}]},
                "status": {"phase": phase, "podIP": ip}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn running_pods_on_their_api_port() {
        let pods = [
            pod("10.0.0.2", "Running", Some(9797)),
            pod("fd00::5", "Running", Some(9000)),
            pod("10.0.0.3", "Pending", Some(9797)),
            pod("10.0.0.4", "Running", None),
        ];
        assert_eq!(
            urls(&pods),
            [
                "http://10.0.0.2:9797",
                "http://10.0.0.4:9797",
                "http://[fd00::5]:9000"
            ]
        );
        let plain: Vec<Pod> = pods[..2].iter().map(|p| (**p).clone()).collect();
        assert_eq!(
            proxy_bases("tp", &plain),
            [
                "/api/v1/namespaces/tp/pods/p:9000/proxy",
                "/api/v1/namespaces/tp/pods/p:9797/proxy"
            ]
        );
    }
}
