//! Name lookups on the resolver's 5 s / 10 s timeouts. A lost query is lost
//! on a path like any packet, so the scope comes from the matrix pattern as
//! a ladder's does: every source's lookups to one resolver's node, its
//! cross-node lookups only, one pair, one source's lookups. The conntrack
//! insert race is named only where the probe sent A and AAAA at once
//! (`parallel=1`, as glibc does) and insert_failed rose on the source.

use std::collections::{BTreeMap, BTreeSet};

use super::{Finding, FindingKind, examples, ratio, round3};
use crate::detect::cell::Cell;
use crate::detect::evidence::{self, Evidence};
use crate::detect::scope::{Grouping, ScopeKey};
use crate::detect::{causes, stat};
use crate::model::{DetectorConfig, NodeFacts, PathKind, match_dns_rung};

/// Lookups a cell timed: probes with a DNS phase.
fn timed(c: &Cell) -> u64 {
    c.probes().filter(|p| p.phases.dns.is_some()).count() as u64
}

fn hit(c: &Cell, cfg: &DetectorConfig) -> bool {
    c.dns_hits >= cfg.min_rung_probes
        && stat::binomial_tail(c.n, c.dns_hits, cfg.background_syn_loss) < cfg.alpha
}

pub fn findings(cells: &[Cell], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    let informative = |c: &Cell| timed(c) >= cfg.min_rung_probes;
    let mut covered: BTreeSet<usize> = BTreeSet::new();
    let mut out = Vec::new();
    // Broad first: a source's every lookup before one pair's.
    for grouping in [
        Grouping::Destination,
        Grouping::DestinationPath,
        Grouping::Source,
        Grouping::Pair,
    ] {
        let mut groups: BTreeMap<ScopeKey, Vec<usize>> = BTreeMap::new();
        for (i, c) in cells.iter().enumerate().filter(|(_, c)| informative(c)) {
            if grouping != Grouping::Source && c.w.dims.destination_node.is_none() {
                continue;
            }
            groups
                .entry(ScopeKey::of(grouping, &c.w.dims))
                .or_default()
                .push(i);
        }
        for (key, members) in groups {
            let sources: BTreeSet<&str> = members
                .iter()
                .map(|i| &*cells[*i].w.dims.source_node)
                .collect();
            let wide_enough = match grouping {
                Grouping::Destination | Grouping::DestinationPath => sources.len() >= 2,
                _ => members.len() >= 2,
            };
            if wide_enough
                && members.iter().all(|i| hit(&cells[*i], cfg))
                && members.iter().any(|i| !covered.contains(i))
            {
                covered.extend(members.iter().copied());
                out.push(finding(cells, &members, key, facts));
            }
        }
    }
    for i in (0..cells.len()).filter(|i| hit(&cells[*i], cfg) && !covered.contains(i)) {
        out.push(finding(
            cells,
            &[i],
            ScopeKey::of(Grouping::Cell, &cells[i].w.dims),
            facts,
        ));
    }
    out
}

fn finding(cells: &[Cell], members: &[usize], key: ScopeKey, facts: &[NodeFacts]) -> Finding {
    let m: Vec<&Cell> = members.iter().map(|i| &cells[*i]).collect();
    let n: u64 = m.iter().map(|c| c.n).sum();
    let hits: u64 = m.iter().map(|c| c.dns_hits).sum();
    let sources: BTreeSet<&str> = m.iter().map(|c| &*c.w.dims.source_node).collect();
    let dests: BTreeSet<&str> = m
        .iter()
        .filter_map(|c| c.w.dims.destination_node.as_deref())
        .collect();
    let paths: BTreeSet<PathKind> = m.iter().map(|c| c.w.dims.path).collect();
    let member_set: BTreeSet<usize> = members.iter().copied().collect();
    // The same sources' lookups on their own node: a resolver path that
    // crosses no overlay.
    let same_node: Vec<&Cell> = cells
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            !member_set.contains(i)
                && sources.contains(&*c.w.dims.source_node)
                && c.w.dims.path == PathKind::SameNode
                && timed(c) > 0
        })
        .map(|(_, c)| c)
        .collect();
    let source_facts: Vec<&NodeFacts> = facts
        .iter()
        .filter(|f| sources.contains(f.node.as_str()))
        .collect();
    let dest_facts: Vec<&NodeFacts> = facts
        .iter()
        .filter(|f| dests.contains(f.node.as_str()))
        .collect();
    let mut e = Evidence {
        dns_rung: true,
        dns_parallel: m.iter().any(|c| c.w.dns_parallel),
        cross_node_hit: paths.contains(&PathKind::CrossNode),
        same_node_hit: paths.contains(&PathKind::SameNode)
            || same_node.iter().any(|c| c.dns_hits > 0),
        same_node_probed: paths.contains(&PathKind::SameNode) || !same_node.is_empty(),
        one_destination: m
            .iter()
            .all(|c| c.w.dims.destination_node.is_some())
            .then_some(dests.len() == 1),
        unknown_path_hit: m.iter().any(|c| c.w.dims.destination_node.is_none()),
        share: ratio(hits, n),
        ..Evidence::default()
    };
    evidence::counters(&mut e, &source_facts, &dest_facts);
    let mut lines = vec![format!(
        "{hits} of {n} lookups took the resolver's 5 s or 10 s timeout"
    )];
    if !same_node.is_empty() && !e.same_node_hit {
        let clean: u64 = same_node.iter().map(|c| timed(c)).sum();
        lines.push(format!(
            "the same sources' {clean} lookups to a resolver on their own node were on time: the path, not the lookup"
        ));
    }
    lines.push(if e.dns_parallel {
        "A and AAAA left one socket at once (parallel=1), as glibc sends them".into()
    } else {
        "one query at a time: conntrack's insert race between parallel queries cannot happen to these lookups".into()
    });
    if let Some(r) = e.source_insert_failed {
        lines.push(format!(
            "conntrack insert_failed rose by {r} on the source over the window"
        ));
    }
    Finding {
        source_node: (sources.len() == 1).then(|| sources.iter().next().unwrap().to_string()),
        destination_node: (dests.len() == 1).then(|| dests.iter().next().unwrap().to_string()),
        path: (paths.len() == 1).then(|| *paths.iter().next().unwrap()),
        targets: m
            .iter()
            .map(|c| c.w.dims.target.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        pairs: m
            .iter()
            .map(|c| c.pair())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        share: round3(e.share),
        samples: n,
        evidence: lines,
        likely_causes: causes::rank(FindingKind::DnsTimeoutLadder, &e),
        examples: examples(&m, |p| {
            p.phases
                .dns
                .is_some_and(|d| match_dns_rung(d.as_secs_f64()).is_some())
        }),
        ..Finding::new(FindingKind::DnsTimeoutLadder, key, sources.len(), m.len())
    }
    .with_confidence(0.8)
}
