//! Series: what aggregation keys on ([`Dims`]), one probe as the windows and
//! the detector need it ([`Sample`]), and a series' recent samples
//! ([`SeriesWindow`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Outcome, PathKind, Phases, ProbeResult, SourceKind, Target, TargetNode};

/// The dimensions of a series: every aggregation (stats, report, API,
/// Prometheus, OTLP, detector) keys on these and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dims {
    pub source_node: Arc<str>,
    pub source_kind: SourceKind,
    pub destination_node: Option<Arc<str>>,
    pub target: Arc<str>,
    pub path: PathKind,
    /// The address family the probe went over. Documents written before
    /// families were a dimension read as IPv4, which is all they held.
    #[serde(default)]
    pub family: Family,
}

/// An address family: on a dual-stack cluster every Service is probed once
/// per family, and a path can break in one family only (its own routes,
/// neighbour discovery, MTU, filter rules).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The family a packet to `ip` travels in: an IPv4-mapped IPv6 address
    /// is IPv4 on the wire.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// As people write it: "IPv4", "IPv6".
    pub fn describe(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            Family::Ipv4 => Family::Ipv6,
            Family::Ipv6 => Family::Ipv4,
        }
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ipv4" => Ok(Family::Ipv4),
            "ipv6" => Ok(Family::Ipv6),
            _ => Err(format!(
                "address family \"{s}\" is neither \"ipv4\" nor \"ipv6\""
            )),
        }
    }
}

impl Dims {
    pub fn of(r: &ProbeResult) -> Self {
        Self {
            source_node: Arc::clone(&r.source_node),
            source_kind: r.source_kind,
            destination_node: r.destination_node.clone(),
            target: r.target.name.as_str().into(),
            path: r.path,
            // The target's own family (a literal or a pin), else the address
            // a host name resolved to.
            family: r
                .target
                .family
                .or_else(|| r.peer_addr.map(|a| Family::of(a.ip())))
                .unwrap_or_default(),
        }
    }

    /// A series as known before any answer: the destination its target
    /// names, else unknown (a mixed Service's answer names it).
    pub fn of_target(source_node: &Arc<str>, source_kind: SourceKind, t: &Target) -> Self {
        let destination: Option<Arc<str>> = match &t.node {
            TargetNode::Known(n) => Some(n.as_str().into()),
            _ => None,
        };
        Self {
            source_node: Arc::clone(source_node),
            source_kind,
            path: PathKind::classify(source_node, destination.as_deref()),
            destination_node: destination,
            target: t.name.as_str().into(),
            family: t.family.unwrap_or_default(),
        }
    }

    /// The destination node, or `?` when it is unknown.
    pub fn destination_or_unknown(&self) -> &str {
        self.destination_node.as_deref().unwrap_or("?")
    }

    /// How the target is reached, from the name discovery gives it.
    pub fn via(&self) -> Via {
        Via::of(&self.target)
    }
}

/// How a target is reached: through a Service's VIP (kube-proxy's DNAT and
/// masquerade), straight to a pod's address, or not known (a configured
/// URL). The seed's signature is a Service path broken while the pod path
/// to the same pod is fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    Service,
    /// A node's own address on a Service's node port (`nodeport/`): the
    /// NodePort DNAT, then masquerade when the backend is elsewhere.
    NodePort,
    Pod,
    Unknown,
}

impl Via {
    /// From a target's name, as discovery names them: `node/` (a node's
    /// Service), `svc/` (an opted-in Service) and `pool/` (a pool Service)
    /// go through a VIP, `pod/` straight to a pod; any other name is a
    /// configured target, unknown.
    pub fn of(target: &str) -> Self {
        if ["node/", "svc/", "pool/"]
            .iter()
            .any(|p| target.starts_with(p))
        {
            Via::Service
        } else if target.starts_with("nodeport/") {
            Via::NodePort
        } else if target.starts_with("pod/") {
            Via::Pod
        } else {
            Via::Unknown
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Via::Service => "service",
            Via::NodePort => "node-port",
            Via::Pod => "pod",
            Via::Unknown => "unknown",
        }
    }
}

