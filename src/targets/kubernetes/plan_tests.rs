use super::*;

fn svc(ns: &str, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ServiceInfo {
    let map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    ServiceInfo {
        namespace: ns.into(),
        name: name.into(),
        labels: map(labels),
        annotations: map(annotations),
        cluster_ip: Some(format!("10.96.0.{}", name.len())),
        ports: vec![("http".into(), 80), ("admin".into(), 8080)],
        has_selector: true,
        node_port: None,
        ..ServiceInfo::default()
    }
}

fn node_svc(node: &str) -> ServiceInfo {
    svc(
        "tailprobe",
        &crate::targets::kubernetes::names::node_service(node),
        &[(labels::PROBE, "true"), (labels::ROLE, "node")],
        &[(labels::NODE, node)],
    )
}

fn slice(ns: &str, service: &str, nodes: &[Option<&str>]) -> SliceInfo {
    SliceInfo {
        namespace: ns.into(),
        service: service.into(),
        ready_nodes: nodes.iter().map(|n| n.map(String::from)).collect(),
        ready_addresses: nodes
            .iter()
            .enumerate()
            .map(|(i, _)| format!("10.244.{i}.9"))
            .collect(),
    }
}

pub(super) fn cluster(nodes: &[&str]) -> Snapshot {
    let mut s = Snapshot {
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    for n in nodes {
        let ns = node_svc(n);
        s.slices.push(slice("tailprobe", &ns.name, &[Some(n)]));
        s.services.push(ns);
        s.probers.push(ProberInfo {
            namespace: "tailprobe".into(),
            registered: true,
            node: n.to_string(),
            ip: format!("10.244.{}.5", n.len()),
            kind: SourceKind::Pod,
            echo_port: Some(9798),
            ready: true,
        });
    }
    s
}

/// Opted-in Services of namespace `shop` are trusted.
fn shop() -> KubernetesConfig {
    KubernetesConfig {
        service_namespaces: vec!["shop".into()],
        ..KubernetesConfig::default()
    }
}

pub(super) const ME: Me<'static> = Me {
    node: "a",
    namespace: "tailprobe",
    echo_port: 9798,
    api_server: None,
    host_ip: None,
};

fn names(p: &Plan) -> Vec<(&str, &str, TargetNode)> {
    p.targets
        .iter()
        .map(|t| (t.name.as_str(), t.url.as_str(), t.node.clone()))
        .collect()
}

#[test]
fn every_node_gets_a_service_target_and_a_pod_ip_target() {
    let snap = cluster(&["a", "b"]);
    let p = plan(
        &snap,
        &ME,
        &KubernetesConfig::default(),
        &ProbeConfig::default(),
        0,
    );
    let known = |n: &str| TargetNode::Known(n.into());
    assert_eq!(
        names(&p),
        vec![
            ("node/a", "http://10.96.0.16:80/", known("a")),
            ("node/b", "http://10.96.0.16:80/", known("b")),
            ("pod/a", "http://10.244.1.5:9798/", known("a")),
            ("pod/b", "http://10.244.1.5:9798/", known("b")),
        ]
    );
    assert_eq!(
        (p.remote_nodes, p.remote_nodes_probed, p.rounds_per_cycle),
        (1, 1, 1)
    );
    assert_eq!(p.targets[0].timeout, ProbeConfig::default().timeout.get());
    let no_pods = KubernetesConfig {
        pod_ip_targets: false,
        ..Default::default()
    };
    let p = plan(&snap, &ME, &no_pods, &ProbeConfig::default(), 0);
    assert_eq!(p.targets.len(), 2);
}

#[test]
fn node_services_need_a_ready_endpoint_and_our_namespace() {
    let mut snap = cluster(&["a", "b", "c"]);
    // b's prober is gone: its slice has no ready endpoint.
    snap.slices.retain(|s| !s.service.ends_with("-b"));
    // A look-alike in another namespace must not be trusted.
    let mut fake = node_svc("c");
    fake.namespace = "elsewhere".into();
    fake.cluster_ip = Some("10.96.9.9".into());
    snap.services.push(fake);
    let p = plan(
        &snap,
        &ME,
        &KubernetesConfig::default(),
        &ProbeConfig::default(),
        0,
    );
    let node_targets: Vec<_> = p
        .targets
        .iter()
        .filter(|t| t.name.starts_with("node/"))
        .map(|t| (t.name.as_str(), t.url.as_str()))
        .collect();
    assert_eq!(
        node_targets,
        vec![
            ("node/a", "http://10.96.0.16:80/"),
            ("node/c", "http://10.96.0.16:80/")
        ]
    );
}

#[test]
fn opted_in_services_are_classified_by_their_endpoints_nodes() {
    let mut snap = cluster(&["a", "b", "c"]);
    let on = [(labels::PROBE, "true")];
    snap.services.push(svc("shop", "same", &on, &[]));
    snap.services
        .push(svc("shop", "cross", &on, &[(labels::PORT, "admin")]));
    snap.services
        .push(svc("shop", "mixed", &on, &[(labels::PATH, "healthz")]));
    snap.services
        .push(svc("shop", "nobody", &on, &[(labels::SCHEME, "tcp")]));
    snap.services.push(svc("shop", "anon", &on, &[]));
    snap.slices
        .push(slice("shop", "same", &[Some("a"), Some("a")]));
    snap.slices.push(slice("shop", "cross", &[Some("b")]));
    snap.slices.push(slice("shop", "mixed", &[Some("b")]));
    snap.slices
        .push(slice("shop", "mixed", &[Some("c"), Some("a")]));
    snap.slices.push(slice("shop", "anon", &[None]));
    // Same name, other namespace: not this Service's endpoints.
    snap.slices.push(slice("other", "same", &[Some("c")]));
    let p = plan(&snap, &ME, &shop(), &ProbeConfig::default(), 0);
    let got: BTreeMap<_, _> = p
        .targets
        .iter()
        .filter(|t| t.name.starts_with("svc/"))
        .map(|t| (t.name.as_str(), (t.url.as_str(), t.node.clone())))
        .collect();
    let expect: BTreeMap<_, _> = [
        (
            "svc/shop/same",
            ("http://10.96.0.4:80/", TargetNode::Known("a".into())),
        ),
        (
            "svc/shop/cross",
            ("http://10.96.0.5:8080/", TargetNode::Known("b".into())),
        ),
        (
            "svc/shop/mixed",
            (
                "http://10.96.0.5:80/healthz",
                TargetNode::Mixed(vec!["a".into(), "b".into(), "c".into()]),
            ),
        ),
        (
            "svc/shop/nobody",
            ("tcp://10.96.0.6:80", TargetNode::Unknown),
        ),
        (
            "svc/shop/anon",
            ("http://10.96.0.4:80/", TargetNode::Unknown),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expect);

    let narrowed = KubernetesConfig {
        service_selector: "tailprobe.io/probe=true,!skip".parse().unwrap(),
        ..shop()
    };
    snap.services
        .last_mut()
        .unwrap()
        .labels
        .insert("skip".into(), "yes".into());
    let p = plan(&snap, &ME, &narrowed, &ProbeConfig::default(), 0);
    assert!(p.targets.iter().all(|t| t.name != "svc/shop/anon"));
    assert!(p.targets.iter().any(|t| t.name == "svc/shop/same"));
}

#[test]
fn unprobeable_services_are_rejected_with_a_reason_and_unready_probers_left_out() {
    let mut snap = cluster(&["a", "b"]);
    let on = [(labels::PROBE, "true")];
    let mut headless = svc("shop", "headless", &on, &[]);
    headless.cluster_ip = None;
    snap.services.push(headless);
    snap.services
        .push(svc("shop", "badport", &on, &[(labels::PORT, "grpc")]));
    snap.services
        .push(svc("shop", "tls", &on, &[(labels::SCHEME, "https")]));
    snap.probers[1].ready = false;
    let p = plan(&snap, &ME, &shop(), &ProbeConfig::default(), 0);
    let names: Vec<_> = p.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["node/a", "node/b", "pod/a"]);
    assert_eq!(
        p.rejected,
        vec![
            "svc/shop/headless: headless, so there is no ClusterIP to probe",
            "svc/shop/badport: tailprobe.io/port \"grpc\" names no TCP port of the Service",
            "svc/shop/tls: tailprobe.io/scheme \"https\" is not http or tcp",
        ]
    );
}

#[test]
fn large_clusters_rotate_a_bounded_pinglist_that_covers_every_pair() {
    let nodes: Vec<String> = (0..50).map(|i| format!("n{i:02}")).collect();
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let snap = cluster(&refs);
    let cfg = KubernetesConfig {
        full_mesh_max_nodes: 20,
        remote_nodes_per_round: 8,
        ..Default::default()
    };
    for me in &refs {
        let who = Me { node: me, ..ME };
        let mut seen = BTreeSet::new();
        let mut cycle = 0;
        for round in 1000..1000 + 7 {
            let p = plan(&snap, &who, &cfg, &ProbeConfig::default(), round);
            // Own node always, 8 remote nodes, each by Service VIP and pod IP.
            assert_eq!(p.targets.len(), 2 * (1 + 8), "{me} round {round}");
            assert_eq!((p.remote_nodes, p.remote_nodes_probed), (49, 8));
            cycle = p.rounds_per_cycle;
            for t in &p.targets {
                seen.insert(t.name.clone());
            }
        }
        assert_eq!(cycle, 7, "ceil(49 / 8)");
        assert_eq!(
            seen.len(),
            2 * 50,
            "{me}: 7 consecutive rounds cover all 50 nodes"
        );
    }
    // The load spreads: in one round, no node is probed by many more probers
    // than the average of 8.
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    for me in &refs {
        let p = plan(
            &snap,
            &Me { node: me, ..ME },
            &cfg,
            &ProbeConfig::default(),
            3,
        );
        for t in p.targets.iter().filter(|t| t.name.starts_with("node/")) {
            *load.entry(t.name.clone()).or_default() += usize::from(t.name[5..] != **me);
        }
    }
    let max = load.values().max().copied().unwrap_or(0);
    assert!(max <= 24, "busiest node probed by {max} of 50 probers");
    // At or under the size limit, everyone probes everyone.
    let small = KubernetesConfig {
        full_mesh_max_nodes: 50,
        ..cfg
    };
    let p = plan(
        &snap,
        &Me { node: "n00", ..ME },
        &small,
        &ProbeConfig::default(),
        0,
    );
    assert_eq!((p.remote_nodes_probed, p.rounds_per_cycle), (49, 1));
}

#[test]
fn registration_slices_become_prober_infos_and_nodes_come_from_node_services() {
    use crate::targets::kubernetes::register::{PodIdentity, node_service, node_slice};
    let id = PodIdentity {
        namespace: "tailprobe".into(),
        pod_name: "tp-x".into(),
        pod_uid: "u1".into(),
        pod_ip: "10.244.1.7".into(),
        node: "b".into(),
        kind: SourceKind::Pod,
        echo_port: 9798,
    };
    let slice = node_slice(&id);
    assert_eq!(
        ProberInfo::from_slice(&slice),
        Some(ProberInfo {
            namespace: "tailprobe".into(),
            registered: true,
            node: "b".into(),
            ip: "10.244.1.7".into(),
            kind: SourceKind::Pod,
            echo_port: Some(9798),
            ready: true,
        })
    );
    // A slice of any other Service is no prober.
    let mut other = slice.clone();
    other.metadata.labels.as_mut().unwrap().remove(labels::ROLE);
    assert_eq!(ProberInfo::from_slice(&other), None);
    // A copy that tailprobe.io does not manage is not registered.
    let mut copy = slice.clone();
    copy.metadata.labels.as_mut().unwrap().insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "someone".into(),
    );
    assert!(!ProberInfo::from_slice(&copy).unwrap().registered);

    // The node set: nodes with a per-node Service in the prober's namespace.
    let own = ServiceInfo::from(&node_service(&id, 80, false));
    let mut elsewhere = own.clone();
    elsewhere.namespace = "shop".into();
    elsewhere
        .annotations
        .insert(labels::NODE.into(), "z".into());
    let plain = svc("tailprobe", "web", &[(labels::PROBE, "true")], &[]);
    assert_eq!(nodes_of(&[own, elsewhere, plain], &[], "tailprobe"), ["b"]);
}

