//! Alerts: findings and SLO burn-rate alerts as events with a lifecycle.
//! Raised once, re-sent at an interval while active, resolved once: never
//! one per probe. The state machine is pure (time is passed in); the
//! daemon sends what it returns over OTLP as log records.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::detect::{Finding, FindingKey};
pub use crate::model::Severity;
use crate::model::TraceRef;
use crate::slo::{AlertState, BurnAlert};

/// What makes two evaluations the same alert: typed, never prose, so a
/// scope that widens or a node that joins changes an alert's attributes,
/// not its identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKey {
    Finding(FindingKey),
    Slo { slo: String, severity: String },
}

impl AlertKey {
    /// One string for a log field or label value.
    pub fn id(&self) -> String {
        match self {
            AlertKey::Finding(k) => format!("finding/{}/{}", k.kind, k.scope.id()),
            AlertKey::Slo { slo, severity } => format!("slo/{slo}/{severity}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Raised,
    /// A provisional alert became final: the same alert, updated in place.
    Updated,
    Active,
    Resolved,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Raised => "raised",
            Phase::Updated => "updated",
            Phase::Active => "active",
            Phase::Resolved => "resolved",
        }
    }
}

/// One condition as the evaluator sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What makes two evaluations the same alert.
    pub key: AlertKey,
    pub severity: Severity,
    /// One line a person can read.
    pub summary: String,
    pub attributes: Vec<(&'static str, String)>,
    pub examples: Vec<TraceRef>,
    /// Raised on evidence still coming in (probes still waiting): sent as
    /// "in progress" and updated once, in place, when it becomes final.
    pub provisional: bool,
}

/// An alert to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub phase: Phase,
    pub severity: Severity,
    pub body: String,
    pub condition: Condition,
}

/// How long a provisional condition must hold, under the same identity,
/// before it is raised: the first stalls of a fault arrive path by path,
/// and the scope they make settles within a second or two of probes. An
/// alert raised on the first path alone would be resolved and raised again
/// under the wider scope.
pub const PROVISIONAL_SETTLE: Duration = Duration::from_secs(2);

/// Remembers what is active and when it was last sent.
#[derive(Debug)]
pub struct Alerter {
    resend: Duration,
    active: BTreeMap<AlertKey, (Instant, Condition)>,
    /// New conditions not raised yet, and since when they hold.
    settling: BTreeMap<AlertKey, Instant>,
    /// How long every new condition must hold before it is raised
    /// (provisional ones at least [`PROVISIONAL_SETTLE`]).
    settle: Duration,
}

impl Alerter {
    pub fn new(resend: Duration) -> Self {
        Self {
            resend,
            active: BTreeMap::new(),
            settling: BTreeMap::new(),
            settle: Duration::ZERO,
        }
    }

    /// Every new condition, final ones too, must hold for `settle` before
    /// it is raised: for an evaluator that runs as evidence arrives (the
    /// daemon's stall-driven judge), where a scope widens between runs a
    /// second apart.
    pub fn settle_all(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Whether a provisional condition waits to settle: the caller should
    /// evaluate again within [`PROVISIONAL_SETTLE`].
    pub fn settling(&self) -> bool {
        !self.settling.is_empty()
    }

    /// Compares what holds `now` with what was active; returns what to send.
    pub fn update(&mut self, now: Instant, current: Vec<Condition>) -> Vec<Alert> {
        let mut out = Vec::new();
        // A new condition is raised once it has held for its settle time;
        // one that is gone before then is forgotten.
        self.settling
            .retain(|k, _| current.iter().any(|c| &c.key == k));
        let current: Vec<Condition> = current
            .into_iter()
            .filter(|c| {
                let need = if c.provisional {
                    PROVISIONAL_SETTLE.max(self.settle)
                } else {
                    self.settle
                };
                if need.is_zero() || self.active.contains_key(&c.key) {
                    self.settling.remove(&c.key);
                    return true;
                }
                let since = *self.settling.entry(c.key.clone()).or_insert(now);
                let settled = now.duration_since(since) >= need;
                if settled {
                    self.settling.remove(&c.key);
                }
                settled
            })
            .collect();
        let keys: BTreeSet<&AlertKey> = current.iter().map(|c| &c.key).collect();
        let gone: Vec<AlertKey> = self
            .active
            .keys()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        for k in gone {
            let (_, c) = self.active.remove(&k).expect("the key is active");
            out.push(Alert {
                phase: Phase::Resolved,
                severity: Severity::Info,
                body: body(Phase::Resolved, &c),
                condition: c,
            });
        }
        for c in current {
            let due = match self.active.get(&c.key) {
                None => Some(Phase::Raised),
                Some((_, was)) if was.provisional && !c.provisional => Some(Phase::Updated),
                Some((sent, _)) if now.duration_since(*sent) >= self.resend => Some(Phase::Active),
                Some(_) => None,
            };
            match due {
                Some(phase) => {
                    out.push(Alert {
                        phase,
                        severity: c.severity,
                        body: body(phase, &c),
                        condition: c.clone(),
                    });
                    self.active.insert(c.key.clone(), (now, c));
                }
                None => {
                    // Keep the newest details, not the send time.
                    if let Some(entry) = self.active.get_mut(&c.key) {
                        entry.1 = c;
                    }
                }
            }
        }
        out
    }
}

/// An alert record's body: its phase, in progress or not, and the summary.
fn body(phase: Phase, c: &Condition) -> String {
    match phase {
        Phase::Raised if c.provisional => format!("Raised, in progress: {}", c.summary),
        Phase::Raised => format!("Raised: {}", c.summary),
        Phase::Updated => format!("Confirmed: {}", c.summary),
        Phase::Active => format!("Still active: {}", c.summary),
        Phase::Resolved => format!("Resolved: {}", c.summary),
    }
}

/// Every finding raised at once, provisional ones too (a run that ended
/// on its verdict has nothing to settle): what a one-shot run (matrix, lab
/// matrix, lab demo) sends at its end, since it has no later evaluation to
/// resolve against.
pub fn raised(findings: &[Finding]) -> Vec<Alert> {
    findings
        .iter()
        .map(|f| {
            let c = finding(f, Source::Prober);
            Alert {
                phase: Phase::Raised,
                severity: c.severity,
                body: body(Phase::Raised, &c),
                condition: c,
            }
        })
        .collect()
}

/// Who judged: one prober over its own probes, or the hub over every
/// prober's (`tailprobe.alert.source`). A finding can be raised by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Prober,
    Hub,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Prober => "prober",
            Source::Hub => "hub",
        }
    }
}

