//! A labelled evaluation set for the detector: generated series with known
//! modes and noise, each case labelled with the finding kinds it must raise
//! (none for the healthy ones) and, where it has one, the scope, the rungs,
//! the share and the first cause. Lost SYNs come from `simulate.rs`, the
//! client kernel's timer run from first principles, never from the
//! detector's own tables. Deterministic: one seed per case.

#[path = "simulate.rs"]
pub mod simulate;

#[path = "eval_classes.rs"]
mod classes;

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
            source_node: src.into(),
            source_kind: kind,
            destination_node: Some(dst.into()),
            target: target.into(),
            path: if src == dst {
                PathKind::SameNode
            } else {
                PathKind::CrossNode
            },
            family: Default::default(),
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

fn generated() -> Vec<Case> {
    let mut out = Vec::new();
    let base = Mode::Base {
        base_ms: 0.5,
        jitter_ms: 1.0,
    };
    let mut seed = 0u64;
    let mut rng = || {
        seed += 1;
        StdRng::seed_from_u64(seed)
    };
    // Healthy: jitter up to 300 ms, millisecond bimodality, one unlucky probe.
    for (name, modes) in [
        (
            "healthy-jitter-300ms",
            vec![
                Mode::Base {
                    base_ms: 0.5,
                    jitter_ms: 300.0
                };
                200
            ],
        ),
        ("healthy-fast", vec![base; 200]),
    ] {
        let mut r = rng();
        out.push(one(
            name,
            "t",
            &modes,
            Kernel::linux(0),
            vec![],
            BTreeSet::new(),
            &mut r,
        ));
    }
    {
        let mut r = rng();
        let mut modes = vec![base; 100];
        modes.extend(vec![
            Mode::Base {
                base_ms: 3.0,
                jitter_ms: 1.0
            };
            100
        ]);
        out.push(one(
            "healthy-mixed-node-service",
            "svc-all",
            &modes,
            Kernel::linux(0),
            vec![],
            BTreeSet::new(),
            &mut r,
        ));
    }
    for n in [50, 200, 1000] {
        let mut r = rng();
        let modes = mix(n, 1, Mode::Rung { k: 1 }, base, &mut r);
        out.push(one(
            format!("healthy-one-unlucky-probe-in-{n}"),
            "t",
            &modes,
            Kernel::linux(0),
            vec![],
            BTreeSet::new(),
            &mut r,
        ));
    }
    // Ladders: every rung of both schedules, at shares from 1 in 50 up.
    for (schedule, linear, label) in [
        (Kernel::linux(0), Some(0), "classic"),
        (Kernel::linux(4), Some(4), "linear"),
    ] {
        for k in 1..=schedule.syn_retries {
            for (n, hits) in [(200, 4), (50, 5), (20, 20)] {
                let mut r = rng();
                let modes = mix(n, hits, Mode::Rung { k }, base, &mut r);
                out.push(one(
                    format!("ladder-{label}-rung{k}-{hits}of{n}"),
                    "t",
                    &modes,
                    schedule,
                    vec![facts("node1", linear)],
                    ["syn-retransmit-ladder"].into(),
                    &mut r,
                ));
            }
        }
    }
    for hits in [2, 10] {
        let mut r = rng();
        let modes = mix(100, hits, Mode::Dns { tries: 1 }, base, &mut r);
        out.push(one(
            format!("dns-5s-{hits}of100"),
            "t",
            &modes,
            Kernel::linux(0),
            vec![],
            ["dns-timeout-ladder"].into(),
            &mut r,
        ));
    }
    {
        let mut r = rng();
        let small = build(
            "node1",
            "node2",
            "small",
            "http://x/",
            &[base; 20],
            Kernel::linux(0),
            &mut r,
        );
        let big = build(
            "node1",
            "node2",
            "big",
            "http://x/bytes/65536",
            &[Mode::Fail(Outcome::TotalTimeout); 20],
            Kernel::linux(0),
            &mut r,
        );
        out.push(Case {
            name: "pmtu-blackhole".into(),
            series: vec![small, big],
            facts: vec![],
            expected: ["pmtu-blackhole"].into(),
            label: None,
            view: None,
        });
    }
    {
        // The first probes to two new peers waited on ARP; later ones were fast.
        let mut r = rng();
        let mut series = Vec::new();
        for dst in ["node2", "node3"] {
            let mut modes = vec![Mode::Rung { k: 1 }];
            modes.extend(vec![base; 30]);
            let mut s = build(
                "node1",
                dst,
                "t",
                "http://x/",
                &modes,
                Kernel::linux(0),
                &mut r,
            );
            for (i, p) in s.samples.iter_mut().enumerate() {
                p.at = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * i as u64);
            }
            series.push(s);
        }
        out.push(Case {
            name: "first-contact-arp".into(),
            series,
            facts: vec![],
            expected: ["first-contact-delay"].into(),
            label: None,
            view: None,
        });
    }
    {
        let mut r = rng();
        let modes = mix(20, 5, Mode::Fail(Outcome::Refused), base, &mut r);
        out.push(one(
            "refused",
            "t",
            &modes,
            Kernel::linux(0),
            vec![],
            ["probe-failures"].into(),
            &mut r,
        ));
    }
    out
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
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/recorded");
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

