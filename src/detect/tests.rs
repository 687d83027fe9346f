use std::time::{Duration, SystemTime};

use super::causes::has_checksum_fix;
use super::*;
use crate::model::{
    Counters, Dims, Outcome, OverlayDevice, Phases, Sample, SeriesWindow as Series, Target,
};

/// One probe: connect time in ms, SYN retransmits, outcome.
type P = (f64, u32, Outcome);

fn ok(ms: f64) -> P {
    (ms, 0, Outcome::Ok)
}

pub(crate) fn series(
    src: &str,
    kind: SourceKind,
    dst: &str,
    target: &str,
    url: &str,
    probes: &[P],
) -> Series {
    series_dns(src, kind, dst, target, url, probes, None)
}

fn series_dns(
    src: &str,
    kind: SourceKind,
    dst: &str,
    target: &str,
    url: &str,
    probes: &[P],
    dns_ms: Option<f64>,
) -> Series {
    // What the echo declares for `/bytes/N`; the probe measures it.
    let body_bytes = Target::parse(target, url)
        .ok()
        .and_then(|t| t.echo_body_bytes())
        .unwrap_or(0);
    let mut samples = Vec::new();
    for (ms, r, o) in probes {
        let dns = dns_ms.map(|d| Duration::from_secs_f64(d / 1e3));
        let connected = *o != Outcome::ConnectTimeout && *o != Outcome::Refused;
        let connect =
            connected.then(|| dns.unwrap_or_default() + Duration::from_secs_f64(ms / 1e3));
        let phases = Phases {
            dns,
            connect,
            first_byte: connect,
            total: connect.unwrap_or(Duration::from_secs(135)) + Duration::from_micros(300),
        };
        samples.push(Sample {
            prober_lag_ms: None,
            at: SystemTime::UNIX_EPOCH,
            phases,
            outcome: *o,
            syn_retransmits: *r,
            body_bytes: if connected { body_bytes } else { 0 },
            trace: (*r > 0).then(|| crate::model::TraceRef {
                trace_id: format!("{:032x}", samples.len() + 1),
                span_id: format!("{:016x}", samples.len() + 1),
            }),
        });
    }
    let path = if src == dst {
        PathKind::SameNode
    } else {
        PathKind::CrossNode
    };
    Series {
        dims: Dims {
            source_node: src.into(),
            source_kind: kind,
            destination_node: Some(dst.into()),
            target: target.into(),
            path,
        },
        samples,
        body_bytes,
        pending: vec![],
        dns_parallel: crate::model::dns_parallel(url),
    }
}

fn repeat(p: P, n: usize) -> Vec<P> {
    vec![p; n]
}

fn facts(node: &str, kernel: &str, linear: Option<u32>, csum_errors: u64) -> NodeFacts {
    NodeFacts {
        node: node.into(),
        kernel: Some(kernel.into()),
        syn_retries: Some(6),
        syn_linear_timeouts: linear,
        txrehash: Some(0),
        udp_in_csum_errors: Some(csum_errors),
        udp_in_csum_errors_delta: Some(csum_errors),
        conntrack_insert_failed: Some(0),
        conntrack_udp_timeout: Some(30),
        conntrack_udp_timeout_stream: Some(120),
        kube_proxy_ipvs: Some(false),
        overlays: vec![OverlayDevice {
            name: "vxlan.calico".into(),
            tx_checksumming: Some(true),
            tx_checksum_ip_generic: Some(true),
        }],
        counters: Counters::zero(),
        rises: Counters::zero(),
        ..NodeFacts::default()
    }
}

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// The seed incident: host-network cross-node probes on the 63 s rung.
fn incident() -> (Vec<Series>, Vec<NodeFacts>) {
    let mut s = Vec::new();
    for src in NODES {
        for dst in NODES {
            let t = format!("svc-{dst}");
            let host = if src == dst {
                repeat(ok(0.7), 20)
            } else {
                repeat((64_400.0, 6, Outcome::Ok), 20)
            };
            s.push(series(
                src,
                SourceKind::Host,
                dst,
                &t,
                "http://10.96.0.11/",
                &host,
            ));
            s.push(series(
                src,
                SourceKind::Pod,
                dst,
                &t,
                "http://10.96.0.11/",
                &repeat(ok(0.6), 20),
            ));
        }
    }
    let f = NODES
        .iter()
        .map(|n| facts(n, "3.10.0-1160.el7.x86_64", None, 40))
        .collect();
    (s, f)
}

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
fn the_linear_ladder_is_read_from_the_client_kernel() {
    // Two SYNs lost: 2 s with linear timeouts, 3 s classic.
    let mut s = vec![series(
        "node2",
        SourceKind::Host,
        "node1",
        "svc-node1",
        "u",
        &repeat((2_004.0, 2, Outcome::Ok), 10),
    )];
    s.push(series(
        "node2",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "u",
        &repeat(ok(0.5), 10),
    ));
    let linear = [facts("node2", "6.18.0", Some(4), 0)];
    let found = detect(&s, &linear, &DetectorConfig::default());
    assert_eq!(
        found[0].rungs,
        [RungCount {
            retransmits: 2,
            seconds: 2.0,
            count: 10
        }]
    );
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("TCP_INFO agrees"))
    );
    // The same probes judged against the classic ladder: timing and kernel disagree.
    let classic = [facts("node2", "6.18.0", Some(0), 0)];
    let found = detect(&s, &classic, &DetectorConfig::default());
    assert_eq!(found[0].rungs[0].seconds, 3.0, "the kernel's count wins");
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.contains("agree on 0 of 10")),
        "{:?}",
        found[0].evidence
    );
}

