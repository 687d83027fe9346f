//! The SYN ladders on the kernel: healthy paths, dropped SYNs on both
//! schedules, the VXLAN checksum bug with and without rehash, an MTU black
//! hole, underlay delay.

use super::*;

#[test]
fn healthy_lab_every_cell_is_fast_and_down_leaves_nothing_as_root() {
    let links_before = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap()
        .stdout;
    // Service-time jitter in every echo: slow responses, but no lost SYNs.
    let lab = Lab::up(&["--echo-delay", "uniform:0ms..300ms"]);
    let r = lab.matrix(5);
    assert_eq!(r.reports.len(), 6, "3 nodes x host and pod");
    assert!(
        r.findings.is_empty(),
        "a healthy lab with jitter raises nothing: {:#?}",
        r.findings
    );
    assert_eq!(r.facts.len(), 3, "every node reported its facts");
    let all = cells(&r);
    assert!(
        all.len() >= 6 * 4,
        "every node's Service and the all-nodes one, from every source"
    );
    let lookups = every_cell(&r).len() - all.len();
    assert_eq!(lookups, 6 * 3, "every source asks every node's resolver");
    for (src, kind, c) in &every_cell(&r) {
        assert!(fast(c), "{src} {kind:?} {c:?}");
        if &*c.dims.target != "svc/lab/all" {
            assert_eq!(c.samples, 5);
        }
    }
    // The all-nodes Service splits its probes over destination cells.
    for rep in &r.reports {
        let n: u64 = rep
            .cells
            .iter()
            .filter(|c| &*c.dims.target == "svc/lab/all")
            .map(|c| c.samples)
            .sum();
        assert_eq!(n, 5, "{} {:?}", rep.source_node, rep.source_kind);
    }
    // Same-node and cross-node cells both exist, and the all-nodes Service
    // is attributed per probe through the echo's header.
    assert!(
        all.iter()
            .any(|(_, _, c)| c.dims.path == PathKind::SameNode)
    );
    assert!(
        all.iter()
            .any(|(_, _, c)| &*c.dims.target == "svc/lab/all" && c.dims.destination_node.is_some())
    );

    let name = lab.name.clone();
    drop(lab);
    let netns = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !netns.contains(&format!("{name}-")),
        "namespaces left behind: {netns}"
    );
    let links_after = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        links_before, links_after,
        "the caller's namespace gained or lost links"
    );
    assert!(!std::path::Path::new(&format!("/run/tailprobe-lab/{name}")).exists());
}

fn drop_syn_case(linear: &str, rung_s: f64) {
    let lab = Lab::up(&["--syn-linear-timeouts", linear]);
    lab.run(&[
        "lab", "fault", "drop-syn", "--from", "node2", "--to", "node1", "--count", "2",
    ]);
    let r = lab.matrix(5);
    for (src, kind, c) in cells(&r) {
        if src == "node2" && c.dims.destination_node.as_deref() == Some("node1") {
            assert_eq!(c.failures, 0, "{kind:?} {c:?}");
            assert_eq!(
                c.syn_retransmits,
                2 * c.samples,
                "two SYNs lost per probe: {kind:?} {c:?}"
            );
            let (lo, hi) = (rung_s * 1000.0, (1.13 * rung_s + 0.1) * 1000.0 + 50.0);
            let (min, max) = (c.connect_p50_ms.unwrap(), c.connect_max_ms.unwrap());
            assert!(
                min >= lo && max <= hi,
                "{kind:?} rung {rung_s}s: p50 {min} max {max}"
            );
        } else {
            assert!(fast(c), "{src} {kind:?} {c:?}");
        }
    }
}

#[test]
fn drop_syn_two_from_node2_to_node1_lands_on_the_3s_rung_classic_as_root() {
    drop_syn_case("0", 3.0);
}

/// A third of node2's flows to node1 lose exactly their first 3 SYNs: a
/// partial but deterministic drop. node2's prober alone finds it, on the 7 s
/// rung only, and names a drop, not random loss.
#[test]
fn a_partial_drop_judged_by_one_node_is_a_drop_not_random_loss_as_root() {
    let lab = Lab::up(&["--syn-linear-timeouts", "0"]);
    lab.run(&[
        "lab",
        "fault",
        "drop-syn",
        "--from",
        "node2",
        "--to",
        "node1",
        "--count",
        "3",
        "--percent",
        "30",
    ]);
    let r = lab.node_matrix(2, 20);
    assert_eq!(r.source_node, "node2");
    let ladder: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::SynRetransmitLadder)
        .collect();
    assert!(!ladder.is_empty(), "{:#?}", r.findings);
    for f in &ladder {
        assert_eq!(f.destination_node.as_deref(), Some("node1"), "{f:#?}");
        assert!(
            f.rungs.iter().all(|r| r.retransmits == 3),
            "only the 7 s rung: {f:#?}"
        );
        assert!(
            (0.1..0.6).contains(&f.share),
            "a share of the flows: {f:#?}"
        );
        assert_eq!(f.likely_causes[0].id, CauseId::SynDroppedOnPath, "{f:#?}");
        assert!(
            !f.likely_causes
                .iter()
                .any(|c| c.id == CauseId::PathPacketLoss),
            "one rung and nothing below it is no random loss: {f:#?}"
        );
    }
    for c in r.cells.iter().filter(|c| !c.url.starts_with("dns://")) {
        if c.dims.destination_node.as_deref() != Some("node1") {
            assert!(fast(c), "{c:?}");
        }
    }
}

