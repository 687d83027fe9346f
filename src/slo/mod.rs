//! Service-level objectives over probes, judged in the prober from its own
//! counts with multi-window, multi-burn-rate alerts (the Google SRE
//! workbook's method). A probe is good when it ends `ok` within the SLO's
//! threshold. Burn rate over a window = bad share / (1 - objective); an alert
//! fires while both its long and its short window burn faster than its factor.

pub mod rules;

use std::collections::VecDeque;
use std::time::Duration;

pub use crate::config::{BurnAlert, SloConfig};
use crate::model::ProbeResult;

/// Good and total probe counts in time buckets, enough for the longest
/// alert window. Time is passed in (seconds on any monotonic scale), so the
/// math is testable on constructed counts.
#[derive(Debug, Clone)]
pub struct Counts {
    bucket_s: u64,
    keep: usize,
    /// (bucket start, good, total), oldest first.
    buckets: VecDeque<(u64, u64, u64)>,
}

impl Counts {
    /// Buckets a fifth of the shortest window wide (1 s to 60 s).
    pub fn for_slo(slo: &SloConfig) -> Self {
        let bucket_s = (slo.shortest().as_secs() / 5).clamp(1, 60);
        let keep = (slo.longest().as_secs() / bucket_s + 2) as usize;
        Self {
            bucket_s,
            keep,
            buckets: VecDeque::new(),
        }
    }

    pub fn add(&mut self, now_s: u64, good: bool) {
        let start = now_s - now_s % self.bucket_s;
        match self.buckets.back_mut() {
            Some(b) if b.0 == start => {
                b.1 += u64::from(good);
                b.2 += 1;
            }
            _ => self.buckets.push_back((start, u64::from(good), 1)),
        }
        while self.buckets.len() > self.keep {
            self.buckets.pop_front();
        }
    }

    /// (good, total) over the last `window` before `now_s`.
    pub fn over(&self, now_s: u64, window: Duration) -> (u64, u64) {
        let from = now_s.saturating_sub(window.as_secs());
        self.buckets
            .iter()
            .filter(|b| b.0 + self.bucket_s > from && b.0 <= now_s)
            .fold((0, 0), |(g, t), b| (g + b.1, t + b.2))
    }
}

/// Burn rate: the bad share over the budget share; 0 with no probes.
pub fn burn_rate(good: u64, total: u64, objective: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    ((total - good) as f64 / total as f64) / (1.0 - objective)
}

/// The state of one alert of one SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertState {
    pub slo: String,
    pub severity: String,
    pub long_burn: f64,
    pub short_burn: f64,
    pub factor: f64,
    pub firing: bool,
}

impl AlertState {
    /// One line a person can read.
    pub fn describe(&self, a: &BurnAlert) -> String {
        format!(
            "SLO {} ({}): burning the error budget {:.1}x over {} and {:.1}x over {} (alert above {}x)",
            self.slo, self.severity, self.long_burn, a.long, self.short_burn, a.short, self.factor
        )
    }
}

/// Every SLO's counts.
#[derive(Debug)]
pub struct Tracker {
    slos: Vec<(SloConfig, Counts)>,
}

