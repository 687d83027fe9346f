//! Behaviours pinned where mutation testing found them unguarded: a
//! finding kind's name, what a one-cell finding names, severity from
//! confidence, the DNS rule's edges and whose facts it quotes.

use super::*;

/// Gives every sample an exported trace, as a run with OTLP on would.
fn traced(w: &mut SeriesWindow) {
    for (i, p) in w.samples.iter_mut().enumerate() {
        p.trace = Some(crate::model::TraceRef {
            trace_id: format!("{:032x}", i + 1),
            span_id: format!("{:016x}", i + 1),
        });
    }
}

#[test]
fn finding_kinds_parse_from_their_names_and_nothing_else() {
    for k in FindingKind::ALL {
        assert_eq!(k.as_str().parse::<FindingKind>(), Ok(k));
    }
    assert!("syn-ladder".parse::<FindingKind>().is_err());
}

#[test]
fn a_finding_on_one_cell_names_its_path_pair_and_target() {
    let mut one = series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat((0.0, 0, Outcome::Refused), 3),
    );
    traced(&mut one);
    let s = vec![one];
    let f = &detect(&s, &[], &DetectorConfig::default())[0];
    // How many probes it rests on, and the failed ones to open.
    assert_eq!(f.samples, 3);
    assert_eq!(f.examples.len(), 3);
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

#[test]
fn a_pmtu_finding_explains_only_its_own_failures() {
    let cell = |src: &str, kind, target: &str, url: &str, p: P| {
        series(src, kind, "node2", target, url, &repeat(p, 5))
    };
    let s = vec![
        cell(
            "node1",
            SourceKind::Host,
            "svc-node2",
            "http://10.96.0.12/",
            ok(0.5),
        ),
        cell(
            "node1",
            SourceKind::Host,
            "svc-node2-64k",
            "http://10.96.0.12/bytes/65536",
            (0.5, 0, Outcome::TotalTimeout),
        ),
        // The same source, kind and destination, another target.
        cell(
            "node1",
            SourceKind::Host,
            "other",
            "u",
            (0.0, 0, Outcome::Refused),
        ),
        // Another source and kind, the same destination.
        cell(
            "node3",
            SourceKind::Pod,
            "zzz",
            "u",
            (0.0, 0, Outcome::Refused),
        ),
    ];
    let found = detect(&s, &[], &DetectorConfig::default());
    let mut got: Vec<(FindingKind, Vec<String>)> =
        found.iter().map(|f| (f.kind, f.targets.clone())).collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                FindingKind::PmtuBlackhole,
                vec!["svc-node2-64k".to_string()]
            ),
            (FindingKind::ProbeFailures, vec!["other".to_string()]),
            (FindingKind::ProbeFailures, vec!["zzz".to_string()]),
        ]
    );
}

#[test]
fn a_dns_finding_says_where_how_many_and_why() {
    let mut s = series_dns(
        "node1",
        SourceKind::Pod,
        "node2",
        "t",
        "u",
        &repeat(ok(0.5), 5),
        Some(5_003.0),
    );
    traced(&mut s);
    let mut f = facts("node1", "5.4.0", None, 0);
    f.conntrack_insert_failed = Some(12);
    let x = &detect(&[s], &[f], &DetectorConfig::default())[0];
    assert_eq!(x.kind, FindingKind::DnsTimeoutLadder);
    assert_eq!(x.source_node.as_deref(), Some("node1"));
    assert_eq!(
        (x.targets.as_slice(), x.samples),
        (&["t".to_string()][..], 5)
    );
    assert_eq!(
        x.evidence[0],
        "5 of 5 lookups took the resolver's 5 s or 10 s timeout"
    );
    assert_eq!(x.examples.len(), 3);
    let c = &x.likely_causes[0];
    assert!(
        c.present
            .iter()
            .any(|p| p.starts_with("conntrack insert_failed is non-zero")),
        "{c:#?}"
    );
}

#[test]
fn every_failure_outcome_with_a_known_reading_says_it() {
    for o in [
        Outcome::Refused,
        Outcome::Unreachable,
        Outcome::ConnectTimeout,
        Outcome::TotalTimeout,
        Outcome::Reset,
        Outcome::HttpStatus,
        Outcome::DnsError,
        Outcome::DnsTimeout,
    ] {
        let s = vec![series(
            "node1",
            SourceKind::Host,
            "node2",
            "t",
            "u",
            &repeat((0.0, 0, o), 3),
        )];
        let found = detect(&s, &[], &DetectorConfig::default());
        let f = found
            .iter()
            .find(|f| f.kind == FindingKind::ProbeFailures)
            .unwrap_or_else(|| panic!("{o:?}: {found:#?}"));
        assert_eq!(
            f.evidence.len(),
            2,
            "{o:?}: the count and what it means: {f:#?}"
        );
    }
}
