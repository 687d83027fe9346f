//! The SYN retransmission schedule a client's kernel follows, and matching a
//! connect time to a rung of it. Timers fire late, never early, and their
//! slack grows with the timeout: rung T is matched in [T, 1.13 T + 0.1 s],
//! both shifted by the path's base connect time.

/// Linux caps the retransmission timeout at `TCP_RTO_MAX`.
const RTO_MAX_S: f64 = 120.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynSchedule {
    pub initial_rto_s: f64,
    /// `tcp_syn_retries`.
    pub retries: u32,
    /// `tcp_syn_linear_timeouts` (Linux >= 6.5): that many extra retries
    /// whose timeout stays at the initial RTO before doubling starts.
    pub linear: u32,
}

impl SynSchedule {
    pub fn linux(retries: u32, linear: u32) -> Self {
        Self {
            initial_rto_s: 1.0,
            retries,
            linear,
        }
    }

    /// The classic Linux ladder: 1, 3, 7, 15, 31, 63 s; gives up at 127 s.
    pub fn classic() -> Self {
        Self::linux(6, 0)
    }

    /// Windows clients: initial RTO 3 s, 2 retries: 3, 9 s; gives up at 21 s.
    pub fn windows() -> Self {
        Self {
            initial_rto_s: 3.0,
            retries: 2,
            linear: 0,
        }
    }

    /// The wait after each SYN; the last is the wait before giving up.
    pub fn timeouts(&self) -> Vec<f64> {
        (0..=self.retries + self.linear)
            .map(|n| {
                let doublings = n.saturating_sub(self.linear);
                (self.initial_rto_s * 2f64.powi(doublings as i32)).min(RTO_MAX_S)
            })
            .collect()
    }

    /// Rung k (index k-1): when a connect completes after k lost SYNs.
    pub fn rungs(&self) -> Vec<f64> {
        let t = self.timeouts();
        t[..t.len() - 1]
            .iter()
            .scan(0.0, |sum, x| {
                *sum += x;
                Some(*sum)
            })
            .collect()
    }

    /// The SYNs a connect sends before the kernel gives up: a give-up lost
    /// every one of them.
    pub fn syns(&self) -> u32 {
        self.timeouts().len() as u32
    }

    /// When the kernel gives up (ETIMEDOUT).
    pub fn give_up(&self) -> f64 {
        self.timeouts().iter().sum()
    }

    /// The rung (number of lost SYNs, 1-based) a connect of `connect_s`
    /// seconds sits on, on a path whose healthy connect takes `base_s`.
    pub fn match_rung(&self, connect_s: f64, base_s: f64) -> Option<u32> {
        self.rungs()
            .iter()
            .position(|t| connect_s >= t + base_s && connect_s <= 1.13 * t + 0.1 + base_s)
            .map(|i| i as u32 + 1)
    }

    /// The first retransmission sent after a quiet gap of more than `gap_s`
    /// (1-based, as rungs are), if any.
    pub fn first_retransmit_after_gap(&self, gap_s: f64) -> Option<u32> {
        let t = self.timeouts();
        t[..t.len() - 1]
            .iter()
            .position(|wait| *wait > gap_s)
            .map(|i| i as u32 + 1)
    }

    /// The rung after `k` lost SYNs, in seconds.
    pub fn rung_seconds(&self, k: u32) -> Option<f64> {
        self.rungs().get((k as usize).checked_sub(1)?).copied()
    }

    pub fn describe(&self) -> String {
        let r: Vec<String> = self.rungs().iter().map(|s| format!("{s}")).collect();
        format!("{} s, gives up at {} s", r.join(", "), self.give_up())
    }
}

/// glibc's resolver: 5 s per attempt, so lost queries show at 5 s and 10 s.
pub const DNS_RUNGS_S: [f64; 2] = [5.0, 10.0];

