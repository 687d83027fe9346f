//! One series analysed: how many of its probes sit on which rung of the
//! source kernel's SYN schedule, what failed, and whether that is more than
//! a healthy background SYN loss explains.

use std::collections::BTreeMap;
use std::time::Duration;

use super::stat;
use crate::model::{DetectorConfig, Outcome, Sample, SeriesWindow, SynSchedule, match_dns_rung};

/// How long the neighbour layer may hold the first packets to a new peer:
/// three solicitations one second apart, plus slack.
pub const FIRST_CONTACT_MAX_S: f64 = 3.3;

/// A body above this does not fit one segment on a 1500-byte overlay path.
pub const LARGE_BODY_BYTES: u64 = 1400;

pub struct Cell<'a> {
    pub w: &'a SeriesWindow,
    pub schedule: SynSchedule,
    pub n: u64,
    /// Probes the SYN handshake decided: connected, or gave up after
    /// retransmitting. A refused or unreachable target decides none, so it
    /// says nothing about a ladder.
    pub syn_judged: u64,
    /// Lost SYNs -> (probes, probes whose timing agreed with the kernel).
    pub rungs: BTreeMap<u32, (u64, u64)>,
    /// Connect timeouts after retransmitting SYNs: every SYN was lost.
    pub give_ups: u64,
    /// Probes still in SYN_SENT: at least this many SYNs lost -> probes.
    /// Censored: each counts as a hit, on its rung or beyond.
    pub pending: BTreeMap<u32, u64>,
    /// On the ladder from its finished probes alone: a ladder that is not
    /// settled rests on probes still waiting, and is provisional.
    pub settled: bool,
    /// Timed like a rung, but the kernel saw no retransmission.
    pub timing_only: u64,
    pub dns_hits: u64,
    pub failures: BTreeMap<Outcome, u64>,
    pub ladder: bool,
    /// Slow connects only on the first contact: every slow probe started in
    /// the first seconds, and the probes after them were fast.
    pub first_contact: bool,
    pub p_value: f64,
}

impl Cell<'_> {
    /// Probes that lost SYNs: landed on a rung, gave up, or still waiting.
    pub fn hits(&self) -> u64 {
        self.landed_hits() + self.pending_hits()
    }

    /// Finished probes that lost SYNs.
    pub fn landed_hits(&self) -> u64 {
        self.rungs.values().map(|(n, _)| n).sum::<u64>() + self.give_ups
    }

    /// Probes still waiting after losing SYNs.
    pub fn pending_hits(&self) -> u64 {
        self.pending.values().sum()
    }

    /// On a ladder, or on one within a group: a cell with probes on a rung
    /// joins its group's ladder even when its own few probes fall short of
    /// significance (a share of 30 % leaves some of 20 probes with one or
    /// two); the group's pooled probes must be significant. Slow first
    /// contacts alone are not a ladder.
    pub fn on_ladder(&self) -> bool {
        self.ladder || (self.hits() > 0 && !self.first_contact)
    }

    /// Probes that say something about the SYN handshake: decided, or
    /// still waiting after a lost SYN.
    pub fn syn_informative(&self) -> u64 {
        self.syn_judged + self.pending_hits()
    }

    /// (source node, destination node), `?` for an unknown destination.
    pub fn pair(&self) -> (String, String) {
        let d = &self.w.dims;
        (
            d.source_node.to_string(),
            d.destination_or_unknown().to_string(),
        )
    }

    /// The largest response body measured on this series: in the window,
    /// or before it (a black hole leaves its probes nothing to measure).
    pub fn body_bytes(&self) -> u64 {
        self.w
            .samples
            .iter()
            .map(|s| s.body_bytes)
            .max()
            .unwrap_or(0)
            .max(self.w.body_bytes)
    }

    /// The cell's probes, shutdown cancellations left out.
    pub fn probes(&self) -> impl Iterator<Item = &Sample> {
        self.w
            .samples
            .iter()
            .filter(|p| p.outcome != Outcome::Cancelled)
    }
}

