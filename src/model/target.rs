//! What is probed: one endpoint, its probe kind (chosen by the URL's scheme)
//! and what is known of the node serving it. Parsing a URL into a target is
//! pure; where targets come from (configuration, Kubernetes) is `targets`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The API server's probe through the `kubernetes` Service: its own
/// finding when it fails, since every node's agents and controllers
/// depend on it.
pub const API_SERVER_TARGET: &str = "svc/default/kubernetes";

/// How an `https://` target's TLS is set up. Files are PEM, read by the
/// prober (and checked by `tailprobe check`); none of them is required.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TlsOptions {
    /// The name sent as SNI and that the certificate must carry: the URL's
    /// host unless set (a VIP's certificate names the Service, not the IP).
    pub server_name: String,
    /// The CAs to trust; the system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// What a `dns://` target asks and how patiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    pub name: String,
    pub attempt_timeout: Duration,
    pub attempts: u32,
    /// A and AAAA sent at once from one socket, as glibc sends them: the
    /// pattern that meets conntrack's insert race (`parallel=1`).
    pub parallel: bool,
    /// Over TCP instead of UDP (`tcp=1`): no conntrack race, and a lost
    /// segment is retransmitted by TCP rather than waited out.
    pub tcp: bool,
}

/// How often and how patiently a target is probed. The defaults are
/// `[probe]`'s: `config` reads them from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// After the connect, the response head must arrive within this.
    pub first_byte_timeout: Duration,
    /// After the connect, the TLS handshake must end within this.
    pub tls_timeout: Duration,
    pub max_body_bytes: u64,
}

impl Default for Timing {
    fn default() -> Self {
        // Past the last SYN rung of both schedules: 127 s classic, 131 s linear.
        let timeout = Duration::from_secs(135);
        Self {
            interval: Duration::from_secs(10),
            jitter: Duration::from_secs(1),
            timeout,
            connect_timeout: timeout,
            // A backend that has not begun answering 30 s after the connect
            // is down for any SLO; waiting longer only holds memory.
            first_byte_timeout: Duration::from_secs(30),
            // Two round trips when nothing is lost; 10 s leaves room for a
            // lost flight's retransmissions (1 s, 2 s, 4 s) and no more.
            tls_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
        }
    }
}

/// What a probe of the target does, chosen by the URL's scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// `http://` or `https://` (with [`Target::tls`]): connect, the TLS
    /// handshake over `https://`, GET with `Connection: close`, read the body.
    Http,
    /// `tcp://host:port`: connect only.
    Tcp,
    /// `dns://server[:port]/name[?timeout=5s&attempts=2]`: an A query over UDP.
    Dns(DnsQuery),
}

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

/// The targets of the moment, configured and discovered, shared whole: what
/// the daemon's targets channel carries to every part.
pub type TargetList = std::sync::Arc<Vec<std::sync::Arc<Target>>>;

/// One HTTP endpoint and how to probe it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub url: String,
    pub host: String,
    /// Set when `host` is an IP literal: no DNS phase then.
    pub ip: Option<IpAddr>,
    /// The address family probed: the literal's, or pinned (a host name
    /// then resolves to that family only); `None` takes what the lookup
    /// gives.
    pub family: Option<super::Family>,
    pub port: u16,
    /// `Host` header value.
    pub authority: String,
    /// Path and query sent in the request line.
    pub path: String,
    pub node: TargetNode,
    pub kind: ProbeKind,
    pub interval: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// After the connect, the response head must arrive within this.
    pub first_byte_timeout: Duration,
    /// Set for `https://`: the handshake's name, trust and identity.
    pub tls: Option<TlsOptions>,
    /// After the connect, the TLS handshake must end within this.
    pub tls_timeout: Duration,
    /// Sent as `Authorization: Bearer` when set: the API server's probe
    /// shows its service-account token, read anew for every probe since
    /// the kubelet rotates it.
    pub bearer_token_file: Option<PathBuf>,
    /// Every address the host name resolves to is probed, each its own
    /// series (`name@address`): one bad backend behind round-robin DNS.
    pub all_addresses: bool,
    pub max_body_bytes: u64,
    /// Status ranges that end a probe `ok` (inclusive); by default 2xx only,
    /// so a redirect or an error page is never counted as healthy.
    pub valid_status: Vec<(u16, u16)>,
}

