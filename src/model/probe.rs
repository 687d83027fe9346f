//! What one probe is and what it learned: how it ended, its phases, the
//! kernel's evidence, and where it ran.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Target;

/// Where the prober runs: the node's own network or a pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Host,
    Pod,
    /// The node's own connections from its host network, read by passive
    /// mode: no probe was sent.
    #[serde(rename = "passive-host")]
    PassiveHost,
    /// The node's own connections from its pods, read by passive mode.
    #[serde(rename = "passive-pod")]
    PassivePod,
}

/// The network a connection left from, synthetic or passive alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Host,
    Pod,
}

impl Network {
    pub fn describe(self) -> &'static str {
        match self {
            Network::Host => "host network",
            Network::Pod => "pod network",
        }
    }
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Host => "host",
            SourceKind::Pod => "pod",
            SourceKind::PassiveHost => "passive-host",
            SourceKind::PassivePod => "passive-pod",
        }
    }

    pub fn network(self) -> Network {
        match self {
            SourceKind::Host | SourceKind::PassiveHost => Network::Host,
            SourceKind::Pod | SourceKind::PassivePod => Network::Pod,
        }
    }

    /// Real connections read from the kernel, not probes.
    pub fn is_passive(self) -> bool {
        matches!(self, SourceKind::PassiveHost | SourceKind::PassivePod)
    }

    /// The vantage in words: "host network", "real connections from pods".
    pub fn describe(self) -> &'static str {
        match self {
            SourceKind::Host | SourceKind::Pod => self.network().describe(),
            SourceKind::PassiveHost => "real connections from the host network",
            SourceKind::PassivePod => "real connections from pods",
        }
    }
}

impl std::str::FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(SourceKind::Host),
            "pod" => Ok(SourceKind::Pod),
            "passive-host" => Ok(SourceKind::PassiveHost),
            "passive-pod" => Ok(SourceKind::PassivePod),
            _ => Err(format!(
                "source kind \"{s}\" is none of \"host\", \"pod\", \"passive-host\" and \"passive-pod\""
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
    /// The host name lookup did not finish in time.
    DnsTimeout,
    /// Connected, but the TLS handshake did not finish in time.
    TlsTimeout,
    /// The TLS handshake failed: a certificate not trusted, expired or for
    /// another name, or no protocol both ends speak.
    TlsError,
    /// The response was not valid HTTP/1.1.
    ProtocolError,
    /// Shut down while in flight.
    Cancelled,
    /// Any other local error (out of sockets, for example).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 16] = [
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
        Outcome::DnsTimeout,
        Outcome::TlsTimeout,
        Outcome::TlsError,
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
            Outcome::DnsTimeout => "dns-timeout",
            Outcome::TlsTimeout => "tls-timeout",
            Outcome::TlsError => "tls-error",
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
/// (curl's convention: `connect` includes `dns`, `tls` includes the connect,
/// `first_byte` includes them all). A phase that never completed, or that
/// the probe has not (`tls` over plain HTTP), is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phases {
    pub dns: Option<Duration>,
    pub connect: Option<Duration>,
    /// The TLS handshake's end (`https://` only): curl's `appconnect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub total: Duration,
}

impl Phases {
    /// The connect alone: what a SYN ladder stretches.
    pub fn connect_only(&self) -> Option<Duration> {
        self.connect
            .map(|c| c.saturating_sub(self.dns.unwrap_or_default()))
    }

    /// The TLS handshake alone, from the connect's end.
    pub fn tls_only(&self) -> Option<Duration> {
        Some(self.tls?.saturating_sub(self.connect?))
    }

    /// The marks of a probe that started after a lookup of `dns` made for
    /// it: each mark moves by the lookup, which becomes the `dns` phase.
    pub fn after_lookup(self, dns: Duration) -> Self {
        Self {
            dns: Some(dns),
            connect: self.connect.map(|c| c + dns),
            tls: self.tls.map(|t| t + dns),
            first_byte: self.first_byte.map(|f| f + dns),
            total: self.total + dns,
        }
    }

    /// Where the server's time starts: the TLS handshake's end over
    /// `https://`, else the connect's.
    pub fn ready(&self) -> Option<Duration> {
        self.tls.or(self.connect)
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

/// The fields of `struct tcp_info` that probes use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpInfo {
    /// `TCP_ESTABLISHED` = 1, `TCP_SYN_SENT` = 2, ...
    pub state: u8,
    /// Retransmissions of the current segment (the SYN while connecting).
    pub retransmits: u8,
    pub backoff: u8,
    pub rto_us: u32,
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// Every retransmission on this socket so far.
    pub total_retrans: u32,
    /// Retransmission timeouts so far (kernel 6.7 and later).
    pub total_rto: Option<u16>,
}

impl TcpInfo {
    /// Parses the bytes the kernel returned (x86-64 and aarch64 layouts agree
    /// on these offsets).
    pub fn parse(b: &[u8]) -> Self {
        let u8_at = |o: usize| b.get(o).copied().unwrap_or(0);
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
                .unwrap_or(0)
        };
        Self {
            state: u8_at(0),
            retransmits: u8_at(2),
            backoff: u8_at(4),
            rto_us: u32_at(8),
            rtt_us: u32_at(68),
            rttvar_us: u32_at(72),
            total_retrans: u32_at(100),
            total_rto: b.get(240..242).map(|s| u16::from_ne_bytes([s[0], s[1]])),
        }
    }
}

/// Everything one probe learned.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub target: Arc<Target>,
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
    /// Body bytes read.
    pub body_bytes: u64,
    /// The body's size as the response declared it (`Content-Length`): known
    /// even when the body itself never arrived.
    pub content_length: Option<u64>,
    /// The response named a destination node the prober does not know (or
    /// one the target cannot lead to): not believed, the destination stays
    /// unknown.
    pub rejected_node_header: bool,
    /// The server certificate's end of validity (`https://`, Unix seconds),
    /// once a handshake has seen it.
    pub cert_not_after: Option<i64>,
}

impl ProbeResult {
    /// The body's size as measured: declared, else read.
    pub fn body_size(&self) -> u64 {
        self.content_length.unwrap_or(0).max(self.body_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_after_a_shared_lookup_carries_it_in_every_mark() {
        let ms = Duration::from_millis;
        let p = Phases {
            dns: None,
            connect: Some(ms(2)),
            tls: Some(ms(5)),
            first_byte: None,
            total: ms(9),
        }
        .after_lookup(ms(3));
        assert_eq!(
            (p.dns, p.connect, p.tls, p.first_byte, p.total),
            (Some(ms(3)), Some(ms(5)), Some(ms(8)), None, ms(12))
        );
    }

    #[test]
    fn parses_fields_at_their_offsets() {
        let mut b = [0u8; 104];
        b[0] = 2;
        b[2] = 3;
        b[8..12].copy_from_slice(&8_000_000u32.to_ne_bytes());
        b[100..104].copy_from_slice(&3u32.to_ne_bytes());
        let i = TcpInfo::parse(&b);
        assert_eq!(
            (i.state, i.retransmits, i.rto_us, i.total_retrans),
            (2, 3, 8_000_000, 3)
        );
        assert_eq!(i.total_rto, None, "a 104-byte struct has no total_rto");
    }
}