/// A finding as a condition, with the finding's severity.
pub fn finding(f: &Finding, source: Source) -> Condition {
    let rungs: Vec<String> = f
        .rungs
        .iter()
        .map(|r| format!("{} s x{}", r.seconds, r.count))
        .collect();
    let mut attributes = vec![
        ("tailprobe.alert.kind", "finding".to_string()),
        ("tailprobe.alert.source", source.as_str().to_string()),
        ("tailprobe.finding.kind", f.kind.as_str().to_string()),
        ("tailprobe.finding.scope", f.scope.clone()),
        ("tailprobe.finding.scope_key", f.scope_key.id()),
        ("tailprobe.finding.locus", f.locus.as_str().to_string()),
        (
            "tailprobe.finding.source_nodes",
            f.source_nodes().to_string(),
        ),
        ("tailprobe.finding.rungs", rungs.join(", ")),
        ("tailprobe.finding.share", f.share.to_string()),
        ("tailprobe.finding.samples", f.samples.to_string()),
        ("tailprobe.finding.confidence", f.confidence.to_string()),
        ("tailprobe.finding.evidence", f.evidence.join("\n")),
        (
            "tailprobe.finding.status",
            if f.provisional {
                "in-progress"
            } else {
                "final"
            }
            .to_string(),
        ),
    ];
    if let Some(c) = f.likely_causes.first() {
        attributes.push(("tailprobe.cause.id", c.id.as_str().to_string()));
        attributes.push(("tailprobe.cause.title", c.title.clone()));
        attributes.push(("tailprobe.remediation", c.remediation.join("\n")));
    }
    if !f.examples.is_empty() {
        let ids: Vec<&str> = f.examples.iter().map(|t| t.trace_id.as_str()).collect();
        attributes.push(("tailprobe.example_trace_ids", ids.join(",")));
    }
    Condition {
        key: AlertKey::Finding(f.key()),
        severity: f.severity,
        summary: f.headline(),
        attributes,
        examples: f.examples.clone(),
        provisional: f.provisional,
    }
}