impl Target {
    /// Whether `status` ends a probe of this target `ok`.
    pub fn status_ok(&self, status: u16) -> bool {
        self.valid_status
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    /// A target for `url` with the default probe settings; the scheme
    /// (`http`, `https`, `tcp`, `dns`) picks the probe kind.
    pub fn parse(name: &str, url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| {
            format!("invalid URL \"{url}\" ({e}); write it as \"http://HOST:PORT/PATH\"")
        })?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| format!("URL \"{url}\" has no scheme; write it as \"http://{url}\""))?;
        let host = uri
            .host()
            .ok_or_else(|| {
                format!("URL \"{url}\" has no host; write it as \"http://HOST:PORT/PATH\"")
            })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let ip = host.parse().ok();
        let path = uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into());
        let mut tls = None;
        let (kind, port) = match scheme {
            "http" => (ProbeKind::Http, uri.port_u16().unwrap_or(80)),
            "https" => {
                tls = Some(TlsOptions {
                    server_name: host.clone(),
                    ..TlsOptions::default()
                });
                (ProbeKind::Http, uri.port_u16().unwrap_or(443))
            }
            "tcp" => (
                ProbeKind::Tcp,
                uri.port_u16().ok_or_else(|| {
                    format!("URL \"{url}\" needs a port: write it as \"tcp://HOST:PORT\"")
                })?,
            ),
            "dns" => {
                if ip.is_none() {
                    return Err(format!(
                        "the DNS server in \"{url}\" must be an IP address, such as \"dns://10.96.0.10/kubernetes.default.svc.cluster.local\""
                    ));
                }
                (
                    ProbeKind::Dns(dns_query(url, &uri)?),
                    uri.port_u16().unwrap_or(53),
                )
            }
            other => {
                return Err(format!(
                    "URL scheme \"{other}\" is not supported; use http:// (a plain-HTTP exchange), https:// (the same over TLS), tcp:// (connect only) or dns:// (a UDP query)"
                ));
            }
        };
        let defaults = Timing::default();
        Ok(Self {
            name: name.to_string(),
            url: url.to_string(),
            family: ip.map(super::Family::of),
            ip,
            authority: uri
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_else(|| host.clone()),
            host,
            port,
            path,
            node: TargetNode::Unknown,
            kind,
            interval: defaults.interval,
            jitter: defaults.jitter,
            timeout: defaults.timeout,
            connect_timeout: defaults.timeout,
            first_byte_timeout: defaults.first_byte_timeout,
            tls,
            tls_timeout: defaults.tls_timeout,
            bearer_token_file: None,
            all_addresses: false,
            max_body_bytes: defaults.max_body_bytes,
            valid_status: vec![(200, 299)],
        })
    }

    /// The body size the target declares before any probe: tailprobe's echo
    /// answers `/bytes/N` with exactly N bytes.
    pub fn echo_body_bytes(&self) -> Option<u64> {
        self.path
            .strip_prefix("/bytes/")?
            .split(['?', '/'])
            .next()?
            .parse()
            .ok()
    }

    /// The target at one of its name's addresses: its own series
    /// (`name@10.0.0.5`, `name@[fd00::5]`), the same `Host` header and TLS
    /// name, no lookup of its own.
    pub fn at_address(&self, ip: IpAddr) -> Self {
        let at = match ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        Self {
            name: format!("{}@{at}", self.name),
            ip: Some(ip),
            family: Some(super::Family::of(ip)),
            all_addresses: false,
            ..self.clone()
        }
    }

    /// The same target with another node attribution.
    pub fn with_node(mut self, node: TargetNode) -> Self {
        self.node = node;
        self
    }

    /// The same target pinned to one address family; an IP literal of the
    /// other family cannot be.
    pub fn with_family(mut self, family: super::Family) -> Result<Self, String> {
        if let Some(ip) = self.ip
            && super::Family::of(ip) != family
        {
            return Err(format!(
                "{} is an {} address but the target asks for {}; drop the family or give an {} address",
                ip,
                super::Family::of(ip).describe(),
                family.describe(),
                family.describe()
            ));
        }
        self.family = Some(family);
        Ok(self)
    }

    /// The same target with these timings and body limit.
    pub fn with_timing(mut self, t: &Timing) -> Self {
        self.interval = t.interval;
        self.jitter = t.jitter;
        self.timeout = t.timeout;
        self.connect_timeout = t.connect_timeout.min(t.timeout);
        self.first_byte_timeout = t.first_byte_timeout;
        self.tls_timeout = t.tls_timeout;
        self.max_body_bytes = t.max_body_bytes;
        self
    }

    /// The same target with another timeout (connect and total).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.connect_timeout = timeout;
        self
    }
}

