//! deploy/ checked offline: every document parses into its typed Kubernetes
//! object and serializes back unchanged (a misspelled or misplaced field
//! fails), the kustomizations name files that exist and render, the
//! DaemonSets' command lines parse with the real CLI, their config passes
//! `tailprobe check`, and the DaemonSets hold the promises the README makes.

mod common;

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

#[test]
fn daemonsets_run_a_command_line_the_cli_accepts_with_a_config_that_checks() {
    let cfg_path = deploy().join("base/tailprobe.toml");
    let loaded = tailprobe::config::load(cfg_path.to_str().unwrap()).unwrap();
    let k = loaded
        .config
        .kubernetes
        .clone()
        .expect("[kubernetes] in the deployed config");
    let out = std::process::Command::new(common::bin())
        .args(["check", "--config", cfg_path.to_str().unwrap()])
        .env("NODE_NAME", "node-1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (kind, ds) in daemonsets() {
        let spec = ds.spec;
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        // The image's ENTRYPOINT is /tailprobe; the args are the CLI's.
        let mut argv = vec!["tailprobe".to_string()];
        argv.extend(c.args.clone().unwrap());
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let Command::Run(run) = cli.command else {
            panic!("{kind}: the DaemonSet does not run `tailprobe run`")
        };
        // --config names the ConfigMap's file where it is mounted.
        let mount = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "config")
            .unwrap();
        assert_eq!(
            run.config,
            Path::new(&mount.mount_path).join("tailprobe.toml"),
            "{kind}"
        );
        let vol = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "config")
            .unwrap();
        assert_eq!(vol.config_map.as_ref().unwrap().name, "tailprobe-config");

        // The downward API feeds what registration and attribution need.
        let env: std::collections::BTreeMap<String, String> = c
            .env
            .iter()
            .flatten()
            .map(|e| {
                let v = e.value.clone().or_else(|| {
                    e.value_from
                        .as_ref()?
                        .field_ref
                        .as_ref()
                        .map(|f| format!("field:{}", f.field_path))
                });
                (e.name.clone(), v.unwrap_or_default())
            })
            .collect();
        for (name, want) in [
            ("NODE_NAME", "field:spec.nodeName"),
            ("POD_NAME", "field:metadata.name"),
            ("POD_NAMESPACE", "field:metadata.namespace"),
            ("POD_UID", "field:metadata.uid"),
            ("POD_IP", "field:status.podIP"),
            ("TAILPROBE_SOURCE_KIND", kind.as_str()),
        ] {
            assert_eq!(
                env.get(name).map(String::as_str),
                Some(want),
                "{kind}: {name}"
            );
        }
        assert_eq!(pod.host_network.unwrap_or(false), kind == "host");

        // Pods carry the labels discovery selects prober pods by.
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        let sel: tailprobe::config::LabelSelector = k.prober_selector.parse().unwrap();
        assert!(
            sel.matches(&labels),
            "{kind}: pods must match prober_selector"
        );
        assert_eq!(labels["tailprobe.io/source-kind"], kind);

        // Ports agree with the config: metrics on [server], echo on [kubernetes].
        let port = |name: &str| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap()
                .container_port
        };
        assert_eq!(
            port("metrics"),
            i32::from(loaded.config.server.listen.port())
        );
        assert_eq!(port("echo"), i32::from(k.echo_listen.port()));

        // Every node, least privilege, bounded resources, health checks.
        let tol = pod.tolerations.unwrap();
        assert!(
            tol.iter()
                .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("tailprobe"));
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        let res = c.resources.clone().unwrap();
        for k in ["cpu", "memory"] {
            assert!(
                res.requests.as_ref().unwrap().contains_key(k),
                "{kind}: request {k}"
            );
        }
        let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        };
        assert_eq!(path(&c.liveness_probe), "/healthz");
        assert_eq!(path(&c.readiness_probe), "/readyz");
    }
}

