//! Rate-limited logging: anything a probe loop or a watch can repeat logs
//! at most once per period, with the count of lines held back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lets one log line through per period and counts the ones held back.
#[derive(Debug)]
pub struct RateLimit {
    period_secs: u64,
    last: AtomicU64,
    held: AtomicU64,
}

impl RateLimit {
    pub fn new(period_secs: u64) -> Self {
        Self {
            period_secs,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last one)` when a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last.load(Ordering::Relaxed);
        if now >= last + self.period_secs
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_through_per_period() {
        let r = RateLimit::new(3600);
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        assert_eq!(r.held.load(Ordering::Relaxed), 2);
    }
}
