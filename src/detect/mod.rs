//! The detector: pure. No I/O, no clock. Input: the recent samples of the
//! series a prober (or several) recorded, and the facts of the nodes
//! involved. Output: findings that name a scope, the rungs seen, the
//! kernel's agreement, and ranked likely causes with remediation.
//!
//! Invariant: `detect` imports only `model` and its own files
//! (`tests/architecture.rs` holds it to that).
//!
//! - [`cell`]: one series analysed against its source kernel's SYN schedule.
//! - [`scope`]: the typed identity of a finding's scope, and its words.
//! - `finding/`: [`Finding`] and its kinds, and one file per finding kind's
//!   rule; `ladder` widens the scope from the cell to the broadest group
//!   whose cells are on the ladder together.
//! - `locus`: where a finding lies ([`Locus`]); `hold`: when a one-shot
//!   run's verdict has held ([`VerdictHold`]).
//! - [`evidence`]: what the causes are judged on, and the evidence text.
//! - [`causes`]: the knowledge base, as data.

mod agreement;
pub mod causes;
mod cell;
mod evidence;
mod finding;
mod hold;
mod locus;
pub mod scope;
mod stat;

pub use causes::{CauseId, LikelyCause};
pub use finding::{Finding, FindingKey, FindingKind, RungCount, syns};
pub use locus::Locus;

pub use evidence::Evidence;
use finding::ratio;
pub use hold::VerdictHold;
pub use scope::{Grouping, ScopeKey};

use crate::model::{DetectorConfig, NodeFacts, PathKind, SeriesWindow, SynSchedule};
use cell::Cell;

/// Runs the detector over `series` (from one prober or many) with the facts
/// of whichever nodes reported them.
pub fn detect(series: &[SeriesWindow], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    detect_each(series.iter(), facts, cfg)
}

/// [`detect`] over series held in several places (the hub's per-prober
/// windows), without copying them into one slice.
pub fn detect_each<'a>(
    series: impl Iterator<Item = &'a SeriesWindow>,
    facts: &[NodeFacts],
    cfg: &DetectorConfig,
) -> Vec<Finding> {
    let by_node: std::collections::HashMap<&str, SynSchedule> = facts
        .iter()
        .map(|f| (f.node.as_str(), f.syn_schedule()))
        .collect();
    let cells: Vec<Cell> = series
        .map(|w| {
            let schedule = by_node
                .get(&*w.dims.source_node)
                .copied()
                .unwrap_or_else(SynSchedule::classic);
            cell::analyse(w, schedule, cfg)
        })
        .collect();
    // Probes and the node's own connections are judged apart: a scope
    // never blends the two, so each verdict confirms or contradicts the
    // other.
    let (passive, probed): (Vec<Cell>, Vec<Cell>) = cells
        .into_iter()
        .partition(|c| c.w.dims.source_kind.is_passive());
    let mut findings = judge(&probed, facts, cfg);
    let mut real = judge(&passive, facts, cfg);
    for f in real.iter_mut() {
        // Rules that build their scope by hand (name lookups, first
        // contact) learn here that it was passive.
        if !f.scope_key.passive {
            f.scope_key.passive = true;
            f.scope = format!("real connections on {}", f.scope);
        }
        agreement::passive_words(f, f.samples);
    }
    agreement::cross_check(&mut findings, &mut real, (&probed, &passive));
    findings.extend(real);
    // A place known before one that is not: a scope over paths of unknown
    // destination (a Service whose stalled probes named no backend yet)
    // says less than the same trouble on known paths.
    findings.sort_by_key(|f| f.path == Some(PathKind::Unknown));
    findings
}

fn judge(cells: &[Cell], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    let mut findings = finding::ladder::findings(cells, facts, cfg);
    findings.extend(finding::first_contact::findings(cells, cfg));
    findings.extend(finding::dns::findings(cells, facts, cfg));
    let pmtu = finding::pmtu::findings(cells, cfg);
    findings.extend(finding::failures::findings(cells, facts, &pmtu));
    findings.extend(pmtu);
    findings.extend(finding::server_time::findings(cells, cfg));
    findings.extend(finding::prober::findings(cells, facts, cfg));
    findings.extend(finding::cert::findings(cells, cfg));
    for f in &mut findings {
        locus::place(f);
    }
    findings
}

#[cfg(test)]
mod tests;
