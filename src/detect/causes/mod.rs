//! The knowledge base of causes: data, not code. Each cause lists the
//! evidence that points to it; a finding's likely causes are ranked by how
//! much of that evidence is present, and each says what was present and
//! what was missing.

use serde::{Deserialize, Serialize};

mod check;
mod table;

pub use check::Check;
pub use table::{CAUSES, FAMILY_BLIND};

use super::{Evidence, FindingKind, Locus};

/// Which cause: the identity a finding's likely causes and the metrics'
/// `cause` label carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CauseId {
    VxlanChecksumOffload,
    SynDroppedOnPath,
    PathPacketLoss,
    IpvsConnReuse,
    ConntrackDnsRace,
    OverlayPmtuBlackhole,
    NeighbourResolution,
    BackendSlow,
    ProberStarved,
    ListenQueueOverflow,
    ConntrackTableFull,
    NeighbourTableOverflow,
    SnatPortClash,
    ReversePathFilter,
    StaleProxyRules,
    DnsPathLoss,
    FamilyPath,
}

impl CauseId {
    pub fn as_str(self) -> &'static str {
        match self {
            CauseId::VxlanChecksumOffload => "vxlan-checksum-offload",
            CauseId::SynDroppedOnPath => "syn-dropped-on-path",
            CauseId::PathPacketLoss => "path-packet-loss",
            CauseId::IpvsConnReuse => "ipvs-conn-reuse",
            CauseId::ConntrackDnsRace => "conntrack-dns-race",
            CauseId::OverlayPmtuBlackhole => "overlay-pmtu-blackhole",
            CauseId::NeighbourResolution => "neighbour-resolution",
            CauseId::BackendSlow => "backend-slow",
            CauseId::ProberStarved => "prober-starved",
            CauseId::ListenQueueOverflow => "listen-queue-overflow",
            CauseId::ConntrackTableFull => "conntrack-table-full",
            CauseId::NeighbourTableOverflow => "neighbour-table-overflow",
            CauseId::SnatPortClash => "snat-port-clash",
            CauseId::ReversePathFilter => "reverse-path-filter",
            CauseId::StaleProxyRules => "stale-proxy-rules",
            CauseId::DnsPathLoss => "dns-path-loss",
            CauseId::FamilyPath => "family-path",
        }
    }
}

impl std::fmt::Display for CauseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kernels with "netfilter: nat: never update the UDP checksum when it's 0",
/// per stable series: (major, minor, first fixed patch). Every 5.7 and later
/// has it.
pub const CHECKSUM_FIX: &[(u32, u32, u32)] = &[(5, 6, 13), (5, 4, 41), (4, 19, 123), (4, 14, 181)];

/// Whether a kernel release (major, minor, patch) has the NAT checksum fix.
pub fn has_checksum_fix(v: (u32, u32, u32)) -> bool {
    let (major, minor, patch) = v;
    major >= 6
        || (major == 5 && minor >= 7)
        || CHECKSUM_FIX
            .iter()
            .any(|(ma, mi, p)| (*ma, *mi) == (major, minor) && patch >= *p)
}

/// A cause in the knowledge base.
pub struct CauseSpec {
    pub id: CauseId,
    pub title: &'static str,
    pub why: &'static str,
    /// The finding kinds it can explain.
    pub kinds: &'static [FindingKind],
    /// Evidence it expects, with weights; the first is required.
    pub checks: &'static [(Check, f64)],
    pub remediation: &'static [&'static str],
    /// Where the trouble lies when this is the cause.
    pub locus: Locus,
}

/// Where a cause puts the trouble.
pub fn locus_of(id: CauseId) -> Locus {
    CAUSES
        .iter()
        .find(|c| c.id == id)
        .map_or(Locus::Unknown, |c| c.locus)
}

/// A ranked cause of a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelyCause {
    pub id: CauseId,
    pub title: String,
    pub why: String,
    /// 0..=1: the weight of the present evidence over the weight judged
    /// (unknown checks count half).
    pub score: f64,
    pub present: Vec<String>,
    pub missing: Vec<String>,
    pub unknown: Vec<String>,
    pub remediation: Vec<String>,
}

/// The causes that fit a finding of `kind`, best first. A cause whose first
/// (required) check is missing is left out. The score is the weight of the present evidence over the
/// weight judged, where an unknown check weighs half: what a node cannot
/// know neither proves a cause nor rules it out, but a cause known only
/// from a little evidence ranks below one whose evidence was seen. A cause
/// in [`FAMILY_BLIND`] strikes both address families alike: when one
/// family alone is hit, that is missing evidence as heavy as all its own
/// (its score halves); on a one-family cluster it is not judged at all.
pub fn rank(kind: FindingKind, e: &Evidence) -> Vec<LikelyCause> {
    let mut out: Vec<LikelyCause> = CAUSES
        .iter()
        .filter(|c| c.kinds.contains(&kind))
        .filter(|c| {
            c.checks
                .first()
                .is_some_and(|(check, _)| check.holds(e) != Some(false))
        })
        .map(|c| {
            let (mut present, mut missing, mut unknown) = (vec![], vec![], vec![]);
            let (mut got, mut judged) = (0.0, 0.0);
            for (check, weight) in c.checks {
                match check.holds(e) {
                    Some(true) => {
                        got += weight;
                        judged += weight;
                        present.push(check.describe().to_string());
                    }
                    Some(false) => {
                        judged += weight;
                        missing.push(check.describe().to_string());
                    }
                    None => {
                        judged += weight / 2.0;
                        unknown.push(check.describe().to_string());
                    }
                }
            }
            if FAMILY_BLIND.contains(&c.id) && Check::OneFamilyOnly.holds(e) == Some(true) {
                judged += c.checks.iter().map(|(_, w)| w).sum::<f64>();
                missing.push("the other address family would be hit too: only one is".to_string());
            }
            let overlay = e
                .overlay_tx_checksum_on
                .as_ref()
                .and_then(|v| v.first().cloned())
                .unwrap_or_else(|| "vxlan.calico".into());
            LikelyCause {
                id: c.id,
                title: c.title.into(),
                why: c.why.split_whitespace().collect::<Vec<_>>().join(" "),
                score: (got / judged * 100.0).round() / 100.0,
                present,
                missing,
                unknown,
                remediation: c
                    .remediation
                    .iter()
                    .map(|r| r.replace("{overlay}", &overlay))
                    .collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}
