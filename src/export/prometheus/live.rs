//! The probes in motion: how many run, how many wait on SYN
//! retransmission, and by series and SYNs lost, read from the stats' live
//! half at every scrape.

use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{PathLabels, StallLabels};
use crate::stats::Live;

pub struct LiveMetrics {
    in_flight: Gauge,
    syn_stalled: Gauge,
    stalled: Family<StallLabels, Gauge>,
    live: Arc<Live>,
}

impl LiveMetrics {
    pub fn register(registry: &mut Registry, live: Arc<Live>) -> Self {
        let in_flight = Gauge::default();
        registry.register("probes_in_flight", "Probes running now", in_flight.clone());
        let syn_stalled = Gauge::default();
        registry.register(
            "probes_syn_stalled",
            "Probes now waiting on SYN retransmission",
            syn_stalled.clone(),
        );
        let stalled = Family::<StallLabels, Gauge>::default();
        registry.register(
            "probes_stalled",
            "Probes now waiting in SYN_SENT, by series and SYNs lost so far: a path losing SYNs, seconds before its probes land on a rung",
            stalled.clone(),
        );
        Self {
            in_flight,
            syn_stalled,
            stalled,
            live,
        }
    }

    /// Reads the live half now; rebuilt at every scrape, so a stall that
    /// ended leaves no series.
    pub fn refresh(&self) {
        self.in_flight.set(self.live.probes() as i64);
        let pending = self.live.pending();
        self.syn_stalled.set(pending.len() as i64);
        self.stalled.clear();
        for stall in &pending {
            self.stalled
                .get_or_create(&StallLabels {
                    path: PathLabels::of(&stall.dims),
                    syns_lost: stall.pending.syn_retransmits.to_string(),
                })
                .inc();
        }
    }
}
