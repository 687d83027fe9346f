//! What passive mode reports about itself. It owns these; `export::prometheus`
//! registers them with the rest.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ConnectLabels {
    /// `host`, `pod`, or `other` (a namespace not this node's).
    pub vantage: &'static str,
    /// `target` when a target's address named it, else `other`.
    pub destination: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct PassiveMetrics {
    pub(super) up: Gauge,
    pub(super) connects: Family<ConnectLabels, Counter>,
    pub(super) overflow: Counter,
    pub(super) destinations: Gauge,
    pub(super) connecting: Gauge,
}

impl PassiveMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "passive_up",
            "1 while passive mode reads the kernel's connections, 0 when it is on but could not load (the log says why)",
            m.up.clone(),
        );
        registry.register(
            "passive_connects",
            "Connects the kernel saw leave SYN_SENT, by vantage and whether a target's address named the destination (only those become series)",
            m.connects.clone(),
        );
        registry.register(
            "passive_overflow",
            "Connects not counted because the kernel's destinations map was full: raise [passive] max_destinations",
            m.overflow.clone(),
        );
        registry.register(
            "passive_destinations",
            "Aggregates (destination, outcome, SYNs lost) the kernel's map holds",
            m.destinations.clone(),
        );
        registry.register(
            "passive_connecting",
            "Connects of this node in SYN_SENT right now, as the kernel's map last showed",
            m.connecting.clone(),
        );
        m
    }
}
