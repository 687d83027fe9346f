use std::time::{Duration, SystemTime};

use super::causes::has_checksum_fix;
use super::*;
use crate::model::{
    Counters, Dims, Outcome, OverlayDevice, Phases, Sample, SeriesWindow as Series, Severity,
    SourceKind, Target,
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
    let parsed = Target::parse(target, url).ok();
    let body_bytes = parsed
        .as_ref()
        .and_then(|t| t.echo_body_bytes())
        .unwrap_or(0);
    let mut samples = Vec::new();
    for (ms, r, o) in probes {
        let dns = dns_ms.map(|d| Duration::from_secs_f64(d / 1e3));
        let connected = *o != Outcome::ConnectTimeout && *o != Outcome::Refused;
        let connect =
            connected.then(|| dns.unwrap_or_default() + Duration::from_secs_f64(ms / 1e3));
        let phases = Phases {
            tls: None,
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
        cert_not_after: None,
        dims: Dims {
            source_node: src.into(),
            source_kind: kind,
            destination_node: Some(dst.into()),
            target: target.into(),
            path,
            // The URL's literal: `http://[fd00::1]/` is an IPv6 series.
            family: parsed.and_then(|t| t.family).unwrap_or_default(),
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

fn at(s: &mut Series, secs: &[u64]) {
    for (p, t) in s.samples.iter_mut().zip(secs) {
        p.at = SystemTime::UNIX_EPOCH + Duration::from_secs(*t);
    }
}

mod censored;
mod checks;
mod edges;
mod families;
mod first_contact;
mod incident;
mod kinds;
mod ladders;
mod passive;
mod tls;
mod unknowns;
