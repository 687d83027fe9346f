//! `[[slo]]`: objectives over probes and their burn-rate alert policies.

use std::time::Duration;

use serde::Deserialize;

use super::Dur;
use crate::model::{PathKind, ProbeResult};

/// One alert policy: page at 14.4x over 1 h and 5 min, ticket at 6x over
/// 6 h and 30 min, by default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnAlert {
    pub long: Dur,
    pub short: Dur,
    pub factor: f64,
    pub severity: String,
}

fn default_alerts() -> Vec<BurnAlert> {
    vec![
        BurnAlert {
            long: Dur::secs(3600),
            short: Dur::secs(300),
            factor: 14.4,
            severity: "page".into(),
        },
        BurnAlert {
            long: Dur::secs(6 * 3600),
            short: Dur::secs(1800),
            factor: 6.0,
            severity: "ticket".into(),
        },
    ]
}

/// One `[[slo]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    pub name: String,
    /// Target names the SLO covers; a trailing `*` matches a prefix. Empty: all.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Only probes on this path kind count, when set.
    pub path: Option<PathKind>,
    /// The share of good probes promised, such as 0.999.
    pub objective: f64,
    /// A good probe ends `ok` within this total time.
    pub threshold: Dur,
    /// The budget's window (informational for alerts, used in the rules).
    #[serde(default = "thirty_days")]
    pub window: Dur,
    #[serde(default = "default_alerts")]
    pub alerts: Vec<BurnAlert>,
}

fn thirty_days() -> Dur {
    Dur::secs(30 * 86_400)
}

impl SloConfig {
    /// What is wrong with this SLO, if anything, said so a person can fix it.
    pub fn problem(&self) -> Option<String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Some(format!(
                "SLO name \"{}\" must be letters, digits, - or _; it becomes a label value",
                self.name
            ));
        }
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Some(format!(
                "SLO \"{}\" has objective {}; write a share below 1, such as 0.999",
                self.name, self.objective
            ));
        }
        if self.alerts.is_empty() {
            return Some(format!(
                "SLO \"{}\" has no alerts; remove `alerts = []` to get the defaults",
                self.name
            ));
        }
        self.alerts.iter().find_map(|a| {
            (a.short.get() >= a.long.get() || a.factor <= 0.0).then(|| {
                format!(
                    "SLO \"{}\": an alert's short window must be shorter than its long one and its factor above 0",
                    self.name
                )
            })
        })
    }

    /// Whether a probe of `target` on `path` counts toward this SLO.
    pub fn covers(&self, target: &str, path: PathKind) -> bool {
        let named = self.targets.is_empty()
            || self.targets.iter().any(|t| match t.strip_suffix('*') {
                Some(prefix) => target.starts_with(prefix),
                None => t == target,
            });
        named && self.path.is_none_or(|p| p == path)
    }

    /// Whether a probe is good.
    pub fn good(&self, r: &ProbeResult) -> bool {
        r.outcome.is_ok() && r.phases.total <= self.threshold.get()
    }

    pub(crate) fn longest(&self) -> Duration {
        self.alerts
            .iter()
            .map(|a| a.long.get())
            .max()
            .unwrap_or_default()
    }

    pub(crate) fn shortest(&self) -> Duration {
        self.alerts
            .iter()
            .map(|a| a.short.get())
            .min()
            .unwrap_or_default()
    }
}
