//! `[hub]`: which probers the hub pulls, and how often.

use serde::Deserialize;

use super::Dur;
use std::time::Duration;

use super::ConfigError;
use super::validate::{Checker, DAY, HOUR, SEC};

/// `[hub]`: read by `tailprobe hub` only; probers ignore it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Probers' base URLs, such as "http://10.0.0.5:9797". Empty with
    /// `[kubernetes]` set: the hub finds the prober pods itself.
    pub probers: Vec<String>,
    /// How often every prober is pulled and the cluster judged.
    pub interval: Dur,
    /// One pull's budget: a prober slower than this is stale this round.
    pub timeout: Dur,
    /// Pulls in flight at once.
    pub max_concurrent: usize,
    /// A prober that stopped answering keeps its last data (marked stale)
    /// this long, then is unreachable and its data dropped.
    pub forget_after: Dur,
    /// The largest window document accepted from one prober, decompressed:
    /// a prober is not trusted to bound itself.
    pub max_doc_bytes: u64,
    /// The probers' bearer token ([server] token_file on the probers).
    pub token_file: Option<std::path::PathBuf>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            probers: Vec::new(),
            interval: Dur::secs(15),
            timeout: Dur::secs(5),
            max_concurrent: 64,
            forget_after: Dur::secs(300),
            max_doc_bytes: 8 << 20,
            token_file: None,
        }
    }
}

impl HubConfig {
    /// What is wrong with the table, if anything: the index of a prober
    /// that is not an http(s) base URL, and why.
    pub fn problem(&self) -> Option<(usize, String)> {
        self.probers.iter().enumerate().find_map(|(i, p)| {
            let ok = (p.starts_with("http://") || p.starts_with("https://"))
                && p.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
            (!ok).then(|| {
                (
                    i,
                    format!("prober \"{p}\" is not a base URL; write it as \"http://HOST:9797\""),
                )
            })
        })
    }
}

impl HubConfig {
    /// Every bound of `[hub]`.
    pub(super) fn check(&self, k: &Checker<'_>) -> Result<(), ConfigError> {
        let h = self;
        k.dur(
            &["hub", "interval"],
            h.interval.get(),
            SEC..=HOUR,
            "the hub pulls every prober this often",
        )?;
        k.dur(
            &["hub", "timeout"],
            h.timeout.get(),
            Duration::from_millis(100)..=h.interval.get(),
            "one pull must end before the next round (at most [hub] interval)",
        )?;
        k.num(
            &["hub", "max_concurrent"],
            h.max_concurrent,
            1..=4096,
            "each pull in flight holds a connection",
        )?;
        k.dur(
            &["hub", "forget_after"],
            h.forget_after.get(),
            h.interval.get()..=DAY,
            "a silent prober's last data is kept this long (at least one round)",
        )?;
        k.num(
            &["hub", "max_doc_bytes"],
            h.max_doc_bytes,
            (64 << 10)..=(1 << 30),
            "one prober's document is held in memory whole",
        )?;
        Ok(())
    }
}
