//! Discovery and self-registration against a fake API server that speaks
//! real Kubernetes JSON (list, watch, 410 Gone, server-side apply). Probes go
//! only to loopback: the fake gives each per-node Service the loopback
//! address of the prober that registered it.

mod common;
mod fake_kube;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_kube::{FakeApi, Request, rules_of};
use serde_json::{Value, json};
use tailprobe::server::api::TargetDoc;

const NS: &str = "tailprobe";

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
        "labels": {"kubernetes.io/hostname": name}}})
}

fn prober_pod(name: &str, node: &str, ip: &str, kind: &str, echo_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
            "labels": {"app.kubernetes.io/name": "tailprobe", "tailprobe.io/source-kind": kind},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                "name": format!("tailprobe-{kind}"), "uid": format!("ds-{kind}"), "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "tailprobe", "image": "tailprobe",
            "ports": [{"name": "echo", "containerPort": echo_port}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn service(ns: &str, name: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"tailprobe.io/probe": "true"}},
        "spec": {"clusterIP": "127.0.0.1", "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}})
}

/// A slice as the EndpointSlice controller writes it: the Service's labels
/// mirrored, one ready endpoint per node.
fn slice(ns: &str, service: &str, nodes: &[&str], port: u16) -> Value {
    let endpoints: Vec<Value> = nodes
        .iter()
        .map(|n| json!({"addresses": ["127.0.0.1"], "conditions": {"ready": true}, "nodeName": n}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-x1"), "namespace": ns,
            "labels": {"tailprobe.io/probe": "true", "kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
}

/// A `tailprobe run` whose log is drained into memory (a full pipe would
/// stall it).
struct Prober {
    child: tokio::process::Child,
    api: String,
    log: Arc<Mutex<Vec<String>>>,
    _dir: common::TempDir,
}

impl Prober {
    fn start(
        api: &FakeApi,
        node: &str,
        kind: &str,
        kube_table: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = common::TempDir::new("kube");
        let kubeconfig = dir.file("kubeconfig", &api.kubeconfig_as("tailprobe"));
        let port = common::free_port();
        let cfg = dir.file(
            "config.toml",
            &format!(
                "node = \"{node}\"\nsource_kind = \"{kind}\"\n[probe]\ninterval = \"200ms\"\njitter = \"0s\"\ntimeout = \"5s\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n[kubernetes]\nnamespace = \"{NS}\"\n{kube_table}\n"
            ),
        );
        let mut all_env = vec![("KUBECONFIG", kubeconfig.to_str().unwrap())];
        all_env.extend_from_slice(env);
        let (child, mut lines) = common::daemon(&cfg, &all_env);
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                sink.lock().unwrap().push(l);
            }
        });
        Self {
            child,
            api: format!("127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    async fn targets(&self) -> Vec<TargetDoc> {
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(&self.api),
        )
        .await
        {
            Ok(Ok(_)) => {}
            _ => return Vec::new(),
        }
        let (status, _, body) = common::get(&self.api, "/api/v1/targets").await;
        if status != 200 {
            return Vec::new();
        }
        serde_json::from_str(&body).unwrap()
    }

    async fn target_names(&self) -> BTreeSet<String> {
        self.targets().await.into_iter().map(|t| t.name).collect()
    }

    /// The sum of the samples of `metric` whose labels contain every `needle`.
    async fn metric(&self, metric: &str, needles: &[&str]) -> f64 {
        if tokio::net::TcpStream::connect(&self.api).await.is_err() {
            return 0.0;
        }
        let (_, _, body) = common::get(&self.api, "/metrics").await;
        body.lines()
            .filter(|l| {
                l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} "))
            })
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits for an `ok` probe of `target` attributed to `dest` and `path`.
    async fn wait_ok(&self, target: &str, dest: &str, path: &str) {
        let needles = [
            &format!("target=\"{target}\"") as &str,
            &format!("destination_node=\"{dest}\""),
            &format!("path=\"{path}\""),
            "outcome=\"ok\"",
        ];
        eventually("a classified ok probe", Duration::from_secs(20), || async {
            let n = self.metric("tailprobe_probes_total", &needles).await;
            if n > 0.0 {
                Ok(())
            } else {
                Err(format!("{target} -> {dest} {path}: {n}"))
            }
        })
        .await;
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Polls until `check` holds, or fails with what was last seen.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return,
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_node_services_give_every_prober_every_node_through_its_vip() {
    // The probers here listen on loopback and are probed through their VIPs:
    // the fake's kube-proxy stand-in, the one leniency it keeps.
    let api = FakeApi::start_on_loopback().await;
    // RBAC as deploy/ grants it: anything else is 403.
    api.authorize("tailprobe", rules_of("deploy/base/rbac.yaml", NS));
    let echo_port = common::free_port();
    for n in ["a", "b"] {
        api.put("nodes", node(n));
    }
    api.put(
        "pods",
        prober_pod("tp-a", "a", "127.0.0.11", "pod", echo_port),
    );
    api.put(
        "pods",
        prober_pod("tp-b", "b", "127.0.0.12", "host", echo_port),
    );
    let table = |ip: &str| {
        format!(
            "echo_listen = \"{ip}:{echo_port}\"\nnode_service_port = {echo_port}\nreapply = \"500ms\""
        )
    };
    let a = Prober::start(
        &api,
        "a",
        "pod",
        &table("127.0.0.11"),
        &[
            ("POD_NAME", "tp-a"),
            ("POD_UID", "uid-tp-a"),
            ("POD_IP", "127.0.0.11"),
        ],
    );
    let b = Prober::start(
        &api,
        "b",
        "host",
        &table("127.0.0.12"),
        &[
            ("POD_NAME", "tp-b"),
            ("POD_UID", "uid-tp-b"),
            ("POD_IP", "127.0.0.12"),
        ],
    );

    // Each prober finds both nodes' Services, and the pod-network prober's IP.
    let want = set(&["node/a", "node/b", "pod/a"]);
    for p in [&a, &b] {
        eventually(
            "targets from the per-node Services",
            Duration::from_secs(30),
            || async {
                let got = p.target_names().await;
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}\n{}", p.log_text()))
                }
            },
        )
        .await;
    }
    // Probes through the VIPs reach the right node, and are classified by it.
    for (p, me) in [(&a, "a"), (&b, "b")] {
        for (target, dest) in [("node/a", "a"), ("node/b", "b"), ("pod/a", "a")] {
            let path = if dest == me {
                "same-node"
            } else {
                "cross-node"
            };
            p.wait_ok(target, dest, path).await;
        }
    }

    // What prober a wrote: a selector-less Service owned by its pod, and a
    // slice that points at its pod IP on its node.
    let svc = api
        .get("services", NS, "tailprobe-node-a")
        .expect("the Service of node a");
    assert_eq!(svc["metadata"]["annotations"]["tailprobe.io/node"], "a");
    assert_eq!(svc["metadata"]["labels"]["tailprobe.io/role"], "node");
    assert_eq!(svc["spec"]["ports"][0]["port"], echo_port);
    assert!(
        svc["spec"].get("selector").is_none_or(Value::is_null),
        "{svc}"
    );
    let owners = svc["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (
            owners[0]["kind"].as_str(),
            owners[0]["name"].as_str(),
            owners[0]["uid"].as_str()
        ),
        (Some("Pod"), Some("tp-a"), Some("uid-tp-a"))
    );
    let sl = api
        .get("endpointslices", NS, "tailprobe-node-a-pod")
        .expect("a's slice");
    assert_eq!(
        sl["metadata"]["labels"]["kubernetes.io/service-name"],
        "tailprobe-node-a"
    );
    assert_eq!(sl["endpoints"][0]["addresses"][0], "127.0.0.11");
    assert_eq!(sl["endpoints"][0]["nodeName"], "a");
    assert_eq!(sl["ports"][0]["port"], echo_port);
    assert_eq!(sl["metadata"]["ownerReferences"][0]["uid"], "uid-tp-a");

    // Re-applying every 500 ms changes nothing: same resourceVersion.
    let patches = || {
        api.requests()
            .iter()
            .filter(|r| r.verb == "patch" && r.resource == "services")
            .count()
    };
    let (rv, before) = (svc["metadata"]["resourceVersion"].clone(), patches());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        patches() >= before + 4,
        "both probers re-apply: {before} -> {}",
        patches()
    );
    let again = api.get("services", NS, "tailprobe-node-a").unwrap();
    assert_eq!(again["metadata"]["resourceVersion"], rv, "a no-op apply");

    // A stopping prober withdraws its slice; the other drops that VIP.
    common::terminate(a.child.id().unwrap());
    let mut a = a;
    let status = tokio::time::timeout(Duration::from_secs(20), a.child.wait())
        .await
        .expect("prober a stops")
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", a.log_text());
    assert!(
        api.get("endpointslices", NS, "tailprobe-node-a-pod")
            .is_none()
    );
    api.delete("pods", NS, "tp-a");
    eventually("b forgets node a", Duration::from_secs(10), || async {
        let got = b.target_names().await;
        if got == set(&["node/b"]) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;

    // RBAC: the verbs the code used are exactly those deploy/ grants.
    let used: BTreeSet<Request> = api.requests().into_iter().collect();
    let granted = rbac_grants();
    let used_plain: BTreeSet<(String, String, bool)> = used
        .iter()
        .map(|r| (r.verb.clone(), r.resource.clone(), r.namespace.is_some()))
        .collect();
    for r in &used {
        if let Some(ns) = &r.namespace {
            assert_eq!(
                ns, NS,
                "namespaced requests stay in the prober's namespace: {r:?}"
            );
        }
    }
    // Granted but never requested: delete on Services, which
    // OwnerReferencesPermissionEnforcement asks of whoever sets an object's
    // ownerReferences.
    let admission: BTreeSet<(String, String, bool)> =
        [("delete".to_string(), "services".to_string(), true)].into();
    assert_eq!(
        used_plain,
        granted.difference(&admission).cloned().collect(),
        "RBAC in deploy/base/rbac.yaml must grant exactly what the code uses"
    );
    assert!(
        !used_plain
            .iter()
            .any(|(_, res, namespaced)| !namespaced || res == "pods" || res == "nodes"),
        "nothing cluster-wide, no pods, no nodes: {used_plain:?}"
    );
}

/// Past `node_services_max_nodes`, no Service per node: the probers delete
/// theirs, and the pool's two probe Services lead to one node at a time,
/// round by round, each slot pointed by the node whose turn it is. Every
/// prober still reaches every node through a VIP, and each probe knows the
/// node it reached.
#[tokio::test(flavor = "multi_thread")]
async fn past_the_bound_a_pool_of_services_reaches_every_node_in_turn() {
    let api = FakeApi::start_on_loopback().await;
    api.authorize("tailprobe", rules_of("deploy/base/rbac.yaml", NS));
    let echo_port = common::free_port();
    let nodes = [
        ("a", "127.0.0.31"),
        ("b", "127.0.0.32"),
        ("c", "127.0.0.33"),
    ];
    let probers: Vec<Prober> = nodes
        .iter()
        .map(|(n, ip)| {
            let pod = format!("tp-{n}");
            let uid = format!("uid-tp-{n}");
            Prober::start(
                &api,
                n,
                "host",
                &format!(
                    "echo_listen = \"{ip}:{echo_port}\"\nnode_service_port = {echo_port}\nreapply = \"1s\"\nround = \"2s\"\nnode_services_max_nodes = 2\nservice_pool = 2\npod_ip_targets = false"
                ),
                &[("POD_NAME", &pod), ("POD_UID", &uid), ("POD_IP", ip)],
            )
        })
        .collect();
    // Both slots are probed, and over the rounds every node is reached
    // through them, from every prober.
    for (p, (me, _)) in probers.iter().zip(nodes) {
        eventually("the pool's targets", Duration::from_secs(30), || async {
            let got = p.target_names().await;
            if got == set(&["pool/tailprobe-pool-0", "pool/tailprobe-pool-1"]) {
                Ok(())
            } else {
                Err(format!("{got:?}\n{}", p.log_text()))
            }
        })
        .await;
        for (dest, _) in nodes {
            let path = if dest == me {
                "same-node"
            } else {
                "cross-node"
            };
            for_any_slot(p, dest, path).await;
        }
    }
    // No Service per node is left, and the pool holds two ClusterIPs.
    let services: Vec<String> = ["a", "b", "c"]
        .iter()
        .filter(|n| {
            api.get("services", NS, &format!("tailprobe-node-{n}"))
                .is_some()
        })
        .map(|n| n.to_string())
        .collect();
    assert!(services.is_empty(), "per-node Services left: {services:?}");
    for k in 0..2 {
        let svc = api
            .get("services", NS, &format!("tailprobe-pool-{k}"))
            .expect("a pool Service");
        assert_eq!(svc["metadata"]["labels"]["tailprobe.io/role"], "pool");
        assert!(
            svc["metadata"]
                .get("ownerReferences")
                .is_none_or(Value::is_null)
        );
    }
    assert!(api.get("services", NS, "tailprobe-pool-2").is_none());
    // The registration slices stay: they are the node set.
    for (n, _) in nodes {
        assert!(
            api.get("endpointslices", NS, &format!("tailprobe-node-{n}-host"))
                .is_some()
        );
    }
}

/// Waits for an `ok` probe through either pool slot that reached `dest`.
async fn for_any_slot(p: &Prober, dest: &str, path: &str) {
    eventually(
        "a probe through the pool",
        Duration::from_secs(30),
        || async {
            let mut n = 0.0;
            for k in 0..2 {
                let target = format!("target=\"pool/tailprobe-pool-{k}\"");
                let to = format!("destination_node=\"{dest}\"");
                let on = format!("path=\"{path}\"");
                n += p
                    .metric(
                        "tailprobe_probes_total",
                        &[&target, &to, &on, "outcome=\"ok\""],
                    )
                    .await;
            }
            if n > 0.0 {
                Ok(())
            } else {
                Err(format!("nothing reached {dest} ({path})\n{}", p.log_text()))
            }
        },
    )
    .await;
}

/// A node's Service or slice deleted by hand comes back as soon as the
/// prober's own watch sees the delete, not at the next reapply (300 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_deleted_by_hand_comes_back_at_once() {
    // A prober on loopback registers a loopback endpoint.
    let api = FakeApi::start_on_loopback().await;
    api.authorize("tailprobe", rules_of("deploy/base/rbac.yaml", NS));
    let echo_port = common::free_port();
    let p = Prober::start(
        &api,
        "a",
        "pod",
        &format!(
            "echo_listen = \"127.0.0.11:{echo_port}\"\nnode_service_port = {echo_port}\nreapply = \"300s\""
        ),
        &[
            ("POD_NAME", "tp-a"),
            ("POD_UID", "uid-tp-a"),
            ("POD_IP", "127.0.0.11"),
        ],
    );
    for (resource, name) in [
        ("services", "tailprobe-node-a"),
        ("endpointslices", "tailprobe-node-a-pod"),
    ] {
        eventually("registered", Duration::from_secs(20), || async {
            api.get(resource, NS, name)
                .map(|_| ())
                .ok_or_else(|| p.log_text())
        })
        .await;
        api.delete(resource, NS, name);
        assert!(api.get(resource, NS, name).is_none());
        eventually(
            "re-applied after the delete",
            Duration::from_secs(5),
            || async {
                api.get(resource, NS, name)
                    .map(|_| ())
                    .ok_or_else(|| format!("{resource}/{name} still gone"))
            },
        )
        .await;
    }
}

/// (verb, resource, namespaced) from the ClusterRole and Role in deploy/.
fn rbac_grants() -> BTreeSet<(String, String, bool)> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/base/rbac.yaml"
    ))
    .unwrap();
    let mut out = BTreeSet::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        let (rules, namespaced) = match v["kind"].as_str() {
            Some("ClusterRole") => (
                serde_json::from_value::<ClusterRole>(v).unwrap().rules,
                false,
            ),
            Some("Role") => (serde_json::from_value::<Role>(v).unwrap().rules, true),
            _ => continue,
        };
        for rule in rules.into_iter().flatten() {
            for verb in &rule.verbs {
                for res in rule.resources.iter().flatten() {
                    out.insert((verb.clone(), res.clone(), namespaced));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_follow_services_and_endpoints_and_outlive_api_outages() {
    let api = FakeApi::start().await;
    // Every namespace: the base Role and the opt-in ClusterRole, bound
    // cluster-wide.
    let mut rules = rules_of("deploy/base/rbac.yaml", NS);
    rules.extend(rules_of("deploy/service-namespaces/rbac.yaml", NS));
    api.authorize("tailprobe", rules);
    let echo_port = common::free_port();
    let mut echo_child = tokio::process::Command::new(common::bin())
        .args([
            "echo",
            "--listen",
            &format!("127.0.0.1:{echo_port}"),
            "--node",
            "c",
            "--pod",
            "web-c",
        ])
        .kill_on_drop(true)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for n in ["a", "b", "c"] {
        api.put("nodes", node(n));
    }
    for (name, nodes) in [
        ("same", vec!["a"]),
        ("cross", vec!["b"]),
        ("mixed", vec!["b", "c"]),
    ] {
        api.put("services", service("shop", name, echo_port));
        api.put("endpointslices", slice("shop", name, &nodes, echo_port));
    }
    // Opted in, but with a scheme tailprobe cannot speak: said in the log.
    let mut tls = service("shop", "tls", echo_port);
    tls["metadata"]["annotations"] = json!({"tailprobe.io/scheme": "https"});
    api.put("services", tls);
    // Not opted in: never probed.
    let mut quiet = service("shop", "quiet", echo_port);
    quiet["metadata"]["labels"] = json!({});
    api.put("services", quiet);
    // A selector-less Service whose hand-written slice aims outside the
    // trusted ranges: named in the log, never probed.
    api.put("services", service("shop", "aimed", echo_port));
    let mut aimed = slice("shop", "aimed", &["b"], echo_port);
    aimed["endpoints"][0]["addresses"] = json!(["192.0.2.7"]);
    api.put("endpointslices", aimed);
    // Discovery only: no downward-API variables, so no registration. The
    // fixtures' Services are selector-less with slices on loopback, so the
    // test trusts that range and every namespace.
    let p = Prober::start(
        &api,
        "a",
        "host",
        "echo_listen = \"127.0.0.1:0\"\nservice_namespaces = [\"*\"]\nendpoint_cidrs = [\"127.0.0.0/8\"]",
        &[],
    );
    eventually(
        "opted-in Services become targets",
        Duration::from_secs(30),
        || async {
            let got = p.targets().await;
            let summary: Vec<(String, Option<String>, Vec<String>)> =
                got.into_iter().map(|t| (t.name, t.node, t.mixed)).collect();
            let want = vec![
                ("svc/shop/cross".to_string(), Some("b".to_string()), vec![]),
                (
                    "svc/shop/mixed".to_string(),
                    None,
                    vec!["b".to_string(), "c".to_string()],
                ),
                ("svc/shop/same".to_string(), Some("a".to_string()), vec![]),
            ];
            if summary == want {
                Ok(())
            } else {
                Err(format!("{summary:?}\n{}", p.log_text()))
            }
        },
    )
    .await;
    let log = p.log_text();
    assert!(log.contains("Not registering this node's Service"), "{log}");
    assert!(
        log.contains("cannot be probed") && log.contains("svc/shop/tls: tailprobe.io/scheme"),
        "{log}"
    );
    assert!(
        log.contains("svc/shop/aimed: endpoint 192.0.2.7 is outside [kubernetes] endpoint_cidrs"),
        "{log}"
    );
    for (target, dest, path) in [
        ("svc/shop/same", "a", "same-node"),
        ("svc/shop/cross", "b", "cross-node"),
        // Mixed: the echo's header names the node that answered.
        ("svc/shop/mixed", "c", "cross-node"),
    ] {
        p.wait_ok(target, dest, path).await;
    }

    // Endpoints move and Services go: targets follow within seconds.
    api.put("endpointslices", slice("shop", "cross", &["a"], echo_port));
    api.delete("services", "shop", "same");
    eventually(
        "targets follow changes",
        Duration::from_secs(10),
        || async {
            let got: Vec<(String, Option<String>)> = p
                .targets()
                .await
                .into_iter()
                .map(|t| (t.name, t.node))
                .collect();
            let want = vec![
                ("svc/shop/cross".to_string(), Some("a".to_string())),
                ("svc/shop/mixed".to_string(), None),
            ];
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await;

    // The API server goes away: the watches report it, probing goes on with
    // the last targets.
    api.stop().await;
    let ok = ["target=\"svc/shop/cross\"", "outcome=\"ok\""];
    eventually("the outage shows", Duration::from_secs(20), || async {
        let up = p
            .metric(
                "tailprobe_kubernetes_watch_up",
                &["resource=\"services/*\""],
            )
            .await;
        let errors = p
            .metric(
                "tailprobe_kubernetes_watch_errors_total",
                &["resource=\"services/*\""],
            )
            .await;
        if up == 0.0 && errors > 0.0 {
            Ok(())
        } else {
            Err(format!("up {up}, errors {errors}"))
        }
    })
    .await;
    let before = p.metric("tailprobe_probes_total", &ok).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(p.metric("tailprobe_probes_total", &ok).await >= before + 3.0);
    assert_eq!(
        p.target_names().await,
        set(&["svc/shop/cross", "svc/shop/mixed"])
    );

    // Back: the watches resume and see what changed.
    api.restart().await;
    api.put("services", service("shop", "late", echo_port));
    api.put("endpointslices", slice("shop", "late", &["c"], echo_port));
    eventually("watches resume", Duration::from_secs(40), || async {
        let got = p.target_names().await;
        let up = p
            .metric(
                "tailprobe_kubernetes_watch_up",
                &["resource=\"services/*\""],
            )
            .await;
        if got.contains("svc/shop/late") && up == 1.0 {
            Ok(())
        } else {
            Err(format!("{got:?} up {up}"))
        }
    })
    .await;

    // History is compacted and an event is lost: 410 Gone forces a relist,
    // which alone can reveal the deletion.
    api.delete_silently("services", "shop", "late");
    api.compact();
    eventually(
        "a relist after 410 Gone",
        Duration::from_secs(30),
        || async {
            let got = p.target_names().await;
            if got == set(&["svc/shop/cross", "svc/shop/mixed"]) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await;
    let lists = api
        .requests()
        .iter()
        .filter(|r| r.verb == "list" && r.resource == "services")
        .count();
    assert!(lists >= 2, "services were listed {lists} times");
    // A 410 is a relist, not an error: the watch stays up.
    let relists = p
        .metric(
            "tailprobe_kubernetes_watch_relists_total",
            &["resource=\"services/*\""],
        )
        .await;
    assert!(relists >= 1.0, "relists counted: {relists}");
    assert_eq!(
        p.metric(
            "tailprobe_kubernetes_watch_up",
            &["resource=\"services/*\""]
        )
        .await,
        1.0
    );
    let _ = echo_child.kill().await;
}

/// `tailprobe hub` with no static list finds the prober pods of its
/// namespace by label, on their `metrics` port, follows them as they come
/// and go, and asks the API server for nothing its Role in deploy/hub does
/// not grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_finds_the_prober_pods_of_its_namespace() {
    let api = FakeApi::start().await;
    api.authorize("tailprobe-hub", rules_of("deploy/hub/hub.yaml", NS));
    api.authorize("operator", rules_of("deploy/hub/operator-rbac.yaml", NS));
    let target = common::Server::start(common::Behaviour::ok()).await;
    let dir = common::TempDir::new("kube-hub");
    let mut probers = Vec::new();
    let mut probers_api = Vec::new();
    for n in ["a", "b"] {
        let port = common::free_port();
        let cfg = dir.file(
            &format!("{n}.toml"),
            &format!(
                "node = \"{n}\"\n[probe]\ninterval = \"200ms\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[target]]\nname = \"t\"\nurl = \"{}\"\nnode = \"a\"\n",
                target.url("/")
            ),
        );
        probers.push(common::daemon(&cfg, &[]));
        probers_api.push(format!("127.0.0.1:{port}"));
        let mut pod = prober_pod(&format!("tp-{n}"), n, "127.0.0.1", "host", 1);
        pod["spec"]["containers"][0]["ports"] = json!([{"name": "metrics", "containerPort": port}]);
        pod["status"]["phase"] = json!("Running");
        api.put("pods", pod);
    }
    // Another app's pod in the namespace, and a prober elsewhere: not pulled.
    let mut other = prober_pod("web", "a", "127.0.0.1", "host", 1);
    other["metadata"]["labels"] = json!({"app": "web"});
    other["status"]["phase"] = json!("Running");
    api.put("pods", other);
    let kubeconfig = dir.file("kubeconfig", &api.kubeconfig_as("tailprobe-hub"));
    let operator = dir.file("operator-kubeconfig", &api.kubeconfig_as("operator"));
    let listen = format!("127.0.0.1:{}", common::free_port());
    let cfg = dir.file(
        "hub.toml",
        &format!(
            "[server]\nlisten = \"{listen}\"\n[hub]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
             [kubernetes]\nnamespace = \"{NS}\"\n"
        ),
    );
    let _hub = tokio::process::Command::new(common::bin())
        .args(["hub", "--config", cfg.to_str().unwrap()])
        .env("KUBECONFIG", &kubeconfig)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let sources = |m: &Value| -> BTreeSet<String> {
        m["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["source_node"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let matrix = || async {
        match tokio::net::TcpStream::connect(&listen).await {
            Ok(_) => {
                let (_, _, body) = common::get(&listen, "/api/v1/matrix").await;
                serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
            }
            Err(_) => Value::Null,
        }
    };
    eventually(
        "the hub pulls both probers",
        Duration::from_secs(20),
        || async {
            let m = matrix().await;
            if sources(&m) == set(&["a", "b"])
                && m["probers"]["up"] == 2
                && m["probers"]["unreachable"] == 0
            {
                Ok(())
            } else {
                Err(format!("{m}"))
            }
        },
    )
    .await;
    // Prober b's pod goes: the hub stops pulling it at once.
    api.delete("pods", NS, "tp-b");
    eventually("the hub forgets b", Duration::from_secs(10), || async {
        let m = matrix().await;
        if sources(&m) == set(&["a"]) && m["probers"]["up"] == 1 {
            Ok(())
        } else {
            Err(format!("{m}"))
        }
    })
    .await;

    let hub_requests = api.requests();

    // `cluster matrix` from a laptop: the prober pods listed, each reached
    // through the API server's pod proxy; the same matrix as straight to
    // the probers.
    let cluster = |args: &[&str]| {
        let mut all = vec!["cluster", "matrix", "--namespace", NS, "--format", "json"];
        all.extend_from_slice(args);
        std::process::Command::new(common::bin())
            .args(&all)
            .env("KUBECONFIG", &operator)
            .output()
            .unwrap()
    };
    let fresh = cluster(&["--samples", "2"]);
    assert_eq!(
        fresh.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let fresh: Value = serde_json::from_slice(&fresh.stdout).unwrap();
    assert_eq!(sources(&fresh), set(&["a"]), "{fresh:#}");
    assert!(
        fresh["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["samples"] == 2),
        "{fresh:#}"
    );
    let proxied = cluster(&["--from-window"]);
    assert_eq!(
        proxied.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&proxied.stderr)
    );
    let proxied: Value = serde_json::from_slice(&proxied.stdout).unwrap();
    let a_url = format!("http://{}", probers_api[0]);
    let direct = std::process::Command::new(common::bin())
        .args([
            "cluster",
            "matrix",
            "--from-window",
            "--format",
            "json",
            "--probers",
            &a_url,
        ])
        .output()
        .unwrap();
    let direct: Value = serde_json::from_slice(&direct.stdout).unwrap();
    let keys = |m: &Value| -> Vec<String> {
        m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    c["source_node"], c["target"], c["destination_node"]
                )
            })
            .collect()
    };
    assert!(!keys(&direct).is_empty());
    assert_eq!(keys(&proxied), keys(&direct));
    let operator = in_namespace(&api.requests()[hub_requests.len()..]);
    assert_eq!(
        operator,
        role_grants("deploy/hub/operator-rbac.yaml"),
        "deploy/hub/operator-rbac.yaml must grant exactly what cluster matrix uses"
    );

    // RBAC: exactly what deploy/hub grants, in the hub's namespace only.
    let used = in_namespace(&hub_requests);
    assert_eq!(
        used,
        role_grants("deploy/hub/hub.yaml"),
        "deploy/hub/hub.yaml must grant exactly what the hub uses"
    );
}

/// (verb, resource, namespaced) of requests that must all stay in `NS`.
fn in_namespace(requests: &[Request]) -> BTreeSet<(String, String, bool)> {
    requests
        .iter()
        .map(|r| {
            assert_eq!(r.namespace.as_deref(), Some(NS), "{r:?}");
            (r.verb.clone(), r.resource.clone(), true)
        })
        .collect()
}

/// (verb, resource, namespaced) of the Roles in a file under the crate.
fn role_grants(file: &str) -> BTreeSet<(String, String, bool)> {
    let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut granted = BTreeSet::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] == "Role" {
            let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(v).unwrap();
            for rule in role.rules.into_iter().flatten() {
                for verb in &rule.verbs {
                    for res in rule.resources.iter().flatten() {
                        granted.insert((verb.clone(), res.clone(), true));
                    }
                }
            }
        }
    }
    granted
}