/// The query a `dns://` URL asks: the name is the path; `timeout` and
/// `attempts` default to glibc's 5 s and 2.
/// Whether a URL is a DNS target that sends A and AAAA at once.
pub fn dns_parallel(url: &str) -> bool {
    url.starts_with("dns://")
        && Target::parse("dns", url)
            .is_ok_and(|t| matches!(t.kind, ProbeKind::Dns(ref q) if q.parallel))
}

fn dns_query(url: &str, uri: &http::Uri) -> Result<DnsQuery, String> {
    let name = uri.path().trim_matches('/').to_string();
    if name.is_empty() {
        return Err(format!(
            "URL \"{url}\" names no query; write it as \"dns://10.96.0.10/kubernetes.default.svc.cluster.local\""
        ));
    }
    let mut q = DnsQuery {
        name,
        attempt_timeout: Duration::from_secs(5),
        attempts: 2,
        parallel: false,
        tcp: false,
    };
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("timeout", v)) => {
                q.attempt_timeout = humantime::parse_duration(v)
                    .ok()
                    .filter(|d| (Duration::from_millis(1)..=Duration::from_secs(60)).contains(d))
                    .ok_or_else(|| format!("timeout=\"{v}\" in \"{url}\" must be a duration from 1ms to 60s, such as timeout=5s"))?;
            }
            Some(("attempts", v)) => {
                q.attempts = v.parse().ok().filter(|n| (1..=10).contains(n)).ok_or_else(|| {
                    format!("attempts=\"{v}\" in \"{url}\" must be a whole number from 1 to 10 (glibc allows 5)")
                })?;
            }
            Some((key @ ("parallel" | "tcp"), v)) => {
                let on = match v {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(format!("{key}=\"{v}\" in \"{url}\" must be 1 or 0"));
                    }
                };
                if key == "parallel" {
                    q.parallel = on;
                } else {
                    q.tcp = on;
                }
            }
            _ => {
                return Err(format!(
                    "\"{pair}\" in \"{url}\" is not timeout=DURATION, attempts=N, parallel=1 or tcp=1"
                ));
            }
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_probe_kind() {
        assert_eq!(
            Target::parse("a", "http://10.0.0.1/").unwrap().kind,
            ProbeKind::Http
        );
        let t = Target::parse("a", "tcp://10.0.0.1:443").unwrap();
        assert_eq!((t.kind, t.port), (ProbeKind::Tcp, 443));
        assert!(
            Target::parse("a", "tcp://10.0.0.1")
                .unwrap_err()
                .contains("needs a port")
        );
        let t = Target::parse(
            "a",
            "dns://10.96.0.10/kubernetes.default.svc.cluster.local?timeout=250ms",
        )
        .unwrap();
        assert_eq!(t.port, 53);
        assert_eq!(
            t.kind,
            ProbeKind::Dns(DnsQuery {
                name: "kubernetes.default.svc.cluster.local".into(),
                attempt_timeout: Duration::from_millis(250),
                attempts: 2,
                parallel: false,
                tcp: false,
            })
        );
        assert!(
            Target::parse("a", "dns://kube-dns/x")
                .unwrap_err()
                .contains("must be an IP")
        );
        assert!(
            Target::parse("a", "dns://10.96.0.10/")
                .unwrap_err()
                .contains("names no query")
        );
        assert!(Target::parse("a", "dns://10.96.0.10/x?attempts=0").is_err());
        assert!(
            Target::parse("a", "ftp://x/")
                .unwrap_err()
                .contains("tcp://")
        );
    }

    #[test]
    fn parses_ip_and_host_urls() {
        let t = Target::parse("a", "http://10.96.0.11:8080/x?y=1").unwrap();
        assert_eq!(t.ip, Some("10.96.0.11".parse().unwrap()));
        assert_eq!(
            (t.port, t.path.as_str(), t.authority.as_str()),
            (8080, "/x?y=1", "10.96.0.11:8080")
        );
        let t = Target::parse("b", "http://svc.ns.svc.cluster.local/").unwrap();
        assert_eq!(
            (t.ip, t.port, t.host.as_str()),
            (None, 80, "svc.ns.svc.cluster.local")
        );
        let t = Target::parse("c", "http://[::1]:81/").unwrap();
        assert_eq!(t.ip, Some("::1".parse().unwrap()));
        assert_eq!(t.family, Some(crate::model::Family::Ipv6));
    }

    #[test]
    fn a_family_is_the_literal_s_or_pinned() {
        use crate::model::Family;
        let v4 = Target::parse("a", "tcp://10.0.0.1:80").unwrap();
        assert_eq!(v4.family, Some(Family::Ipv4));
        let e = v4.with_family(Family::Ipv6).unwrap_err();
        assert!(e.contains("is an IPv4 address"), "{e}");
        let mapped = Target::parse("m", "tcp://[::ffff:10.0.0.1]:80").unwrap();
        assert_eq!(mapped.family, Some(Family::Ipv4), "IPv4 on the wire");
        let named = Target::parse("b", "http://svc.example/").unwrap();
        assert_eq!(named.family, None);
        let pinned = named.with_family(Family::Ipv6).unwrap();
        assert_eq!(pinned.family, Some(Family::Ipv6));
        // One address of a name: that address's family.
        let named = Target::parse("b", "http://svc.example/").unwrap();
        let at = named.at_address("fd00::5".parse().unwrap());
        assert_eq!(at.family, Some(Family::Ipv6));
    }

    #[test]
    fn a_target_at_one_address_keeps_its_host_and_names_the_address() {
        let t = Target::parse("web", "https://web.example:8443/x").unwrap();
        let v4 = t.at_address("10.0.0.5".parse().unwrap());
        assert_eq!(v4.name, "web@10.0.0.5");
        assert_eq!(v4.ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(
            (v4.authority.as_str(), v4.tls.unwrap().server_name.as_str()),
            ("web.example:8443", "web.example")
        );
        let v6 = t.at_address("fd00::5".parse().unwrap());
        assert_eq!(v6.name, "web@[fd00::5]");
    }

    #[test]
    fn https_is_http_over_tls_named_by_its_host() {
        let t = Target::parse("a", "https://api.example:6443/readyz").unwrap();
        assert_eq!((t.kind.clone(), t.port), (ProbeKind::Http, 6443));
        assert_eq!(t.tls.unwrap().server_name, "api.example");
        let t = Target::parse("b", "https://[fd00::1]/").unwrap();
        assert_eq!(
            (t.port, t.tls.unwrap().server_name.as_str()),
            (443, "fd00::1")
        );
        assert!(Target::parse("c", "http://x/").unwrap().tls.is_none());
    }

    #[test]
    fn rejects_unknown_schemes_and_schemeless_urls() {
        assert!(
            Target::parse("a", "ftp://x/")
                .unwrap_err()
                .contains("https://")
        );
        assert!(Target::parse("a", "x:80").is_err());
    }
}
