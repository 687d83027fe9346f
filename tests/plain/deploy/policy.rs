//! What every object promises: the recommended labels, the least cluster
//! scope, probers on every Linux node, the network policy's ports, and the
//! same as kustomize renders it.

use super::*;

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