#[test]
fn healthy_cases_raise_nothing() {
    let cfg = DetectorConfig::default();
    // Millisecond bimodality: a Service with backends on two nodes.
    let mut mixed: Vec<P> = repeat(ok(0.4), 50);
    mixed.extend(repeat(ok(3.5), 50));
    // One unlucky probe on a healthy network.
    let mut unlucky = repeat(ok(0.6), 199);
    unlucky.push((1_003.0, 1, Outcome::Ok));
    // Jitter up to 200 ms.
    let jitter: Vec<P> = (0..200).map(|i| ok(0.5 + f64::from(i % 200))).collect();
    let s = vec![
        series("node1", SourceKind::Host, "node2", "svc-all", "u", &mixed),
        series(
            "node1",
            SourceKind::Host,
            "node2",
            "svc-node2",
            "u",
            &unlucky,
        ),
        series(
            "node1",
            SourceKind::Host,
            "node3",
            "svc-node3",
            "u",
            &jitter,
        ),
    ];
    let found = detect(&s, &[], &cfg);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn one_probe_in_fifty_on_a_rung_is_found_within_200_probes() {
    let mut probes = repeat(ok(0.6), 196);
    probes.extend(repeat((1_002.0, 1, Outcome::Ok), 4));
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "svc-node2",
        "u",
        &probes,
    )];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].rungs,
        [RungCount {
            retransmits: 1,
            seconds: 1.0,
            count: 4
        }]
    );
    let ids: Vec<&str> = found[0]
        .likely_causes
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids[0], "path-packet-loss", "{ids:?}");
    assert!(
        ids.contains(&"ipvs-conn-reuse") && !ids.contains(&"syn-dropped-on-path"),
        "{ids:?}"
    );
    // Without node facts or same-node paths the checksum bug stays a
    // possibility, ranked below the causes the evidence fits.
    assert_ne!(ids[0], "vxlan-checksum-offload", "{ids:?}");
    let bug = found[0]
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::VxlanChecksumOffload)
        .unwrap();
    assert!(
        bug.unknown
            .iter()
            .any(|u| u.contains("TX checksum offload")),
        "{bug:#?}"
    );
}

#[test]
fn timing_without_kernel_retransmits_is_a_delay_not_a_loss() {
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat(ok(1_050.0), 10),
    )];
    assert!(detect(&s, &[], &DetectorConfig::default()).is_empty());
}

#[test]
fn one_destination_from_every_source() {
    let mut s = Vec::new();
    for src in NODES {
        for dst in NODES {
            let p = if dst == "node1" {
                repeat((3_010.0, 2, Outcome::Ok), 10)
            } else {
                repeat(ok(0.5), 10)
            };
            s.push(series(
                src,
                SourceKind::Host,
                dst,
                &format!("svc-{dst}"),
                "u",
                &p,
            ));
        }
    }
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].scope, "every path to node1");
    assert_eq!(found[0].destination_node.as_deref(), Some("node1"));
    // Its paths are of both kinds, from three sources, to one target.
    assert_eq!(
        (found[0].path, found[0].source_node.as_deref()),
        (None, None)
    );
    assert_eq!(found[0].targets, ["svc-node1"]);
    assert_eq!(found[0].likely_causes[0].id, CauseId::SynDroppedOnPath);

    // The destination's own same-node path clean: every cross-node path to
    // it is the scope, not one finding per pair.
    for c in s.iter_mut().filter(|c| c.dims.path == PathKind::SameNode) {
        for p in &mut c.samples {
            p.syn_retransmits = 0;
            p.phases.connect = Some(Duration::from_micros(500));
        }
    }
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].scope, "every cross-node path to node1");
    assert_eq!(found[0].scope_key.id(), "destination-path/node1/cross-node");
}

