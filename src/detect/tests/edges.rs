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
fn dns_timeouts_quote_the_rise_of_the_source_nodes_own_conntrack_counter() {
    let s = vec![series_dns(
        "node1",
        SourceKind::Pod,
        "node2",
        "t",
        "dns://10.96.0.10/a.b?parallel=1",
        &repeat(ok(0.5), 5),
        Some(5_003.0),
    )];
    let mut mine = facts("node1", "5.4.0", None, 0);
    mine.rises.conntrack_insert_failed = Some(12);
    let mut other = facts("node3", "5.4.0", None, 0);
    other.rises.conntrack_insert_failed = Some(99);
    let f = &detect(&s, &[other, mine], &DetectorConfig::default())[0];
    assert!(
        f.evidence
            .iter()
            .any(|e| e == "conntrack insert_failed rose by 12 on the source over the window"),
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
        "dns://10.96.0.10/a.b?parallel=1",
        &repeat(ok(0.5), 5),
        Some(5_003.0),
    );
    traced(&mut s);
    let mut f = facts("node1", "5.4.0", None, 0);
    f.rises.conntrack_insert_failed = Some(12);
    let x = &detect(&[s], &[f], &DetectorConfig::default())[0];
    assert_eq!(x.kind, FindingKind::DnsTimeoutLadder);
    assert_eq!(x.locus, Locus::Dns);
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
    assert_eq!(c.id, CauseId::ConntrackDnsRace, "{c:#?}");
    assert!(
        c.present
            .iter()
            .any(|p| p.starts_with("conntrack insert_failed rose")),
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

/// A large-body cell whose probes connect at once and then take `body_s`
/// seconds after the first byte, with `outcome`.
fn slow_bodies(src: &str, dst: &str, outcome: Outcome, body_s: u64, n: usize) -> SeriesWindow {
    let mut s = series(
        src,
        SourceKind::Host,
        dst,
        "svc-64k",
        "http://10.96.0.12/bytes/65536",
        &repeat((0.5, 0, outcome), n),
    );
    for p in &mut s.samples {
        p.phases.total = p.phases.first_byte.unwrap() + Duration::from_secs(body_s);
    }
    s
}

fn small_ok(src: &str, kind: SourceKind, dst: &str) -> SeriesWindow {
    series(
        src,
        kind,
        dst,
        "svc",
        "http://10.96.0.12/",
        &repeat(ok(0.5), 5),
    )
}

fn pmtu_kinds(s: &[SeriesWindow]) -> Vec<FindingKind> {
    detect(s, &[], &DetectorConfig::default())
        .into_iter()
        .map(|f| f.kind)
        .collect()
}

#[test]
fn a_completed_probe_whose_body_crawls_is_stalled_and_a_failed_one_is_not() {
    let small = small_ok("node1", SourceKind::Host, "node2");
    // Answered, but the body took 2 s after its first byte: stalled.
    let crawl = slow_bodies("node1", "node2", Outcome::Ok, 2, 5);
    assert_eq!(
        pmtu_kinds(&[small.clone(), crawl]),
        [FindingKind::PmtuBlackhole]
    );
    // Under a second after the first byte: not stalled.
    let quick = slow_bodies("node1", "node2", Outcome::Ok, 0, 5);
    assert!(pmtu_kinds(&[small.clone(), quick]).is_empty());
    // A reset after the first byte is a failure, not a stalled body: the
    // failures rule reports it, whatever its total.
    let reset = slow_bodies("node1", "node2", Outcome::Reset, 2, 5);
    assert_eq!(pmtu_kinds(&[small, reset]), [FindingKind::ProbeFailures]);
}

#[test]
fn a_body_of_exactly_the_large_threshold_is_small() {
    let small = small_ok("node1", SourceKind::Host, "node2");
    let mut edge = slow_bodies("node1", "node2", Outcome::TotalTimeout, 2, 5);
    let at = |w: &mut SeriesWindow, bytes| {
        w.body_bytes = bytes;
        for p in &mut w.samples {
            p.body_bytes = bytes;
        }
    };
    at(&mut edge, crate::detect::cell::LARGE_BODY_BYTES);
    assert_eq!(
        pmtu_kinds(&[small.clone(), edge.clone()]),
        [FindingKind::ProbeFailures]
    );
    at(&mut edge, crate::detect::cell::LARGE_BODY_BYTES + 1);
    assert_eq!(pmtu_kinds(&[small, edge]), [FindingKind::PmtuBlackhole]);
}

#[test]
fn only_small_responses_on_the_same_pair_and_vantage_clear_the_path() {
    let big = || slow_bodies("node1", "node2", Outcome::TotalTimeout, 2, 5);
    for (src, kind, dst) in [
        ("node1", SourceKind::Pod, "node2"),
        ("node3", SourceKind::Host, "node2"),
        ("node1", SourceKind::Host, "node3"),
    ] {
        assert_eq!(
            pmtu_kinds(&[small_ok(src, kind, dst), big()]),
            [FindingKind::ProbeFailures],
            "small responses from {src} {kind:?} to {dst} say nothing of node1 to node2"
        );
    }
    // Small responses on the same path that fail too, or are too few, do
    // not clear it either.
    let mut failing = small_ok("node1", SourceKind::Host, "node2");
    failing.samples[0].outcome = Outcome::Refused;
    let few = series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc",
        "http://10.96.0.12/",
        &repeat(ok(0.5), 1),
    );
    for small in [failing, few] {
        assert!(
            !pmtu_kinds(&[small.clone(), big()]).contains(&FindingKind::PmtuBlackhole),
            "{small:?}"
        );
    }
}

#[test]
fn a_pmtu_finding_says_how_many_stalled_and_where() {
    let small = small_ok("node1", SourceKind::Host, "node2");
    // Three of five stall; two pass.
    let mut big = slow_bodies("node1", "node2", Outcome::Ok, 0, 5);
    for p in &mut big.samples[..3] {
        p.outcome = Outcome::TotalTimeout;
        p.phases.total = Duration::from_secs(10);
    }
    traced(&mut big);
    let found = detect(&[small, big.clone()], &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f.kind, FindingKind::PmtuBlackhole);
    assert_eq!((f.share, f.samples), (0.6, 5));
    assert_eq!(
        f.evidence,
        [
            "3 of 5 probes of svc-64k (65536 byte body) failed or stalled while small responses on the same path passed"
        ]
    );
    // The examples are the failed probes' traces.
    let failed: Vec<_> = big.samples[..3]
        .iter()
        .map(|p| p.trace.clone().unwrap())
        .collect();
    assert_eq!(f.examples, failed);
    let c = &f.likely_causes[0];
    assert_eq!(c.id, CauseId::OverlayPmtuBlackhole);
    let cross = "only cross-node paths are hit, same-node paths are clean";
    assert!(c.present.iter().any(|p| p == cross), "{c:#?}");

    // The same on a same-node path: the cross-node check is missing.
    let small = small_ok("node2", SourceKind::Host, "node2");
    let big = slow_bodies("node2", "node2", Outcome::TotalTimeout, 2, 5);
    let f = &detect(&[small, big], &[], &DetectorConfig::default())[0];
    assert_eq!(f.kind, FindingKind::PmtuBlackhole);
    assert!(
        f.likely_causes[0].missing.iter().any(|p| p == cross),
        "{f:#?}"
    );
}
