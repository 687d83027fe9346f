//! What the causes are judged on ([`Evidence`], read by `causes::Check`),
//! built from the cells of a scope, the cells around it and the nodes'
//! facts; and the evidence lines a ladder finding shows.

use std::collections::{BTreeMap, BTreeSet};

use super::causes::has_checksum_fix;
use super::cell::Cell;
use super::stat::{self, RungShape};
use super::{ratio, syns};
use crate::model::{DetectorConfig, Network, NodeFacts, PathKind, SourceKind, Via};

/// The facts the causes are judged against (see `causes::Check`). Each
/// `Option` is `None` when the prober(s) could not know it: one node does
/// not see the receivers' counters or the other vantage's probes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// One family is hit and the other family's twins of the hit paths
    /// are clean (`Some(true)`), hit too (`Some(false)`), or were not
    /// probed (`None`).
    pub one_family_only: Option<bool>,
    pub cross_node_hit: bool,
    pub same_node_hit: bool,
    /// Some hit path's destination is unknown: a Service whose backends
    /// do not say which node answered.
    pub unknown_path_hit: bool,
    /// Same-node paths were probed from the hit sources at all.
    pub same_node_probed: bool,
    pub host_hit: bool,
    pub pod_hit: bool,
    pub pod_probed: bool,
    /// Some hit path goes through a Service.
    pub service_hit: bool,
    /// The straight paths to pods from the hit sources (pod IPs, no
    /// DNAT) lose SYNs too.
    pub pod_ip_hit: bool,
    /// Straight paths to pods were probed from the hit sources at all.
    pub pod_ip_probed: bool,
    /// Every hit path leads to one destination node; `None` when some
    /// destination is unknown.
    pub one_destination: Option<bool>,
    pub dominant_rung: Option<u32>,
    pub shape: Option<RungShape>,
    /// Whether the dominant rung is the one a NATed flow escapes on (see
    /// `NodeFacts::nat_escape_rung`); `None` without the sources' facts.
    pub nat_escape_rung: Option<bool>,
    pub share: f64,
    /// Overlay devices with TX checksum offload on, on the hit sources;
    /// `None` when no facts were reported.
    pub overlay_tx_checksum_on: Option<Vec<String>>,
    pub kernel_without_fix: Option<bool>,
    /// The rise of `UdpInCsumErrors` on the destination nodes.
    pub receiver_udp_checksum_errors: Option<u64>,
    /// The rise on the hit sources themselves: in a cluster every node
    /// also receives the others' overlay traffic.
    pub local_udp_checksum_errors: Option<u64>,
    pub kube_proxy_ipvs: Option<bool>,
    pub dns_rung: bool,
    /// The lookups sent A and AAAA at once from one socket.
    pub dns_parallel: bool,
    pub large_bodies_only: bool,
    /// Slow connects only on the first contact with each path.
    pub first_contact_only: bool,
    /// Answers began late after a fast handshake (a server-time tail).
    pub late_answers: bool,
    /// The prober started its probes late; its cgroup throttled it.
    pub prober_late: bool,
    pub prober_throttled: Option<bool>,
    /// A column: the scope's one destination is hit from every source
    /// that probes it (two or more), its own same-node path among them if
    /// probed. `None` when the destination is unknown.
    pub column: Option<bool>,
    /// A row: one source is hit, and the other sources' paths to the same
    /// destinations are clean. `None` when no other source probed them.
    pub row: Option<bool>,
    /// The destinations' listen-queue drops (their own namespace's and
    /// their pod prober's, where the echo listens) rose: `None` where no
    /// destination reported them.
    pub dest_listen_drops: Option<u64>,
    /// conntrack drops (`drop`, `early_drop`) rose at the scope's nodes,
    /// either end.
    pub conntrack_drops: Option<u64>,
    /// A scope node's conntrack table is 90 % full or more.
    pub conntrack_near_full: Option<bool>,
    /// conntrack `insert_failed` rose at the sources.
    pub source_insert_failed: Option<u64>,
    /// The sources' neighbour tables refused entries (table_fulls rose).
    pub neigh_table_fulls: Option<u64>,
    /// A source's neighbour table holds 90 % of gc_thresh3 or more.
    pub neigh_near_limit: Option<bool>,
    /// Packets the reverse-path filter dropped rose at the scope's nodes.
    pub reverse_path_drops: Option<u64>,
    /// Some interface of the scope's nodes filters reverse paths strictly.
    pub rp_filter_strict: Option<bool>,
    /// IPVS `conn_reuse_mode` is 1 on a source.
    pub ipvs_conn_reuse: Option<bool>,
}

