//! The seed's incident, judged whole and check by check: the checksum bug
//! named first with its evidence, and what rules it out.

use super::*;

#[test]
fn the_incident_is_one_cluster_wide_finding_naming_the_checksum_bug() {
    let (s, f) = incident();
    let found = detect(&s, &f, &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    let x = &found[0];
    assert_eq!(x.kind, FindingKind::SynRetransmitLadder);
    assert_eq!(
        x.scope,
        "every cross-node path from the host network of 3 nodes"
    );
    assert_eq!(
        (x.path, x.source_kind, x.source_node.as_deref()),
        (Some(PathKind::CrossNode), Some(SourceKind::Host), None)
    );
    assert_eq!(
        x.rungs,
        [RungCount {
            retransmits: 6,
            seconds: 63.0,
            count: 120
        }]
    );
    assert_eq!((x.samples, x.share), (120, 1.0));
    assert_eq!(x.pairs.len(), 6);
    assert!(x.confidence > 0.9, "{}", x.confidence);
    assert!(
        x.evidence.iter().any(|e| e.starts_with("TCP_INFO agrees")),
        "{:?}",
        x.evidence
    );
    let cause = &x.likely_causes[0];
    assert_eq!(cause.id, CauseId::VxlanChecksumOffload);
    assert!(cause.missing.is_empty(), "{cause:#?}");
    assert_eq!(
        cause.remediation[0],
        "ethtool --offload vxlan.calico rx off tx off   (on every node; immediate, not persistent)"
    );
    assert!(
        x.headline().contains("63 s (6 SYNs lost) x120"),
        "{}",
        x.headline()
    );
    assert_eq!(x.examples.len(), 3, "example traces of rung probes");
}

#[test]
fn a_fixed_kernel_and_no_checksum_errors_are_said_to_be_missing() {
    let (s, _) = incident();
    let f: Vec<NodeFacts> = NODES
        .iter()
        .map(|n| facts(n, "6.1.0-18-amd64", Some(0), 0))
        .collect();
    let found = detect(&s, &f, &DetectorConfig::default());
    let cause = found[0]
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::VxlanChecksumOffload)
        .unwrap();
    assert!(
        cause.missing.iter().any(|m| m.contains("UdpInCsumErrors")),
        "{cause:#?}"
    );
    assert!(
        cause.missing.iter().any(|m| m.contains("predates the fix")),
        "{cause:#?}"
    );
    assert!(cause.score < 0.9);
}

#[test]
fn kernels_with_the_checksum_fix() {
    assert!(!has_checksum_fix((3, 10, 0)));
    assert!(!has_checksum_fix((5, 4, 40)) && has_checksum_fix((5, 4, 41)));
    assert!(has_checksum_fix((5, 7, 0)) && has_checksum_fix((6, 1, 0)));
    assert!(!has_checksum_fix((4, 19, 122)) && has_checksum_fix((4, 19, 123)));
}

/// Every check of the incident's evidence, as judged: all nine of the
/// checksum cause's present, and the drop cause's one present, three
/// missing. A check that stops reading its evidence moves a line.
#[test]
fn the_incident_is_judged_check_by_check() {
    let (s, f) = incident();
    let found = detect(&s, &f, &DetectorConfig::default());
    let causes = &found[0].likely_causes;
    let ids: Vec<CauseId> = causes.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [CauseId::VxlanChecksumOffload, CauseId::SynDroppedOnPath]
    );
    let vxlan = &causes[0];
    // No straight path to a pod was probed: whether only the Service
    // paths are hit is open, and weighs half.
    assert_eq!(vxlan.score, 0.94);
    assert_eq!(vxlan.present.len(), 9, "{vxlan:#?}");
    assert!(vxlan.missing.is_empty(), "{vxlan:#?}");
    assert_eq!(
        vxlan.unknown,
        ["paths through a Service are hit, the straight paths to the same pods are clean"]
    );
    let drop = &causes[1];
    assert_eq!(
        drop.present,
        ["the hit probes lost the same number of SYNs"]
    );
    let missing: Vec<&str> = drop
        .missing
        .iter()
        .map(|m| m.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .map(|m| match m.as_str() {
            "the rung is" => "nat",
            "every hit path" => "one destination",
            "probes sit on" => "early",
            _ => "other",
        })
        .collect();
    assert_eq!(missing, ["nat", "one destination", "early"]);
    assert_eq!(drop.score, 0.29);
}

