//! Behaviours pinned where mutation testing found them unguarded: a
//! finding kind's name, what a one-cell finding names, severity from
//! confidence, the DNS rule's edges and whose facts it quotes.

use super::*;

#[test]
fn finding_kinds_parse_from_their_names_and_nothing_else() {
    for k in FindingKind::ALL {
        assert_eq!(k.as_str().parse::<FindingKind>(), Ok(k));
    }
    assert!("syn-ladder".parse::<FindingKind>().is_err());
}

#[test]
fn a_finding_on_one_cell_names_its_path_pair_and_target() {
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat((0.0, 0, Outcome::Refused), 3),
    )];
    let f = &detect(&s, &[], &DetectorConfig::default())[0];
    assert_eq!(f.kind, FindingKind::ProbeFailures);
    assert_eq!(f.path, Some(PathKind::CrossNode));
    assert_eq!(f.pairs, [("node1".to_string(), "node2".to_string())]);
    assert_eq!(
        (
            f.source_node.as_deref(),
            f.source_kind,
            f.destination_node.as_deref()
        ),
        (Some("node1"), Some(SourceKind::Host), Some("node2"))
    );
    assert_eq!(f.targets, ["t"]);
}

#[test]
fn a_final_finding_below_0_9_confidence_is_a_warning() {
    // DNS timeouts are judged at 0.8: final, and still WARN.
    let s = vec![series_dns(
        "node1",
        SourceKind::Pod,
        "node2",
        "t",
        "u",
        &repeat(ok(0.5), 5),
        Some(5_003.0),
    )];
    let f = &detect(&s, &[], &DetectorConfig::default())[0];
    assert!(!f.provisional && f.confidence < 0.9);
    assert_eq!(f.severity, Severity::Warn);
    // The incident, final and confident: ERROR.
    let (s, facts) = incident();
    let f = &detect(&s, &facts, &DetectorConfig::default())[0];
    assert!(!f.provisional && f.confidence >= 0.9);
    assert_eq!(f.severity, Severity::Error);
}

#[test]
fn one_slow_lookup_alone_raises_nothing() {
    // One lookup of one on the 5 s timeout: improbable under background
    // loss, but fewer than min_rung_probes.
    let s = vec![series_dns(
        "node1",
        SourceKind::Pod,
        "node2",
        "t",
        "u",
        &[ok(0.5)],
        Some(5_003.0),
    )];
    assert!(detect(&s, &[], &DetectorConfig::default()).is_empty());
}

#[test]
fn dns_timeouts_quote_the_source_nodes_own_conntrack_counter() {
    let s = vec![series_dns(
        "node1",
        SourceKind::Pod,
        "node2",
        "t",
        "u",
        &repeat(ok(0.5), 5),
        Some(5_003.0),
    )];
    let mut mine = facts("node1", "5.4.0", None, 0);
    mine.conntrack_insert_failed = Some(12);
    let mut other = facts("node2", "5.4.0", None, 0);
    other.conntrack_insert_failed = Some(99);
    let f = &detect(&s, &[other, mine], &DetectorConfig::default())[0];
    assert!(
        f.evidence
            .iter()
            .any(|e| e == "conntrack insert_failed = 12 on node1"),
        "{:?}",
        f.evidence
    );
}
