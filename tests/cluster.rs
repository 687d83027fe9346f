//! tailprobe on a real Kubernetes: kube-apiserver, etcd, the controller
//! manager, the scheduler and kube-proxy, the official programs at the
//! release `tools/` pins, in a lab on the real kernel (`lab up
//! --kubernetes`), with the node agent running the pods. deploy/ is applied
//! as a user applies it; what the probers and the hub do is read from the
//! cluster, their endpoints and the API server's audit log. These tests
//! need root and the control plane's build (`scripts/control-plane`, which
//! `./scripts/test` runs first).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::{Cluster, eventually};
use serde_json::Value;
use tailprobe::lab::kube::Proc;

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

/// The API server stops and comes back, etcd hangs and resumes: the probers'
/// watches say so (`tailprobe_kubernetes_watch_up`), probing goes on with the
/// last targets, and they follow the cluster again once it is back.
#[test]
fn probers_outlive_an_api_server_restart_and_an_etcd_pause_as_root() {
    let c = Cluster::get();
    c.deployed();
    let _g = c.disrupt();
    let host1 = "http://10.10.72.10:9797";
    let up = || {
        c.metric(
            1,
            host1,
            "tailprobe_kubernetes_watch_up",
            &["resource=\"services/tailprobe\""],
        )
    };
    let ok_probes = || {
        c.metric(
            1,
            host1,
            "tailprobe_probes_total",
            &["target=\"node/node2\"", "outcome=\"ok\""],
        )
    };
    eventually("the watch is up", Duration::from_secs(30), || {
        if up() == 1.0 {
            Ok(())
        } else {
            Err(format!("{}", up()))
        }
    });
    let apiserver = Proc::load(&c.plan.prefix, tailprobe::lab::kube::APISERVER).unwrap();
    apiserver.stop();
    eventually("the outage shows", Duration::from_secs(60), || {
        let errors = c.metric(
            1,
            host1,
            "tailprobe_kubernetes_watch_errors_total",
            &["resource=\"services/tailprobe\""],
        );
        if up() == 0.0 && errors > 0.0 {
            Ok(())
        } else {
            Err(format!("up {}, errors {errors}", up()))
        }
    });
    // Probing goes on through kube-proxy's rules, which outlive the API.
    let before = ok_probes();
    std::thread::sleep(Duration::from_secs(12));
    assert!(ok_probes() > before, "probing stopped with the API server");
    assert!(targets(c, host1).contains("node/node2"));
    apiserver.start(&c.plan.prefix).unwrap();
    eventually("the watches resume", Duration::from_secs(90), || {
        if up() == 1.0 {
            Ok(())
        } else {
            Err(format!("up {}", up()))
        }
    });

    // etcd hangs: the API server cannot answer, the probers keep probing;
    // once it resumes, a change made then reaches them.
    let etcd = Proc::load(&c.plan.prefix, tailprobe::lab::kube::ETCD).unwrap();
    etcd.pause(true);
    let before = ok_probes();
    std::thread::sleep(Duration::from_secs(12));
    let during = ok_probes();
    etcd.pause(false);
    assert!(during > before, "probing stopped while etcd hung");
    c.kubectl_ok(&["delete", "service", "-n", NS, "tailprobe-node-node3"]);
    eventually(
        "a change after the pause reaches the prober",
        Duration::from_secs(60),
        || match c.get_json("service", NS, "tailprobe-node-node3") {
            // Re-applied by node3's probers, who saw the delete.
            Some(_) if targets(c, host1).contains("node/node3") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
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

/// `node_ports = true`: the per-node Services become type NodePort and each
/// prober also reaches every node through its own node's address on the
/// node port the real API server allocated, which the real kube-proxy
/// DNATs (and masquerades when the backend is on another node).
#[test]
fn node_ports_reach_every_node_through_this_nodes_own_address_as_root() {
    let c = Cluster::get();
    let _g = c.share();
    let ns = "tnport";
    pod_probers(
        c,
        ns,
        "[probe]\ninterval = \"1s\"\njitter = \"0s\"\ntimeout = \"10s\"\n\
         [server]\nlisten = \"0.0.0.0:9797\"\n\
         [kubernetes]\necho_listen = \"0.0.0.0:9798\"\nnode_service_port = 80\nreapply = \"1s\"\n\
         round = \"3s\"\npod_ip_targets = false\nnode_ports = true\n",
    );
    for node in NODES {
        eventually(
            "a NodePort Service per node",
            Duration::from_secs(60),
            || match c.get_json("service", ns, &format!("tailprobe-node-{node}")) {
                Some(svc) if svc["spec"]["type"] == "NodePort" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    let ps = probers(c, ns);
    assert_eq!(ps.len(), 3, "{ps:?}");
    for ((me, _), (_, _, base)) in &ps {
        for dest in NODES {
            let path = if dest == me {
                "same-node"
            } else {
                "cross-node"
            };
            let needles = [
                format!("target=\"nodeport/{dest}\""),
                format!("destination_node=\"{dest}\""),
                format!("path=\"{path}\""),
                "outcome=\"ok\"".to_string(),
            ];
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            eventually(
                "a probe through the NodePort",
                Duration::from_secs(60),
                || {
                    if c.metric(1, base, "tailprobe_probes_total", &needles) > 0.0 {
                        Ok(())
                    } else {
                        Err(format!("{me}: {needles:?}"))
                    }
                },
            );
        }
    }
    c.kubectl_ok(&["delete", "namespace", ns, "--wait=true", "--timeout=90s"]);
}

/// Past `node_services_max_nodes` no Service per node: the probers delete
/// theirs, and the pool's two probe Services lead to one node at a time,
/// round by round, through real ClusterIPs that the real kube-proxy
/// programs anew as each slot's slice moves. Every prober still reaches
/// every node, and each probe knows the node it reached.
#[test]
fn past_the_bound_a_pool_of_services_reaches_every_node_in_turn_as_root() {
    let c = Cluster::get();
    let _g = c.share();
    let ns = "tpool";
    pod_probers(
        c,
        ns,
        "[probe]\ninterval = \"1s\"\njitter = \"0s\"\ntimeout = \"10s\"\n\
         [server]\nlisten = \"0.0.0.0:9797\"\n\
         [kubernetes]\necho_listen = \"0.0.0.0:9798\"\nnode_service_port = 80\nreapply = \"1s\"\n\
         round = \"3s\"\nnode_services_max_nodes = 2\nservice_pool = 2\npod_ip_targets = false\n",
    );
    let ps = probers(c, ns);
    assert_eq!(ps.len(), 3, "{ps:?}");
    let slots = set(&[
        "pool/tailprobe-pool-0",
        "pool/tailprobe-pool-1",
        "svc/default/kubernetes",
    ]);
    for ((me, _), (_, _, base)) in &ps {
        eventually("the pool's targets", Duration::from_secs(60), || {
            let got = targets(c, base);
            if got == slots {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        });
        for dest in NODES {
            let path = if dest == me {
                "same-node"
            } else {
                "cross-node"
            };
            eventually("a probe through the pool", Duration::from_secs(60), || {
                let n: f64 = (0..2)
                    .map(|k| {
                        let target = format!("target=\"pool/tailprobe-pool-{k}\"");
                        let to = format!("destination_node=\"{dest}\"");
                        let on = format!("path=\"{path}\"");
                        c.metric(
                            1,
                            base,
                            "tailprobe_probes_total",
                            &[&target, &to, &on, "outcome=\"ok\""],
                        )
                    })
                    .sum();
                if n > 0.0 {
                    Ok(())
                } else {
                    Err(format!("{me}: nothing reached {dest}"))
                }
            });
        }
    }
    let services: Vec<String> = c
        .list("services", ns, None)
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        services,
        ["tailprobe-pool-0", "tailprobe-pool-1"],
        "no Service per node is left"
    );
    for k in 0..2 {
        let svc = c
            .get_json("service", ns, &format!("tailprobe-pool-{k}"))
            .unwrap();
        assert_eq!(svc["metadata"]["labels"]["tailprobe.io/role"], "pool");
        assert!(
            svc["metadata"]
                .get("ownerReferences")
                .is_none_or(Value::is_null)
        );
    }
    // The registration slices stay: they are the node set. Re-applied every
    // second, they do not change: server-side apply of the same fields is
    // a no-op, the resourceVersion stays.
    let versions = || -> Vec<Value> {
        NODES
            .iter()
            .map(|n| {
                c.get_json("endpointslice", ns, &format!("tailprobe-node-{n}-pod"))
                    .expect("a registration slice")["metadata"]["resourceVersion"]
                    .clone()
            })
            .collect()
    };
    let user = format!("system:serviceaccount:{ns}:tailprobe");
    let patches = || {
        c.audit()
            .iter()
            .filter(|a| a.user == user && a.verb == "patch")
            .count()
    };
    let (before, applied) = (versions(), patches());
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        patches() >= applied + 6,
        "the probers re-apply every second"
    );
    assert_eq!(versions(), before, "a no-op apply changes nothing");
    c.kubectl_ok(&["delete", "namespace", ns, "--wait=true", "--timeout=90s"]);
}

/// An echo Deployment of one pod on `node`, labelled `app`.
fn echo(name: &str, app: &str, node: &str) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": app, "instance": name}},
            "template": {
                "metadata": {"labels": {"app": app, "instance": name}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "containers": [{"name": "echo", "image": "tailprobe:0.1.0",
                        "args": ["echo", "--listen", "0.0.0.0:8080", "--node", "$(NODE_NAME)", "--pod", "$(POD_NAME)"],
                        "env": [
                            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]}}}
    })
}

fn service(name: &str, app: &str, probe: bool, annotations: Value) -> Value {
    let labels = if probe {
        serde_json::json!({"tailprobe.io/probe": "true"})
    } else {
        serde_json::json!({})
    };
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "labels": labels, "annotations": annotations},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    })
}