pub fn analyse<'a>(w: &'a SeriesWindow, schedule: SynSchedule, cfg: &DetectorConfig) -> Cell<'a> {
    let probes: Vec<&Sample> = w
        .samples
        .iter()
        .filter(|p| p.outcome != Outcome::Cancelled)
        .collect();
    let base = probes
        .iter()
        .filter(|p| p.syn_retransmits == 0)
        .filter_map(|p| p.phases.connect_only())
        .min()
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut c = Cell {
        w,
        schedule,
        n: probes.len() as u64,
        syn_judged: 0,
        rungs: BTreeMap::new(),
        give_ups: 0,
        pending: BTreeMap::new(),
        settled: false,
        timing_only: 0,
        dns_hits: 0,
        failures: BTreeMap::new(),
        ladder: false,
        first_contact: false,
        p_value: 1.0,
    };
    for p in &probes {
        let timing = p
            .phases
            .connect_only()
            .and_then(|d| schedule.match_rung(d.as_secs_f64(), base));
        let gave_up = p.syn_retransmits > 0 && p.outcome == Outcome::ConnectTimeout;
        c.syn_judged += u64::from(p.phases.connect.is_some() || gave_up);
        if p.syn_retransmits > 0 && p.phases.connect.is_some() {
            // The kernel's count is the evidence; timing only confirms it.
            let e = c.rungs.entry(p.syn_retransmits).or_default();
            e.0 += 1;
            e.1 += u64::from(timing == Some(p.syn_retransmits));
        } else if gave_up {
            c.give_ups += 1;
        } else if timing.is_some() {
            c.timing_only += 1;
        }
        if p.phases
            .dns
            .is_some_and(|d| match_dns_rung(d.as_secs_f64()).is_some())
        {
            c.dns_hits += 1;
        }
        if !p.outcome.is_ok() && !gave_up {
            *c.failures.entry(p.outcome).or_default() += 1;
        }
    }
    for p in w.pending.iter().filter(|p| p.syn_retransmits > 0) {
        *c.pending.entry(p.syn_retransmits).or_default() += 1;
    }
    let landed = (c.n, c.landed_hits());
    c.n += c.pending_hits();
    let hits = c.hits();
    c.p_value = stat::binomial_tail(c.n, hits, cfg.background_syn_loss);
    let significant = hits >= cfg.min_rung_probes && c.p_value < cfg.alpha;
    // A stall still waiting is a SYN lost now: not the first-contact delay
    // of probes that all landed fast after it.
    c.first_contact = c.pending.is_empty() && first_contact_only(&probes, base);
    c.ladder = significant && !c.first_contact;
    c.settled = c.ladder
        && landed.1 >= cfg.min_rung_probes
        && stat::binomial_tail(landed.0, landed.1, cfg.background_syn_loss) < cfg.alpha;
    c
}

/// A connect of 1 to 3.3 s above the path's base: a SYN rung, or a
/// neighbour (ARP) resolution that took its 1 s retries.
fn slow_connect(p: &Sample, base: f64) -> bool {
    p.phases
        .connect_only()
        .is_some_and(|d| (1.0 + base..=FIRST_CONTACT_MAX_S + base).contains(&d.as_secs_f64()))
}

/// Whether every slow connect of a cell came in its first seconds and the
/// probes started after them were all fast: a first-contact delay (ARP), not
/// a path that keeps losing SYNs.
fn first_contact_only(probes: &[&Sample], base: f64) -> bool {
    let Some(first) = probes.iter().map(|p| p.at).min() else {
        return false;
    };
    let window_end = first + Duration::from_secs_f64(FIRST_CONTACT_MAX_S + 0.2);
    let (early, late): (Vec<&&Sample>, Vec<_>) = probes.iter().partition(|p| p.at <= window_end);
    early.iter().any(|p| slow_connect(p, base))
        && !late.is_empty()
        && late.iter().all(|p| {
            p.outcome.is_ok()
                && p.phases
                    .connect_only()
                    .is_some_and(|d| d.as_secs_f64() < 1.0 + base)
        })
}