#[test]
fn the_image_runs_as_the_daemonsets_user_with_the_cli_as_entrypoint() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert_eq!(
        froms.last(),
        Some(&"FROM scratch"),
        "a static binary in an empty image"
    );
    assert!(text.contains("ENTRYPOINT [\"/tailprobe\"]"));
    assert!(
        text.contains("--locked"),
        "the image builds what Cargo.lock pins"
    );
    let user = text.lines().find_map(|l| l.strip_prefix("USER ")).unwrap();
    let uid: i64 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    for (kind, ds) in daemonsets() {
        let sc = ds.spec.template.spec.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_user, Some(uid), "{kind}");
    }
}

/// The overlays' objects: every YAML document their resources name,
/// followed into directories, and the ConfigMaps their generators make (as
/// (name, file) pairs).
fn overlay(dir: &Path) -> (Vec<Value>, Vec<(String, PathBuf)>) {
    let k: Kustomization =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut docs = Vec::new();
    let mut maps: Vec<(String, PathBuf)> = k
        .config_map_generator
        .iter()
        .flat_map(|g| {
            g.files
                .iter()
                .map(|f| (g.name.clone(), dir.join(f.rsplit('=').next().unwrap())))
        })
        .collect();
    for r in &k.resources {
        let p = dir.join(r);
        if p.is_dir() {
            let (d, m) = overlay(&p);
            docs.extend(d);
            maps.extend(m);
        } else {
            docs.extend(documents(&std::fs::read_to_string(&p).unwrap()));
        }
    }
    (docs, maps)
}

