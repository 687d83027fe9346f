//! A node's facts as data: what its prober read of its kernel and devices.
//! Reading them is `node`'s job; judging them is the detector's.

use serde::{Deserialize, Serialize};

use super::SynSchedule;

/// An overlay device and the offload features that matter for the VXLAN
/// checksum bug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayDevice {
    pub name: String,
    /// Any `tx-checksum-*` feature active (what `ethtool -k` calls tx-checksumming).
    pub tx_checksumming: Option<bool>,
    pub tx_checksum_ip_generic: Option<bool>,
}

/// Kernel counters that name a failure class: since boot in
/// [`NodeFacts::counters`], their rise over the judged window in
/// [`NodeFacts::rises`] (only a rise is evidence: a count since boot may be
/// years old). `None` where the prober could not read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// `TcpExtListenOverflows`: SYNs or handshakes dropped because a
    /// listener's accept queue was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_overflows: Option<u64>,
    /// `TcpExtListenDrops`: every drop at a listener, overflows included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_drops: Option<u64>,
    /// `TcpExtTCPReqQFullDrop`: SYNs dropped with the SYN queue full and no
    /// syncookies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req_q_full_drops: Option<u64>,
    /// `TcpExtSyncookiesSent`: the SYN queue overflowed into syncookies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syncookies_sent: Option<u64>,
    /// `TcpExtIPReversePathFilter`: packets the reverse-path filter dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_path_drops: Option<u64>,
    /// conntrack's `drop`, `early_drop`, `insert_failed` and `invalid`,
    /// summed over CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_drops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_early_drops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_insert_failed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_invalid: Option<u64>,
    /// The neighbour tables' `table_fulls` (ARP and NDISC): a new peer's
    /// entry refused with the table at gc_thresh3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neigh_table_fulls: Option<u64>,
    /// The prober's own cgroup: CPU periods it was throttled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_periods: Option<u64>,
}

impl Counters {
    /// Every counter with its field name, for iterating in one order.
    pub fn fields(&self) -> [(&'static str, Option<u64>); 11] {
        [
            ("listen_overflows", self.listen_overflows),
            ("listen_drops", self.listen_drops),
            ("req_q_full_drops", self.req_q_full_drops),
            ("syncookies_sent", self.syncookies_sent),
            ("reverse_path_drops", self.reverse_path_drops),
            ("conntrack_drops", self.conntrack_drops),
            ("conntrack_early_drops", self.conntrack_early_drops),
            ("conntrack_insert_failed", self.conntrack_insert_failed),
            ("conntrack_invalid", self.conntrack_invalid),
            ("neigh_table_fulls", self.neigh_table_fulls),
            ("throttled_periods", self.throttled_periods),
        ]
    }

    fn field_mut(&mut self, name: &str) -> Option<&mut Option<u64>> {
        Some(match name {
            "listen_overflows" => &mut self.listen_overflows,
            "listen_drops" => &mut self.listen_drops,
            "req_q_full_drops" => &mut self.req_q_full_drops,
            "syncookies_sent" => &mut self.syncookies_sent,
            "reverse_path_drops" => &mut self.reverse_path_drops,
            "conntrack_drops" => &mut self.conntrack_drops,
            "conntrack_early_drops" => &mut self.conntrack_early_drops,
            "conntrack_insert_failed" => &mut self.conntrack_insert_failed,
            "conntrack_invalid" => &mut self.conntrack_invalid,
            "neigh_table_fulls" => &mut self.neigh_table_fulls,
            "throttled_periods" => &mut self.throttled_periods,
            _ => return None,
        })
    }

    /// Sets a counter by its field name (see [`Counters::fields`]).
    pub fn set(&mut self, name: &str, value: Option<u64>) {
        if let Some(f) = self.field_mut(name) {
            *f = value;
        }
    }

    /// What rose from `earlier` to `self`, counter by counter; a counter
    /// that went back (a reboot) or is missing on either side is `None`.
    pub fn rise_since(&self, earlier: &Counters) -> Counters {
        let mut out = Counters::default();
        for ((name, now), (_, before)) in self.fields().into_iter().zip(earlier.fields()) {
            out.set(
                name,
                match (before, now) {
                    (Some(a), Some(b)) if b >= a => Some(b - a),
                    _ => None,
                },
            );
        }
        out
    }

    /// Two nodes' (or two namespaces') counters added, where either has one.
    pub fn plus(&self, other: &Counters) -> Counters {
        let mut out = Counters::default();
        for ((name, a), (_, b)) in self.fields().into_iter().zip(other.fields()) {
            out.set(
                name,
                match (a, b) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
                },
            );
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_none())
    }

