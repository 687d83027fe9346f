//! The one-shot matrix report: a table for people, JSON for CI. The JSON field
//! names are a contract: extend, never rename.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::Finding;
use crate::model::NodeFacts;
use crate::model::{Dims, SourceKind};

/// One row: a (target, destination node, path) seen from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `target`, `source_node`, `source_kind`, `destination_node`, `path`.
    #[serde(flatten)]
    pub dims: Dims,
    pub url: String,
    pub samples: u64,
    pub failures: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub connect_p50_ms: Option<f64>,
    pub connect_max_ms: Option<f64>,
    /// The TLS handshake's end (`https://` only), like the connect's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_max_ms: Option<f64>,
    /// The served certificate's end of validity, RFC 3339 (`https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<String>,
    /// Sum of SYN retransmissions over the cell's probes (`TCP_INFO`).
    pub syn_retransmits: u64,
    /// Total latency, HdrHistogram V2 deflate, base64; empty in the hub's
    /// cluster matrix, whose percentiles come from the samples.
    pub histogram: String,
    /// Connect mark, same encoding (empty likewise).
    pub connect_histogram: String,
    /// The connect marks on a log scale: `[upper bound in ms, probes]` for
    /// each non-empty bucket, 20 buckets a decade from 10 µs (12 % wide):
    /// the cell's histogram as the page draws it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_log_hist: Vec<(f64, u64)>,
    /// Trace ids of up to three probes that lost SYNs or failed, else of
    /// the slowest: the cell's example traces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Probes still waiting in SYN_SENT, by SYNs lost so far (at least):
    /// when a one-shot run ended on its verdict (stopped, counted as
    /// cancelled), or when the hub last pulled the prober.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "rung_keys"
    )]
    pub waiting: BTreeMap<u32, u64>,
}

/// A map keyed by SYNs lost. JSON keys are strings, and a cell flattened
/// into `ClusterCell` reaches its map through serde's buffer, which hands
/// the key over as that string: parse it.
fn rung_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, u64>, D::Error> {
    let raw: BTreeMap<String, u64> = Deserialize::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.parse::<u32>()
                .map(|k| (k, v))
                .map_err(|_| serde::de::Error::custom(format!("\"{k}\" is not a count of SYNs")))
        })
        .collect()
}

pub(crate) fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

pub(crate) fn rfc3339(unix_s: Option<i64>) -> Option<String> {
    unix_s.map(|s| {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(s.max(0).unsigned_abs());
        humantime::format_rfc3339_seconds(at).to_string()
    })
}

/// Buckets a decade on the page's log time axis.
const LOG_BUCKETS_PER_DECADE: f64 = 20.0;
/// The lower bound of the first bucket, in ms.
const LOG_FLOOR_MS: f64 = 0.01;

/// Durations with counts, bucketed on a log scale: `[upper ms, count]`.
pub(crate) fn log_hist(values: impl Iterator<Item = (Duration, u64)>) -> Vec<(f64, u64)> {
    let mut buckets: BTreeMap<i32, u64> = BTreeMap::new();
    for (d, n) in values {
        let ms = (d.as_secs_f64() * 1e3).max(LOG_FLOOR_MS);
        let i = ((ms / LOG_FLOOR_MS).log10() * LOG_BUCKETS_PER_DECADE).floor() as i32;
        *buckets.entry(i).or_default() += n;
    }
    buckets
        .into_iter()
        .map(|(i, n)| {
            let upper = LOG_FLOOR_MS * 10f64.powf(f64::from(i + 1) / LOG_BUCKETS_PER_DECADE);
            ((upper * 1e3).round() / 1e3, n)
        })
        .collect()
}

/// Up to three trace ids: probes that lost SYNs or failed first, then the
/// slowest.
pub(crate) fn examples<'a>(samples: impl Iterator<Item = &'a crate::model::Sample>) -> Vec<String> {
    let mut traced: Vec<&crate::model::Sample> = samples.filter(|s| s.trace.is_some()).collect();
    traced.sort_by(|a, b| {
        let bad = |s: &crate::model::Sample| s.syn_retransmits > 0 || !s.outcome.is_ok();
        bad(b)
            .cmp(&bad(a))
            .then(b.phases.total.cmp(&a.phases.total))
    });
    traced
        .into_iter()
        .take(3)
        .filter_map(|s| s.trace.as_ref().map(|t| t.trace_id.clone()))
        .collect()
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn rank(v: &[Duration], q: f64) -> Option<Duration> {
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).copied()
}

