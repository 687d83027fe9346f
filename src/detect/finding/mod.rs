//! A finding (one verdict, its scope, rungs, evidence and likely causes)
//! and the rules that raise each kind, one file per kind.

pub mod cert;
pub mod dns;
pub mod failures;
pub mod first_contact;
mod kind;
pub mod ladder;
pub mod pmtu;
pub mod prober;
pub mod server_time;

use serde::{Deserialize, Serialize};

pub use kind::FindingKind;

use super::Locus;
use super::causes::LikelyCause;
use super::cell::Cell;
use super::scope::{Grouping, ScopeKey};
use crate::model::{PathKind, Sample, Severity, SourceKind, TraceRef};

/// What makes two evaluations the same finding: its kind and its scope's
/// stable identity, never its prose or counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FindingKey {
    pub kind: FindingKind,
    pub scope: ScopeKey,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The scope in words, such as "every cross-node path from the host
    /// network of 3 nodes": rendered from `scope_key`, for people.
    pub scope: String,
    /// The scope's identity: what alerts and metric labels key on.
    pub scope_key: ScopeKey,
    pub severity: Severity,
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
    /// Probes still waiting in SYN_SENT, by the SYNs they have lost so far
    /// (`retransmits` is "at least", `seconds` the rung they are past).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<RungCount>,
    /// The verdict rests on probes still waiting: raised early, before
    /// they land on their rung or give up, and upgraded in place (same
    /// identity) when they do.
    #[serde(default)]
    pub provisional: bool,
    /// Probes on a rung (or failed) over probes in scope.
    pub share: f64,
    pub samples: u64,
    pub confidence: f64,
    /// Where the trouble lies (network, backend, DNS, the prober itself),
    /// and why the detector places it there.
    #[serde(default)]
    pub locus: Locus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locus_why: String,
    pub evidence: Vec<String>,
    pub likely_causes: Vec<LikelyCause>,
    /// Exported traces of probes that show the problem (up to three).
    #[serde(default)]
    pub examples: Vec<TraceRef>,
}

impl Finding {
    /// A finding of `kind` over `scope_key` with `sources` source nodes and
    /// `paths` paths, its words rendered; the rest is left for the caller.
    pub fn new(kind: FindingKind, scope_key: ScopeKey, sources: usize, paths: usize) -> Self {
        Self {
            kind,
            scope: scope_key.describe(kind, sources, paths),
            scope_key,
            severity: Severity::Warn,
            source_node: None,
            source_kind: None,
            destination_node: None,
            path: None,
            targets: vec![],
            pairs: vec![],
            rungs: vec![],
            waiting: vec![],
            provisional: false,
            share: 0.0,
            samples: 0,
            confidence: 0.0,
            locus: Locus::Unknown,
            locus_why: String::new(),
            evidence: vec![],
            likely_causes: vec![],
            examples: vec![],
        }
    }

    /// A finding on one cell: its source, destination, path, target and pair.
    fn of_cell(kind: FindingKind, c: &Cell) -> Self {
        let d = &c.w.dims;
        Self {
            source_node: Some(d.source_node.to_string()),
            source_kind: Some(d.source_kind),
            destination_node: d.destination_node.as_deref().map(str::to_string),
            path: Some(d.path),
            targets: vec![d.target.to_string()],
            pairs: vec![c.pair()],
            ..Self::new(kind, ScopeKey::of(Grouping::Cell, d), 1, 1)
        }
    }

    /// Sets the confidence, and the severity it implies: ERROR when the
    /// detector is confident and the verdict final, WARN while provisional.
    fn with_confidence(mut self, confidence: f64) -> Self {
        self.confidence = (confidence * 100.0).round() / 100.0;
        self.severity = if self.confidence >= 0.9 && !self.provisional {
            Severity::Error
        } else {
            Severity::Warn
        };
        self
    }

    /// The identity alerts and metric labels key on.
    pub fn key(&self) -> FindingKey {
        FindingKey {
            kind: self.kind,
            scope: self.scope_key.clone(),
        }
    }

    /// Source nodes in scope.
    pub fn source_nodes(&self) -> usize {
        let mut s: Vec<&str> = self.pairs.iter().map(|(s, _)| s.as_str()).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    }

    /// One line a person can read.
    pub fn headline(&self) -> String {
        let rungs: Vec<String> = self
            .rungs
            .iter()
            .map(|r| {
                format!(
                    "{} s ({} lost) x{}",
                    r.seconds,
                    syns(u64::from(r.retransmits)),
                    r.count
                )
            })
            .collect();
        let cause = self
            .likely_causes
            .first()
            .map(|c| format!("; likely: {}", c.title))
            .unwrap_or_default();
        let waiting: u64 = self.waiting.iter().map(|w| w.count).sum();
        let in_progress = match self.waiting.iter().map(|w| w.retransmits).min() {
            Some(k) if self.provisional => format!(
                " (in progress: {waiting} still waiting after losing at least {})",
                syns(u64::from(k))
            ),
            _ => String::new(),
        };
        format!(
            "{}: {} — {:.0}% of {} probes{}{}{}",
            self.kind,
            self.scope,
            self.share * 100.0,
            self.samples,
            if rungs.is_empty() {
                String::new()
            } else {
                format!(" on rungs {}", rungs.join(", "))
            },
            in_progress,
            cause
        )
    }
}

/// "1 SYN", "6 SYNs".
pub fn syns(n: u64) -> String {
    if n == 1 {
        "1 SYN".into()
    } else {
        format!("{n} SYNs")
    }
}

/// `x / n`, 0 when `n` is 0.
pub(super) fn ratio(x: u64, n: u64) -> f64 {
    x as f64 / n.max(1) as f64
}

/// Three decimals, for shares people read.
pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Up to three exported traces of probes in `cells` that `show` the problem.
pub(super) fn examples(cells: &[&Cell], show: impl Fn(&Sample) -> bool) -> Vec<TraceRef> {
    cells
        .iter()
        .flat_map(|c| c.w.samples.iter())
        .filter(|p| show(p))
        .filter_map(|p| p.trace.clone())
        .take(3)
        .collect()
}