#[test]
fn drop_syn_two_lands_on_the_2s_rung_with_linear_timeouts_as_root() {
    assert!(
        std::path::Path::new("/proc/sys/net/ipv4/tcp_syn_linear_timeouts").exists(),
        "this kernel has no tcp_syn_linear_timeouts (added in 6.5)"
    );
    drop_syn_case("4", 2.0);
}

fn csum_bug_cells(txrehash: &str) -> (Lab, Vec<Cell>, Vec<Cell>, String, LabReport) {
    let lab = Lab::up(&["--syn-linear-timeouts", "0", "--txrehash", txrehash]);
    for on in ["node1", "node2", "node3"] {
        lab.run(&["lab", "fault", "vxlan-csum-bug", "--on", on]);
    }
    let r = lab.matrix(3);
    let (code, status, _) = tailprobe(&["lab", "status", "--name", &lab.name]);
    assert_eq!(code, 0);
    let (mut hit, mut clean) = (vec![], vec![]);
    for (_, kind, c) in cells(&r) {
        // The bug rides kube-proxy's masquerade: host-network paths through
        // a Service; the straight paths to the same pods stay clean.
        if kind == SourceKind::Host
            && c.dims.path == PathKind::CrossNode
            && c.dims.via() == Via::Service
        {
            hit.push(c.clone());
        } else {
            clean.push(c.clone());
        }
    }
    (lab, hit, clean, status, r)
}

#[test]
fn vxlan_checksum_bug_without_rehash_reaches_the_63s_rung_as_root() {
    let (_lab, hit, clean, status, report) = csum_bug_cells("0");
    assert!(!hit.is_empty());
    for c in &hit {
        // Six SYNs die on the NATed outer conntrack entry; it expires 30 s
        // after the fifth retransmission, and the seventh SYN gets through.
        assert_eq!(c.failures, 0, "{c:?}");
        let p50 = c.connect_p50_ms.unwrap();
        assert!((63_000.0..=71_300.0).contains(&p50), "63 s rung: {c:?}");
    }
    // Now and then a probe's outer UDP port meets an entry created without
    // NAT and its SYN passes at once; nine in ten lose all six.
    let lost: u64 = hit.iter().map(|c| c.syn_retransmits).sum();
    let probes: u64 = hit.iter().map(|c| c.samples).sum();
    assert!(
        lost * 10 >= 6 * probes * 9,
        "{lost} SYNs lost over {probes} probes"
    );
    stay_clean(&clean);
    let errors: Vec<u64> = status
        .lines()
        .filter_map(|l| l.split("UdpInCsumErrors=").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    assert!(
        errors.iter().all(|n| *n > 0),
        "every receiver counted bad checksums: {status}"
    );

    // The detector's verdict: one finding on every cross-node host path,
    // on the 63 s rung, naming the checksum bug and the device to fix.
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let f = &report.findings[0];
    assert_eq!(f.kind, FindingKind::SynRetransmitLadder);
    assert_eq!(
        (f.path, f.source_kind),
        (Some(PathKind::CrossNode), Some(SourceKind::Host))
    );
    assert!(
        f.rungs
            .iter()
            .any(|r| r.seconds == 63.0 && r.retransmits == 6),
        "{f:#?}"
    );
    let cause = &f.likely_causes[0];
    assert_eq!(cause.id, CauseId::VxlanChecksumOffload, "{f:#?}");
    assert!(cause.remediation[0].starts_with("ethtool --offload vxlan.calico rx off tx off"));
}

#[test]
fn vxlan_checksum_bug_with_rehash_escapes_after_one_second_as_root() {
    let (lab, hit, clean, _, report) = csum_bug_cells("1");
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    // Now and then a rehashed SYN meets another NATed entry and a probe
    // loses a second SYN; the 1 s rung dominates.
    let rungs = &report.findings[0].rungs;
    let on_1s: u64 = rungs
        .iter()
        .filter(|r| r.seconds == 1.0)
        .map(|r| r.count)
        .sum();
    let all: u64 = rungs.iter().map(|r| r.count).sum();
    assert!(on_1s * 10 >= all * 9, "{:#?}", report.findings);
    assert_eq!(
        report.findings[0].likely_causes[0].id,
        CauseId::VxlanChecksumOffload
    );
    // node1's prober alone, with its own facts: txrehash = 1 predicts the
    // 1 s escape, so the checksum bug still ranks first.
    let alone = lab.node_matrix(1, 5);
    let f = alone
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::SynRetransmitLadder)
        .unwrap_or_else(|| panic!("{:#?}", alone.findings));
    assert_eq!(
        f.likely_causes[0].id,
        CauseId::VxlanChecksumOffload,
        "{f:#?}"
    );
    assert_eq!(alone.facts.as_ref().and_then(|f| f.txrehash), Some(1));
    for c in &hit {
        let p50 = c.connect_p50_ms.unwrap();
        assert!(
            (1000.0..=1300.0).contains(&p50),
            "the rehashed retransmission escapes: {c:?}"
        );
    }
    // As without rehash, a probe's outer UDP port now and then meets an
    // entry created without NAT and its first SYN passes; nine in ten lose
    // at least one.
    let escaped: u64 = hit
        .iter()
        .flat_map(|c| &c.connect_log_hist)
        .filter(|(ms, _)| *ms < 500.0)
        .map(|(_, n)| n)
        .sum();
    let probes: u64 = hit.iter().map(|c| c.samples).sum();
    assert!(
        !hit.is_empty() && escaped * 10 <= probes,
        "{escaped} of {probes} probes lost no SYN: {hit:?}"
    );
    stay_clean(&clean);
}

