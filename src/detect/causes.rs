//! The knowledge base of causes: data, not code. Each cause lists the
//! evidence that points to it; a finding's likely causes are ranked by how
//! much of that evidence is present, and each says what was present and
//! what was missing.

use serde::{Deserialize, Serialize};

use super::stat::RungShape;
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
    /// The hit paths go through Services while the straight paths to the
    /// pods from the same sources are clean.
    ServiceOnly,
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
    /// Large responses fail or stall where small ones to the same node pass.
    LargeBodiesOnly,
    /// Only the first connections to each path were slow; later ones fast.
    FirstContactOnly,
    /// Answers came late after a fast handshake.
    LateAnswers,
    /// Same-node and cross-node paths are hit alike.
    SameAndCrossNode,
    /// The prober started its probes late against their schedule.
    ProberLate,
    /// The prober's cgroup throttled it over the window.
    ProberThrottled,
    /// The scope's one destination is hit from every source probing it.
    Column,
    /// One source is hit; the others' paths to the same places are clean.
    Row,
    /// A same-node path is hit.
    SameNodeHit,
    /// The destinations' listen queues dropped SYNs (ListenOverflows rose).
    DestListenDrops,
    /// conntrack dropped flows at either end (drop, early_drop rose).
    ConntrackDropsRose,
    /// A conntrack table is 90 % full or more.
    ConntrackNearFull,
    /// conntrack insert_failed rose on a source.
    InsertFailedRose,
    /// A source's neighbour table refused entries (table_fulls rose).
    NeighTableFull,
    /// A source's neighbour table is at 90 % of gc_thresh3 or more.
    NeighNearLimit,
    /// The reverse-path filter dropped packets (IPReversePathFilter rose).
    ReversePathDrops,
    /// Some interface filters reverse paths strictly (rp_filter 1).
    RpFilterStrict,
    /// IPVS conn_reuse_mode is 1.
    IpvsConnReuseOn,
    /// The dominant rung is exactly one lost SYN (1 s).
    OneSecondRung,
    /// The lookups sent A and AAAA at once from one socket.
    ParallelQueries,
    /// No drop counter at either end rose (listen queue, conntrack,
    /// neighbour table, reverse-path filter): nothing on the nodes
    /// explains the loss.
    NoDropCounterRose,
}

