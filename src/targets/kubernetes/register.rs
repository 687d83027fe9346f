//! This prober's entry in the cluster: the per-node Service
//! `tailprobe-node-<node>` (selector-less, ClusterIP) and an EndpointSlice
//! with this pod's IP, so kube-proxy programs a VIP that leads to exactly this
//! node, and every prober can measure the real Service path to it.
//!
//! Both objects are written by server-side apply, which is idempotent and
//! settles conflicts by field ownership, and both carry an ownerReference to
//! this pod, so Kubernetes deletes them with it. The two probers of a node
//! (host and pod network) share the Service: each is one owner (owner
//! references merge by uid), and each writes its own slice.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::KubeError;
use super::names;
use super::plan::labels;
use crate::model::SourceKind;

/// Who this pod is, from the downward API.
#[derive(Debug, Clone, PartialEq)]
pub struct PodIdentity {
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub pod_ip: String,
    pub node: String,
    pub kind: SourceKind,
    pub echo_port: u16,
}

impl PodIdentity {
    /// Reads `POD_NAME`, `POD_UID` and `POD_IP`.
    pub fn from_env(
        namespace: String,
        node: String,
        kind: SourceKind,
        echo_port: u16,
    ) -> Result<Self, KubeError> {
        let var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or(KubeError::MissingEnv(name))
        };
        Ok(Self {
            namespace,
            pod_name: var("POD_NAME")?,
            pod_uid: var("POD_UID")?,
            pod_ip: var("POD_IP")?,
            node,
            kind,
            echo_port,
        })
    }

    fn owner(&self) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: self.pod_name.clone(),
            uid: self.pod_uid.clone(),
            controller: Some(false),
            block_owner_deletion: Some(false),
        }
    }

    /// The field manager: one per source kind, so the node's two probers own
    /// their own owner reference on the shared Service.
    pub fn field_manager(&self) -> String {
        format!("tailprobe-{}", self.kind.as_str())
    }
}

