//! The other finding kinds: DNS timeouts, MTU black holes, failures.

use super::*;

#[test]
fn dns_timeouts_name_the_conntrack_race_only_for_parallel_queries_with_insert_failures() {
    let lookups = |url: &str| {
        vec![series_dns(
            "node1",
            SourceKind::Pod,
            "node2",
            "t",
            url,
            &repeat(ok(0.5), 5),
            Some(5_003.0),
        )]
    };
    let mut f = facts("node1", "5.4.0", None, 0);
    f.rises.conntrack_insert_failed = Some(12);
    let parallel = lookups("dns://10.96.0.10/a.b?parallel=1");
    let found = detect(
        &parallel,
        std::slice::from_ref(&f),
        &DetectorConfig::default(),
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, FindingKind::DnsTimeoutLadder);
    let c = &found[0].likely_causes[0];
    assert_eq!(c.id, CauseId::ConntrackDnsRace);
    assert!(c.missing.is_empty() && c.remediation[0].contains("single-request-reopen"));
    // One query at a time: the race cannot happen, whatever the counter.
    let single = detect(
        &lookups("dns://10.96.0.10/a.b"),
        std::slice::from_ref(&f),
        &DetectorConfig::default(),
    );
    assert!(
        single[0]
            .likely_causes
            .iter()
            .all(|c| c.id != CauseId::ConntrackDnsRace),
        "{single:#?}"
    );
    assert_eq!(single[0].likely_causes[0].id, CauseId::DnsPathLoss);
    // Parallel, but insert_failed did not rise: lost on the path.
    f.rises.conntrack_insert_failed = Some(0);
    let quiet = detect(&parallel, &[f], &DetectorConfig::default());
    assert_eq!(quiet[0].likely_causes[0].id, CauseId::DnsPathLoss);
}

#[test]
fn large_bodies_failing_alone_are_a_pmtu_black_hole() {
    let s = vec![
        series(
            "node1",
            SourceKind::Host,
            "node2",
            "svc-node2",
            "http://10.96.0.12/",
            &repeat(ok(0.5), 5),
        ),
        series(
            "node1",
            SourceKind::Host,
            "node2",
            "svc-node2-64k",
            "http://10.96.0.12/bytes/65536",
            &repeat((0.5, 0, Outcome::TotalTimeout), 5),
        ),
    ];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(
        found.len(),
        1,
        "the failures are explained by the PMTU finding: {found:#?}"
    );
    assert_eq!(found[0].kind, FindingKind::PmtuBlackhole);
    assert_eq!(found[0].likely_causes[0].id, CauseId::OverlayPmtuBlackhole);
}

#[test]
fn other_failures_are_reported_with_what_they_mean() {
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat((0.0, 0, Outcome::Refused), 3),
    )];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found[0].kind, FindingKind::ProbeFailures);
    assert!(found[0].evidence.iter().any(|e| e.starts_with("refused: ")));
}

#[test]
fn a_large_body_is_known_from_what_was_measured_not_the_url() {
    // The black hole ate every response, so no probe in the window measured
    // a body; the series had measured 64 KiB before it opened.
    let small = series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "http://10.96.0.12/",
        &repeat(ok(0.5), 5),
    );
    let mut big = series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc-node2-big",
        "http://10.96.0.12/large",
        &repeat((0.5, 0, Outcome::TotalTimeout), 5),
    );
    let cfg = DetectorConfig::default();
    let kinds = |s: &[Series]| -> Vec<FindingKind> {
        detect(s, &[], &cfg).into_iter().map(|f| f.kind).collect()
    };
    assert_eq!(
        kinds(&[small.clone(), big.clone()]),
        [FindingKind::ProbeFailures],
        "nothing says the body is large"
    );
    big.body_bytes = 65_536;
    assert_eq!(kinds(&[small, big]), [FindingKind::PmtuBlackhole]);
}

/// Failures at a small share on every source's paths to one node are one
/// pattern, whatever the share: the column, not one source's stale rules.
#[test]
fn small_failures_alike_from_every_source_are_a_column_not_a_row() {
    let mut probes = repeat(ok(0.5), 18);
    probes.extend(repeat((0.0, 0, Outcome::Refused), 2));
    // The straight paths to node1's pod are clean: the Service-only check
    // alone would favour stale rules on each source.
    let s: Vec<Series> = ["node2", "node3"]
        .iter()
        .flat_map(|src| {
            [
                series(src, SourceKind::Host, "node1", "node/node1", "u", &probes),
                series(
                    src,
                    SourceKind::Host,
                    "node1",
                    "pod/node1",
                    "u",
                    &repeat(ok(0.5), 20),
                ),
            ]
        })
        .collect();
    let found = detect(&s, &[], &DetectorConfig::default());
    assert!(!found.is_empty());
    for f in &found {
        assert_eq!(f.kind, FindingKind::ProbeFailures, "{f:#?}");
        assert!(
            f.likely_causes
                .iter()
                .all(|c| c.id != CauseId::StaleProxyRules),
            "every source fails alike: no row: {f:#?}"
        );
    }
}
