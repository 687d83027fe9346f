//! Discovered Services as targets: the pool past its bound, opted-in
//! Services followed through revoked RBAC and compacted history.

use super::*;

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
            // The opted-in Services; the API server's own probe is always
            // there and is not one of them.
            .filter(|t| {
                let name = t["name"].as_str().unwrap_or("");
                name.starts_with("svc/") && name != "svc/default/kubernetes"
            })
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
