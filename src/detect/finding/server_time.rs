//! Time after the connection was up: the backend's. A probe's server time
//! is its first byte minus its connect (the request sent, the answer
//! begun): no handshake in it, so no network rung. A cell's server times
//! have a tail when a share of answers came far later than the rest:
//! later than ten times the cell's median and than the median plus
//! 100 ms, more often than a healthy backend (0.5 % of answers) explains
//! (binomial tail, as for ladders), and at least `min_rung_probes` of
//! them. A cell whose probes lose SYNs is not judged: the same loss delays
//! data segments. The scope widens to every path to one destination node,
//! then to one target, judged on the group's pooled answers; the
//! finding lies in the backend, never the network.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Finding, FindingKind, examples, ratio, round3};
use crate::detect::cell::Cell;
use crate::detect::evidence::Evidence;
use crate::detect::scope::{Grouping, ScopeKey};
use crate::detect::{Locus, causes, stat};
use crate::model::{DetectorConfig, PathKind, Sample};

/// Late answers a healthy backend gives: the background of the test.
const BACKGROUND: f64 = 0.005;
/// A tail starts at this many times the median server time...
const TIMES_MEDIAN: f64 = 10.0;
/// ...and at least this far above it.
const ABOVE_MEDIAN: Duration = Duration::from_millis(100);
/// Fewer answers than this say nothing of a tail.
const MIN_ANSWERS: usize = 10;

/// The server time of a probe that got its answer; `None` when it never
/// did, or when the prober itself was late (its own delay is not the
/// backend's).
pub fn server_time(p: &Sample) -> Option<Duration> {
    if p.prober_late() {
        return None;
    }
    // From the TLS handshake's end over https://: the handshake's own
    // round trips are the path's, not the server's time to answer.
    let (ready, first) = (p.phases.ready()?, p.phases.first_byte?);
    first.checked_sub(ready)
}

/// One cell's tail: (tail answers, answers, median, threshold).
struct Tail {
    hits: u64,
    n: u64,
    median: Duration,
    threshold: Duration,
    worst: Duration,
}

/// Above this share of probes with a lost SYN, a cell's late answers are
/// not judged: loss that costs SYNs costs data segments too, and a lost
/// segment waits out a retransmission timeout after the handshake. The
/// ladder finding speaks for that loss.
const LOSSY: f64 = 0.01;

