//! IPv6 on the real kernel: a dual-stack lab (ULA underlay, pods, Service
//! VIPs and a second VXLAN device, `vxlan-v6.calico`), probed from host and
//! pod networks in both families; a SYN drop on the IPv6 overlay alone is
//! an IPv6 ladder beside healthy IPv4 cells; an IPv6 address probed from a
//! namespace without IPv6 is an outcome with its reason, never a panic.
//! Loopback probes cover every probe kind over IPv6. The lab tests need
//! root and fail saying so without it; each lab has a unique name and is
//! removed when its test ends, even on a failed assertion.

use crate::common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::lab::{Lab, cells, tailprobe};
use tailprobe::detect::{CauseId, FindingKind};
use tailprobe::model::{Family, Outcome, PathKind, SourceKind, Target, Via};
use tailprobe::probe::Prober;
use tailprobe::wire::report::Cell;
use tokio_util::sync::CancellationToken;

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn fast(c: &Cell) -> bool {
    c.failures == 0
        && c.syn_retransmits == 0
        && c.connect_max_ms.or(c.max_ms).is_some_and(|m| m < 500.0)
}

#[test]
fn a_dual_stack_lab_probes_both_families_and_finds_a_ladder_on_the_ipv6_overlay_as_root() {
    let t0 = std::time::Instant::now();
    let lab = Lab::up(&["--dual-stack", "--syn-linear-timeouts", "0"]);
    let (code, status, _) = tailprobe(&["lab", "status", "--name", &lab.name]);
    assert_eq!(code, 0);
    assert!(
        status.contains("ipv6 services: fd00:96::10") && status.contains("tunnel fd00:245::1"),
        "{status}"
    );

    // Healthy: every Service and pod, once per family, from host and pod
    // networks, same-node and cross-node, fast and without a finding.
    let r = lab.matrix(3);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let all = cells(&r);
    for (src, kind, c) in &all {
        assert!(fast(c), "{src} {kind:?} {c:?}");
        assert_eq!(
            c.dims.family == Family::Ipv6,
            c.url.contains("[fd00:"),
            "a cell's family is its address's: {c:?}"
        );
    }
    let v6 = |kind: SourceKind, path: PathKind, via: Via| {
        all.iter().any(|(_, k, c)| {
            *k == kind
                && c.dims.family == Family::Ipv6
                && c.dims.path == path
                && c.dims.via() == via
        })
    };
    for kind in [SourceKind::Host, SourceKind::Pod] {
        for path in [PathKind::SameNode, PathKind::CrossNode] {
            for via in [Via::Service, Via::Pod] {
                assert!(
                    v6(kind, path, via),
                    "no IPv6 cell {kind:?} {path:?} {via:?}"
                );
            }
        }
    }
    let count = |f: Family| all.iter().filter(|(_, _, c)| c.dims.family == f).count();
    assert!(
        count(Family::Ipv6) >= 6 * 7,
        "every Service and pod per source"
    );
    // The all-nodes IPv6 Service is attributed per probe by the echo.
    assert!(all.iter().any(|(_, _, c)| {
        &*c.dims.target == "svc/lab/all/ipv6" && c.dims.destination_node.is_some()
    }));
    let healthy_at = t0.elapsed();

    // Two SYNs of every flow from node1 lost on node2's IPv6 overlay only.
    lab.run(&[
        "lab", "fault", "drop-syn", "--from", "node1", "--to", "node2", "--count", "2", "--family",
        "ipv6",
    ]);
    let r = lab.matrix(3);
    for (src, kind, c) in cells(&r) {
        let hit = src == "node1"
            && c.dims.destination_node.as_deref() == Some("node2")
            && c.dims.family == Family::Ipv6;
        if hit {
            assert_eq!(c.failures, 0, "{kind:?} {c:?}");
            assert_eq!(c.syn_retransmits, 2 * c.samples, "{kind:?} {c:?}");
            // The classic ladder's 3 s rung, late by timer slack only.
            let p50 = c.connect_p50_ms.unwrap();
            assert!((3000.0..=3540.0).contains(&p50), "{kind:?} {c:?}");
        } else {
            assert!(fast(c), "{src} {kind:?} {c:?}");
        }
    }
    let ladders: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::SynRetransmitLadder)
        .collect();
    assert_eq!(ladders.len(), 1, "{:#?}", r.findings);
    let f = ladders[0];
    assert_eq!(f.scope_key.family, Some(Family::Ipv6), "{f:#?}");
    assert!(f.scope.ends_with("IPv6 only"), "{}", f.scope);
    assert_eq!(
        (f.source_node.as_deref(), f.destination_node.as_deref()),
        (Some("node1"), Some("node2"))
    );
    assert_eq!(f.path, Some(PathKind::CrossNode));
    assert!(f.share >= 0.99, "every IPv6 probe node1 -> node2: {f:#?}");
    assert!(
        f.rungs
            .iter()
            .any(|r| r.retransmits == 2 && r.seconds == 3.0),
        "{f:#?}"
    );
    assert!(
        f.evidence
            .iter()
            .any(|l| l.starts_with("IPv6 only:") && l.contains("0 of ")),
        "the IPv4 twins are named clean: {:#?}",
        f.evidence
    );
    let family_cause = f
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::FamilyPath)
        .expect("the family's own path is a candidate");
    assert!(family_cause.score >= 0.9, "{family_cause:#?}");
    if let Some(loss) = f
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::PathPacketLoss)
    {
        assert!(
            loss.score < family_cause.score / 2.0 + 1e-9
                && loss.missing.iter().any(|m| m.contains("address family")),
            "loss on a link strikes both families: {loss:#?}"
        );
    }
    eprintln!(
        "dual-stack lab: healthy round in {:.1} s, with the IPv6 drop {:.1} s; ladder share {}, rung {:?}",
        healthy_at.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        f.share,
        f.rungs
    );
}

