//! deploy/ checked offline: every document parses into its typed Kubernetes
//! object and serializes back unchanged (a misspelled or misplaced field
//! fails), the kustomizations name files that exist and render, the
//! DaemonSets' command lines parse with the real CLI, their config passes
//! `tailprobe check`, and the DaemonSets hold the promises the README makes.

use crate::common;

use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde::Deserialize;
use serde_json::Value;
use tailprobe::cli::{Cli, Command};

mod commands;
mod overlays;
mod policy;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn deploy() -> PathBuf {
    Path::new(ROOT).join("deploy")
}

/// Every manifest: the YAML files under `dir`, but those a
/// configMapGenerator reads (data, not objects).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let inputs = generator_inputs(dir);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") && !inputs.contains(&p) {
            out.push(p);
        }
    }
    out.sort();
}

/// The files a directory's kustomization turns into ConfigMaps (`KEY=FILE`
/// or `FILE`).
fn generator_inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dir.join("kustomization.yaml")) else {
        return Vec::new();
    };
    let k: Kustomization = serde_norway::from_str(&text).unwrap();
    k.config_map_generator
        .iter()
        .flat_map(|g| g.files.iter())
        .map(|f| dir.join(f.rsplit('=').next().unwrap()))
        .collect()
}

fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Parses into `T`, then checks that nothing was lost on the way.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, file: &Path) -> T {
    let t: T =
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        &back,
        doc,
        "{}: fields were dropped or changed by the typed object (misspelled or misplaced?)",
        file.display()
    );
    t
}

/// The objects kustomize reads: a typed struct that refuses unknown keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Kustomization {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
    #[serde(default)]
    images: Vec<Value>,
    #[serde(default)]
    patches: Vec<Value>,
    #[serde(default)]
    components: Vec<String>,
    generator_options: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generator {
    name: String,
    files: Vec<String>,
}

#[test]
fn every_manifest_is_a_valid_typed_object() {
    let mut files = Vec::new();
    yaml_files(&deploy(), &mut files);
    let mut kinds = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in documents(&text) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "Kustomization" | "Component" => {
                    let k: Kustomization = serde_json::from_value(doc.clone())
                        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                    let dir = f.parent().unwrap();
                    for r in k.resources.iter().chain(&k.components) {
                        assert!(dir.join(r).exists(), "{}: {r} does not exist", f.display());
                    }
                    for g in &k.config_map_generator {
                        assert!(
                            [
                                "tailprobe-config",
                                "tailprobe-hub-config",
                                "otel-collector-config",
                                "tailprobe-grafana-dashboard"
                            ]
                            .contains(&g.name.as_str()),
                            "the DaemonSets, the hub and the collector mount these names: {}",
                            g.name
                        );
                        for file in &g.files {
                            let file = file.rsplit('=').next().unwrap();
                            assert!(dir.join(file).is_file(), "{}: {file}", f.display());
                        }
                    }
                }
                "Namespace" => drop(typed::<Namespace>(&doc, f)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(&doc, f)),
                "ClusterRole" => drop(typed::<ClusterRole>(&doc, f)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&doc, f)),
                "Role" => drop(typed::<Role>(&doc, f)),
                "RoleBinding" => drop(typed::<RoleBinding>(&doc, f)),
                "DaemonSet" => drop(typed::<DaemonSet>(&doc, f)),
                "Deployment" => drop(typed::<Deployment>(&doc, f)),
                "Service" => drop(typed::<Service>(&doc, f)),
                "ConfigMap" => drop(typed::<ConfigMap>(&doc, f)),
                "NetworkPolicy" => drop(typed::<NetworkPolicy>(&doc, f)),
                "PriorityClass" => drop(typed::<PriorityClass>(&doc, f)),
                // Prometheus operator kinds: no k8s-openapi type; check the
                // group and the parts the operator requires.
                "ServiceMonitor" | "PrometheusRule" => {
                    assert_eq!(
                        doc["apiVersion"],
                        "monitoring.coreos.com/v1",
                        "{}",
                        f.display()
                    );
                    assert!(doc["metadata"]["name"].is_string() && doc["spec"].is_object());
                }
                other => panic!("{}: unexpected kind {other:?}", f.display()),
            }
            kinds.push(kind);
        }
    }
    for want in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "DaemonSet",
        "ServiceMonitor",
    ] {
        assert!(kinds.iter().any(|k| k == want), "no {want} under deploy/");
    }
}

fn daemonsets() -> Vec<(String, DaemonSet)> {
    ["host", "pod"]
        .into_iter()
        .map(|k| {
            let f = deploy().join(format!("base/daemonset-{k}.yaml"));
            let doc = documents(&std::fs::read_to_string(&f).unwrap()).remove(0);
            (k.to_string(), typed::<DaemonSet>(&doc, &f))
        })
        .collect()
}
