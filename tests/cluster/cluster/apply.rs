//! deploy/ applied as a user applies it: every prober reaching every node
//! through kube-proxy, with only the RBAC it is granted; every overlay
//! accepted; a pod the agent cannot run saying why.

use super::*;

/// deploy/ as it is, on the real API server: admitted, scheduled by the
/// real scheduler, run by the agents; each prober registers its node's
/// Service, the real kube-proxy programs every VIP from tailprobe's own
/// slices, every prober reaches every node through them, and the hub
/// judges all six. The RBAC in deploy/ grants exactly what the probers and
/// the hub ask the real server for.
#[test]
fn deploy_runs_on_the_real_control_plane_and_reaches_every_node_through_kube_proxy_as_root() {
    let c = Cluster::get();
    let _g = c.share();
    c.deployed();

    // Six probers, each on its node, as the image's user with no capability.
    let ps = eventually("six prober pods", Duration::from_secs(30), || {
        let ps = probers(c, NS);
        if ps.len() == 6 {
            Ok(ps)
        } else {
            Err(format!("{ps:?}"))
        }
    });
    let mut ran_as = BTreeSet::new();
    for pid in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(pid.path().join("cmdline")).unwrap_or_default();
        if cmd.starts_with(b"/tailprobe\0run\0--config\0/etc/tailprobe/tailprobe.toml") {
            let status = std::fs::read_to_string(pid.path().join("status")).unwrap_or_default();
            let field = |k: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(k))
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
                    .unwrap_or_default()
            };
            ran_as.insert((field("Uid:"), field("CapEff:")));
        }
    }
    assert!(
        ran_as.contains(&("65532".to_string(), "0000000000000000".to_string())),
        "the probers run as 65532 with no capability: {ran_as:?}"
    );

    every_prober_knows_every_node(c, &ps);
    // Probes through the real VIPs reach the right node, classified by it.
    let host1 = "http://10.10.72.10:9797";
    for dest in NODES {
        let path = if dest == "node1" {
            "same-node"
        } else {
            "cross-node"
        };
        for target in [format!("node/{dest}"), format!("pod/{dest}")] {
            let needles = [
                format!("target=\"{target}\""),
                format!("destination_node=\"{dest}\""),
                format!("path=\"{path}\""),
                "outcome=\"ok\"".to_string(),
            ];
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            eventually("a classified ok probe", Duration::from_secs(60), || {
                let n = c.metric(1, host1, "tailprobe_probes_total", &needles);
                if n > 0.0 {
                    Ok(())
                } else {
                    Err(format!("{needles:?}"))
                }
            });
        }
    }

    // The API server's own readiness through the `kubernetes` Service, over
    // HTTPS with the service account's CA and token, from every prober:
    // host and pod network alike.
    for (_, _, base) in ps.values() {
        let needles = [
            "target=\"svc/default/kubernetes\"",
            "path=\"unknown\"",
            "outcome=\"ok\"",
        ];
        eventually(
            "an ok probe of the API server",
            Duration::from_secs(60),
            || {
                let n = c.metric(1, base, "tailprobe_probes_total", &needles);
                if n > 0.0 {
                    Ok(())
                } else {
                    Err(format!("{base}: {needles:?}"))
                }
            },
        );
    }

    // Each node's Service: selector-less, a ClusterIP from the Service
    // range, owned by both of the node's prober pods.
    for node in NODES {
        let svc = c
            .get_json("service", NS, &format!("tailprobe-node-{node}"))
            .expect("the node's Service");
        assert!(
            svc["spec"].get("selector").is_none_or(Value::is_null),
            "{svc}"
        );
        assert_eq!(svc["metadata"]["annotations"]["tailprobe.io/node"], node);
        let vip = svc["spec"]["clusterIP"].as_str().unwrap();
        assert!(vip.starts_with("10.96."), "{vip}");
        let owners: BTreeSet<String> = svc["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                assert_eq!(o["blockOwnerDeletion"], false, "{o}");
                o["uid"].as_str().unwrap().to_string()
            })
            .collect();
        let mine: BTreeSet<String> = ps
            .iter()
            .filter(|((n, _), _)| n == node)
            .map(|(_, (_, uid, _))| uid.clone())
            .collect();
        assert_eq!(owners, mine, "{node}'s Service is owned by its two probers");
        // kube-proxy programmed it from tailprobe's slices: from another
        // node, its VIP answers from this node's echo.
        let other = if node == "node1" { 2 } else { 1 };
        for _ in 0..4 {
            let (status, text) = c
                .curl(other, &format!("http://{vip}/"))
                .expect("the VIP answers");
            assert_eq!(status, 200, "{text}");
            assert!(
                text.to_ascii_lowercase()
                    .contains(&format!("x-tailprobe-node: {node}")),
                "{text}"
            );
        }
        // The pod prober's slice: its pod IP on its node, left alone by the
        // EndpointSlice controller.
        let (pod, uid, base) = &ps[&(node.to_string(), "pod".to_string())];
        let slice = c
            .get_json("endpointslice", NS, &format!("tailprobe-node-{node}-pod"))
            .expect("the pod prober's slice");
        let ip = base.trim_start_matches("http://").trim_end_matches(":9797");
        assert_eq!(slice["endpoints"][0]["addresses"][0], ip);
        assert_eq!(slice["endpoints"][0]["nodeName"], node);
        assert_eq!(slice["endpoints"][0]["targetRef"]["name"], pod.as_str());
        assert_eq!(
            slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "tailprobe.io"
        );
        assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], uid.as_str());
    }

    // The hub pulls all six over the pod network and judges them as one.
    let hub = c
        .get_json("service", NS, "tailprobe-hub")
        .expect("the hub's Service");
    let hub = format!("http://{}:9797", hub["spec"]["clusterIP"].as_str().unwrap());
    eventually(
        "the hub judges six probers",
        Duration::from_secs(60),
        || {
            let m: Value = c
                .body(2, &format!("{hub}/api/v1/matrix"))
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or(Value::Null);
            let sources: BTreeSet<String> = m["cells"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["source_node"].as_str().map(str::to_string))
                .collect();
            if m["probers"]["up"] == 6 && sources == set(&NODES) {
                Ok(())
            } else {
                Err(format!("{}", m["rests_on"]))
            }
        },
    );

    // A registration deleted by hand comes back as soon as the prober's own
    // watch sees it go, not at the next reapply (300 s).
    for (kind, name) in [
        ("service", "tailprobe-node-node3"),
        ("endpointslice", "tailprobe-node-node3-pod"),
    ] {
        let before = c.get_json(kind, NS, name).unwrap()["metadata"]["uid"].clone();
        c.kubectl_ok(&["delete", kind, "-n", NS, name]);
        eventually(
            "re-applied after the delete",
            Duration::from_secs(10),
            || match c.get_json(kind, NS, name) {
                Some(v) if v["metadata"]["uid"] != before => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }

    // A prober pod deleted: the agent stops it gracefully, it withdraws its
    // slice, and the DaemonSet's new pod registers itself.
    let (old, _, _) = ps[&("node2".to_string(), "pod".to_string())].clone();
    c.kubectl_ok(&[
        "delete",
        "pod",
        "-n",
        NS,
        &old,
        "--wait=true",
        "--timeout=60s",
    ]);
    eventually("the new pod registers", Duration::from_secs(60), || {
        let ps = probers(c, NS);
        let (name, _, base) = ps
            .get(&("node2".to_string(), "pod".to_string()))
            .ok_or("no pod yet")?;
        let ip = base.trim_start_matches("http://").trim_end_matches(":9797");
        let slice = c
            .get_json("endpointslice", NS, "tailprobe-node-node2-pod")
            .ok_or("no slice")?;
        if name != &old && slice["endpoints"][0]["addresses"][0] == ip {
            Ok(())
        } else {
            Err(format!("{name} {slice}"))
        }
    });

    // RBAC, read from the real server's audit log: the probers asked for
    // exactly what deploy/base/rbac.yaml grants (delete on Services only
    // for OwnerReferencesPermissionEnforcement), all in their namespace,
    // and nothing was refused to them, to the hub or to any node agent.
    let prober_user = format!("system:serviceaccount:{NS}:tailprobe");
    let mut granted = role_grants("deploy/base/rbac.yaml");
    granted.remove(&("delete".to_string(), "services".to_string()));
    let used = used_by(c, &prober_user, NS);
    assert_eq!(
        used, granted,
        "deploy/base/rbac.yaml grants exactly what the probers use"
    );
    let hub_user = format!("system:serviceaccount:{NS}:tailprobe-hub");
    assert_eq!(
        used_by(c, &hub_user, NS),
        role_grants("deploy/hub/hub.yaml"),
        "deploy/hub/hub.yaml grants exactly what the hub uses"
    );
    let refused: Vec<_> = c
        .audit()
        .into_iter()
        .filter(|a| {
            (a.user == prober_user || a.user == hub_user || a.user.starts_with("system:node:"))
                && a.code == 403
        })
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
}

/// Every overlay of deploy/ is accepted by the real API server (a
/// server-side dry run: schema, defaulting and admission), so a typo in a
/// manifest fails here, not in a user's cluster. The prometheus-operator
/// overlay's ServiceMonitor and PrometheusRule need the operator's CRDs;
/// its other objects are checked, those two by promtool elsewhere.
#[test]
fn every_overlay_of_deploy_is_accepted_by_the_real_api_server_as_root() {
    let c = Cluster::get();
    let _g = c.share();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    for overlay in [
        "",
        "hub",
        "jaeger",
        "otel-collector",
        "passive",
        "service-namespaces",
        "grafana",
        "prometheus-operator",
    ] {
        let dir = format!("{root}/{overlay}");
        let rendered = c.kubectl_ok(&["kustomize", &dir]);
        let kept: Vec<&str> = rendered
            .split("\n---\n")
            .filter(|doc| {
                !(doc.contains("kind: ServiceMonitor") || doc.contains("kind: PrometheusRule"))
            })
            .collect();
        let out = c.kubectl_in(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "--field-manager=tailprobe-test",
                "-f",
                "-",
            ],
            Some(&kept.join("\n---\n")),
        );
        assert!(
            out.status.success(),
            "deploy/{overlay}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What the node agent cannot run, it says in the pod's status, as a
/// kubelet would, and deletes it when asked.
#[test]
fn a_pod_the_agent_cannot_run_says_why_in_its_status_as_root() {
    let c = Cluster::get();
    let _g = c.share();
    let ns = "refused";
    c.kubectl_ok(&["create", "namespace", ns]);
    let pod = |name: &str, container: Value| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": "node2", "containers": [container]},
        })
        .to_string()
    };
    let cases = [
        (
            "jaeger",
            serde_json::json!({"name": "j", "image": "jaegertracing/jaeger:2.1.0"}),
            "ErrImageNeverPull",
            "jaegertracing/jaeger:2.1.0",
        ),
        (
            "exec-probe",
            serde_json::json!({"name": "e", "image": "tailprobe:0.1.0", "args": ["echo", "--listen", "0.0.0.0:8080"],
                "readinessProbe": {"exec": {"command": ["true"]}}}),
            "LabUnsupported",
            "exec and gRPC probes",
        ),
        (
            "root",
            serde_json::json!({"name": "r", "image": "tailprobe", "args": ["echo", "--listen", "0.0.0.0:8080"],
                "securityContext": {"runAsNonRoot": true, "runAsUser": 0}}),
            "CreateContainerConfigError",
            "runAsNonRoot",
        ),
    ];
    for (name, container, _, _) in &cases {
        c.kubectl_in(&["apply", "-f", "-"], Some(&pod(name, container.clone())));
    }
    for (name, _, reason, words) in cases {
        eventually("the refusal in the status", Duration::from_secs(30), || {
            let p = c.get_json("pod", ns, name).ok_or("no pod")?;
            let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
            if w["reason"] == reason && w["message"].as_str().unwrap_or("").contains(words) {
                Ok(())
            } else {
                Err(format!("{}", p["status"]))
            }
        });
        let p = c.get_json("pod", ns, name).unwrap();
        assert_eq!(p["status"]["phase"], "Pending");
    }
    c.kubectl_ok(&["delete", "namespace", ns, "--wait=true", "--timeout=60s"]);
    assert!(c.list("pods", ns, None).is_empty());
}
