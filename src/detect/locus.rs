//! Where a finding lies: the network (the handshake), the backend (after
//! the connection was up, or its own accept queue), DNS, or the prober
//! itself. The likeliest cause places it when the evidence backs it (a
//! score of 0.5 or more); else the finding's kind does.

use super::causes::{self, CauseId};
use serde::{Deserialize, Serialize};

use super::{Finding, FindingKind};

/// Sets `f.locus` and the reason for it.
pub fn place(f: &mut Finding) {
    if f.locus != Locus::Unknown && !f.locus_why.is_empty() {
        // A rule that knows better (failures by outcome) placed it.
        return;
    }
    let backed = f.likely_causes.first().filter(|c| c.score >= 0.5);
    let (locus, why) = match backed {
        Some(c) => {
            let locus = causes::locus_of(c.id);
            (
                locus,
                format!(
                    "{}, the likeliest cause, {}",
                    c.title,
                    where_words(locus, c.id)
                ),
            )
        }
        None => (kind_locus(f.kind), kind_words(f.kind).to_string()),
    };
    f.locus = locus;
    f.locus_why = why;
}

/// Where a finding of `kind` lies when no cause says better.
pub fn kind_locus(kind: FindingKind) -> Locus {
    match kind {
        FindingKind::SynRetransmitLadder
        | FindingKind::PmtuBlackhole
        | FindingKind::FirstContactDelay => Locus::Network,
        FindingKind::DnsTimeoutLadder => Locus::Dns,
        FindingKind::ServerTimeTail
        | FindingKind::TlsCertExpiring
        | FindingKind::ApiServerUnready => Locus::Backend,
        FindingKind::ProberStarved => Locus::Prober,
        FindingKind::ProbeFailures => Locus::Unknown,
    }
}

fn kind_words(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::SynRetransmitLadder => {
            "SYNs were lost before any connection existed: the handshake, on the path"
        }
        FindingKind::PmtuBlackhole => {
            "large packets vanish on the path while the handshake and small answers pass"
        }
        FindingKind::FirstContactDelay => {
            "the first packets to new peers waited on neighbour resolution, on the path"
        }
        FindingKind::DnsTimeoutLadder => {
            "the name lookup waited on the resolver's timeouts, before any connection"
        }
        FindingKind::ServerTimeTail => {
            "the handshake was fast; the time went after the connection was up: the backend"
        }
        FindingKind::ProberStarved => "the prober's own timers were late",
        FindingKind::TlsCertExpiring => "the certificate is the server's own",
        FindingKind::ApiServerUnready => {
            "the API server answered, or refused, its own readiness check"
        }
        FindingKind::ProbeFailures => "the failures alone do not say where",
    }
}

fn where_words(locus: Locus, id: CauseId) -> String {
    let place = match locus {
        Locus::Network => "lies on the network path",
        Locus::Backend => "lies in the backend (the destination's own socket or server)",
        Locus::Dns => "lies in name resolution",
        Locus::Prober => "lies in the probing node itself, not the network",
        Locus::Unknown => "lies where the evidence cannot say",
    };
    format!("{place} ({id})")
}

/// Where a finding puts the time or the trouble: the question "is it the
/// network?", answered. Rendered from the finding's kind and its likeliest
/// cause; never part of its identity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum Locus {
    /// The handshake: SYNs lost or delayed before a connection existed.
    Network,
    /// After the connection was up (first byte, body), or SYNs dropped by
    /// the destination itself (its accept queue).
    Backend,
    /// The name lookup.
    Dns,
    /// The probing node itself: its timers late, its CPU throttled.
    Prober,
    #[default]
    Unknown,
}

impl Locus {
    pub fn as_str(self) -> &'static str {
        match self {
            Locus::Network => "network",
            Locus::Backend => "backend",
            Locus::Dns => "dns",
            Locus::Prober => "prober",
            Locus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Locus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
