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

pub mod apiserver;
pub mod discovery;
mod families;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod register;
pub mod snapshot;

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