/// A firing SLO alert as a condition: ERROR for pages, WARN otherwise.
pub fn slo(s: &AlertState, a: &BurnAlert) -> Condition {
    Condition {
        key: AlertKey::Slo {
            slo: s.slo.clone(),
            severity: s.severity.clone(),
        },
        severity: if s.severity == "page" {
            Severity::Error
        } else {
            Severity::Warn
        },
        summary: s.describe(a),
        attributes: vec![
            ("tailprobe.alert.kind", "slo".to_string()),
            ("tailprobe.slo.name", s.slo.clone()),
            ("tailprobe.slo.severity", s.severity.clone()),
            ("tailprobe.slo.long_burn", s.long_burn.to_string()),
            ("tailprobe.slo.short_burn", s.short_burn.to_string()),
            ("tailprobe.slo.factor", s.factor.to_string()),
        ],
        examples: vec![],
        provisional: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(key: &str) -> Condition {
        Condition {
            key: AlertKey::Slo {
                slo: key.into(),
                severity: "page".into(),
            },
            severity: Severity::Error,
            summary: format!("{key} happens"),
            attributes: vec![],
            examples: vec![],
            provisional: false,
        }
    }

    #[test]
    fn raised_once_resent_while_active_resolved_once() {
        let mut a = Alerter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let sent = a.update(t0, vec![cond("x")]);
        assert_eq!(
            (sent.len(), sent[0].phase, sent[0].body.as_str()),
            (1, Phase::Raised, "Raised: x happens")
        );
        assert!(
            a.update(t0 + Duration::from_secs(30), vec![cond("x")])
                .is_empty(),
            "deduplicated"
        );
        let again = a.update(t0 + Duration::from_secs(61), vec![cond("x")]);
        assert_eq!(again[0].phase, Phase::Active);
        assert!(
            a.update(t0 + Duration::from_secs(62), vec![cond("x")])
                .is_empty()
        );
        let gone = a.update(t0 + Duration::from_secs(63), vec![]);
        assert_eq!(
            (gone[0].phase, gone[0].severity),
            (Phase::Resolved, Severity::Info)
        );
        assert!(
            a.update(t0 + Duration::from_secs(64), vec![]).is_empty(),
            "resolved once"
        );
    }

    #[test]
    fn a_changed_key_resolves_the_old_and_raises_the_new() {
        let mut a = Alerter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        a.update(t0, vec![cond("x")]);
        let sent = a.update(t0, vec![cond("y")]);
        let phases: Vec<Phase> = sent.iter().map(|s| s.phase).collect();
        assert_eq!(phases, [Phase::Resolved, Phase::Raised]);
    }

    #[test]
    fn a_provisional_alert_is_updated_once_when_final_never_raised_again() {
        let mut a = Alerter::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let early = Condition {
            severity: Severity::Warn,
            provisional: true,
            ..cond("x")
        };
        assert!(a.update(t0, vec![early.clone()]).is_empty(), "settling");
        assert!(a.settling());
        let t1 = t0 + PROVISIONAL_SETTLE;
        let sent = a.update(t1, vec![early.clone()]);
        assert_eq!(
            (sent.len(), sent[0].phase, sent[0].severity),
            (1, Phase::Raised, Severity::Warn)
        );
        assert!(!a.settling());
        assert!(sent[0].body.starts_with("Raised, in progress: "));
        assert!(
            a.update(t1 + Duration::from_secs(1), vec![early])
                .is_empty()
        );
        let fin = a.update(t0 + Duration::from_secs(60), vec![cond("x")]);
        assert_eq!(
            (fin.len(), fin[0].phase, fin[0].severity),
            (1, Phase::Updated, Severity::Error)
        );
        assert_eq!(fin[0].body, "Confirmed: x happens");
        assert!(
            a.update(t0 + Duration::from_secs(61), vec![cond("x")])
                .is_empty(),
            "updated once"
        );
    }

    #[test]
    fn a_provisional_scope_that_widens_before_it_settles_is_raised_once() {
        let mut a = Alerter::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let early = |k: &str| Condition {
            provisional: true,
            ..cond(k)
        };
        // The first path's stalls, then the scope they widen into.
        assert!(a.update(t0, vec![early("cell")]).is_empty());
        let t1 = t0 + Duration::from_secs(1);
        assert!(a.update(t1, vec![early("wide")]).is_empty());
        let sent = a.update(t1 + PROVISIONAL_SETTLE, vec![early("wide")]);
        let keys: Vec<String> = sent.iter().map(|s| s.condition.key.id()).collect();
        assert_eq!(
            keys,
            ["slo/wide/page"],
            "never raised, never resolved: the cell"
        );
        // A final condition is raised at once.
        let sent = a.update(t1 + PROVISIONAL_SETTLE, vec![early("wide"), cond("y")]);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].phase, Phase::Raised);
    }

    #[test]
    fn settling_every_new_condition_holds_final_ones_too() {
        let mut a = Alerter::new(Duration::from_secs(600)).settle_all(Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(a.update(t0, vec![cond("cell")]).is_empty());
        assert!(a.settling());
        let t1 = t0 + Duration::from_secs(1);
        assert!(a.update(t1, vec![cond("wide")]).is_empty());
        assert!(
            a.update(t1 + Duration::from_millis(1_999), vec![cond("wide")])
                .is_empty()
        );
        let sent = a.update(t1 + Duration::from_secs(2), vec![cond("wide")]);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].condition.key.id(), "slo/wide/page");
        // Once raised, it is never held again; gone, it resolves at once.
        let gone = a.update(t1 + Duration::from_secs(3), vec![]);
        assert_eq!(gone[0].phase, Phase::Resolved);
    }

    #[test]
    fn one_shot_runs_raise_every_finding_once() {
        use crate::detect::{FindingKind, Grouping, ScopeKey};
        let f = |g| Finding::new(FindingKind::ProbeFailures, ScopeKey::bare(g), 1, 1);
        let sent = raised(&[f(Grouping::Cell), f(Grouping::Source)]);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|a| a.phase == Phase::Raised));
    }
}