/// The seed as a cluster's discovery names it: each node's Service
/// (`node/`) on the 63 s rung cross-node, the straight paths to the same
/// pods (`pod/`) clean, as curl to the pod IP was in the incident.
#[test]
fn the_incident_through_services_with_clean_pod_paths_is_placed_on_the_service_path() {
    let (mut s, f) = incident();
    for w in &mut s {
        w.dims.target = format!("node/{}", w.dims.destination_or_unknown()).into();
    }
    for src in NODES {
        for dst in NODES {
            s.push(series(
                src,
                SourceKind::Host,
                dst,
                &format!("pod/{dst}"),
                "http://10.244.0.2/",
                &repeat(ok(0.6), 20),
            ));
        }
    }
    let found = detect(&s, &f, &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    let x = &found[0];
    assert_eq!(
        x.scope,
        "every cross-node path through a Service from the host network of 3 nodes"
    );
    assert_eq!(x.locus, Locus::Network);
    let vxlan = &x.likely_causes[0];
    assert_eq!(vxlan.id, CauseId::VxlanChecksumOffload);
    assert_eq!(vxlan.score, 1.0, "{vxlan:#?}");
    assert!(
        vxlan
            .present
            .iter()
            .any(|p| p.starts_with("paths through a Service are hit"))
    );
}

#[test]
fn same_node_paths_hit_too_rule_the_checksum_bug_out() {
    let (mut s, f) = incident();
    for c in s
        .iter_mut()
        .filter(|c| c.dims.source_kind == SourceKind::Host && c.dims.path == PathKind::SameNode)
    {
        for p in &mut c.samples {
            p.syn_retransmits = 6;
            p.phases.connect = Some(Duration::from_secs_f64(64.4));
        }
    }
    let found = detect(&s, &f, &DetectorConfig::default());
    assert!(!found.is_empty());
    for x in &found {
        assert!(
            x.likely_causes
                .iter()
                .all(|c| c.id != CauseId::VxlanChecksumOffload),
            "a bug of the overlay cannot hit same-node paths: {x:#?}"
        );
    }
}

#[test]
fn a_rehashing_kernel_predicts_the_one_second_escape_without_conntrack_read() {
    // txrehash = 1, and no conntrack module loaded (no UDP timeout to read).
    let mut s = Vec::new();
    for src in NODES {
        for dst in NODES.iter().filter(|d| **d != src) {
            s.push(series(
                src,
                SourceKind::Host,
                dst,
                &format!("svc-{dst}"),
                "u",
                &repeat((1_000.6, 1, Outcome::Ok), 10),
            ));
        }
        s.push(series(
            src,
            SourceKind::Host,
            src,
            &format!("svc-{src}"),
            "u",
            &repeat(ok(0.5), 10),
        ));
    }
    let f: Vec<NodeFacts> = NODES
        .iter()
        .map(|n| NodeFacts {
            txrehash: Some(1),
            conntrack_udp_timeout: None,
            ..facts(n, "6.1.0", None, 3)
        })
        .collect();
    let found = detect(&s, &f, &DetectorConfig::default());
    let vxlan = found[0]
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::VxlanChecksumOffload)
        .unwrap();
    assert!(
        vxlan
            .present
            .iter()
            .any(|p| p.starts_with("probes escape where a NATed UDP flow")),
        "{vxlan:#?}"
    );
}

/// The incident's evidence, line by line; with no checksum errors the
/// counters' lines go, and nothing else changes.
#[test]
fn the_incidents_evidence_is_said_line_by_line() {
    let first = |f: &[NodeFacts]| {
        let (s, _) = incident();
        detect(&s, f, &DetectorConfig::default())[0]
            .evidence
            .iter()
            .map(|e| e.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    let (_, f) = incident();
    let common = [
        "120 of 120 probes",
        "against a background SYN",
        "TCP_INFO agrees: on all",
        "SYN schedule of the",
        "the same sources' other",
        "the lost SYNs sit",
        "the probes escape on",
    ];
    let mut with = common.to_vec();
    with.extend([
        "receiving nodes counted 120",
        "the source node itself",
        "TX checksum offload is",
    ]);
    assert_eq!(first(&f), with);
    let quiet: Vec<NodeFacts> = NODES
        .iter()
        .map(|n| facts(n, "6.1.0-18-amd64", Some(0), 0))
        .collect();
    let mut without = common.to_vec();
    without.push("TX checksum offload is");
    assert_eq!(first(&quiet), without);
    // No overlay offload on: no such line.
    let bare: Vec<NodeFacts> = f
        .iter()
        .map(|x| NodeFacts {
            overlays: vec![],
            ..x.clone()
        })
        .collect();
    assert!(!first(&bare).iter().any(|l| l.starts_with("TX checksum")));
}

/// The confidence's terms: significance, the kernel's agreement with the
/// timing (even odds when no probe connected on a rung), and whether the
/// scope stands out from the same sources' other paths (no other paths:
/// nothing to stand out from).
#[test]
fn confidence_is_made_of_its_terms() {
    let mut p = repeat((0.0, 6, Outcome::ConnectTimeout), 3);
    p.extend(repeat(ok(0.5), 7));
    let give_ups = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    let found = detect(&give_ups, &[], &DetectorConfig::default());
    // 0.5 x 9.92 / 12 + 0.3 x 0.5 + 0.2.
    assert_eq!(found[0].confidence, 0.76);
    assert!(
        !found[0].evidence.iter().any(|e| e.starts_with("TCP_INFO")),
        "no probe connected on a rung: {:?}",
        found[0].evidence
    );
    let rungs = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat((3_010.0, 2, Outcome::Ok), 20),
    )];
    assert_eq!(
        detect(&rungs, &[], &DetectorConfig::default())[0].confidence,
        1.0
    );
    // A ladder its source's other path shares, if too thinly to be one
    // itself (2 of 20 against 1 of 20): the two paths are one finding, the
    // source's cross-node paths, judged pooled (3 of 40, p = 1.9e-6), and
    // with no other paths from node1 there is nothing to stand out from.
    // 0.5 x 5.72 / 12 + 0.3 x 1 + 0.2.
    let mut two = repeat(ok(0.5), 18);
    two.extend(repeat((7_010.0, 3, Outcome::Ok), 2));
    let mut one = repeat(ok(0.5), 19);
    one.push((7_010.0, 3, Outcome::Ok));
    let shared = vec![
        series("node1", SourceKind::Host, "node2", "t2", "u", &two),
        series("node1", SourceKind::Host, "node3", "t3", "u", &one),
    ];
    let found = detect(&shared, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].confidence, 0.74);
    assert_eq!(
        (found[0].source_node.as_deref(), found[0].targets.as_slice()),
        (
            Some("node1"),
            ["t2".to_string(), "t3".to_string()].as_slice()
        )
    );
    let (s, f) = incident();
    let found = detect(&s, &f, &DetectorConfig::default());
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("the same sources' other paths: 0 of 240 probes lost SYNs")),
        "{:?}",
        found[0].evidence
    );
}
