//! A labelled evaluation set for the detector: generated series with known
//! modes and noise, each case labelled with the finding kinds it must raise
//! (none for the healthy ones) and, where it has one, the scope, the rungs,
//! the share and the first cause. Lost SYNs come from `simulate.rs`, the
//! client kernel's timer run from first principles, never from the
//! detector's own tables. Deterministic: one seed per case.

pub mod simulate;

mod classes;
mod fields;
mod generated;
mod labelled;
mod score;

pub use fields::{Fields, fields};
use generated::generated;
use labelled::labelled;
pub use score::{ViewScore, blind, score, view, views};

use simulate::{Fault, Kernel};

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tailprobe::model::{
    Counters, Dims, NodeFacts, Outcome, OverlayDevice, PathKind, Phases, Sample,
    SeriesWindow as Series, SourceKind, Target,
};

pub struct Case {
    pub name: String,
    pub series: Vec<Series>,
    pub facts: Vec<NodeFacts>,
    pub expected: BTreeSet<&'static str>,
    /// Where labelled: the first finding's scope grouping, its rungs (lost
    /// SYNs), its share within `SHARE_TOLERANCE`, and its first cause.
    pub label: Option<Label>,
    /// Where labelled: what each node's prober must conclude alone.
    pub view: Option<ViewLabel>,
}

