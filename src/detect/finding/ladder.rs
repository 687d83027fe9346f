//! SYN-retransmit ladders. A cell is on the ladder when enough of its probes
//! sit on a rung of its source kernel's schedule that a healthy background
//! SYN loss cannot explain them (binomial tail), and at least
//! `min_rung_probes` do. Scope widens from the cell to the broadest group
//! whose informative cells (enough probes the handshake decided) are on the
//! ladder together: each with probes on a rung, their pooled probes
//! significant: every path of a kind from a network kind (through Services
//! only, when the straight paths are clean), every path to or from one
//! node, one destination, one destination's cross-node paths, one pair,
//! one source's paths of a kind, one source.

use std::collections::{BTreeMap, BTreeSet};

use super::{Finding, FindingKind, RungCount, examples, ratio, round3};
use crate::detect::cell::Cell;
use crate::detect::evidence::{self, LadderText};
use crate::detect::scope::{Grouping, ScopeKey};
use crate::detect::{causes, stat};
use crate::model::{DetectorConfig, NodeFacts, PathKind};

pub fn findings(cells: &[Cell], facts: &[NodeFacts], cfg: &DetectorConfig) -> Vec<Finding> {
    // A cell whose probes never reached a SYN verdict (refused, no route)
    // neither joins nor blocks a ladder's scope: it is reported as failures.
    let informative = |c: &Cell| c.syn_informative() >= cfg.min_rung_probes;
    // A cell with none on a rung blocks its group's ladder.
    let pooled = |members: &[usize]| {
        let hits: u64 = members.iter().map(|i| cells[*i].hits()).sum();
        let n: u64 = members.iter().map(|i| cells[*i].n).sum();
        hits >= cfg.min_rung_probes
            && stat::binomial_tail(n, hits, cfg.background_syn_loss) < cfg.alpha
    };
    let mut covered: BTreeSet<usize> = BTreeSet::new();
    let mut out = Vec::new();
    // On a dual-stack cluster each grouping is tried across both families
    // first, then within each: a ladder in one family only is that
    // family's, as a ladder on cross-node paths only is theirs.
    let dual = cells
        .iter()
        .any(|c| c.w.dims.family != cells[0].w.dims.family);
    let passes = Grouping::WIDENING
        .into_iter()
        .flat_map(|g| [(g, false), (g, true)])
        .filter(|(_, by_family)| dual || !by_family);
    for (grouping, by_family) in passes {
        let mut groups: BTreeMap<ScopeKey, Vec<usize>> = BTreeMap::new();
        for (i, c) in cells.iter().enumerate().filter(|(_, c)| informative(c)) {
            for key in ScopeKey::keys(grouping, &c.w.dims) {
                let key = if by_family {
                    key.in_family(c.w.dims.family)
                } else {
                    key
                };
                groups.entry(key).or_default().push(i);
            }
        }
        for (key, members) in groups {
            let all_ladder = members.iter().all(|i| cells[*i].on_ladder())
                && members.iter().any(|i| cells[*i].ladder)
                && pooled(&members);
            let news = members.iter().any(|i| !covered.contains(i));
            let sources: BTreeSet<&str> = members
                .iter()
                .map(|i| &*cells[*i].w.dims.source_node)
                .collect();
            let wide_enough = match grouping {
                Grouping::KindPath | Grouping::Destination | Grouping::DestinationPath => {
                    sources.len() >= 2
                }
                // Both its row and its column, or it is one of those.
                Grouping::Node => {
                    let node = key.source_node.as_deref();
                    let dims = |i: &usize| &cells[*i].w.dims;
                    let out_of = members.iter().any(|i| {
                        Some(&*dims(i).source_node) == node
                            && dims(i).destination_node.as_deref() != node
                    });
                    let into = members.iter().any(|i| {
                        Some(&*dims(i).source_node) != node
                            && dims(i).destination_node.as_deref() == node
                    });
                    out_of && into
                }
                // A row spans destinations, as a column spans sources; one
                // network's row is its own (narrower) grouping, which says
                // which network.
                Grouping::SourcePath | Grouping::SourceService => {
                    let dests: BTreeSet<&str> = members
                        .iter()
                        .filter_map(|i| cells[*i].w.dims.destination_node.as_deref())
                        .collect();
                    let kinds: BTreeSet<_> = members
                        .iter()
                        .map(|i| cells[*i].w.dims.source_kind)
                        .collect();
                    dests.len() >= 2 && (grouping == Grouping::SourceService || kinds.len() >= 2)
                }
                // Only Services: a configured target's path is not known.
                Grouping::KindPathService => {
                    sources.len() >= 2 && key.via == Some(crate::model::Via::Service)
                }
                _ => members.len() >= 2,
            };
            if all_ladder && news && wide_enough {
                covered.extend(members.iter().copied());
                out.push(finding(cells, &members, key, facts, cfg));
            }
        }
    }
    for (i, c) in cells.iter().enumerate() {
        if c.ladder && !covered.contains(&i) {
            let key = ScopeKey::of(Grouping::Cell, &c.w.dims);
            let key = if dual {
                key.in_family(c.w.dims.family)
            } else {
                key
            };
            out.push(finding(cells, &[i], key, facts, cfg));
        }
    }
    out
}

