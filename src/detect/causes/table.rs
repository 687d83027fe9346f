//! The causes themselves: what each predicts, with weights, its remediation
//! and where it puts the trouble. Data, not code.

use super::{CauseId, CauseSpec, Check};
use crate::detect::{FindingKind, Locus};

/// Causes that cannot pick one address family: a lossy link, a slow or
/// overflowing backend, a starved prober, a full conntrack table (shared by
/// both families) lose IPv4 and IPv6 alike.
pub const FAMILY_BLIND: &[CauseId] = &[
    CauseId::PathPacketLoss,
    CauseId::BackendSlow,
    CauseId::ProberStarved,
    CauseId::ListenQueueOverflow,
    CauseId::ConntrackTableFull,
];

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
        checks: &[
            (Check::Row, 3.0),
            (Check::ServiceOnly, 3.0),
            // The node's rules serve its own Services too: its same-node
            // paths through them break with the rest.
            (Check::SameNodeHit, 2.0),
        ],
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
    CauseSpec {
        id: CauseId::FamilyPath,
        title: "One address family's path is broken: its own route, MTU, neighbour discovery or filter rule",
        why: "IPv4 and IPv6 share the nodes, the links and the backends but little else: each family has its own \
              routes, its own overlay device (Calico's vxlan.calico and vxlan-v6.calico), its own MTU (VXLAN over \
              IPv6 costs 70 bytes, not 50), ARP against neighbour discovery, and its own filter tables (ip \
              against ip6, iptables against ip6tables). SYNs lost in one family only point at one of those.",
        kinds: &[FindingKind::SynRetransmitLadder],
        checks: &[
            (Check::OneFamilyOnly, 3.0),
            (Check::DeterministicRungs, 1.0),
            (Check::CrossNodeOnly, 1.0),
        ],
        remediation: &[
            "nft list ruleset (ip6 and inet tables) and ip6tables-save on the destination node: DROP rules for the hit family",
            "ip -6 route get <pod address> and ip -6 neigh show on both nodes: the route and the neighbour entry through the overlay",
            "the family's overlay device (Calico: vxlan-v6.calico for IPv6) and its MTU and FDB entries: ip -d link show, bridge fdb show dev vxlan-v6.calico",
        ],
        locus: Locus::Network,
    },
];
