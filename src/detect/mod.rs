//! The detector: pure. No I/O, no clock. Input: the series a prober (or
//! several) recorded, with their recent samples, and the facts of the nodes
//! involved. Output: findings that name a scope, the rungs seen, the
//! kernel's agreement, and ranked likely causes with remediation.
//!
//! A cell (one series) is on the SYN ladder when enough of its probes sit on
//! a rung of its source kernel's schedule that a healthy background SYN loss
//! cannot explain them (binomial tail), and at least `min_rung_probes` do.
//! Scope widens from the cell to the broadest group whose every cell is on
//! the ladder: every path of a kind from a network kind, one source's paths
//! of a kind, one destination, one source.

pub mod causes;
pub mod ladder;
mod stat;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use causes::LikelyCause;
use ladder::{SynSchedule, match_dns_rung};

use crate::node::NodeFacts;
use crate::probe::{Outcome, PathKind, SourceKind};
use crate::stats::Series;

#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// SYN loss per probe on a healthy network.
    pub background_syn_loss: f64,
    /// Fewer probes on rungs than this never raise a finding.
    pub min_rung_probes: u64,
    /// The binomial tail below which rung probes are significant.
    pub alpha: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            background_syn_loss: 1e-4,
            min_rung_probes: 2,
            alpha: 1e-3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungCount {
    /// SYNs lost (the kernel's retransmission count).
    pub retransmits: u32,
    /// The rung on the source's schedule.
    pub seconds: f64,
    pub count: u64,
}

/// One verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `syn-retransmit-ladder`, `dns-timeout-ladder`, `pmtu-blackhole`, `probe-failures`.
    pub kind: String,
    /// The scope in words, such as "every cross-node path from the host network".
    pub scope: String,
    /// Set when the scope is one source node.
    pub source_node: Option<String>,
    pub source_kind: Option<SourceKind>,
    /// Set when the scope is one destination node.
    pub destination_node: Option<String>,
    pub path: Option<PathKind>,
    pub targets: Vec<String>,
    /// (source, destination) pairs in scope.
    pub pairs: Vec<(String, String)>,
    pub rungs: Vec<RungCount>,
    /// Probes on a rung (or failed) over probes in scope.
    pub share: f64,
    pub samples: u64,
    pub confidence: f64,
    pub evidence: Vec<String>,
    pub likely_causes: Vec<LikelyCause>,
    /// Exported traces of probes that show the problem (up to three).
    #[serde(default)]
    pub examples: Vec<crate::stats::TraceRef>,
}

impl Finding {
    /// The fields that place a finding on one cell: its source, destination,
    /// path, target and pair; the rest is left for the caller.
    fn of_cell(c: &Cell) -> Self {
        let k = &c.s.key;
        Self {
            source_node: Some(k.source_node.to_string()),
            source_kind: Some(k.source_kind),
            destination_node: k.destination_node.as_deref().map(str::to_string),
            path: Some(k.path),
            targets: vec![k.target.to_string()],
            pairs: vec![c.pair()],
            ..Self::default()
        }
    }

    /// One line a person can read.
    pub fn headline(&self) -> String {
        let rungs: Vec<String> = self
            .rungs
            .iter()
            .map(|r| format!("{} s ({} SYNs lost) x{}", r.seconds, r.retransmits, r.count))
            .collect();
        let cause = self
            .likely_causes
            .first()
            .map(|c| format!("; likely: {}", c.title))
            .unwrap_or_default();
        format!(
            "{}: {} — {:.0}% of {} probes{}{}",
            self.kind,
            self.scope,
            self.share * 100.0,
            self.samples,
            if rungs.is_empty() {
                String::new()
            } else {
                format!(" on rungs {}", rungs.join(", "))
            },
            cause
        )
    }
}