/// What the workload behind `host:port` (a Service of the overlay) takes
/// over OTLP: Jaeger v2 traces only; a collector the signals whose
/// pipelines read an OTLP receiver.
fn accepted(docs: &[Value], maps: &[(String, PathBuf)], host: &str, port: u16) -> Vec<String> {
    let name = host.split('.').next().unwrap();
    let svc = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Service {name} in the overlay"));
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == port),
        "Service {name} has no port {port}"
    );
    let selector = &svc["spec"]["selector"];
    let deploy = docs
        .iter()
        .find(|d| {
            d["kind"] == "Deployment"
                && d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
                    == selector["app.kubernetes.io/name"]
        })
        .unwrap_or_else(|| panic!("no Deployment behind Service {name}"));
    let image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    if image.starts_with("jaegertracing/") {
        assert!(
            image.starts_with("jaegertracing/jaeger:2."),
            "Jaeger v1 ({image}) reached end of life; use v2"
        );
        return vec!["traces".into()];
    }
    assert!(
        image.starts_with("otel/opentelemetry-collector"),
        "unknown OTLP receiver {image}"
    );
    let volume = deploy["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
        .as_str()
        .unwrap();
    let file = &maps.iter().find(|(n, _)| n == volume).unwrap().1;
    let config: Value = serde_norway::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let pipelines = config["service"]["pipelines"].as_object().unwrap();
    let mut out: Vec<String> = pipelines
        .iter()
        .filter(|(_, p)| {
            p["receivers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().split('/').next() == Some("otlp"))
        })
        .map(|(k, _)| k.split('/').next().unwrap().to_string())
        .collect();
    out.sort();
    out.dedup();
    // What the collector forwards must be taken where it goes.
    for (signal, p) in pipelines {
        for e in p["exporters"].as_array().unwrap() {
            let e = e.as_str().unwrap();
            if !e.starts_with("otlp") {
                continue;
            }
            let endpoint = config["exporters"][e]["endpoint"].as_str().unwrap();
            let (h, port) = endpoint.rsplit_once(':').unwrap();
            let signal = signal.split('/').next().unwrap();
            assert!(
                accepted(docs, maps, h, port.parse().unwrap()).contains(&signal.to_string()),
                "the collector sends {signal} to {endpoint}, which does not take them"
            );
        }
    }
    out
}

/// In every overlay that sets the probers' OTLP variables, each signal
/// either has no endpoint (and is not sent) or goes to a workload that
/// takes it: Jaeger is never sent metrics or alert records.
#[test]
fn every_signal_is_sent_only_where_it_is_taken() {
    for dir in ["jaeger", "otel-collector"] {
        let k: Kustomization = serde_norway::from_str(
            &std::fs::read_to_string(deploy().join(dir).join("kustomization.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            k.patches[0]["target"]["kind"], "DaemonSet",
            "both DaemonSets"
        );
        let ops: Vec<Value> =
            serde_norway::from_str(k.patches[0]["patch"].as_str().unwrap()).unwrap();
        let env = |name: &str| {
            ops.iter()
                .find(|op| op["value"]["name"] == name)
                .and_then(|op| op["value"]["value"].as_str())
                .map(str::to_string)
        };
        let (docs, maps) = overlay(&deploy().join(dir));
        let mut sent = Vec::new();
        for signal in ["traces", "metrics", "logs"] {
            let upper = signal.to_uppercase();
            if env(&format!("OTEL_{upper}_EXPORTER")).as_deref() == Some("none") {
                continue;
            }
            let Some(endpoint) = env(&format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"))
                .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            else {
                continue;
            };
            let protocol = env(&format!("OTEL_EXPORTER_OTLP_{upper}_PROTOCOL"))
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
            let authority = endpoint.strip_prefix("http://").unwrap();
            let (host, port) = authority.split_once(':').unwrap();
            let port: u16 = port
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap();
            assert_eq!(
                (protocol.as_deref(), port),
                (Some("grpc"), 4317),
                "deploy/{dir}: {signal} over gRPC to the gRPC port"
            );
            assert!(
                host.ends_with(".tailprobe.svc"),
                "deploy/{dir}: {signal} to a Service of the namespace"
            );
            assert!(
                accepted(&docs, &maps, host, port).contains(&signal.to_string()),
                "deploy/{dir}: {signal} would be sent to {endpoint}, which refuses them"
            );
            sent.push(signal);
        }
        let want: &[&str] = match dir {
            "jaeger" => &["traces"],
            _ => &["traces", "metrics", "logs"],
        };
        assert_eq!(sent, want, "deploy/{dir}");
    }
}

/// Every object under deploy/ but the kustomizations.
fn objects() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&deploy(), &mut files);
    files
        .into_iter()
        .flat_map(|f| {
            documents(&std::fs::read_to_string(&f).unwrap())
                .into_iter()
                .filter(|d| d["kind"] != "Kustomization" && d["kind"] != "Component")
                .map(move |d| (f.clone(), d))
        })
        .collect()
}

/// The labels Kubernetes recommends, on every object: what it is, which
/// installation, what it belongs to, what manages it.
fn has_recommended_labels(d: &Value) -> Result<(), String> {
    let labels = &d["metadata"]["labels"];
    for key in ["name", "instance", "part-of", "managed-by"] {
        let k = format!("app.kubernetes.io/{key}");
        if !labels[&k].is_string() {
            return Err(format!("{} {} lacks {k}", d["kind"], d["metadata"]["name"]));
        }
    }
    Ok(())
}

/// The probers need nothing cluster-wide: any ClusterRole (the opt-in one
/// for other namespaces' Services) only reads Services and EndpointSlices,
/// and no Role of the probers touches pods (whose specs carry env values)
/// or nodes (whose every heartbeat would reach every prober).
fn cluster_scope_is_least(docs: &[Value]) {
    for d in docs.iter().filter(|d| d["kind"] == "ClusterRole") {
        let role: ClusterRole = serde_json::from_value(d.clone()).unwrap();
        for rule in role.rules.iter().flatten() {
            for res in rule.resources.iter().flatten() {
                assert!(
                    ["services", "endpointslices"].contains(&res.as_str()),
                    "a ClusterRole grants {res}"
                );
            }
            for verb in &rule.verbs {
                assert!(
                    ["list", "watch"].contains(&verb.as_str()),
                    "a ClusterRole may {verb}"
                );
            }
        }
    }
    let probers: Vec<Role> = docs
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "tailprobe")
        .map(|d| serde_json::from_value::<Role>(d.clone()).unwrap())
        .collect();
    assert_eq!(probers.len(), 1, "the probers' Role");
    for r in probers[0].rules.iter().flatten() {
        for res in r.resources.iter().flatten() {
            assert!(
                ["services", "endpointslices"].contains(&res.as_str()),
                "the probers' Role grants {res}"
            );
        }
    }
}

#[test]
fn objects_carry_the_recommended_labels_and_the_probers_fit_every_linux_node() {
    let all = objects();
    for (f, d) in &all {
        if let Err(e) = has_recommended_labels(d) {
            panic!("{}: {e}", f.display());
        }
    }
    let docs: Vec<Value> = all.iter().map(|(_, d)| d.clone()).collect();
    cluster_scope_is_least(&docs);
    let kustomization =
        documents(&std::fs::read_to_string(deploy().join("image/kustomization.yaml")).unwrap())
            .remove(0);
    let tag = kustomization["images"][0]["newTag"].as_str().unwrap();
    assert_eq!(
        tag,
        env!("CARGO_PKG_VERSION"),
        "the image tag is this version"
    );
    let classes: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "PriorityClass")
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    // Every pod in the namespace of the per-node Services: no service links.
    for (f, d) in &all {
        if ["DaemonSet", "Deployment"].contains(&d["kind"].as_str().unwrap_or_default()) {
            assert_eq!(
                d["spec"]["template"]["spec"]["enableServiceLinks"],
                false,
                "{}: {}",
                f.display(),
                d["metadata"]["name"]
            );
        }
    }
    for (kind, ds) in daemonsets() {
        let version = ds.metadata.labels.as_ref().unwrap()["app.kubernetes.io/version"].clone();
        assert_eq!(version, tag, "{kind}: the version label is the image tag");
        let pod = ds.spec.template.spec.unwrap();
        assert_eq!(
            pod.node_selector
                .unwrap_or_default()
                .get("kubernetes.io/os")
                .map(String::as_str),
            Some("linux"),
            "{kind}: a Linux image runs on Linux nodes only"
        );
        let class = pod.priority_class_name.expect("a priority class");
        assert!(classes.contains(&class), "{kind}: {class} is shipped");
        let res = pod.containers[0].resources.clone().unwrap();
        let limits = res.limits.unwrap_or_default();
        assert!(
            !limits.contains_key("cpu"),
            "{kind}: a CPU limit throttles the prober inside its own measurements"
        );
        assert!(
            limits.contains_key("memory"),
            "{kind}: memory stays bounded"
        );
        assert!(res.requests.unwrap_or_default().contains_key("cpu"));
    }
}

