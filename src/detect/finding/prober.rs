//! The prober judging itself. A prober starved of CPU starts its probes
//! late against their schedule (each sample carries how late), and a
//! cgroup that throttles it stops it mid-probe: its own delay goes into
//! its timings. Said as a finding of its own, placed in the prober; the
//! late probes' server times are left out of the backend's tails, and a
//! SYN ladder rests on the kernel's count, which a late prober cannot
//! inflate.

use std::collections::BTreeMap;

use super::{Finding, FindingKind, ratio, round3};
use crate::detect::cell::Cell;
use crate::detect::evidence::Evidence;
use crate::detect::scope::{Grouping, ScopeKey};
use crate::detect::{Locus, causes, stat};
use crate::model::{DetectorConfig, NodeFacts, PROBER_LATE_MS, SourceKind};

/// Probes a healthy prober starts 100 ms late: the background of the test.
const BACKGROUND: f64 = 0.001;
/// CPU periods throttled over the window that mark a throttled prober.
const THROTTLED: u64 = 10;

pub fn findings(cells: &[Cell], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    let mut by: BTreeMap<(String, SourceKind), (u64, u64, f32)> = BTreeMap::new();
    for c in cells {
        let e = by
            .entry((c.w.dims.source_node.to_string(), c.w.dims.source_kind))
            .or_default();
        for p in c.probes() {
            e.0 += 1;
            if p.prober_late() {
                e.1 += 1;
                e.2 = e.2.max(p.prober_lag_ms.unwrap_or(0.0));
            }
        }
    }
    let mut out = Vec::new();
    for ((node, kind), (n, late, worst)) in by {
        let throttled = facts
            .iter()
            .find(|f| f.node == node)
            .and_then(|f| match kind {
                SourceKind::Host => f.rises.throttled_periods,
                _ => f.pod_rises.throttled_periods,
            });
        let p = stat::binomial_tail(n, late, BACKGROUND);
        let lagging = late >= cfg.min_rung_probes && p < cfg.alpha;
        let is_throttled = throttled.is_some_and(|t| t >= THROTTLED);
        if !lagging && !is_throttled {
            continue;
        }
        let mut evidence = vec![format!(
            "{late} of {n} probes started {PROBER_LATE_MS:.0} ms or more behind their schedule (the latest {worst:.0} ms): this prober's own timers were late"
        )];
        if let Some(t) = throttled.filter(|t| *t > 0) {
            evidence.push(format!(
                "its cgroup throttled it in {t} CPU periods over the window"
            ));
        }
        evidence.push(
            "a late start is the prober's delay, not the path's or the backend's: late probes are left out of the backends' tails".into(),
        );
        let mut key = ScopeKey::bare(Grouping::Source);
        key.source_node = Some(node.clone());
        key.source_kind = Some(kind);
        let e = Evidence {
            prober_late: lagging,
            prober_throttled: throttled.map(|t| t >= THROTTLED),
            share: ratio(late, n),
            ..Evidence::default()
        };
        out.push(
            Finding {
                source_node: Some(node),
                source_kind: Some(kind),
                share: round3(ratio(late, n)),
                samples: n,
                evidence,
                likely_causes: causes::rank(FindingKind::ProberStarved, &e),
                locus: Locus::Prober,
                locus_why:
                    "the prober's own timers were late: its node or its cgroup starved it of CPU"
                        .into(),
                ..Finding::new(FindingKind::ProberStarved, key, 1, 1)
            }
            .with_confidence(if lagging { 0.9 } else { 0.7 }),
        );
    }
    out
}
