//! Probes still waiting in SYN_SENT judged as censored observations: a
//! stall that has lost k SYNs counts toward rung k and beyond, under the
//! same significance rule as landed probes.

use std::time::{Duration, SystemTime};

use super::*;
use crate::model::Pending;

/// `n` probes waiting after losing `k` SYNs, started a second apart.
fn stalls(n: u32, k: u32) -> Vec<Pending> {
    (0..n)
        .map(|i| Pending {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(100 + u64::from(i)),
            syn_retransmits: k,
            stalled_after: Duration::from_millis(1_200),
            waited: Duration::from_secs(u64::from(k) * 2),
        })
        .collect()
}

/// node1's own view, seconds after the checksum bug began: its cross-node
/// host-network probes have landed nothing yet, each cell has `waiting`
/// probes stalled after `k` lost SYNs; same-node and pod paths are clean.
fn early_view(waiting: u32, k: u32) -> (Vec<Series>, Vec<NodeFacts>) {
    let mut s = Vec::new();
    for dst in NODES {
        let t = format!("svc-{dst}");
        let mut host = series(
            "node1",
            SourceKind::Host,
            dst,
            &t,
            "http://10.96.0.11/",
            &if dst == "node1" {
                repeat(ok(0.7), 4)
            } else {
                vec![]
            },
        );
        if dst != "node1" {
            host.pending = stalls(waiting, k);
        }
        s.push(host);
        s.push(series(
            "node1",
            SourceKind::Pod,
            dst,
            &t,
            "http://10.96.0.11/",
            &repeat(ok(0.6), 4),
        ));
    }
    (s, vec![facts("node1", "3.10.0-1160.el7.x86_64", None, 0)])
}

#[test]
fn stalls_on_every_cross_node_path_are_a_provisional_finding_naming_the_checksum_bug() {
    let (s, f) = early_view(2, 1);
    let found = detect(&s, &f, &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    let x = &found[0];
    assert_eq!(x.kind, FindingKind::SynRetransmitLadder);
    assert_eq!(x.scope, "cross-node paths from node1 (host network)");
    assert!(x.provisional);
    assert_eq!(x.severity, Severity::Warn, "in progress is never ERROR");
    assert!(x.rungs.is_empty(), "nothing landed: {:?}", x.rungs);
    assert_eq!(
        x.waiting,
        [RungCount {
            retransmits: 1,
            seconds: 1.0,
            count: 4
        }]
    );
    assert_eq!((x.samples, x.share), (4, 1.0));
    assert!(
        x.headline()
            .contains("(in progress: 4 still waiting after losing at least 1 SYN)"),
        "{}",
        x.headline()
    );
    assert!(
        x.evidence[0].contains("4 still waiting after losing at least 1 SYN (past the 1 s rung)"),
        "{:?}",
        x.evidence
    );
    assert!(x.evidence.iter().any(|e| e.starts_with("in progress:")));
    let cause = &x.likely_causes[0];
    assert_eq!(cause.id, CauseId::VxlanChecksumOffload, "{cause:#?}");
    // Where the probes escape is not known yet: unknown, never missing.
    assert!(
        !cause.missing.iter().any(|m| m.contains("rung")),
        "{cause:#?}"
    );
}

#[test]
fn the_provisional_finding_becomes_final_in_place_when_the_probes_land() {
    let (s, f) = early_view(3, 2);
    let early = detect(&s, &f, &DetectorConfig::default());
    // A minute later: the same probes landed on the 63 s rung, newer ones
    // still wait.
    let mut later = s.clone();
    for w in later
        .iter_mut()
        .filter(|w| w.dims.path == PathKind::CrossNode && w.dims.source_kind == SourceKind::Host)
    {
        let landed = series(
            "node1",
            SourceKind::Host,
            w.dims.destination_node.as_deref().unwrap(),
            &w.dims.target,
            "http://10.96.0.11/",
            &repeat((64_400.0, 6, Outcome::Ok), 3),
        );
        w.samples = landed.samples;
        w.pending = stalls(4, 3);
    }
    let fin = detect(&later, &f, &DetectorConfig::default());
    assert_eq!((early.len(), fin.len()), (1, 1), "{fin:#?}");
    assert_eq!(early[0].key(), fin[0].key(), "the same identity");
    assert!(early[0].provisional && !fin[0].provisional);
    assert_eq!(fin[0].severity, Severity::Error);
    assert_eq!(
        fin[0].rungs,
        [RungCount {
            retransmits: 6,
            seconds: 63.0,
            count: 6
        }]
    );
    assert_eq!(fin[0].waiting[0].count, 8);
    assert!(
        !fin[0].headline().contains("in progress"),
        "{}",
        fin[0].headline()
    );
}

#[test]
fn one_unlucky_stall_raises_nothing_early() {
    // One stalled probe in a cell, everything else clean.
    let (mut s, f) = incident_clean();
    s[1].pending = stalls(1, 1);
    assert!(detect(&s, &f, &DetectorConfig::default()).is_empty());
    // A probe that is in flight without a lost SYN says nothing.
    s[1].pending = stalls(3, 0);
    assert!(detect(&s, &f, &DetectorConfig::default()).is_empty());
}

#[test]
fn stalls_beside_many_clean_probes_need_the_same_significance_as_landed_ones() {
    let (mut s, f) = incident_clean();
    // Two stalls among 3,000 clean probes: within background loss.
    s[1].samples = series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "http://10.96.0.11/",
        &repeat(ok(0.7), 3_000),
    )
    .samples;
    s[1].pending = stalls(2, 2);
    assert!(detect(&s, &f, &DetectorConfig::default()).is_empty());
    // The same two probes landed on their rung judge the same.
    s[1].pending.clear();
    let landed = repeat_samples(&s[1], (3_000.7, 2, Outcome::Ok), 2);
    s[1].samples.extend(landed);
    assert!(detect(&s, &f, &DetectorConfig::default()).is_empty());
}

