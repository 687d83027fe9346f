//! SYN-retransmit ladders: read from the client kernel's schedule, found at
//! small shares, told from delays, give-ups and single unlucky probes.

use super::*;

#[test]
fn the_linear_ladder_is_read_from_the_client_kernel() {
    // Two SYNs lost: 2 s with linear timeouts, 3 s classic.
    let mut s = vec![series(
        "node2",
        SourceKind::Host,
        "node1",
        "svc-node1",
        "u",
        &repeat((2_004.0, 2, Outcome::Ok), 10),
    )];
    s.push(series(
        "node2",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "u",
        &repeat(ok(0.5), 10),
    ));
    let linear = [facts("node2", "6.18.0", Some(4), 0)];
    let found = detect(&s, &linear, &DetectorConfig::default());
    assert_eq!(
        found[0].rungs,
        [RungCount {
            retransmits: 2,
            seconds: 2.0,
            count: 10
        }]
    );
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("TCP_INFO agrees"))
    );
    // The same probes judged against the classic ladder: timing and kernel disagree.
    let classic = [facts("node2", "6.18.0", Some(0), 0)];
    let found = detect(&s, &classic, &DetectorConfig::default());
    assert_eq!(found[0].rungs[0].seconds, 3.0, "the kernel's count wins");
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.contains("agree on 0 of 10")),
        "{:?}",
        found[0].evidence
    );
}

#[test]
fn healthy_cases_raise_nothing() {
    let cfg = DetectorConfig::default();
    // Millisecond bimodality: a Service with backends on two nodes.
    let mut mixed: Vec<P> = repeat(ok(0.4), 50);
    mixed.extend(repeat(ok(3.5), 50));
    // One unlucky probe on a healthy network.
    let mut unlucky = repeat(ok(0.6), 199);
    unlucky.push((1_003.0, 1, Outcome::Ok));
    // Jitter up to 200 ms.
    let jitter: Vec<P> = (0..200).map(|i| ok(0.5 + f64::from(i % 200))).collect();
    let s = vec![
        series("node1", SourceKind::Host, "node2", "svc-all", "u", &mixed),
        series(
            "node1",
            SourceKind::Host,
            "node2",
            "svc-node2",
            "u",
            &unlucky,
        ),
        series(
            "node1",
            SourceKind::Host,
            "node3",
            "svc-node3",
            "u",
            &jitter,
        ),
    ];
    let found = detect(&s, &[], &cfg);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn one_probe_in_fifty_on_a_rung_is_found_within_200_probes() {
    let mut probes = repeat(ok(0.6), 196);
    probes.extend(repeat((1_002.0, 1, Outcome::Ok), 4));
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "u",
        &probes,
    )];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].rungs,
        [RungCount {
            retransmits: 1,
            seconds: 1.0,
            count: 4
        }]
    );
    let ids: Vec<&str> = found[0]
        .likely_causes
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids[0], "path-packet-loss", "{ids:?}");
    assert!(
        ids.contains(&"ipvs-conn-reuse") && !ids.contains(&"syn-dropped-on-path"),
        "{ids:?}"
    );
    // Without node facts or same-node paths the checksum bug stays a
    // possibility, ranked below the causes the evidence fits.
    assert_ne!(ids[0], "vxlan-checksum-offload", "{ids:?}");
    let bug = found[0]
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::VxlanChecksumOffload)
        .unwrap();
    assert!(
        bug.unknown
            .iter()
            .any(|u| u.contains("TX checksum offload")),
        "{bug:#?}"
    );
}

#[test]
fn timing_without_kernel_retransmits_is_a_delay_not_a_loss() {
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat(ok(1_050.0), 10),
    )];
    assert!(detect(&s, &[], &DetectorConfig::default()).is_empty());
}

#[test]
fn one_destination_from_every_source() {
    let mut s = Vec::new();
    for src in NODES {
        for dst in NODES {
            let p = if dst == "node1" {
                repeat((3_010.0, 2, Outcome::Ok), 10)
            } else {
                repeat(ok(0.5), 10)
            };
            s.push(series(
                src,
                SourceKind::Host,
                dst,
                &format!("svc-{dst}"),
                "u",
                &p,
            ));
        }
    }
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].scope, "every path to node1");
    assert_eq!(found[0].destination_node.as_deref(), Some("node1"));
    // Its paths are of both kinds, from three sources, to one target.
    assert_eq!(
        (found[0].path, found[0].source_node.as_deref()),
        (None, None)
    );
    assert_eq!(found[0].targets, ["svc-node1"]);
    assert_eq!(found[0].likely_causes[0].id, CauseId::SynDroppedOnPath);

    // The destination's own same-node path clean: every cross-node path to
    // it is the scope, not one finding per pair.
    for c in s.iter_mut().filter(|c| c.dims.path == PathKind::SameNode) {
        for p in &mut c.samples {
            p.syn_retransmits = 0;
            p.phases.connect = Some(Duration::from_micros(500));
        }
    }
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].scope, "every cross-node path to node1");
    assert_eq!(found[0].scope_key.id(), "destination-path/node1/cross-node");
}