/// The counter evidence of a scope: what the nodes at either end counted
/// over the window.
pub fn counters(e: &mut Evidence, source_facts: &[&NodeFacts], dest_facts: &[&NodeFacts]) {
    let sum = |it: &mut dyn Iterator<Item = Option<u64>>| {
        let v: Vec<u64> = it.flatten().collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let both: Vec<&NodeFacts> = source_facts
        .iter()
        .chain(dest_facts)
        .copied()
        .collect::<Vec<_>>();
    // The backends listen in their pods' namespaces: the pod probers'
    // counters (the node's own namespace holds host-network listeners only).
    e.dest_listen_drops = sum(&mut dest_facts.iter().map(|f| {
        let r = &f.pod_rises;
        match (r.listen_overflows, r.listen_drops, r.req_q_full_drops) {
            (None, None, None) => None,
            (a, b, c) => Some(a.unwrap_or(0).max(b.unwrap_or(0)) + c.unwrap_or(0)),
        }
    }));
    e.conntrack_drops = sum(&mut both.iter().map(|f| {
        match (f.rises.conntrack_drops, f.rises.conntrack_early_drops) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        }
    }));
    let near = |v: Vec<Option<bool>>| {
        let v: Vec<bool> = v.into_iter().flatten().collect();
        (!v.is_empty()).then(|| v.iter().any(|x| *x))
    };
    e.conntrack_near_full = near(
        both.iter()
            .map(|f| Some(f.conntrack_count? * 10 >= f.conntrack_max? * 9))
            .collect(),
    );
    e.source_insert_failed = sum(&mut source_facts.iter().map(|f| f.rises.conntrack_insert_failed));
    e.neigh_table_fulls = sum(&mut source_facts.iter().map(|f| f.rises.neigh_table_fulls));
    e.neigh_near_limit = near(
        source_facts
            .iter()
            .map(|f| Some(f.neigh_entries? * 10 >= f.neigh_gc_thresh3? * 9))
            .collect(),
    );
    e.reverse_path_drops = sum(&mut both.iter().map(|f| f.rises.reverse_path_drops));
    e.rp_filter_strict =
        (!both.is_empty()).then(|| both.iter().any(|f| !f.rp_filter_strict.is_empty()));
    e.ipvs_conn_reuse = near(
        source_facts
            .iter()
            .map(|f| f.ipvs_conn_reuse_mode.map(|m| m == 1))
            .collect(),
    );
}

/// Rungs of a scope: lost SYNs -> (probes, probes timed on that rung, rung seconds).
pub type Rungs = BTreeMap<u32, (u64, u64, f64)>;

pub fn rungs(m: &[&Cell]) -> Rungs {
    let mut rungs = Rungs::new();
    for c in m {
        for (k, (count, agree)) in &c.rungs {
            let e =
                rungs
                    .entry(*k)
                    .or_insert((0, 0, c.schedule.rung_seconds(*k).unwrap_or(f64::NAN)));
            e.0 += count;
            e.1 += agree;
        }
    }
    rungs
}

/// Probes of a scope still waiting: at least k SYNs lost -> (probes, the
/// rung in seconds they are past).
pub fn waiting(m: &[&Cell]) -> BTreeMap<u32, (u64, f64)> {
    let mut out: BTreeMap<u32, (u64, f64)> = BTreeMap::new();
    for c in m {
        for (k, count) in &c.pending {
            out.entry(*k)
                .or_insert((0, c.schedule.rung_seconds(*k).unwrap_or(f64::NAN)))
                .0 += count;
        }
    }
    out
}

/// Where a scope's cells come from and lead to.
pub struct Spread<'a> {
    pub sources: BTreeSet<&'a str>,
    pub kinds: BTreeSet<SourceKind>,
    pub dests: BTreeSet<&'a str>,
}

pub fn spread<'a>(m: &[&Cell<'a>]) -> Spread<'a> {
    Spread {
        sources: m.iter().map(|c| &*c.w.dims.source_node).collect(),
        kinds: m.iter().map(|c| c.w.dims.source_kind).collect(),
        dests: m
            .iter()
            .filter_map(|c| c.w.dims.destination_node.as_deref())
            .collect(),
    }
}

