//! The SLOs on `/metrics`: the probes counted toward each, the good ones,
//! and every burn-rate alert's rates and state. The rules `tailprobe rules`
//! writes read these series.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{BurnLabels, SloLabels};
use crate::slo::rules::prometheus_duration;
use crate::slo::{AlertState, BurnAlert};

pub struct SloMetrics {
    probes: Family<SloLabels, Counter>,
    good: Family<SloLabels, Counter>,
    burn: Family<BurnLabels, Gauge<f64, AtomicU64>>,
    alert: Family<BurnLabels, Gauge>,
}

impl SloMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            probes: Family::default(),
            good: Family::default(),
            burn: Family::default(),
            alert: Family::default(),
        };
        registry.register(
            "slo_probes",
            "Probes counted toward each SLO",
            m.probes.clone(),
        );
        registry.register(
            "slo_good",
            "Probes that ended ok within each SLO's threshold",
            m.good.clone(),
        );
        registry.register(
            "slo_burn_rate",
            "Error-budget burn rate per SLO alert window (1 = exactly on budget)",
            m.burn.clone(),
        );
        registry.register(
            "slo_alert",
            "1 while an SLO burn-rate alert fires (window is the long window)",
            m.alert.clone(),
        );
        m
    }

    /// A probe counted toward the SLO named `slo`.
    pub fn probe(&self, slo: &str, good: bool) {
        let l = SloLabels { slo: slo.into() };
        self.probes.get_or_create(&l).inc();
        if good {
            self.good.get_or_create(&l).inc();
        }
    }

    /// Every SLO alert's burn rates and state.
    pub fn set(&self, states: &[(AlertState, BurnAlert)]) {
        for (s, a) in states {
            for (window, burn) in [(a.long.get(), s.long_burn), (a.short.get(), s.short_burn)] {
                self.burn
                    .get_or_create(&BurnLabels {
                        slo: s.slo.clone(),
                        severity: s.severity.clone(),
                        window: prometheus_duration(window),
                    })
                    .set(burn);
            }
            self.alert
                .get_or_create(&BurnLabels {
                    slo: s.slo.clone(),
                    severity: s.severity.clone(),
                    window: prometheus_duration(a.long.get()),
                })
                .set(i64::from(s.firing));
        }
    }
}