#[test]
fn connect_timeouts_after_lost_syns_are_ladder_give_ups() {
    let mut p = repeat((0.0, 6, Outcome::ConnectTimeout), 3);
    p.extend(repeat(ok(0.5), 7));
    let s = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "no separate failure finding: {found:#?}");
    assert!(
        found[0].evidence[0].contains("3 gave up after every SYN was lost"),
        "{:?}",
        found[0].evidence
    );
}

#[test]
fn windows_nodes_follow_the_windows_ladder() {
    let s = vec![series(
        "win1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat((9_100.0, 2, Outcome::Ok), 5),
    )];
    let mut f = facts("win1", "Windows 10.0.20348", None, 0);
    f.overlays.clear();
    let found = detect(&s, &[f], &DetectorConfig::default());
    assert_eq!(
        found[0].rungs,
        [RungCount {
            retransmits: 2,
            seconds: 9.0,
            count: 5
        }]
    );
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("TCP_INFO agrees"))
    );
}

#[test]
fn the_evidence_quotes_the_configured_background_loss() {
    let (s, f) = incident();
    let cfg = DetectorConfig {
        background_syn_loss: 2e-3,
        ..DetectorConfig::default()
    };
    let found = detect(&s, &f, &cfg);
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("against a background SYN loss of 2e-3 per probe")),
        "{:?}",
        found[0].evidence
    );
}

#[test]
fn one_lost_syn_in_a_small_cell_raises_nothing() {
    // One probe in five on the 1 s rung: p is small for so few probes, but a
    // single unlucky SYN is never a finding (min_rung_probes = 2).
    let mut probes = repeat(ok(0.5), 4);
    probes.push((1000.6, 1, Outcome::Ok));
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "http://10.96.0.12/",
        &probes,
    )];
    assert!(detect(&s, &[], &DetectorConfig::default()).is_empty());
    // Two of five are a finding: the gate is the count, not the share.
    probes[0] = (1000.7, 1, Outcome::Ok);
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "http://10.96.0.12/",
        &probes,
    )];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, FindingKind::SynRetransmitLadder);
}

#[test]
fn a_connect_timeout_without_a_lost_syn_is_a_failure_not_a_give_up() {
    // A connect budget shorter than the first RTO: nothing was retransmitted.
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat((0.0, 0, Outcome::ConnectTimeout), 20),
    )];
    let found = detect(&s, &[], &DetectorConfig::default());
    let kinds: Vec<FindingKind> = found.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::ProbeFailures], "{found:#?}");
    assert_eq!(found[0].share, 1.0);
    assert!(
        found[0].evidence[0].contains("20 connect-timeout"),
        "{:?}",
        found[0].evidence
    );
}

#[test]
fn probes_timed_like_a_rung_without_a_lost_syn_are_counted_and_said() {
    // 3 probes lost a SYN; 4 waited a second with none lost; the rest fast.
    let mut p = repeat((1_000.6, 1, Outcome::Ok), 3);
    p.extend(repeat((1_000.7, 0, Outcome::Ok), 4));
    p.extend(repeat(ok(0.5), 13));
    let s = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("4 probes were timed like a rung but the kernel saw no SYN")),
        "{:#?}",
        found[0].evidence
    );
}

#[test]
fn give_ups_count_in_the_rung_shape() {
    let mut p = repeat((0.0, 6, Outcome::ConnectTimeout), 3);
    p.extend(repeat(ok(0.5), 7));
    let s = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("the lost SYNs sit on one rung")),
        "{:#?}",
        found[0].evidence
    );
}

#[test]
fn a_ladders_examples_are_probes_that_lost_syns() {
    let mut p = repeat(ok(0.5), 5);
    p.extend(repeat((7_010.0, 3, Outcome::Ok), 5));
    let mut s = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    // Healthy probes are traced too (the sampling ratio keeps some), and
    // here they come first.
    for (i, x) in s[0].samples.iter_mut().enumerate() {
        x.trace.get_or_insert(crate::model::TraceRef {
            trace_id: format!("healthy-{i}"),
            span_id: "s".into(),
        });
    }
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found[0].kind, FindingKind::SynRetransmitLadder);
    let ids: Vec<&str> = found[0]
        .examples
        .iter()
        .map(|t| t.trace_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| !i.starts_with("healthy")), "{ids:?}");
}
