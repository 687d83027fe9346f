//! One probe's run: its phases in order (DNS, connect, TLS, the HTTP
//! exchange), each bounded, and what it learned gathered into a
//! [`ProbeResult`] even when it ends early. The phases themselves are in
//! `connect.rs`, `tls.rs`, `http.rs` and `dns.rs`.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connect::{LOOKUP_TIMEOUT, connect_mark, lookup, lookup_all};
use super::{Prober, socket, tls};
use crate::model::{Outcome, PathKind, Phases, ProbeResult, SynEvent, TcpInfo};
use crate::model::{ProbeKind, Target, TargetNode};
use crate::stats::StallHold;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Dns,
    Connect,
    Tls,
    Exchange,
}

/// A response's node header: a node this prober knows, its name shared
/// rather than copied per probe, or another name (kept for a target whose
/// backends name it; otherwise refused).
#[derive(Debug)]
pub(super) enum NodeHeader {
    Known(Arc<str>),
    Other(Box<str>),
}

impl NodeHeader {
    fn name(&self) -> &str {
        match self {
            NodeHeader::Known(n) => n,
            NodeHeader::Other(n) => n,
        }
    }
}

/// What a probe has learned so far; kept outside the probe future so that a
/// timeout or cancellation still reports the phases that completed.
pub(super) struct Progress {
    pub(super) phase: Phase,
    pub(super) phases: Phases,
    pub(super) tcp_info: Option<TcpInfo>,
    pub(super) syn_retransmits: u32,
    pub(super) syn_events: Vec<SynEvent>,
    pub(super) local: Option<SocketAddr>,
    pub(super) peer: Option<SocketAddr>,
    pub(super) status: Option<u16>,
    /// The node the response's header names.
    pub(super) node_header: Option<NodeHeader>,
    pub(super) body_bytes: u64,
    pub(super) content_length: Option<u64>,
    /// When the connect() call sent the first SYN.
    pub(super) syn_sent: Option<Instant>,
    /// The server certificate's end of validity (`https://`).
    cert_not_after: Option<i64>,
    /// The probe's place among the stalls, once it has lost a SYN.
    pub(super) hold: StallHold,
    pub(super) started_at: SystemTime,
    pub(super) t0: Instant,
}

pub(super) struct Failure {
    pub(super) outcome: Outcome,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
        }
    }
}

/// A name probed at every address (`all_addresses`) mints a series per
/// address: at most this many, so a name with hundreds of records cannot
/// flood the stats and `/metrics`.
pub const MAX_ADDRESSES: usize = 16;

impl Prober {
    /// The probes one tick of `target` makes: one, or with `all_addresses`
    /// one per address its name resolves to (at most [`MAX_ADDRESSES`], in
    /// the resolver's order), each under its own series (`name@address`),
    /// all from one lookup whose time is each one's `dns` phase. A name
    /// that does not resolve is probed as the one target, so the failure is
    /// recorded under the target's own name.
    pub async fn probe_each(
        &self,
        target: &Arc<Target>,
        cancel: &CancellationToken,
    ) -> Vec<(ProbeResult, StallHold)> {
        if !target.all_addresses || target.ip.is_some() {
            return vec![self.probe_held(target, cancel).await];
        }
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let deadline = t0 + target.connect_timeout.min(LOOKUP_TIMEOUT);
        let found = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            r = lookup_all(&target.host, target.port, target.family, deadline) => r.ok(),
        };
        let Some(addrs) = found else {
            return vec![self.probe_held(target, cancel).await];
        };
        let dns = t0.elapsed();
        let each = addrs.into_iter().take(MAX_ADDRESSES).map(|a| {
            let t = Arc::new(target.at_address(a.ip()));
            async move {
                let (mut r, hold) = self.probe_held(&t, cancel).await;
                r.started_at = started_at;
                r.phases = r.phases.after_lookup(dns);
                (r, hold)
            }
        });
        futures::future::join_all(each).await
    }

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
        let _in_flight = self.live.in_flight();
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
            cert_not_after: None,
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
                Phase::Tls => Failure::new(
                    Outcome::TlsTimeout,
                    format!(
                        "the TLS handshake did not end within the probe's {}",
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
        // A known name is handed out shared, not copied per probe.
        let named = |n: &str| self.known_nodes.get(n).unwrap_or_else(|| n.into());
        let (destination, rejected_node_header): (Option<Arc<str>>, bool) =
            match (&target.node, st.node_header) {
                (TargetNode::Known(n), _) => (Some(named(n)), false),
                (TargetNode::Mixed(ns), Some(h)) if ns.iter().any(|n| n == h.name()) => {
                    (Some(named(h.name())), false)
                }
                (TargetNode::Unknown, Some(NodeHeader::Known(h))) => (Some(h), false),
                (_, Some(_)) => (None, true),
                (_, None) => (None, false),
            };
        st.hold.landed(&self.live, st.syn_retransmits);
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
            cert_not_after: st.cert_not_after,
        };
        (result, st.hold)
    }

    async fn run(&self, t: &Arc<Target>, t0: Instant, st: &mut Progress) -> Result<(), Failure> {
        let addr = match t.ip {
            Some(ip) => SocketAddr::new(ip, t.port),
            None => {
                let deadline = Instant::now() + t.connect_timeout.min(LOOKUP_TIMEOUT);
                let found = lookup(&t.host, t.port, t.family, deadline).await?;
                st.phases.dns = Some(t0.elapsed());
                found
            }
        };
        st.peer = Some(addr);
        if let ProbeKind::Dns(q) = &t.kind {
            st.phase = Phase::Exchange;
            // Boxed: its 1.5 KB receive buffer must not enlarge every probe.
            return Box::pin(super::dns::query(addr, q, t0, st)).await;
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
        let Some(o) = &t.tls else {
            st.phase = Phase::Exchange;
            // Boxed: the exchange's state is only allocated once connected,
            // which keeps a probe waiting on SYN retransmission small.
            return Box::pin(self.exchange(t, t0, stream, st)).await;
        };
        st.phase = Phase::Tls;
        let config = self
            .tls
            .config(o)
            .map_err(|e| Failure::new(Outcome::TlsError, e))?;
        let deadline = Instant::now() + t.tls_timeout;
        let (stream, not_after) = Box::pin(tls::handshake(
            config,
            &o.server_name,
            stream,
            deadline,
            t.tls_timeout,
        ))
        .await?;
        st.phases.tls = Some(t0.elapsed());
        st.cert_not_after = not_after;
        st.phase = Phase::Exchange;
        Box::pin(self.exchange(t, t0, stream, st)).await
    }
}