/// Same-node and pod-network paths stay clean on the checksum bug. A pod's
/// outer UDP flow can now and then meet the entry a host probe's NATed
/// flow left (the emulation shares the node's conntrack): one SYN, re-sent
/// at 1 s, in one cell of a run at most. Never a ladder.
fn stay_clean(clean: &[Cell]) {
    let slipped: Vec<&Cell> = clean.iter().filter(|c| !fast(c)).collect();
    assert!(
        slipped.len() <= 1,
        "same-node and pod-network paths stay clean: {slipped:?}"
    );
    for c in slipped {
        assert!(
            c.failures == 0
                && c.syn_retransmits == 1
                && c.connect_max_ms.is_some_and(|m| m < 1_500.0),
            "at most one SYN lost once off the hit paths: {c:?}"
        );
    }
}

#[test]
fn an_mtu_black_hole_stalls_large_bodies_only_as_root() {
    let lab = Lab::up(&[]);
    lab.run(&[
        "lab",
        "fault",
        "mtu-blackhole",
        "--on",
        "node1",
        "--size",
        "1200",
    ]);
    let r = lab.matrix(3);
    // Large responses from node2's and node3's pods to node1 vanish at node1.
    let pmtu: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::PmtuBlackhole)
        .collect();
    assert!(!pmtu.is_empty(), "{:#?}", r.findings);
    for f in &pmtu {
        assert_eq!(f.source_node.as_deref(), Some("node1"), "{f:#?}");
        assert_ne!(f.destination_node.as_deref(), Some("node1"));
        assert!(f.targets[0].ends_with("/64k"));
        assert_eq!(f.likely_causes[0].id, CauseId::OverlayPmtuBlackhole);
    }
    assert!(
        r.findings
            .iter()
            .all(|f| f.kind == FindingKind::PmtuBlackhole),
        "the failures are explained, no ladder: {:#?}",
        r.findings
    );
}

#[test]
fn underlay_delay_and_jitter_slow_one_node_and_raise_nothing_as_root() {
    let lab = Lab::up(&[]);
    lab.run(&[
        "lab", "fault", "delay", "--on", "node1", "--delay", "200ms", "--jitter", "100ms",
    ]);
    let r = lab.matrix(5);
    assert!(
        r.findings.is_empty(),
        "a delay is not a loss: {:#?}",
        r.findings
    );
    // Judged as it goes, stalls and all, the delay raises nothing early
    // either: the run ends when its probes do.
    let early = lab.node_matrix_with(1, 5, &["--until-verdict"]);
    assert!(
        early.findings.is_empty() && early.ended_early.is_none(),
        "{:#?}",
        early.findings
    );
    for (src, kind, c) in cells(&r) {
        assert_eq!(
            (c.failures, c.syn_retransmits),
            (0, 0),
            "{src} {kind:?} {c:?}"
        );
        let through_node1 = src == "node1" || c.dims.destination_node.as_deref() == Some("node1");
        let crosses = c.dims.path == PathKind::CrossNode;
        let connect = c.connect_p50_ms.unwrap();
        if through_node1 && crosses {
            // The SYN or the SYN-ACK arrives at node1's underlay: held 200-300 ms.
            assert!((200.0..=400.0).contains(&connect), "{src} {kind:?} {c:?}");
        } else {
            assert!(connect < 50.0, "{src} {kind:?} {c:?}");
        }
    }
    lab.run(&["lab", "fault", "clear"]);
    let (_, status, _) = tailprobe(&["lab", "status", "--name", &lab.name]);
    assert!(!status.contains("delayer running"), "{status}");
    let r = lab.matrix(3);
    assert!(
        cells(&r).iter().all(|(_, _, c)| fast(c)),
        "clear removes the delay"
    );
}