/// What the causes are judged against (see [`causes::Check`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    pub cross_node_hit: bool,
    pub same_node_hit: bool,
    /// Same-node paths were probed from the hit sources at all.
    pub same_node_probed: bool,
    pub host_hit: bool,
    pub pod_hit: bool,
    pub pod_probed: bool,
    pub one_destination: bool,
    pub dominant_rung: Option<u32>,
    pub share: f64,
    /// Overlay devices with TX checksum offload on, on the hit sources;
    /// `None` when no facts were reported.
    pub overlay_tx_checksum_on: Option<Vec<String>>,
    pub kernel_without_fix: Option<bool>,
    pub receiver_udp_checksum_errors: Option<u64>,
    pub dns_rung: bool,
    pub conntrack_insert_failed: Option<u64>,
    pub large_bodies_only: bool,
}

/// One series, analysed.
struct Cell<'a> {
    s: &'a Series,
    schedule: SynSchedule,
    n: u64,
    /// Lost SYNs -> (probes, probes whose timing agreed with the kernel).
    rungs: BTreeMap<u32, (u64, u64)>,
    /// Connect timeouts after retransmitting SYNs: every SYN was lost.
    give_ups: u64,
    /// Timed like a rung, but the kernel saw no retransmission.
    timing_only: u64,
    dns_hits: u64,
    failures: BTreeMap<Outcome, u64>,
    ladder: bool,
    /// Slow connects only on the first contact: every slow probe started in
    /// the first seconds, and the probes after them were fast.
    first_contact: bool,
    p_value: f64,
}

impl Cell<'_> {
    fn hits(&self) -> u64 {
        self.rungs.values().map(|(n, _)| n).sum::<u64>() + self.give_ups
    }

    /// (source node, destination node), `?` for an unknown destination.
    fn pair(&self) -> (String, String) {
        let k = &self.s.key;
        (
            k.source_node.to_string(),
            k.destination_node.as_deref().unwrap_or("?").to_string(),
        )
    }
}

/// `x / n`, 0 when `n` is 0.
fn ratio(x: u64, n: u64) -> f64 {
    x as f64 / n.max(1) as f64
}

/// Three decimals, for shares people read.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn analyse<'a>(s: &'a Series, schedule: SynSchedule, cfg: &DetectorConfig) -> Cell<'a> {
    let probes: Vec<_> = s
        .recent
        .iter()
        .filter(|p| p.outcome != Outcome::Cancelled)
        .collect();
    let base = probes
        .iter()
        .filter(|p| p.syn_retransmits == 0)
        .filter_map(|p| p.phases.connect_only())
        .min()
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut c = Cell {
        s,
        schedule,
        n: probes.len() as u64,
        rungs: BTreeMap::new(),
        give_ups: 0,
        timing_only: 0,
        dns_hits: 0,
        failures: BTreeMap::new(),
        ladder: false,
        first_contact: false,
        p_value: 1.0,
    };
    for p in &probes {
        let timing = p
            .phases
            .connect_only()
            .and_then(|d| schedule.match_rung(d.as_secs_f64(), base));
        if p.syn_retransmits > 0 && p.phases.connect.is_some() {
            // The kernel's count is the evidence; timing only confirms it.
            let e = c.rungs.entry(p.syn_retransmits).or_default();
            e.0 += 1;
            e.1 += u64::from(timing == Some(p.syn_retransmits));
        } else if p.syn_retransmits > 0 && p.outcome == Outcome::ConnectTimeout {
            c.give_ups += 1;
        } else if timing.is_some() {
            c.timing_only += 1;
        }
        if p.phases
            .dns
            .is_some_and(|d| match_dns_rung(d.as_secs_f64()).is_some())
        {
            c.dns_hits += 1;
        }
        let explained = p.outcome == Outcome::ConnectTimeout && p.syn_retransmits > 0;
        if !p.outcome.is_ok() && !explained {
            *c.failures.entry(p.outcome).or_default() += 1;
        }
    }
    let hits = c.hits();
    c.p_value = stat::binomial_tail(c.n, hits, cfg.background_syn_loss);
    let significant = hits >= cfg.min_rung_probes && c.p_value < cfg.alpha;
    c.first_contact = first_contact_only(&probes, base);
    c.ladder = significant && !c.first_contact;
    c
}

/// How long the neighbour layer may hold the first packets to a new peer:
/// three solicitations one second apart, plus slack.
const FIRST_CONTACT_MAX_S: f64 = 3.3;

