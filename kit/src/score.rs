//! The detector judged on the cases: per kind, and per node's own view.

use super::*;

/// Per finding kind: (true positives, false positives, false negatives).
pub fn score(cases: &[Case]) -> BTreeMap<&'static str, (u32, u32, u32)> {
    let kinds = KINDS;
    let mut s: BTreeMap<&'static str, (u32, u32, u32)> =
        kinds.iter().map(|k| (*k, (0, 0, 0))).collect();
    for c in cases {
        let found: BTreeSet<String> =
            tailprobe::detect::detect(&c.series, &c.facts, &Default::default())
                .into_iter()
                .map(|f| f.kind.as_str().to_string())
                .collect();
        for k in kinds {
            let (want, got) = (c.expected.contains(k), found.contains(k));
            let e = s.get_mut(k).unwrap();
            match (want, got) {
                (true, true) => e.0 += 1,
                (false, true) => e.1 += 1,
                (true, false) => e.2 += 1,
                (false, false) => {}
            }
        }
    }
    s
}

/// One prober's view of a case: the series `node` recorded from the host
/// network and that node's facts alone, as `tailprobe run` or `matrix`
/// there judges them.
pub fn view(series: &[Series], facts: &[NodeFacts], node: &str) -> (Vec<Series>, Vec<NodeFacts>) {
    (
        series
            .iter()
            .filter(|s| &*s.dims.source_node == node && s.dims.source_kind == SourceKind::Host)
            .cloned()
            .collect(),
        facts.iter().filter(|f| f.node == node).cloned().collect(),
    )
}

/// `target`'s series merged per source with their destinations unknown:
/// what a prober records when the Service's backends are plain web servers
/// that do not say which node answered. Other series pass unchanged.
pub fn blind(series: Vec<Series>, target: &str) -> Vec<Series> {
    let (hit, mut out): (Vec<Series>, Vec<Series>) =
        series.into_iter().partition(|s| &*s.dims.target == target);
    let mut merged: BTreeMap<(String, SourceKind), Series> = BTreeMap::new();
    for s in hit {
        let key = (s.dims.source_node.to_string(), s.dims.source_kind);
        let m = merged.entry(key).or_insert_with(|| Series {
            cert_not_after: None,
            dims: Dims {
                destination_node: None,
                path: PathKind::Unknown,
                ..s.dims.clone()
            },
            samples: Vec::new(),
            body_bytes: 0,
            pending: Vec::new(),
            dns_parallel: false,
        });
        m.body_bytes = m.body_bytes.max(s.body_bytes);
        m.samples.extend(s.samples);
    }
    out.extend(merged.into_values());
    out
}

/// One scenario judged from each node's view.
#[derive(Debug, Default, Clone)]
pub struct ViewScore {
    /// Views that found a ladder where the fault hit, found one where it
    /// did not, missed one.
    pub tp: u32,
    pub fp: u32,
    pub missed: u32,
    /// (views whose every ladder ranks the labelled cause first, views that
    /// found a ladder where the fault hit)
    pub top1: (u32, u32),
    /// The blind view keeps the cause with its path check unknown, and
    /// ranks it first.
    pub blind: Option<(bool, bool)>,
    /// The smallest lead of the labelled cause's score over the next cause,
    /// over the views that found a ladder where the fault hit.
    pub margin: Option<f64>,
    pub wrong: Vec<String>,
}

impl ViewScore {
    pub fn precision(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fp).max(1))
    }
    pub fn recall(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.missed).max(1))
    }
    pub fn top1(&self) -> f64 {
        f64::from(self.top1.0) / f64::from(self.top1.1.max(1))
    }
}

/// Every case with a view label, judged from each source node's view.
pub fn views(cases: &[Case]) -> BTreeMap<String, ViewScore> {
    let cfg = Default::default();
    let ladders = |series: &[Series], facts: &[NodeFacts]| {
        tailprobe::detect::detect(series, facts, &cfg)
            .into_iter()
            .filter(|f| f.kind == tailprobe::detect::FindingKind::SynRetransmitLadder)
            .collect::<Vec<_>>()
    };
    let mut out = BTreeMap::new();
    for c in cases {
        let Some(l) = &c.view else { continue };
        let mut score = ViewScore::default();
        let nodes: BTreeSet<String> = c
            .series
            .iter()
            .map(|s| s.dims.source_node.to_string())
            .collect();
        for node in &nodes {
            let (series, facts) = view(&c.series, &c.facts, node);
            let found = ladders(&series, &facts);
            let hit = l.hit_sources.contains(node);
            match (hit, found.is_empty()) {
                (true, false) => score.tp += 1,
                (true, true) => {
                    score.missed += 1;
                    score.wrong.push(format!("{node}: no ladder"));
                }
                (false, false) => {
                    score.fp += 1;
                    score.wrong.push(format!("{node}: {}", found[0].headline()));
                }
                (false, true) => {}
            }
            if hit && !found.is_empty() {
                score.top1.1 += 1;
                let firsts: Vec<&str> = found
                    .iter()
                    .map(|f| f.likely_causes.first().map_or("none", |c| c.id.as_str()))
                    .collect();
                for f in &found {
                    let right = f.likely_causes.iter().find(|x| x.id.as_str() == l.cause);
                    let other = f
                        .likely_causes
                        .iter()
                        .filter(|x| x.id.as_str() != l.cause)
                        .map(|x| x.score)
                        .fold(0.0, f64::max);
                    let lead = right.map_or(-1.0, |x| x.score) - other;
                    score.margin = Some(score.margin.map_or(lead, |m: f64| m.min(lead)));
                }
                if firsts.iter().all(|f| *f == l.cause) {
                    score.top1.0 += 1;
                } else {
                    score.wrong.push(format!("{node}: first causes {firsts:?}"));
                }
            }
        }
        if let (Some(target), Some(node)) = (&l.blind_target, l.hit_sources.first()) {
            let (series, facts) = view(&c.series, &c.facts, node);
            let only: Vec<Series> = series
                .into_iter()
                .filter(|s| &*s.dims.target == target.as_str())
                .collect();
            let found = ladders(&blind(only, target), &facts);
            let cause = found
                .first()
                .and_then(|f| {
                    f.likely_causes
                        .iter()
                        .position(|x| x.id.as_str() == l.cause)
                })
                .map(|i| (i, &found[0].likely_causes[i]));
            let listed = cause.is_some_and(|(_, x)| {
                x.unknown
                    .iter()
                    .any(|u| u.starts_with("only cross-node paths"))
            });
            let first = cause.is_some_and(|(i, _)| i == 0);
            if !(listed && first) {
                score.wrong.push(format!(
                    "{node} blind on {target}: {:?}",
                    found.first().map(|f| &f.likely_causes)
                ));
            }
            score.blind = Some((listed, first));
        }
        out.insert(c.name.clone(), score);
    }
    out
}
