//! `[passive]`: the node's own connections as evidence (`crate::passive`).
//! Off by default: it needs the BPF capabilities, which the prober's
//! DaemonSet gains only in the `deploy/passive` overlay.

use serde::Deserialize;

use super::Dur;

/// `[passive]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveConfig {
    pub enabled: bool,
    /// Network namespaces (paths such as `/run/netns/NAME`) whose
    /// connections count as this node's pods. Empty: every namespace other
    /// than the prober's own, which is what a host-network prober sees on a
    /// real node.
    pub pod_netns: Vec<String>,
    /// Destinations (address, port, outcome, SYNs lost) the kernel keeps at
    /// once; past it new ones are counted as overflow.
    pub max_destinations: u32,
    /// Connections in SYN_SENT tracked at once (least recently used first
    /// out).
    pub max_connecting: u32,
    /// How often the maps are read.
    pub interval: Dur,
    /// A destination with no new connection for this long is removed from
    /// the kernel's map, to make room.
    pub idle: Dur,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            pod_netns: Vec::new(),
            max_destinations: 2048,
            max_connecting: 65_536,
            interval: Dur::secs(1),
            idle: Dur::secs(600),
        }
    }
}
