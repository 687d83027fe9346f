//! The typed `config.toml`. One struct per table, unknown keys rejected, the
//! defaults in one place ([`Default`] impls below), and every error located as
//! `FILE:LINE:COL: what is wrong; what to do`.

//!
//! Invariant: `config` imports only `model`. Every table's struct lives here,
//! and the modules that act on a table import it from here, never the reverse.

mod detect;
mod duration;
mod error;
mod hub;
mod kubernetes;
mod matrix;
mod metrics;
mod otlp;
mod passive;
mod probe;
mod selector;
mod server;
mod slo;
mod target;
mod ui;
mod validate;

pub use detect::DetectConfig;
pub use duration::Dur;
pub use error::ConfigError;
pub use hub::HubConfig;
pub use kubernetes::KubernetesConfig;
pub use matrix::MatrixConfig;
pub use metrics::{Buckets, Grain, MetricPhase, MetricsConfig};
pub use otlp::OtlpConfig;
pub use passive::PassiveConfig;
pub use probe::ProbeConfig;
pub use selector::LabelSelector;
pub use server::ServerConfig;
pub use slo::{BurnAlert, SloConfig};
pub use ui::UiConfig;

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::model::{SourceKind, Target};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The prober's own node; else `NODE_NAME`, else the host name.
    pub node: Option<String>,
    /// `host` or `pod`: the network the prober runs in; else
    /// `TAILPROBE_SOURCE_KIND`, else `host`.
    pub source_kind: Option<SourceKind>,
    #[serde(default)]
    pub probe: ProbeConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub matrix: MatrixConfig,
    #[serde(default)]
    pub detect: DetectConfig,
    /// OTLP export; the standard `OTEL_*` variables alone also enable it.
    pub otlp: Option<OtlpConfig>,
    /// Discovery from the Kubernetes API and the per-node Service.
    pub kubernetes: Option<KubernetesConfig>,
    /// `tailprobe hub`: the probers it pulls.
    #[serde(default)]
    pub hub: HubConfig,
    /// The page's links out (a trace viewer).
    #[serde(default)]
    pub ui: UiConfig,
    /// What `/metrics` spends on series.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The node's own connections, read through eBPF.
    #[serde(default)]
    pub passive: PassiveConfig,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
    #[serde(default, rename = "slo")]
    pub slos: Vec<SloConfig>,
}

/// One `[[target]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub node: Option<String>,
    pub interval: Option<Dur>,
    pub jitter: Option<Dur>,
    pub timeout: Option<Dur>,
    pub connect_timeout: Option<Dur>,
    pub first_byte_timeout: Option<Dur>,
    pub valid_status_codes: Option<Vec<StatusRange>>,
    pub max_body_bytes: Option<u64>,
    /// `https://` only, as every field below.
    pub tls_timeout: Option<Dur>,
    /// The name sent as SNI and checked against the certificate, when it is
    /// not the URL's host (a VIP's certificate names its Service).
    pub server_name: Option<Spanned<String>>,
    /// The CAs to trust (PEM) instead of the system's.
    pub ca_file: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    /// A file whose content is sent as `Authorization: Bearer` (any scheme).
    pub bearer_token_file: Option<String>,
    /// Probe every address the URL's host name resolves to, each its own
    /// series.
    pub all_addresses: Option<Spanned<bool>>,
    /// Pins a host name to one address family (`"ipv4"` or `"ipv6"`).
    pub family: Option<crate::model::Family>,
}

/// HTTP status codes that count as `ok`: `"2xx"` (a class), `"301"` (one
/// code) or `"200-204"` (a range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange(pub u16, pub u16);

impl std::str::FromStr for StatusRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "status \"{s}\" is not a code from 100 to 599, a class like \"2xx\" or a range like \"200-204\""
            )
        };
        let code = |v: &str| v.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
        let r = if let Some(class) = s.strip_suffix("xx") {
            let c: u16 = class
                .parse()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .ok_or_else(bad)?;
            StatusRange(c * 100, c * 100 + 99)
        } else if let Some((lo, hi)) = s.split_once('-') {
            StatusRange(code(lo).ok_or_else(bad)?, code(hi).ok_or_else(bad)?)
        } else {
            let c = code(s).ok_or_else(bad)?;
            StatusRange(c, c)
        };
        if r.0 > r.1 {
            return Err(bad());
        }
        Ok(r)
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A parsed, validated configuration and the targets it names.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub targets: Vec<Arc<Target>>,
}

impl Loaded {
    /// Every default and no target: what `cluster matrix` judges with when
    /// given no configuration.
    pub fn defaults() -> Self {
        Self {
            config: toml::from_str("").expect("an empty file is every default"),
            targets: Vec::new(),
        }
    }

    /// The prober's node: `node` key, else `NODE_NAME`, else the host name.
    pub fn node(&self) -> String {
        self.config
            .node
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(host_name)
    }

    /// The network the prober runs in.
    pub fn source_kind(&self) -> SourceKind {
        self.config
            .source_kind
            .or_else(|| {
                std::env::var("TAILPROBE_SOURCE_KIND")
                    .ok()
                    .and_then(|v| v.parse::<SourceKind>().ok())
                    .filter(|k| !k.is_passive())
            })
            .unwrap_or(SourceKind::Host)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Reads and validates a configuration file.
pub fn load(path: &str) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    parse(path, &text)
}

/// Validates configuration text; `path` only labels errors.
pub fn parse(path: &str, text: &str) -> Result<Loaded, ConfigError> {
    let config: Config =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
    let at = |span: std::ops::Range<usize>, message: String| {
        ConfigError::at(path, text, span.start, message)
    };
    validate::check(path, text, &config)?;
    if let Some(problem) = config.kubernetes.as_ref().and_then(|k| k.problem()) {
        let offset = validate::locate(text, &["kubernetes"]).unwrap_or(0);
        return Err(ConfigError::at(path, text, offset, problem));
    }
    if let Some((i, problem)) = config.hub.problem() {
        // At the prober itself, in the array.
        let offset = validate::locate(text, &["hub", "probers", &i.to_string()])
            .or_else(|| validate::locate(text, &["hub"]))
            .unwrap_or(0);
        return Err(ConfigError::at(path, text, offset, problem));
    }
    if let Some((key, problem)) = config.ui.problem() {
        let offset = validate::locate(text, &["ui", key]).unwrap_or(0);
        return Err(ConfigError::at(path, text, offset, problem));
    }
    for (i, slo) in config.slos.iter().enumerate() {
        if let Some(problem) = slo.problem() {
            // Problems name the SLO: point at its name.
            let i = i.to_string();
            let offset = validate::locate(text, &["slo", &i, "name"])
                .or_else(|| validate::locate(text, &["slo", &i]))
                .unwrap_or(0);
            return Err(ConfigError::at(path, text, offset, problem));
        }
    }
    let mut targets: Vec<Arc<Target>> = Vec::with_capacity(config.targets.len());
    for tc in &config.targets {
        if targets.iter().any(|t| t.name == *tc.name.get_ref()) {
            return Err(at(
                tc.name.span(),
                format!(
                    "target name \"{}\" is used twice; give every [[target]] a unique name",
                    tc.name.get_ref()
                ),
            ));
        }
        let target = target::build(tc, &config.probe).map_err(|(span, msg)| at(span, msg))?;
        targets.push(Arc::new(target));
    }
    Ok(Loaded { config, targets })
}

#[cfg(test)]
mod tests;
