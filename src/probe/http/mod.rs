//! The HTTP probe: resolve, connect our own socket (so `TCP_INFO` can be read
//! while the SYN is pending and right after it completes), one HTTP/1.1 GET with
//! `Connection: close` over hyper, read the body to the end (bounded), close.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::socket;
use super::{CountGuard, Prober, StallHold};
use crate::model::{Outcome, PathKind, Phases, ProbeResult, SynEvent, TcpInfo};
use crate::model::{ProbeKind, Target, TargetNode};
use std::sync::Arc;

/// Host-name lookups (getaddrinfo, as curl does) run on blocking threads
/// that cannot be cancelled: at most this many at once, so a dead resolver
/// strands a bounded number of threads, not one per probe.
const MAX_LOOKUPS: usize = 32;

/// A lookup, its wait for a slot included, ends by then as `dns-timeout`:
/// past glibc's own 5 s per attempt, twice.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(12);

static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_LOOKUPS);

/// Resolves `host` through the system resolver, bounded and timed out. The
/// caller gives up at the deadline even if the blocking call goes on; the
/// slot is held until it returns, which is what bounds the threads.
async fn lookup(host: &str, port: u16, deadline: Instant) -> Result<SocketAddr, Failure> {
    let timed_out = || {
        Failure::new(
            Outcome::DnsTimeout,
            format!("no answer for {host} from the node's resolver in time"),
        )
    };
    let slot = tokio::time::timeout_at(deadline, LOOKUPS.acquire())
        .await
        .map_err(|_| timed_out())?
        .expect("the lookup semaphore is never closed");
    let name = host.to_string();
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port)).map(|mut a| a.next())
    });
    match tokio::time::timeout_at(deadline, task).await {
        Err(_) => Err(timed_out()),
        Ok(Err(e)) => Err(Failure::new(
            Outcome::Error,
            format!("the lookup of {host} failed ({e})"),
        )),
        Ok(Ok(Err(e))) => Err(Failure::new(
            Outcome::DnsError,
            format!("cannot resolve {host}: {e}"),
        )),
        Ok(Ok(Ok(None))) => Err(Failure::new(
            Outcome::DnsError,
            format!("{host} has no address"),
        )),
        Ok(Ok(Ok(Some(a)))) => Ok(a),
    }
}

/// The connect mark: the end of DNS plus the handshake. When no SYN was
/// retransmitted, the handshake is the kernel's own first RTT sample (SYN
/// sent to SYN-ACK processed, in microseconds), which leaves out the socket's
/// setup before the SYN and the task's wake-up after the SYN-ACK: what a
/// packet capture shows. With retransmissions the kernel keeps no such
/// sample (Karn), and the handshake is timed from the connect() call.
fn connect_mark(
    t0: Instant,
    dns: Option<Duration>,
    syn_sent: Option<Instant>,
    connected: Instant,
    info: Option<TcpInfo>,
) -> Duration {
    let start = syn_sent.unwrap_or(t0);
    let timed = connected.saturating_duration_since(start);
    let wire = info
        .filter(|i| i.total_retrans == 0 && i.rtt_us > 0)
        .map(|i| Duration::from_micros(u64::from(i.rtt_us)))
        .filter(|w| *w <= timed);
    dns.unwrap_or_default() + wire.unwrap_or(timed)
}

/// The largest response head a probe reads (hyper's minimum is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 << 10;

/// A node name is a DNS subdomain: at most 253 bytes. A longer header is not
/// even read.
const MAX_NODE_NAME: usize = 253;

/// The header our echo target sets, naming the node that answered.
pub const NODE_HEADER: &str = "x-tailprobe-node";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dns,
    Connect,
    Exchange,
}

/// What a probe has learned so far; kept outside the probe future so that a
/// timeout or cancellation still reports the phases that completed.
struct Progress {
    phase: Phase,
    phases: Phases,
    tcp_info: Option<TcpInfo>,
    syn_retransmits: u32,
    syn_events: Vec<SynEvent>,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    status: Option<u16>,
    node_header: Option<String>,
    body_bytes: u64,
    content_length: Option<u64>,
    /// When the connect() call sent the first SYN.
    syn_sent: Option<Instant>,
    /// The probe's place among the stalls, once it has lost a SYN.
    hold: StallHold,
    started_at: SystemTime,
    t0: Instant,
}