/// A namespace of the test's own with loopback only: IPv6 on (no route
/// beyond `::1`) or turned off.
struct Netns(String);

impl Netns {
    fn ipv4_only(disable_ipv6: bool) -> Self {
        common::require_root("the IPv6 tests");
        let ns = Netns(unique("t6v4only"));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ip(&["netns", "add", &ns.0]);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        if !disable_ipv6 {
            return ns;
        }
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0, "sysctl", "-qw"])
            .arg("net.ipv6.conf.all.disable_ipv6=1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn probe_in(ns: &str, url: &'static str) -> tailprobe::model::ProbeResult {
    tailprobe::lab::netns::run_in(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let t = Arc::new(
                    Target::parse("v6", url)
                        .unwrap()
                        .with_timeout(std::time::Duration::from_secs(5)),
                );
                Prober::new("node1", SourceKind::Host)
                    .probe(&t, &CancellationToken::new())
                    .await
            })
    })
    .unwrap()
}

#[test]
fn an_ipv6_address_from_an_ipv4_only_namespace_is_unreachable_with_its_reason_as_root() {
    let _turn = crate::shared();
    for disable_ipv6 in [false, true] {
        let ns = Netns::ipv4_only(disable_ipv6);
        from_ipv4_only(&ns.0);
    }
}

fn from_ipv4_only(ns: &str) {
    for url in [
        "http://[fd00:96::11]:80/",
        "tcp://[fd00:96::11]:80",
        "dns://[fd00:96::10]:53/kubernetes.default.svc.cluster.local?timeout=200ms&attempts=1",
    ] {
        let r = probe_in(ns, url);
        let error = r.error.clone().unwrap_or_default();
        assert_eq!(tailprobe::model::Dims::of(&r).family, Family::Ipv6, "{url}");
        if url.starts_with("dns://") {
            // A datagram socket has no handshake: no route is its error.
            assert_ne!(r.outcome, Outcome::Ok, "{url}: {r:?}");
            continue;
        }
        assert_eq!(r.outcome, Outcome::Unreachable, "{url}: {error}");
        assert!(
            error.contains("fd00:96::11") && error.contains("no IPv6 route or address"),
            "{url}: {error}"
        );
    }
}

/// Every probe kind over IPv6 loopback, with the family on its series.
#[test]
fn every_probe_kind_works_over_ipv6_loopback() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            panic!("this host has no IPv6 loopback; IPv6 probes need it");
        };
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        let dns_port = common::free_port();
        let dns =
            tailprobe::server::dns::Responder::bind(format!("[::1]:{dns_port}").parse().unwrap())
                .await
                .unwrap();
        tokio::spawn(dns.serve("10.96.0.10".parse().unwrap(), CancellationToken::new()));
        let prober = Prober::new("node1", SourceKind::Host);
        for url in [
            format!("http://[::1]:{port}/"),
            format!("tcp://[::1]:{port}"),
            format!("dns://[::1]:{dns_port}/kubernetes.default.svc.cluster.local?timeout=1s"),
        ] {
            let t = Arc::new(Target::parse("v6", &url).unwrap());
            let r = prober.probe(&t, &CancellationToken::new()).await;
            assert_eq!(r.outcome, Outcome::Ok, "{url}: {r:?}");
            assert_eq!(tailprobe::model::Dims::of(&r).family, Family::Ipv6, "{url}");
        }
        // A host name pinned to a family resolves to that family only.
        let pinned = |f: Family| {
            let t = Target::parse("named", &format!("tcp://localhost:{port}"))
                .unwrap()
                .with_family(f)
                .unwrap();
            Arc::new(t)
        };
        let r = prober
            .probe(&pinned(Family::Ipv6), &CancellationToken::new())
            .await;
        match r.peer_addr {
            // The hosts file names ::1 localhost: the IPv6 listener answers.
            Some(peer) => assert!(peer.is_ipv6() && r.outcome == Outcome::Ok, "{r:?}"),
            None => assert_eq!(
                (r.outcome, r.error.as_deref()),
                (Outcome::DnsError, Some("localhost has no IPv6 address")),
            ),
        }
        let r = prober
            .probe(&pinned(Family::Ipv4), &CancellationToken::new())
            .await;
        assert!(r.peer_addr.is_some_and(|a| a.is_ipv4()), "{r:?}");
        assert_eq!(tailprobe::model::Dims::of(&r).family, Family::Ipv4);
    });
}
