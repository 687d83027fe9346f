//! Passive mode: the node's own connections as evidence. A BPF program on
//! `sock:inet_sock_set_state` and `tcp:tcp_retransmit_skb` times every
//! connect from SYN_SENT to ESTABLISHED (or CLOSE) with the SYNs it lost,
//! aggregated in the kernel per (network namespace, destination, outcome,
//! SYNs lost). Once a `[passive] interval` the reader takes what is new,
//! names the vantage from the namespace (`attribute::Vantages`) and the
//! target from the destination address (`attribute::Attribution`), and
//! records each connect as a result of source kind `passive-host` or
//! `passive-pod`: the stats, `/metrics`, the window the hub pulls and the
//! detector treat it as a series like any other, judged apart from probes.
//! Connects still in SYN_SENT that lost a SYN become stalls, as a probe's
//! do, so the early verdict holds for real traffic too.
//!
//! Invariant: no per-packet or per-connection event crosses to userspace;
//! the kernel's maps are bounded (`max_destinations`, `max_connecting`) and
//! what does not fit is counted.

mod attribute;
pub mod bpf;
pub mod metrics;
pub mod read;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::PassiveConfig;
use crate::model::Record;
use crate::model::{Dims, Pending, Phases, ProbeResult, SourceKind, Target, TargetList};
use crate::stats::{Live, PendingStall};
use attribute::{Attribution, Vantages};
use metrics::{ConnectLabels, PassiveMetrics};
use read::{ConnectKey, Connecting, Deltas};

#[derive(Debug, thiserror::Error)]
pub enum PassiveError {
    #[error(
        "passive mode is unavailable: {0}; set [passive] enabled = false, or run a build and kernel that have it"
    )]
    Unavailable(String),
    #[error(
        "passive mode could not start: {what}; run as root with CAP_BPF and CAP_PERFMON (deploy/passive; kernels before 5.11 also want CAP_SYS_RESOURCE for locked memory)"
    )]
    Load { what: String },
    #[error("cannot read passive mode's maps: {0}")]
    Read(String),
    #[error(
        "cannot read the network namespace {path} ({source}); [passive] pod_netns lists namespace paths, such as /run/netns/NAME"
    )]
    Netns {
        path: String,
        source: std::io::Error,
    },
}

/// What the reader records into and reads from.
pub struct Context {
    pub source_node: Arc<str>,
    /// The targets of the moment (the daemon's targets channel): they name
    /// the destinations.
    pub targets: tokio::sync::watch::Receiver<TargetList>,
    /// The fan-out results go to (without tracing: there is no probe).
    pub sink: Arc<dyn Record>,
    /// The stats' live half (`Stats::live`): the connects stalled in
    /// SYN_SENT are judged with the probes' stalls.
    pub live: Arc<Live>,
    pub metrics: PassiveMetrics,
}

/// A connect read at most this many times per bucket per reading: a
/// corrupt or wrapped counter never turns into billions of results.
const MAX_PER_BUCKET: u32 = 1_000_000;

fn netns_of(path: &str) -> Result<u32, PassiveError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.ino() as u32)
        .map_err(|source| PassiveError::Netns {
            path: path.to_string(),
            source,
        })
}

/// Reads the vantages `cfg` names: the prober's own namespace is the host
/// network.
pub fn vantages(cfg: &PassiveConfig) -> Result<Vantages, PassiveError> {
    let host = netns_of("/proc/self/ns/net")?;
    let pods = if cfg.pod_netns.is_empty() {
        None
    } else {
        Some(
            cfg.pod_netns
                .iter()
                .map(|p| netns_of(p))
                .collect::<Result<_, _>>()?,
        )
    };
    Ok(Vantages { host, pods })
}

