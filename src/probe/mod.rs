//! One probe is one fresh TCP connection, timed by phase, with the kernel's
//! evidence attached. [`Prober::probe`] never reuses a connection;
//! [`scheduler`] runs probes on fixed-rate schedules.

pub mod dns;
mod http;
pub use http::NODE_HEADER;
pub mod scheduler;
pub mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::model::SourceKind;

/// Probes in flight right now, and how many of them are stuck in SYN
/// retransmission: what a progress display shows while a 63 s rung runs.
#[derive(Debug, Default)]
pub struct InFlight {
    probes: AtomicUsize,
    syn_stalled: AtomicUsize,
}

impl InFlight {
    pub fn probes(&self) -> usize {
        self.probes.load(Ordering::Relaxed)
    }
    pub fn syn_stalled(&self) -> usize {
        self.syn_stalled.load(Ordering::Relaxed)
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
}

impl Prober {
    pub fn new(source_node: &str, source_kind: SourceKind) -> Self {
        Self {
            source_node: source_node.into(),
            source_kind,
            syn_poll: Duration::from_millis(200),
            syn_retries: None,
            in_flight: Arc::default(),
        }
    }
}

impl Prober {
    /// A prober for the node and settings a configuration names.
    pub fn from_loaded(loaded: &crate::config::Loaded) -> Self {
        let p = &loaded.config.probe;
        Self {
            source_node: loaded.node().into(),
            source_kind: loaded.source_kind(),
            syn_poll: p.syn_poll.get(),
            syn_retries: p.syn_retries,
            in_flight: Arc::default(),
        }
    }
}
