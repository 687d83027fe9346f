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
    pub udp_in_csum_errors: Option<u64>,
    pub conntrack_insert_failed: Option<u64>,
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
    fn parses_kernel_releases() {
        assert_eq!(parse_kernel("3.10.0-1160.el7.x86_64"), Some((3, 10, 0)));
        assert_eq!(parse_kernel("6.18.44-fc-v657"), Some((6, 18, 44)));
    }
}