#[test]
fn only_trusted_services_and_prober_pods_become_targets() {
    let mut snap = cluster(&["a", "b"]);
    let on = [(labels::PROBE, "true")];
    snap.services.push(svc("tailprobe", "own", &on, &[]));
    snap.services.push(svc("shop", "elsewhere", &on, &[]));
    let mut handmade = svc("tailprobe", "handmade", &on, &[]);
    handmade.has_selector = false;
    snap.services.push(handmade);
    snap.slices.push(SliceInfo {
        namespace: "tailprobe".into(),
        service: "handmade".into(),
        ready_nodes: vec![None],
        ready_addresses: vec!["169.254.169.254".into()],
    });
    snap.services.push(svc(
        "tailprobe",
        "sneaky",
        &on,
        &[(labels::PATH, "/x y\r\nHost: evil")],
    ));
    // Copies of the prober labels: in another namespace, and outside a
    // DaemonSet. Neither takes a pod/ target.
    let mut impostor = snap.probers[1].clone();
    impostor.namespace = "shop".into();
    impostor.ip = "10.9.9.9".into();
    let mut loose = snap.probers[1].clone();
    loose.registered = false;
    loose.ip = "10.9.9.8".into();
    snap.probers.retain(|p| p.node != "b");
    snap.probers.extend([impostor, loose]);

    let p = plan(
        &snap,
        &ME,
        &KubernetesConfig::default(),
        &ProbeConfig::default(),
        0,
    );
    let names: Vec<_> = p.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["node/a", "node/b", "pod/a", "svc/tailprobe/own"]);
    let said = p.rejected.join("\n");
    assert!(
        said.contains("svc/shop/elsewhere: namespace shop is not in"),
        "{said}"
    );
    assert!(
        said.contains("svc/tailprobe/handmade: it has no selector"),
        "{said}"
    );
    assert!(
        said.contains("svc/tailprobe/sneaky: tailprobe.io/path"),
        "{said}"
    );

    // With ranges, a hand-written slice is probed only inside them.
    let ranged = KubernetesConfig {
        endpoint_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        ..KubernetesConfig::default()
    };
    let p = plan(&snap, &ME, &ranged, &ProbeConfig::default(), 0);
    assert!(
        p.rejected
            .iter()
            .any(|r| r.contains("endpoint 169.254.169.254 is outside")),
        "{:?}",
        p.rejected
    );
    snap.slices.last_mut().unwrap().ready_addresses = vec!["10.244.7.1".into()];
    let p = plan(&snap, &ME, &ranged, &ProbeConfig::default(), 0);
    assert!(p.targets.iter().any(|t| t.name == "svc/tailprobe/handmade"));
}

