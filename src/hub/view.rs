//! The cluster view: every prober's window merged (every sample kept, so
//! the merge is exact) and judged as one, with every node's facts: scopes
//! span nodes, and one node's receive-side counters are evidence for
//! another's sends.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::pull::ProberState;
use crate::model::{DetectorConfig, NodeFacts, SourceKind};
use crate::wire::report::Cell;
use crate::wire::window::Held;

pub use crate::wire::report::{ClusterCell, ClusterMatrix};

/// "judged on 5 of 6 probers; 1 stale (node3 pod), 0 unreachable".
pub fn rests_on(counts: &BTreeMap<ProberState, usize>, stale: &[String]) -> String {
    let n = |s| counts.get(&s).copied().unwrap_or(0);
    let all: usize = counts.values().sum();
    let judged = n(ProberState::Up) + n(ProberState::Stale);
    let mut out = format!(
        "judged on {judged} of {all} probers; {} stale",
        n(ProberState::Stale)
    );
    if !stale.is_empty() {
        out += &format!(" (last data kept: {})", stale.join(", "));
    }
    out += &format!(", {} unreachable", n(ProberState::Unreachable));
    out
}

/// Merges the documents and judges them together. The cells' percentiles
/// are exact over the window's samples; their histograms are left out (a
/// cluster has hundreds of thousands of cells).
pub fn judge(
    docs: &[(String, Arc<Held>)],
    counts: &BTreeMap<ProberState, usize>,
    stale: &[String],
    cfg: &DetectorConfig,
    now: std::time::SystemTime,
) -> ClusterMatrix {
    let mut cells = Vec::new();
    let mut node_labels = BTreeMap::new();
    // One node's facts: its host-network prober's, else any.
    let mut facts: BTreeMap<String, (SourceKind, NodeFacts)> = BTreeMap::new();
    for (url, doc) in docs {
        cells.extend(doc.series.iter().map(|s| {
            let mut cell = Cell::from_samples(s.window.dims.clone(), &s.url, &s.window.samples)
                .with_cert_not_after(s.window.cert_not_after);
            // Stalls in progress, as the prober last reported them.
            for p in s.window.pending.iter().filter(|p| p.syn_retransmits > 0) {
                *cell.waiting.entry(p.syn_retransmits).or_default() += 1;
            }
            ClusterCell {
                cell,
                prober: url.clone(),
            }
        }));
        if !doc.labels.is_empty() {
            node_labels.insert(doc.source_node.clone(), doc.labels.clone());
        }
        if let Some(f) = &doc.facts {
            let better = facts
                .get(&f.node)
                .is_none_or(|(kind, _)| *kind != SourceKind::Host);
            if better {
                facts.insert(f.node.clone(), (doc.source_kind, f.clone()));
            }
        }
    }
    // The pod probers' own counters: where their echo targets listen, the
    // backend's end of a pair.
    for (_, doc) in docs {
        if let Some(f) = doc
            .facts
            .as_ref()
            .filter(|_| doc.source_kind == SourceKind::Pod)
            && let Some((_, node)) = facts.get_mut(&f.node)
        {
            node.pod_rises = f.pod_rises.clone();
        }
    }
    cells.sort_by(|a, b| a.cell.dims.cmp(&b.cell.dims));
    let facts: Vec<NodeFacts> = facts.into_values().map(|(_, f)| f).collect();
    let windows = docs
        .iter()
        .flat_map(|(_, d)| d.series.iter().map(|s| &s.window));
    let findings = crate::detect::detect_each(windows, &facts, cfg);
    ClusterMatrix {
        generated_at: Some(humantime::format_rfc3339_millis(now).to_string()),
        rests_on: rests_on(counts, stale),
        probers: counts
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), *n))
            .collect(),
        cells,
        rungs: crate::wire::report::rungs_of(&facts),
        facts,
        findings,
        node_labels,
        ..ClusterMatrix::default()
    }
}