impl Tracker {
    pub fn new(slos: &[SloConfig]) -> Self {
        Self {
            slos: slos
                .iter()
                .map(|s| (s.clone(), Counts::for_slo(s)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slos.is_empty()
    }

    /// Counts a finished probe toward every SLO that covers it; returns the
    /// names of those SLOs with whether the probe was good.
    pub fn record(&mut self, now_s: u64, r: &ProbeResult) -> Vec<(&str, bool)> {
        let mut out = Vec::new();
        if r.outcome == crate::model::Outcome::Cancelled {
            return out;
        }
        for (slo, counts) in &mut self.slos {
            if slo.covers(&r.target.name, r.path) {
                let good = slo.good(r);
                counts.add(now_s, good);
                out.push((slo.name.as_str(), good));
            }
        }
        out
    }

    /// Every alert's state now.
    pub fn evaluate(&self, now_s: u64) -> Vec<(AlertState, BurnAlert)> {
        let mut out = Vec::new();
        for (slo, counts) in &self.slos {
            for a in &slo.alerts {
                let (gl, tl) = counts.over(now_s, a.long.get());
                let (gs, ts) = counts.over(now_s, a.short.get());
                let (long_burn, short_burn) = (
                    burn_rate(gl, tl, slo.objective),
                    burn_rate(gs, ts, slo.objective),
                );
                out.push((
                    AlertState {
                        slo: slo.name.clone(),
                        severity: a.severity.clone(),
                        long_burn,
                        short_burn,
                        factor: a.factor,
                        firing: long_burn > a.factor && short_burn > a.factor,
                    },
                    a.clone(),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;
    use crate::model::PathKind;

    fn slo(short_s: u64, long_s: u64) -> SloConfig {
        SloConfig {
            name: "x".into(),
            targets: vec!["svc-*".into()],
            path: Some(PathKind::CrossNode),
            objective: 0.999,
            threshold: Dur::secs(1),
            window: Dur::secs(30 * 86_400),
            alerts: vec![BurnAlert {
                long: Dur::secs(long_s),
                short: Dur::secs(short_s),
                factor: 14.4,
                severity: "page".into(),
            }],
        }
    }

    #[test]
    fn burn_rate_is_bad_share_over_budget() {
        assert!((burn_rate(999, 1000, 0.999) - 1.0).abs() < 1e-9);
        assert!((burn_rate(900, 1000, 0.999) - 100.0).abs() < 1e-9);
        assert_eq!(burn_rate(0, 0, 0.999), 0.0);
    }

    #[test]
    fn counts_sum_over_windows_and_forget_old_buckets() {
        let s = slo(300, 3600);
        let mut c = Counts::for_slo(&s);
        assert_eq!(c.bucket_s, 60);
        for t in 0..7200 {
            c.add(t, t % 10 != 0);
        }
        let (g, t) = c.over(7199, Duration::from_secs(300));
        assert!((300..=360).contains(&t), "{t}");
        assert_eq!(t - g, t / 10);
        assert!(c.buckets.len() <= c.keep);
        let (_, t) = c.over(7199, Duration::from_secs(3600));
        assert!((3600..=3660).contains(&t), "{t}");
    }

    #[test]
    fn fires_only_when_both_windows_burn() {
        let s = slo(300, 3600);
        let mut c = Counts::for_slo(&s);
        // An hour at 1 % bad (10x burn): neither window passes 14.4.
        for t in 0..3600 {
            c.add(t, t % 100 != 0);
        }
        let tracker = Tracker {
            slos: vec![(s.clone(), c.clone())],
        };
        assert!(!tracker.evaluate(3599)[0].0.firing);
        // Then 5 minutes entirely bad: the short window (5 min, plus the
        // part of the bucket it starts in) burns over 800x, the long one
        // (1 h) about 90x: both above 14.4, so it fires.
        for t in 3600..3900 {
            c.add(t, false);
        }
        let tracker = Tracker {
            slos: vec![(s.clone(), c.clone())],
        };
        let (st, _) = &tracker.evaluate(3899)[0];
        assert!(
            st.firing && st.short_burn > 800.0 && st.long_burn > 14.4,
            "{st:?}"
        );
        // Recovery: 10 good minutes cool the short window; it resolves.
        for t in 3900..4500 {
            c.add(t, true);
        }
        let tracker = Tracker { slos: vec![(s, c)] };
        let (st, _) = &tracker.evaluate(4499)[0];
        assert!(
            !st.firing && st.short_burn == 0.0 && st.long_burn > 14.4,
            "{st:?}"
        );
    }

    #[test]
    fn coverage_by_target_pattern_and_path() {
        let s = slo(300, 3600);
        assert!(s.covers("svc-node1", PathKind::CrossNode));
        assert!(!s.covers("svc-node1", PathKind::SameNode));
        assert!(!s.covers("kube-dns", PathKind::CrossNode));
        let mut all = s.clone();
        all.targets.clear();
        all.path = None;
        assert!(all.covers("anything", PathKind::Unknown));
    }

    #[test]
    fn problems_are_said() {
        let mut s = slo(300, 3600);
        assert_eq!(s.problem(), None);
        s.objective = 99.9;
        assert!(s.problem().unwrap().contains("0.999"));
        let mut s = slo(3600, 300);
        assert!(s.problem().unwrap().contains("shorter"));
        s.name = "a b".into();
        assert!(s.problem().unwrap().contains("label value"));
    }
}
