//! deploy/ applied to the lab's cluster as a user applies it: `kubectl
//! apply --server-side -k` with the release's own kubectl, then a wait for
//! the rollout. The binary carries the manifests (`deploy/`, its base and
//! the hub), so `lab run --kubernetes` and the demo work from any folder;
//! `--deploy DIR` applies another copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{Bins, admin_kubeconfig, with_admin};
use crate::lab::{LabError, Plan, netns};
use crate::wire::report::ClusterMatrix;

/// deploy/ as this binary was built with it: every file the default
/// kustomization (`deploy/kustomization.yaml`: the base and the hub, and
/// the image they share) reads.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "kustomization.yaml",
        include_str!("../../../deploy/kustomization.yaml"),
    ),
    (
        "base/kustomization.yaml",
        include_str!("../../../deploy/base/kustomization.yaml"),
    ),
    (
        "base/namespace.yaml",
        include_str!("../../../deploy/base/namespace.yaml"),
    ),
    (
        "base/rbac.yaml",
        include_str!("../../../deploy/base/rbac.yaml"),
    ),
    (
        "base/priorityclass.yaml",
        include_str!("../../../deploy/base/priorityclass.yaml"),
    ),
    (
        "base/daemonset-host.yaml",
        include_str!("../../../deploy/base/daemonset-host.yaml"),
    ),
    (
        "base/daemonset-pod.yaml",
        include_str!("../../../deploy/base/daemonset-pod.yaml"),
    ),
    (
        "base/networkpolicy.yaml",
        include_str!("../../../deploy/base/networkpolicy.yaml"),
    ),
    (
        "base/tailprobe.toml",
        include_str!("../../../deploy/base/tailprobe.toml"),
    ),
    (
        "hub/kustomization.yaml",
        include_str!("../../../deploy/hub/kustomization.yaml"),
    ),
    ("hub/hub.yaml", include_str!("../../../deploy/hub/hub.yaml")),
    ("hub/hub.toml", include_str!("../../../deploy/hub/hub.toml")),
    (
        "image/kustomization.yaml",
        include_str!("../../../deploy/image/kustomization.yaml"),
    ),
];

/// The namespace deploy/ puts everything in.
pub const NAMESPACE: &str = "tailprobe";

/// Writes the embedded manifests into the lab's state folder; returns the
/// folder to apply.
pub fn write_embedded(plan: &Plan) -> Result<PathBuf, LabError> {
    let root = super::state(&plan.prefix).join("deploy");
    for (file, text) in EMBEDDED {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().expect("a parent"))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| LabError::Kernel {
                what: format!("cannot write {} ({e})", path.display()),
            })?;
    }
    Ok(root)
}

