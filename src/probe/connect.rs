//! The TCP phases: the name's lookup (getaddrinfo, as curl does) and a
//! non-blocking connect on our own socket, whose `TCP_INFO` is read while
//! the SYN is pending so each lost SYN is known within a poll of its loss.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Prober;
use super::run::{Failure, Progress};
use super::socket;
use crate::model::{Family, Outcome, SynEvent, Target, TcpInfo};

/// Host-name lookups run on blocking threads that cannot be cancelled: at
/// most this many at once, so a dead resolver strands a bounded number of
/// threads, not one per probe.
const MAX_LOOKUPS: usize = 32;

/// A lookup, its wait for a slot included, ends by then as `dns-timeout`:
/// past glibc's own 5 s per attempt, twice.
pub(super) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(12);

static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_LOOKUPS);

/// The first address of `host`, as curl connects to it.
pub(super) async fn lookup(
    host: &str,
    port: u16,
    family: Option<Family>,
    deadline: Instant,
) -> Result<SocketAddr, Failure> {
    Ok(lookup_all(host, port, family, deadline).await?[0])
}

/// Every address of `host`, in the resolver's order, through the system
/// resolver, bounded and timed out; never empty. The caller gives up at the
/// deadline even if the blocking call goes on; the slot is held until it
/// returns, which is what bounds the threads. A target pinned to a family
/// takes that family's addresses only (AAAA for IPv6).
pub(super) async fn lookup_all(
    host: &str,
    port: u16,
    family: Option<Family>,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Failure> {
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
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port)).map(|all| {
            let mut seen = Vec::new();
            for a in all.filter(|a| family.is_none_or(|f| Family::of(a.ip()) == f)) {
                if !seen.contains(&a) {
                    seen.push(a);
                }
            }
            seen
        })
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
        Ok(Ok(Ok(a))) if a.is_empty() => Err(Failure::new(
            Outcome::DnsError,
            match family {
                Some(f) => format!("{host} has no {} address", f.describe()),
                None => format!("{host} has no address"),
            },
        )),
        Ok(Ok(Ok(a))) => Ok(a),
    }
}

/// The connect mark: the end of DNS plus the handshake. When no SYN was
/// retransmitted, the handshake is the kernel's own first RTT sample (SYN
/// sent to SYN-ACK processed, in microseconds), which leaves out the socket's
/// setup before the SYN and the task's wake-up after the SYN-ACK: what a
/// packet capture shows. With retransmissions the kernel keeps no such
/// sample (Karn), and the handshake is timed from the connect() call.
pub(super) fn connect_mark(
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

impl Prober {
    /// A non-blocking connect whose `TCP_INFO` is polled while it is pending,
    /// so a SYN retransmission is known about a second after it happens rather
    /// than when the connect finally completes. One timer serves both the
    /// polling and the connect deadline.
    pub(super) async fn connect(
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
        .map_err(|e| match e.raw_os_error() {
            // The kernel has the family turned off (ipv6.disable=1): a
            // setup, like a network without a route for it.
            Some(libc::EAFNOSUPPORT) => Failure::new(
                Outcome::Unreachable,
                format!(
                    "cannot open an {} socket ({e}): this host has the family turned off",
                    Family::of(addr.ip()).describe()
                ),
            ),
            _ => local(e),
        })?;
        sock.set_tcp_nodelay(true).map_err(local)?;
        if let Some(n) = self.syn_retries {
            socket::set_syn_count(sock.as_fd(), n).map_err(local)?;
        }
        let c0 = Instant::now();
        st.syn_sent = Some(c0);
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(connect_failure(e, addr)),
        }
        let stream = TcpStream::from_std(std::net::TcpStream::from(sock)).map_err(local)?;
        let timer = tokio::time::sleep_until((c0 + self.syn_poll).min(deadline));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                ready = stream.writable() => {
                    ready.map_err(|e| connect_failure(e, addr))?;
                    // Writable means the handshake ended; SO_ERROR says how.
                    return match stream.take_error() {
                        Ok(None) => Ok(stream),
                        Ok(Some(e)) | Err(e) => Err(connect_failure(e, addr)),
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
                            &self.live,
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
}

pub(super) fn connect_failure(e: io::Error, addr: SocketAddr) -> Failure {
    let outcome = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Outcome::Refused,
        Some(libc::ECONNRESET) => Outcome::Reset,
        Some(
            libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::ENETDOWN
            | libc::EADDRNOTAVAIL,
        ) => Outcome::Unreachable,
        Some(libc::ETIMEDOUT) => Outcome::ConnectTimeout,
        _ => Outcome::Error,
    };
    // No route for the family at all: say so, since it is a setup, not a
    // path's failure (an IPv6 address from an IPv4-only network, say).
    let hint = match (e.raw_os_error(), addr) {
        (Some(libc::ENETUNREACH | libc::EADDRNOTAVAIL), SocketAddr::V6(_)) => {
            "; this network has no IPv6 route or address for it"
        }
        (Some(libc::ENETUNREACH | libc::EADDRNOTAVAIL), SocketAddr::V4(_)) => {
            "; this network has no IPv4 route or address for it"
        }
        _ => "",
    };
    Failure::new(outcome, format!("connect to {addr}: {e}{hint}"))
}
