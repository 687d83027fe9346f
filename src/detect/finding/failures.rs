//! Failures no other finding explains (a PMTU finding explains its own).

use super::{Finding, FindingKind, examples, ratio, round3};
use crate::detect::cell::Cell;
use crate::detect::evidence::{self, Evidence};
use crate::detect::{Locus, causes};
use crate::model::{API_SERVER_TARGET, NodeFacts, Outcome, PathKind, Via};

fn failure_share(c: &Cell) -> f64 {
    ratio(c.failures.values().sum(), c.n)
}

/// What a failing cell's causes are judged on: the matrix pattern of the
/// failures around it and the counters at both ends.
fn judged(cells: &[Cell], c: &Cell, facts: &[NodeFacts]) -> Evidence {
    let d = &c.w.dims;
    let dest = d.destination_node.as_deref();
    // Another cell fails alike when it fails at half this cell's share or
    // more: a 10 % failure here and 10 % there are one pattern, whatever
    // the share.
    let share = failure_share(c);
    let failing = |o: &Cell| failure_share(o) > 0.0 && failure_share(o) * 2.0 >= share;
    let to_dest: Vec<&Cell> = cells
        .iter()
        .filter(|o| dest.is_some() && o.w.dims.destination_node.as_deref() == dest)
        .collect();
    let from: std::collections::BTreeSet<&str> =
        to_dest.iter().map(|o| &*o.w.dims.source_node).collect();
    let others: Vec<&&Cell> = to_dest
        .iter()
        .filter(|o| o.w.dims.source_node != d.source_node)
        .collect();
    let pod_ip: Vec<&Cell> = cells
        .iter()
        .filter(|o| {
            o.w.dims.source_node == d.source_node
                && o.w.dims.source_kind == d.source_kind
                && o.w.dims.via() == Via::Pod
                && o.w.dims.destination_node.as_deref() == dest
        })
        .collect();
    let src_facts: Vec<&NodeFacts> = facts.iter().filter(|f| *f.node == *d.source_node).collect();
    let dst_facts: Vec<&NodeFacts> = facts
        .iter()
        .filter(|f| dest.is_some_and(|x| f.node == x))
        .collect();
    let mut e = Evidence {
        column: dest.map(|_| from.len() >= 2 && to_dest.iter().all(|o| failing(o))),
        row: (!others.is_empty()).then(|| others.iter().all(|o| !failing(o))),
        one_destination: dest.map(|_| true),
        same_node_hit: d.path == PathKind::SameNode
            || to_dest
                .iter()
                .any(|o| o.w.dims.path == PathKind::SameNode && failing(o)),
        same_node_probed: to_dest.iter().any(|o| o.w.dims.path == PathKind::SameNode),
        cross_node_hit: d.path == PathKind::CrossNode,
        service_hit: d.via() == Via::Service,
        pod_ip_hit: pod_ip.iter().any(|o| failing(o)),
        pod_ip_probed: !pod_ip.is_empty(),
        share: ratio(c.failures.values().sum(), c.n),
        ..Evidence::default()
    };
    evidence::counters(&mut e, &src_facts, &dst_facts);
    e
}