impl Check {
    /// What the check looks for, said as evidence.
    fn describe(self) -> &'static str {
        match self {
            Check::CrossNodeOnly => "only cross-node paths are hit, same-node paths are clean",
            Check::HostNetworkOnly => "host-network probes are hit, pod-network probes are clean",
            Check::ServiceOnly => {
                "paths through a Service are hit, the straight paths to the same pods are clean"
            }
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
            Check::LargeBodiesOnly => "large responses fail while small ones to the same node pass",
            Check::FirstContactOnly => "slow connects only on the first contact with each path",
            Check::LateAnswers => "answers began late after a fast handshake",
            Check::SameAndCrossNode => "same-node and cross-node paths are hit alike",
            Check::ProberLate => "the prober started its probes late against their schedule",
            Check::ProberThrottled => {
                "the prober's cgroup throttled it (cpu.stat nr_throttled rose)"
            }
            Check::Column => {
                "every source that probes the destination is hit there: a column of the matrix"
            }
            Check::Row => {
                "one source is hit; the other sources' paths to the same nodes are clean: a row"
            }
            Check::SameNodeHit => "a same-node path is hit: not the overlay",
            Check::DestListenDrops => {
                "the destination's listen queue dropped SYNs (TcpExtListenOverflows/ListenDrops rose)"
            }
            Check::ConntrackDropsRose => "conntrack dropped new flows (drop, early_drop rose)",
            Check::ConntrackNearFull => "a conntrack table is 90 % full or more",
            Check::InsertFailedRose => "conntrack insert_failed rose on the source",
            Check::NeighTableFull => {
                "the source's neighbour table refused new entries (table_fulls rose)"
            }
            Check::NeighNearLimit => {
                "the source's neighbour table is at 90 % of gc_thresh3 or more"
            }
            Check::ReversePathDrops => {
                "the reverse-path filter dropped packets (TcpExtIPReversePathFilter rose)"
            }
            Check::RpFilterStrict => "an interface filters reverse paths strictly (rp_filter 1)",
            Check::IpvsConnReuseOn => "net.ipv4.vs.conn_reuse_mode is 1",
            Check::OneSecondRung => "the probes lost exactly one SYN (the 1 s rung)",
            Check::ParallelQueries => "A and AAAA left one socket at once (what the race needs)",
            Check::NoDropCounterRose => {
                "no drop counter rose on the nodes at either end (listen queue, conntrack, neighbour table, reverse-path filter)"
            }
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
            Check::ServiceOnly => e.pod_ip_probed.then_some(e.service_hit && !e.pod_ip_hit),
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
            Check::LargeBodiesOnly => Some(e.large_bodies_only),
            Check::FirstContactOnly => Some(e.first_contact_only),
            Check::LateAnswers => Some(e.late_answers),
            Check::SameAndCrossNode => Some(e.same_node_hit && e.cross_node_hit),
            Check::ProberLate => Some(e.prober_late),
            Check::ProberThrottled => e.prober_throttled,
            Check::Column => e.column,
            Check::Row => e.row,
            Check::SameNodeHit => e.same_node_probed.then_some(e.same_node_hit),
            Check::DestListenDrops => e.dest_listen_drops.map(|n| n > 0),
            Check::ConntrackDropsRose => e.conntrack_drops.map(|n| n > 0),
            Check::ConntrackNearFull => e.conntrack_near_full,
            Check::InsertFailedRose => e.source_insert_failed.map(|n| n > 0),
            Check::NeighTableFull => e.neigh_table_fulls.map(|n| n > 0),
            Check::NeighNearLimit => e.neigh_near_limit,
            Check::ReversePathDrops => e.reverse_path_drops.map(|n| n > 0),
            Check::RpFilterStrict => e.rp_filter_strict,
            Check::IpvsConnReuseOn => e.ipvs_conn_reuse,
            Check::OneSecondRung => e.dominant_rung.map(|k| k == 1),
            Check::ParallelQueries => Some(e.dns_parallel),
            Check::NoDropCounterRose => {
                let rose = [
                    e.dest_listen_drops,
                    e.conntrack_drops,
                    e.source_insert_failed,
                    e.neigh_table_fulls,
                    e.reverse_path_drops,
                ];
                (!rose.iter().all(Option::is_none)).then(|| rose.iter().flatten().all(|n| *n == 0))
            }
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
            (Check::ServiceOnly, 2.0),
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
        locus: Locus::Network,
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
        locus: Locus::Network,
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
            // A link between nodes: a hit same-node path never crossed it.
            (Check::CrossNodeOnly, 1.0),
            // The diagnosis left when the nodes' own counters explain nothing.
            (Check::NoDropCounterRose, 1.0),
        ],
        remediation: &[
            "ip -s link and ethtool -S on the nodes' NICs for drops and errors",
            "the underlay between the nodes (switch ports, MTU, bonding)",
        ],
        locus: Locus::Network,
    },
    CauseSpec {
        id: CauseId::IpvsConnReuse,
        title: "IPVS connection reuse (conn_reuse_mode=1)",
        why: "with kube-proxy in IPVS mode, a new connection whose source port matches an old IPVS connection \
              has its SYN dropped: one lost SYN, the 1 s rung, on some new connections.",
        kinds: &[FindingKind::SynRetransmitLadder],
        checks: &[
            (Check::IpvsMode, 3.0),
            (Check::IpvsConnReuseOn, 2.0),
            (Check::OneSecondRung, 2.0),
            (Check::FewProbes, 1.0),
        ],
        remediation: &[
            "only on IPVS clusters: sysctl net.ipv4.vs.conn_reuse_mode=0 on the nodes, or a kernel >= 5.9 with kube-proxy >= 1.22",
        ],
        locus: Locus::Network,
    },
    CauseSpec {
        id: CauseId::ConntrackDnsRace,
        title: "conntrack insert race on parallel DNS queries",
        why: "glibc sends the A and AAAA queries from one socket at once; conntrack drops one of them on an \
              insert race and the resolver waits its 5 s timeout.",
        kinds: &[FindingKind::DnsTimeoutLadder],
        checks: &[
            (Check::ParallelQueries, 3.0),
            (Check::InsertFailedRose, 3.0),
            (Check::DnsRung, 1.0),
        ],
        remediation: &[
            "dnsConfig options single-request-reopen (glibc) in the pods",
            "NodeLocal DNSCache, so queries leave the node over TCP or not at all",
        ],
        locus: Locus::Dns,
    },
    CauseSpec {
        id: CauseId::DnsPathLoss,
        title: "DNS queries lost on the way to the resolver",
        why: "a query or its answer is lost like any packet on the path to the resolver's node, and the \
              client waits out its 5 s timeout before asking again; lookups to a resolver on the client's \
              own node, which cross no other node, are on time.",
        kinds: &[FindingKind::DnsTimeoutLadder],
        checks: &[
            (Check::DnsRung, 3.0),
            (Check::CrossNodeOnly, 2.0),
            (Check::OneDestination, 1.0),
        ],
        remediation: &[
            "the path to the resolver's node: its underlay and overlay (the same sources' other paths there)",
            "NodeLocal DNSCache: lookups answered on the node, and sent on over TCP",
            "the resolver's own health on that node: coredns_dns_requests_total and its drops",
        ],
        locus: Locus::Dns,
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
        locus: Locus::Network,
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
        locus: Locus::Network,
    },
    CauseSpec {
        id: CauseId::BackendSlow,
        title: "The backend answers late",
        why: "the connection is up at once, then a share of requests waits seconds for the first byte: the \
              server's own time (a pause, a saturated worker pool, a slow dependency), which no network fix \
              shortens.",
        kinds: &[FindingKind::ServerTimeTail],
        checks: &[(Check::LateAnswers, 3.0), (Check::SameAndCrossNode, 1.0)],
        remediation: &[
            "the backend's own latency: its logs and metrics at the slow answers' times (the example traces)",
            "pauses in the server process (garbage collection, CPU throttling: cpu.stat nr_throttled in its cgroup)",
            "its dependencies and worker pool: a queue that fills shows as a share of slow answers",
        ],
        locus: Locus::Backend,
    },
    CauseSpec {
        id: CauseId::ListenQueueOverflow,
        title: "The backend's accept queue overflows",
        why: "the destination's listening socket holds no more pending connections (its backlog is full: \
              the server accepts too slowly), and the kernel drops new SYNs until there is room; every path \
              to it suffers, its own node's included, so it is not the network.",
        kinds: &[FindingKind::SynRetransmitLadder, FindingKind::ProbeFailures],
        checks: &[
            (Check::Column, 3.0),
            (Check::DestListenDrops, 3.0),
            (Check::SameNodeHit, 2.0),
        ],
        remediation: &[
            "on the destination: nstat -az TcpExtListenOverflows TcpExtListenDrops, and ss -ltn (Recv-Q at Send-Q is a full queue)",
            "a larger backlog (the server's listen() backlog and net.core.somaxconn) and a faster accept loop",
            "more backend replicas, or fewer connections (keep-alive for real clients)",
        ],
        locus: Locus::Backend,
    },
    CauseSpec {
        id: CauseId::ConntrackTableFull,
        title: "The conntrack table is full",
        why: "with the connection-tracking table at nf_conntrack_max, new flows are dropped (or old ones \
              evicted early) until entries expire: SYNs vanish at random on every path through that node.",
        kinds: &[FindingKind::SynRetransmitLadder, FindingKind::ProbeFailures],
        checks: &[
            (Check::ConntrackDropsRose, 3.0),
            (Check::ConntrackNearFull, 2.0),
            (Check::GeometricRungs, 1.0),
        ],
        remediation: &[
            "conntrack -S (drop, early_drop) and net.netfilter.nf_conntrack_count against nf_conntrack_max on the nodes at both ends",
            "a larger table: kube-proxy --conntrack-max-per-core / --conntrack-min, or sysctl net.netfilter.nf_conntrack_max",
            "what fills it: conntrack -L | awk '{print $3, $4}' | sort | uniq -c | sort -rn | head (short-lived flows, a scan)",
        ],
        locus: Locus::Network,
    },
    CauseSpec {
        id: CauseId::NeighbourTableOverflow,
        title: "The neighbour (ARP) table overflows",
        why: "with more peers than net.ipv4.neigh.default.gc_thresh3, the kernel refuses new neighbour entries \
              (\"neighbour table overflow\"): packets to a peer without an entry wait or are dropped, on the \
              paths from the node whose table is full.",
        kinds: &[
            FindingKind::SynRetransmitLadder,
            FindingKind::FirstContactDelay,
            FindingKind::ProbeFailures,
        ],
        checks: &[
            (Check::NeighTableFull, 3.0),
            (Check::NeighNearLimit, 2.0),
            (Check::Row, 1.0),
            (Check::EarlyRung, 1.0),
        ],
        remediation: &[
            "raise net.ipv4.neigh.default.gc_thresh1/2/3 (and net.ipv6.neigh.default.*) above the peers a node talks to: its pods and every node",
            "ip -4 neigh | wc -l against gc_thresh3; dmesg for \"neighbour table overflow\"",
        ],
        locus: Locus::Network,
    },
    CauseSpec {
        id: CauseId::SnatPortClash,
        title: "SNAT source-port clash on masquerade",
        why: "two masqueraded flows picked the same source port at once; conntrack refuses the second one's \
              entry (insert_failed) and its SYN is dropped: one lost SYN, the 1 s rung, on a few new \
              connections that leave the node through SNAT.",
        kinds: &[FindingKind::SynRetransmitLadder],
        checks: &[
            (Check::InsertFailedRose, 3.0),
            (Check::OneSecondRung, 2.0),
            (Check::HostNetworkOnly, 1.0),
            (Check::FewProbes, 1.0),
        ],
        remediation: &[
            "masquerade with fully random ports (--random-fully; kube-proxy uses it since 1.16; check the CNI's own masquerade rule)",
            "more addresses to SNAT to, or no SNAT for in-cluster traffic",
        ],
        locus: Locus::Network,
    },
    CauseSpec {
        id: CauseId::ReversePathFilter,
        title: "The reverse-path filter drops an asymmetric path",
        why: "with rp_filter strict, a packet arriving on an interface the node would not route its reply \
              through is dropped: on nodes with several interfaces or policy routing, a whole direction of a \
              path disappears.",
        kinds: &[FindingKind::SynRetransmitLadder, FindingKind::ProbeFailures],
        checks: &[
            (Check::ReversePathDrops, 3.0),
            (Check::RpFilterStrict, 2.0),
            (Check::OneDestination, 1.0),
        ],
        remediation: &[
            "sysctl net.ipv4.conf.<interface>.rp_filter=2 (loose) on the interfaces of the asymmetric path; the larger of all and the interface's value applies",
            "nstat -az TcpExtIPReversePathFilter on both ends; ip route get <source> iif <interface> to see the reply's route",
        ],
        locus: Locus::Network,
    },
    CauseSpec {
        id: CauseId::StaleProxyRules,
        title: "Stale Service rules on one node",
        why: "only one node's paths through Services break while its straight paths to the same pods work and \
              the other nodes reach the same Services: that node's kube-proxy rules no longer match the \
              cluster (a stuck sync, a failed restart).",
        kinds: &[FindingKind::SynRetransmitLadder, FindingKind::ProbeFailures],
        checks: &[(Check::Row, 3.0), (Check::ServiceOnly, 3.0)],
        remediation: &[
            "compare the node's Service rules with another node's: nft list table ip kube-proxy (or iptables-save -t nat) | grep <ClusterIP>",
            "kube-proxy's health on that node: its /healthz (port 10256), kubeproxy_sync_proxy_rules_last_timestamp_seconds; restart it",
        ],
        locus: Locus::Network,
    },
    CauseSpec {
        id: CauseId::ProberStarved,
        title: "The prober is starved of CPU",
        why: "its timers fire late and its probes start behind schedule: a busy node, or a cgroup that \
              throttles it, stops the prober itself, and that stop lands in its own timings.",
        kinds: &[FindingKind::ProberStarved],
        checks: &[(Check::ProberLate, 2.0), (Check::ProberThrottled, 2.0)],
        remediation: &[
            "the prober's CPU: its request against the node's load (kubectl top node), and no CPU limit (CFS throttling stops it for the rest of each 100 ms period)",
            "fewer probes per prober: a longer [probe] interval, or fewer targets ([kubernetes] remote_nodes_per_round)",
        ],
        locus: Locus::Prober,
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
/// (required) check is missing is left out. The score is the weight of the present evidence over the
/// weight judged, where an unknown check weighs half: what a node cannot
/// know neither proves a cause nor rules it out, but a cause known only
/// from a little evidence ranks below one whose evidence was seen.
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
