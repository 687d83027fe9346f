//! What to probe, and which node serves it. Static targets come from
//! `[[target]]`; discovered ones will share the same [`Target`].

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use crate::config::{ProbeConfig, TargetConfig};

/// Which node serves a target, as far as anyone knows before probing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetNode {
    /// Every backend sits on this node.
    Known(String),
    /// Backends sit on several nodes: the response header decides per probe.
    Mixed(Vec<String>),
    /// Nothing is known: the response header decides, else the path is unknown.
    Unknown,
}

/// One HTTP endpoint and how to probe it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub url: String,
    pub host: String,
    /// Set when `host` is an IP literal: no DNS phase then.
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// `Host` header value.
    pub authority: String,
    /// Path and query sent in the request line.
    pub path: String,
    pub node: TargetNode,
    pub interval: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body_bytes: u64,
}

impl Target {
    /// Builds a target from its table, filling gaps from `[probe]`. Errors carry
    /// the span they refer to.
    pub fn from_config(tc: &TargetConfig, p: &ProbeConfig) -> Result<Self, (Range<usize>, String)> {
        let name = tc.name.get_ref().trim();
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err((
                tc.name.span(),
                "a target name must be non-empty and have no spaces; use something like \"svc-on-node1\"".into(),
            ));
        }
        let timeout = tc.timeout.unwrap_or(p.timeout).get();
        let connect_timeout = tc
            .connect_timeout
            .or(p.connect_timeout)
            .map(|d| d.get())
            .unwrap_or(timeout)
            .min(timeout);
        let interval = tc.interval.unwrap_or(p.interval).get();
        if interval.is_zero() {
            return Err((
                tc.name.span(),
                format!("target \"{name}\" has a zero interval; set interval to at least \"1ms\""),
            ));
        }
        let mut t = Self::http(name, tc.url.get_ref()).map_err(|m| (tc.url.span(), m))?;
        t.node = match &tc.node {
            Some(n) if !n.is_empty() => TargetNode::Known(n.clone()),
            _ => TargetNode::Unknown,
        };
        t.interval = interval;
        t.jitter = tc.jitter.unwrap_or(p.jitter).get();
        t.timeout = timeout;
        t.connect_timeout = connect_timeout;
        t.max_body_bytes = tc.max_body_bytes.unwrap_or(p.max_body_bytes);
        Ok(t)
    }

    /// A target for `url` with the default probe settings.
    pub fn http(name: &str, url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| {
            format!("invalid URL \"{url}\" ({e}); write it as \"http://HOST:PORT/PATH\"")
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "URL scheme \"{other}\" is not supported; probes speak plain HTTP, so use an http:// URL"
                ));
            }
            None => {
                return Err(format!(
                    "URL \"{url}\" has no scheme; write it as \"http://{url}\""
                ));
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| {
                format!("URL \"{url}\" has no host; write it as \"http://HOST:PORT/PATH\"")
            })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(80);
        let defaults = ProbeConfig::default();
        Ok(Self {
            name: name.to_string(),
            url: url.to_string(),
            ip: host.parse().ok(),
            authority: uri
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_else(|| host.clone()),
            host,
            port,
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "/".into()),
            node: TargetNode::Unknown,
            interval: defaults.interval.get(),
            jitter: defaults.jitter.get(),
            timeout: defaults.timeout.get(),
            connect_timeout: defaults.timeout.get(),
            max_body_bytes: defaults.max_body_bytes,
        })
    }

    /// The same target with another node attribution.
    pub fn with_node(mut self, node: TargetNode) -> Self {
        self.node = node;
        self
    }

    /// The same target with another timeout (connect and total).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.connect_timeout = timeout;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_and_host_urls() {
        let t = Target::http("a", "http://10.96.0.11:8080/x?y=1").unwrap();
        assert_eq!(t.ip, Some("10.96.0.11".parse().unwrap()));
        assert_eq!(
            (t.port, t.path.as_str(), t.authority.as_str()),
            (8080, "/x?y=1", "10.96.0.11:8080")
        );
        let t = Target::http("b", "http://svc.ns.svc.cluster.local/").unwrap();
        assert_eq!(
            (t.ip, t.port, t.host.as_str()),
            (None, 80, "svc.ns.svc.cluster.local")
        );
        let t = Target::http("c", "http://[::1]:81/").unwrap();
        assert_eq!(t.ip, Some("::1".parse().unwrap()));
    }

    #[test]
    fn rejects_https_and_schemeless_urls() {
        assert!(
            Target::http("a", "https://x/")
                .unwrap_err()
                .contains("plain HTTP")
        );
        assert!(Target::http("a", "x:80").is_err());
    }
}
