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
}

impl NodeFacts {
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
    fn parses_kernel_releases() {
        assert_eq!(parse_kernel("3.10.0-1160.el7.x86_64"), Some((3, 10, 0)));
        assert_eq!(parse_kernel("6.18.44-fc-v657"), Some((6, 18, 44)));
    }
}
