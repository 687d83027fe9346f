//! When a one-shot run may end early: its verdict has held. Both one-shot
//! drivers (`matrix --until-verdict` and `cluster matrix --until-verdict`)
//! judge again and again and end on the same rule.

use std::time::{Duration, Instant};

use super::{Finding, FindingKey};

/// The same findings (by kind and scope, never an empty set) seen for at
/// least `hold`: a verdict that survived new evidence.
#[derive(Debug)]
pub struct VerdictHold {
    hold: Duration,
    since: Option<(Vec<FindingKey>, Instant)>,
}

impl VerdictHold {
    pub fn new(hold: Duration) -> Self {
        Self { hold, since: None }
    }

    /// Feeds one judgement made at `now`; true once the same findings have
    /// held for the hold. No finding, or other findings, start it over.
    pub fn held(&mut self, findings: &[Finding], now: Instant) -> bool {
        self.held_keys(findings.iter().map(Finding::key).collect(), now)
    }

    fn held_keys(&mut self, keys: Vec<FindingKey>, now: Instant) -> bool {
        if keys.is_empty() {
            self.since = None;
            return false;
        }
        match &self.since {
            Some((k, since)) if *k == keys => now.duration_since(*since) >= self.hold,
            _ => {
                self.since = Some((keys, now));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::FindingKind;
    use crate::detect::scope::{Grouping, ScopeKey};

    fn key(kind: FindingKind) -> Vec<FindingKey> {
        vec![FindingKey {
            kind,
            scope: ScopeKey::bare(Grouping::Cell),
        }]
    }

    #[test]
    fn a_verdict_holds_once_the_same_findings_last_the_hold() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let mut h = VerdictHold::new(Duration::from_secs(1));
        let a = || key(FindingKind::SynRetransmitLadder);
        let b = || key(FindingKind::DnsTimeoutLadder);
        assert!(!h.held_keys(a(), s(0)));
        assert!(!h.held_keys(a(), s(900)));
        // Other findings start it over.
        assert!(!h.held_keys(b(), s(1_000)));
        assert!(!h.held_keys(b(), s(1_500)));
        assert!(h.held_keys(b(), s(2_000)));
        // So does a healthy judgement: an empty verdict never holds.
        assert!(!h.held_keys(vec![], s(2_100)));
        assert!(!h.held_keys(vec![], s(9_000)));
        assert!(!h.held_keys(b(), s(9_100)));
        assert!(h.held_keys(b(), s(10_100)));
    }
}
