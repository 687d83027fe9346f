//! What the judged probers saw and did not: other paths counted as hit only
//! when they are, and what one prober never probed left unknown.

use super::*;

#[test]
fn two_unlucky_pod_probes_do_not_make_the_pod_network_hit() {
    let (mut s, f) = incident();
    // One pod-network cell where 2 of 20 probes lost a SYN: a ladder of its
    // own, but at a tenth of the host network's rate.
    let mut probes = repeat(ok(0.6), 18);
    probes.extend(repeat((1_000.6, 1, Outcome::Ok), 2));
    s.push(series(
        "node1",
        SourceKind::Pod,
        "node3",
        "svc-node3-64k",
        "http://10.96.0.13/bytes/65536",
        &probes,
    ));
    let found = detect(&s, &f, &DetectorConfig::default());
    let cause = &found[0].likely_causes[0];
    assert_eq!(cause.id, CauseId::VxlanChecksumOffload);
    assert!(
        cause
            .present
            .iter()
            .any(|p| p.starts_with("host-network probes are hit")),
        "{cause:#?}"
    );
    // The pod network hit at the host network's rate is hit.
    let (mut s, f) = incident();
    for c in s
        .iter_mut()
        .filter(|c| c.dims.source_kind == SourceKind::Pod && c.dims.path == PathKind::CrossNode)
    {
        for p in &mut c.samples {
            p.syn_retransmits = 6;
            p.phases.connect = Some(Duration::from_secs_f64(64.4));
        }
    }
    let found = detect(&s, &f, &DetectorConfig::default());
    let cause = found[0]
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::VxlanChecksumOffload)
        .unwrap();
    assert!(
        cause
            .missing
            .iter()
            .any(|p| p.starts_with("host-network probes are hit")),
        "{cause:#?}"
    );
}

#[test]
fn pod_paths_hit_at_the_same_rate_count_even_when_no_pod_cell_is_a_ladder() {
    // Every pod cross-node cell has one probe of two on the 63 s rung: too
    // few for a ladder of its own, but the host network's rate.
    let (mut s, f) = incident();
    for c in s
        .iter_mut()
        .filter(|c| c.dims.source_kind == SourceKind::Pod && c.dims.path == PathKind::CrossNode)
    {
        c.samples.truncate(2);
        c.samples[0].syn_retransmits = 6;
        c.samples[0].phases.connect = Some(Duration::from_secs_f64(64.4));
    }
    let found = detect(&s, &f, &DetectorConfig::default());
    let vxlan = found[0]
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::VxlanChecksumOffload)
        .unwrap();
    assert!(
        !vxlan
            .present
            .iter()
            .any(|p| p.starts_with("host-network probes are hit")),
        "half the pod probes stalled: the pod network is not clean: {vxlan:#?}"
    );
}

/// One host prober probing only other nodes: whether same-node paths or the
/// pod network are clean is not known from here, and is said so.
#[test]
fn what_one_prober_did_not_probe_is_unknown() {
    let (s, f) = incident();
    let mine: Vec<Series> = s
        .into_iter()
        .filter(|c| {
            &*c.dims.source_node == "node1"
                && c.dims.source_kind == SourceKind::Host
                && c.dims.path == PathKind::CrossNode
        })
        .collect();
    let found = detect(&mine, &f[..1], &DetectorConfig::default());
    // One source: its own cross-node paths, never "every path of 1 node".
    assert_eq!(found[0].scope_key.grouping, Grouping::SourceKindPath);
    assert_eq!(found[0].scope, "cross-node paths from node1 (host network)");
    let vxlan = found[0]
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::VxlanChecksumOffload)
        .unwrap();
    for check in [
        "only cross-node paths are hit",
        "host-network probes are hit",
    ] {
        assert!(
            vxlan.unknown.iter().any(|u| u.starts_with(check)),
            "{check}: {vxlan:#?}"
        );
    }
}

#[test]
fn a_ladder_behind_a_service_of_unknown_node_leaves_the_cross_node_check_open() {
    // A Service with backends on several nodes: the echo named no node, so
    // its path is unknown. Same-node paths were probed and are clean, but
    // the hit path could have been same-node too.
    let mut mixed = series(
        "node1",
        SourceKind::Host,
        "node2",
        "mixed",
        "http://10.96.0.20/",
        &repeat((63_050.0, 6, Outcome::Ok), 5),
    );
    mixed.dims.destination_node = None;
    mixed.dims.path = PathKind::Unknown;
    let same = series(
        "node1",
        SourceKind::Host,
        "node1",
        "svc-node1",
        "http://10.96.0.11/",
        &repeat(ok(0.3), 5),
    );
    let found = detect(&[mixed, same], &[], &DetectorConfig::default());
    let f = found
        .iter()
        .find(|f| f.kind == FindingKind::SynRetransmitLadder)
        .unwrap_or_else(|| panic!("{found:#?}"));
    let vxlan = f
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::VxlanChecksumOffload)
        .unwrap_or_else(|| panic!("{f:#?}"));
    let check = "only cross-node paths are hit, same-node paths are clean";
    assert!(vxlan.unknown.iter().any(|u| u == check), "{vxlan:#?}");
}

/// A ladder on paths whose destination is unknown (a Service's stalled
/// probes that named no backend yet) is listed after the same trouble on
/// known paths: the known place says more.
#[test]
fn findings_on_known_paths_come_before_unknown_ones() {
    let ladder = repeat((63_400.0, 6, Outcome::Ok), 20);
    let mut unknown = series("node1", SourceKind::Host, "node2", "svc-all", "u", &ladder);
    unknown.dims.destination_node = None;
    unknown.dims.path = PathKind::Unknown;
    let known = series(
        "node2",
        SourceKind::Host,
        "node3",
        "svc-node3",
        "u",
        &ladder,
    );
    let found = detect(&[unknown, known], &[], &DetectorConfig::default());
    let paths: Vec<Option<PathKind>> = found.iter().map(|f| f.path).collect();
    assert_eq!(
        paths,
        [Some(PathKind::CrossNode), Some(PathKind::Unknown)],
        "{found:#?}"
    );
}
