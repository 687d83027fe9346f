//! `/metrics`, in OpenMetrics or the text format as the scraper asks
//! ([`super::exposition`]). Latency buckets have edges just below and above
//! every SYN-retransmit rung (classic 1, 3, 7, 15, 31, 63 s; linear 1, 2, 3,
//! 4, 5, 7, 11, 19, 35, 67 s), so each rung lands in a bucket of its own.
//!
//! Series are a budget ([`crate::config::MetricsConfig`]): by default one
//! histogram (connect) per path and target, 35 series for a target probed
//! over one path. Every path's counters start at zero when the path is first
//! seen, so `rate()` reads 0 rather than nothing; a target no longer probed
//! loses its series ([`Metrics::retain_targets`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::{Buckets, Grain, MetricPhase, MetricsConfig};
use crate::model::{Dims, ProbeResult};
use crate::model::{Outcome, Target};
use crate::model::{Record, SkipReason};
use crate::stats::Live;
use crate::stats::Phase;

mod findings;
mod labels;
mod live;
mod servers;
mod slo;
mod tls;

pub use findings::FindingsMetrics;
use labels::{PathLabels, PhaseLabels, ProbeLabels, SkipLabels, TargetLabels};

/// `buckets = "rungs"`, upper bounds in seconds. A rung at T arrives in
/// [T, 1.13 T + 0.1 s] (timers fire late, never early), so each rung's
/// bucket opens just below T; below a second, a decade is enough to tell a
/// healthy connect from a slow one.
pub const RUNG_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.5, //
    0.95, 1.25, // 1 s
    1.95, 2.35, // 2 s (linear)
    2.95, 3.5, // 3 s (classic total, linear)
    3.95, 4.6, // 4 s (linear)
    4.95, 5.75, // 5 s (linear)
    6.95, 8.0, // 7 s
    10.95, 12.5, // 11 s (linear)
    14.95, 17.0, // 15 s
    18.95, 21.6, // 19 s (linear)
    30.95, 34.9, // 31 s
    39.7, // 35 s (linear)
    62.95, 66.9, // 63 s
    75.8, // 67 s (linear)
    135.0,
];

/// `buckets = "fine"`: the rungs, sub-second detail, the DNS timeouts (5,
/// 10 s) and the Windows rungs (3, 9 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, //
    0.95, 1.25, // 1 s
    1.95, 2.35, // 2 s (linear)
    2.95, 3.5, // 3 s (classic total, linear, Windows)
    3.95, 4.6, // 4 s (linear)
    4.95, 5.75, // 5 s (linear, DNS timeout)
    6.95, 8.0, // 7 s
    8.95, 10.25, // 9 s (Windows), 10 s (DNS)
    10.95, 12.5, // 11 s (linear)
    14.95, 17.0, // 15 s
    18.95, 21.6, // 19 s (linear)
    30.95, 34.9, // 31 s
    39.7, // 35 s (linear)
    62.95, 66.9, // 63 s
    75.8, // 67 s (linear)
    127.0, 131.0, 135.0, 300.0,
];

fn rung_histogram() -> Histogram {
    Histogram::new(RUNG_BUCKETS.iter().copied())
}

fn fine_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

fn phase_of(p: MetricPhase) -> Phase {
    match p {
        MetricPhase::Dns => Phase::Dns,
        MetricPhase::Connect => Phase::Connect,
        MetricPhase::Tls => Phase::Tls,
        MetricPhase::FirstByte => Phase::FirstByte,
        MetricPhase::Total => Phase::Total,
    }
}

/// The registry and handles to every metric.
pub struct Metrics {
    registry: Registry,
    probes: Family<ProbeLabels, Counter>,
    duration: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    syn_retransmits: Family<PathLabels, Counter>,
    skipped: Family<SkipLabels, Counter>,
    findings: FindingsMetrics,
    slo: slo::SloMetrics,
    live: live::LiveMetrics,
    start_lag: Histogram,
    /// The phases with a histogram (none with `buckets = "none"`).
    phases: Vec<Phase>,
    grain: Grain,
    /// Every path seen: its counters were started at zero, and its series
    /// go when its target does.
    paths: Mutex<HashSet<PathLabels>>,
    /// Targets with per-target counters outside their paths (skips, rejected
    /// node headers), for the same reason.
    named: Mutex<HashSet<String>>,
    node_header_rejected: Family<TargetLabels, Counter>,
    servers: servers::ServerMetrics,
    /// What the OTLP span exporter sent and lost.
    pub otlp: crate::export::otlp::ExportCounters,
    /// Discovery and self-registration.
    pub kube: crate::targets::kubernetes::metrics::KubeMetrics,
    pub passive: crate::passive::metrics::PassiveMetrics,
    tls: tls::TlsMetrics,
}