/// Loads the BPF program and starts the reader on its own thread (map
/// reads are system calls). It ends when `cancel` is.
pub fn start(
    cfg: &PassiveConfig,
    ctx: Context,
    cancel: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, PassiveError> {
    let vantages = vantages(cfg)?;
    let loaded = bpf::Loaded::load(cfg.max_destinations, cfg.max_connecting, std::process::id())?;
    ctx.metrics.up.set(1);
    let (interval, idle) = (cfg.interval.get(), cfg.idle.get());
    tracing::info!(
        max_destinations = cfg.max_destinations,
        "Passive mode reads this node's connections."
    );
    std::thread::Builder::new()
        .name("tailprobe-passive".into())
        .spawn(move || reader(loaded, vantages, ctx, (interval, idle), cancel))
        .map_err(|e| PassiveError::Load {
            what: format!("cannot start the reader thread ({e})"),
        })
}

fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

fn reader(
    mut loaded: bpf::Loaded,
    vantages: Vantages,
    ctx: Context,
    (interval, idle): (Duration, Duration),
    cancel: CancellationToken,
) {
    let mut deltas = Deltas::default();
    let mut overflow = 0u64;
    let mut failing = false;
    loop {
        let wake = Instant::now() + interval;
        while Instant::now() < wake {
            if cancel.is_cancelled() {
                ctx.live.set_passive(Vec::new());
                return;
            }
            std::thread::sleep(Duration::from_millis(50).min(interval));
        }
        let reading = match loaded.read() {
            Ok(r) => r,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "Passive mode cannot read its maps; retrying every interval.");
                }
                failing = true;
                ctx.metrics.up.set(0);
                continue;
            }
        };
        failing = false;
        ctx.metrics.up.set(1);
        let targets = TargetList::clone(&ctx.targets.borrow());
        let attribution = Attribution::new(&targets);
        let (now, wall, mono) = (Instant::now(), SystemTime::now(), monotonic_ns());
        let mut step = Step {
            ctx: &ctx,
            vantages: &vantages,
            attribution: &attribution,
            wall,
        };
        for (k, v) in &reading.connects {
            let new = deltas.update(*k, v, now);
            if let (false, Some(key)) = (new.is_empty(), ConnectKey::parse(k)) {
                step.connects(&key, &new);
            }
        }
        ctx.live.set_passive(step.stalls(&reading.connecting, mono));
        ctx.metrics
            .overflow
            .inc_by(reading.overflow.saturating_sub(overflow));
        overflow = overflow.max(reading.overflow);
        let gone = deltas.idle(now, idle);
        if !gone.is_empty() {
            loaded.remove(&gone);
        }
        ctx.metrics.destinations.set(deltas.len() as i64);
        ctx.metrics.connecting.set(reading.connecting.len() as i64);
    }
}

/// One reading's work.
struct Step<'a> {
    ctx: &'a Context,
    vantages: &'a Vantages,
    attribution: &'a Attribution,
    wall: SystemTime,
}

impl Step<'_> {
    fn connects(&mut self, key: &ConnectKey, new: &[(usize, u32)]) {
        let kind = self.vantages.kind_of(key.destination.netns);
        let target = self.attribution.target(&key.destination.addr);
        let total: u64 = new.iter().map(|(_, n)| u64::from(*n)).sum();
        self.ctx
            .metrics
            .connects
            .get_or_create(&ConnectLabels {
                vantage: match kind {
                    Some(SourceKind::PassiveHost) => "host",
                    Some(_) => "pod",
                    None => "other",
                },
                destination: if target.is_some() { "target" } else { "other" },
            })
            .inc_by(total);
        let (Some(kind), Some(target)) = (kind, target) else {
            return;
        };
        for &(bucket, n) in new {
            let took = read::bucket_upper(bucket);
            let r = self.result(kind, target, key, took);
            for _ in 0..n.min(MAX_PER_BUCKET) {
                self.ctx.sink.record(&r, None);
            }
        }
    }

    /// A connect as a probe result: only its connect phase is known.
    fn result(
        &self,
        kind: SourceKind,
        t: &Arc<Target>,
        key: &ConnectKey,
        took: Duration,
    ) -> ProbeResult {
        let dims = Dims::of_target(&self.ctx.source_node, kind, t);
        let outcome = key.end.outcome();
        let established = outcome == crate::model::Outcome::Ok;
        ProbeResult {
            target: Arc::clone(t),
            source_node: Arc::clone(&self.ctx.source_node),
            source_kind: kind,
            path: dims.path,
            destination_node: dims.destination_node,
            started_at: self.wall.checked_sub(took).unwrap_or(self.wall),
            start_lag: Duration::ZERO,
            phases: Phases {
                dns: None,
                connect: established.then_some(took),
                tls: None,
                first_byte: None,
                total: took,
            },
            outcome,
            status: None,
            error: (!established).then(|| format!("{:?} after {took:?}", key.end)),
            tcp_info: None,
            syn_retransmits: u32::from(key.syns_lost),
            cert_not_after: None,
            syn_events: Vec::new(),
            local_addr: None,
            peer_addr: Some(key.destination.addr),
            body_bytes: 0,
            content_length: None,
            rejected_node_header: false,
        }
    }

    /// Connects in SYN_SENT that lost a SYN, as stalls of their series.
    fn stalls(&self, connecting: &[[u8; read::FLIGHT_LEN]], mono: u64) -> Vec<PendingStall> {
        connecting
            .iter()
            .filter_map(Connecting::parse)
            .filter(|c| c.syns_lost > 0)
            .filter_map(|c| {
                let kind = self.vantages.kind_of(c.destination.netns)?;
                let t = self.attribution.target(&c.destination.addr)?;
                let waited = Duration::from_nanos(mono.saturating_sub(c.started_ns));
                Some(PendingStall {
                    dims: Dims::of_target(&self.ctx.source_node, kind, t),
                    url: format!("tcp://{}", c.destination.addr),
                    pending: Pending {
                        at: self.wall.checked_sub(waited).unwrap_or(self.wall),
                        syn_retransmits: c.syns_lost,
                        // The first SYN is lost at the initial timeout.
                        stalled_after: waited.min(Duration::from_secs(1)),
                        waited,
                    },
                })
            })
            .collect()
    }
}
