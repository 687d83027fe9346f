//! `[passive]`: the node's own connections as evidence (`crate::passive`).
//! Off by default: it needs the BPF capabilities, which the prober's
//! DaemonSet gains only in the `deploy/passive` overlay.

use serde::Deserialize;

use super::Dur;
use std::time::Duration;

use super::ConfigError;
use super::validate::{Checker, DAY, SEC};

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

impl PassiveConfig {
    /// Every bound of `[passive]`.
    pub(super) fn check(&self, k: &Checker<'_>) -> Result<(), ConfigError> {
        let v = self;
        k.num(
            &["passive", "max_destinations"],
            v.max_destinations,
            16..=1_000_000,
            "each destination costs the kernel 1.6 KiB of map memory",
        )?;
        k.num(
            &["passive", "max_connecting"],
            v.max_connecting,
            64..=10_000_000,
            "each connection in SYN_SENT costs the kernel 48 bytes of map memory",
        )?;
        k.dur(
            &["passive", "interval"],
            v.interval.get(),
            Duration::from_millis(100)..=Duration::from_secs(60),
            "the detector sees passive connections this late at most",
        )?;
        k.dur(
            &["passive", "idle"],
            v.idle.get(),
            SEC..=DAY,
            "a destination idle this long leaves the kernel's map",
        )?;
        if let Some(i) = v.pod_netns.iter().position(|p| !p.starts_with('/')) {
            return Err(k.err(
                &["passive", "pod_netns", &i.to_string()],
                format!(
                    "[passive] pod_netns entry {} is not an absolute path; write a network namespace's path, such as \"/run/netns/NAME\" or \"/proc/PID/ns/net\"",
                    i + 1
                ),
            ));
        }
        Ok(())
    }
}
