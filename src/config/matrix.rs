//! `[matrix]`: the one-shot run, and its bounds.

use std::time::Duration;

use serde::Deserialize;

use super::validate::Checker;
use super::{ConfigError, Dur};

/// `[matrix]`: the one-shot run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatrixConfig {
    pub samples: u32,
    pub concurrency: usize,
    pub spacing: Dur,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        Self {
            samples: 20,
            concurrency: 256,
            spacing: Dur::millis(5),
        }
    }
}

impl MatrixConfig {
    /// Every bound of `[matrix]`.
    pub(super) fn check(&self, k: &Checker<'_>) -> Result<(), ConfigError> {
        let m = self;
        k.num(
            &["matrix", "samples"],
            m.samples,
            1..=1_000_000,
            "a run probes every target this many times",
        )?;
        k.num(
            &["matrix", "concurrency"],
            m.concurrency,
            1..=65_536,
            "each probe in flight holds a socket",
        )?;
        k.dur(
            &["matrix", "spacing"],
            m.spacing.get(),
            Duration::ZERO..=Duration::from_secs(60),
            "it is the pause between probe starts",
        )?;
        Ok(())
    }
}
