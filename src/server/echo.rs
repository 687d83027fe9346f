//! `tailprobe echo`: the target every node runs. It names the node and pod
//! that answered in headers, so a probe through a Service with backends on
//! several nodes still knows its destination; `/bytes/N` serves N bytes for
//! path-MTU probes.
//!
//! Anyone who reaches a node can reach its echo, so it is bounded by
//! construction: `/bytes/N` streams from one static chunk (memory does not
//! grow with N), at most [`MAX_STREAMS`] bodies stream at once (past that a
//! 503 with `Retry-After`), and the server below it caps connections, head
//! size and head-read time.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The largest body `/bytes/N` serves.
pub const MAX_BYTES: usize = 64 << 20;

/// `/bytes/N` bodies streaming at once.
pub const MAX_STREAMS: usize = 64;

/// Every `/bytes/N` body is cut from this.
static CHUNK: [u8; 64 << 10] = [b'x'; 64 << 10];

#[derive(Debug, Clone)]
pub struct EchoIdentity {
    pub node: String,
    pub pod: String,
}

/// Service time added before every response: a fixed delay, or jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delay {
    None,
    Fixed(Duration),
    /// Uniform between the two bounds.
    Uniform(Duration, Duration),
    /// Exponential with this mean: a long tail of slow responses.
    Exponential(Duration),
    /// A share of responses (0 to 1) this late, the rest at once: the
    /// bimodal service time of a backend that stalls now and then.
    Share(Duration, f64),
}

impl std::str::FromStr for Delay {
    type Err = String;
    /// `5ms`, `uniform:1ms..20ms`, `exp:5ms`, `2s@10%`.
    fn from_str(s: &str) -> Result<Self, String> {
        let d = |v: &str| {
            humantime::parse_duration(v.trim()).map_err(|e| {
                format!("invalid duration \"{v}\" in --delay ({e}); write it like \"5ms\"")
            })
        };
        if let Some(range) = s.strip_prefix("uniform:") {
            let (lo, hi) = range
                .split_once("..")
                .ok_or_else(|| format!("--delay \"{s}\": write a range as uniform:1ms..20ms"))?;
            let (lo, hi) = (d(lo)?, d(hi)?);
            if lo > hi {
                return Err(format!(
                    "--delay \"{s}\": the lower bound is above the upper one"
                ));
            }
            Ok(Delay::Uniform(lo, hi))
        } else if let Some(mean) = s.strip_prefix("exp:") {
            Ok(Delay::Exponential(d(mean)?))
        } else if let Some((late, share)) = s.split_once('@') {
            let pct: f64 = share
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse().ok())
                .filter(|p: &f64| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    format!(
                        "--delay \"{s}\": write a share of late responses as 2s@10% (0 to 100 %)"
                    )
                })?;
            Ok(Delay::Share(d(late)?, pct / 100.0))
        } else {
            Ok(match d(s)? {
                z if z.is_zero() => Delay::None,
                fixed => Delay::Fixed(fixed),
            })
        }
    }
}

/// The spec back, as `--delay` reads it (durations in microseconds).
impl std::fmt::Display for Delay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: &Duration| format!("{}us", d.as_micros());
        match self {
            Delay::None => write!(f, "0s"),
            Delay::Fixed(d) => write!(f, "{}", us(d)),
            Delay::Uniform(a, b) => write!(f, "uniform:{}..{}", us(a), us(b)),
            Delay::Exponential(m) => write!(f, "exp:{}", us(m)),
            Delay::Share(d, p) => write!(f, "{}@{}%", us(d), p * 100.0),
        }
    }
}

impl Delay {
    /// One draw of the service time.
    pub fn sample(&self) -> Duration {
        use rand::Rng;
        match *self {
            Delay::None => Duration::ZERO,
            Delay::Fixed(d) => d,
            Delay::Uniform(lo, hi) => lo + (hi - lo).mul_f64(rand::rng().random::<f64>()),
            Delay::Exponential(mean) => {
                let u: f64 = rand::rng().random_range(f64::EPSILON..1.0);
                mean.mul_f64(-u.ln()).min(Duration::from_secs(3600))
            }
            Delay::Share(late, share) => {
                if rand::rng().random::<f64>() < share {
                    late
                } else {
                    Duration::ZERO
                }
            }
        }
    }
}

#[derive(Clone)]
struct EchoState {
    delay: Delay,
    streams: Arc<tokio::sync::Semaphore>,
    id: Arc<EchoIdentity>,
    node: HeaderValue,
    pod: HeaderValue,
}