/// `kubectl apply --server-side -k DIR` as the lab's admin; its output.
pub fn apply(plan: &Plan, bins: &Bins, dir: &Path) -> Result<String, LabError> {
    if !dir.join("kustomization.yaml").is_file() {
        return Err(LabError::Usage(format!(
            "{} holds no kustomization.yaml; pass the repository's deploy/ folder (or one of its overlays)",
            dir.display()
        )));
    }
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &plan.control_ns()])
        .arg(bins.kubectl())
        .arg(format!(
            "--kubeconfig={}",
            admin_kubeconfig(&plan.prefix).display()
        ))
        .args(["apply", "--server-side", "-k"])
        .arg(dir)
        .output()
        .map_err(|e| LabError::Command {
            command: "kubectl apply".into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("kubectl apply --server-side -k {}", dir.display()),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until every DaemonSet and Deployment of `namespace` has all its
/// pods ready; the error names each pod that is not, and why.
pub fn wait_rollout(plan: &Plan, namespace: &str, within: Duration) -> Result<(), LabError> {
    let ns = namespace.to_string();
    let logs = super::state(&plan.prefix).join("pods");
    with_admin(plan, move |client| async move {
        let deadline = Instant::now() + within;
        loop {
            let ds = Api::<DaemonSet>::namespaced(client.clone(), &ns)
                .list(&ListParams::default())
                .await;
            let deps = Api::<Deployment>::namespaced(client.clone(), &ns)
                .list(&ListParams::default())
                .await;
            let done = match (&ds, &deps) {
                (Ok(ds), Ok(deps)) => {
                    ds.items.iter().all(|d| {
                        d.status.as_ref().is_some_and(|s| {
                            s.desired_number_scheduled > 0
                                && s.number_ready == s.desired_number_scheduled
                                && s.updated_number_scheduled == Some(s.desired_number_scheduled)
                        })
                    }) && deps.items.iter().all(|d| {
                        let want = d.spec.replicas.unwrap_or(1);
                        d.status
                            .as_ref()
                            .is_some_and(|s| s.ready_replicas.unwrap_or(0) >= want)
                    })
                }
                _ => false,
            };
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                let pods = Api::<Pod>::namespaced(client.clone(), &ns)
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                return Err(LabError::Kernel {
                    what: format!(
                        "the workloads of namespace {ns} were not ready after {}s: {}; the pods' logs are in {}",
                        within.as_secs(),
                        not_ready(&pods),
                        logs.display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Each pod that is not ready, with its containers' waiting reasons.
fn not_ready(pods: &[Pod]) -> String {
    let mut out = Vec::new();
    for p in pods {
        let status = p.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            continue;
        }
        let why: Vec<String> = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
            .map(|w| {
                format!(
                    "{}: {}",
                    w.reason.as_deref().unwrap_or("Waiting"),
                    w.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        out.push(format!(
            "{} ({})",
            p.metadata.name.as_deref().unwrap_or("?"),
            if why.is_empty() {
                status
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "not ready".into())
            } else {
                why.join("; ")
            }
        ));
    }
    if out.is_empty() {
        "no pod yet".into()
    } else {
        out.join(", ")
    }
}

/// The deployed hub's verdict, read through its Service (the real
/// kube-proxy's VIP) from the hub's own node: a same-node path, which no
/// fault the lab injects between nodes can cut.
pub fn hub_matrix(plan: &Plan) -> Result<ClusterMatrix, LabError> {
    let (vip, node) = with_admin(plan, |client| async move {
        let svc = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), NAMESPACE)
            .get("tailprobe-hub")
            .await
            .map_err(|e| LabError::Kernel {
                what: format!(
                    "cannot read Service {NAMESPACE}/tailprobe-hub ({e}); was deploy/ applied?"
                ),
            })?;
        let vip = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .ok_or_else(|| LabError::Kernel {
                what: "Service tailprobe/tailprobe-hub has no ClusterIP".into(),
            })?;
        let pods = Api::<Pod>::namespaced(client, NAMESPACE)
            .list(&ListParams::default().labels("app.kubernetes.io/component=hub"))
            .await
            .map_err(|e| LabError::Kernel {
                what: format!("cannot list the hub's pods ({e})"),
            })?;
        let node = pods
            .items
            .iter()
            .find_map(|p| p.spec.as_ref()?.node_name.clone());
        Ok::<_, LabError>((vip, node))
    })?;
    let from = node
        .as_deref()
        .and_then(|n| plan.node_index(n))
        .unwrap_or(1);
    let url = format!("http://{vip}:9797/api/v1/matrix");
    netns::run_in(&plan.node_ns(from), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
            .block_on(async move {
                crate::install_crypto();
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .tls_certs_only([])
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| LabError::Usage(e.to_string()))?;
                let r = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| LabError::Kernel {
                        what: format!("the hub did not answer at {url} ({e})"),
                    })?;
                let body = r.bytes().await.map_err(|e| LabError::Kernel {
                    what: format!("the hub's answer at {url} was cut short ({e})"),
                })?;
                serde_json::from_slice::<ClusterMatrix>(&body).map_err(|e| LabError::Kernel {
                    what: format!("the hub's answer at {url} is not a matrix ({e})"),
                })
            })
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of deploy/base and deploy/hub is carried, and nothing else
    /// the default kustomization does not read.
    #[test]
    fn the_binary_carries_every_file_of_the_default_deploy() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let mut on_disk = vec!["kustomization.yaml".to_string()];
        for sub in ["base", "hub", "image"] {
            for e in std::fs::read_dir(root.join(sub)).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                // Opt-in, not in the hub's kustomization.
                if name != "operator-rbac.yaml" {
                    on_disk.push(format!("{sub}/{name}"));
                }
            }
        }
        on_disk.sort();
        let mut carried: Vec<String> = EMBEDDED.iter().map(|(f, _)| f.to_string()).collect();
        carried.sort();
        assert_eq!(carried, on_disk);
        for (file, text) in EMBEDDED {
            assert_eq!(
                std::fs::read_to_string(root.join(file)).unwrap(),
                *text,
                "{file}"
            );
        }
    }
}
