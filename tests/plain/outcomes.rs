//! Every outcome class, produced for real on loopback.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Behaviour, Server, SynBlackhole};
use tailprobe::model::{Outcome, PathKind, ProbeResult, SourceKind};
use tailprobe::model::{Target, TargetNode};
use tailprobe::probe::Prober;
use tokio_util::sync::CancellationToken;

async fn probe(url: &str, timeout: Duration, max_body: u64) -> ProbeResult {
    let prober = Prober::new("n1", SourceKind::Host);
    let mut t = Target::parse("t", url).unwrap().with_timeout(timeout);
    t.max_body_bytes = max_body;
    prober.probe(&Arc::new(t), &CancellationToken::new()).await
}

#[tokio::test]
async fn ok_and_http_status() {
    let s = Server::start(Behaviour::ok()).await;
    let r = probe(&s.url("/"), Duration::from_secs(5), 1024).await;
    assert_eq!((r.outcome, r.status), (Outcome::Ok, Some(200)));
    let s = Server::start(Behaviour::respond(503, 3)).await;
    let r = probe(&s.url("/"), Duration::from_secs(5), 1024).await;
    assert_eq!((r.outcome, r.status), (Outcome::HttpStatus, Some(503)));
    assert!(r.outcome.completed(), "a 503 is still a complete exchange");
}

#[tokio::test]
async fn a_redirect_is_not_ok_unless_its_code_is_named_valid() {
    let s = Server::start(Behaviour::respond(301, 0)).await;
    let r = probe(&s.url("/"), Duration::from_secs(5), 1024).await;
    assert_eq!((r.outcome, r.status), (Outcome::HttpStatus, Some(301)));
    // As blackbox_exporter's valid_status_codes: named codes end ok.
    let prober = Prober::new("n1", SourceKind::Host);
    let mut t = Target::parse("t", &s.url("/")).unwrap();
    t.valid_status = vec![(200, 299), (301, 301)];
    let r = prober.probe(&Arc::new(t), &CancellationToken::new()).await;
    assert_eq!(r.outcome, Outcome::Ok);
}

#[tokio::test]
async fn refused_when_nothing_listens() {
    // Bind, learn the port, close: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = probe(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_secs(5),
        1024,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Refused, "{:?}", r.error);
    assert!(r.phases.connect.is_none());
}

/// connect() fails at once, before any packet: TCP never connects to the
/// limited broadcast address (the kernel answers ENETUNREACH, nothing is
/// sent). The probe says unreachable, never "connected".
#[tokio::test]
async fn unreachable_when_connect_fails_at_once() {
    let r = probe("http://255.255.255.255:80/", Duration::from_secs(5), 1024).await;
    assert_eq!(r.outcome, Outcome::Unreachable, "{:?}", r.error);
    assert!(r.phases.connect.is_none());
    assert_eq!(r.syn_retransmits, 0);
}

#[tokio::test]
async fn reset_after_the_request() {
    let s = Server::start(Behaviour::Reset).await;
    let r = probe(&s.url("/"), Duration::from_secs(5), 1024).await;
    assert_eq!(r.outcome, Outcome::Reset, "{:?}", r.error);
    assert!(r.phases.connect.is_some());
}

#[tokio::test]
async fn a_body_cut_short_is_reset_or_closed() {
    // A body shorter than its Content-Length is an incomplete response:
    // reset by a RST, closed by a FIN.
    for (reset, want) in [(true, Outcome::Reset), (false, Outcome::Closed)] {
        let s = Server::start(Behaviour::CutBody { reset }).await;
        let r = probe(&s.url("/"), Duration::from_secs(5), 4096).await;
        assert_eq!(r.outcome, want, "{:?}", r.error);
        assert!(r.phases.first_byte.is_some());
        assert_eq!(r.body_bytes, 10);
    }
}

#[tokio::test]
async fn closed_without_a_response() {
    let s = Server::start(Behaviour::Close).await;
    let r = probe(&s.url("/"), Duration::from_secs(5), 1024).await;
    assert_eq!(r.outcome, Outcome::Closed, "{:?}", r.error);
}

#[tokio::test]
async fn total_timeout_when_the_server_is_slower() {
    let s = Server::start(Behaviour::Hang).await;
    let r = probe(&s.url("/"), Duration::from_millis(300), 1024).await;
    assert_eq!(r.outcome, Outcome::TotalTimeout, "{:?}", r.error);
    assert!(r.phases.connect.is_some() && r.phases.first_byte.is_none());
    assert!(r.phases.total >= Duration::from_millis(300));
}

/// Waits until the watching server saw the client close the connection.
async fn closed_within_a_second(closed: &std::sync::atomic::AtomicUsize) {
    for _ in 0..100 {
        if closed.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the connection outlived its probe");
}

#[tokio::test]
async fn a_timed_out_probe_closes_its_connection() {
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = Server::start(Behaviour::Watch(Arc::clone(&closed))).await;
    let r = probe(&s.url("/"), Duration::from_millis(300), 1024).await;
    assert_eq!(r.outcome, Outcome::TotalTimeout);
    closed_within_a_second(&closed).await;
}

/// The probe asks for `Connection: close`, so its connection ends with the
/// exchange even when the server would keep it open.
#[tokio::test]
async fn a_finished_probe_closes_its_connection_even_if_the_server_would_not() {
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = Server::start(Behaviour::AnswerAndWatch(Arc::clone(&closed))).await;
    let r = probe(&s.url("/"), Duration::from_secs(5), 1024).await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);
    closed_within_a_second(&closed).await;
}

