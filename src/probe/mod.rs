//! One probe is one fresh TCP connection, timed by phase, with the kernel's
//! evidence attached. [`Prober::probe`] never reuses a connection;
//! [`scheduler`] runs probes on fixed-rate schedules.

pub mod dns;
mod http;
pub use http::NODE_HEADER;
pub mod scheduler;
pub mod socket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use socket::TcpInfo;

/// Where the prober runs: the node's own network or a pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Host,
    Pod,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Host => "host",
            SourceKind::Pod => "pod",
        }
    }
}

impl std::str::FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(SourceKind::Host),
            "pod" => Ok(SourceKind::Pod),
            _ => Err(format!(
                "source kind \"{s}\" is neither \"host\" nor \"pod\""
            )),
        }
    }
}

/// Whether a probe crossed nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    SameNode,
    CrossNode,
    Unknown,
}

impl PathKind {
    /// Same node when the destination is the source, cross-node when another
    /// node, unknown when no node is known.
    pub fn classify(source: &str, destination: Option<&str>) -> Self {
        match destination {
            Some(d) if d == source => PathKind::SameNode,
            Some(_) => PathKind::CrossNode,
            None => PathKind::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::SameNode => "same-node",
            PathKind::CrossNode => "cross-node",
            PathKind::Unknown => "unknown",
        }
    }
}

/// How a probe ended. Each class is produced by a distinct kernel or protocol
/// event, so they are never merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A 2xx response, body read in full.
    Ok,
    /// A complete response with a non-2xx status.
    HttpStatus,
    /// The peer answered the SYN with a RST (nothing listening).
    Refused,
    /// The connection was reset after it was established.
    Reset,
    /// No route, or the neighbour never answered (EHOSTUNREACH, ENETUNREACH).
    Unreachable,
    /// The connect did not finish in time, or the kernel gave up on SYNs.
    ConnectTimeout,
    /// Connected, but the response did not finish in time.
    TotalTimeout,
    /// The body was larger than the target's limit.
    BodyTooLarge,
    /// The peer closed the connection before a complete response.
    Closed,
    /// The host name did not resolve.
    DnsError,
    /// The response was not valid HTTP/1.1.
    ProtocolError,
    /// Shut down while in flight.
    Cancelled,
    /// Any other local error (out of sockets, for example).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 13] = [
        Outcome::Ok,
        Outcome::HttpStatus,
        Outcome::Refused,
        Outcome::Reset,
        Outcome::Unreachable,
        Outcome::ConnectTimeout,
        Outcome::TotalTimeout,
        Outcome::BodyTooLarge,
        Outcome::Closed,
        Outcome::DnsError,
        Outcome::ProtocolError,
        Outcome::Cancelled,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HttpStatus => "http-status",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Unreachable => "unreachable",
            Outcome::ConnectTimeout => "connect-timeout",
            Outcome::TotalTimeout => "total-timeout",
            Outcome::BodyTooLarge => "body-too-large",
            Outcome::Closed => "closed",
            Outcome::DnsError => "dns-error",
            Outcome::ProtocolError => "protocol-error",
            Outcome::Cancelled => "cancelled",
            Outcome::Error => "error",
        }
    }

    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }

    /// The exchange completed, so `total` is a latency, not a give-up time.
    pub fn completed(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::HttpStatus)
    }
}

/// Phase marks, each measured from the probe's start on the monotonic clock
/// (curl's convention: `connect` includes `dns`, `first_byte` includes both).
/// A phase that never completed is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phases {
    pub dns: Option<Duration>,
    pub connect: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub total: Duration,
}

impl Phases {
    /// The connect alone: what a SYN ladder stretches.
    pub fn connect_only(&self) -> Option<Duration> {
        self.connect
            .map(|c| c.saturating_sub(self.dns.unwrap_or_default()))
    }
}

/// The kernel saw one more SYN retransmission while connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SynEvent {
    /// Since the connect started.
    pub at: Duration,
    /// `tcpi_total_retrans` at that moment.
    pub retransmits: u8,
}

/// Everything one probe learned.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub target: Arc<crate::targets::Target>,
    pub source_node: Arc<str>,
    pub source_kind: SourceKind,
    pub destination_node: Option<Arc<str>>,
    pub path: PathKind,
    pub started_at: SystemTime,
    /// How late the probe started against its schedule.
    pub start_lag: Duration,
    pub phases: Phases,
    pub outcome: Outcome,
    pub status: Option<u16>,
    /// A one-line description of the failure, when there was one.
    pub error: Option<String>,
    /// `TCP_INFO` right after the connect completed.
    pub tcp_info: Option<TcpInfo>,
    /// SYN retransmissions: from `TCP_INFO` after connect, else the last poll.
    pub syn_retransmits: u32,
    pub syn_events: Vec<SynEvent>,
    pub local_addr: Option<SocketAddr>,
    pub peer_addr: Option<SocketAddr>,
    pub body_bytes: u64,
}

/// Probes in flight right now, and how many of them are stuck in SYN
/// retransmission: what a progress display shows while a 63 s rung runs.
#[derive(Debug, Default)]
pub struct InFlight {
    probes: AtomicUsize,
    syn_stalled: AtomicUsize,
}

impl InFlight {
    pub fn probes(&self) -> usize {
        self.probes.load(Ordering::Relaxed)
    }
    pub fn syn_stalled(&self) -> usize {
        self.syn_stalled.load(Ordering::Relaxed)
    }
}

/// Decrements an [`InFlight`] counter when dropped, so cancellation and
/// timeouts cannot leak a count.
struct CountGuard<'a>(&'a AtomicUsize);

impl<'a> CountGuard<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(c)
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs probes from one vantage point.
#[derive(Debug)]
pub struct Prober {
    pub source_node: Arc<str>,
    pub source_kind: SourceKind,
    /// How often a pending connect's `TCP_INFO` is read.
    pub syn_poll: Duration,
    /// `TCP_SYNCNT` for every probe socket, when set.
    pub syn_retries: Option<u8>,
    pub in_flight: Arc<InFlight>,
}

impl Prober {
    pub fn new(source_node: &str, source_kind: SourceKind) -> Self {
        Self {
            source_node: source_node.into(),
            source_kind,
            syn_poll: Duration::from_millis(200),
            syn_retries: None,
            in_flight: Arc::default(),
        }
    }
}

impl Prober {
    /// A prober for the node and settings a configuration names.
    pub fn from_loaded(loaded: &crate::config::Loaded) -> Self {
        let p = &loaded.config.probe;
        Self {
            source_node: loaded.node().into(),
            source_kind: loaded.source_kind(),
            syn_poll: p.syn_poll.get(),
            syn_retries: p.syn_retries,
            in_flight: Arc::default(),
        }
    }
}
