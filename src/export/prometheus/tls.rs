//! What `https://` probes add to `/metrics`: the served certificate's end
//! of validity, one series per target (blackbox_exporter's
//! `probe_ssl_earliest_cert_expiry`, under our prefix), so an alert can
//! read days left as `tailprobe_tls_cert_not_after_seconds - time()`.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::TargetLabels;

pub struct TlsMetrics {
    not_after: Family<TargetLabels, Gauge>,
}

impl TlsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let not_after = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "tls_cert_not_after_seconds",
            "The end of validity of the certificate an https:// target served at its last handshake, Unix seconds",
            not_after.clone(),
        );
        Self { not_after }
    }

    /// A handshake saw the certificate end at `not_after`.
    pub fn seen(&self, target: &str, not_after: i64) {
        self.not_after
            .get_or_create(&TargetLabels {
                target: target.into(),
            })
            .set(not_after);
    }

    /// The target is no longer probed.
    pub fn forget(&self, target: &str) {
        self.not_after.remove(&TargetLabels {
            target: target.into(),
        });
    }
}
