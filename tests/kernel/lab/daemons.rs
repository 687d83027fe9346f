//! Probers running as daemons in the lab's nodes: started by `lab run`,
//! placing a slow backend and lost DNS queries, naming a starved prober.

use super::*;

#[test]
fn lab_run_starts_a_prober_daemon_in_every_node_as_root() {
    let lab = Lab::up(&[]);
    let (code, out, err) = tailprobe(&["lab", "up", "--name", &lab.name]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("exists already"), "{err}");
    lab.run(&["lab", "run", "--samples", "2", "--vantage", "host"]);
    for i in 1..=3 {
        let ns = format!("{}-n{i}", lab.name);
        // The daemon probes on its own schedule; its endpoints answer inside
        // the node's namespace.
        let mut metrics = String::new();
        for _ in 0..50 {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "curl",
                    "-s",
                    "http://127.0.0.1:9797/metrics",
                ])
                .output()
                .unwrap();
            metrics = String::from_utf8_lossy(&out.stdout).into_owned();
            if metrics.contains("tailprobe_probes_total{") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert!(
            metrics.contains(&format!("source_node=\"node{i}\""))
                && metrics.contains("outcome=\"ok\""),
            "node{i}: {metrics}"
        );
    }
}

/// Two failure classes beyond the seed at once, on the kernel: node1's
/// backend answers a tenth of its requests 2 s late (its echo restarted),
/// and DNS queries reaching node2's resolver over the overlay are lost. The
/// first is placed in the backend, every path to node1, never a network
/// fault; the second in DNS, the cross-node lookups to node2, whose own
/// lookups are on time.
#[test]
fn a_slow_backend_and_lost_dns_queries_are_placed_where_they_are_as_root() {
    let lab = Lab::up(&[]);
    lab.run(&[
        "lab",
        "fault",
        "slow-backend",
        "--on",
        "node1",
        "--delay",
        "2s",
        "--percent",
        "10",
    ]);
    lab.run(&[
        "lab",
        "fault",
        "dns-loss",
        "--on",
        "node2",
        "--percent",
        "30",
    ]);
    let r = lab.matrix(40);
    let by_kind = |kind: &str| {
        r.findings
            .iter()
            .filter(|f| f.kind.as_str() == kind)
            .collect::<Vec<_>>()
    };
    let slow = by_kind("server-time-tail");
    assert!(!slow.is_empty(), "{:#?}", r.findings);
    let f = slow[0];
    assert_eq!(f.locus.as_str(), "backend", "{f:#?}");
    assert_eq!(f.destination_node.as_deref(), Some("node1"), "{f:#?}");
    assert_eq!(
        f.likely_causes.first().map(|c| c.id.as_str()),
        Some("backend-slow"),
        "{f:#?}"
    );
    // Never a network fault: no ladder anywhere.
    assert!(
        by_kind("syn-retransmit-ladder").is_empty(),
        "{:#?}",
        r.findings
    );
    let dns = by_kind("dns-timeout-ladder");
    assert!(!dns.is_empty(), "{:#?}", r.findings);
    let f = dns[0];
    assert_eq!(f.locus.as_str(), "dns", "{f:#?}");
    assert_eq!(f.destination_node.as_deref(), Some("node2"), "{f:#?}");
    assert!(
        f.pairs.iter().all(|(s, d)| d == "node2" && s != "node2"),
        "the cross-node lookups to node2 only: {f:#?}"
    );
    assert_eq!(
        f.likely_causes.first().map(|c| c.id.as_str()),
        Some("dns-path-loss"),
        "one query at a time: never the race: {f:#?}"
    );
    lab.run(&["lab", "fault", "clear"]);
}

/// A prober held to 2 % of a CPU by a cgroup quota (`lab fault
/// starve-prober`): its own probes start late, and it names itself, never
/// the network: a prober-starved finding, its locus the prober, from node1's
/// own daemon; node2's daemon, not starved, raises nothing.
#[test]
fn a_starved_prober_names_itself_not_the_network_as_root() {
    let lab = Lab::up_alone(&[]);
    lab.run(&["lab", "run", "--samples", "2", "--vantage", "host"]);
    lab.run(&[
        "lab",
        "fault",
        "starve-prober",
        "--on",
        "node1",
        "--cpu",
        "2",
    ]);
    let findings = |node: usize| {
        curl_in(
            &format!("{}-n{node}", lab.name),
            "http://127.0.0.1:9797/api/v1/findings",
        )
        .and_then(|v| v["findings"].as_array().cloned())
    };
    let t0 = std::time::Instant::now();
    let starved = loop {
        let found = findings(1).unwrap_or_default();
        if let Some(f) = found.iter().find(|f| f["kind"] == "prober-starved") {
            break (f.clone(), found);
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "no prober-starved finding on node1: {found:#?}"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    let (f, all) = starved;
    assert_eq!(f["locus"], "prober", "{f:#}");
    assert_eq!(f["likely_causes"][0]["id"], "prober-starved", "{f:#}");
    assert!(
        all.iter().all(|f| f["locus"] != "network"),
        "the prober's delay is never the network's: {all:#?}"
    );
    assert_eq!(
        findings(2).map(|f| f.len()),
        Some(0),
        "node2 is not starved"
    );
    lab.run(&["lab", "fault", "clear"]);
}