fn tail(c: &Cell) -> Option<Tail> {
    let lost = c.probes().filter(|p| p.syn_retransmits > 0).count();
    if lost as f64 > LOSSY * c.probes().count() as f64 {
        return None;
    }
    let mut times: Vec<Duration> = c
        .probes()
        .filter(|p| p.syn_retransmits == 0)
        .filter_map(server_time)
        .collect();
    if times.len() < MIN_ANSWERS {
        return None;
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    let threshold = median.mul_f64(TIMES_MEDIAN).max(median + ABOVE_MEDIAN);
    let hits = times.iter().filter(|t| **t > threshold).count() as u64;
    Some(Tail {
        hits,
        n: times.len() as u64,
        median,
        threshold,
        worst: *times.last().expect("ten or more"),
    })
}

fn significant(t: &Tail, cfg: &DetectorConfig) -> bool {
    t.hits >= cfg.min_rung_probes && stat::binomial_tail(t.n, t.hits, BACKGROUND) < cfg.alpha
}

/// Below this, a cell's late answers are too few for the group's share:
/// that cell is clean, and the group is not one scope.
const CLEAN: f64 = 0.01;

/// A group of cells is one scope when its late answers, pooled, are a tail
/// (as for one cell) and no member is clean against the pooled share: a
/// 10 % tail leaves some of 30 probes with no late answer by chance, and
/// the group is judged as a whole, not cell by cell.
fn group_hit(tails: &[Option<Tail>], members: &[usize], cfg: &DetectorConfig) -> bool {
    let t: Vec<&Tail> = members.iter().filter_map(|i| tails[*i].as_ref()).collect();
    let (hits, n): (u64, u64) = (t.iter().map(|t| t.hits).sum(), t.iter().map(|t| t.n).sum());
    if hits < cfg.min_rung_probes || stat::binomial_tail(n, hits, BACKGROUND) >= cfg.alpha {
        return false;
    }
    let share = ratio(hits, n);
    t.iter()
        .all(|t| 1.0 - stat::binomial_tail(t.n, t.hits + 1, share) >= CLEAN)
}

pub fn findings(cells: &[Cell], cfg: &DetectorConfig) -> Vec<Finding> {
    let tails: Vec<Option<Tail>> = cells.iter().map(tail).collect();
    let hit = |i: usize| tails[i].as_ref().is_some_and(|t| significant(t, cfg));
    let mut covered: BTreeSet<usize> = BTreeSet::new();
    let mut out = Vec::new();
    // Broad first: a slow backend is slow on every path to its node.
    for grouping in [Grouping::Destination, Grouping::Target] {
        let mut groups: BTreeMap<ScopeKey, Vec<usize>> = BTreeMap::new();
        for i in (0..cells.len()).filter(|i| tails[*i].is_some()) {
            groups
                .entry(ScopeKey::of(grouping, &cells[i].w.dims))
                .or_default()
                .push(i);
        }
        for (key, members) in groups {
            // A narrower scope is judged on what the wider ones left.
            let members: Vec<usize> = members
                .into_iter()
                .filter(|i| !covered.contains(i))
                .collect();
            let sources: BTreeSet<&str> = members
                .iter()
                .map(|i| &*cells[*i].w.dims.source_node)
                .collect();
            let known = grouping != Grouping::Destination || key.destination_node.is_some();
            if known && sources.len() >= 2 && group_hit(&tails, &members, cfg) {
                covered.extend(members.iter().copied());
                out.push(finding(cells, &tails, &members, key));
            }
        }
    }
    for i in (0..cells.len()).filter(|i| hit(*i) && !covered.contains(i)) {
        out.push(finding(
            cells,
            &tails,
            &[i],
            ScopeKey::of(Grouping::Cell, &cells[i].w.dims),
        ));
    }
    out
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn finding(cells: &[Cell], tails: &[Option<Tail>], members: &[usize], key: ScopeKey) -> Finding {
    let m: Vec<&Cell> = members.iter().map(|i| &cells[*i]).collect();
    let t: Vec<&Tail> = members.iter().filter_map(|i| tails[*i].as_ref()).collect();
    let (hits, n): (u64, u64) = (t.iter().map(|t| t.hits).sum(), t.iter().map(|t| t.n).sum());
    let median = t.iter().map(|t| t.median).max().unwrap_or_default();
    let threshold = t.iter().map(|t| t.threshold).min().unwrap_or_default();
    let worst = t.iter().map(|t| t.worst).max().unwrap_or_default();
    let p = stat::binomial_tail(n, hits, BACKGROUND);
    let paths: BTreeSet<PathKind> = m.iter().map(|c| c.w.dims.path).collect();
    let connect_p50 = {
        let mut v: Vec<Duration> = m
            .iter()
            .flat_map(|c| c.probes())
            .filter_map(|p| p.phases.connect_only())
            .collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let lost: u64 = m.iter().map(|c| c.hits()).sum();
    let mut evidence = vec![
        format!(
            "{hits} of {n} answers ({:.0}%) began more than {} after the connection was up (the median took {}; the slowest {})",
            ratio(hits, n) * 100.0,
            ms(threshold),
            ms(median),
            ms(worst)
        ),
        format!(
            "against {:.1} % of late answers from a healthy backend, p = {p:.1e}",
            BACKGROUND * 100.0
        ),
    ];
    evidence.push(match connect_p50 {
        Some(c) if lost == 0 => format!(
            "the handshake was fast and lost no SYN (connect median {}): the time went after it, in the backend",
            ms(c)
        ),
        Some(c) => format!(
            "the handshake took {} at the median; {lost} probes also lost SYNs, judged apart",
            ms(c)
        ),
        None => "no handshake was timed".into(),
    });
    if paths.contains(&PathKind::SameNode) && paths.contains(&PathKind::CrossNode) {
        evidence.push(
            "same-node and cross-node paths alike: not the overlay, not the path between nodes"
                .into(),
        );
    }
    let sources: BTreeSet<&str> = m.iter().map(|c| &*c.w.dims.source_node).collect();
    let dests: BTreeSet<&str> = m
        .iter()
        .filter_map(|c| c.w.dims.destination_node.as_deref())
        .collect();
    let targets: BTreeSet<String> = m.iter().map(|c| c.w.dims.target.to_string()).collect();
    let confidence =
        0.6 * ((-p.max(1e-300).log10()).min(12.0) / 12.0) + 0.4 * f64::from(u8::from(lost == 0));
    Finding {
        source_node: (sources.len() == 1).then(|| sources.iter().next().unwrap().to_string()),
        destination_node: (dests.len() == 1).then(|| dests.iter().next().unwrap().to_string()),
        path: (paths.len() == 1).then(|| *paths.iter().next().unwrap()),
        targets: targets.into_iter().collect(),
        pairs: m
            .iter()
            .map(|c| c.pair())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        share: round3(ratio(hits, n)),
        samples: n,
        evidence,
        likely_causes: causes::rank(
            FindingKind::ServerTimeTail,
            &Evidence {
                late_answers: true,
                same_node_hit: paths.contains(&PathKind::SameNode),
                cross_node_hit: paths.contains(&PathKind::CrossNode),
                same_node_probed: true,
                share: ratio(hits, n),
                ..Evidence::default()
            },
        ),
        locus: Locus::Backend,
        locus_why: "the handshake was fast; the time went after the connection was up, before the first byte: the backend answered late".into(),
        examples: examples(&m, |s| server_time(s).is_some_and(|d| d > threshold)),
        ..Finding::new(FindingKind::ServerTimeTail, key, sources.len(), m.len())
    }
    .with_confidence(confidence)
}
