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
//! - `finding/`: one file per finding kind; `ladder` widens the scope from
//!   the cell to the broadest group whose every cell is on the ladder.
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

use serde::{Deserialize, Serialize};

pub use causes::{CauseId, LikelyCause};
pub use evidence::Evidence;
pub use hold::VerdictHold;
pub use scope::{Grouping, ScopeKey};

use crate::model::{
    DetectorConfig, NodeFacts, PathKind, Sample, SeriesWindow, Severity, SourceKind, SynSchedule,
    TraceRef,
};
use cell::Cell;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Connects sit on the rungs of the source kernel's SYN schedule.
    SynRetransmitLadder,
    /// Name lookups sit on the resolver's 5 s / 10 s timeouts.
    DnsTimeoutLadder,
    /// Large responses stall where small ones on the same path pass.
    PmtuBlackhole,
    /// Probes failed in ways no other finding explains.
    ProbeFailures,
    /// Only the first connections to new peers were slow.
    FirstContactDelay,
    /// Answers came late after the connection was up: the backend's time.
    ServerTimeTail,
    /// The prober's own timers were late, or its cgroup throttled it.
    ProberStarved,
}

impl FindingKind {
    pub const ALL: [FindingKind; 7] = [
        FindingKind::SynRetransmitLadder,
        FindingKind::DnsTimeoutLadder,
        FindingKind::PmtuBlackhole,
        FindingKind::ProbeFailures,
        FindingKind::FirstContactDelay,
        FindingKind::ServerTimeTail,
        FindingKind::ProberStarved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::SynRetransmitLadder => "syn-retransmit-ladder",
            FindingKind::DnsTimeoutLadder => "dns-timeout-ladder",
            FindingKind::PmtuBlackhole => "pmtu-blackhole",
            FindingKind::ProbeFailures => "probe-failures",
            FindingKind::FirstContactDelay => "first-contact-delay",
            FindingKind::ServerTimeTail => "server-time-tail",
            FindingKind::ProberStarved => "prober-starved",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FindingKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a finding kind"))
    }
}

/// Where a finding puts the time or the trouble: the question "is it the
/// network?", answered. Rendered from the finding's kind and its likeliest
/// cause; never part of its identity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum Locus {
    /// The handshake: SYNs lost or delayed before a connection existed.
    Network,
    /// After the connection was up (first byte, body), or SYNs dropped by
    /// the destination itself (its accept queue).
    Backend,
    /// The name lookup.
    Dns,
    /// The probing node itself: its timers late, its CPU throttled.
    Prober,
    #[default]
    Unknown,
}

impl Locus {
    pub fn as_str(self) -> &'static str {
        match self {
            Locus::Network => "network",
            Locus::Backend => "backend",
            Locus::Dns => "dns",
            Locus::Prober => "prober",
            Locus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Locus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
fn ratio(x: u64, n: u64) -> f64 {
    x as f64 / n.max(1) as f64
}

/// Three decimals, for shares people read.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Up to three exported traces of probes in `cells` that `show` the problem.
fn examples(cells: &[&Cell], show: impl Fn(&Sample) -> bool) -> Vec<TraceRef> {
    cells
        .iter()
        .flat_map(|c| c.w.samples.iter())
        .filter(|p| show(p))
        .filter_map(|p| p.trace.clone())
        .take(3)
        .collect()
}

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
    for f in &mut findings {
        locus::place(f);
    }
    findings
}

#[cfg(test)]
mod tests;
