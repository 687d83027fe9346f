//! Slow first contacts (ARP, conntrack warm-up) told from ladders.

use super::*;

#[test]
fn slow_first_contacts_are_not_a_ladder() {
    // Two new peers: the first probes of each waited 1 s, the next ten were fast.
    let mut probes = vec![(1_004.0, 1, Outcome::Ok), (1_010.0, 1, Outcome::Ok)];
    probes.extend(repeat(ok(0.5), 10));
    let times: Vec<u64> = vec![0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    let mut a = series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "u",
        &probes,
    );
    let mut b = series(
        "node1",
        SourceKind::Host,
        "node3",
        "svc-node3",
        "u",
        &probes,
    );
    at(&mut a, &times);
    at(&mut b, &times);
    let found = detect(&[a.clone(), b], &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, FindingKind::FirstContactDelay);
    assert_eq!(found[0].likely_causes[0].id, CauseId::NeighbourResolution);
    // One path alone could be luck: nothing.
    assert!(detect(&[a], &[], &DetectorConfig::default()).is_empty());
}

#[test]
fn a_ladder_that_keeps_going_is_not_a_first_contact() {
    let probes: Vec<P> = (0..12)
        .map(|i| {
            if i % 3 == 0 {
                (1_004.0, 1, Outcome::Ok)
            } else {
                ok(0.5)
            }
        })
        .collect();
    let mut s = series("node1", SourceKind::Host, "node2", "t", "u", &probes);
    at(&mut s, &(0..12).map(|i| i * 10).collect::<Vec<_>>());
    let found = detect(&[s], &[], &DetectorConfig::default());
    assert_eq!(found[0].kind, FindingKind::SynRetransmitLadder);
}

/// On a slow path (a 500 ms base), the first-contact window sits above the
/// base: a connect 0.4 s above it is no first contact, one 3 s above it is.
#[test]
fn first_contact_is_judged_above_the_paths_own_base() {
    let path = |first_ms: f64, dst: &str| {
        let mut p = vec![(first_ms, 0, Outcome::Ok)];
        p.extend(repeat(ok(500.0), 10));
        let mut s = series("node1", SourceKind::Host, dst, dst, "u", &p);
        at(&mut s, &[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        s
    };
    let cfg = DetectorConfig::default();
    assert!(detect(&[path(900.0, "node2"), path(900.0, "node3")], &[], &cfg).is_empty());
    let found = detect(&[path(3_500.0, "node2"), path(3_500.0, "node3")], &[], &cfg);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, FindingKind::FirstContactDelay);
}

/// ARP's retries end within 3.3 s of the first probe, plus slack: a slow
/// probe started 3.3 s in still belongs to the first contact.
#[test]
fn the_first_contact_window_holds_its_slack() {
    let path = |dst: &str| {
        let mut p = vec![(1_500.0, 0, Outcome::Ok), (1_200.0, 0, Outcome::Ok)];
        p.extend(repeat(ok(0.5), 8));
        let mut s = series("node1", SourceKind::Host, dst, dst, "u", &p);
        // Milliseconds: the second slow probe starts 3.4 s after the first.
        for (i, p) in s.samples.iter_mut().enumerate() {
            p.at = SystemTime::UNIX_EPOCH
                + match i {
                    0 => Duration::ZERO,
                    1 => Duration::from_millis(3_400),
                    n => Duration::from_secs(n as u64 * 10),
                };
        }
        s
    };
    let found = detect(
        &[path("node2"), path("node3")],
        &[],
        &DetectorConfig::default(),
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, FindingKind::FirstContactDelay);
}