/// A connect of 1 to 3.3 s above the path's base: a SYN rung, or a
/// neighbour (ARP) resolution that took its 1 s retries.
fn slow_connect(p: &crate::stats::Sample, base: f64) -> bool {
    p.phases
        .connect_only()
        .is_some_and(|d| (1.0 + base..=FIRST_CONTACT_MAX_S + base).contains(&d.as_secs_f64()))
}

/// Whether every slow connect of a cell came in its first seconds and the
/// probes started after them were all fast: a first-contact delay (ARP), not
/// a path that keeps losing SYNs.
fn first_contact_only(probes: &[&crate::stats::Sample], base: f64) -> bool {
    let Some(first) = probes.iter().map(|p| p.at).min() else {
        return false;
    };
    let window_end = first + Duration::from_secs_f64(FIRST_CONTACT_MAX_S + 0.2);
    let (early, late): (Vec<&&crate::stats::Sample>, Vec<_>) =
        probes.iter().partition(|p| p.at <= window_end);
    early.iter().any(|p| slow_connect(p, base))
        && !late.is_empty()
        && late.iter().all(|p| {
            p.outcome.is_ok()
                && p.phases
                    .connect_only()
                    .is_some_and(|d| d.as_secs_f64() < 1.0 + base)
        })
}

/// Runs the detector over `series` (from one prober or many) with the facts
/// of whichever nodes reported them.
pub fn detect(series: &[Series], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    let fact = |node: &str| facts.iter().find(|f| f.node == node);
    let cells: Vec<Cell> = series
        .iter()
        .map(|s| {
            let schedule = fact(&s.key.source_node)
                .map(NodeFacts::syn_schedule)
                .unwrap_or_else(SynSchedule::classic);
            analyse(s, schedule, cfg)
        })
        .collect();
    let mut findings = ladder_findings(&cells, facts, cfg);
    findings.extend(first_contact_findings(&cells, cfg));
    findings.extend(dns_findings(&cells, facts, cfg));
    let pmtu = pmtu_findings(&cells, cfg);
    findings.extend(failure_findings(&cells, &pmtu));
    findings.extend(pmtu);
    findings
}

