//! Bounds on every duration and count, so `check` accepts exactly what `run`
//! can do: a value out of range is an error at its own key, with the range
//! and the reason. Keys are located in the file from toml's spans (never by
//! searching the text, which a comment could fool).

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{Config, ConfigError, Dur};

/// Where a key's value starts: `path` walks tables by key and arrays of
/// tables by index ("target", "2", "timeout"). `None` when the key is not
/// written (a default is out of range only through another key).
pub fn locate(text: &str, path: &[&str]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut at = None;
    let mut i = 0;
    while i < path.len() {
        let (_, value) = table.iter().find(|(k, _)| k.get_ref() == path[i])?;
        at = Some(value.span().start);
        i += 1;
        let mut v = value.get_ref();
        if let DeValue::Array(items) = v {
            let n: usize = path.get(i)?.parse().ok()?;
            let item = items.get(n)?;
            at = Some(item.span().start);
            v = item.get_ref();
            i += 1;
        }
        match v {
            DeValue::Table(t) => table = t,
            _ if i == path.len() => break,
            _ => return None,
        }
    }
    at
}

pub(super) struct Checker<'a> {
    path: &'a str,
    text: &'a str,
}

impl Checker<'_> {
    pub(super) fn err(&self, key: &[&str], message: String) -> ConfigError {
        // A key not written stands at its table's header, else at the top.
        let offset = locate(self.text, key)
            .or_else(|| locate(self.text, &key[..key.len().saturating_sub(1)]))
            .unwrap_or(0);
        ConfigError::at(self.path, self.text, offset, message)
    }

    /// `value` inside `range`, else an error at `key` showing values with
    /// `show` and saying `why`.
    fn within<T: PartialOrd + Copy>(
        &self,
        key: &[&str],
        value: T,
        range: RangeInclusive<T>,
        show: impl Fn(T) -> String,
        why: &str,
    ) -> Result<(), ConfigError> {
        if range.contains(&value) {
            return Ok(());
        }
        Err(self.err(
            key,
            format!(
                "{} = {} is out of range: write {} to {}; {why}",
                name(key),
                show(value),
                show(*range.start()),
                show(*range.end())
            ),
        ))
    }

    pub(super) fn dur(
        &self,
        key: &[&str],
        value: Duration,
        range: RangeInclusive<Duration>,
        why: &str,
    ) -> Result<(), ConfigError> {
        self.within(key, value, range, |d| format!("\"{}\"", Dur(d)), why)
    }

    pub(super) fn num<T: PartialOrd + std::fmt::Display + Copy>(
        &self,
        key: &[&str],
        value: T,
        range: RangeInclusive<T>,
        why: &str,
    ) -> Result<(), ConfigError> {
        self.within(key, value, range, |n| n.to_string(), why)
    }
}

/// `[probe] timeout`, `[[target]] 2 timeout`.
fn name(key: &[&str]) -> String {
    match key {
        [k] => (*k).to_string(),
        ["target", i, k] => format!(
            "[[target]] number {} {k}",
            i.parse::<usize>().unwrap_or(0) + 1
        ),
        [table @ .., k] => format!("[{}] {k}", table.join(".")),
        [] => String::new(),
    }
}

pub(super) const MS: Duration = Duration::from_millis(1);
pub(super) const SEC: Duration = Duration::from_secs(1);
pub(super) const HOUR: Duration = Duration::from_secs(3600);
pub(super) const DAY: Duration = Duration::from_secs(86_400);
/// Why no duration is allowed past an hour.
pub(super) const TIMING: &str = "past an hour a probe is no longer a latency measurement";

/// Every bound of the file: the top-level keys here, each table by its own
/// `check` beside its defaults, the cross-table rules here.
pub fn check(path: &str, text: &str, c: &Config) -> Result<(), ConfigError> {
    let k = Checker { path, text };
    if c.targets.is_empty() && c.kubernetes.is_none() && c.hub.probers.is_empty() {
        return Err(ConfigError::at(
            path,
            text,
            0,
            "the configuration names nothing to probe; add a [[target]] table, or [kubernetes] to discover targets (config.toml documents both); a hub's configuration lists [hub] probers".into(),
        ));
    }
    if let Some(n) = &c.node
        && (n.is_empty()
            || n.len() > 253
            || n.chars().any(|ch| ch.is_control() || ch.is_whitespace()))
    {
        return Err(k.err(
            &["node"],
            "node must be a node name: 1 to 253 characters, no spaces or control characters".into(),
        ));
    }
    if c.source_kind.is_some_and(|s| s.is_passive()) {
        return Err(k.err(
            &["source_kind"],
            "source_kind is the network the prober runs in: \"host\" or \"pod\"; passive vantages come from [passive]".into(),
        ));
    }
    c.probe.check(&k)?;
    c.passive.check(&k)?;
    if let Some(i) = c.targets.iter().position(|t| {
        t.valid_status_codes
            .as_deref()
            .is_some_and(|codes: &[super::StatusRange]| codes.is_empty())
    }) {
        return Err(k.err(
            &["target", &i.to_string(), "valid_status_codes"],
            "valid_status_codes is empty, so no probe could end ok; leave it out for [probe]'s"
                .into(),
        ));
    }
    c.server.check(&k)?;
    c.matrix.check(&k)?;
    c.hub.check(&k)?;
    c.detect.check(&k)?;
    if let Some(o) = &c.otlp {
        o.check(&k)?;
    }
    if let Some(kc) = &c.kubernetes {
        kc.check(&k)?;
    }
    for (i, t) in c.targets.iter().enumerate() {
        let i = i.to_string();
        let key = |f: &'static str| ["target", i.as_str(), f];
        for (f, v) in [
            ("interval", t.interval),
            ("jitter", t.jitter),
            ("timeout", t.timeout),
            ("connect_timeout", t.connect_timeout),
            ("first_byte_timeout", t.first_byte_timeout),
            ("tls_timeout", t.tls_timeout),
        ] {
            if let Some(v) = v {
                let lo = if f == "jitter" { Duration::ZERO } else { MS };
                k.dur(&key(f), v.get(), lo..=HOUR, TIMING)?;
            }
        }
        if let Some(b) = t.max_body_bytes {
            k.num(
                &key("max_body_bytes"),
                b,
                0..=1 << 30,
                "a probe reads the whole body",
            )?;
        }
    }
    Ok(())
}
