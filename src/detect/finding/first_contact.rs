//! Slow first connections to new peers (neighbour resolution), on at least
//! `min_rung_probes` paths: one finding, since one such path is
//! indistinguishable from luck.

use std::collections::BTreeSet;

use super::{Finding, FindingKind, examples, ratio, round3};
use crate::detect::causes;
use crate::detect::cell::{Cell, FIRST_CONTACT_MAX_S};
use crate::detect::evidence::Evidence;
use crate::detect::scope::{Grouping, ScopeKey};
use crate::model::DetectorConfig;

pub fn findings(cells: &[Cell], cfg: &DetectorConfig) -> Vec<Finding> {
    let hit: Vec<&Cell> = cells.iter().filter(|c| c.first_contact).collect();
    if (hit.len() as u64) < cfg.min_rung_probes {
        return vec![];
    }
    let n: u64 = hit.iter().map(|c| c.n).sum();
    let slow: u64 = hit.iter().map(|c| c.hits().max(1)).sum();
    let pairs: BTreeSet<(String, String)> = hit.iter().map(|c| c.pair()).collect();
    let sources: BTreeSet<&str> = hit.iter().map(|c| &*c.w.dims.source_node).collect();
    let targets: BTreeSet<String> = hit.iter().map(|c| c.w.dims.target.to_string()).collect();
    let e = Evidence {
        first_contact_only: true,
        share: ratio(slow, n),
        ..Evidence::default()
    };
    vec![
        Finding {
            targets: targets.into_iter().collect(),
            pairs: pairs.into_iter().collect(),
            share: round3(ratio(slow, n)),
            samples: n,
            evidence: vec![format!(
                "on {} paths only the first probes connected in 1 to {FIRST_CONTACT_MAX_S} s; every later probe was fast",
                hit.len()
            )],
            likely_causes: causes::rank(FindingKind::FirstContactDelay, &e),
            examples: examples(&hit, |p| p.syn_retransmits > 0),
            ..Finding::new(
                FindingKind::FirstContactDelay,
                ScopeKey::bare(Grouping::FirstContact),
                sources.len(),
                hit.len(),
            )
        }
        .with_confidence(0.6),
    ]
}
