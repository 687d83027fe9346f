//! The node's own connections (passive mode): judged apart from the probes, and against them.

use super::*;

#[test]
fn every_rule_says_when_it_judged_real_connections() {
    // The ladder builds its scope from the cells: it names the real
    // connections itself, once.
    let (mut s, f) = incident();
    for x in s.iter_mut() {
        if x.dims.source_kind == SourceKind::Host {
            x.dims.source_kind = SourceKind::PassiveHost;
        }
    }
    let found = detect(&s, &f, &DetectorConfig::default());
    let ladder = found
        .iter()
        .find(|x| x.kind == FindingKind::SynRetransmitLadder)
        .expect("a ladder");
    assert!(ladder.scope_key.passive);
    assert!(
        ladder.scope
            == "real connections on every cross-node path from the host network of 3 nodes",
        "{}",
        ladder.scope
    );
    // First contact builds its scope by hand: it learns it afterwards.
    let mut probes = vec![(1_004.0, 1, Outcome::Ok), (1_010.0, 1, Outcome::Ok)];
    probes.extend(repeat(ok(0.5), 10));
    let times: Vec<u64> = vec![0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    let s: Vec<Series> = ["node2", "node3"]
        .into_iter()
        .map(|dst| {
            let mut x = series("node1", SourceKind::PassiveHost, dst, dst, "u", &probes);
            at(&mut x, &times);
            x
        })
        .collect();
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, FindingKind::FirstContactDelay);
    assert!(found[0].scope_key.passive);
    assert!(
        found[0].scope.starts_with("real connections on ")
            && !found[0].scope.contains("real connections on real"),
        "{}",
        found[0].scope
    );
}

/// The node's own connections are judged apart from probes, in their own
/// words, and each verdict is read against the other.
#[test]
fn real_connections_are_judged_apart_and_against_the_probes() {
    let (mut s, f) = incident();
    // Real traffic from node1: the same ladder from its host network, clean
    // from its pods.
    for dst in ["node2", "node3"] {
        let t = format!("svc-{dst}");
        s.push(series(
            "node1",
            SourceKind::PassiveHost,
            dst,
            &t,
            "http://10.96.0.11/",
            &repeat((65_000.0, 6, Outcome::Ok), 5),
        ));
        s.push(series(
            "node1",
            SourceKind::PassivePod,
            dst,
            &t,
            "http://10.96.0.11/",
            &repeat(ok(0.4), 5),
        ));
    }
    let found = detect(&s, &f, &DetectorConfig::default());
    let (real, probed): (Vec<&Finding>, Vec<&Finding>) = found
        .iter()
        .filter(|x| x.kind == FindingKind::SynRetransmitLadder)
        .partition(|x| x.scope_key.passive);
    assert_eq!(real.len(), 1, "{found:#?}");
    let r = real[0];
    assert_eq!(r.samples, 10, "passive cells only: {r:#?}");
    assert_eq!(r.source_kind, Some(SourceKind::PassiveHost));
    assert!(
        r.scope == "cross-node paths from node1 (real connections from the host network)",
        "{}",
        r.scope
    );
    assert_eq!(r.rungs[0].seconds, 63.0);
    assert_eq!(r.likely_causes[0].id, CauseId::VxlanChecksumOffload);
    assert!(
        r.likely_causes[0]
            .present
            .iter()
            .any(|p| p == "host-network connections are hit, pod-network connections are clean"),
        "{:#?}",
        r.likely_causes[0].present
    );
    // Connections, not probes, until the lines that compare with probes.
    let own = r
        .evidence
        .iter()
        .take_while(|e| !e.starts_with("read from the kernel"));
    assert!(
        !own.clone()
            .any(|e| e.contains("probe") || e.contains("TCP_INFO")),
        "{:#?}",
        r.evidence
    );
    assert_eq!(own.count() + 2, r.evidence.len(), "{:#?}", r.evidence);
    assert!(
        r.evidence
            .iter()
            .any(|e| e
                .starts_with("probes agree: the same syn-retransmit-ladder on 2 of these 2 paths")),
        "{:#?}",
        r.evidence
    );
    // The probes' own finding is unchanged, with the real connections'
    // agreement added: they saw 2 of its 6 paths, both hit.
    let p = probed
        .iter()
        .find(|x| x.source_kind == Some(SourceKind::Host))
        .expect("the probes' finding");
    assert_eq!(p.samples, 120, "{p:#?}");
    assert!(
        p.evidence
            .iter()
            .any(|e| e
                == "real connections agree: the same syn-retransmit-ladder on 2 of these 6 paths"),
        "{:#?}",
        p.evidence
    );
    assert_ne!(r.scope_key.id(), p.scope_key.id());

    // Clean probes on the same paths: the real connections' finding says
    // the probes disagree.
    let (mut s, f) = incident();
    for x in s
        .iter_mut()
        .filter(|x| x.dims.source_kind == SourceKind::Host)
    {
        for p in x.samples.iter_mut() {
            p.syn_retransmits = 0;
            p.phases.connect = Some(Duration::from_micros(700));
        }
    }
    s.push(series(
        "node1",
        SourceKind::PassiveHost,
        "node2",
        "svc-node2",
        "http://10.96.0.11/",
        &repeat((65_000.0, 6, Outcome::Ok), 5),
    ));
    let found = detect(&s, &f, &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("probes disagree: 1 of these 1 paths are clean for probes")),
        "{:#?}",
        found[0].evidence
    );
}
