//! What a finding is about, by name.

use serde::{Deserialize, Serialize};

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Connects sit on the rungs of the source kernel's SYN schedule.
    SynRetransmitLadder,
    /// Name lookups sit on the resolver's 5 s / 10 s timeouts.
    DnsTimeoutLadder,
    /// Large responses stall where small ones on the same path pass.
    PmtuBlackhole,
    /// Probes failed in ways no other finding explains.
    ProbeFailures,
    /// Only the first connections to new peers were slow.
    FirstContactDelay,
    /// Answers came late after the connection was up: the backend's time.
    ServerTimeTail,
    /// The prober's own timers were late, or its cgroup throttled it.
    ProberStarved,
    /// A served TLS certificate ends soon, or has ended.
    TlsCertExpiring,
    /// The API server's own readiness probe failed through the
    /// `kubernetes` Service.
    ApiServerUnready,
}

impl FindingKind {
    pub const ALL: [FindingKind; 9] = [
        FindingKind::SynRetransmitLadder,
        FindingKind::DnsTimeoutLadder,
        FindingKind::PmtuBlackhole,
        FindingKind::ProbeFailures,
        FindingKind::FirstContactDelay,
        FindingKind::ServerTimeTail,
        FindingKind::ProberStarved,
        FindingKind::TlsCertExpiring,
        FindingKind::ApiServerUnready,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::SynRetransmitLadder => "syn-retransmit-ladder",
            FindingKind::DnsTimeoutLadder => "dns-timeout-ladder",
            FindingKind::PmtuBlackhole => "pmtu-blackhole",
            FindingKind::ProbeFailures => "probe-failures",
            FindingKind::FirstContactDelay => "first-contact-delay",
            FindingKind::ServerTimeTail => "server-time-tail",
            FindingKind::ProberStarved => "prober-starved",
            FindingKind::TlsCertExpiring => "tls-cert-expiring",
            FindingKind::ApiServerUnready => "apiserver-unready",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FindingKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a finding kind"))
    }
}