pub fn router(id: EchoIdentity, delay: Delay) -> Router {
    let header =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    let state = EchoState {
        delay,
        streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
        node: header(&id.node),
        pod: header(&id.pod),
        id: Arc::new(id),
    };
    Router::new()
        .route("/bytes/{n}", get(bytes))
        .fallback(hello)
        .with_state(state)
}

/// Serves until `cancel` fires, then drains within `limits`' grace
/// ([`super::http::Limits::ECHO`] unless a rehearsal paces accepts).
pub async fn serve(
    listener: TcpListener,
    id: EchoIdentity,
    delay: Delay,
    limits: super::http::Limits,
    counters: super::http::ServerCounters,
    cancel: CancellationToken,
) {
    super::http::serve(listener, router(id, delay), limits, counters, cancel).await
}

/// A listener on `addr` with this accept backlog (the kernel caps it at
/// `net.core.somaxconn`).
pub fn listen(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(backlog)
}

async fn wait(s: &EchoState) {
    let d = s.delay.sample();
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn tagged(s: &EchoState, mut r: Response) -> Response {
    r.headers_mut()
        .insert(crate::probe::NODE_HEADER, s.node.clone());
    r.headers_mut().insert("x-tailprobe-pod", s.pod.clone());
    r
}

async fn hello(State(s): State<EchoState>) -> Response {
    wait(&s).await;
    let body = format!("tailprobe echo node={} pod={}\n", s.id.node, s.id.pod);
    tagged(&s, body.into_response())
}

/// `n` bytes as a stream of slices of [`CHUNK`]; `permit` is held until the
/// last one is sent (or the client goes away).
fn body_of(n: usize, permit: tokio::sync::OwnedSemaphorePermit) -> axum::body::Body {
    let chunks = (0..n.div_ceil(CHUNK.len())).map(move |i| {
        let len = (n - i * CHUNK.len()).min(CHUNK.len());
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(&CHUNK[..len]))
    });
    let stream = futures::stream::iter(chunks);
    axum::body::Body::from_stream(futures::StreamExt::map(stream, move |c| {
        let _held = &permit;
        c
    }))
}

async fn bytes(State(s): State<EchoState>, Path(n): Path<String>) -> Response {
    wait(&s).await;
    match n.parse::<usize>() {
        Ok(n) if n <= MAX_BYTES => {
            let Ok(permit) = Arc::clone(&s.streams).try_acquire_owned() else {
                return tagged(
                    &s,
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(axum::http::header::RETRY_AFTER, "1")],
                        format!("{MAX_STREAMS} bodies are streaming; try again\n"),
                    )
                        .into_response(),
                );
            };
            let mut r = body_of(n, permit).into_response();
            r.headers_mut()
                .insert(axum::http::header::CONTENT_LENGTH, HeaderValue::from(n));
            tagged(&s, r)
        }
        _ => tagged(
            &s,
            (
                StatusCode::BAD_REQUEST,
                format!("/bytes/N takes a byte count up to {MAX_BYTES}\n"),
            )
                .into_response(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_specs_parse_and_sample_in_range() {
        assert_eq!("0s".parse::<Delay>(), Ok(Delay::None));
        assert_eq!(
            "5ms".parse::<Delay>(),
            Ok(Delay::Fixed(Duration::from_millis(5)))
        );
        let u: Delay = "uniform:1ms..20ms".parse().unwrap();
        for _ in 0..1000 {
            let d = u.sample();
            assert!(
                d >= Duration::from_millis(1) && d <= Duration::from_millis(20),
                "{d:?}"
            );
        }
        let e: Delay = "exp:5ms".parse().unwrap();
        let mean = (0..20_000).map(|_| e.sample().as_secs_f64()).sum::<f64>() / 20_000.0;
        assert!((mean - 0.005).abs() < 0.0005, "{mean}");
        assert!("uniform:5ms..1ms".parse::<Delay>().is_err());
        assert!(
            "uniform:5ms"
                .parse::<Delay>()
                .unwrap_err()
                .contains("uniform:1ms..20ms")
        );
        assert!("5x".parse::<Delay>().is_err());
        let b: Delay = "2s@10%".parse().unwrap();
        assert_eq!(b, Delay::Share(Duration::from_secs(2), 0.1));
        let late = (0..20_000).filter(|_| !b.sample().is_zero()).count();
        assert!((1_700..2_300).contains(&late), "{late}");
        assert!("2s@110%".parse::<Delay>().is_err());
        for spec in ["0s", "5ms", "uniform:1ms..20ms", "exp:5ms", "2s@12.5%"] {
            let d: Delay = spec.parse().unwrap();
            assert_eq!(d.to_string().parse::<Delay>(), Ok(d), "{spec}");
        }
        assert!("2s@10".parse::<Delay>().unwrap_err().contains("2s@10%"));
    }
}
