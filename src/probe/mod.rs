//! One probe is one fresh TCP connection, timed by phase, with the kernel's
//! evidence attached. [`Prober::probe`] never reuses a connection;
//! [`scheduler`] runs probes on fixed-rate schedules.

mod connect;
pub mod dns;
mod http;
pub mod limits;
pub use http::NODE_HEADER;
mod run;
pub mod scheduler;
pub mod socket;
mod stalls;
pub use stalls::StallHold;
pub mod tls;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::model::{SourceKind, Target, TargetNode};

/// The node names a response's `x-tailprobe-node` header may name: this
/// prober's node and every node its targets name. A header naming any other
/// node is not believed (the destination stays unknown and the probe says
/// so), so no target can mint series by inventing node names.
#[derive(Debug, Default)]
pub struct KnownNodes(RwLock<Arc<BTreeSet<String>>>);

impl KnownNodes {
    pub fn of(own: &str, targets: &[Arc<Target>]) -> Self {
        let k = Self::default();
        k.set(own, targets);
        k
    }

    /// Replaces the set with `own` and the nodes `targets` name.
    pub fn set(&self, own: &str, targets: &[Arc<Target>]) {
        let mut names: BTreeSet<String> = [own.to_string()].into();
        for t in targets {
            match &t.node {
                TargetNode::Known(n) => {
                    names.insert(n.clone());
                }
                TargetNode::Mixed(ns) => names.extend(ns.iter().cloned()),
                TargetNode::Unknown => {}
            }
        }
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(names);
    }

    pub fn contains(&self, node: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(node)
    }
}

/// Probes in flight right now, and the ones stalled in SYN retransmission
/// with what they have lost so far: what a progress display shows while a
/// 63 s rung runs, and the censored evidence the detector judges before the
/// probes land (see `model::Pending`).
#[derive(Debug, Default)]
pub struct InFlight {
    probes: AtomicUsize,
    stalls: stalls::Stalls,
}

impl InFlight {
    pub fn probes(&self) -> usize {
        self.probes.load(Ordering::Relaxed)
    }
    pub fn syn_stalled(&self) -> usize {
        self.stalls.len()
    }
    /// Every stall in progress: its series, its target's URL, and what it
    /// has lost so far.
    pub fn pending(&self) -> Vec<(crate::model::Dims, String, crate::model::Pending)> {
        self.stalls.pending()
    }
    /// Replaces the node's own connects stalled in SYN_SENT (passive
    /// mode's last reading): judged, exported and served with the probes'.
    pub fn set_passive_stalls(
        &self,
        stalls: Vec<(crate::model::Dims, String, crate::model::Pending)>,
    ) {
        self.stalls.set_passive(stalls);
    }
    /// Resolves when a stall begins or ends, or a probe that lost SYNs is
    /// recorded: when a verdict may have changed. One waiter; a change
    /// while no one waits is kept for the next.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.stalls.changed()
    }
}

/// Decrements an [`InFlight`] counter when dropped, so cancellation and
/// timeouts cannot leak a count.
struct CountGuard<'a>(&'a AtomicUsize);

impl<'a> CountGuard<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(c)
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs probes from one vantage point.
#[derive(Debug)]
pub struct Prober {
    pub source_node: Arc<str>,
    pub source_kind: SourceKind,
    /// How often a pending connect's `TCP_INFO` is read.
    pub syn_poll: Duration,
    /// `TCP_SYNCNT` for every probe socket, when set.
    pub syn_retries: Option<u8>,
    pub in_flight: Arc<InFlight>,
    /// The nodes a response header may name.
    pub known_nodes: Arc<KnownNodes>,
    /// The `https://` targets' client configurations.
    pub tls: tls::TlsClients,
}

impl Prober {
    pub fn new(source_node: &str, source_kind: SourceKind) -> Self {
        Self {
            source_node: source_node.into(),
            source_kind,
            syn_poll: Duration::from_millis(200),
            syn_retries: None,
            in_flight: Arc::default(),
            known_nodes: Arc::new(KnownNodes::of(source_node, &[])),
            tls: tls::TlsClients::default(),
        }
    }
}

impl Prober {
    /// A prober for the node and settings a configuration names.
    pub fn from_loaded(loaded: &crate::config::Loaded) -> Self {
        let p = &loaded.config.probe;
        let node = loaded.node();
        Self {
            known_nodes: Arc::new(KnownNodes::of(&node, &loaded.targets)),
            source_node: node.into(),
            source_kind: loaded.source_kind(),
            syn_poll: p.syn_poll.get(),
            syn_retries: p.syn_retries,
            in_flight: Arc::default(),
            tls: tls::TlsClients::default(),
        }
    }
}

#[cfg(test)]
mod tests;