impl Metrics {
    pub fn new(live: Arc<Live>, cfg: &MetricsConfig) -> Self {
        let mut registry = Registry::with_prefix("tailprobe");
        let probes = Family::<ProbeLabels, Counter>::default();
        registry.register("probes", "Probes finished, by outcome", probes.clone());
        let duration = Family::<PhaseLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            match cfg.buckets {
                Buckets::Fine => fine_histogram,
                Buckets::Rungs | Buckets::None => rung_histogram,
            },
        );
        let mut phases: Vec<Phase> = Vec::new();
        if cfg.buckets != Buckets::None {
            for p in cfg.phases.iter().map(|p| phase_of(*p)) {
                if !phases.contains(&p) {
                    phases.push(p);
                }
            }
        }
        if !phases.is_empty() {
            let names: Vec<&str> = phases.iter().map(|p| p.as_str()).collect();
            registry.register(
                "probe_duration_seconds",
                format!(
                    "Time from probe start to the end of each phase ([metrics] phases: {})",
                    names.join(", ")
                ),
                duration.clone(),
            );
        }
        let syn_retransmits = Family::<PathLabels, Counter>::default();
        registry.register(
            "syn_retransmits",
            "SYN retransmissions seen by the kernel (TCP_INFO) on probe connections",
            syn_retransmits.clone(),
        );
        let skipped = Family::<SkipLabels, Counter>::default();
        registry.register(
            "probes_skipped",
            "Probes not started, by reason",
            skipped.clone(),
        );
        let findings = FindingsMetrics::register(
            &mut registry,
            "The detector's current findings (1 while raised), by kind, scope key (stable: grouping and dimensions, never prose), likeliest cause and where the trouble lies (network, backend, dns, prober)",
        );
        let slo = slo::SloMetrics::register(&mut registry);
        let live = live::LiveMetrics::register(&mut registry, live);
        let start_lag = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        registry.register(
            "probe_start_lag_seconds",
            "How late probes started against their fixed-rate schedule",
            start_lag.clone(),
        );
        let otlp = crate::export::otlp::ExportCounters::register(&mut registry);
        let node_header_rejected = Family::<TargetLabels, Counter>::default();
        registry.register(
            "node_header_rejected",
            "Responses whose x-tailprobe-node named a node this prober does not know or the target cannot lead to; their destination is recorded as unknown",
            node_header_rejected.clone(),
        );
        let servers = servers::ServerMetrics::register(&mut registry);
        let kube = crate::targets::kubernetes::metrics::KubeMetrics::register(&mut registry);
        let passive = crate::passive::metrics::PassiveMetrics::register(&mut registry);
        let tls = tls::TlsMetrics::register(&mut registry);
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register("build_info", "tailprobe version", build.clone());
        build
            .get_or_create(&vec![("version".into(), crate::VERSION.into())])
            .set(1);
        Self {
            registry,
            probes,
            duration,
            syn_retransmits,
            skipped,
            findings,
            slo,
            live,
            start_lag,
            phases,
            grain: cfg.per,
            paths: Mutex::new(HashSet::new()),
            named: Mutex::new(HashSet::new()),
            node_header_rejected,
            servers,
            otlp,
            kube,
            passive,
            tls,
        }
    }

    pub fn observe(&self, r: &ProbeResult) {
        let mut path = PathLabels::of(&Dims::of(r));
        if self.grain == Grain::Path {
            path.destination_node.clear();
            path.target.clear();
        }
        if !self
            .paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&path)
        {
            self.start_path(&path);
        }
        let phase_labels = |phase: Phase| PhaseLabels {
            path: path.clone(),
            phase: phase.as_str().into(),
        };
        let p = &r.phases;
        let completed = r.outcome.completed();
        for (phase, value) in [
            (Phase::Dns, p.dns),
            (Phase::Connect, p.connect),
            (Phase::Tls, p.tls),
            (Phase::FirstByte, p.first_byte),
            (Phase::Total, completed.then_some(p.total)),
        ] {
            if !self.phases.contains(&phase) {
                continue;
            }
            if let Some(v) = value {
                self.duration
                    .get_or_create(&phase_labels(phase))
                    .observe(v.as_secs_f64());
            }
        }
        if r.syn_retransmits > 0 {
            self.syn_retransmits
                .get_or_create(&path)
                .inc_by(u64::from(r.syn_retransmits));
        }
        self.start_lag.observe(r.start_lag.as_secs_f64());
        if let Some(end) = r.cert_not_after {
            self.name(&r.target.name);
            self.tls.seen(&r.target.name, end);
        }
        if r.rejected_node_header {
            self.name(&r.target.name);
            self.node_header_rejected
                .get_or_create(&TargetLabels {
                    target: r.target.name.clone(),
                })
                .inc();
        }
        self.probes
            .get_or_create(&ProbeLabels {
                path,
                outcome: r.outcome.as_str().into(),
            })
            .inc();
    }

    /// A path's first probe: its counters start at zero, so a rate over
    /// them reads 0 before anything went wrong.
    fn start_path(&self, path: &PathLabels) {
        let _ = self.syn_retransmits.get_or_create(path);
        let _ = self.probes.get_or_create(&ProbeLabels {
            path: path.clone(),
            outcome: Outcome::Ok.as_str().into(),
        });
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.clone());
    }

    fn name(&self, target: &str) {
        let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
        if !named.contains(target) {
            named.insert(target.to_string());
        }
    }

    /// Drops every series of the targets `keep` refuses (a target that left
    /// with its node, or rotated out of the pinglist): series never probed
    /// again would otherwise stay until restart. Returns the paths dropped.
    pub fn retain_targets(&self, keep: impl Fn(&str) -> bool) -> usize {
        let gone: Vec<PathLabels> = {
            let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
            let gone = paths
                .iter()
                .filter(|p| !p.target.is_empty() && !keep(&p.target))
                .cloned()
                .collect();
            paths.retain(|p| p.target.is_empty() || keep(&p.target));
            gone
        };
        let named: Vec<String> = {
            let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
            let gone = named.iter().filter(|t| !keep(t)).cloned().collect();
            named.retain(|t| keep(t));
            gone
        };
        for p in &gone {
            for outcome in Outcome::ALL {
                self.probes.remove(&ProbeLabels {
                    path: p.clone(),
                    outcome: outcome.as_str().into(),
                });
            }
            for phase in Phase::ALL {
                self.duration.remove(&PhaseLabels {
                    path: p.clone(),
                    phase: phase.as_str().into(),
                });
            }
            self.syn_retransmits.remove(p);
        }
        for target in &named {
            for reason in SkipReason::ALL {
                self.skipped.remove(&SkipLabels {
                    target: target.clone(),
                    reason: reason.as_str().into(),
                });
            }
            self.node_header_rejected.remove(&TargetLabels {
                target: target.clone(),
            });
            self.tls.forget(target);
        }
        gone.len()
    }

    /// The counters a server of this name reports into: connections refused
    /// at the limit, and cut at shutdown.
    pub fn server_counters(&self, server: &str) -> (Counter, Counter) {
        self.servers.of(server)
    }

    pub fn skipped(&self, target: &Target, reason: SkipReason) {
        self.name(&target.name);
        self.skipped
            .get_or_create(&SkipLabels {
                target: target.name.clone(),
                reason: reason.as_str().into(),
            })
            .inc();
    }

    /// A probe counted toward the SLO named `slo`.
    pub fn slo_probe(&self, slo: &str, good: bool) {
        self.slo.probe(slo, good);
    }

    /// Publishes every SLO alert's burn rates and state.
    pub fn set_slo(&self, states: &[(crate::slo::AlertState, crate::slo::BurnAlert)]) {
        self.slo.set(states);
    }

    /// Replaces the findings gauge with the detector's latest verdict.
    pub fn set_findings(&self, findings: &[crate::detect::Finding]) {
        self.findings.set(findings);
    }

    /// The exposition in OpenMetrics (what the registry encodes).
    pub fn encode(&self) -> String {
        self.live.refresh();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Record for Metrics {
    fn record(&self, r: &ProbeResult, _trace: Option<&crate::model::TraceRef>) {
        self.observe(r);
    }

    fn skipped(&self, target: &Target, reason: SkipReason) {
        Metrics::skipped(self, target, reason);
    }
}

#[cfg(test)]
mod tests;