impl Case {
    /// A case with the finding kinds it must raise and, where labelled, the
    /// first finding's fields; no per-node view.
    fn labelled(
        name: String,
        series: Vec<Series>,
        facts: Vec<NodeFacts>,
        kinds: &[&'static str],
        label: Option<Label>,
    ) -> Self {
        Case {
            name,
            series,
            facts,
            expected: kinds.iter().copied().collect(),
            label,
            view: None,
        }
    }
}

/// What one node's prober, judging only its own host-network probes and its
/// own facts, must conclude.
#[derive(Debug, Clone)]
pub struct ViewLabel {
    /// The nodes whose own probes the fault hits: each must find a ladder,
    /// the others nothing.
    pub hit_sources: Vec<String>,
    /// The cause each of them must rank first.
    pub cause: String,
    /// A Service whose backends sit on every node, judged again with its
    /// destinations unknown (plain backends): the cause must stay listed,
    /// its same-versus-cross-node check unknown.
    pub blind_target: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Label {
    pub grouping: &'static str,
    pub rungs: Vec<u32>,
    pub share: f64,
    pub cause: Option<&'static str>,
    /// Where judged: the first finding's locus.
    pub locus: Option<&'static str>,
    /// Whether every rung probe's timing sits in its rung's window (the
    /// evidence then says TCP_INFO agrees); false where the timer's slack
    /// carried probes past the window.
    pub timing_agrees: bool,
}

/// How far a finding's share may be from the simulated one.
pub const SHARE_TOLERANCE: f64 = 0.05;

/// How one probe goes.
#[derive(Clone, Copy)]
enum Mode {
    /// Healthy: base connect plus jitter (ms).
    Base { base_ms: f64, jitter_ms: f64 },
    /// k SYNs lost, the timeline simulated on the case's kernel.
    Rung { k: u32 },
    /// A connect through a path with this fault, simulated.
    Syn(Fault),
    /// The resolver's 5 s timeout on the DNS phase (`tries` lost queries).
    Dns { tries: u32 },
    /// A failed exchange.
    Fail(Outcome),
    /// A healthy handshake, then the first byte `ms` late: server time.
    Late { ms: f64 },
    /// A healthy probe that started `ms` behind its schedule.
    LateStart { ms: f32 },
}

fn build(
    src: &str,
    dst: &str,
    target: &str,
    url: &str,
    modes: &[Mode],
    kernel: Kernel,
    rng: &mut StdRng,
) -> Series {
    build_from(src, SourceKind::Host, dst, target, url, modes, kernel, rng)
}

#[allow(clippy::too_many_arguments)]
fn build_from(
    src: &str,
    kind: SourceKind,
    dst: &str,
    target: &str,
    url: &str,
    modes: &[Mode],
    kernel: Kernel,
    rng: &mut StdRng,
) -> Series {
    // What the echo declares for `/bytes/N`; the probe measures it.
    let body_bytes = Target::parse(target, url)
        .ok()
        .and_then(|t| t.echo_body_bytes())
        .unwrap_or(0);
    let mut samples = Vec::new();
    for m in modes {
        let jitter = rng.random::<f64>();
        let rtt = 0.0005 + 0.0005 * jitter;
        let syn = |fault, rng: &mut StdRng| {
            let c = simulate::connect(&kernel, fault, rtt, rng);
            match c.seconds {
                Some(s) => (s, None, c.retransmits, Outcome::Ok),
                None => (
                    c.gave_up_at.unwrap_or(0.0),
                    None,
                    c.retransmits,
                    Outcome::ConnectTimeout,
                ),
            }
        };
        let (connect_s, dns, r, outcome) = match *m {
            Mode::Base { base_ms, jitter_ms } => {
                ((base_ms + jitter * jitter_ms) / 1e3, None, 0, Outcome::Ok)
            }
            Mode::Rung { k } => syn(Fault::FirstSyns(k), rng),
            Mode::Syn(fault) => syn(fault, rng),
            Mode::Dns { tries } => (
                0.0006,
                Some(5.0 * f64::from(tries) * (1.0 + 0.004 * jitter)),
                0,
                Outcome::Ok,
            ),
            Mode::Fail(o) => (0.0006, None, 0, o),
            Mode::Late { .. } | Mode::LateStart { .. } => (0.0006, None, 0, Outcome::Ok),
        };
        let server_ms = match *m {
            Mode::Late { ms } => ms * (1.0 + 0.01 * jitter),
            _ => 0.0,
        };
        let dns = dns.map(Duration::from_secs_f64);
        let connect = dns.unwrap_or_default() + Duration::from_secs_f64(connect_s);
        let failed_connect = matches!(outcome, Outcome::Refused | Outcome::ConnectTimeout);
        let phases = Phases {
            tls: None,
            dns,
            connect: (!failed_connect).then_some(connect),
            first_byte: outcome
                .completed()
                .then(|| connect + Duration::from_secs_f64(server_ms / 1e3)),
            total: connect + Duration::from_secs_f64(server_ms / 1e3) + Duration::from_micros(200),
        };
        samples.push(Sample {
            prober_lag_ms: match *m {
                Mode::LateStart { ms } => Some(ms),
                _ => None,
            },
            at: SystemTime::UNIX_EPOCH,
            phases,
            outcome,
            syn_retransmits: r,
            body_bytes: if failed_connect { 0 } else { body_bytes },
            trace: None,
        });
    }
    Series {
        cert_not_after: None,
        dims: Dims {
            family: Default::default(),
            source_node: src.into(),
            source_kind: kind,
            destination_node: Some(dst.into()),
            target: target.into(),
            path: if src == dst {
                PathKind::SameNode
            } else {
                PathKind::CrossNode
            },
        },
        samples,
        body_bytes,
        pending: Vec::new(),
        dns_parallel: tailprobe::model::dns_parallel(url),
    }
}

fn facts(node: &str, linear: Option<u32>) -> NodeFacts {
    NodeFacts {
        node: node.into(),
        kernel: Some("6.1.0".into()),
        syn_retries: Some(6),
        syn_linear_timeouts: linear,
        counters: Counters::zero(),
        rises: Counters::zero(),
        ..NodeFacts::default()
    }
}

/// A case of one series from node1 to node2.
fn one(
    name: impl Into<String>,
    target: &str,
    modes: &[Mode],
    kernel: Kernel,
    facts: Vec<NodeFacts>,
    expected: BTreeSet<&'static str>,
    r: &mut StdRng,
) -> Case {
    Case {
        name: name.into(),
        series: vec![build(
            "node1",
            "node2",
            target,
            "http://x/",
            modes,
            kernel,
            r,
        )],
        facts,
        expected,
        label: None,
        view: None,
    }
}

/// `n` probes, `hits` of them on rung `k` spread at random, the rest healthy.
fn mix(n: usize, hits: usize, hit: Mode, base: Mode, rng: &mut StdRng) -> Vec<Mode> {
    let mut v = vec![base; n];
    let mut placed = 0;
    while placed < hits {
        let i = rng.random_range(0..n);
        if matches!(v[i], Mode::Base { .. }) {
            v[i] = hit;
            placed += 1;
        }
    }
    v
}

/// Every case: generated, simulated with full labels, then recorded.
pub fn cases() -> Vec<Case> {
    let mut all = generated();
    all.extend(labelled());
    all.extend(classes::cases());
    all.extend(recorded());
    all
}

/// Every finding kind the detector raises.
pub const KINDS: [&str; 7] = [
    "syn-retransmit-ladder",
    "dns-timeout-ladder",
    "pmtu-blackhole",
    "probe-failures",
    "first-contact-delay",
    "server-time-tail",
    "prober-starved",
];

/// Lab runs recorded with `tailprobe lab matrix --record`, each labelled
/// with the findings a person confirmed it should raise.
pub fn recorded() -> Vec<Case> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/recorded");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("bench/recorded holds the recorded lab runs")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let rec: tailprobe::stats::Recording =
                serde_json::from_slice(&std::fs::read(p).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            Case {
                name: format!("recorded:{}", p.file_stem().unwrap().to_string_lossy()),
                series: rec.windows(),
                facts: rec.facts.clone(),
                label: None,
                view: rec.cause.clone().map(|cause| ViewLabel {
                    hit_sources: rec.hit_sources.clone(),
                    // The lab's svc-all has a backend on every node.
                    blind_target: (cause == "vxlan-checksum-offload").then(|| "svc-all".into()),
                    cause,
                }),
                expected: rec
                    .expected
                    .iter()
                    .map(|k| {
                        *KINDS
                            .iter()
                            .find(|known| **known == k.as_str())
                            .unwrap_or_else(|| panic!("{}: unknown finding kind {k}", p.display()))
                    })
                    .collect(),
            }
        })
        .collect()
}

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// A node's facts: its kernel, and a VXLAN device with TX checksum offload
/// on when `overlay` (the receiver counting checksum errors).
fn node_facts(node: &str, kernel: &str, linear: Option<u32>, overlay: bool) -> NodeFacts {
    NodeFacts {
        node: node.into(),
        kernel: Some(kernel.into()),
        syn_retries: Some(6),
        syn_linear_timeouts: linear,
        txrehash: Some(0),
        udp_in_csum_errors: Some(if overlay { 40 } else { 0 }),
        udp_in_csum_errors_delta: Some(if overlay { 40 } else { 0 }),
        conntrack_insert_failed: Some(0),
        conntrack_udp_timeout: Some(30),
        conntrack_udp_timeout_stream: Some(120),
        kube_proxy_ipvs: Some(false),
        overlays: overlay
            .then(|| OverlayDevice {
                name: "vxlan.calico".into(),
                tx_checksumming: Some(true),
                tx_checksum_ip_generic: Some(true),
            })
            .into_iter()
            .collect(),
        counters: Counters::zero(),
        rises: Counters::zero(),
        ..NodeFacts::default()
    }
}

