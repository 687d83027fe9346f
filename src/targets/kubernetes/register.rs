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
//!
//! Past `[kubernetes] node_services_max_nodes` nodes there are no per-node
//! Services: the pod keeps only its registration slice (the node set and
//! the pod probers' addresses), and in the rounds it serves a pool slot it
//! applies that probe Service (`tailprobe-pool-<k>`, no owner: shared by
//! the cluster) and points the slot's slice at itself. The next owner of
//! the slot overwrites the slice; the probes in between still know where
//! they went, from the echo's response header.

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

/// What discovery wants of registration: per-node Services or the pool,
/// and the pool slot this node serves this round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wish {
    pub pool: bool,
    pub slot: Option<usize>,
    /// The per-node Service is type NodePort (`[kubernetes] node_ports`).
    pub node_port: bool,
}

/// The per-node Service as this pod applies it: type NodePort when the
/// NodePort path is probed too.
pub fn node_service(id: &PodIdentity, port: u16, node_port: bool) -> Service {
    let mut svc = service_for(id, port);
    if node_port && let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
    }
    svc.metadata = ObjectMeta {
        name: Some(names::node_service(&id.node)),
        namespace: Some(id.namespace.clone()),
        labels: Some(common_labels()),
        annotations: Some([(labels::NODE.to_string(), id.node.clone())].into()),
        owner_references: Some(vec![id.owner()]),
        ..Default::default()
    };
    svc
}

/// Probe Service `k` of the pool: no owner (it outlives every pod that
/// serves it), no node annotation (its slice names the node).
pub fn pool_service(id: &PodIdentity, k: usize, port: u16) -> Service {
    let mut labels = common_labels();
    labels.insert(labels::ROLE.into(), "pool".into());
    labels.insert("app.kubernetes.io/component".into(), "pool-service".into());
    let mut svc = service_for(id, port);
    svc.metadata = ObjectMeta {
        name: Some(names::pool_service(k)),
        namespace: Some(id.namespace.clone()),
        labels: Some(labels),
        ..Default::default()
    };
    svc
}

fn service_for(id: &PodIdentity, port: u16) -> Service {
    Service {
        metadata: ObjectMeta::default(),
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
    slice_for(
        id,
        names::node_service(&id.node),
        names::node_slice(&id.node, id.kind),
        "node",
    )
}

/// The slice that points pool slot `k` at this pod, in its turn.
pub fn pool_slice(id: &PodIdentity, k: usize) -> EndpointSlice {
    slice_for(
        id,
        names::pool_service(k),
        names::pool_slice(k, id.kind),
        "pool",
    )
}

fn slice_for(id: &PodIdentity, service: String, name: String, role: &str) -> EndpointSlice {
    let mut labels = common_labels();
    labels.insert(labels::ROLE.into(), role.into());
    labels.insert(labels::SERVICE_NAME.into(), service);
    // Not the EndpointSlice controller's value, so it leaves the slice alone.
    labels.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "tailprobe.io".into(),
    );
    labels.insert(labels::SOURCE_KIND.into(), id.kind.as_str().into());
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(id.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![id.owner()]),
            ..Default::default()
        },
        address_type: family(&id.pod_ip).into(),
        endpoints: Some(vec![Endpoint {
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
        }]),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(i32::from(id.echo_port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// Applies what `wish` asks for; safe to repeat. Per-node: this node's
/// Service and this pod's slice. Pool: this pod's slice (its
/// registration), and in its turn the slot's Service and slice.
pub async fn apply(
    client: &Client,
    id: &PodIdentity,
    port: u16,
    wish: Wish,
) -> Result<(), KubeError> {
    let pp = PatchParams::apply(&id.field_manager()).force();
    if !wish.pool {
        apply_one(
            client,
            &id.namespace,
            &node_service(id, port, wish.node_port),
            &pp,
        )
        .await?;
    }
    apply_one(client, &id.namespace, &node_slice(id), &pp).await?;
    if let Some(k) = wish.slot {
        // One manager for the pool's Services, whoever applies them: the
        // same fields, never a conflict.
        let shared = PatchParams::apply("tailprobe-pool").force();
        apply_one(client, &id.namespace, &pool_service(id, k, port), &shared).await?;
        apply_one(client, &id.namespace, &pool_slice(id, k), &pp).await?;
    }
    Ok(())
}

/// Deletes this node's Service once the cluster is past the per-node
/// bound: its ClusterIP is the point. Gone already is fine.
async fn drop_node_service(client: &Client, id: &PodIdentity) -> Result<(), KubeError> {
    let name = names::node_service(&id.node);
    match Api::<Service>::namespaced(client.clone(), &id.namespace)
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Api {
            what: format!("deleting Service {}/{name}", id.namespace),
            source,
        }),
    }
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
#[allow(clippy::too_many_arguments)]
pub async fn keep(
    client: Client,
    id: PodIdentity,
    port: u16,
    every: std::time::Duration,
    metrics: super::metrics::KubeMetrics,
    deleted: std::sync::Arc<tokio::sync::Notify>,
    mut wishes: tokio::sync::watch::Receiver<Wish>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut registered = false;
    let mut node_service = true;
    // Discovery's first plan says whether the cluster is past the bound: a
    // prober starting in a big cluster would otherwise create its node's
    // Service only to delete it seconds later. Without discovery in time,
    // per-node it is.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wishes.changed()).await;
    loop {
        let wish = *wishes.borrow_and_update();
        if wish.pool && node_service {
            match drop_node_service(&client, &id).await {
                Ok(()) => {
                    tracing::info!(
                        "Past [kubernetes] node_services_max_nodes: this node is reached through the pool of probe Services; its own Service is deleted."
                    );
                    node_service = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot delete this node's Service; retrying.")
                }
            }
        }
        node_service |= !wish.pool;
        let ok = match apply(&client, &id, port, wish).await {
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
            // A new round's pool slot, or the cluster crossing the bound.
            Ok(()) = wishes.changed() => {}
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
        assert_eq!(
            s.endpoints.as_ref().unwrap()[0].node_name.as_deref(),
            Some("node-1")
        );
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
            false,
        );
        let spec = v6_svc.spec.unwrap();
        assert_eq!(spec.ip_families, Some(vec!["IPv6".to_string()]));
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
        let svc = node_service(&id(), 80, false);
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