#[test]
fn a_stall_in_progress_is_not_a_first_contact_delay() {
    let (mut s, f) = incident_clean();
    // Slow first contacts, then fast probes: a first-contact delay (on one
    // path only, so no finding at all) ...
    let mut probes = vec![(1_000.7, 1, Outcome::Ok), (1_000.7, 1, Outcome::Ok)];
    probes.extend(repeat(ok(0.7), 8));
    let mut w = series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "http://10.96.0.11/",
        &probes,
    );
    for (i, p) in w.samples.iter_mut().enumerate() {
        p.at = SystemTime::UNIX_EPOCH + Duration::from_secs(if i < 2 { 0 } else { 10 + i as u64 });
    }
    s[1] = w.clone();
    let kinds: Vec<FindingKind> = detect(&s, &f, &DetectorConfig::default())
        .iter()
        .map(|x| x.kind)
        .collect();
    assert_eq!(kinds, []);
    // ... but a probe stalled now is a SYN lost now.
    w.pending = stalls(1, 1);
    s[1] = w;
    let kinds: Vec<FindingKind> = detect(&s, &f, &DetectorConfig::default())
        .iter()
        .map(|x| x.kind)
        .collect();
    assert_eq!(kinds, [FindingKind::SynRetransmitLadder]);
}

#[test]
fn a_stall_already_landed_is_counted_once() {
    let (s, _) = early_view(2, 1);
    let mut w: Vec<Series> = s.into_iter().filter(|w| w.pending.is_empty()).collect();
    let cross = series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "http://10.96.0.11/",
        &[],
    );
    let stalled = stalls(2, 1);
    let mut landed = repeat_samples(&cross, (1_000.7, 1, Outcome::Ok), 1);
    landed[0].at = stalled[0].at;
    let mut with_sample = cross.clone();
    with_sample.samples = landed;
    w.push(with_sample);
    let before = w.len();
    crate::model::attach_pending(
        &mut w,
        stalled
            .into_iter()
            .map(|p| (cross.dims.clone(), p))
            .chain(stalls(1, 1).into_iter().map(|p| {
                let mut d = cross.dims.clone();
                d.destination_node = Some("node3".into());
                d.target = "svc-node3".into();
                (d, p)
            }))
            .collect(),
    );
    assert_eq!(w.len(), before + 1, "a series with only a stall is added");
    let node2 = w.iter().find(|x| x.dims == cross.dims).unwrap();
    assert_eq!(
        (node2.samples.len(), node2.pending.len()),
        (1, 1),
        "the landed probe's stall is dropped"
    );
}

/// node1's clean view: host and pod, same-node and cross-node, 10 probes.
fn incident_clean() -> (Vec<Series>, Vec<NodeFacts>) {
    let mut s = Vec::new();
    for dst in NODES {
        for kind in [SourceKind::Host, SourceKind::Pod] {
            s.push(series(
                "node1",
                kind,
                dst,
                &format!("svc-{dst}"),
                "http://10.96.0.11/",
                &repeat(ok(0.7), 10),
            ));
        }
    }
    (s, vec![facts("node1", "6.1.0-18-amd64", Some(0), 0)])
}

/// `n` samples of probe `p` in the form `w`'s builder makes them.
fn repeat_samples(w: &Series, p: P, n: usize) -> Vec<crate::model::Sample> {
    series(
        &w.dims.source_node,
        w.dims.source_kind,
        w.dims.destination_or_unknown(),
        &w.dims.target,
        "http://10.96.0.11/",
        &repeat(p, n),
    )
    .samples
}