/// What a ladder over the cells `m` is judged on.
/// Which cells belong to a comparison.
pub type CellFilter<'a> = Box<dyn Fn(&Cell) -> bool + 'a>;

/// The cells to compare a scope with across families. When the hit cells
/// are all one family: their twins in the other family (same source node
/// and network, same destination, same kind of target), `None` when no
/// twin was probed (a one-family cluster). When both families are hit: the
/// hit cells themselves, so the comparison reads "hit in both".
pub fn family_twins<'a>(cells: &'a [Cell], m: &'a [&'a Cell]) -> Option<CellFilter<'a>> {
    let families: BTreeSet<crate::model::Family> = m.iter().map(|c| c.w.dims.family).collect();
    if families.len() != 1 {
        // Both families in the scope: hit in both, and every cell is its
        // own family's; a twin of a hit cell is a hit cell.
        return Some(Box::new(move |c: &Cell| {
            m.iter().any(|h| std::ptr::eq(*h, c))
        }));
    }
    let f = *families.iter().next()?;
    let twin = move |c: &Cell| {
        c.w.dims.family != f
            && m.iter().any(|h| {
                let (a, b) = (&h.w.dims, &c.w.dims);
                a.source_node == b.source_node
                    && a.source_kind == b.source_kind
                    && a.destination_node == b.destination_node
                    && a.via() == b.via()
            })
    };
    cells
        .iter()
        .any(twin)
        .then(|| Box::new(twin) as Box<dyn Fn(&Cell) -> bool>)
}