/// The release's own kubectl (`scripts/control-plane` builds it), else one
/// on the PATH.
fn kubectl() -> Option<std::path::PathBuf> {
    if let Ok(bins) = tailprobe::lab::kube::Bins::find(None) {
        return Some(bins.kubectl());
    }
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "kubectl".into())
}

/// kustomize itself, as the pinned release's kubectl runs it: every
/// kustomization renders, and what it renders parses; the ConfigMap carries
/// the checked config.
#[test]
fn kustomize_renders_every_kustomization() {
    let Some(kubectl) = kubectl() else {
        // CI builds the control plane first: there, its absence is a
        // failure, not a pass. Elsewhere the skip is said, not hidden.
        assert!(
            std::env::var_os("CI").is_none(),
            "kubectl is not built, so the manifests cannot be rendered; run scripts/control-plane"
        );
        eprintln!(
            "SKIPPED: kubectl is not built (scripts/control-plane): rendering not checked (the typed checks above still ran)"
        );
        return;
    };
    let config = std::fs::read_to_string(deploy().join("base/tailprobe.toml")).unwrap();
    for dir in [
        "",
        "jaeger",
        "otel-collector",
        "prometheus-operator",
        "passive",
    ] {
        let out = std::process::Command::new(&kubectl)
            .args(["kustomize", deploy().join(dir).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "deploy/{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let docs = documents(&String::from_utf8(out.stdout).unwrap());
        let cm = docs
            .iter()
            .find(|d| {
                d["kind"] == "ConfigMap"
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("tailprobe-config-"))
            })
            .expect("the ConfigMap");
        let cm: ConfigMap = serde_json::from_value(cm.clone()).unwrap();
        assert_eq!(cm.data.unwrap()["tailprobe.toml"], config);
        // One images entry (deploy/image) names the image of every
        // tailprobe workload, the hub's included.
        for d in docs.iter().filter(|d| {
            ["DaemonSet", "Deployment"].contains(&d["kind"].as_str().unwrap_or_default())
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("tailprobe"))
        }) {
            assert_eq!(
                d["spec"]["template"]["spec"]["containers"][0]["image"],
                format!("tailprobe:{}", env!("CARGO_PKG_VERSION")),
                "deploy/{dir}: {}",
                d["metadata"]["name"]
            );
        }
        for d in docs.iter().filter(|d| d["kind"] == "DaemonSet") {
            let ds: DaemonSet = serde_json::from_value(d.clone()).unwrap();
            assert_eq!(ds.metadata.namespace.as_deref(), Some("tailprobe"));
            let pod = ds.spec.template.spec.unwrap();
            let vol = &pod.volumes.unwrap()[0];
            assert_eq!(
                vol.config_map.as_ref().unwrap().name,
                cm.metadata.name.clone().unwrap(),
                "the hashed ConfigMap name reaches the DaemonSet"
            );
            let env = serde_json::to_string(&pod.containers[0].env).unwrap();
            assert_eq!(
                env.contains("OTEL_EXPORTER_OTLP"),
                ["jaeger", "otel-collector"].contains(&dir),
                "deploy/{dir}"
            );
        }
        // The rendered objects keep their labels and RBAC scope, the
        // namespaced ones land in tailprobe's namespace, and no pod of the
        // namespace gets the per-node Services as environment variables.
        for d in docs.iter().filter(|d| {
            ["DaemonSet", "Deployment"].contains(&d["kind"].as_str().unwrap_or_default())
        }) {
            assert_eq!(
                d["spec"]["template"]["spec"]["enableServiceLinks"], false,
                "deploy/{dir}: {} {}",
                d["kind"], d["metadata"]["name"]
            );
        }
        for d in &docs {
            if let Err(e) = has_recommended_labels(d) {
                panic!("deploy/{dir}: {e}");
            }
            if ["Role", "RoleBinding", "DaemonSet", "ServiceAccount"]
                .contains(&d["kind"].as_str().unwrap_or_default())
            {
                assert_eq!(d["metadata"]["namespace"], "tailprobe", "deploy/{dir}: {d}");
            }
        }
        cluster_scope_is_least(&docs);
        assert!(
            !docs.iter().any(|d| d["kind"] == "ClusterRole"),
            "deploy/{dir}: the probers and the hub need nothing cluster-wide"
        );
        assert!(!docs.iter().any(|d| d["kind"] == "ClusterRoleBinding"));
    }
}

