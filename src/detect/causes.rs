//! The knowledge base of causes: data, not code. Each cause lists the
//! evidence that points to it; a finding's likely causes are ranked by how
//! much of that evidence is present, and each says what was present and
//! what was missing.

use serde::{Deserialize, Serialize};

use super::stat::RungShape;
use super::{Evidence, FindingKind};

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

/// A piece of evidence a cause expects. Each is judged present, missing or
/// unknown; unknown is never taken for missing (see [`rank`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Only cross-node paths are hit; same-node paths from the same sources
    /// are clean. Unknown when a hit path's destination is unknown.
    CrossNodeOnly,
    /// Host-network sources are hit while pod-network sources are clean.
    HostNetworkOnly,
    /// Every hit path leads to one destination node.
    OneDestination,
    /// kube-proxy runs in IPVS mode (its `kube-ipvs0` device exists).
    IpvsMode,
    /// The dominant rung is one or two lost SYNs.
    EarlyRung,
    /// The probes escape on the rung where a NATed UDP flow gets a fresh
    /// conntrack entry: after a quiet gap longer than the node's UDP
    /// conntrack timeout, or at once when `txrehash` moves the flow.
    NatEscapeRung,
    /// The rung is not one NAT state explains.
    NotNatEscapeRung,
    /// The hit probes lost the same number of SYNs.
    DeterministicRungs,
    /// The lost SYNs spread as independent loss does.
    GeometricRungs,
    /// Most probes of the hit paths are on a rung.
    MostProbes,
    /// A minority of probes is on a rung.
    FewProbes,
    /// An overlay device on a hit source has TX checksum offload on.
    OverlayTxChecksumOn,
    /// A hit source runs a kernel whose version predates the NAT checksum fix.
    KernelWithoutChecksumFix,
    /// The destination nodes' `UdpInCsumErrors` rose.
    ReceiverUdpChecksumErrors,
    /// The source node's own `UdpInCsumErrors` rose: it receives the other
    /// nodes' overlay traffic. No rise says nothing about its own sends.
    LocalUdpChecksumErrors,
    /// Lookups sit on the resolver's 5 s / 10 s rungs.
    DnsRung,
    /// conntrack's insert_failed counter is non-zero on a hit source.
    ConntrackInsertFailed,
    /// Large responses fail or stall where small ones to the same node pass.
    LargeBodiesOnly,
    /// Only the first connections to each path were slow; later ones fast.
    FirstContactOnly,
}