pub fn of_ladder(
    cells: &[Cell],
    m: &[&Cell],
    path: Option<PathKind>,
    facts: &[NodeFacts],
    rungs: &Rungs,
    cfg: &DetectorConfig,
) -> Evidence {
    let Spread {
        sources,
        kinds,
        dests,
    } = spread(m);
    let n: u64 = m.iter().map(|c| c.n).sum();
    let hits: u64 = m.iter().map(|c| c.hits()).sum();
    // Other paths count as hit when, pooled, they lose SYNs beyond what
    // background loss explains and at half the scope's rate or more: two
    // unlucky probes in one small cell do not make a 100 % host-network
    // ladder "pod network hit too", and cells too small for a ladder of
    // their own still count together.
    let hit_any = |pred: &dyn Fn(&Cell) -> bool| {
        let (h, total) = cells
            .iter()
            .filter(|c| pred(c))
            .fold((0, 0), |(h, t), c| (h + c.hits(), t + c.n));
        h >= cfg.min_rung_probes
            && stat::binomial_tail(total, h, cfg.background_syn_loss) < cfg.alpha
            && ratio(h, total) * 2.0 >= ratio(hits, n)
    };
    let same_sources = |c: &Cell| sources.contains(&*c.w.dims.source_node);
    let source_facts: Vec<&NodeFacts> = facts
        .iter()
        .filter(|f| sources.contains(f.node.as_str()))
        .collect();
    let dest_facts: Vec<&NodeFacts> = facts
        .iter()
        .filter(|f| dests.contains(f.node.as_str()))
        .collect();
    let dominant_rung = rungs.iter().max_by_key(|(_, r)| r.0).map(|(k, _)| *k);
    let sum = |v: Vec<u64>| (!v.is_empty()).then(|| v.iter().sum());
    let nat_escapes: Vec<u32> = source_facts
        .iter()
        // A known timeout with no gap long enough: the ladder never
        // escapes, which no dominant rung matches.
        .filter(|f| f.txrehash == Some(1) || f.conntrack_udp_timeout.is_some())
        .map(|f| f.nat_escape_rung().unwrap_or(0))
        .collect();
    // A column: the one destination hit from every source that probes it.
    let column = match (
        dests.len(),
        m.iter().all(|c| c.w.dims.destination_node.is_some()),
    ) {
        (1, true) => {
            let dest = *dests.iter().next().expect("one");
            let to: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.w.dims.destination_node.as_deref() == Some(dest))
                .filter(|c| c.syn_informative() >= cfg.min_rung_probes)
                .collect();
            let from: BTreeSet<&str> = to.iter().map(|c| &*c.w.dims.source_node).collect();
            Some(from.len() >= 2 && to.iter().all(|c| c.on_ladder()))
        }
        // Hit paths to several destinations are no one column.
        (n, _) if n >= 2 => Some(false),
        _ => None,
    };
    // A row: one source hit, the others' paths to the same places clean.
    let row = if sources.len() >= 2 {
        Some(false)
    } else {
        (sources.len() == 1)
            .then(|| {
                let others = |c: &Cell| {
                    !sources.contains(&*c.w.dims.source_node)
                        && c.w
                            .dims
                            .destination_node
                            .as_deref()
                            .is_some_and(|d| dests.contains(d))
                };
                cells.iter().any(others).then(|| !hit_any(&others))
            })
            .flatten()
    };
    let mut e = Evidence {
        one_family_only: family_twins(cells, m).map(|twins| !hit_any(&twins)),
        column,
        row,
        cross_node_hit: m.iter().any(|c| c.w.dims.path == PathKind::CrossNode),
        unknown_path_hit: m.iter().any(|c| c.w.dims.destination_node.is_none()),
        // A same-node path in the scope on the ladder is hit whatever the
        // other nodes' own same-node paths (to their own backends) show.
        same_node_hit: m
            .iter()
            .any(|c| c.w.dims.path == PathKind::SameNode && c.ladder)
            || hit_any(&|c| same_sources(c) && c.w.dims.path == PathKind::SameNode),
        same_node_probed: cells
            .iter()
            .any(|c| same_sources(c) && c.w.dims.path == PathKind::SameNode),
        host_hit: kinds.iter().any(|k| k.network() == Network::Host),
        pod_hit: hit_any(&|c| {
            c.w.dims.source_kind.network() == Network::Pod
                && path.is_none_or(|p| c.w.dims.path == p)
        }),
        pod_probed: cells
            .iter()
            .any(|c| c.w.dims.source_kind.network() == Network::Pod),
        service_hit: m.iter().any(|c| c.w.dims.via() == Via::Service),
        pod_ip_hit: hit_any(&|c| {
            same_sources(c)
                && kinds.contains(&c.w.dims.source_kind)
                && c.w.dims.via() == Via::Pod
                && path.is_none_or(|p| c.w.dims.path == p)
        }),
        pod_ip_probed: cells.iter().any(|c| {
            same_sources(c) && kinds.contains(&c.w.dims.source_kind) && c.w.dims.via() == Via::Pod
        }),
        one_destination: m
            .iter()
            .all(|c| c.w.dims.destination_node.is_some())
            .then_some(dests.len() == 1),
        dominant_rung,
        shape: shape(m),
        nat_escape_rung: dominant_rung
            .filter(|_| !nat_escapes.is_empty())
            .map(|k| nat_escapes.contains(&k)),
        share: ratio(hits, n),
        overlay_tx_checksum_on: (!source_facts.is_empty()).then(|| {
            source_facts
                .iter()
                .flat_map(|f| f.overlays.iter())
                .filter(|o| o.tx_checksumming == Some(true))
                .map(|o| o.name.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }),
        kernel_without_fix: {
            let versions: Vec<(u32, u32, u32)> = source_facts
                .iter()
                .filter_map(|f| f.kernel_version())
                .collect();
            (!versions.is_empty()).then(|| versions.iter().any(|v| !has_checksum_fix(*v)))
        },
        receiver_udp_checksum_errors: sum(dest_facts
            .iter()
            .filter_map(|f| f.udp_in_csum_errors_delta)
            .collect()),
        local_udp_checksum_errors: sum(source_facts
            .iter()
            .filter_map(|f| f.udp_in_csum_errors_delta)
            .collect()),
        kube_proxy_ipvs: {
            let v: Vec<bool> = source_facts
                .iter()
                .filter_map(|f| f.kube_proxy_ipvs)
                .collect();
            (!v.is_empty()).then(|| v.iter().any(|x| *x))
        },
        ..Evidence::default()
    };
    counters(&mut e, &source_facts, &dest_facts);
    e
}

/// The shape of the scope's lost SYNs: give-ups lost every SYN their
/// kernel sends.
fn shape(m: &[&Cell]) -> Option<RungShape> {
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    let all_lost = m.iter().map(|c| c.schedule.syns()).max().unwrap_or(7);
    for c in m {
        for (k, (count, _)) in &c.rungs {
            *counts.entry(*k).or_default() += count;
        }
        // A rung of no probes (no give-ups) weighs nothing in the shape.
        *counts.entry(all_lost).or_default() += c.give_ups;
    }
    stat::rung_shape(&counts, m.iter().map(|c| c.syn_judged).sum(), all_lost)
}