pub fn findings(cells: &[Cell], facts: &[NodeFacts], pmtu: &[Finding]) -> Vec<Finding> {
    let explained = |c: &Cell| {
        let d = &c.w.dims;
        pmtu.iter().any(|f| {
            f.targets.iter().any(|t| **t == *d.target)
                && f.source_node.as_deref() == Some(&*d.source_node)
                && f.source_kind == Some(d.source_kind)
                && f.destination_node.as_deref() == d.destination_node.as_deref()
        })
    };
    cells
        .iter()
        .filter(|c| !c.failures.is_empty() && !explained(c))
        .map(|c| {
            let failed: u64 = c.failures.values().sum();
            let outcomes: Vec<String> = c
                .failures
                .iter()
                .map(|(o, n)| format!("{n} {}", o.as_str()))
                .collect();
            let most = c
                .failures
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(o, _)| *o)
                .unwrap_or(Outcome::Error);
            let (locus, why) = placed(most);
            let likely_causes = causes::rank(FindingKind::ProbeFailures, &judged(cells, c, facts))
                .into_iter()
                // Failures name a cause only when its own evidence holds:
                // a pattern alone is not enough to leave the outcome's word.
                .filter(|cause| cause.score >= 0.6)
                .collect::<Vec<_>>();
            let (locus, why) = match likely_causes.first() {
                Some(cause) => (
                    causes::locus_of(cause.id),
                    format!("{}, the likeliest cause", cause.title),
                ),
                None => (locus, why.to_string()),
            };
            // The API server's own check is its own finding: every agent
            // and controller on the node depends on it.
            let api = &*c.w.dims.target == API_SERVER_TARGET;
            let kind = if api {
                FindingKind::ApiServerUnready
            } else {
                FindingKind::ProbeFailures
            };
            Finding {
                likely_causes,
                locus,
                locus_why: why,
                share: round3(ratio(failed, c.n)),
                samples: c.n,
                evidence: std::iter::once(format!(
                    "{failed} of {} probes failed: {}",
                    c.n,
                    outcomes.join(", ")
                ))
                .chain(
                    c.failures
                        .keys()
                        .filter_map(|o| outcome_hint(*o))
                        .map(str::to_string),
                )
                .chain(api.then(|| {
                    "the API server's readiness through the kubernetes Service failed: kubectl get --raw='/readyz?verbose' names the failing check; kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes lists the servers the VIP leads to".to_string()
                }))
                .collect(),
                examples: examples(&[c], |p| !p.outcome.is_ok()),
                ..Finding::of_cell(kind, c)
            }
            .with_confidence(1.0)
        })
        .collect()
}

/// Where the most frequent failure puts the trouble.
fn placed(o: Outcome) -> (Locus, &'static str) {
    match o {
        Outcome::Refused
        | Outcome::Reset
        | Outcome::HttpStatus
        | Outcome::TotalTimeout
        | Outcome::BodyTooLarge
        | Outcome::Closed
        | Outcome::ProtocolError => (
            Locus::Backend,
            "the connection was answered or made; what failed came from the destination's side",
        ),
        Outcome::TlsError => (
            Locus::Backend,
            "the connection was made and the server's TLS refused the handshake: its certificate or its TLS setup",
        ),
        Outcome::TlsTimeout => (
            Locus::Network,
            "the connection was made but the handshake's large flights (the certificate chain) never came: large packets lost on the path",
        ),
        Outcome::ConnectTimeout | Outcome::Unreachable => (
            Locus::Network,
            "no connection was made: the packets did not get there or back",
        ),
        Outcome::DnsError | Outcome::DnsTimeout => {
            (Locus::Dns, "the name lookup failed before any connection")
        }
        _ => (Locus::Unknown, "the failures alone do not say where"),
    }
}

fn outcome_hint(o: Outcome) -> Option<&'static str> {
    Some(match o {
        Outcome::Refused => {
            "refused: the SYN reached a host where nothing listens (no ready backend, wrong port, or a REJECT rule)"
        }
        Outcome::Unreachable => "unreachable: no route, or the neighbour never answered ARP",
        Outcome::ConnectTimeout => {
            "connect timeout without SYN retransmissions seen: the deadline is shorter than the first retransmission"
        }
        Outcome::TotalTimeout => {
            "connected but no complete response in time: a slow or stuck backend, or large packets lost on the path"
        }
        Outcome::Reset => {
            "reset after connecting: the backend or a middlebox aborted the connection"
        }
        Outcome::HttpStatus => "the backend answered with a non-2xx status",
        Outcome::DnsError => "the name did not resolve",
        Outcome::TlsError => {
            "tls-error: the handshake was refused; the probe's error names why (an untrusted, expired or misnamed certificate, or a client certificate asked for)"
        }
        Outcome::TlsTimeout => {
            "tls-timeout: connected, but the handshake stalled: the certificate's flight is the first full-size packet, so an MTU black hole shows here first; else a server that accepts and never answers"
        }
        Outcome::DnsTimeout => {
            "the name lookup did not finish in time: the node's resolver (resolv.conf) does not answer"
        }
        _ => return None,
    })
}