impl Cell {
    /// A cell from raw samples, percentiles exact by nearest rank, without
    /// histograms: the hub's cells, hundreds of thousands at a time.
    pub fn from_samples(dims: Dims, url: &str, samples: &[crate::model::Sample]) -> Self {
        let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
        let (mut totals, mut connects, mut tls) = (Vec::new(), Vec::new(), Vec::new());
        let (mut failures, mut syn_retransmits) = (0, 0);
        for s in samples {
            *outcomes.entry(s.outcome.as_str().to_string()).or_default() += 1;
            if !s.outcome.is_ok() && s.outcome != crate::model::Outcome::Cancelled {
                failures += 1;
            }
            syn_retransmits += u64::from(s.syn_retransmits);
            if s.outcome.completed() {
                totals.push(s.phases.total);
            }
            connects.extend(s.phases.connect);
            tls.extend(s.phases.tls);
        }
        totals.sort_unstable();
        connects.sort_unstable();
        tls.sort_unstable();
        Self {
            dims,
            url: url.to_string(),
            samples: samples.len() as u64,
            failures,
            outcomes,
            p50_ms: ms(rank(&totals, 0.5)),
            p90_ms: ms(rank(&totals, 0.9)),
            p99_ms: ms(rank(&totals, 0.99)),
            max_ms: ms(totals.last().copied()),
            connect_p50_ms: ms(rank(&connects, 0.5)),
            connect_max_ms: ms(connects.last().copied()),
            tls_p50_ms: ms(rank(&tls, 0.5)),
            tls_max_ms: ms(tls.last().copied()),
            cert_not_after: None,
            syn_retransmits,
            histogram: String::new(),
            connect_histogram: String::new(),
            connect_log_hist: log_hist(
                samples
                    .iter()
                    .filter_map(|s| s.phases.connect)
                    .map(|d| (d, 1)),
            ),
            examples: examples(samples.iter()),
            waiting: BTreeMap::new(),
        }
    }
}

impl Cell {
    /// The same cell with the served certificate's end of validity (Unix
    /// seconds), which samples do not carry.
    pub fn with_cert_not_after(mut self, unix_s: Option<i64>) -> Self {
        self.cert_not_after = rfc3339(unix_s);
        self
    }
}

/// One cell of the cluster matrix, with the prober that measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterCell {
    #[serde(flatten)]
    pub cell: Cell,
    pub prober: String,
}

/// `/api/v1/matrix` (the hub's, and each prober's own rows), `cluster
/// matrix --format json`, and what the page draws.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterMatrix {
    /// When the verdict was reached; absent before the first round.
    pub generated_at: Option<String>,
    /// What the verdict rests on, in words.
    pub rests_on: String,
    /// Probers per state (`up`, `stale`, `unreachable`).
    pub probers: BTreeMap<String, usize>,
    pub cells: Vec<ClusterCell>,
    /// Every node's facts, one per node.
    pub facts: Vec<NodeFacts>,
    pub findings: Vec<Finding>,
    /// The window the cells cover (`10m`, `1m`, `cumulative`, `run`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub window: String,
    /// The windows this endpoint offers (`?window=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    /// Each source node's SYN rungs in seconds, from its kernel's schedule:
    /// where the page marks a cell's histogram.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rungs: BTreeMap<String, Vec<f64>>,
    /// A link to a trace by id, `{trace_id}` replaced (`[ui] trace_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<String>,
    /// Each node's labels as its prober reported them
    /// (`TAILPROBE_NODE_LABELS`): what the page groups and collapses by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl ClusterMatrix {
    /// No failed probe, no finding, and every prober heard.
    pub fn healthy(&self) -> bool {
        self.findings.is_empty()
            && self.cells.iter().all(|c| c.cell.failures == 0)
            && self.probers.get("up").copied().unwrap_or(0) == self.probers.values().sum::<usize>()
    }

    /// One-shot runs, one report per prober, as one matrix: what the page
    /// of `matrix --format html` and `lab demo --html` draws.
    pub fn of_reports(reports: &[MatrixReport], findings: &[Finding], facts: &[NodeFacts]) -> Self {
        let mut cells = Vec::new();
        for r in reports {
            cells.extend(r.cells.iter().map(|c| ClusterCell {
                cell: c.clone(),
                prober: format!("{} {}", r.source_node, r.source_kind.as_str()),
            }));
        }
        cells.sort_by(|a, b| a.cell.dims.cmp(&b.cell.dims));
        let generated_at = reports.iter().map(|r| r.finished_at.clone()).max();
        Self {
            generated_at,
            rests_on: format!("a one-shot run from {} probers", reports.len()),
            probers: [("up".to_string(), reports.len())].into(),
            cells,
            rungs: rungs_of(facts),
            facts: facts.to_vec(),
            findings: findings.to_vec(),
            window: "run".into(),
            windows: vec![],
            trace_url: None,
            node_labels: BTreeMap::new(),
        }
    }
}

