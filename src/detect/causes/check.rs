//! The pieces of evidence causes expect, each judged present, missing or
//! unknown on a scope's [`Evidence`].

use crate::detect::Evidence;
use crate::detect::stat::RungShape;

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
    /// One address family is hit; the other family's twins of the hit
    /// paths (same nodes, network and kind of target) are clean. Where no
    /// twin exists (a one-family cluster) it is missing, not unknown:
    /// nothing was hidden from the probers, there is no second family.
    OneFamilyOnly,
}

impl Check {
    /// What the check looks for, said as evidence.
    pub(super) fn describe(self) -> &'static str {
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
            Check::OneFamilyOnly => {
                "one address family is hit; the other family's paths between the same nodes, through the same kind of target, are clean"
            }
        }
    }

    /// `Some(true)` present, `Some(false)` missing, `None` unknown.
    pub(super) fn holds(self, e: &Evidence) -> Option<bool> {
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
            Check::OneFamilyOnly => Some(e.one_family_only == Some(true)),
        }
    }
}
