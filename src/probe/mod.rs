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
pub mod tls;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::model::{SourceKind, Target, TargetNode};

/// The node names a response's `x-tailprobe-node` header may name: this
/// prober's node and every node its targets name. A header naming any other
/// node is not believed (the destination stays unknown and the probe says
/// so), so no target can mint series by inventing node names. The names
/// are shared: a probe's destination is one of them, never a new string.
#[derive(Debug, Default)]
pub struct KnownNodes(RwLock<Arc<BTreeSet<Arc<str>>>>);

impl KnownNodes {
    pub fn of(own: &str, targets: &[Arc<Target>]) -> Self {
        let k = Self::default();
        k.set(own, targets);
        k
    }

    /// Replaces the set with `own` and the nodes `targets` name.
    pub fn set(&self, own: &str, targets: &[Arc<Target>]) {
        let mut names: BTreeSet<Arc<str>> = [own.into()].into();
        for t in targets {
            match &t.node {
                TargetNode::Known(n) => {
                    names.insert(n.as_str().into());
                }
                TargetNode::Mixed(ns) => names.extend(ns.iter().map(|n| n.as_str().into())),
                TargetNode::Unknown => {}
            }
        }
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(names);
    }

    /// The shared name, when `node` is known.
    pub fn get(&self, node: &str) -> Option<Arc<str>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned()
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
    /// Where its probes count themselves in flight and stalled: the
    /// driver's `Stats::live`, so every reader of the stats sees them.
    pub live: Arc<crate::stats::Live>,
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
            live: Arc::default(),
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
            live: Arc::default(),
            tls: tls::TlsClients::default(),
        }
    }
}

#[cfg(test)]
mod tests;
