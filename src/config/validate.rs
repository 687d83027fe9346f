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

struct Checker<'a> {
    path: &'a str,
    text: &'a str,
}

impl Checker<'_> {
    fn err(&self, key: &[&str], message: String) -> ConfigError {
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

    fn dur(
        &self,
        key: &[&str],
        value: Duration,
        range: RangeInclusive<Duration>,
        why: &str,
    ) -> Result<(), ConfigError> {
        self.within(key, value, range, |d| format!("\"{}\"", Dur(d)), why)
    }

    fn num<T: PartialOrd + std::fmt::Display + Copy>(
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

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Every bound of the file, in the order the tables are documented.
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
    let p = &c.probe;
    let timing = "past an hour a probe is no longer a latency measurement";
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
        timing,
    )?;
    k.dur(&["probe", "timeout"], p.timeout.get(), MS..=HOUR, timing)?;
    if let Some(ct) = p.connect_timeout {
        k.dur(&["probe", "connect_timeout"], ct.get(), MS..=HOUR, timing)?;
    }
    k.dur(
        &["probe", "first_byte_timeout"],
        p.first_byte_timeout.get(),
        MS..=HOUR,
        timing,
    )?;
    k.dur(
        &["probe", "tls_timeout"],
        p.tls_timeout.get(),
        MS..=HOUR,
        timing,
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
    let v = &c.passive;
    k.num(
        &["passive", "max_destinations"],
        v.max_destinations,
        16..=1_000_000,
        "each destination costs the kernel 1.6 KiB of map memory",
    )?;
    k.num(
        &["passive", "max_connecting"],
        v.max_connecting,
        64..=10_000_000,
        "each connection in SYN_SENT costs the kernel 48 bytes of map memory",
    )?;
    k.dur(
        &["passive", "interval"],
        v.interval.get(),
        Duration::from_millis(100)..=Duration::from_secs(60),
        "the detector sees passive connections this late at most",
    )?;
    k.dur(
        &["passive", "idle"],
        v.idle.get(),
        SEC..=DAY,
        "a destination idle this long leaves the kernel's map",
    )?;
    if let Some(i) = v.pod_netns.iter().position(|p| !p.starts_with('/')) {
        return Err(k.err(
            &["passive", "pod_netns", &i.to_string()],
            format!(
                "[passive] pod_netns entry {} is not an absolute path; write a network namespace's path, such as \"/run/netns/NAME\" or \"/proc/PID/ns/net\"",
                i + 1
            ),
        ));
    }
    let empty_codes = |codes: &[super::StatusRange]| codes.is_empty();
    if empty_codes(&p.valid_status_codes) {
        return Err(k.err(
            &["probe", "valid_status_codes"],
            "[probe] valid_status_codes is empty, so no probe could end ok; the default is [\"2xx\"]".into(),
        ));
    }
    if let Some(i) = c
        .targets
        .iter()
        .position(|t| t.valid_status_codes.as_deref().is_some_and(empty_codes))
    {
        return Err(k.err(
            &["target", &i.to_string(), "valid_status_codes"],
            "valid_status_codes is empty, so no probe could end ok; leave it out for [probe]'s"
                .into(),
        ));
    }
    let s = &c.server;
    k.num(
        &["server", "max_connections"],
        s.max_connections,
        1..=65_536,
        "each open connection holds a descriptor and a little memory",
    )?;
    k.dur(
        &["server", "header_read_timeout"],
        s.header_read_timeout.get(),
        Duration::from_millis(100)..=Duration::from_secs(300),
        "an idle or slow client holds a connection this long",
    )?;
    k.dur(
        &["server", "shutdown_grace"],
        s.shutdown_grace.get(),
        Duration::ZERO..=Duration::from_secs(60),
        "shutdown waits this long on open connections",
    )?;
    let m = &c.matrix;
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
    let h = &c.hub;
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
    let d = &c.detect;
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
    if let Some(o) = &c.otlp {
        if !(0.0..=1.0).contains(&o.healthy_sample_ratio) {
            return Err(k.err(
                &["otlp", "healthy_sample_ratio"],
                format!(
                    "[otlp] healthy_sample_ratio = {} must be from 0 to 1; the default is 0.01",
                    o.healthy_sample_ratio
                ),
            ));
        }
        k.dur(&["otlp", "slow"], o.slow.get(), MS..=HOUR, timing)?;
        k.num(
            &["otlp", "max_queue"],
            o.max_queue,
            1..=1_000_000,
            "the span queue is held in memory (the default is 4096)",
        )?;
        k.dur(
            &["otlp", "alert_resend"],
            o.alert_resend.get(),
            SEC..=7 * DAY,
            "an active alert is sent again this often",
        )?;
    }
    if let Some(kc) = &c.kubernetes {
        k.dur(
            &["kubernetes", "round"],
            kc.round.get(),
            Duration::from_millis(100)..=DAY,
            "the pinglist rotates this often",
        )?;
        k.dur(
            &["kubernetes", "reapply"],
            kc.reapply.get(),
            Duration::from_millis(100)..=DAY,
            "the node's Service is applied again this often, each time a write to the API server",
        )?;
        k.num(
            &["kubernetes", "full_mesh_max_nodes"],
            kc.full_mesh_max_nodes,
            1..=100_000,
            "the default is 100",
        )?;
        k.num(
            &["kubernetes", "remote_nodes_per_round"],
            kc.remote_nodes_per_round,
            1..=100_000,
            "the default is 20",
        )?;
        k.num(
            &["kubernetes", "node_services_max_nodes"],
            kc.node_services_max_nodes,
            1..=100_000,
            "a Service per node costs a ClusterIP and kube-proxy rules on every node per node (the default is 1000; a /20 Service range holds 4,096)",
        )?;
        k.num(
            &["kubernetes", "service_pool"],
            kc.service_pool,
            1..=4096,
            "each probe Service costs a ClusterIP (the default is 64)",
        )?;
        k.num(
            &["kubernetes", "max_targets"],
            kc.max_targets,
            1..=100_000,
            "each target is probed every interval (the default is 1000)",
        )?;
        let path = &kc.api_server_path;
        if !path.is_empty()
            && (!path.starts_with('/')
                || path.len() > 256
                || !path.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(k.err(
                &["kubernetes", "api_server_path"],
                format!("[kubernetes] api_server_path = \"{}\" is not a plain path; write \"/readyz\", \"/livez\", or \"\" not to probe the API server", path.escape_default()),
            ));
        }
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
                k.dur(&key(f), v.get(), lo..=HOUR, timing)?;
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
