//! `[probe]`: the defaults every target takes, and their bounds.

use serde::Deserialize;

use super::validate::{Checker, HOUR, MS, TIMING};
use super::{ConfigError, Dur, StatusRange};
use crate::model::Timing;
use std::time::Duration;

/// `[probe]`: defaults for every target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// `false`: send no synthetic probe. Targets are still discovered, to
    /// name the destinations of passive connections and for requested
    /// rounds.
    pub enabled: bool,
    pub interval: Dur,
    pub jitter: Dur,
    pub timeout: Dur,
    pub connect_timeout: Option<Dur>,
    pub first_byte_timeout: Dur,
    /// `https://` only: the TLS handshake's bound after the connect.
    pub tls_timeout: Dur,
    /// Status codes that end a probe `ok`: "2xx", "301", "200-204".
    pub valid_status_codes: Vec<StatusRange>,
    pub syn_poll: Dur,
    pub max_in_flight: usize,
    pub max_body_bytes: u64,
    pub syn_retries: Option<u8>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        let t = Timing::default();
        Self {
            enabled: true,
            interval: Dur(t.interval),
            jitter: Dur(t.jitter),
            timeout: Dur(t.timeout),
            connect_timeout: None,
            first_byte_timeout: Dur(t.first_byte_timeout),
            tls_timeout: Dur(t.tls_timeout),
            valid_status_codes: vec![StatusRange(200, 299)],
            syn_poll: Dur::millis(200),
            max_in_flight: 4096,
            max_body_bytes: t.max_body_bytes,
            syn_retries: None,
        }
    }
}

impl ProbeConfig {
    /// The status ranges that end a probe `ok`, for targets that name none.
    pub fn valid_status(&self) -> Vec<(u16, u16)> {
        self.valid_status_codes.iter().map(|r| (r.0, r.1)).collect()
    }

    /// The timing and body limit a target gets when it says nothing itself.
    pub fn timing(&self) -> Timing {
        let timeout = self.timeout.get();
        Timing {
            interval: self.interval.get(),
            jitter: self.jitter.get(),
            timeout,
            connect_timeout: self.connect_timeout.map(|d| d.get()).unwrap_or(timeout),
            first_byte_timeout: self.first_byte_timeout.get(),
            tls_timeout: self.tls_timeout.get(),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

impl ProbeConfig {
    /// Every bound of `[probe]`.
    pub(super) fn check(&self, k: &Checker<'_>) -> Result<(), ConfigError> {
        let p = self;
        k.dur(
            &["probe", "interval"],
            p.interval.get(),
            MS..=HOUR,
            "a shorter interval is a load test, not a probe",
        )?;
        k.dur(
            &["probe", "jitter"],
            p.jitter.get(),
            Duration::ZERO..=HOUR,
            TIMING,
        )?;
        k.dur(&["probe", "timeout"], p.timeout.get(), MS..=HOUR, TIMING)?;
        if let Some(ct) = p.connect_timeout {
            k.dur(&["probe", "connect_timeout"], ct.get(), MS..=HOUR, TIMING)?;
        }
        k.dur(
            &["probe", "first_byte_timeout"],
            p.first_byte_timeout.get(),
            MS..=HOUR,
            TIMING,
        )?;
        k.dur(
            &["probe", "tls_timeout"],
            p.tls_timeout.get(),
            MS..=HOUR,
            TIMING,
        )?;
        k.dur(
            &["probe", "syn_poll"],
            p.syn_poll.get(),
            Duration::from_millis(10)..=Duration::from_secs(10),
            "TCP_INFO is read this often while a SYN is pending; below 10 ms it only burns CPU, above 10 s a 1 s rung goes unseen",
        )?;
        k.num(
            &["probe", "max_in_flight"],
            p.max_in_flight,
            1..=1_000_000,
            "each probe in flight holds a socket (the default is 4096)",
        )?;
        k.num(
            &["probe", "max_body_bytes"],
            p.max_body_bytes,
            0..=1 << 30,
            "a probe reads the whole body",
        )?;
        if let Some(n) = p.syn_retries {
            k.num(
                &["probe", "syn_retries"],
                n,
                1..=127,
                "the kernel accepts TCP_SYNCNT from 1 to 127",
            )?;
        }
        if p.valid_status_codes.is_empty() {
            return Err(k.err(
                &["probe", "valid_status_codes"],
                "[probe] valid_status_codes is empty, so no probe could end ok; the default is [\"2xx\"]".into(),
            ));
        }
        Ok(())
    }
}