#[test]
fn the_network_policy_selects_the_pod_probers_and_names_their_ports() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let f = deploy().join("base/networkpolicy.yaml");
    let doc = documents(&std::fs::read_to_string(&f).unwrap()).remove(0);
    let np: NetworkPolicy = typed(&doc, &f);
    let spec = np.spec.unwrap();
    let (_, pod_ds) = daemonsets().into_iter().find(|(k, _)| k == "pod").unwrap();
    let template = pod_ds.spec.template;
    let labels = template.metadata.unwrap().labels.unwrap();
    for (k, v) in spec.pod_selector.unwrap().match_labels.unwrap() {
        assert_eq!(
            labels.get(&k),
            Some(&v),
            "the policy selects the pod prober by {k}"
        );
    }
    let ports: Vec<String> = template.spec.unwrap().containers[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.clone())
        .collect();
    let rules = spec.ingress.unwrap();
    let named = |r: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| -> Vec<String> {
        r.ports
            .iter()
            .flatten()
            .filter_map(|p| match &p.port {
                Some(IntOrString::String(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    for r in &rules {
        for p in named(r) {
            assert!(
                ports.contains(&p),
                "port {p} is not a port of the pod prober"
            );
        }
    }
    let echo = rules.iter().find(|r| named(r) == ["echo"]).unwrap();
    assert!(echo.from.is_none(), "the echo admits everyone");
    let api = rules.iter().find(|r| named(r) == ["metrics"]).unwrap();
    assert!(
        api.from.as_ref().is_some_and(|f| !f.is_empty()),
        "the API admits only its clients"
    );
}

/// The hub's Deployment runs `tailprobe hub` on the ConfigMap's file, that
/// file checks, and the prober selector it discovers with selects both
/// DaemonSets' pods but never the hub's own.
#[test]
fn the_hub_runs_a_command_line_the_cli_accepts_and_finds_the_probers_not_itself() {
    let cfg_path = deploy().join("hub/hub.toml");
    let out = std::process::Command::new(common::bin())
        .args(["check", "--config", cfg_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded = tailprobe::config::load(cfg_path.to_str().unwrap()).unwrap();
    assert!(
        loaded.config.hub.probers.is_empty(),
        "found through Kubernetes"
    );
    let selector = loaded.config.kubernetes.unwrap().prober_selector;
    let (key, value) = selector.split_once('=').unwrap();

    let text = std::fs::read_to_string(deploy().join("hub/hub.yaml")).unwrap();
    let doc = documents(&text)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let d: Deployment = typed(&doc, &deploy().join("hub/hub.yaml"));
    let template = d.spec.template;
    let c = &template.spec.as_ref().unwrap().containers[0];
    let mut argv = vec!["tailprobe".to_string()];
    argv.extend(c.args.clone().unwrap());
    let cli = Cli::try_parse_from(&argv).unwrap();
    let Command::Hub(run) = cli.command else {
        panic!("the hub Deployment does not run `tailprobe hub`")
    };
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(run.config, Path::new(&mount.mount_path).join("hub.toml"));
    let hub_labels = template.metadata.unwrap().labels.unwrap();
    assert_ne!(
        hub_labels.get(key).map(String::as_str),
        Some(value),
        "the hub would pull itself"
    );
    for (kind, ds) in daemonsets() {
        let labels = ds.spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{kind}");
    }
    assert!(
        c.ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("metrics")),
        "the port the hub serves on"
    );
}

/// deploy/passive: its patches applied to the base's DaemonSets (JSON
/// patches, `replace` only, as kustomize applies them) give a host prober
/// that runs `run --passive` as root with CAP_BPF and CAP_PERFMON added and
/// every other capability dropped; the pod prober is untouched.
#[test]
fn the_passive_overlay_gives_the_host_prober_bpf_and_nothing_else() {
    let dir = deploy().join("passive");
    let k: Kustomization =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    assert_eq!(k.resources, ["../base"]);
    let (docs, _) = overlay(&dir);
    let mut patched = Vec::new();
    for mut d in docs.into_iter().filter(|d| d["kind"] == "DaemonSet") {
        for p in &k.patches {
            let t = &p["target"];
            if t["kind"] != "DaemonSet" || t["name"] != d["metadata"]["name"] {
                continue;
            }
            let ops: Vec<Value> = serde_norway::from_str(p["patch"].as_str().unwrap()).unwrap();
            for op in ops {
                assert_eq!(op["op"], "replace", "{op}");
                let at = d
                    .pointer_mut(op["path"].as_str().unwrap())
                    .unwrap_or_else(|| panic!("{}: nothing to replace", op["path"]));
                *at = op["value"].clone();
            }
        }
        patched.push(typed::<DaemonSet>(&d, &dir));
    }
    assert_eq!(patched.len(), 2);
    for ds in patched {
        let name = ds.metadata.name.clone().unwrap();
        let pod = ds.spec.template.spec.unwrap();
        let c = &pod.containers[0];
        let mut argv = vec!["tailprobe".to_string()];
        argv.extend(c.args.clone().unwrap());
        let Command::Run(run) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("{name} does not run `tailprobe run`")
        };
        let sc = c.security_context.as_ref().unwrap();
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{name}"
        );
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
        let user = pod.security_context.as_ref().unwrap().run_as_user;
        if name == "tailprobe-host" {
            assert!(run.passive, "{argv:?}");
            assert_eq!(
                caps.add.as_deref(),
                Some(&["BPF".to_string(), "PERFMON".to_string()][..])
            );
            // Added capabilities reach the effective set of root only.
            assert_eq!(user, Some(0));
        } else {
            assert!(!run.passive && caps.add.is_none(), "{name}");
            assert_ne!(user, Some(0), "{name}");
        }
    }
}