/// Each node's SYN rungs in seconds, from its facts.
pub fn rungs_of(facts: &[NodeFacts]) -> BTreeMap<String, Vec<f64>> {
    facts
        .iter()
        .map(|f| (f.node.clone(), f.syn_schedule().rungs()))
        .collect()
}

/// A whole one-shot run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    pub source_node: String,
    pub source_kind: SourceKind,
    pub started_at: String,
    pub finished_at: String,
    pub samples_per_target: u32,
    pub cells: Vec<Cell>,
    pub findings: Vec<Finding>,
    /// The prober's node, as it saw itself.
    pub facts: Option<NodeFacts>,
    /// Set when the run ended as soon as its verdict was certain
    /// (`--until-verdict`), before every probe landed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_early: Option<EndedEarly>,
    /// Set when a signal (SIGINT, SIGTERM) stopped the run: the report is
    /// partial, its probes in flight were cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// A run that ended on its verdict: when, and what it stopped waiting for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedEarly {
    /// Seconds from the start to the verdict.
    pub after_s: f64,
    /// Probes still waiting in SYN_SENT then (in `cells[].waiting`).
    pub waiting: u64,
}

impl MatrixReport {
    /// Records that the run ended on its verdict `after` its start, judged
    /// on `windows`: each cell's probes then waiting, by SYNs lost so far.
    pub fn mark_early(&mut self, after: Duration, windows: &[crate::model::SeriesWindow]) {
        let mut waiting = 0;
        for w in windows {
            let Some(c) = self.cells.iter_mut().find(|c| c.dims == w.dims) else {
                continue;
            };
            for p in w.pending.iter().filter(|p| p.syn_retransmits > 0) {
                *c.waiting.entry(p.syn_retransmits).or_default() += 1;
                waiting += 1;
            }
        }
        self.ended_early = Some(EndedEarly {
            after_s: (after.as_secs_f64() * 10.0).round() / 10.0,
            waiting,
        });
    }

    /// No failed probe and no finding.
    pub fn healthy(&self) -> bool {
        self.findings.is_empty() && self.cells.iter().all(|c| c.failures == 0)
    }