fn common_labels() -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "tailprobe"),
        ("app.kubernetes.io/component", "node-service"),
        (labels::PROBE, "true"),
        (labels::ROLE, "node"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The per-node Service as this pod applies it.
pub fn node_service(id: &PodIdentity, port: u16) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(names::node_service(&id.node)),
            namespace: Some(id.namespace.clone()),
            labels: Some(common_labels()),
            annotations: Some([(labels::NODE.to_string(), id.node.clone())].into()),
            owner_references: Some(vec![id.owner()]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            // The slice's family: on a dual-stack cluster whose primary
            // family differs from the pod's address, a Service left to the
            // default would get a VIP with no endpoint.
            ip_families: Some(vec![family(&id.pod_ip).into()]),
            ip_family_policy: Some("SingleStack".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(port),
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(i32::from(id.echo_port))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// `IPv4` or `IPv6`, as Services and EndpointSlices name address families.
fn family(ip: &str) -> &'static str {
    if ip.contains(':') { "IPv6" } else { "IPv4" }
}

/// This pod's EndpointSlice for its node's Service.
pub fn node_slice(id: &PodIdentity) -> EndpointSlice {
    let mut labels = common_labels();
    labels.insert(labels::SERVICE_NAME.into(), names::node_service(&id.node));
    // Not the EndpointSlice controller's value, so it leaves the slice alone.
    labels.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "tailprobe.io".into(),
    );
    labels.insert(labels::SOURCE_KIND.into(), id.kind.as_str().into());
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(names::node_slice(&id.node, id.kind)),
            namespace: Some(id.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![id.owner()]),
            ..Default::default()
        },
        address_type: family(&id.pod_ip).into(),
        endpoints: vec![Endpoint {
            addresses: vec![id.pod_ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: Some(id.node.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some(id.pod_name.clone()),
                namespace: Some(id.namespace.clone()),
                uid: Some(id.pod_uid.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(i32::from(id.echo_port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// Applies both objects; safe to repeat.
pub async fn apply(client: &Client, id: &PodIdentity, port: u16) -> Result<(), KubeError> {
    let pp = PatchParams::apply(&id.field_manager()).force();
    apply_one(client, &id.namespace, &node_service(id, port), &pp).await?;
    apply_one(client, &id.namespace, &node_slice(id), &pp).await
}

async fn apply_one<K>(
    client: &Client,
    namespace: &str,
    object: &K,
    pp: &PatchParams,
) -> Result<(), KubeError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(&name, pp, &Patch::Apply(object))
        .await
        .map_err(|source| KubeError::Api {
            what: format!("applying {} {namespace}/{name}", K::kind(&())),
            source,
        })?;
    Ok(())
}

/// Deletes this pod's EndpointSlice, so no prober sends probes to a pod that
/// is stopping. The Service stays for the node's other prober, and goes with
/// its last owner.
pub async fn withdraw(client: &Client, id: &PodIdentity) -> Result<(), KubeError> {
    let name = names::node_slice(&id.node, id.kind);
    match Api::<EndpointSlice>::namespaced(client.clone(), &id.namespace)
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Api {
            what: format!("deleting EndpointSlice {}/{name}", id.namespace),
            source,
        }),
    }
}

/// Applies at start, then every `every` until cancelled, then withdraws;
/// at once when `deleted` fires (discovery saw this node's Service or this
/// pod's slice deleted by hand), rather than at the next turn. Failures are
/// counted and retried at the next turn, never fatal.
pub async fn keep(
    client: Client,
    id: PodIdentity,
    port: u16,
    every: std::time::Duration,
    metrics: super::metrics::KubeMetrics,
    deleted: std::sync::Arc<tokio::sync::Notify>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut registered = false;
    loop {
        let ok = match apply(&client, &id, port).await {
            Ok(()) => {
                if !registered {
                    tracing::info!(
                        service = %names::node_service(&id.node),
                        slice = %names::node_slice(&id.node, id.kind),
                        namespace = %id.namespace,
                        "Registered this node's Service."
                    );
                }
                registered = true;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot register this node's Service; retrying.");
                false
            }
        };
        metrics.applied(ok);
        // Retry sooner after a failure, so a prober that starts before the
        // API server is reachable, or loses it, registers soon after.
        let wait = if ok {
            every
        } else {
            every.min(std::time::Duration::from_secs(5))
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            _ = deleted.notified() => {
                tracing::info!("This node's Service or this pod's slice was deleted; applying again.");
            }
        }
    }
    match tokio::time::timeout(std::time::Duration::from_secs(5), withdraw(&client, &id)).await {
        Ok(Ok(())) => tracing::info!("Withdrew this pod's EndpointSlice."),
        Ok(Err(e)) => tracing::warn!(error = %e, "Cannot withdraw this pod's EndpointSlice."),
        Err(_) => tracing::warn!("Withdrawing this pod's EndpointSlice timed out."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> PodIdentity {
        PodIdentity {
            namespace: "tailprobe".into(),
            pod_name: "tailprobe-host-x7".into(),
            pod_uid: "0b6c".into(),
            pod_ip: "192.168.1.10".into(),
            node: "node-1".into(),
            kind: SourceKind::Host,
            echo_port: 9798,
        }
    }

    #[test]
    fn the_slice_points_the_node_service_at_this_pod() {
        let s = node_slice(&id());
        let l = s.metadata.labels.as_ref().unwrap();
        assert_eq!(l[labels::SERVICE_NAME], "tailprobe-node-node-1");
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("tailprobe-node-node-1-host")
        );
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("node-1"));
        assert_eq!(s.ports.as_ref().unwrap()[0].port, Some(9798));
        let v6 = node_slice(&PodIdentity {
            pod_ip: "fd00::10".into(),
            ..id()
        });
        assert_eq!(v6.address_type, "IPv6");
        let v6_svc = node_service(
            &PodIdentity {
                pod_ip: "fd00::10".into(),
                ..id()
            },
            80,
        );
        let spec = v6_svc.spec.unwrap();
        assert_eq!(spec.ip_families, Some(vec!["IPv6".to_string()]));
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
        let svc = node_service(&id(), 80);
        assert_eq!(
            svc.spec.as_ref().unwrap().ip_families,
            Some(vec!["IPv4".to_string()])
        );
        assert_eq!(
            svc.metadata.owner_references.as_ref().unwrap()[0].uid,
            "0b6c"
        );
        assert_eq!(
            svc.metadata.annotations.as_ref().unwrap()[labels::NODE],
            "node-1"
        );
    }
}