#[test]
fn connect_timeouts_after_lost_syns_are_ladder_give_ups() {
    let mut p = repeat((0.0, 6, Outcome::ConnectTimeout), 3);
    p.extend(repeat(ok(0.5), 7));
    let s = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "no separate failure finding: {found:#?}");
    assert!(
        found[0].evidence[0].contains("3 gave up after every SYN was lost"),
        "{:?}",
        found[0].evidence
    );
}

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
fn kernels_with_the_checksum_fix() {
    assert!(!has_checksum_fix((3, 10, 0)));
    assert!(!has_checksum_fix((5, 4, 40)) && has_checksum_fix((5, 4, 41)));
    assert!(has_checksum_fix((5, 7, 0)) && has_checksum_fix((6, 1, 0)));
    assert!(!has_checksum_fix((4, 19, 122)) && has_checksum_fix((4, 19, 123)));
}

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

fn at(s: &mut Series, secs: &[u64]) {
    for (p, t) in s.samples.iter_mut().zip(secs) {
        p.at = SystemTime::UNIX_EPOCH + Duration::from_secs(*t);
    }
}

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

#[test]
fn windows_nodes_follow_the_windows_ladder() {
    let s = vec![series(
        "win1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat((9_100.0, 2, Outcome::Ok), 5),
    )];
    let mut f = facts("win1", "Windows 10.0.20348", None, 0);
    f.overlays.clear();
    let found = detect(&s, &[f], &DetectorConfig::default());
    assert_eq!(
        found[0].rungs,
        [RungCount {
            retransmits: 2,
            seconds: 9.0,
            count: 5
        }]
    );
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("TCP_INFO agrees"))
    );
}

#[test]
fn the_evidence_quotes_the_configured_background_loss() {
    let (s, f) = incident();
    let cfg = DetectorConfig {
        background_syn_loss: 2e-3,
        ..DetectorConfig::default()
    };
    let found = detect(&s, &f, &cfg);
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("against a background SYN loss of 2e-3 per probe")),
        "{:?}",
        found[0].evidence
    );
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

#[test]
fn one_lost_syn_in_a_small_cell_raises_nothing() {
    // One probe in five on the 1 s rung: p is small for so few probes, but a
    // single unlucky SYN is never a finding (min_rung_probes = 2).
    let mut probes = repeat(ok(0.5), 4);
    probes.push((1000.6, 1, Outcome::Ok));
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "http://10.96.0.12/",
        &probes,
    )];
    assert!(detect(&s, &[], &DetectorConfig::default()).is_empty());
    // Two of five are a finding: the gate is the count, not the share.
    probes[0] = (1000.7, 1, Outcome::Ok);
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "http://10.96.0.12/",
        &probes,
    )];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, FindingKind::SynRetransmitLadder);
}

/// The causes' checks at their edges, on hand-built evidence.
mod censored;
mod edges;

mod checks {
    use super::super::causes::rank;
    use super::super::stat::RungShape;
    use super::*;

    fn cause(e: &Evidence, kind: FindingKind, id: CauseId) -> LikelyCause {
        rank(kind, e)
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id} not ranked: {e:#?}"))
    }

    fn has(v: &[String], start: &str) -> bool {
        v.iter().any(|x| x.starts_with(start))
    }

    #[test]
    fn the_first_rungs_are_one_or_two_lost_syns() {
        let at = |k| Evidence {
            dominant_rung: Some(k),
            shape: Some(RungShape::Deterministic),
            ..Evidence::default()
        };
        let ladder = FindingKind::SynRetransmitLadder;
        let early = "probes sit on the first rungs";
        assert!(has(
            &cause(&at(2), ladder, CauseId::SynDroppedOnPath).present,
            early
        ));
        assert!(has(
            &cause(&at(3), ladder, CauseId::SynDroppedOnPath).missing,
            early
        ));
    }

