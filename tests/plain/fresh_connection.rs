//! One probe is one new TCP connection, like curl: never a reused one.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Behaviour, Server};
use tailprobe::model::{Outcome, PathKind, SourceKind};
use tailprobe::model::{Target, TargetNode};
use tailprobe::probe::Prober;
use tailprobe::server::echo::{self, EchoIdentity};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn every_probe_opens_a_new_connection() {
    let server = Server::start(Behaviour::ok()).await;
    let prober = Prober::new("n1", SourceKind::Host);
    let target = Arc::new(Target::parse("t", &server.url("/")).unwrap());
    let cancel = CancellationToken::new();
    let mut ports = std::collections::HashSet::new();
    for _ in 0..10 {
        let r = prober.probe(&target, &cancel).await;
        assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);
        ports.insert(r.local_addr.unwrap().port());
        let info = r.tcp_info.expect("TCP_INFO read after connect");
        assert_eq!(info.state, 1, "ESTABLISHED right after connect");
        assert_eq!(r.syn_retransmits, 0);
    }
    assert_eq!(server.accepts(), 10, "one accept per probe");
    assert_eq!(ports.len(), 10, "a new source port per probe");
}

#[tokio::test]
async fn phases_complete_in_order() {
    let server = Server::start(Behaviour::Respond {
        status: 200,
        body: 100_000,
        delay: Duration::from_millis(30),
    })
    .await;
    let prober = Prober::new("n1", SourceKind::Host);
    // A host name, so the DNS phase is timed too.
    let url = format!("http://localhost:{}/", server.addr.port());
    let target = Arc::new(Target::parse("t", &url).unwrap());
    let r = prober.probe(&target, &CancellationToken::new()).await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);
    let p = r.phases;
    let (dns, connect, first) = (p.dns.unwrap(), p.connect.unwrap(), p.first_byte.unwrap());
    assert!(
        dns <= connect && connect <= first && first <= p.total,
        "{p:?}"
    );
    assert!(
        first >= Duration::from_millis(30),
        "the server's delay is in first_byte: {p:?}"
    );
    assert_eq!(r.body_bytes, 100_000);
}

#[tokio::test]
async fn echo_names_its_node_and_pod_and_the_header_sets_the_path() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let id = EchoIdentity {
        node: "node7".into(),
        pod: "echo-abc".into(),
    };
    tokio::spawn(echo::serve(
        listener,
        id,
        echo::Delay::None,
        tailprobe::server::http::Limits::ECHO,
        Default::default(),
        cancel.clone(),
    ));

    let (status, head, body) = common::get(&addr.to_string(), "/").await;
    assert_eq!(status, 200);
    let resp = format!("{head}\n{body}").to_lowercase();
    assert!(resp.contains("x-tailprobe-node: node7"), "{resp}");
    assert!(resp.contains("x-tailprobe-pod: echo-abc"), "{resp}");
    assert!(resp.contains("node=node7 pod=echo-abc"), "{resp}");

    let prober = Prober::new("node7", SourceKind::Pod);
    let unknown = Arc::new(Target::parse("t", &format!("http://{addr}/")).unwrap());
    let r = prober.probe(&unknown, &cancel).await;
    assert_eq!(
        (r.destination_node.as_deref(), r.path),
        (Some("node7"), PathKind::SameNode)
    );
    // From another node, the header is believed once node7 is a node the
    // prober knows (one of its targets names it), and not before.
    let from_elsewhere = Prober::new("node1", SourceKind::Host);
    let r = from_elsewhere.probe(&unknown, &cancel).await;
    assert_eq!((r.path, r.rejected_node_header), (PathKind::Unknown, true));
    let on_node7 = Arc::new(
        Target::parse("n7", &format!("http://{addr}/"))
            .unwrap()
            .with_node(TargetNode::Known("node7".into())),
    );
    from_elsewhere.known_nodes.set("node1", &[on_node7]);
    let r = from_elsewhere.probe(&unknown, &cancel).await;
    assert_eq!(r.path, PathKind::CrossNode);
    // A known destination wins over the header.
    let known = Arc::new(
        Target::parse("k", &format!("http://{addr}/"))
            .unwrap()
            .with_node(TargetNode::Known("node1".into())),
    );
    let r = from_elsewhere.probe(&known, &cancel).await;
    assert_eq!(
        (r.destination_node.as_deref(), r.path),
        (Some("node1"), PathKind::SameNode)
    );

    let big = Arc::new(Target::parse("b", &format!("http://{addr}/bytes/65536")).unwrap());
    let r = prober.probe(&big, &cancel).await;
    assert_eq!((r.outcome, r.body_bytes), (Outcome::Ok, 65536));
    cancel.cancel();
}