/// Opted-in Services of another namespace, with the endpoints the real
/// EndpointSlice controller writes: targets follow them as they move and
/// go; the RBAC revoked mid-run is a clear error while probing goes on;
/// a deletion made while the API server was down, behind a compacted
/// history, shows through a relist (410 Gone), the watch still up.
#[test]
fn targets_follow_opted_in_services_through_revoked_rbac_and_compacted_history_as_root() {
    let c = Cluster::get();
    let _g = c.disrupt();
    let ns = "tdisc";
    c.kubectl_ok(&["create", "namespace", "shop"]);
    let mut objects: Vec<Value> = vec![
        echo("one", "one", "node1"),
        echo("two", "two", "node2"),
        echo("mixed-a", "mixed", "node2"),
        echo("mixed-b", "mixed", "node3"),
        service("one", "one", true, serde_json::json!({})),
        service("two", "two", true, serde_json::json!({})),
        service("mixed", "mixed", true, serde_json::json!({})),
        // Opted in with a scheme tailprobe cannot speak: said in the log.
        service(
            "tls",
            "one",
            true,
            serde_json::json!({"tailprobe.io/scheme": "https"}),
        ),
        // Not opted in: never probed.
        service("quiet", "one", false, serde_json::json!({})),
        // Selector-less, its hand-written slice aimed outside the cluster's
        // own addresses: named in the log, never probed.
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "aimed", "namespace": "shop", "labels": {"tailprobe.io/probe": "true"}},
            "spec": {"ports": [{"name": "http", "port": 80}]}
        }),
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "aimed-1", "namespace": "shop",
                "labels": {"tailprobe.io/probe": "true", "kubernetes.io/service-name": "aimed"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.0.2.7"], "conditions": {"ready": true}, "nodeName": "node2"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]
        }),
    ];
    objects.push(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "tailprobe-service-reader", "namespace": "shop"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tailprobe-service-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "tailprobe", "namespace": ns}]
    }));
    let binding = objects.last().unwrap().to_string();
    c.kubectl_ok(&[
        "apply",
        "-k",
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/service-namespaces"),
    ]);
    for o in &objects {
        let out = c.kubectl_in(&["apply", "-f", "-"], Some(&o.to_string()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tailprobe::lab::kube::deploy::wait_rollout(&c.plan, "shop", Duration::from_secs(120)).unwrap();
    pod_probers(
        c,
        ns,
        "[probe]\ninterval = \"1s\"\njitter = \"0s\"\ntimeout = \"10s\"\n\
         [server]\nlisten = \"0.0.0.0:9797\"\n\
         [kubernetes]\necho_listen = \"0.0.0.0:9798\"\nservice_namespaces = [\"shop\"]\nendpoint_cidrs = [\"10.244.0.0/16\"]\n",
    );
    let ps = probers(c, ns);
    let (pod1, _, p1) = ps[&("node1".to_string(), "pod".to_string())].clone();
    let svc_targets = || -> Vec<(String, Option<String>, Vec<String>)> {
        c.body(1, &format!("{p1}/api/v1/targets"))
            .and_then(|b| serde_json::from_str::<Vec<Value>>(&b).ok())
            .unwrap_or_default()
            .iter()
            .filter(|t| t["name"].as_str().unwrap_or("").starts_with("svc/"))
            .map(|t| {
                let mixed = t["mixed"].as_array().into_iter().flatten();
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["node"].as_str().map(str::to_string),
                    mixed.map(|m| m.as_str().unwrap().to_string()).collect(),
                )
            })
            .collect()
    };
    let t = |name: &str, node: Option<&str>, mixed: &[&str]| {
        (
            name.to_string(),
            node.map(str::to_string),
            mixed.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        )
    };
    eventually(
        "opted-in Services become targets",
        Duration::from_secs(60),
        || {
            let got = svc_targets();
            let want = vec![
                t("svc/shop/mixed", None, &["node2", "node3"]),
                t("svc/shop/one", Some("node1"), &[]),
                t("svc/shop/two", Some("node2"), &[]),
            ];
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    let log = c.pod_log(ns, &pod1);
    assert!(
        log.contains("cannot be probed") && log.contains("svc/shop/tls: tailprobe.io/scheme"),
        "{log}"
    );
    assert!(
        log.contains("svc/shop/aimed: endpoint 192.0.2.7 is outside [kubernetes] endpoint_cidrs"),
        "{log}"
    );
    for (target, dest, path) in [
        ("svc/shop/one", "node1", "same-node"),
        ("svc/shop/two", "node2", "cross-node"),
        // Mixed: the echo's header names the node that answered.
        ("svc/shop/mixed", "node3", "cross-node"),
    ] {
        let needles = [
            format!("target=\"{target}\""),
            format!("destination_node=\"{dest}\""),
            format!("path=\"{path}\""),
            "outcome=\"ok\"".to_string(),
        ];
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        eventually("a classified ok probe", Duration::from_secs(60), || {
            let n = c.metric(1, &p1, "tailprobe_probes_total", &needles);
            if n > 0.0 {
                Ok(())
            } else {
                Err(format!("{needles:?}"))
            }
        });
    }

    // Endpoints move and Services go: targets follow within seconds.
    c.kubectl_ok(&[
        "patch",
        "deployment",
        "-n",
        "shop",
        "two",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"node1"}}}}}"#,
    ]);
    c.kubectl_ok(&["delete", "service", "-n", "shop", "one"]);
    eventually("targets follow changes", Duration::from_secs(90), || {
        let got = svc_targets();
        let want = vec![
            t("svc/shop/mixed", None, &["node2", "node3"]),
            t("svc/shop/two", Some("node1"), &[]),
        ];
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });

    // RBAC revoked, and the API server restarted so the open watches end:
    // the relist is refused, said with the Role to fix, and probing goes on
    // with the last targets.
    let up = || {
        c.metric(
            1,
            &p1,
            "tailprobe_kubernetes_watch_up",
            &["resource=\"services/shop\""],
        )
    };
    c.kubectl_ok(&[
        "delete",
        "rolebinding",
        "-n",
        "shop",
        "tailprobe-service-reader",
    ]);
    let apiserver = Proc::load(&c.plan.prefix, tailprobe::lab::kube::APISERVER).unwrap();
    apiserver.restart(&c.plan.prefix).unwrap();
    eventually("the refusal shows", Duration::from_secs(90), || {
        let log = c.pod_log(ns, &pod1);
        if up() == 0.0
            && log.contains("The API server refused this watch")
            && log.contains("403 Forbidden")
            && log.contains("deploy/service-namespaces")
        {
            Ok(())
        } else {
            Err(format!("up {}", up()))
        }
    });
    let ok = ["target=\"svc/shop/two\"", "outcome=\"ok\""];
    let before = c.metric(1, &p1, "tailprobe_probes_total", &ok);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        c.metric(1, &p1, "tailprobe_probes_total", &ok) > before,
        "probing stopped"
    );
    assert_eq!(svc_targets().len(), 2, "the last targets stay");
    c.kubectl_in(&["apply", "-f", "-"], Some(&binding));
    eventually("the watches resume", Duration::from_secs(120), || {
        if up() == 1.0 {
            Ok(())
        } else {
            Err(format!("up {}", up()))
        }
    });

    // A Service removed while the API server is down, and the history
    // compacted past the prober's last version: only a relist can reveal it.
    let relists = || {
        c.metric(
            1,
            &p1,
            "tailprobe_kubernetes_watch_relists_total",
            &["resource=\"services/shop\""],
        )
    };
    let before = relists();
    apiserver.stop();
    etcd(
        c,
        "deleterange",
        serde_json::json!({"key": b64("/registry/services/specs/shop/mixed")}),
    );
    let put = etcd(
        c,
        "put",
        serde_json::json!({"key": b64("/tailprobe-test/bump"), "value": b64("1")}),
    );
    let rev: u64 = put["header"]["revision"].as_str().unwrap().parse().unwrap();
    etcd(c, "compaction", serde_json::json!({"revision": rev}));
    apiserver.start(&c.plan.prefix).unwrap();
    eventually("a relist after 410 Gone", Duration::from_secs(120), || {
        let got = svc_targets();
        if got == vec![t("svc/shop/two", Some("node1"), &[])] && relists() > before && up() == 1.0 {
            Ok(())
        } else {
            Err(format!("{got:?} relists {} up {}", relists(), up()))
        }
    });
    for gone in ["shop", ns] {
        c.kubectl_ok(&["delete", "namespace", gone, "--wait=true", "--timeout=90s"]);
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// etcd's own JSON gateway (`/v3/kv/...`), inside the control plane's
/// namespace: what only the API server's store can be asked.
fn etcd(c: &Cluster, call: &str, body: Value) -> Value {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &c.plan.control_ns()])
        .args(["curl", "-s", "-m", "5", "--noproxy", "*", "-X", "POST"])
        .arg(format!("http://127.0.0.1:2379/v3/kv/{call}"))
        .args(["-d", &body.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "etcd {call}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("etcd {call}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `tailprobe cluster matrix` from an operator's laptop: the prober pods
/// listed, each reached through the real API server's pod proxy, with
/// exactly the rights deploy/hub/operator-rbac.yaml grants.
#[test]
fn cluster_matrix_reaches_every_prober_through_the_pod_proxy_as_root() {
    let c = Cluster::get();
    let _g = c.share();
    c.deployed();
    c.kubectl_ok(&[
        "apply",
        "-n",
        NS,
        "-f",
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/hub/operator-rbac.yaml"),
    ]);
    c.kubectl_ok(&["create", "serviceaccount", "-n", NS, "operator"]);
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "-n",
        NS,
        "operator",
        "--role=tailprobe-operator",
        &format!("--serviceaccount={NS}:operator"),
    ]);
    let token = c.kubectl_ok(&["create", "token", "-n", NS, "operator"]);
    let ca =
        std::fs::read_to_string(tailprobe::lab::kube::state(&c.plan.prefix).join("pki/ca.crt"))
            .unwrap();
    let kubeconfig = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-operator.kubeconfig", c.plan.prefix));
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": format!("https://{}:6443", c.plan.api_ip()), "certificate-authority-data": b64(&ca)}}],
        "users": [{"name": "operator", "user": {"token": token.trim()}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "operator"}}],
        "current-context": "lab",
    });
    std::fs::write(&kubeconfig, doc.to_string()).unwrap();
    let cluster = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &c.plan.control_ns()])
            .arg(common::bin())
            .args(["cluster", "matrix", "--namespace", NS, "--format", "json"])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let sources = |m: &Value| -> BTreeSet<(String, String)> {
        m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["source_node"].as_str().unwrap().to_string(),
                    c["source_kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // A fresh round probes what each prober knows: wait until they all
    // know every node.
    let ps = eventually("six prober pods", Duration::from_secs(60), || {
        let ps = probers(c, NS);
        if ps.len() == 6 {
            Ok(ps)
        } else {
            Err(format!("{ps:?}"))
        }
    });
    every_prober_knows_every_node(c, &ps);
    let fresh = cluster(&["--samples", "2"]);
    assert_eq!(sources(&fresh).len(), 6, "{:?}", sources(&fresh));
    assert!(
        fresh["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["samples"] == 2),
        "{fresh:#}"
    );
    // The windows fill at the probers' own pace (every 10 s).
    eventually("every prober's window", Duration::from_secs(60), || {
        let window = cluster(&["--from-window"]);
        let got = sources(&window);
        if got.len() == 6 {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(
        used_by(c, &format!("system:serviceaccount:{NS}:operator"), NS),
        role_grants("deploy/hub/operator-rbac.yaml"),
        "deploy/hub/operator-rbac.yaml grants exactly what cluster matrix uses"
    );
}