impl Check {
    /// What the check looks for, said as evidence.
    fn describe(self) -> &'static str {
        match self {
            Check::CrossNodeOnly => "only cross-node paths are hit, same-node paths are clean",
            Check::HostNetworkOnly => "host-network probes are hit, pod-network probes are clean",
            Check::OneDestination => "every hit path leads to one destination node",
            Check::IpvsMode => "kube-proxy runs in IPVS mode (kube-ipvs0 exists)",
            Check::EarlyRung => "probes sit on the first rungs (one or two lost SYNs)",
            Check::NatEscapeRung => {
                "probes escape where a NATed UDP flow gets a new conntrack entry: after a quiet gap longer than nf_conntrack_udp_timeout (63 s classic, 67 s linear with a 30 s timeout), or after 1 s with txrehash = 1"
            }
            Check::NotNatEscapeRung => {
                "the rung is not where conntrack expiry or a rehash would let a NATed flow through"
            }
            Check::DeterministicRungs => "the hit probes lost the same number of SYNs",
            Check::GeometricRungs => {
                "lost SYNs spread as random loss does (one lost more often than two, two than three)"
            }
            Check::MostProbes => "most probes on the hit paths are on a rung",
            Check::FewProbes => "a minority of probes is on a rung",
            Check::OverlayTxChecksumOn => {
                "an overlay device on the source has TX checksum offload on"
            }
            Check::KernelWithoutChecksumFix => {
                "the source kernel's version predates the fix \"netfilter: nat: never update the UDP checksum when it's 0\" (weak: read from the version only, a distribution backport is invisible)"
            }
            Check::ReceiverUdpChecksumErrors => {
                "receiving nodes' UDP checksum errors (UdpInCsumErrors) rose"
            }
            Check::LocalUdpChecksumErrors => {
                "the source node's own UdpInCsumErrors rose: it receives the other nodes' overlay traffic"
            }
            Check::DnsRung => "lookups sit on the resolver's 5 s / 10 s timeouts",
            Check::ConntrackInsertFailed => "conntrack insert_failed is non-zero",
            Check::LargeBodiesOnly => "large responses fail while small ones to the same node pass",
            Check::FirstContactOnly => "slow connects only on the first contact with each path",
        }
    }

    /// `Some(true)` present, `Some(false)` missing, `None` unknown.
    fn holds(self, e: &Evidence) -> Option<bool> {
        match self {
            Check::CrossNodeOnly => {
                if e.same_node_hit {
                    Some(false)
                } else if e.unknown_path_hit || !e.same_node_probed {
                    None
                } else {
                    Some(e.cross_node_hit)
                }
            }
            Check::HostNetworkOnly => e.pod_probed.then_some(e.host_hit && !e.pod_hit),
            Check::OneDestination => e.one_destination,
            Check::IpvsMode => e.kube_proxy_ipvs,
            Check::EarlyRung => e.dominant_rung.map(|k| k <= 2),
            Check::NatEscapeRung => e.nat_escape_rung,
            Check::NotNatEscapeRung => e.nat_escape_rung.map(|x| !x),
            Check::DeterministicRungs => e.shape.map(|s| s == RungShape::Deterministic),
            Check::GeometricRungs => e.shape.map(|s| s == RungShape::Geometric),
            Check::MostProbes => Some(e.share >= 0.5),
            Check::FewProbes => Some(e.share < 0.5),
            Check::OverlayTxChecksumOn => e.overlay_tx_checksum_on.as_ref().map(|v| !v.is_empty()),
            Check::KernelWithoutChecksumFix => e.kernel_without_fix,
            Check::ReceiverUdpChecksumErrors => e.receiver_udp_checksum_errors.map(|n| n > 0),
            Check::LocalUdpChecksumErrors => {
                e.local_udp_checksum_errors.filter(|n| *n > 0).map(|_| true)
            }
            Check::DnsRung => Some(e.dns_rung),
            Check::ConntrackInsertFailed => e.conntrack_insert_failed.map(|n| n > 0),
            Check::LargeBodiesOnly => Some(e.large_bodies_only),
            Check::FirstContactOnly => Some(e.first_contact_only),
        }
    }
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
}