/// One probe, as the detector and the windows need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at: SystemTime,
    pub phases: Phases,
    pub outcome: Outcome,
    pub syn_retransmits: u32,
    /// The response body's size as measured: declared by the response, else
    /// read (0 for probes without a body).
    #[serde(default)]
    pub body_bytes: u64,
    /// The probe's exported trace, when it was kept: a finding's examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceRef>,
    /// How late the prober's own timer started this probe against its
    /// schedule (ms): a starved prober's delay is in its timings, and is
    /// its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prober_lag_ms: Option<f32>,
}

/// Past this lag of its own timers, a prober's probe times are its own
/// delay as much as the path's or the backend's.
pub const PROBER_LATE_MS: f32 = 100.0;

impl Sample {
    pub fn of(r: &ProbeResult, trace: Option<TraceRef>) -> Self {
        Self {
            at: r.started_at,
            phases: r.phases,
            outcome: r.outcome,
            syn_retransmits: r.syn_retransmits,
            body_bytes: r.body_size(),
            trace,
            // Only a scheduled probe has a schedule to be late against.
            prober_lag_ms: (!r.start_lag.is_zero()).then_some(r.start_lag.as_secs_f32() * 1e3),
        }
    }

    /// The prober's own timers were late while this probe ran.
    pub fn prober_late(&self) -> bool {
        self.prober_lag_ms.is_some_and(|l| l >= PROBER_LATE_MS)
    }
}

/// A trace and its root span, in hex, as OTLP and Jaeger write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRef {
    pub trace_id: String,
    pub span_id: String,
}

/// A probe still waiting in SYN_SENT after losing SYNs: a censored
/// observation. It has lost at least `syn_retransmits` SYNs and has not
/// landed on its rung yet; the detector counts it toward that rung and
/// beyond, never as a finished probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// When the probe started (the same instant its sample will carry).
    pub at: SystemTime,
    /// SYNs lost so far (`TCP_INFO` while in SYN_SENT).
    pub syn_retransmits: u32,
    /// When the first lost SYN was seen, from the probe's start.
    pub stalled_after: Duration,
    /// How long the probe had waited when this was read.
    pub waited: Duration,
}

/// A series' recent samples: what the detector judges.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesWindow {
    pub dims: Dims,
    pub samples: Vec<Sample>,
    /// The largest response body this series has measured since it began
    /// (or that its target declares): a black hole that eats every large
    /// segment leaves its own probes nothing to measure.
    pub body_bytes: u64,
    /// Probes of this series stalled in SYN_SENT right now.
    pub pending: Vec<Pending>,
    /// A DNS target that sends A and AAAA at once (`parallel=1`): the
    /// pattern that meets conntrack's insert race.
    pub dns_parallel: bool,
    /// The server certificate's end of validity, as the series' last
    /// handshake saw it (`https://`, Unix seconds).
    pub cert_not_after: Option<i64>,
}

impl SeriesWindow {
    /// A series with samples and nothing pending.
    pub fn new(dims: Dims, samples: Vec<Sample>, body_bytes: u64) -> Self {
        Self {
            dims,
            samples,
            body_bytes,
            pending: Vec::new(),
            dns_parallel: false,
            cert_not_after: None,
        }
    }

    /// What the target's URL says of the series (`parallel=1` on a DNS
    /// target).
    pub fn for_url(mut self, url: &str) -> Self {
        self.dns_parallel = super::target::dns_parallel(url);
        self
    }
}

/// Adds stalls still pending to the windows of their series, creating a
/// window for a series that has no finished probe yet (a target whose
/// first probes all stalled). A stall whose probe already landed in the
/// window (the same start) is left out: the stalls are read before the
/// samples, so a probe that lands between the two readings shows twice
/// at worst, never not at all, and the copy is dropped here.
pub fn attach_pending(windows: &mut Vec<SeriesWindow>, pending: Vec<(Dims, Pending)>) {
    let mut index: std::collections::HashMap<Dims, usize> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| (w.dims.clone(), i))
        .collect();
    for (dims, p) in pending {
        let i = *index.entry(dims.clone()).or_insert_with(|| {
            windows.push(SeriesWindow::new(dims, Vec::new(), 0));
            windows.len() - 1
        });
        let w = &mut windows[i];
        if !w.samples.iter().any(|s| s.at == p.at) {
            w.pending.push(p);
        }
    }
}