struct Failure {
    outcome: Outcome,
    message: String,
}

impl Failure {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
        }
    }
}

impl Prober {
    /// Runs one probe: a fresh connection, never reused. Returns when the
    /// exchange ends, the target's timeout passes or `cancel` fires.
    pub async fn probe(&self, target: &Arc<Target>, cancel: &CancellationToken) -> ProbeResult {
        self.probe_held(target, cancel).await.0
    }

    /// [`Prober::probe`], and the probe's place among the stalls in
    /// progress: drop it once the result is recorded, so the stall and the
    /// sample are never both missing.
    pub async fn probe_held(
        &self,
        target: &Arc<Target>,
        cancel: &CancellationToken,
    ) -> (ProbeResult, StallHold) {
        let _in_flight = CountGuard::new(&self.in_flight.probes);
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let mut st = Progress {
            phase: Phase::Dns,
            phases: Phases::default(),
            tcp_info: None,
            syn_retransmits: 0,
            syn_events: Vec::new(),
            local: None,
            peer: None,
            status: None,
            node_header: None,
            body_bytes: 0,
            content_length: None,
            syn_sent: None,
            hold: StallHold::default(),
            started_at,
            t0,
        };
        let ended = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            r = tokio::time::timeout(target.timeout, self.run(target, t0, &mut st)) => Some(r),
        };
        let failure = match ended {
            None => Some(Failure::new(
                Outcome::Cancelled,
                "shut down while in flight",
            )),
            Some(Ok(Ok(()))) => None,
            Some(Ok(Err(f))) => Some(f),
            Some(Err(_elapsed)) => Some(match st.phase {
                Phase::Dns => Failure::new(
                    Outcome::DnsTimeout,
                    format!(
                        "{} not resolved after {}",
                        target.host,
                        humantime::format_duration(target.timeout)
                    ),
                ),
                Phase::Connect => Failure::new(
                    Outcome::ConnectTimeout,
                    format!(
                        "not connected after {}",
                        humantime::format_duration(target.timeout)
                    ),
                ),
                Phase::Exchange => Failure::new(
                    Outcome::TotalTimeout,
                    format!(
                        "no complete response after {}",
                        humantime::format_duration(target.timeout)
                    ),
                ),
            }),
        };
        st.phases.total = t0.elapsed();
        let (outcome, error) = match failure {
            Some(f) => (f.outcome, Some(f.message)),
            None => match (&target.kind, st.status) {
                (ProbeKind::Tcp | ProbeKind::Dns(_), _) => (Outcome::Ok, None),
                (ProbeKind::Http, Some(s)) if target.status_ok(s) => (Outcome::Ok, None),
                (ProbeKind::Http, Some(s)) => {
                    (Outcome::HttpStatus, Some(format!("HTTP status {s}")))
                }
                (ProbeKind::Http, None) => (Outcome::ProtocolError, Some("no status".into())),
            },
        };
        let (destination, rejected_node_header): (Option<Arc<str>>, bool) =
            match (&target.node, st.node_header) {
                (TargetNode::Known(n), _) => (Some(n.as_str().into()), false),
                (TargetNode::Mixed(ns), Some(h)) if ns.contains(&h) => (Some(h.into()), false),
                (TargetNode::Unknown, Some(h)) if self.known_nodes.contains(&h) => {
                    (Some(h.into()), false)
                }
                (_, Some(_)) => (None, true),
                (_, None) => (None, false),
            };
        st.hold.landed(&self.in_flight, st.syn_retransmits);
        let result = ProbeResult {
            path: PathKind::classify(&self.source_node, destination.as_deref()),
            target: Arc::clone(target),
            source_node: Arc::clone(&self.source_node),
            source_kind: self.source_kind,
            destination_node: destination,
            started_at,
            start_lag: Duration::ZERO,
            phases: st.phases,
            outcome,
            status: st.status,
            error,
            tcp_info: st.tcp_info,
            syn_retransmits: st.syn_retransmits,
            syn_events: st.syn_events,
            local_addr: st.local,
            peer_addr: st.peer,
            body_bytes: st.body_bytes,
            content_length: st.content_length,
            rejected_node_header,
        };
        (result, st.hold)
    }

    async fn run(&self, t: &Arc<Target>, t0: Instant, st: &mut Progress) -> Result<(), Failure> {
        let addr = match t.ip {
            Some(ip) => SocketAddr::new(ip, t.port),
            None => {
                let deadline = Instant::now() + t.connect_timeout.min(LOOKUP_TIMEOUT);
                let found = lookup(&t.host, t.port, deadline).await?;
                st.phases.dns = Some(t0.elapsed());
                found
            }
        };
        st.peer = Some(addr);
        if let ProbeKind::Dns(q) = &t.kind {
            st.phase = Phase::Exchange;
            // Boxed: its 1.5 KB receive buffer must not enlarge every probe.
            return Box::pin(query(addr, q, t0, st)).await;
        }
        st.phase = Phase::Connect;
        let stream = self
            .connect(t, addr, Instant::now() + t.connect_timeout, st)
            .await?;
        let connected = Instant::now();
        let info = socket::tcp_info(stream.as_fd()).ok();
        if let Some(info) = info {
            st.syn_retransmits = st.syn_retransmits.max(info.total_retrans);
            st.tcp_info = Some(info);
        }
        st.phases.connect = Some(connect_mark(
            t0,
            st.phases.dns,
            st.syn_sent,
            connected,
            info,
        ));
        st.local = stream.local_addr().ok();
        if t.kind == ProbeKind::Tcp {
            return Ok(());
        }
        st.phase = Phase::Exchange;
        // Boxed: the exchange's state is only allocated once connected, which
        // keeps a probe waiting on SYN retransmission small.
        Box::pin(self.exchange(t, t0, stream, st)).await
    }

    /// A non-blocking connect whose `TCP_INFO` is polled while it is pending,
    /// so a SYN retransmission is known about a second after it happens rather
    /// than when the connect finally completes. One timer serves both the
    /// polling and the connect deadline.
    async fn connect(
        &self,
        t: &Arc<Target>,
        addr: SocketAddr,
        deadline: Instant,
        st: &mut Progress,
    ) -> Result<TcpStream, Failure> {
        let local =
            |e: io::Error| Failure::new(Outcome::Error, format!("cannot open a socket: {e}"));
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )
        .map_err(local)?;
        sock.set_tcp_nodelay(true).map_err(local)?;
        if let Some(n) = self.syn_retries {
            socket::set_syn_count(sock.as_fd(), n).map_err(local)?;
        }
        let c0 = Instant::now();
        st.syn_sent = Some(c0);
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(connect_failure(e)),
        }
        let stream = TcpStream::from_std(std::net::TcpStream::from(sock)).map_err(local)?;
        let timer = tokio::time::sleep_until((c0 + self.syn_poll).min(deadline));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                ready = stream.writable() => {
                    ready.map_err(connect_failure)?;
                    // Writable means the handshake ended; SO_ERROR says how.
                    return match stream.take_error() {
                        Ok(None) => Ok(stream),
                        Ok(Some(e)) | Err(e) => Err(connect_failure(e)),
                    };
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Failure::new(
                            Outcome::ConnectTimeout,
                            format!("not connected after {}", humantime::format_duration(deadline - c0)),
                        ));
                    }
                    if let Ok(info) = socket::tcp_info(stream.as_fd())
                        && info.total_retrans > st.syn_retransmits
                    {
                        st.syn_retransmits = info.total_retrans;
                        st.syn_events.push(SynEvent {
                            at: c0.elapsed(),
                            retransmits: info.total_retrans.min(255) as u8,
                        });
                        st.hold.lost(
                            &self.in_flight,
                            info.total_retrans,
                            (st.started_at, st.t0.into_std()),
                            (t, &self.source_node, self.source_kind),
                        );
                    }
                    timer.as_mut().reset((now + self.syn_poll).min(deadline));
                }
            }
        }
    }

    async fn exchange(
        &self,
        t: &Target,
        t0: Instant,
        stream: TcpStream,
        st: &mut Progress,
    ) -> Result<(), Failure> {
        // A response head larger than this is refused, so a hostile or broken
        // target cannot make a stalled probe hold hyper's default ~400 KB.
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| http_failure(&e))?;
        let request = http::Request::get(t.path.as_str())
            .header(http::header::HOST, t.authority.as_str())
            .header(http::header::CONNECTION, "close")
            .header(
                http::header::USER_AGENT,
                concat!("tailprobe/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| Failure::new(Outcome::Error, format!("cannot build the request: {e}")))?;
        let max_body = t.max_body_bytes;
        let exchange = async {
            let head_deadline = Instant::now() + t.first_byte_timeout;
            let response = tokio::time::timeout_at(head_deadline, sender.send_request(request))
                .await
                .map_err(|_| {
                    Failure::new(
                        Outcome::TotalTimeout,
                        format!(
                            "no response head {} after the connect",
                            humantime::format_duration(t.first_byte_timeout)
                        ),
                    )
                })?
                .map_err(|e| http_failure(&e))?;
            st.phases.first_byte = Some(t0.elapsed());
            st.status = Some(response.status().as_u16());
            st.node_header = response
                .headers()
                .get(NODE_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= MAX_NODE_NAME)
                .map(str::to_string);
            st.content_length = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| http_failure(&e))?;
                if let Some(data) = frame.data_ref() {
                    st.body_bytes += data.len() as u64;
                    if st.body_bytes > max_body {
                        return Err(Failure::new(
                            Outcome::BodyTooLarge,
                            format!(
                                "body exceeds {max_body} bytes; raise max_body_bytes if that is expected"
                            ),
                        ));
                    }
                }
            }
            Ok(())
        };
        // The connection is driven on its own task, as hyper intends (driving
        // it inside the probe future cost a third of the throughput). The
        // task dies with the probe on a failure, a timeout or cancellation;
        // after a finished exchange it ends by itself, since the request
        // asked for `Connection: close` (a test holds the server side open to
        // prove it). Its own result is never read: hyper's HTTP/1 client hands
        // every connection error to the request in flight, or to the body
        // being read, with the I/O error as its source.
        let driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(conn));
        exchange.await?;
        driver.detach();
        Ok(())
    }
}

