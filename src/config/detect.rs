//! `[detect]`: how the detector judges, and its bounds.

use std::time::Duration;

use serde::Deserialize;

use super::validate::{Checker, DAY, HOUR, SEC};
use super::{ConfigError, Dur};
use crate::model::DetectorConfig;

/// `[detect]`: how the detector judges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// The daemon re-evaluates its window this often.
    pub interval: Dur,
    /// The daemon judges the probes of this last stretch of time.
    pub window: Dur,
    pub background_syn_loss: f64,
    pub min_rung_probes: u64,
    /// An `https://` target whose certificate ends sooner is a finding.
    pub cert_expiry_warning: Dur,
}

impl Default for DetectConfig {
    fn default() -> Self {
        let d = DetectorConfig::default();
        Self {
            interval: Dur::secs(30),
            window: Dur::secs(600),
            background_syn_loss: d.background_syn_loss,
            min_rung_probes: d.min_rung_probes,
            cert_expiry_warning: Dur(d.cert_expiry_warning),
        }
    }
}

impl DetectConfig {
    pub fn detector(&self) -> DetectorConfig {
        DetectorConfig {
            background_syn_loss: self.background_syn_loss,
            min_rung_probes: self.min_rung_probes,
            cert_expiry_warning: self.cert_expiry_warning.get(),
            ..crate::model::DetectorConfig::default()
        }
    }
}

impl DetectConfig {
    /// Every bound of `[detect]`.
    pub(super) fn check(&self, k: &Checker<'_>) -> Result<(), ConfigError> {
        let d = self;
        k.dur(
            &["detect", "interval"],
            d.interval.get(),
            Duration::from_millis(100)..=HOUR,
            "the judge runs this often",
        )?;
        k.dur(
            &["detect", "window"],
            d.window.get(),
            SEC..=DAY,
            "the daemon keeps this much of every series in memory",
        )?;
        if !(d.background_syn_loss > 0.0 && d.background_syn_loss < 1.0) {
            return Err(k.err(
                &["detect", "background_syn_loss"],
                format!("[detect] background_syn_loss = {} must be above 0 and below 1; the default is 0.0001", d.background_syn_loss),
            ));
        }
        k.num(
            &["detect", "min_rung_probes"],
            d.min_rung_probes,
            1..=1_000_000,
            "the default is 2",
        )?;
        k.dur(
            &["detect", "cert_expiry_warning"],
            d.cert_expiry_warning.get(),
            Duration::ZERO..=365 * DAY,
            "a certificate ending sooner is a finding (the default is 14 days; 0 says only expired ones)",
        )?;
        Ok(())
    }
}