/// The DNS rung a lookup of `dns_s` sits on.
pub fn match_dns_rung(dns_s: f64) -> Option<f64> {
    DNS_RUNGS_S
        .iter()
        .copied()
        .find(|t| dns_s >= *t && dns_s <= 1.13 * t + 0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_ladder() {
        let s = SynSchedule::classic();
        assert_eq!(s.rungs(), [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]);
        assert_eq!(s.give_up(), 127.0);
        assert_eq!(s.describe(), "1, 3, 7, 15, 31, 63 s, gives up at 127 s");
    }

    #[test]
    fn linear_timeouts_ladder() {
        let s = SynSchedule::linux(6, 4);
        assert_eq!(
            s.rungs(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 11.0, 19.0, 35.0, 67.0]
        );
        assert_eq!(s.give_up(), 131.0);
    }

    #[test]
    fn every_syn_a_connect_sends() {
        assert_eq!(SynSchedule::classic().syns(), 7);
        assert_eq!(SynSchedule::linux(6, 4).syns(), 11);
        assert_eq!(SynSchedule::windows().syns(), 3);
    }

    #[test]
    fn windows_ladder() {
        assert_eq!(SynSchedule::windows().rungs(), [3.0, 9.0]);
        assert_eq!(SynSchedule::windows().give_up(), 21.0);
    }

    #[test]
    fn matching_allows_late_never_early() {
        let s = SynSchedule::classic();
        // Seen on real kernels (HZ=250): 15.3-15.5, 31.4-31.6, 64.4-65.6 s.
        for (t, k) in [
            (1.004, 1),
            (3.04, 2),
            (15.5, 4),
            (31.6, 5),
            (64.4, 6),
            (65.6, 6),
            (65.7, 6),
        ] {
            assert_eq!(s.match_rung(t, 0.0005), Some(k), "{t}");
        }
        assert_eq!(s.match_rung(0.99, 0.0), None, "early is not a rung");
        assert_eq!(s.match_rung(2.0, 0.0), None, "between rungs");
        assert_eq!(s.match_rung(1.5, 0.0), None);
        // The path's base time shifts the window up, both edges.
        assert_eq!(s.match_rung(1.25, 0.2), Some(1));
        assert_eq!(s.match_rung(1.1, 0.2), None, "below 1 s + base");
        assert_eq!(s.match_rung(1.45, 0.2), None, "above 1.23 s + base");
        let l = SynSchedule::linux(6, 4);
        assert_eq!(l.match_rung(2.05, 0.0), Some(2));
        assert_eq!(l.match_rung(67.5, 0.0), Some(10));
    }

    #[test]
    fn the_rung_window_is_pinned_at_both_edges() {
        let s = SynSchedule::classic();
        // Rung T matches in [T, 1.13 T + 0.1 s] above the base, and not a
        // hair outside: a looser window would take jitter for rungs.
        for (k, t) in s.rungs().iter().enumerate() {
            let k = k as u32 + 1;
            let hi = 1.13 * t + 0.1;
            assert_eq!(s.match_rung(*t, 0.0), Some(k), "{t} s");
            assert_eq!(s.match_rung(hi - 1e-9, 0.0), Some(k), "{t} s at its top");
            assert_eq!(s.match_rung(t - 1e-6, 0.0), None, "{t} s early");
            if k < 6 {
                assert_ne!(s.match_rung(hi + 1e-3, 0.0), Some(k), "{t} s past its top");
            }
        }
        assert_eq!(
            s.match_rung(17.06, 0.0),
            None,
            "the 15 s rung ends at 17.05 s"
        );
        assert_eq!(
            s.match_rung(71.3, 0.0),
            None,
            "the 63 s rung ends at 71.29 s"
        );
    }

    #[test]
    fn dns_rungs() {
        assert_eq!(match_dns_rung(5.02), Some(5.0));
        assert_eq!(match_dns_rung(10.3), Some(10.0));
        assert_eq!(match_dns_rung(0.5), None);
        // The same late-never-early window: [T, 1.13 T + 0.1 s].
        assert_eq!(
            match_dns_rung(5.7),
            Some(5.0),
            "5.75 s is the 5 s rung's top"
        );
        assert_eq!(match_dns_rung(6.0), None);
        assert_eq!(match_dns_rung(11.35), Some(10.0));
        assert_eq!(match_dns_rung(11.45), None);
        assert_eq!(match_dns_rung(4.99), None, "never early");
    }
}
