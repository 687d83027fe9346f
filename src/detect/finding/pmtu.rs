//! Path-MTU black holes: large responses stall where small ones on the same
//! path pass. "Large" is the body size the probes measured (declared by the
//! response, else read), never a guess from the URL.

use std::time::Duration;

use super::{Finding, FindingKind, examples, ratio, round3};
use crate::detect::causes;
use crate::detect::cell::{Cell, LARGE_BODY_BYTES};
use crate::detect::evidence::Evidence;
use crate::model::{DetectorConfig, Outcome, PathKind};

/// Probes that stalled after the connect: a connected probe that timed out,
/// or a body that took over a second after its first byte. Connect rungs do
/// not count.
fn stalled(c: &Cell) -> u64 {
    c.probes()
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
}

pub fn findings(cells: &[Cell], cfg: &DetectorConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    for big in cells
        .iter()
        .filter(|c| c.body_bytes() > LARGE_BODY_BYTES && stalled(c) >= cfg.min_rung_probes)
    {
        let d = &big.w.dims;
        let same_pair = |c: &&Cell| {
            c.w.dims.source_node == d.source_node
                && c.w.dims.source_kind == d.source_kind
                && c.w.dims.destination_node == d.destination_node
        };
        let small_fine = cells
            .iter()
            .filter(same_pair)
            .filter(|c| c.body_bytes() <= LARGE_BODY_BYTES)
            .any(|c| c.n >= cfg.min_rung_probes && c.failures.is_empty() && !c.ladder);
        if !small_fine {
            continue;
        }
        let e = Evidence {
            large_bodies_only: true,
            cross_node_hit: d.path == PathKind::CrossNode,
            same_node_probed: true,
            ..Evidence::default()
        };
        let failed = stalled(big);
        out.push(
            Finding {
                share: round3(ratio(failed, big.n)),
                samples: big.n,
                evidence: vec![format!(
                    "{failed} of {} probes of {} ({} byte body) failed or stalled while small responses on the same path passed",
                    big.n,
                    d.target,
                    big.body_bytes()
                )],
                likely_causes: causes::rank(FindingKind::PmtuBlackhole, &e),
                examples: examples(&[big], |p| !p.outcome.is_ok()),
                ..Finding::of_cell(FindingKind::PmtuBlackhole, big)
            }
            .with_confidence(0.7),
        );
    }
    out
}