fn finding(
    cells: &[Cell],
    members: &[usize],
    key: ScopeKey,
    facts: &[NodeFacts],
    cfg: &DetectorConfig,
) -> Finding {
    let m: Vec<&Cell> = members.iter().map(|i| &cells[*i]).collect();
    let n: u64 = m.iter().map(|c| c.n).sum();
    let hits: u64 = m.iter().map(|c| c.hits()).sum();
    let rungs = evidence::rungs(&m);
    let agree: u64 = rungs.values().map(|r| r.1).sum();
    let rung_probes: u64 = rungs.values().map(|r| r.0).sum();
    let evidence::Spread {
        sources,
        kinds,
        dests,
    } = evidence::spread(&m);
    let member_set: BTreeSet<usize> = members.iter().copied().collect();

    // The same sources' other paths: is the ladder particular to this scope?
    let outside: Vec<&Cell> = cells
        .iter()
        .enumerate()
        .filter(|(i, c)| !member_set.contains(i) && sources.contains(&*c.w.dims.source_node))
        .map(|(_, c)| c)
        .collect();
    let (out_hits, out_n) = (
        outside.iter().map(|c| c.hits()).sum::<u64>(),
        outside.iter().map(|c| c.n).sum::<u64>(),
    );
    let fisher = (out_n > 0).then(|| stat::fisher_greater(hits, n, out_hits, out_n));
    let p_binom = m.iter().map(|c| c.p_value).fold(1.0, f64::min);

    let judged = evidence::of_ladder(cells, &m, key.path, facts, &rungs, cfg);
    let family_line = key.family.and_then(|f| {
        let twins = evidence::family_twins(cells, &m)?;
        let (h, t) = cells
            .iter()
            .filter(|c| twins(c))
            .fold((0, 0), |(h, t), c| (h + c.hits(), t + c.n));
        Some(format!(
            "{} only: {hits} of {n} {} probes lost SYNs, {h} of {t} {} probes between the same nodes, from the same networks, through the same kind of target",
            f.describe(),
            f.describe(),
            f.other().describe()
        ))
    });
    let mut lines = LadderText {
        m: &m,
        rungs: &rungs,
        p_binom,
        outside: fisher.map(|p| (out_hits, out_n, p)),
        judged: &judged,
        cfg,
    }
    .lines();
    lines.extend(family_line);
    let agreement = if rung_probes > 0 {
        agree as f64 / rung_probes as f64
    } else {
        0.5
    };
    let specific = fisher.is_none_or(|p| p < 0.01);
    let confidence = 0.5 * ((-p_binom.max(1e-300).log10()).min(12.0) / 12.0)
        + 0.3 * agreement
        + 0.2 * f64::from(u8::from(specific));
    let targets: BTreeSet<String> = m.iter().map(|c| c.w.dims.target.to_string()).collect();
    let pairs: BTreeSet<(String, String)> = m.iter().map(|c| c.pair()).collect();
    let paths: BTreeSet<PathKind> = m.iter().map(|c| c.w.dims.path).collect();
    let path = key
        .path
        .or_else(|| (paths.len() == 1).then(|| *paths.iter().next().unwrap()));
    Finding {
        source_node: (sources.len() == 1).then(|| sources.iter().next().unwrap().to_string()),
        source_kind: (kinds.len() == 1).then(|| *kinds.iter().next().unwrap()),
        destination_node: (dests.len() == 1).then(|| dests.iter().next().unwrap().to_string()),
        path,
        targets: targets.into_iter().collect(),
        pairs: pairs.into_iter().collect(),
        rungs: rungs
            .iter()
            .map(|(k, r)| RungCount {
                retransmits: *k,
                seconds: r.2,
                count: r.0,
            })
            .collect(),
        waiting: evidence::waiting(&m)
            .iter()
            .map(|(k, w)| RungCount {
                retransmits: *k,
                seconds: w.1,
                count: w.0,
            })
            .collect(),
        provisional: m.iter().any(|c| !c.settled),
        share: round3(ratio(hits, n)),
        samples: n,
        evidence: lines,
        likely_causes: causes::rank(FindingKind::SynRetransmitLadder, &judged),
        examples: examples(&m, |p| p.syn_retransmits > 0),
        ..Finding::new(
            FindingKind::SynRetransmitLadder,
            key,
            sources.len(),
            members.len(),
        )
    }
    .with_confidence(confidence)
}