    /// Every counter read, none risen: a quiet node's rises.
    pub fn zero() -> Counters {
        let mut out = Counters::default();
        for (name, _) in Counters::default().fields() {
            out.set(name, Some(0));
        }
        out
    }
}

/// One node's facts, as its prober saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub node: String,
    pub kernel: Option<String>,
    pub syn_retries: Option<u32>,
    /// Absent before Linux 6.5: the classic ladder.
    pub syn_linear_timeouts: Option<u32>,
    pub txrehash: Option<u32>,
    /// `UdpInCsumErrors` since boot: this node as a receiver.
    pub udp_in_csum_errors: Option<u64>,
    /// How much `udp_in_csum_errors` rose over the judged window; `None`
    /// until two readings exist. A count since boot may be years old, so
    /// only the rise is evidence.
    #[serde(default)]
    pub udp_in_csum_errors_delta: Option<u64>,
    pub conntrack_insert_failed: Option<u64>,
    /// `nf_conntrack_udp_timeout`: how long a UDP entry that saw no reply
    /// lives (30 s by default). A NATed VXLAN flow whose SYNs get no answer
    /// keeps its entry until a quiet gap outlasts this.
    #[serde(default)]
    pub conntrack_udp_timeout: Option<u32>,
    /// `nf_conntrack_udp_timeout_stream`: the same once replies were seen.
    #[serde(default)]
    pub conntrack_udp_timeout_stream: Option<u32>,
    /// kube-proxy's IPVS dummy device (`kube-ipvs0`) exists: IPVS mode.
    /// `None` when the interfaces could not be read.
    #[serde(default)]
    pub kube_proxy_ipvs: Option<bool>,
    pub overlays: Vec<OverlayDevice>,
    /// Counters that name failure classes, since boot, in the node's own
    /// network namespace (the host prober's).
    #[serde(default, skip_serializing_if = "Counters::is_empty")]
    pub counters: Counters,
    /// Their rise over the judged window.
    #[serde(default, skip_serializing_if = "Counters::is_empty")]
    pub rises: Counters,
    /// The rise of the same counters in the node's pod prober's own network
    /// namespace, where its echo target listens (a pod prober reads them
    /// there; the hub adds them to its node's): a backend's accept queue is
    /// counted in the backend's namespace.
    #[serde(default, skip_serializing_if = "Counters::is_empty")]
    pub pod_rises: Counters,
    /// conntrack entries in use and the table's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_max: Option<u64>,
    /// IPv4 neighbour entries and the table's hard limit (gc_thresh3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neigh_entries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neigh_gc_thresh3: Option<u64>,
    /// Interfaces whose reverse-path filter is strict (`rp_filter` 1, the
    /// larger of `all` and the interface's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rp_filter_strict: Vec<String>,
    /// `net.ipv4.vs.conn_reuse_mode`, where IPVS is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipvs_conn_reuse_mode: Option<u32>,
    /// The node's zone (`topology.kubernetes.io/zone` from
    /// `TAILPROBE_NODE_LABELS`), for scopes between zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

impl NodeFacts {
    /// Facts a pod-network prober read: its counters are its own pod's
    /// namespace's, where its echo target listens (the backend's end of a
    /// pair), kept apart from the node's own.
    pub fn read_in_a_pod(mut self) -> Self {
        self.pod_rises = std::mem::take(&mut self.rises);
        self
    }

