//! The probes stalled in SYN_SENT right now, each with the SYNs it has lost
//! so far. A stall is registered on its first lost SYN and held until its
//! probe's result has been recorded, so a reader that takes the stalls
//! before the samples never misses a probe between the two.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::model::{Dims, Pending, SourceKind, Target};

/// One stall, kept small: a probe stuck in SYN_SENT costs this on top of
/// its socket and task, so the series is built when the stalls are read.
#[derive(Debug)]
struct Stall {
    target: Arc<Target>,
    source_node: Arc<str>,
    source_kind: SourceKind,
    at: SystemTime,
    t0: Instant,
    syn_retransmits: u32,
    stalled_after: Duration,
}

#[derive(Debug, Default)]
pub(super) struct Stalls {
    map: Mutex<HashMap<u64, Stall>>,
    next: AtomicU64,
    changed: Notify,
    /// The node's own connects stalled in SYN_SENT, as passive mode last
    /// read them: judged as the probes' stalls are.
    passive: Mutex<Vec<(Dims, String, Pending)>>,
}

impl Stalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Stall>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Replaces the passive stalls; wakes the judge when one began, ended
    /// or lost another SYN.
    pub(super) fn set_passive(&self, stalls: Vec<(Dims, String, Pending)>) {
        fn shape(v: &[(Dims, String, Pending)]) -> Vec<(&Dims, u32)> {
            // Not `at`: passive mode derives it from the monotonic clock at
            // each reading, and it may move by a microsecond.
            let mut s: Vec<(&Dims, u32)> =
                v.iter().map(|(d, _, p)| (d, p.syn_retransmits)).collect();
            s.sort_unstable();
            s
        }
        let mut held = self.passive.lock().unwrap_or_else(|e| e.into_inner());
        let changed = shape(&held) != shape(&stalls);
        *held = stalls;
        drop(held);
        if changed {
            self.changed.notify_one();
        }
    }

    pub(super) fn pending(&self) -> Vec<(Dims, String, Pending)> {
        let now = Instant::now();
        let passive = self
            .passive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.lock()
            .values()
            .map(|s| {
                (
                    Dims::of_target(&s.source_node, s.source_kind, &s.target),
                    s.target.url.clone(),
                    Pending {
                        at: s.at,
                        syn_retransmits: s.syn_retransmits,
                        stalled_after: s.stalled_after,
                        waited: now.saturating_duration_since(s.t0),
                    },
                )
            })
            .chain(passive)
            .collect()
    }

    pub(super) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

/// A probe's place in the stalls: empty until its first lost SYN, removed
/// when dropped. The probe's driver drops it after recording the result.
/// A probe that lost SYNs but landed before it was seen stalled (the 1 s
/// escape of a rehashed flow) wakes the judge all the same.
#[derive(Debug, Default)]
pub struct StallHold {
    held: Option<(Arc<super::InFlight>, u64)>,
    wake: Option<Arc<super::InFlight>>,
}

impl StallHold {
    /// The probe landed having lost `syn_retransmits` SYNs: if it lost any
    /// and was never seen stalled, the judge is woken when this is dropped,
    /// since its result, recorded by then, may change the verdict. A held
    /// stall wakes it anyway, by ending.
    pub(super) fn landed(&mut self, in_flight: &Arc<super::InFlight>, syn_retransmits: u32) {
        if syn_retransmits > 0 && self.held.is_none() {
            self.wake = Some(Arc::clone(in_flight));
        }
    }

    /// Records that the probe of `target` from `source_node` has lost
    /// `syn_retransmits` SYNs so far.
    pub(super) fn lost(
        &mut self,
        in_flight: &Arc<super::InFlight>,
        syn_retransmits: u32,
        (at, t0): (SystemTime, Instant),
        (target, source_node, source_kind): (&Arc<Target>, &Arc<str>, SourceKind),
    ) {
        let stalls = &in_flight.stalls;
        match &self.held {
            Some((_, id)) => {
                // Another SYN lost changes how far the probe is, not
                // whether it stalled: no one is woken for it.
                if let Some(s) = stalls.lock().get_mut(id) {
                    s.syn_retransmits = syn_retransmits;
                }
            }
            None => {
                let id = stalls.next.fetch_add(1, Ordering::Relaxed);
                stalls.lock().insert(
                    id,
                    Stall {
                        target: Arc::clone(target),
                        source_node: Arc::clone(source_node),
                        source_kind,
                        at,
                        t0,
                        syn_retransmits,
                        stalled_after: t0.elapsed(),
                    },
                );
                self.held = Some((Arc::clone(in_flight), id));
                stalls.changed.notify_one();
            }
        }
    }
}

impl Drop for StallHold {
    fn drop(&mut self) {
        if let Some((in_flight, id)) = self.held.take() {
            in_flight.stalls.lock().remove(&id);
            in_flight.stalls.changed.notify_one();
        } else if let Some(in_flight) = self.wake.take() {
            in_flight.stalls.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::InFlight;
    use super::*;

    /// Whether the judge was woken (a wake-up while no one waits is kept).
    async fn woken(f: &InFlight) -> bool {
        tokio::time::timeout(Duration::from_millis(20), f.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_probe_that_lost_syns_unseen_wakes_the_judge_when_it_lands() {
        let f = Arc::new(InFlight::default());
        for (lost, wakes) in [(0, false), (1, true), (6, true)] {
            let mut hold = StallHold::default();
            hold.landed(&f, lost);
            assert!(!woken(&f).await, "not before the result is recorded");
            drop(hold);
            assert_eq!(woken(&f).await, wakes, "{lost} SYNs lost");
        }
    }

    #[tokio::test]
    async fn a_stall_wakes_the_judge_when_it_begins_and_ends_only() {
        let f = Arc::new(InFlight::default());
        let t = Arc::new(Target::parse("t", "http://127.0.0.1:1/").unwrap());
        let node: Arc<str> = "node1".into();
        let mut hold = StallHold::default();
        let now = (SystemTime::now(), Instant::now());
        hold.lost(&f, 1, now, (&t, &node, SourceKind::Host));
        assert!(woken(&f).await, "a stall began");
        assert_eq!(f.syn_stalled(), 1);
        hold.lost(&f, 2, now, (&t, &node, SourceKind::Host));
        assert!(!woken(&f).await, "another SYN lost: no news");
        assert_eq!(f.pending()[0].2.syn_retransmits, 2);
        hold.landed(&f, 2);
        drop(hold);
        assert!(woken(&f).await, "it ended");
        assert!(!woken(&f).await, "once");
        assert_eq!(f.syn_stalled(), 0);
    }
}
