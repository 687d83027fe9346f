//! Traces from the lab's probers to a collector on this machine's loopback.
//! A prober in a lab namespace cannot reach the caller's 127.0.0.1, and the
//! lab adds nothing to the caller's namespace; so a TCP relay listens on
//! node1's underlay address (inside the lab, reachable from every node and
//! pod) and connects out from the caller's namespace. Only traces go
//! through it: the one-shot run sends the verdict's alert records itself.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};

use super::{LabError, Plan, netns};

/// The probers' environment when the caller's traces endpoint is on its
/// loopback: that endpoint rewritten to the relay, metrics and logs off.
#[derive(Debug, Default)]
pub struct ProberEnv {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

/// `scheme://host:port/path` of an OTLP endpoint, when `host` is a
/// loopback address.
fn loopback(url: &str) -> Option<(&str, SocketAddr, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().ok()?
    };
    ip.is_loopback()
        .then(|| Some((scheme, SocketAddr::new(ip, port.parse().ok()?), path)))?
}

/// Starts the relay when the traces endpoint (`endpoint`, an OTLP/HTTP
/// base URL such as the lab's own collector; else
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`)
/// is on this machine's loopback. It lives as long as this process.
pub fn start(plan: &Plan, endpoint: Option<&str>) -> Result<ProberEnv, LabError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let (url, signal) = match (
        endpoint,
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        var("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(u), _, _) => (u.to_string(), false),
        (None, Some(u), _) => (u, true),
        (None, None, Some(u)) => (u, false),
        (None, None, None) => return Ok(ProberEnv::default()),
    };
    let Some((scheme, target, path)) = loopback(&url) else {
        return Ok(ProberEnv::default());
    };
    let inside = SocketAddr::new(plan.underlay_ip(1).into(), 0);
    // Bound inside node1: the socket keeps that namespace wherever it is
    // used from.
    let listener =
        netns::run_in(&plan.node_ns(1), move || TcpListener::bind(inside))?.map_err(|e| {
            LabError::Kernel {
                what: format!("cannot listen for the probers' traces in the lab ({e})"),
            }
        })?;
    let at = listener.local_addr().map_err(|e| LabError::Kernel {
        what: e.to_string(),
    })?;
    std::thread::Builder::new()
        .name("lab-otlp-relay".into())
        .spawn(move || {
            for inbound in listener.incoming().flatten() {
                // This thread was started outside the lab: so is the
                // outbound socket.
                if let Ok(out) = TcpStream::connect(target) {
                    pipe(inbound, out);
                }
            }
        })
        .map_err(|e| LabError::Kernel {
            what: format!("cannot start a thread ({e})"),
        })?;
    let http = endpoint.is_some()
        || var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            // http/protobuf unless told otherwise, as the exporters default.
            .is_none_or(|p| p.starts_with("http"));
    // The general endpoint gets the signal's path appended over HTTP; the
    // per-signal one is used as written.
    let path = match (signal, http) {
        (false, true) => format!("{}/v1/traces", path.trim_end_matches('/')),
        _ => path.to_string(),
    };
    Ok(ProberEnv {
        set: vec![
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(),
                format!("{scheme}://{at}{path}"),
            ),
            ("OTEL_METRICS_EXPORTER".into(), "none".into()),
            ("OTEL_LOGS_EXPORTER".into(), "none".into()),
        ],
        remove: vec!["OTEL_EXPORTER_OTLP_ENDPOINT".into()],
    })
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    one(a, b2);
    one(b, a2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_are_relayed() {
        assert_eq!(
            loopback("http://127.0.0.1:4318"),
            Some(("http", "127.0.0.1:4318".parse().unwrap(), ""))
        );
        assert_eq!(
            loopback("http://localhost:4318/v1/traces"),
            Some(("http", "127.0.0.1:4318".parse().unwrap(), "/v1/traces"))
        );
        assert_eq!(
            loopback("https://[::1]:4317"),
            Some(("https", "[::1]:4317".parse().unwrap(), ""))
        );
        assert_eq!(loopback("http://collector.example:4318"), None);
        assert_eq!(loopback("http://10.0.0.5:4318"), None);
        assert_eq!(loopback("127.0.0.1:4318"), None, "no scheme");
    }
}
