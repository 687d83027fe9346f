//! The HTTPS findings: a certificate ending soon, judged against the
//! newest probe; the API server's own probe failing.

use super::*;

fn secure(src: &str, ends_in_days: i64) -> Series {
    let mut s = series(
        src,
        SourceKind::Host,
        "node2",
        "shop",
        "https://10.96.0.30/",
        &std::iter::repeat_n(ok(1.0), 5).collect::<Vec<_>>(),
    );
    // The samples start at the epoch: the newest probe is at 0.
    s.cert_not_after = Some(ends_in_days * 86_400);
    s
}

#[test]
fn a_certificate_is_judged_by_its_earliest_end_against_the_newest_probe() {
    let cfg = DetectorConfig::default();
    assert!(detect(&[secure("node1", 20)], &[], &cfg).is_empty());
    // Two sources: one backend serves a certificate ending in 5 days.
    let f = detect(&[secure("node1", 20), secure("node3", 5)], &[], &cfg);
    assert_eq!(f.len(), 1, "{f:#?}");
    let f = &f[0];
    assert_eq!(f.kind, FindingKind::TlsCertExpiring);
    assert_eq!((f.severity, f.locus), (Severity::Warn, Locus::Backend));
    assert_eq!(f.targets, ["shop"]);
    assert!(f.evidence[0].contains("valid until 1970-01-06"), "{f:#?}");
    assert!(
        f.scope.starts_with("the certificate shop serves"),
        "{}",
        f.scope
    );
    // Ended: an error. A zero warning still says so.
    let cfg0 = DetectorConfig {
        cert_expiry_warning: Duration::ZERO,
        ..DetectorConfig::default()
    };
    let f = &detect(&[secure("node1", -1)], &[], &cfg0)[0];
    assert_eq!(f.severity, Severity::Error);
    assert!(f.evidence[0].contains("ended 1day"), "{:?}", f.evidence);
}

#[test]
fn the_api_servers_failures_are_a_finding_of_their_own() {
    let cfg = DetectorConfig::default();
    let s = vec![series(
        "node1",
        SourceKind::Pod,
        "node2",
        crate::model::API_SERVER_TARGET,
        "https://10.96.0.1:443/readyz",
        &[
            (1.0, 0, Outcome::HttpStatus),
            (1.0, 0, Outcome::HttpStatus),
            ok(1.0),
        ],
    )];
    let f = &detect(&s, &[], &cfg)[0];
    assert_eq!(f.kind, FindingKind::ApiServerUnready);
    assert_eq!(f.locus, Locus::Backend);
    assert!(
        f.evidence.iter().any(|e| e.contains("/readyz?verbose")),
        "{:?}",
        f.evidence
    );
    // Any other target's failures stay probe-failures.
    let s = vec![series(
        "node1",
        SourceKind::Pod,
        "node2",
        "svc/shop/web",
        "http://10.96.0.9/",
        &[(1.0, 0, Outcome::TlsError), ok(1.0)],
    )];
    let f = &detect(&s, &[], &cfg)[0];
    assert_eq!(f.kind, FindingKind::ProbeFailures);
    assert_eq!(f.locus, Locus::Backend, "{}", f.locus_why);
}
