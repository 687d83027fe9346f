//! tailprobe on a real Kubernetes: kube-apiserver, etcd, the controller
//! manager, the scheduler and kube-proxy, the official programs at the
//! release `tools/` pins, in a lab on the real kernel (`lab up
//! --kubernetes`), with the node agent running the pods. deploy/ is applied
//! as a user applies it; what the probers and the hub do is read from the
//! cluster, their endpoints and the API server's audit log. These tests
//! need root and the control plane's build (`scripts/control-plane`, which
//! `./scripts/test` runs first).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::Cluster;
use common::eventually;
use serde_json::Value;
use tailprobe::lab::kube::Proc;

mod apply;
mod disruption;
mod matrix;
mod nodeports;
mod services;

const NS: &str = "tailprobe";
const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The prober pods of a namespace: (node, source kind) -> (pod name, uid,
/// its API's base URL).
fn probers(c: &Cluster, ns: &str) -> BTreeMap<(String, String), (String, String, String)> {
    c.list("pods", ns, Some("app.kubernetes.io/name=tailprobe"))
        .iter()
        .filter(|p| p["status"]["podIP"].is_string())
        .map(|p| {
            let node = p["spec"]["nodeName"].as_str().unwrap().to_string();
            let kind = p["metadata"]["labels"]["tailprobe.io/source-kind"]
                .as_str()
                .unwrap()
                .to_string();
            (
                (node, kind),
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["metadata"]["uid"].as_str().unwrap().to_string(),
                    format!("http://{}:9797", p["status"]["podIP"].as_str().unwrap()),
                ),
            )
        })
        .collect()
}

/// Waits until every prober finds every node's Service and every pod
/// prober.
fn every_prober_knows_every_node(
    c: &Cluster,
    ps: &BTreeMap<(String, String), (String, String, String)>,
) {
    let want = set(&[
        "node/node1",
        "node/node2",
        "node/node3",
        "pod/node1",
        "pod/node2",
        "pod/node3",
        "svc/default/kubernetes",
    ]);
    for (key, (_, _, base)) in ps {
        eventually("every node as a target", Duration::from_secs(60), || {
            let got = targets(c, base);
            if got == want {
                Ok(())
            } else {
                Err(format!("{key:?}: {got:?}"))
            }
        });
    }
}

/// The names of a prober's targets, from its `/api/v1/targets`.
fn targets(c: &Cluster, base: &str) -> BTreeSet<String> {
    c.body(1, &format!("{base}/api/v1/targets"))
        .and_then(|b| serde_json::from_str::<Vec<Value>>(&b).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

/// (verb, resource) a user asked for, every request in `namespace`. A
/// server-side apply that made a new object (a patch answered 201) was
/// authorized as a create as well: the API server asks for both. A GET of
/// no resource is the API server's own probe (`/readyz`), readable by every
/// authenticated user (system:public-info-viewer): no Role grants it.
fn used_by(c: &Cluster, user: &str, namespace: &str) -> BTreeSet<(String, String)> {
    let mut used = BTreeSet::new();
    for a in c.audit().into_iter().filter(|a| a.user == user) {
        if a.resource.is_empty() && a.namespace.is_none() {
            assert_eq!((a.verb.as_str(), a.code), ("get", 200), "{a:?}");
            continue;
        }
        assert_eq!(
            a.namespace.as_deref(),
            Some(namespace),
            "{user} asked outside its namespace: {a:?}"
        );
        if a.verb == "patch" && a.code == 201 {
            used.insert(("create".to_string(), a.resource.clone()));
        }
        used.insert((a.verb, a.resource));
    }
    used
}

/// (verb, resource) granted by the Roles in a file under deploy/.
fn role_grants(file: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut granted = BTreeSet::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] == "Role" {
            let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(v).unwrap();
            for rule in role.rules.into_iter().flatten() {
                for verb in &rule.verbs {
                    for res in rule.resources.iter().flatten() {
                        granted.insert((verb.clone(), res.clone()));
                    }
                }
            }
        }
    }
    granted
}

/// A namespace of pod-network probers only (the host ones would take the
/// host's ports that deploy/'s probers hold), from deploy/base with this
/// configuration.
fn pod_probers(c: &Cluster, ns: &str, config: &str) {
    let lines = format!(
        "namespace: {ns}\n\
         configMapGenerator:\n  - name: tailprobe-config\n    behavior: replace\n    files: [tailprobe.toml]\n\
         patches:\n  - patch: |-\n      $patch: delete\n      apiVersion: apps/v1\n      kind: DaemonSet\n      metadata:\n        name: tailprobe-host\n"
    );
    let dir = c.overlay(ns, "deploy/base", &lines, &[("tailprobe.toml", config)]);
    c.kubectl_ok(&["apply", "--server-side", "-k", dir.to_str().unwrap()]);
    tailprobe::lab::kube::deploy::wait_rollout(&c.plan, ns, Duration::from_secs(120)).unwrap();
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
