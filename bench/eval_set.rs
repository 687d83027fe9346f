//! A labelled evaluation set for the detector: generated series with known
//! modes and noise, each case labelled with the finding kinds it must raise
//! (none for the healthy ones). Deterministic: one seed per case.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tailprobe::model::{
    Dims, NodeFacts, Outcome, PathKind, Phases, Sample, SeriesWindow as Series, SourceKind,
    SynSchedule, Target,
};

pub struct Case {
    pub name: String,
    pub series: Vec<Series>,
    pub facts: Vec<NodeFacts>,
    pub expected: BTreeSet<&'static str>,
}

/// How one probe goes.
#[derive(Clone, Copy)]
enum Mode {
    /// Healthy: base connect plus jitter (ms).
    Base { base_ms: f64, jitter_ms: f64 },
    /// k SYNs lost on this schedule, with timer slack.
    Rung { k: u32 },
    /// The resolver's 5 s timeout on the DNS phase.
    Dns,
    /// A failed exchange.
    Fail(Outcome),
}

fn build(
    src: &str,
    dst: &str,
    target: &str,
    url: &str,
    modes: &[Mode],
    schedule: SynSchedule,
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
        let (connect_s, dns, r, outcome) = match *m {
            Mode::Base { base_ms, jitter_ms } => {
                ((base_ms + jitter * jitter_ms) / 1e3, None, 0, Outcome::Ok)
            }
            Mode::Rung { k } => {
                let t = schedule.rung_seconds(k).unwrap();
                // Timers fire late by up to about 4 % here.
                (t * (1.0 + 0.04 * jitter) + 0.0005, None, k, Outcome::Ok)
            }
            Mode::Dns => (0.0006, Some(5.0 + 0.02 * jitter), 0, Outcome::Ok),
            Mode::Fail(o) => (0.0006, None, 0, o),
        };
        let dns = dns.map(Duration::from_secs_f64);
        let connect = dns.unwrap_or_default() + Duration::from_secs_f64(connect_s);
        let failed_connect = matches!(m, Mode::Fail(Outcome::Refused));
        let phases = Phases {
            dns,
            connect: (!failed_connect).then_some(connect),
            first_byte: outcome.completed().then_some(connect),
            total: connect + Duration::from_micros(200),
        };
        samples.push(Sample {
            at: SystemTime::UNIX_EPOCH,
            phases,
            outcome,
            syn_retransmits: r,
            body_bytes: if failed_connect { 0 } else { body_bytes },
            trace: None,
        });
    }
    Series {
        dims: Dims {
            source_node: src.into(),
            source_kind: SourceKind::Host,
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
    }
}

fn facts(node: &str, linear: Option<u32>) -> NodeFacts {
    NodeFacts {
        node: node.into(),
        kernel: Some("6.1.0".into()),
        syn_retries: Some(6),
        syn_linear_timeouts: linear,
        ..NodeFacts::default()
    }
}

/// A case of one series from node1 to node2.
fn one(
    name: impl Into<String>,
    target: &str,
    modes: &[Mode],
    schedule: SynSchedule,
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
            schedule,
            r,
        )],
        facts,
        expected,
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

/// Every case: generated, then recorded.
pub fn cases() -> Vec<Case> {
    let mut all = generated();
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
            SynSchedule::classic(),
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
            SynSchedule::classic(),
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
            SynSchedule::classic(),
            vec![],
            BTreeSet::new(),
            &mut r,
        ));
    }
    // Ladders: every rung of both schedules, at shares from 1 in 50 up.
    for (schedule, linear, label) in [
        (SynSchedule::classic(), Some(0), "classic"),
        (SynSchedule::linux(6, 4), Some(4), "linear"),
    ] {
        for k in 1..=schedule.rungs().len() as u32 {
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
        let modes = mix(100, hits, Mode::Dns, base, &mut r);
        out.push(one(
            format!("dns-5s-{hits}of100"),
            "t",
            &modes,
            SynSchedule::classic(),
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
            SynSchedule::classic(),
            &mut r,
        );
        let big = build(
            "node1",
            "node2",
            "big",
            "http://x/bytes/65536",
            &[Mode::Fail(Outcome::TotalTimeout); 20],
            SynSchedule::classic(),
            &mut r,
        );
        out.push(Case {
            name: "pmtu-blackhole".into(),
            series: vec![small, big],
            facts: vec![],
            expected: ["pmtu-blackhole"].into(),
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
                SynSchedule::classic(),
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
        });
    }
    {
        let mut r = rng();
        let modes = mix(20, 5, Mode::Fail(Outcome::Refused), base, &mut r);
        out.push(one(
            "refused",
            "t",
            &modes,
            SynSchedule::classic(),
            vec![],
            ["probe-failures"].into(),
            &mut r,
        ));
    }
    out
}

/// Every finding kind the detector raises.
pub const KINDS: [&str; 5] = [
    "syn-retransmit-ladder",
    "dns-timeout-ladder",
    "pmtu-blackhole",
    "probe-failures",
    "first-contact-delay",
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