/// Per finding kind: (true positives, false positives, false negatives).
pub fn score(cases: &[Case]) -> BTreeMap<&'static str, (u32, u32, u32)> {
    let kinds = KINDS;
    let mut s: BTreeMap<&'static str, (u32, u32, u32)> =
        kinds.iter().map(|k| (*k, (0, 0, 0))).collect();
    for c in cases {
        let found: BTreeSet<String> =
            tailprobe::detect::detect(&c.series, &c.facts, &Default::default())
                .into_iter()
                .map(|f| f.kind.as_str().to_string())
                .collect();
        for k in kinds {
            let (want, got) = (c.expected.contains(k), found.contains(k));
            let e = s.get_mut(k).unwrap();
            match (want, got) {
                (true, true) => e.0 += 1,
                (false, true) => e.1 += 1,
                (true, false) => e.2 += 1,
                (false, false) => {}
            }
        }
    }
    s
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

/// Cases simulated on the kernel's timer with every field labelled: kind,
/// scope, rungs, share and, where one node's evidence names it, the cause.
fn labelled() -> Vec<Case> {
    let base = Mode::Base {
        base_ms: 0.5,
        jitter_ms: 1.0,
    };
    let mut seed = 1000u64;
    let mut rng = || {
        seed += 1;
        StdRng::seed_from_u64(seed)
    };
    let mut out = Vec::new();
    let mut push = |name: &str,
                    series: Vec<Series>,
                    facts: Vec<NodeFacts>,
                    kinds: &[&'static str],
                    label: Option<Label>| {
        out.push(Case::labelled(
            format!("sim:{name}"),
            series,
            facts,
            kinds,
            label,
        ));
    };
    let ladder = ["syn-retransmit-ladder"];
    let label = |grouping, rungs: &[u32], share, cause| {
        Some(Label {
            grouping,
            rungs: rungs.to_vec(),
            share,
            cause,
            timing_agrees: true,
            locus: None,
        })
    };

    // The double-NAT checksum bug: every cross-node SYN from the host
    // network rides a NATed conntrack entry until a gap outlasts its timeout.
    for (name, kernel, linear, kernel_release, fault, rung) in [
        (
            "vxlan-classic",
            Kernel::linux(0),
            None,
            "3.10.0-1160.el7.x86_64",
            Fault::NatExpiry {
                conntrack_timeout_s: 30.0,
                rehash: false,
            },
            6,
        ),
        (
            "vxlan-linear",
            Kernel::linux(4),
            Some(4),
            "6.6.0",
            Fault::NatExpiry {
                conntrack_timeout_s: 30.0,
                rehash: false,
            },
            10,
        ),
        (
            "vxlan-conntrack-10s",
            Kernel::linux(0),
            None,
            "3.10.0",
            Fault::NatExpiry {
                conntrack_timeout_s: 10.0,
                rehash: false,
            },
            5,
        ),
        (
            "vxlan-rehash",
            Kernel::linux(0),
            None,
            "3.10.0",
            Fault::NatExpiry {
                conntrack_timeout_s: 30.0,
                rehash: true,
            },
            1,
        ),
    ] {
        let mut r = rng();
        let series = cluster(
            kernel,
            20,
            |s, k, d| {
                if k == SourceKind::Host && s != d {
                    Mode::Syn(fault)
                } else {
                    base
                }
            },
            &mut r,
        );
        let facts = NODES
            .iter()
            .map(|n| {
                let Fault::NatExpiry {
                    conntrack_timeout_s,
                    rehash,
                } = fault
                else {
                    unreachable!("the checksum bug is a NAT-expiry fault")
                };
                NodeFacts {
                    conntrack_udp_timeout: Some(conntrack_timeout_s as u32),
                    txrehash: Some(u32::from(rehash)),
                    ..node_facts(n, kernel_release, linear, true)
                }
            })
            .collect();
        push(
            name,
            series,
            facts,
            &ladder,
            label("kind-path", &[rung], 1.0, Some("vxlan-checksum-offload")),
        );
    }
    {
        // A rule on node1 drops the first 2 SYNs of every flow from node2.
        let mut r = rng();
        let series = cluster(
            Kernel::linux(0),
            20,
            |s, _, d| {
                if s == "node2" && d == "node1" {
                    Mode::Syn(Fault::FirstSyns(2))
                } else {
                    base
                }
            },
            &mut r,
        );
        push(
            "drop-syn-2-one-pair",
            series,
            vec![],
            &ladder,
            label("pair", &[2], 1.0, Some("syn-dropped-on-path")),
        );
    }
    {
        // 5 % random loss everywhere: mostly one lost SYN, on every path.
        let mut r = rng();
        let series = cluster(
            Kernel::linux(0),
            200,
            |_, _, _| Mode::Syn(Fault::Random(0.05)),
            &mut r,
        );
        push(
            "random-loss-5pct",
            series,
            vec![],
            &ladder,
            label("kind-path", &[1], 0.05, Some("path-packet-loss")),
        );
    }
    {
        // A partial, deterministic drop on three sources' cross-node paths:
        // 6 of every 20 probes per cell, an exact share.
        let mut r2 = rng();
        let mut series = Vec::new();
        for src in NODES {
            for kind in [SourceKind::Host, SourceKind::Pod] {
                for dst in NODES {
                    let mut modes = vec![base; 20];
                    if kind == SourceKind::Host && src != dst {
                        for m in modes.iter_mut().step_by(3).take(6) {
                            *m = Mode::Syn(Fault::FirstSyns(3));
                        }
                    }
                    series.push(build_from(
                        src,
                        kind,
                        dst,
                        &format!("svc-{dst}"),
                        "http://x/",
                        &modes,
                        Kernel::linux(0),
                        &mut r2,
                    ));
                }
            }
        }
        // Nodes that report their facts: a 30 s UDP conntrack timeout, no
        // rehash, no overlay offload.
        let facts = NODES
            .iter()
            .map(|n| node_facts(n, "6.1.0", None, false))
            .collect();
        push(
            "partial-share-cross-node",
            series,
            facts,
            &ladder,
            label("kind-path", &[3], 0.3, None),
        );
    }
    {
        // The checksum bug behind a Service with a backend on every node and
        // no echo headers: a third of the probes land on the same node and
        // pass, the rest wait for the 63 s rung, destination unknown.
        let mut r = rng();
        let (nat, mut series) = checksum_cluster(base, &mut r);
        for src in NODES {
            let modes: Vec<Mode> = (0..30)
                .map(|i| if i % 3 == 0 { base } else { Mode::Syn(nat) })
                .collect();
            let mixed = build(
                src,
                src,
                "svc-all",
                "http://x/",
                &modes,
                Kernel::linux(0),
                &mut r,
            );
            series.extend(blind(vec![mixed], "svc-all"));
        }
        let facts = NODES
            .iter()
            .map(|n| node_facts(n, "5.10.0", None, true))
            .collect();
        push(
            "vxlan-mixed-service",
            series,
            facts,
            &ladder,
            label("kind-path", &[6], 1.0, Some("vxlan-checksum-offload")),
        );
    }
    {
        // The checksum bug, and a Service whose backends are gone (refused)
        // probed from every node: the refused cells neither join nor split
        // the ladder's scope.
        let mut r = rng();
        let (_, mut series) = checksum_cluster(base, &mut r);
        for src in NODES {
            for dst in NODES.iter().filter(|d| **d != src) {
                let refused = vec![Mode::Fail(Outcome::Refused); 20];
                series.push(build(
                    src,
                    dst,
                    "svc-gone",
                    "http://x/",
                    &refused,
                    Kernel::linux(0),
                    &mut r,
                ));
            }
        }
        let facts = NODES
            .iter()
            .map(|n| node_facts(n, "5.10.0", None, true))
            .collect();
        push(
            "failing-cells-beside-ladder",
            series,
            facts,
            &["syn-retransmit-ladder", "probe-failures"],
            label("kind-path", &[6], 1.0, Some("vxlan-checksum-offload")),
        );
    }
    {
        // Only pod-network sources lose SYNs cross-node.
        let mut r = rng();
        let series = cluster(
            Kernel::linux(0),
            20,
            |s, k, d| {
                if k == SourceKind::Pod && s != d {
                    Mode::Syn(Fault::FirstSyns(1))
                } else {
                    base
                }
            },
            &mut r,
        );
        push(
            "pod-network-only",
            series,
            vec![],
            &ladder,
            label("kind-path", &[1], 1.0, None),
        );
    }
    // One pair's series: give-ups, timer slack at and past the window's
    // edge, a Windows client, borderline significance, a delay that is no
    // loss.
    let mut single = |name: &str,
                      kernel: Kernel,
                      modes: Vec<Mode>,
                      facts: Vec<NodeFacts>,
                      kinds: &[&'static str],
                      l: Option<Label>,
                      r: &mut StdRng| {
        let s = build("node1", "node2", "t", "http://x/", &modes, kernel, r);
        push(name, vec![s], facts, kinds, l);
    };
    {
        let mut r = rng();
        let mut modes = vec![base; 15];
        modes.extend([Mode::Syn(Fault::All); 5]);
        single(
            "give-ups",
            Kernel::linux(0),
            modes,
            vec![],
            &ladder,
            label("cell", &[], 0.25, None),
            &mut r,
        );
    }
    // Slack up to 12 % of the 4 s timeout keeps the 7 s rung inside its
    // window; 25 % carries most probes past it, and the kernel's count
    // still places them, with the disagreement said.
    for (name, slack, within) in [
        ("slack-at-window-edge", 0.12, true),
        ("slack-past-window-edge", 0.25, false),
    ] {
        let mut r = rng();
        let kernel = Kernel {
            slack,
            ..Kernel::linux(0)
        };
        let mut l = label("cell", &[3], 1.0, None);
        if let Some(l) = l.as_mut() {
            l.timing_agrees = within;
        }
        single(
            name,
            kernel,
            vec![Mode::Syn(Fault::FirstSyns(3)); 20],
            vec![],
            &ladder,
            l,
            &mut r,
        );
    }
    {
        let mut r = rng();
        single(
            "windows-client",
            Kernel::windows(),
            vec![Mode::Syn(Fault::FirstSyns(2)); 10],
            vec![NodeFacts {
                node: "node1".into(),
                kernel: Some("Windows Server 2022 10.0.20348".into()),
                ..NodeFacts::default()
            }],
            &ladder,
            label("cell", &[2], 1.0, None),
            &mut r,
        );
    }
    {
        let mut r = rng();
        let modes = mix(2000, 2, Mode::Syn(Fault::FirstSyns(1)), base, &mut r);
        single(
            "borderline-2-in-2000",
            Kernel::linux(0),
            modes,
            vec![],
            &[],
            None,
            &mut r,
        );
        let mut r = rng();
        let modes = mix(200, 3, Mode::Syn(Fault::FirstSyns(1)), base, &mut r);
        single(
            "borderline-3-in-200",
            Kernel::linux(0),
            modes,
            vec![],
            &ladder,
            label("cell", &[1], 0.015, None),
            &mut r,
        );
    }
    {
        // Every connect takes just over a second, but no SYN was lost: a
        // delay timed like a rung, which the kernel's count overrules.
        let mut r = rng();
        let modes = vec![
            Mode::Base {
                base_ms: 1000.5,
                jitter_ms: 2.0
            };
            40
        ];
        single(
            "delay-not-loss",
            Kernel::linux(0),
            modes,
            vec![],
            &[],
            None,
            &mut r,
        );
    }
    {
        let mut r = rng();
        // A and AAAA at once, and conntrack's insert_failed rising on the
        // source: the race, as glibc meets it.
        let modes = mix(100, 10, Mode::Dns { tries: 2 }, base, &mut r);
        let s = build(
            "node1",
            "node2",
            "t",
            "dns://10.96.0.10/kubernetes.default?parallel=1",
            &modes,
            Kernel::linux(0),
            &mut r,
        );
        let mut f = facts("node1", None);
        f.rises.conntrack_insert_failed = Some(10);
        push(
            "dns-10s",
            vec![s],
            vec![f],
            &["dns-timeout-ladder"],
            label("cell", &[], 0.1, Some("conntrack-dns-race")),
        );
    }
    // What each node's own prober must conclude.
    let every: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
    let views: [(&str, &[String], &str, Option<&str>); 9] = [
        ("vxlan-classic", &every, "vxlan-checksum-offload", None),
        ("vxlan-linear", &every, "vxlan-checksum-offload", None),
        (
            "vxlan-conntrack-10s",
            &every,
            "vxlan-checksum-offload",
            None,
        ),
        ("vxlan-rehash", &every, "vxlan-checksum-offload", None),
        (
            "vxlan-mixed-service",
            &every,
            "vxlan-checksum-offload",
            Some("svc-all"),
        ),
        (
            "failing-cells-beside-ladder",
            &every,
            "vxlan-checksum-offload",
            None,
        ),
        (
            "drop-syn-2-one-pair",
            &["node2".to_string()],
            "syn-dropped-on-path",
            None,
        ),
        ("random-loss-5pct", &every, "path-packet-loss", None),
        (
            "partial-share-cross-node",
            &every,
            "syn-dropped-on-path",
            None,
        ),
    ];
    for (name, sources, cause, blind_target) in views {
        let case = out
            .iter_mut()
            .find(|c| c.name == format!("sim:{name}"))
            .unwrap_or_else(|| panic!("no case {name}"));
        case.view = Some(ViewLabel {
            hit_sources: sources.to_vec(),
            cause: cause.into(),
            blind_target: blind_target.map(str::to_string),
        });
    }
    out
}

/// One prober's view of a case: the series `node` recorded from the host
/// network and that node's facts alone, as `tailprobe run` or `matrix`
/// there judges them.
pub fn view(series: &[Series], facts: &[NodeFacts], node: &str) -> (Vec<Series>, Vec<NodeFacts>) {
    (
        series
            .iter()
            .filter(|s| &*s.dims.source_node == node && s.dims.source_kind == SourceKind::Host)
            .cloned()
            .collect(),
        facts.iter().filter(|f| f.node == node).cloned().collect(),
    )
}

/// `target`'s series merged per source with their destinations unknown:
/// what a prober records when the Service's backends are plain web servers
/// that do not say which node answered. Other series pass unchanged.
pub fn blind(series: Vec<Series>, target: &str) -> Vec<Series> {
    let (hit, mut out): (Vec<Series>, Vec<Series>) =
        series.into_iter().partition(|s| &*s.dims.target == target);
    let mut merged: BTreeMap<(String, SourceKind), Series> = BTreeMap::new();
    for s in hit {
        let key = (s.dims.source_node.to_string(), s.dims.source_kind);
        let m = merged.entry(key).or_insert_with(|| Series {
            cert_not_after: None,
            dims: Dims {
                destination_node: None,
                path: PathKind::Unknown,
                ..s.dims.clone()
            },
            samples: Vec::new(),
            body_bytes: 0,
            pending: Vec::new(),
            dns_parallel: false,
        });
        m.body_bytes = m.body_bytes.max(s.body_bytes);
        m.samples.extend(s.samples);
    }
    out.extend(merged.into_values());
    out
}

/// One scenario judged from each node's view.
#[derive(Debug, Default, Clone)]
pub struct ViewScore {
    /// Views that found a ladder where the fault hit, found one where it
    /// did not, missed one.
    pub tp: u32,
    pub fp: u32,
    pub missed: u32,
    /// (views whose every ladder ranks the labelled cause first, views that
    /// found a ladder where the fault hit)
    pub top1: (u32, u32),
    /// The blind view keeps the cause with its path check unknown, and
    /// ranks it first.
    pub blind: Option<(bool, bool)>,
    /// The smallest lead of the labelled cause's score over the next cause,
    /// over the views that found a ladder where the fault hit.
    pub margin: Option<f64>,
    pub wrong: Vec<String>,
}

impl ViewScore {
    pub fn precision(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fp).max(1))
    }
    pub fn recall(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.missed).max(1))
    }
    pub fn top1(&self) -> f64 {
        f64::from(self.top1.0) / f64::from(self.top1.1.max(1))
    }
}

