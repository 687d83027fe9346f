//! Name lookups on the resolver's 5 s / 10 s timeouts, per source node.

use std::collections::{BTreeMap, BTreeSet};

use super::super::cell::Cell;
use super::super::evidence::Evidence;
use super::super::scope::{Grouping, ScopeKey};
use super::super::{Finding, FindingKind, causes, examples, ratio, round3, stat};
use crate::model::{DetectorConfig, NodeFacts, match_dns_rung};

pub fn findings(cells: &[Cell], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    let mut by_source: BTreeMap<String, Vec<&Cell>> = BTreeMap::new();
    for c in cells.iter().filter(|c| {
        c.dns_hits >= cfg.min_rung_probes
            && stat::binomial_tail(c.n, c.dns_hits, cfg.background_syn_loss) < cfg.alpha
    }) {
        by_source
            .entry(c.w.dims.source_node.to_string())
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
            let mut key = ScopeKey::bare(Grouping::Source);
            key.source_node = Some(source.clone());
            Finding {
                source_node: Some(source),
                targets: m
                    .iter()
                    .map(|c| c.w.dims.target.to_string())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                share: round3(e.share),
                samples: n,
                evidence,
                likely_causes: causes::rank(FindingKind::DnsTimeoutLadder, &e),
                examples: examples(&m, |p| {
                    p.phases
                        .dns
                        .is_some_and(|d| match_dns_rung(d.as_secs_f64()).is_some())
                }),
                ..Finding::new(FindingKind::DnsTimeoutLadder, key, 1, m.len())
            }
            .with_confidence(0.8)
        })
        .collect()
}