#[test]
fn discovered_targets_are_capped_keeping_the_mesh_first() {
    let mut snap = cluster(&["a", "b", "c"]);
    for i in 0..10 {
        snap.services.push(svc(
            "tailprobe",
            &format!("s{i}"),
            &[(labels::PROBE, "true")],
            &[],
        ));
    }
    let capped = KubernetesConfig {
        max_targets: 8,
        ..KubernetesConfig::default()
    };
    let p = plan(&snap, &ME, &capped, &ProbeConfig::default(), 0);
    assert_eq!((p.targets.len(), p.over_limit), (8, 8));
    let mesh = p
        .targets
        .iter()
        .filter(|t| !t.name.starts_with("svc/"))
        .count();
    assert_eq!(mesh, 6, "every node/ and pod/ target stays");
    assert!(
        p.rejected
            .iter()
            .any(|r| r.ends_with("past [kubernetes] max_targets = 8"))
    );
}

/// Past `node_services_max_nodes`, the pool: each round its slots lead to
/// the next `service_pool` nodes, every node in `ceil(N / pool)` rounds,
/// each node in exactly one slot when it is served.
#[test]
fn pool_slots_cover_every_node_one_slot_each() {
    let nodes: Vec<String> = (0..1000).map(|i| format!("node-{i:04}")).collect();
    let mut served = vec![0u32; nodes.len()];
    for round in 1_000..1_000 + 16 {
        let mut slots = std::collections::BTreeSet::new();
        for (i, n) in nodes.iter().enumerate() {
            if let Some(k) = pool_slot(&nodes, n, round, 64) {
                assert!(k < 64);
                assert!(slots.insert(k), "slot {k} twice in round {round}");
                served[i] += 1;
            }
        }
        assert_eq!(slots.len(), 64, "round {round}");
    }
    assert!(served.iter().all(|n| *n >= 1), "16 rounds serve every node");
    // A pool larger than the cluster: every node every round.
    let few: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let ks: Vec<Option<usize>> = few.iter().map(|n| pool_slot(&few, n, 7, 64)).collect();
    let mut sorted: Vec<usize> = ks.iter().flatten().copied().collect();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2]);
    assert_eq!(pool_slot(&few, "z", 7, 64), None, "not a node of the list");
}