/// Every case with a view label, judged from each source node's view.
pub fn views(cases: &[Case]) -> BTreeMap<String, ViewScore> {
    let cfg = Default::default();
    let ladders = |series: &[Series], facts: &[NodeFacts]| {
        tailprobe::detect::detect(series, facts, &cfg)
            .into_iter()
            .filter(|f| f.kind == tailprobe::detect::FindingKind::SynRetransmitLadder)
            .collect::<Vec<_>>()
    };
    let mut out = BTreeMap::new();
    for c in cases {
        let Some(l) = &c.view else { continue };
        let mut score = ViewScore::default();
        let nodes: BTreeSet<String> = c
            .series
            .iter()
            .map(|s| s.dims.source_node.to_string())
            .collect();
        for node in &nodes {
            let (series, facts) = view(&c.series, &c.facts, node);
            let found = ladders(&series, &facts);
            let hit = l.hit_sources.contains(node);
            match (hit, found.is_empty()) {
                (true, false) => score.tp += 1,
                (true, true) => {
                    score.missed += 1;
                    score.wrong.push(format!("{node}: no ladder"));
                }
                (false, false) => {
                    score.fp += 1;
                    score.wrong.push(format!("{node}: {}", found[0].headline()));
                }
                (false, true) => {}
            }
            if hit && !found.is_empty() {
                score.top1.1 += 1;
                let firsts: Vec<&str> = found
                    .iter()
                    .map(|f| f.likely_causes.first().map_or("none", |c| c.id.as_str()))
                    .collect();
                for f in &found {
                    let right = f.likely_causes.iter().find(|x| x.id.as_str() == l.cause);
                    let other = f
                        .likely_causes
                        .iter()
                        .filter(|x| x.id.as_str() != l.cause)
                        .map(|x| x.score)
                        .fold(0.0, f64::max);
                    let lead = right.map_or(-1.0, |x| x.score) - other;
                    score.margin = Some(score.margin.map_or(lead, |m: f64| m.min(lead)));
                }
                if firsts.iter().all(|f| *f == l.cause) {
                    score.top1.0 += 1;
                } else {
                    score.wrong.push(format!("{node}: first causes {firsts:?}"));
                }
            }
        }
        if let (Some(target), Some(node)) = (&l.blind_target, l.hit_sources.first()) {
            let (series, facts) = view(&c.series, &c.facts, node);
            let only: Vec<Series> = series
                .into_iter()
                .filter(|s| &*s.dims.target == target.as_str())
                .collect();
            let found = ladders(&blind(only, target), &facts);
            let cause = found
                .first()
                .and_then(|f| {
                    f.likely_causes
                        .iter()
                        .position(|x| x.id.as_str() == l.cause)
                })
                .map(|i| (i, &found[0].likely_causes[i]));
            let listed = cause.is_some_and(|(_, x)| {
                x.unknown
                    .iter()
                    .any(|u| u.starts_with("only cross-node paths"))
            });
            let first = cause.is_some_and(|(i, _)| i == 0);
            if !(listed && first) {
                score.wrong.push(format!(
                    "{node} blind on {target}: {:?}",
                    found.first().map(|f| &f.likely_causes)
                ));
            }
            score.blind = Some((listed, first));
        }
        out.insert(c.name.clone(), score);
    }
    out
}