/// A DNS probe: the query's time is the `dns` phase.
async fn query(
    server: SocketAddr,
    q: &crate::model::DnsQuery,
    t0: Instant,
    st: &mut Progress,
) -> Result<(), Failure> {
    use super::dns::{DnsAnswer, rcode_name, resolve};
    let answer = resolve(server, q)
        .await
        .map_err(|e| Failure::new(Outcome::Error, format!("cannot query {server}: {e}")))?;
    match answer {
        DnsAnswer::Answered { rcode: 0, .. } => {
            st.phases.dns = Some(t0.elapsed());
            Ok(())
        }
        DnsAnswer::Answered { rcode, .. } => {
            st.phases.dns = Some(t0.elapsed());
            Err(Failure::new(
                Outcome::DnsError,
                format!("{server} answered {} for {}", rcode_name(rcode), q.name),
            ))
        }
        DnsAnswer::Silent => Err(Failure::new(
            Outcome::TotalTimeout,
            format!(
                "no answer from {server} after {} attempts of {}",
                q.attempts,
                humantime::format_duration(q.attempt_timeout)
            ),
        )),
    }
}

fn connect_failure(e: io::Error) -> Failure {
    let outcome = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Outcome::Refused,
        Some(libc::ECONNRESET) => Outcome::Reset,
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN | libc::ENETDOWN) => {
            Outcome::Unreachable
        }
        Some(libc::ETIMEDOUT) => Outcome::ConnectTimeout,
        _ => Outcome::Error,
    };
    Failure::new(outcome, format!("connect: {e}"))
}

fn http_failure(e: &hyper::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            let outcome = match io.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Outcome::Reset,
                // A body cut short of its Content-Length by a FIN.
                io::ErrorKind::UnexpectedEof => Outcome::Closed,
                _ => Outcome::Error,
            };
            return Failure::new(outcome, format!("{e}: {io}"));
        }
        source = s.source();
    }
    let outcome = if e.is_incomplete_message() || e.is_canceled() {
        Outcome::Closed
    } else if e.is_parse() {
        Outcome::ProtocolError
    } else {
        Outcome::Error
    };
    Failure::new(outcome, e.to_string())
}

#[cfg(test)]
mod tests;