type Key = (String, Option<SourceKind>, Option<String>, Option<PathKind>);
/// A named way of grouping cells: the label and the key of a cell.
type Grouping = (&'static str, fn(&Cell) -> Key);

/// Groupings from broad to narrow: (label, key of a cell).
fn groupings() -> Vec<Grouping> {
    vec![
        ("kind-path", |c| {
            (
                String::new(),
                Some(c.s.key.source_kind),
                None,
                Some(c.s.key.path),
            )
        }),
        ("destination", |c| {
            (
                String::new(),
                None,
                c.s.key.destination_node.as_deref().map(str::to_string),
                None,
            )
        }),
        ("pair", |c| {
            (
                c.s.key.source_node.to_string(),
                None,
                c.s.key.destination_node.as_deref().map(str::to_string),
                None,
            )
        }),
        ("source-kind-path", |c| {
            (
                c.s.key.source_node.to_string(),
                Some(c.s.key.source_kind),
                None,
                Some(c.s.key.path),
            )
        }),
        ("source", |c| {
            (c.s.key.source_node.to_string(), None, None, None)
        }),
    ]
}

fn scope_words(label: &str, key: &Key, sources: usize) -> String {
    let (src, kind, dst, path) = key;
    let kind = kind
        .map(|k| format!("{} network", k.as_str()))
        .unwrap_or_default();
    let path = path.map(|p| p.as_str().to_string()).unwrap_or_default();
    match label {
        "kind-path" => format!("every {path} path from the {kind} of {sources} nodes"),
        "source-kind-path" => format!("{path} paths from {src} ({kind})"),
        "destination" => format!(
            "every path to {}",
            dst.as_deref().unwrap_or("an unknown node")
        ),
        "pair" => format!(
            "every path from {src} to {}",
            dst.as_deref().unwrap_or("an unknown node")
        ),
        "source" => format!("every path from {src}"),
        _ => String::new(),
    }
}

fn ladder_findings(cells: &[Cell], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    let informative = |c: &Cell| c.n >= cfg.min_rung_probes;
    let mut covered: BTreeSet<usize> = BTreeSet::new();
    let mut out = Vec::new();
    for (label, key_of) in groupings() {
        let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (i, c) in cells.iter().enumerate().filter(|(_, c)| informative(c)) {
            groups.entry(key_of(c)).or_default().push(i);
        }
        for (key, members) in groups {
            let all_ladder = members.iter().all(|i| cells[*i].ladder);
            let news = members.iter().any(|i| !covered.contains(i));
            let sources: BTreeSet<&str> = members
                .iter()
                .map(|i| &*cells[*i].s.key.source_node)
                .collect();
            let wide_enough = match label {
                "kind-path" => sources.len() >= 2,
                "destination" => sources.len() >= 2,
                _ => members.len() >= 2,
            };
            if all_ladder && news && wide_enough {
                covered.extend(members.iter().copied());
                out.push(ladder_finding(
                    cells,
                    &members,
                    scope_words(label, &key, sources.len()),
                    &key,
                    facts,
                ));
            }
        }
    }
    for (i, c) in cells.iter().enumerate() {
        if c.ladder && !covered.contains(&i) {
            let k = &c.s.key;
            let key: Key = (
                k.source_node.to_string(),
                Some(k.source_kind),
                k.destination_node.as_deref().map(str::to_string),
                Some(k.path),
            );
            let scope = format!(
                "{} from {} ({} network) to {} ({})",
                k.target,
                k.source_node,
                k.source_kind.as_str(),
                k.destination_node.as_deref().unwrap_or("an unknown node"),
                k.path.as_str()
            );
            out.push(ladder_finding(cells, &[i], scope, &key, facts));
        }
    }
    out
}

fn ladder_finding(
    cells: &[Cell],
    members: &[usize],
    scope: String,
    key: &Key,
    facts: &[NodeFacts],
) -> Finding {
    let m: Vec<&Cell> = members.iter().map(|i| &cells[*i]).collect();
    let n: u64 = m.iter().map(|c| c.n).sum();
    let hits: u64 = m.iter().map(|c| c.hits()).sum();
    let give_ups: u64 = m.iter().map(|c| c.give_ups).sum();
    let timing_only: u64 = m.iter().map(|c| c.timing_only).sum();
    let mut rungs: BTreeMap<u32, (u64, u64, f64)> = BTreeMap::new();
    for c in &m {
        for (k, (count, agree)) in &c.rungs {
            let e =
                rungs
                    .entry(*k)
                    .or_insert((0, 0, c.schedule.rung_seconds(*k).unwrap_or(f64::NAN)));
            e.0 += count;
            e.1 += agree;
        }
    }
    let agree: u64 = rungs.values().map(|r| r.1).sum();
    let rung_probes: u64 = rungs.values().map(|r| r.0).sum();
    let dominant = rungs.iter().max_by_key(|(_, r)| r.0).map(|(k, _)| *k);
    let sources: BTreeSet<&str> = m.iter().map(|c| &*c.s.key.source_node).collect();
    let kinds: BTreeSet<SourceKind> = m.iter().map(|c| c.s.key.source_kind).collect();
    let dests: BTreeSet<&str> = m
        .iter()
        .filter_map(|c| c.s.key.destination_node.as_deref())
        .collect();
    let member_set: BTreeSet<usize> = members.iter().copied().collect();

    // The same sources' other paths: is the ladder particular to this scope?
    let outside: Vec<&Cell> = cells
        .iter()
        .enumerate()
        .filter(|(i, c)| !member_set.contains(i) && sources.contains(&*c.s.key.source_node))
        .map(|(_, c)| c)
        .collect();
    let (out_hits, out_n) = (
        outside.iter().map(|c| c.hits()).sum::<u64>(),
        outside.iter().map(|c| c.n).sum::<u64>(),
    );
    let fisher = (out_n > 0).then(|| stat::fisher_greater(hits, n, out_hits, out_n));

    let p_binom = m.iter().map(|c| c.p_value).fold(1.0, f64::min);
    let mut evidence = vec![format!(
        "{hits} of {n} probes ({:.0}%) lost SYNs: {}",
        ratio(hits, n) * 100.0,
        rungs
            .iter()
            .map(|(k, r)| format!("{} on the {} s rung ({k} lost)", r.0, r.2))
            .chain((give_ups > 0).then(|| format!("{give_ups} gave up after every SYN was lost")))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    evidence.push(format!(
        "against a background SYN loss of {:e} per probe, p = {:.1e}",
        1e-4_f64, p_binom
    ));
    if rung_probes > 0 {
        evidence.push(if agree == rung_probes {
            format!("TCP_INFO agrees: on all {rung_probes} probes the kernel's retransmit count matches the rung the connect time sits on")
        } else {
            format!(
                "TCP_INFO and timing agree on {agree} of {rung_probes} probes; where they disagree the kernel's count was trusted"
            )
        });
    }
    if timing_only > 0 {
        evidence.push(format!(
            "{timing_only} probes were timed like a rung but the kernel saw no SYN retransmission: a delay, not a loss"
        ));
    }
    let schedules: BTreeSet<String> = m
        .iter()
        .map(|c| format!("{}: {}", c.s.key.source_node, c.schedule.describe()))
        .collect();
    evidence.push(format!(
        "SYN schedule of the source kernel(s): {}",
        schedules.into_iter().collect::<Vec<_>>().join("; ")
    ));
    if let Some(p) = fisher {
        evidence.push(format!(
            "the same sources' other paths: {out_hits} of {out_n} probes lost SYNs (one-sided Fisher p = {p:.1e})"
        ));
    }

    // What the causes are judged on.
    let hit_any = |pred: &dyn Fn(&Cell) -> bool| cells.iter().any(|c| c.ladder && pred(c));
    let same_sources = |c: &Cell| sources.contains(&*c.s.key.source_node);
    let path = key.3;
    let source_facts: Vec<&NodeFacts> = facts
        .iter()
        .filter(|f| sources.contains(f.node.as_str()))
        .collect();
    let dest_facts: Vec<&NodeFacts> = facts
        .iter()
        .filter(|f| dests.contains(f.node.as_str()))
        .collect();
    let e = Evidence {
        cross_node_hit: m.iter().any(|c| c.s.key.path == PathKind::CrossNode),
        same_node_hit: hit_any(&|c| same_sources(c) && c.s.key.path == PathKind::SameNode),
        same_node_probed: cells
            .iter()
            .any(|c| same_sources(c) && c.s.key.path == PathKind::SameNode),
        host_hit: kinds.contains(&SourceKind::Host),
        pod_hit: hit_any(&|c| {
            c.s.key.source_kind == SourceKind::Pod && path.is_none_or(|p| c.s.key.path == p)
        }),
        pod_probed: cells.iter().any(|c| c.s.key.source_kind == SourceKind::Pod),
        one_destination: dests.len() == 1,
        dominant_rung: dominant,
        share: ratio(hits, n),
        overlay_tx_checksum_on: (!source_facts.is_empty()).then(|| {
            source_facts
                .iter()
                .flat_map(|f| f.overlays.iter())
                .filter(|o| o.tx_checksumming == Some(true))
                .map(|o| o.name.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }),
        kernel_without_fix: {
            let versions: Vec<(u32, u32, u32)> = source_facts
                .iter()
                .filter_map(|f| f.kernel_version())
                .collect();
            (!versions.is_empty()).then(|| versions.iter().any(|v| !has_checksum_fix(*v)))
        },
        receiver_udp_checksum_errors: {
            let v: Vec<u64> = dest_facts
                .iter()
                .filter_map(|f| f.udp_in_csum_errors)
                .collect();
            (!v.is_empty()).then(|| v.iter().sum())
        },
        ..Evidence::default()
    };
    if let Some(errors) = e.receiver_udp_checksum_errors.filter(|n| *n > 0) {
        evidence.push(format!(
            "receiving nodes counted {errors} UDP checksum errors"
        ));
    }
    if let Some(devs) = e.overlay_tx_checksum_on.as_ref().filter(|d| !d.is_empty()) {
        evidence.push(format!(
            "TX checksum offload is on for {} on the source",
            devs.join(", ")
        ));
    }
    let agreement = if rung_probes > 0 {
        agree as f64 / rung_probes as f64
    } else {
        0.5
    };
    let specific = fisher.is_none_or(|p| p < 0.01);
    let confidence = 0.5 * ((-p_binom.max(1e-300).log10()).min(12.0) / 12.0)
        + 0.3 * agreement
        + 0.2 * f64::from(u8::from(specific));
    let targets: BTreeSet<String> = m.iter().map(|c| c.s.key.target.to_string()).collect();
    let pairs: BTreeSet<(String, String)> = m.iter().map(|c| c.pair()).collect();
    Finding {
        kind: "syn-retransmit-ladder".into(),
        scope,
        source_node: (sources.len() == 1).then(|| sources.iter().next().unwrap().to_string()),
        source_kind: (kinds.len() == 1).then(|| *kinds.iter().next().unwrap()),
        destination_node: (dests.len() == 1).then(|| dests.iter().next().unwrap().to_string()),
        path: path.or_else(|| {
            let p: BTreeSet<PathKind> = m.iter().map(|c| c.s.key.path).collect();
            (p.len() == 1).then(|| *p.iter().next().unwrap())
        }),
        targets: targets.into_iter().collect(),
        pairs: pairs.into_iter().collect(),
        rungs: rungs
            .iter()
            .map(|(k, r)| RungCount {
                retransmits: *k,
                seconds: r.2,
                count: r.0,
            })
            .collect(),
        share: round3(e.share),
        samples: n,
        confidence: (confidence * 100.0).round() / 100.0,
        evidence,
        likely_causes: causes::rank("syn-retransmit-ladder", &e),
        examples: examples(&m, |p| p.syn_retransmits > 0),
    }
}

/// Up to three exported traces of probes in `cells` that `show` the problem.
fn examples(
    cells: &[&Cell],
    show: impl Fn(&crate::stats::Sample) -> bool,
) -> Vec<crate::stats::TraceRef> {
    cells
        .iter()
        .flat_map(|c| c.s.recent.iter())
        .filter(|p| show(p))
        .filter_map(|p| p.trace.clone())
        .take(3)
        .collect()
}

/// Slow first connections to new peers, on at least `min_rung_probes`
/// paths: one finding, since one such path is indistinguishable from luck.
fn first_contact_findings(cells: &[Cell], cfg: &DetectorConfig) -> Vec<Finding> {
    let hit: Vec<&Cell> = cells.iter().filter(|c| c.first_contact).collect();
    if (hit.len() as u64) < cfg.min_rung_probes {
        return vec![];
    }
    let n: u64 = hit.iter().map(|c| c.n).sum();
    let slow: u64 = hit.iter().map(|c| c.hits().max(1)).sum();
    let pairs: BTreeSet<(String, String)> = hit.iter().map(|c| c.pair()).collect();
    vec![Finding {
        kind: "first-contact-delay".into(),
        scope: format!("the first connections on {} paths", hit.len()),
        source_node: None,
        source_kind: None,
        destination_node: None,
        path: None,
        targets: hit.iter().map(|c| c.s.key.target.to_string()).collect::<BTreeSet<_>>().into_iter().collect(),
        pairs: pairs.into_iter().collect(),
        rungs: vec![],
        share: round3(ratio(slow, n)),
        samples: n,
        confidence: 0.6,
        evidence: vec![format!(
            "on {} paths only the first probes connected in 1 to {FIRST_CONTACT_MAX_S} s; every later probe was fast",
            hit.len()
        )],
        likely_causes: vec![LikelyCause {
            id: "neighbour-resolution".into(),
            title: "Neighbour (ARP) resolution on first contact".into(),
            why: "the first packets to a new peer wait while ARP resolves; lost solicitations are retried 1 s apart, 3 times, so only the first flow to a peer is slow".into(),
            score: 1.0,
            present: vec!["slow connects only on the first contact with each path".into()],
            missing: vec![],
            unknown: vec![],
            remediation: vec![
                "ip -s neigh on the source: FAILED or INCOMPLETE entries, and net.ipv4.neigh.default.gc_thresh1..3 on large clusters".into(),
                "the underlay for dropped ARP (broadcast limits, port security)".into(),
            ],
        }],
        examples: examples(&hit, |p| p.syn_retransmits > 0),
    }]
}

/// Whether a kernel has "netfilter: nat: never update the UDP checksum when
/// it's 0" (5.6.13, 5.4.41, 4.19.123, 4.14.181 and every 5.7 onwards).
pub fn has_checksum_fix(v: (u32, u32, u32)) -> bool {
    match v {
        (major, _, _) if major >= 6 => true,
        (5, minor, _) if minor >= 7 => true,
        (5, 6, patch) => patch >= 13,
        (5, 4, patch) => patch >= 41,
        (4, 19, patch) => patch >= 123,
        (4, 14, patch) => patch >= 181,
        _ => false,
    }
}

fn dns_findings(cells: &[Cell], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    let mut by_source: BTreeMap<String, Vec<&Cell>> = BTreeMap::new();
    for c in cells.iter().filter(|c| {
        c.dns_hits >= cfg.min_rung_probes
            && stat::binomial_tail(c.n, c.dns_hits, cfg.background_syn_loss) < cfg.alpha
    }) {
        by_source
            .entry(c.s.key.source_node.to_string())
            .or_default()
            .push(c);
    }
    by_source
        .into_iter()
        .map(|(source, m)| {
            let n: u64 = m.iter().map(|c| c.n).sum();
            let hits: u64 = m.iter().map(|c| c.dns_hits).sum();
            let insert_failed = facts
                .iter()
                .find(|f| f.node == source)
                .and_then(|f| f.conntrack_insert_failed);
            let e = Evidence {
                dns_rung: true,
                conntrack_insert_failed: insert_failed,
                share: ratio(hits, n),
                ..Evidence::default()
            };
            let mut evidence = vec![format!(
                "{hits} of {n} lookups took the resolver's 5 s or 10 s timeout"
            )];
            if let Some(f) = insert_failed {
                evidence.push(format!("conntrack insert_failed = {f} on {source}"));
            }
            Finding {
                kind: "dns-timeout-ladder".into(),
                scope: format!("name lookups from {source}"),
                source_node: Some(source.clone()),
                source_kind: None,
                destination_node: None,
                path: None,
                targets: m
                    .iter()
                    .map(|c| c.s.key.target.to_string())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                pairs: vec![],
                rungs: vec![],
                share: round3(e.share),
                samples: n,
                confidence: 0.8,
                evidence,
                likely_causes: causes::rank("dns-timeout-ladder", &e),
                examples: examples(&m, |p| {
                    p.phases
                        .dns
                        .is_some_and(|d| match_dns_rung(d.as_secs_f64()).is_some())
                }),
            }
        })
        .collect()
}

/// The body size a target asks for (`/bytes/N`), if any.
fn body_size(url: &str) -> Option<u64> {
    url.split("/bytes/")
        .nth(1)?
        .split(['?', '/'])
        .next()?
        .parse()
        .ok()
}

fn pmtu_findings(cells: &[Cell], cfg: &DetectorConfig) -> Vec<Finding> {
    // A stall after the connect: a connected probe that timed out, or a body
    // that took over a second after its first byte. Connect rungs do not count.
    let stalled = |c: &Cell| {
        c.s.recent
            .iter()
            .filter(
                |p| match (p.outcome, p.phases.connect, p.phases.first_byte) {
                    (Outcome::TotalTimeout, Some(_), _) => true,
                    (o, _, Some(fb)) if o.completed() => {
                        p.phases.total.saturating_sub(fb) >= Duration::from_secs(1)
                    }
                    _ => false,
                },
            )
            .count() as u64
    };
    let mut out = Vec::new();
    for big in cells.iter().filter(|c| {
        body_size(&c.s.url).is_some_and(|n| n > 1400) && stalled(c) >= cfg.min_rung_probes
    }) {
        let same_pair = |c: &&Cell| {
            c.s.key.source_node == big.s.key.source_node
                && c.s.key.source_kind == big.s.key.source_kind
                && c.s.key.destination_node == big.s.key.destination_node
        };
        let small_fine = cells
            .iter()
            .filter(same_pair)
            .filter(|c| body_size(&c.s.url).is_none_or(|n| n <= 1400))
            .any(|c| c.n >= cfg.min_rung_probes && c.failures.is_empty() && !c.ladder);
        if !small_fine {
            continue;
        }
        let k = &big.s.key;
        let e = Evidence {
            large_bodies_only: true,
            cross_node_hit: k.path == PathKind::CrossNode,
            same_node_probed: true,
            ..Evidence::default()
        };
        let failed = stalled(big);
        out.push(Finding {
            kind: "pmtu-blackhole".into(),
            scope: format!(
                "large responses from {} to {} ({} network)",
                k.source_node,
                k.destination_node.as_deref().unwrap_or("?"),
                k.source_kind.as_str()
            ),
            share: round3(ratio(failed, big.n)),
            samples: big.n,
            confidence: 0.7,
            evidence: vec![format!(
                "{failed} of {} probes of {} ({} byte body) failed or stalled while small responses on the same path passed",
                big.n,
                k.target,
                body_size(&big.s.url).unwrap_or(0)
            )],
            likely_causes: causes::rank("pmtu-blackhole", &e),
            examples: examples(&[big], |p| !p.outcome.is_ok()),
            ..Finding::of_cell(big)
        });
    }
    out
}

/// Failures no other finding explains (a PMTU finding explains its own).
fn failure_findings(cells: &[Cell], pmtu: &[Finding]) -> Vec<Finding> {
    let explained = |c: &Cell| {
        pmtu.iter().any(|f| {
            f.targets.iter().any(|t| **t == *c.s.key.target)
                && f.source_node.as_deref() == Some(&*c.s.key.source_node)
                && f.source_kind == Some(c.s.key.source_kind)
                && f.destination_node.as_deref() == c.s.key.destination_node.as_deref()
        })
    };
    cells
        .iter()
        .filter(|c| !c.failures.is_empty() && !explained(c))
        .map(|c| {
            let k = &c.s.key;
            let failed: u64 = c.failures.values().sum();
            let outcomes: Vec<String> = c
                .failures
                .iter()
                .map(|(o, n)| format!("{n} {}", o.as_str()))
                .collect();
            Finding {
                kind: "probe-failures".into(),
                scope: format!(
                    "{} from {} ({} network) to {}",
                    k.target,
                    k.source_node,
                    k.source_kind.as_str(),
                    k.destination_node.as_deref().unwrap_or("an unknown node")
                ),
                share: round3(ratio(failed, c.n)),
                samples: c.n,
                confidence: 1.0,
                evidence: vec![format!(
                    "{failed} of {} probes failed: {}",
                    c.n,
                    outcomes.join(", ")
                )]
                .into_iter()
                .chain(
                    c.failures
                        .keys()
                        .filter_map(|o| outcome_hint(*o))
                        .map(str::to_string),
                )
                .collect(),
                likely_causes: vec![],
                examples: examples(&[c], |p| !p.outcome.is_ok()),
                ..Finding::of_cell(c)
            }
        })
        .collect()
}

fn outcome_hint(o: Outcome) -> Option<&'static str> {
    Some(match o {
        Outcome::Refused => {
            "refused: the SYN reached a host where nothing listens (no ready backend, wrong port, or a REJECT rule)"
        }
        Outcome::Unreachable => "unreachable: no route, or the neighbour never answered ARP",
        Outcome::ConnectTimeout => {
            "connect timeout without SYN retransmissions seen: the deadline is shorter than the first retransmission"
        }
        Outcome::TotalTimeout => {
            "connected but no complete response in time: a slow or stuck backend, or large packets lost on the path"
        }
        Outcome::Reset => {
            "reset after connecting: the backend or a middlebox aborted the connection"
        }
        Outcome::HttpStatus => "the backend answered with a non-2xx status",
        Outcome::DnsError => "the name did not resolve",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