#[tokio::test]
async fn body_too_large() {
    let s = Server::start(Behaviour::respond(200, 10_000)).await;
    let r = probe(&s.url("/"), Duration::from_secs(5), 4096).await;
    assert_eq!(r.outcome, Outcome::BodyTooLarge, "{:?}", r.error);
    assert!(r.body_bytes > 4096);
    // A body of exactly the bound is read whole.
    let s = Server::start(Behaviour::respond(200, 4096)).await;
    let r = probe(&s.url("/"), Duration::from_secs(5), 4096).await;
    assert_eq!(
        (r.outcome, r.body_bytes),
        (Outcome::Ok, 4096),
        "{:?}",
        r.error
    );
}

#[tokio::test]
async fn dns_error_for_a_name_that_cannot_resolve() {
    // A label over 63 bytes cannot be encoded as a DNS query, so the resolver
    // fails before anything leaves the machine.
    let url = format!("http://{}.invalid/", "a".repeat(70));
    let r = probe(&url, Duration::from_secs(10), 1024).await;
    assert_eq!(r.outcome, Outcome::DnsError, "{:?}", r.error);
}

/// The kernel drops our SYNs (full accept queue): the probe must learn of the
/// retransmission from TCP_INFO while still connecting, then time out as a
/// connect timeout.
#[tokio::test]
async fn syn_stalled_connect_is_seen_while_pending_then_times_out() {
    let hole = SynBlackhole::new();
    let prober = Prober::new("n1", SourceKind::Host);
    let target = Arc::new(
        Target::parse("t", &format!("http://{}/", hole.addr))
            .unwrap()
            .with_timeout(Duration::from_millis(2500)),
    );
    let live = Arc::clone(&prober.live);
    let watcher = tokio::spawn(async move {
        let mut most = 0;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            most = most.max(live.syn_stalled());
        }
        most
    });
    let r = prober.probe(&target, &CancellationToken::new()).await;
    assert_eq!(r.outcome, Outcome::ConnectTimeout, "{:?}", r.error);
    // Initial RTO 1 s: the first retransmission at about 1 s whatever the
    // schedule; the next at 2 s (linear timeouts) or 3 s (classic).
    assert!(r.syn_retransmits >= 1, "{:?}", r.syn_events);
    assert_eq!(
        r.syn_events.len() as u32,
        r.syn_retransmits,
        "one event per retransmission"
    );
    let first = r.syn_events[0];
    assert!(
        first.at >= Duration::from_secs(1) && first.at < Duration::from_millis(1600),
        "seen within a poll interval of the 1 s retransmission: {first:?}"
    );
    assert_eq!(
        watcher.await.unwrap(),
        1,
        "one probe counted as SYN-stalled while pending"
    );
    assert_eq!(prober.live.syn_stalled(), 0, "and no longer once it ended");
}

#[tokio::test]
async fn cancellation_ends_a_probe_as_cancelled() {
    let s = Server::start(Behaviour::Hang).await;
    let prober = Prober::new("n1", SourceKind::Host);
    let target = Arc::new(Target::parse("t", &s.url("/")).unwrap());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.cancel();
    });
    let r = prober.probe(&target, &cancel).await;
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert!(r.phases.connect.is_some(), "phases that completed are kept");
}

/// Which node answered: the echo's header decides where discovery could
/// not, and only for a node the prober could have meant.
#[tokio::test]
async fn the_answering_node_is_taken_only_where_it_is_expected() {
    async fn answer(node: TargetNode, header: &'static str) -> ProbeResult {
        let s = Server::start(Behaviour::Node(header)).await;
        let prober = Prober::new("node1", SourceKind::Host);
        let mut t = Target::parse("t", &s.url("/")).unwrap();
        t.node = node;
        prober.probe(&Arc::new(t), &CancellationToken::new()).await
    }
    let mixed = || TargetNode::Mixed(vec!["node2".into(), "node3".into()]);
    let cases = [
        // Backends on node2 and node3: node3 answered.
        (mixed(), "node3", Some("node3"), PathKind::CrossNode, false),
        // A node not among the backends: refused, the path unknown.
        (mixed(), "node9", None, PathKind::Unknown, true),
        // Nothing known: a node the prober knows (its own) is taken ...
        (
            TargetNode::Unknown,
            "node1",
            Some("node1"),
            PathKind::SameNode,
            false,
        ),
        // ... one it does not know is not: a target cannot mint series.
        (TargetNode::Unknown, "node9", None, PathKind::Unknown, true),
        // Discovery's answer stands over the header's.
        (
            TargetNode::Known("node2".into()),
            "node3",
            Some("node2"),
            PathKind::CrossNode,
            false,
        ),
    ];
    for (node, header, want, path, rejected) in cases {
        let r = answer(node.clone(), header).await;
        assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);
        assert_eq!(
            (
                r.destination_node.as_deref(),
                r.path,
                r.rejected_node_header
            ),
            (want, path, rejected),
            "{node:?} answered by {header}"
        );
    }
}