/// A 5,000-node plan probes through at most the pool's ClusterIPs: the
/// per-node Services left from before are ignored, each pool Service is a
/// target whose node is the one its slice names now.
#[test]
fn a_five_thousand_node_plan_uses_at_most_the_pools_cluster_ips() {
    let names_: Vec<String> = (0..5000).map(|i| format!("node-{i:04}")).collect();
    let refs: Vec<&str> = names_.iter().map(String::as_str).collect();
    let mut snap = cluster(&refs);
    for k in 0..64 {
        let mut s = svc(
            "tailprobe",
            &crate::targets::kubernetes::names::pool_service(k),
            &[(labels::PROBE, "true"), (labels::ROLE, "pool")],
            &[],
        );
        s.cluster_ip = Some(format!("10.96.200.{k}"));
        snap.slices
            .push(slice("tailprobe", &s.name, &[Some(refs[(k * 7) % 5000])]));
        snap.services.push(s);
    }
    let me = Me {
        node: "node-0003",
        ..ME
    };
    let cfg = KubernetesConfig::default();
    let p = plan(&snap, &me, &cfg, &ProbeConfig::default(), 42);
    assert!(p.pool);
    let through_vips: std::collections::BTreeSet<&str> = p
        .targets
        .iter()
        .filter(|t| !t.name.starts_with("pod/"))
        .map(|t| t.host.as_str())
        .collect();
    assert_eq!(through_vips.len(), 64, "{through_vips:?}");
    assert!(through_vips.iter().all(|h| h.starts_with("10.96.200.")));
    let pool0 = p
        .targets
        .iter()
        .find(|t| t.name == "pool/tailprobe-pool-0")
        .unwrap();
    assert_eq!(pool0.node, TargetNode::Known("node-0000".into()));
    assert_eq!(p.rounds_per_cycle, 79);
    assert_eq!(p.pool_slot, pool_slot(&snap.nodes, "node-0003", 42, 64));

    // At the bound, per-node Services as before, a pool left over ignored.
    let mut small = cluster(&["a", "b", "c"]);
    small.services.push(snap.services.last().unwrap().clone());
    small
        .slices
        .push(slice("tailprobe", "tailprobe-pool-63", &[Some("b")]));
    let at_bound = KubernetesConfig {
        node_services_max_nodes: 3,
        ..KubernetesConfig::default()
    };
    let p = plan(&small, &ME, &at_bound, &ProbeConfig::default(), 42);
    assert!(!p.pool && p.pool_slot.is_none());
    assert!(p.targets.iter().all(|t| !t.name.starts_with("pool/")));
    assert!(p.targets.iter().any(|t| t.name == "node/b"));
}

/// The node set is every node with a per-node Service or a registered
/// prober: past the bound there are no per-node Services.
#[test]
fn registered_probers_name_nodes_without_a_service() {
    let mut snap = cluster(&["a", "b"]);
    snap.services
        .retain(|s| s.annotations.get(labels::NODE).map(String::as_str) != Some("b"));
    assert_eq!(
        nodes_of(&snap.services, &snap.probers, "tailprobe"),
        ["a", "b"]
    );
    snap.probers[1].registered = false;
    assert_eq!(nodes_of(&snap.services, &snap.probers, "tailprobe"), ["a"]);
}