    /// The SYN schedule this node's kernel follows: Windows nodes (their
    /// `kernel` reads "Windows ...") wait 3 s, then 6 s.
    pub fn syn_schedule(&self) -> SynSchedule {
        if self
            .kernel
            .as_deref()
            .is_some_and(|k| k.starts_with("Windows"))
        {
            return SynSchedule::windows();
        }
        SynSchedule::linux(
            self.syn_retries.unwrap_or(6),
            self.syn_linear_timeouts.unwrap_or(0),
        )
    }

    /// The rung on which a SYN ladder through a NATed VXLAN flow escapes:
    /// the first retransmission after a quiet gap longer than the UDP
    /// conntrack timeout, when the stale NATed entry has expired; or the
    /// first retransmission when `txrehash` gives the flow a new VXLAN
    /// source port. `None` when neither is known or no gap is long enough.
    pub fn nat_escape_rung(&self) -> Option<u32> {
        if self.txrehash == Some(1) {
            return Some(1);
        }
        self.syn_schedule()
            .first_retransmit_after_gap(f64::from(self.conntrack_udp_timeout?))
    }

    /// (major, minor, patch) of the kernel release.
    pub fn kernel_version(&self) -> Option<(u32, u32, u32)> {
        parse_kernel(self.kernel.as_deref()?)
    }
}

/// `5.4.0-107-generic` -> (5, 4, 0).
pub fn parse_kernel(release: &str) -> Option<(u32, u32, u32)> {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nated_flow_escapes_after_the_first_gap_past_the_udp_timeout() {
        let node = |linear, timeout, rehash| NodeFacts {
            syn_linear_timeouts: Some(linear),
            conntrack_udp_timeout: timeout,
            txrehash: rehash,
            ..NodeFacts::default()
        };
        // Classic gaps 1, 2, 4, 8, 16, 32 s: the 32 s gap outlasts 30 s.
        assert_eq!(node(0, Some(30), Some(0)).nat_escape_rung(), Some(6));
        // Linear 4: gaps 1, 1, 1, 1, 1, 2, 4, 8, 16, 32 s: rung 10 (67 s).
        assert_eq!(node(4, Some(30), None).nat_escape_rung(), Some(10));
        assert_eq!(node(0, Some(10), Some(0)).nat_escape_rung(), Some(5));
        // A rehash moves the flow to a new entry at the first retransmit.
        assert_eq!(node(0, Some(30), Some(1)).nat_escape_rung(), Some(1));
        assert_eq!(node(0, None, Some(1)).nat_escape_rung(), Some(1));
        // No gap outlasts 2 minutes: every SYN dies.
        assert_eq!(node(0, Some(120), Some(0)).nat_escape_rung(), None);
        assert_eq!(node(0, None, Some(0)).nat_escape_rung(), None);
    }

    #[test]
    fn counters_rise_and_add_field_by_field() {
        let at = |overflows, drops| Counters {
            listen_overflows: overflows,
            conntrack_drops: drops,
            ..Counters::default()
        };
        let rise = at(Some(15), Some(3)).rise_since(&at(Some(10), Some(5)));
        assert_eq!(rise.listen_overflows, Some(5));
        assert_eq!(rise.conntrack_drops, None, "went back: a reboot");
        assert_eq!(
            at(None, Some(1))
                .rise_since(&at(None, Some(1)))
                .listen_overflows,
            None
        );
        let sum = at(Some(2), None).plus(&at(None, None));
        assert_eq!((sum.listen_overflows, sum.conntrack_drops), (Some(2), None));
        assert!(Counters::default().is_empty() && !at(Some(0), None).is_empty());
    }

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_kernel("3.10.0-1160.el7.x86_64"), Some((3, 10, 0)));
        assert_eq!(parse_kernel("6.18.44-fc-v657"), Some((6, 18, 44)));
    }
}
