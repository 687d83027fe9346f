//! The other probe kinds: connect-only TCP and a DNS query over UDP, each
//! feeding the same phases, outcomes and detector.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Behaviour, Server};
use tailprobe::detect::{CauseId, FindingKind};
use tailprobe::model::Target;
use tailprobe::model::{Outcome, SourceKind};
use tailprobe::probe::Prober;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

async fn probe(url: &str) -> tailprobe::model::ProbeResult {
    let prober = Prober::new("n1", SourceKind::Pod);
    let t = Arc::new(
        Target::parse("t", url)
            .unwrap()
            .with_timeout(Duration::from_secs(30)),
    );
    prober.probe(&t, &CancellationToken::new()).await
}

#[tokio::test]
async fn tcp_probes_connect_and_close() {
    let s = Server::start(Behaviour::Hang).await;
    let r = probe(&format!("tcp://{}", s.addr)).await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);
    assert!(r.phases.connect.is_some() && r.phases.first_byte.is_none());
    assert!(r.tcp_info.is_some());
    // The handshake completes in the kernel; the server accepts when polled.
    for _ in 0..100 {
        if s.accepts() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.accepts(), 1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(
        probe(&format!("tcp://127.0.0.1:{port}")).await.outcome,
        Outcome::Refused
    );
}

/// A loopback DNS server: answers with `rcode`, ignoring the first
/// `drop_first` copies of each query it sees.
async fn dns_server(rcode: u8, drop_first: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        let mut per_id = std::collections::HashMap::<u16, usize>::new();
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let k = per_id.entry(id).or_default();
            *k += 1;
            if *k <= drop_first {
                continue;
            }
            let mut answer = buf[..n].to_vec();
            answer[2] |= 0x80;
            answer[3] = 0x80 | rcode;
            let _ = sock.send_to(&answer, peer).await;
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn dns_probes_time_the_query_and_retry_like_glibc() {
    let (addr, _) = dns_server(0, 0).await;
    let r = probe(&format!(
        "dns://{addr}/kubernetes.default.svc.cluster.local"
    ))
    .await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);
    assert!(r.phases.dns.unwrap() < Duration::from_secs(1));
    assert!(r.phases.connect.is_none(), "no TCP connection");

    // The first copy is lost: the answer comes one attempt timeout later.
    let (addr, seen) = dns_server(0, 1).await;
    let r = probe(&format!("dns://{addr}/a.b?timeout=300ms")).await;
    assert_eq!(r.outcome, Outcome::Ok);
    let dns = r.phases.dns.unwrap();
    assert!(
        dns >= Duration::from_millis(300) && dns < Duration::from_millis(600),
        "{dns:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    let (addr, _) = dns_server(3, 0).await;
    let r = probe(&format!("dns://{addr}/nope.invalid")).await;
    assert_eq!(r.outcome, Outcome::DnsError);
    assert!(r.error.unwrap().contains("NXDOMAIN"));

    let (addr, seen) = dns_server(0, 9).await;
    let r = probe(&format!("dns://{addr}/a.b?timeout=100ms&attempts=3")).await;
    assert_eq!(r.outcome, Outcome::TotalTimeout, "{:?}", r.error);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

/// With glibc's 5 s attempt timeout, a lost query lands on the 5 s rung;
/// one query at a time cannot meet conntrack's insert race, so the
/// matrix's detector names the loss on the way to the resolver.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_dns_query_is_a_dns_timeout_finding() {
    let (addr, _) = dns_server(0, 1).await;
    let text = format!(
        "node = \"node1\"\n[matrix]\nspacing = \"0s\"\n[[target]]\nname = \"kube-dns\"\nurl = \"dns://{addr}/kubernetes.default.svc.cluster.local\"\n"
    );
    let loaded = tailprobe::config::parse("c.toml", &text).unwrap();
    let mut opts = tailprobe::matrix::MatrixOptions::from_loaded(&loaded);
    opts.samples = 3;
    let report = tailprobe::matrix::run(&loaded, &opts, &CancellationToken::new())
        .await
        .unwrap();
    let f = report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::DnsTimeoutLadder)
        .expect("a DNS finding");
    assert_eq!(f.samples, 3);
    assert_eq!(f.likely_causes[0].id, CauseId::DnsPathLoss);
    assert!(
        f.likely_causes
            .iter()
            .all(|c| c.id != CauseId::ConntrackDnsRace),
        "{f:#?}"
    );
}