/// Every node probes every node's Service from its host and pod network;
/// `modes` says what each (source, kind, destination) sees.
fn cluster(
    kernel: Kernel,
    n: usize,
    modes: impl Fn(&str, SourceKind, &str) -> Mode,
    rng: &mut StdRng,
) -> Vec<Series> {
    let mut out = Vec::new();
    for src in NODES {
        for kind in [SourceKind::Host, SourceKind::Pod] {
            for dst in NODES {
                let m = vec![modes(src, kind, dst); n];
                out.push(build_from(
                    src,
                    kind,
                    dst,
                    &format!("svc-{dst}"),
                    "http://x/",
                    &m,
                    kernel,
                    rng,
                ));
            }
        }
    }
    out
}

/// The checksum bug on the classic ladder with a 30 s UDP timeout: every
/// host-network cross-node path rides a NATed entry; the rest is `base`.
fn checksum_cluster(base: Mode, r: &mut StdRng) -> (Fault, Vec<Series>) {
    let nat = Fault::NatExpiry {
        conntrack_timeout_s: 30.0,
        rehash: false,
    };
    let series = cluster(
        Kernel::linux(0),
        20,
        |s, k, d| {
            if k == SourceKind::Host && s != d {
                Mode::Syn(nat)
            } else {
                base
            }
        },
        r,
    );
    (nat, series)
}
