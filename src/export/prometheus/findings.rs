//! The detector's verdict as a gauge, one series per finding (1 while
//! raised): a prober's own verdict, or the hub's over the cluster.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::FindingLabels;
use crate::detect::Finding;

pub struct FindingsMetrics {
    findings: Family<FindingLabels, Gauge>,
}

impl FindingsMetrics {
    /// Registers `findings` with `help` (whose verdict it is).
    pub fn register(registry: &mut Registry, help: &str) -> Self {
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register("findings", help, findings.clone());
        Self { findings }
    }

    /// Replaces the gauge with the latest verdict: a finding no longer
    /// raised leaves no series.
    pub fn set(&self, findings: &[Finding]) {
        self.findings.clear();
        for f in findings {
            self.findings
                .get_or_create(&FindingLabels {
                    kind: f.kind.as_str().into(),
                    scope: f.scope_key.id(),
                    cause: f
                        .likely_causes
                        .first()
                        .map(|c| c.id.as_str().to_string())
                        .unwrap_or_default(),
                    locus: f.locus.as_str().into(),
                })
                .set(1);
        }
    }
}
