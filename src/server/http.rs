//! The HTTP/1 server the API and the echo both run on, bounded by
//! construction: a request's head must arrive within a deadline (also between
//! keep-alive requests, so an idle or slowloris connection is closed), heads
//! are capped in size, at most `max_connections` are open at once (past it a
//! new connection is closed at once and counted), and shutdown gives open
//! connections a short grace, then closes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ratelimit::RateLimit;

/// How much a server lets its clients hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; past it, a new one is closed on accept.
    pub max_connections: usize,
    /// A request's head must arrive within this, and an idle keep-alive
    /// connection is closed after it.
    pub header_read_timeout: Duration,
    /// The largest request head read (hyper's minimum is 8 KiB).
    pub max_head_bytes: usize,
    /// On shutdown, open connections may finish for this long.
    pub shutdown_grace: Duration,
    /// At most one accept this often (zero: as fast as they come); the rest
    /// wait in the kernel's accept queue, as behind a server whose accept
    /// loop is slow, and past its backlog their SYNs are dropped.
    pub accept_every: Duration,
}

impl Limits {
    /// The daemon's API, as `[server]` sets it: a few scrapers and the hub,
    /// never thousands.
    pub fn api(s: &crate::config::ServerConfig) -> Limits {
        Limits {
            max_connections: s.max_connections,
            header_read_timeout: s.header_read_timeout.get(),
            max_head_bytes: 16 << 10,
            shutdown_grace: s.shutdown_grace.get(),
            accept_every: Duration::ZERO,
        }
    }
    /// The echo target: every prober of the cluster, each with a few probes
    /// in flight.
    pub const ECHO: Limits = Limits {
        max_connections: 512,
        header_read_timeout: Duration::from_secs(10),
        max_head_bytes: 16 << 10,
        shutdown_grace: Duration::from_secs(2),
        accept_every: Duration::ZERO,
    };
}

/// What a server refused, for its owner's metrics.
#[derive(Debug, Clone, Default)]
pub struct ServerCounters {
    /// Connections closed on accept because `max_connections` were open.
    pub refused: Counter,
    /// Connections closed when the shutdown grace ran out.
    pub cut_at_shutdown: Counter,
}

/// The API's address is taken: what `run` and `hub` say when they cannot
/// listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({source}); pick a free port with [server] listen or --listen")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Serves `router` on `listener` until `stop` fires, then drains within the
/// grace. Accept errors (out of descriptors, for one) are logged,
/// rate-limited, and retried after a pause, never fatal.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counters: ServerCounters,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let connections = CancellationToken::new();
    let log = RateLimit::new(10);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let mut next_accept = tokio::time::Instant::now();
    loop {
        if !limits.accept_every.is_zero() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next_accept) => {}
            }
            next_accept = tokio::time::Instant::now() + limits.accept_every;
        }
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if let Some(suppressed) = log.allow() {
                        tracing::warn!(error = %e, suppressed, "Accepting a connection failed; retrying.");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            counters.refused.inc();
            if let Some(suppressed) = log.allow() {
                tracing::warn!(%peer, limit = limits.max_connections, suppressed, "Connection limit reached; closing new connections.");
            }
            drop(stream);
            continue;
        };
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let (stop_conn, counters) = (connections.clone(), counters.clone());
        tracker.spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => log_end(peer, r),
                _ = stop_conn.cancelled() => {
                    // Finish the exchange in progress, then close; the grace
                    // below bounds how long that may take.
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = conn.as_mut() => log_end(peer, r),
                        _ = tokio::time::sleep(limits.shutdown_grace) => {
                            counters.cut_at_shutdown.inc();
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    connections.cancel();
    tracker.close();
    tracker.wait().await;
}

fn log_end(peer: SocketAddr, r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "Connection ended with an error.");
    }
}