/// `{overlay}` in a remediation is replaced by the overlay device found on
/// the hit sources (`vxlan.calico` when none was found).
pub const CAUSES: &[CauseSpec] = &[
    CauseSpec {
        id: CauseId::VxlanChecksumOffload,
        title: "VXLAN double-NAT checksum bug (TX checksum offload on a NATed VXLAN packet)",
        why: "kube-proxy's masquerade mark survives VXLAN encapsulation, so the outer UDP header is NATed too; \
              with UDP checksums off on the VXLAN device and TX checksum offload on, the kernel's NAT writes an \
              invalid checksum and the receiver drops the packet. Retransmitted SYNs reuse the NATed UDP conntrack \
              entry until it expires 30 s after the last one (63 s), or escape at once when the kernel rehashes \
              the flow (1 s).",
        kinds: &[FindingKind::SynRetransmitLadder],
        checks: &[
            (Check::CrossNodeOnly, 3.0),
            (Check::NatEscapeRung, 3.0),
            (Check::HostNetworkOnly, 2.0),
            (Check::OverlayTxChecksumOn, 2.0),
            (Check::ReceiverUdpChecksumErrors, 2.0),
            (Check::DeterministicRungs, 1.0),
            (Check::LocalUdpChecksumErrors, 1.0),
            (Check::MostProbes, 1.0),
            (Check::KernelWithoutChecksumFix, 0.5),
        ],
        remediation: &[
            "ethtool --offload {overlay} rx off tx off   (on every node; immediate, not persistent)",
            "Calico >= v3.20.0 (or v3.19.2), or FelixConfiguration featureDetectOverride: \"ChecksumOffloadBroken=true\" (env FELIX_FEATUREDETECTOVERRIDE)",
            "a kernel with the fix: 5.6.13, 5.4.41, 4.19.123, 4.14.181 or later (Ubuntu 4.15.0-107, 5.4.0-32)",
            "kube-proxy that clears the mark before masquerading (Kubernetes 1.16.13, 1.17.9, 1.18.6 or later)",
            "Flannel: the same bug on flannel.1; upgrade Flannel (fixed by flannel-io/flannel#1681)",
        ],
    },
    CauseSpec {
        id: CauseId::SynDroppedOnPath,
        title: "SYNs dropped on the way in: a filtering rule, a full queue or a full conntrack table",
        why: "the probes lose the same first SYNs, deterministically, on the way to one node: a firewall or \
              NetworkPolicy rule, a full accept queue, or a full conntrack table drops them until a retry \
              gets through.",
        kinds: &[FindingKind::SynRetransmitLadder],
        checks: &[
            (Check::DeterministicRungs, 2.0),
            (Check::NotNatEscapeRung, 2.0),
            (Check::OneDestination, 2.0),
            (Check::EarlyRung, 1.0),
        ],
        remediation: &[
            "on the destination node: nft list ruleset / iptables-save for DROP rules on the overlay or pod interfaces",
            "nstat -az TcpExtListenOverflows TcpExtListenDrops on the backend (accept queue)",
            "conntrack -S (drop, early_drop, insert_failed) and net.netfilter.nf_conntrack_max",
        ],
    },
    CauseSpec {
        id: CauseId::PathPacketLoss,
        title: "Packet loss on the path",
        why: "random loss costs one SYN now and then, two rarely, three more rarely still: a few probes \
              sit on the first rungs of the paths that cross the lossy link.",
        kinds: &[FindingKind::SynRetransmitLadder],
        checks: &[
            (Check::GeometricRungs, 3.0),
            (Check::FewProbes, 1.0),
            (Check::EarlyRung, 1.0),
        ],
        remediation: &[
            "ip -s link and ethtool -S on the nodes' NICs for drops and errors",
            "the underlay between the nodes (switch ports, MTU, bonding)",
        ],
    },
    CauseSpec {
        id: CauseId::IpvsConnReuse,
        title: "IPVS connection reuse (conn_reuse_mode=1)",
        why: "with kube-proxy in IPVS mode, a new connection whose source port matches an old IPVS connection \
              has its SYN dropped: one lost SYN, the 1 s rung, on some new connections.",
        kinds: &[FindingKind::SynRetransmitLadder],
        checks: &[
            (Check::IpvsMode, 3.0),
            (Check::FewProbes, 1.0),
            (Check::EarlyRung, 2.0),
        ],
        remediation: &[
            "only on IPVS clusters: sysctl net.ipv4.vs.conn_reuse_mode=0 on the nodes, or a kernel >= 5.9 with kube-proxy >= 1.22",
        ],
    },
    CauseSpec {
        id: CauseId::ConntrackDnsRace,
        title: "conntrack insert race on parallel DNS queries",
        why: "glibc sends the A and AAAA queries from one socket at once; conntrack drops one of them on an \
              insert race and the resolver waits its 5 s timeout.",
        kinds: &[FindingKind::DnsTimeoutLadder],
        checks: &[(Check::DnsRung, 3.0), (Check::ConntrackInsertFailed, 2.0)],
        remediation: &[
            "dnsConfig options single-request-reopen (glibc) in the pods",
            "NodeLocal DNSCache, so queries leave the node over TCP or not at all",
        ],
    },
    CauseSpec {
        id: CauseId::OverlayPmtuBlackhole,
        title: "Overlay path-MTU black hole",
        why: "the overlay adds 50 bytes (VXLAN) or 20 (IPIP); packets above the path MTU vanish when ICMP \
              fragmentation-needed is dropped, so handshakes and small responses pass and large bodies stall.",
        kinds: &[FindingKind::PmtuBlackhole],
        checks: &[(Check::LargeBodiesOnly, 3.0), (Check::CrossNodeOnly, 1.0)],
        remediation: &[
            "set the overlay MTU to the underlay MTU minus the encapsulation (1450 for VXLAN on 1500, 1480 for IPIP)",
            "let ICMP type 3 code 4 (fragmentation needed) through every firewall on the path",
        ],
    },
    CauseSpec {
        id: CauseId::NeighbourResolution,
        title: "Neighbour (ARP) resolution on first contact",
        why: "the first packets to a new peer wait while ARP resolves; lost solicitations are retried 1 s \
              apart, 3 times, so only the first flow to a peer is slow",
        kinds: &[FindingKind::FirstContactDelay],
        checks: &[(Check::FirstContactOnly, 3.0)],
        remediation: &[
            "ip -s neigh on the source: FAILED or INCOMPLETE entries, and net.ipv4.neigh.default.gc_thresh1..3 on large clusters",
            "the underlay for dropped ARP (broadcast limits, port security)",
        ],
    },
];

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
/// (required) check is missing is left out. The score is the weight of the
/// present evidence over the weight judged, where an unknown check weighs
/// half: what a node cannot know neither proves a cause nor rules it out,
/// but a cause known only from a little evidence ranks below one whose
/// evidence was seen.
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