/// Per field: (right, judged). Kind over every case; the others over the
/// labelled cases' first finding.
#[derive(Debug, Default)]
pub struct Fields {
    pub kind: (u32, u32),
    pub scope: (u32, u32),
    pub rung: (u32, u32),
    pub share: (u32, u32),
    pub cause: (u32, u32),
    pub timing: (u32, u32),
    pub locus: (u32, u32),
    pub quiet: (u32, u32),
    pub wrong: Vec<String>,
}

pub fn fields(cases: &[Case]) -> Fields {
    let mut f = Fields::default();
    let tally = |field: &mut (u32, u32), ok: bool, wrong: &mut Vec<String>, what: String| {
        field.1 += 1;
        if ok {
            field.0 += 1;
        } else {
            wrong.push(what);
        }
    };
    for c in cases {
        let found = tailprobe::detect::detect(&c.series, &c.facts, &Default::default());
        let kinds: BTreeSet<String> = found.iter().map(|x| x.kind.as_str().to_string()).collect();
        let want: BTreeSet<String> = c.expected.iter().map(|k| k.to_string()).collect();
        tally(
            &mut f.kind,
            kinds == want,
            &mut f.wrong,
            format!("{}: kinds {kinds:?}", c.name),
        );
        if want.is_empty() {
            tally(
                &mut f.quiet,
                found.is_empty(),
                &mut f.wrong,
                format!("{}: not quiet", c.name),
            );
        }
        let (Some(l), Some(first)) = (&c.label, found.first()) else {
            continue;
        };
        let grouping = first.scope_key.grouping.as_str();
        tally(
            &mut f.scope,
            grouping == l.grouping,
            &mut f.wrong,
            format!("{}: scope {grouping} ({})", c.name, first.scope),
        );
        let dominant: Vec<u32> = first
            .rungs
            .iter()
            .max_by_key(|r| r.count)
            .map(|r| r.retransmits)
            .into_iter()
            .collect();
        tally(
            &mut f.rung,
            dominant == l.rungs,
            &mut f.wrong,
            format!("{}: rungs {:?}", c.name, first.rungs),
        );
        tally(
            &mut f.share,
            (first.share - l.share).abs() <= SHARE_TOLERANCE,
            &mut f.wrong,
            format!("{}: share {}", c.name, first.share),
        );
        if !l.rungs.is_empty() {
            let agrees = first
                .evidence
                .iter()
                .any(|e| e.starts_with("TCP_INFO agrees"));
            tally(
                &mut f.timing,
                agrees == l.timing_agrees,
                &mut f.wrong,
                format!("{}: TCP_INFO agreement {agrees}", c.name),
            );
        }
        if let Some(cause) = l.cause {
            let top = first.likely_causes.first().map(|c| c.id.as_str());
            tally(
                &mut f.cause,
                top == Some(cause),
                &mut f.wrong,
                format!(
                    "{}: first cause {top:?} of {:?}",
                    c.name,
                    first
                        .likely_causes
                        .iter()
                        .map(|c| format!("{} {:.2}", c.id, c.score))
                        .collect::<Vec<_>>()
                ),
            );
        }
        if let Some(locus) = l.locus {
            tally(
                &mut f.locus,
                first.locus.as_str() == locus,
                &mut f.wrong,
                format!("{}: locus {}", c.name, first.locus),
            );
        }
    }
    f
}