    /// The process exit code for this report: 0 healthy, 1 otherwise.
    /// 0 healthy, 1 not, 128 + the signal when one stopped the run (130
    /// for SIGINT, as a shell reports it): a partial run is never healthy.
    pub fn exit_code(&self) -> u8 {
        match self.interrupted.as_deref() {
            Some("SIGINT") => 130,
            Some(_) => 143,
            None if self.healthy() => 0,
            None => 1,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The table for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tailprobe matrix from {} ({} network), {} probes per target, {} .. {}",
            self.source_node,
            self.source_kind.as_str(),
            self.samples_per_target,
            self.started_at,
            self.finished_at
        );
        if let Some(signal) = &self.interrupted {
            let _ = writeln!(
                out,
                "INTERRUPTED by {signal}: a partial run; the probes then in flight were cancelled and the verdict covers only what landed"
            );
        }
        if let Some(e) = &self.ended_early {
            let _ = writeln!(
                out,
                "ended on its verdict after {:.1} s: {} probes were still waiting in SYN_SENT (WAITING: probes, at least how many SYNs each had lost)",
                e.after_s, e.waiting
            );
        }
        let with_waiting = self.cells.iter().any(|c| !c.waiting.is_empty());
        let with_tls = self.cells.iter().any(|c| c.tls_max_ms.is_some());
        let mut header = vec![
            "TARGET",
            "DESTINATION",
            "PATH",
            "SAMPLES",
            "P50",
            "P90",
            "P99",
            "MAX",
            "FAILURES",
            "SYN-RTX",
        ];
        if with_tls {
            header.push("TLS-P50");
        }
        if with_waiting {
            header.push("WAITING");
        }
        // A one-family run reads as it always did.
        let with_family = self
            .cells
            .windows(2)
            .any(|w| w[0].dims.family != w[1].dims.family);
        if with_family {
            header.insert(3, "FAMILY");
        }
        let rows: Vec<Vec<String>> = self
            .cells
            .iter()
            .map(|c| {
                let mut row = vec![
                    c.dims.target.to_string(),
                    c.dims.destination_or_unknown().to_string(),
                    c.dims.path.as_str().into(),
                    c.samples.to_string(),
                    human_ms(c.p50_ms),
                    human_ms(c.p90_ms),
                    human_ms(c.p99_ms),
                    human_ms(c.max_ms),
                    c.failures.to_string(),
                    c.syn_retransmits.to_string(),
                ];
                if with_tls {
                    row.push(human_ms(c.tls_p50_ms));
                }
                if with_waiting {
                    row.push(waiting_text(&c.waiting));
                }
                if with_family {
                    row.insert(3, c.dims.family.as_str().into());
                }
                row
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[&str]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                // Names left-aligned, numbers right-aligned.
                if i < 3 + usize::from(with_family) {
                    let _ = write!(l, "{c:<w$}  ", w = widths[i]);
                } else {
                    let _ = write!(l, "{c:>w$}  ", w = widths[i]);
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&header));
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            let _ = writeln!(out, "{}", line(&cells));
        }
        if self.cells.is_empty() {
            let _ = writeln!(
                out,
                "(no targets: add [[target]] tables to the configuration)"
            );
        }
        out += &render_findings(&self.findings);
        out
    }
}

/// The detector's verdict for people: each finding with its evidence, the
/// likeliest cause with its remediation, and the other candidates.
pub fn render_findings(findings: &[Finding]) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        let _ = writeln!(out, "\nfindings: none");
        return out;
    }
    let _ = writeln!(out, "\nfindings:");
    for (i, f) in findings.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, f.headline());
        let _ = writeln!(out, "   confidence {:.2}", f.confidence);
        if !f.locus_why.is_empty() {
            let _ = writeln!(out, "   where: {} — {}", f.locus, f.locus_why);
        }
        for e in &f.evidence {
            let _ = writeln!(out, "   - {e}");
        }
        if let Some(c) = f.likely_causes.first() {
            let _ = writeln!(
                out,
                "   likely cause: {} (evidence score {:.2})",
                c.title, c.score
            );
            let _ = writeln!(out, "     why: {}", c.why);
            if !c.present.is_empty() {
                let _ = writeln!(out, "     present: {}", c.present.join("; "));
            }
            if !c.missing.is_empty() {
                let _ = writeln!(out, "     missing: {}", c.missing.join("; "));
            }
            if !c.unknown.is_empty() {
                let _ = writeln!(out, "     unknown: {}", c.unknown.join("; "));
            }
            let _ = writeln!(out, "     remediation:");
            for r in &c.remediation {
                let _ = writeln!(out, "       - {r}");
            }
        }
        let others: Vec<String> = f
            .likely_causes
            .iter()
            .skip(1)
            .map(|c| format!("{} ({:.2})", c.id, c.score))
            .collect();
        if !others.is_empty() {
            let _ = writeln!(out, "   other candidates: {}", others.join(", "));
        }
    }
    out
}

/// `8 >=2`: probes waiting and the fewest SYNs any had lost; `-` for none.
fn waiting_text(w: &BTreeMap<u32, u64>) -> String {
    match w.keys().next() {
        Some(k) => format!("{} >={k}", w.values().sum::<u64>()),
        None => "-".into(),
    }
}

/// `0.68ms`, `63.42s`, `-` for nothing.
pub fn human_ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(ms) if ms >= 1000.0 => format!("{:.2}s", ms / 1000.0),
        Some(ms) if ms >= 10.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{ms:.2}ms"),
    }
}

#[cfg(test)]
mod tests;