    #[test]
    fn half_the_probes_is_most_not_a_minority() {
        let at = |share| Evidence {
            share,
            dominant_rung: Some(1),
            shape: Some(RungShape::Geometric),
            ..Evidence::default()
        };
        let ladder = FindingKind::SynRetransmitLadder;
        let few = "a minority of probes";
        assert!(has(
            &cause(&at(0.5), ladder, CauseId::PathPacketLoss).missing,
            few
        ));
        assert!(has(
            &cause(&at(0.49), ladder, CauseId::PathPacketLoss).present,
            few
        ));
    }

    #[test]
    fn a_local_checksum_rise_is_evidence_and_no_rise_is_unknown() {
        let with = |n| Evidence {
            cross_node_hit: true,
            same_node_probed: true,
            local_udp_checksum_errors: n,
            ..Evidence::default()
        };
        let ladder = FindingKind::SynRetransmitLadder;
        let local = "the source node's own UdpInCsumErrors rose";
        let c = cause(&with(Some(3)), ladder, CauseId::VxlanChecksumOffload);
        assert!(has(&c.present, local), "{c:#?}");
        for quiet in [Some(0), None] {
            let c = cause(&with(quiet), ladder, CauseId::VxlanChecksumOffload);
            assert!(has(&c.unknown, local) && !has(&c.missing, local), "{c:#?}");
        }
    }

    #[test]
    fn conntrack_insert_failures_count_only_when_they_rose() {
        let with = |n| Evidence {
            dns_rung: true,
            dns_parallel: true,
            source_insert_failed: n,
            ..Evidence::default()
        };
        let dns = FindingKind::DnsTimeoutLadder;
        let failed = "conntrack insert_failed rose";
        assert!(has(
            &cause(&with(Some(0)), dns, CauseId::ConntrackDnsRace).missing,
            failed
        ));
        assert!(has(
            &cause(&with(Some(1)), dns, CauseId::ConntrackDnsRace).present,
            failed
        ));
        // Unknown weighs half: 4 present of 4 + 3 / 2 judged.
        let c = cause(&with(None), dns, CauseId::ConntrackDnsRace);
        assert!(has(&c.unknown, failed));
        assert_eq!(c.score, 0.73);
    }
}

#[test]
fn a_connect_timeout_without_a_lost_syn_is_a_failure_not_a_give_up() {
    // A connect budget shorter than the first RTO: nothing was retransmitted.
    let s = vec![series(
        "node1",
        SourceKind::Host,
        "node2",
        "t",
        "u",
        &repeat((0.0, 0, Outcome::ConnectTimeout), 20),
    )];
    let found = detect(&s, &[], &DetectorConfig::default());
    let kinds: Vec<FindingKind> = found.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::ProbeFailures], "{found:#?}");
    assert_eq!(found[0].share, 1.0);
    assert!(
        found[0].evidence[0].contains("20 connect-timeout"),
        "{:?}",
        found[0].evidence
    );
}

#[test]
fn probes_timed_like_a_rung_without_a_lost_syn_are_counted_and_said() {
    // 3 probes lost a SYN; 4 waited a second with none lost; the rest fast.
    let mut p = repeat((1_000.6, 1, Outcome::Ok), 3);
    p.extend(repeat((1_000.7, 0, Outcome::Ok), 4));
    p.extend(repeat(ok(0.5), 13));
    let s = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("4 probes were timed like a rung but the kernel saw no SYN")),
        "{:#?}",
        found[0].evidence
    );
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

#[test]
fn give_ups_count_in_the_rung_shape() {
    let mut p = repeat((0.0, 6, Outcome::ConnectTimeout), 3);
    p.extend(repeat(ok(0.5), 7));
    let s = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    let found = detect(&s, &[], &DetectorConfig::default());
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("the lost SYNs sit on one rung")),
        "{:#?}",
        found[0].evidence
    );
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

#[test]
fn a_ladders_examples_are_probes_that_lost_syns() {
    let mut p = repeat(ok(0.5), 5);
    p.extend(repeat((7_010.0, 3, Outcome::Ok), 5));
    let mut s = vec![series("node1", SourceKind::Host, "node2", "t", "u", &p)];
    // Healthy probes are traced too (the sampling ratio keeps some), and
    // here they come first.
    for (i, x) in s[0].samples.iter_mut().enumerate() {
        x.trace.get_or_insert(crate::model::TraceRef {
            trace_id: format!("healthy-{i}"),
            span_id: "s".into(),
        });
    }
    let found = detect(&s, &[], &DetectorConfig::default());
    assert_eq!(found[0].kind, FindingKind::SynRetransmitLadder);
    let ids: Vec<&str> = found[0]
        .examples
        .iter()
        .map(|t| t.trace_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| !i.starts_with("healthy")), "{ids:?}");
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