/// The evidence lines of a ladder finding.
pub struct LadderText<'a> {
    pub m: &'a [&'a Cell<'a>],
    pub rungs: &'a Rungs,
    pub p_binom: f64,
    /// Hits and probes on the same sources' other paths, with Fisher's p.
    pub outside: Option<(u64, u64, f64)>,
    pub judged: &'a Evidence,
    pub cfg: &'a DetectorConfig,
}

impl LadderText<'_> {
    pub fn lines(&self) -> Vec<String> {
        let m = self.m;
        let n: u64 = m.iter().map(|c| c.n).sum();
        let hits: u64 = m.iter().map(|c| c.hits()).sum();
        let give_ups: u64 = m.iter().map(|c| c.give_ups).sum();
        let timing_only: u64 = m.iter().map(|c| c.timing_only).sum();
        let agree: u64 = self.rungs.values().map(|r| r.1).sum();
        let rung_probes: u64 = self.rungs.values().map(|r| r.0).sum();
        let mut out = vec![format!(
            "{hits} of {n} probes ({:.0}%) lost SYNs: {}",
            ratio(hits, n) * 100.0,
            self.rungs
                .iter()
                .map(|(k, r)| format!(
                    "{} on the {} s rung ({} lost)",
                    r.0,
                    r.2,
                    syns(u64::from(*k))
                ))
                .chain(
                    (give_ups > 0).then(|| format!("{give_ups} gave up after every SYN was lost"))
                )
                .chain(waiting(m).iter().rev().map(|(k, w)| format!(
                    "{} still waiting after losing at least {} (past the {} s rung)",
                    w.0,
                    syns(u64::from(*k)),
                    w.1
                )))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        if m.iter().any(|c| !c.settled) {
            out.push(
                "in progress: the verdict rests on probes still waiting in SYN_SENT (censored: each counts on the rung it is past or beyond); it becomes final when they land on their rung or give up"
                    .into(),
            );
        }
        out.push(format!(
            "against a background SYN loss of {:e} per probe, p = {:.1e}",
            self.cfg.background_syn_loss, self.p_binom
        ));
        if rung_probes > 0 {
            out.push(if agree == rung_probes {
                format!("TCP_INFO agrees: on all {rung_probes} probes the kernel's retransmit count matches the rung the connect time sits on")
            } else {
                format!(
                    "TCP_INFO and timing agree on {agree} of {rung_probes} probes; where they disagree the kernel's count was trusted"
                )
            });
        }
        if timing_only > 0 {
            out.push(format!(
                "{timing_only} probes were timed like a rung but the kernel saw no SYN retransmission: a delay, not a loss"
            ));
        }
        let schedules: BTreeSet<String> = m
            .iter()
            .map(|c| format!("{}: {}", c.w.dims.source_node, c.schedule.describe()))
            .collect();
        out.push(format!(
            "SYN schedule of the source kernel(s): {}",
            schedules.into_iter().collect::<Vec<_>>().join("; ")
        ));
        if let Some((out_hits, out_n, p)) = self.outside {
            out.push(format!(
                "the same sources' other paths: {out_hits} of {out_n} probes lost SYNs (one-sided Fisher p = {p:.1e})"
            ));
        }
        let e = self.judged;
        match e.shape {
            Some(RungShape::Deterministic) => out.push(
                "the lost SYNs sit on one rung: deterministic, not the spread random loss gives"
                    .into(),
            ),
            Some(RungShape::Geometric) => out.push(
                "the lost SYNs spread as random loss does: one lost far more often than two".into(),
            ),
            None => {}
        }
        if e.nat_escape_rung == Some(true) {
            out.push(
                "the probes escape on the rung where a NATed UDP flow gets a new conntrack entry (the conntrack UDP timeout, or txrehash)"
                    .into(),
            );
        }
        if let Some(errors) = e.receiver_udp_checksum_errors.filter(|n| *n > 0) {
            out.push(format!(
                "receiving nodes counted {errors} more UDP checksum errors over the window"
            ));
        }
        if let Some(errors) = e.local_udp_checksum_errors.filter(|n| *n > 0) {
            out.push(format!(
                "the source node itself counted {errors} more UDP checksum errors over the window, as a receiver"
            ));
        }
        if let Some(devs) = e.overlay_tx_checksum_on.as_ref().filter(|d| !d.is_empty()) {
            out.push(format!(
                "TX checksum offload is on for {} on the source",
                devs.join(", ")
            ));
        }
        out
    }
}
