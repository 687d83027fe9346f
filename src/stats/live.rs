//! The evidence still in motion: probes in flight, and those stalled in
//! SYN_SENT with the SYNs each has lost so far (the censored evidence the
//! judge, `/metrics` and the window document read before the probes land).
//! A stall is registered on its first lost SYN and held until its probe's
//! result has been recorded; [`super::Reading`] takes the stalls before the
//! samples, so a probe between the two is seen twice at worst, never not
//! at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::model::{Dims, Pending, SeriesWindow, SourceKind, Target};

use super::{Series, Stats};

/// One reading of the evidence: the stalls in progress, taken when the
/// reading is made, and the series, read after. A probe landing between
/// the two shows as a stall and a sample (the copy is dropped where they
/// meet: `model::attach_pending`), never as neither. Every reader of both
/// reads through this.
#[derive(Debug)]
pub struct Reading<'a> {
    pub stalls: Vec<PendingStall>,
    stats: &'a Stats,
}

impl<'a> Reading<'a> {
    pub(super) fn new(stats: &'a Stats) -> Self {
        Self {
            stalls: stats.live.pending(),
            stats,
        }
    }

    /// Calls `f` on every series in key order (see `Stats::visit`).
    pub fn visit(&self, f: impl FnMut(&Series)) {
        self.stats.visit(f);
    }

    /// Every series' samples at or after `since`, without the histograms,
    /// with its stalls attached (a series whose only probes are stalled
    /// gets a window of its own).
    pub fn windows(self, since: SystemTime) -> Vec<SeriesWindow> {
        let mut out = Vec::new();
        self.visit(|s| out.push(s.window_samples(since)));
        crate::model::attach_pending(
            &mut out,
            self.stalls
                .into_iter()
                .map(|s| (s.dims, s.pending))
                .collect(),
        );
        out
    }
}

/// A stall in progress as readers see it: its series, its target's URL and
/// what it has lost so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStall {
    pub dims: Dims,
    pub url: String,
    pub pending: Pending,
}

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

/// Probes in flight right now, and the ones stalled in SYN retransmission:
/// what a progress display shows while a 63 s rung runs, and what the
/// detector judges before the probes land (see `model::Pending`). Probes
/// and passive mode write here; every reader reads through `Stats`.
#[derive(Debug, Default)]
pub struct Live {
    probes: AtomicUsize,
    stalls: Mutex<HashMap<u64, Stall>>,
    next: AtomicU64,
    changed: Notify,
    /// The node's own connects stalled in SYN_SENT, as passive mode last
    /// read them: judged as the probes' stalls are.
    passive: Mutex<Vec<PendingStall>>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Stall>> {
        self.stalls.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn probes(&self) -> usize {
        self.probes.load(Ordering::Relaxed)
    }

    pub fn syn_stalled(&self) -> usize {
        self.lock().len()
    }

    /// Counts a probe in flight until the guard is dropped, so
    /// cancellation and timeouts cannot leak a count.
    pub fn in_flight(&self) -> InFlightGuard<'_> {
        self.probes.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(&self.probes)
    }

    /// Every stall in progress, the probes' then passive mode's. Readers
    /// that also read samples go through [`super::Stats::reading`].
    pub fn pending(&self) -> Vec<PendingStall> {
        let now = Instant::now();
        let passive = self
            .passive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.lock()
            .values()
            .map(|s| PendingStall {
                dims: Dims::of_target(&s.source_node, s.source_kind, &s.target),
                url: s.target.url.clone(),
                pending: Pending {
                    at: s.at,
                    syn_retransmits: s.syn_retransmits,
                    stalled_after: s.stalled_after,
                    waited: now.saturating_duration_since(s.t0),
                },
            })
            .chain(passive)
            .collect()
    }

    /// Replaces the node's own connects stalled in SYN_SENT (passive
    /// mode's last reading); wakes the judge when one began, ended or lost
    /// another SYN.
    pub fn set_passive(&self, stalls: Vec<PendingStall>) {
        fn shape(v: &[PendingStall]) -> Vec<(&Dims, u32)> {
            // Not `at`: passive mode derives it from the monotonic clock at
            // each reading, and it may move by a microsecond.
            let mut s: Vec<(&Dims, u32)> = v
                .iter()
                .map(|s| (&s.dims, s.pending.syn_retransmits))
                .collect();
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

    /// Resolves when a stall begins or ends, or a probe that lost SYNs is
    /// recorded: when a verdict may have changed. One waiter; a change
    /// while no one waits is kept for the next.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

/// Decrements [`Live`]'s probe count when dropped.
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a AtomicUsize);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A probe's place in the stalls: empty until its first lost SYN, removed
/// when dropped. The probe's driver drops it after recording the result.
/// A probe that lost SYNs but landed before it was seen stalled (the 1 s
/// escape of a rehashed flow) wakes the judge all the same.
#[derive(Debug, Default)]
pub struct StallHold {
    held: Option<(Arc<Live>, u64)>,
    wake: Option<Arc<Live>>,
}

impl StallHold {
    /// The probe landed having lost `syn_retransmits` SYNs: if it lost any
    /// and was never seen stalled, the judge is woken when this is dropped,
    /// since its result, recorded by then, may change the verdict. A held
    /// stall wakes it anyway, by ending.
    pub fn landed(&mut self, live: &Arc<Live>, syn_retransmits: u32) {
        if syn_retransmits > 0 && self.held.is_none() {
            self.wake = Some(Arc::clone(live));
        }
    }

    /// Records that the probe of `target` from `source_node` has lost
    /// `syn_retransmits` SYNs so far.
    pub fn lost(
        &mut self,
        live: &Arc<Live>,
        syn_retransmits: u32,
        (at, t0): (SystemTime, Instant),
        (target, source_node, source_kind): (&Arc<Target>, &Arc<str>, SourceKind),
    ) {
        match &self.held {
            Some((_, id)) => {
                // Another SYN lost changes how far the probe is, not
                // whether it stalled: no one is woken for it.
                if let Some(s) = live.lock().get_mut(id) {
                    s.syn_retransmits = syn_retransmits;
                }
            }
            None => {
                let id = live.next.fetch_add(1, Ordering::Relaxed);
                live.lock().insert(
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
                self.held = Some((Arc::clone(live), id));
                live.changed.notify_one();
            }
        }
    }
}

impl Drop for StallHold {
    fn drop(&mut self) {
        if let Some((live, id)) = self.held.take() {
            live.lock().remove(&id);
            live.changed.notify_one();
        } else if let Some(live) = self.wake.take() {
            live.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the judge was woken (a wake-up while no one waits is kept).
    async fn woken(f: &Live) -> bool {
        tokio::time::timeout(Duration::from_millis(20), f.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_probe_that_lost_syns_unseen_wakes_the_judge_when_it_lands() {
        let f = Arc::new(Live::default());
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
        let f = Arc::new(Live::default());
        let t = Arc::new(Target::parse("t", "http://127.0.0.1:1/").unwrap());
        let node: Arc<str> = "node1".into();
        let mut hold = StallHold::default();
        let now = (SystemTime::now(), Instant::now());
        hold.lost(&f, 1, now, (&t, &node, SourceKind::Host));
        assert!(woken(&f).await, "a stall began");
        assert_eq!(f.syn_stalled(), 1);
        hold.lost(&f, 2, now, (&t, &node, SourceKind::Host));
        assert!(!woken(&f).await, "another SYN lost: no news");
        assert_eq!(f.pending()[0].pending.syn_retransmits, 2);
        hold.landed(&f, 2);
        drop(hold);
        assert!(woken(&f).await, "it ended");
        assert!(!woken(&f).await, "once");
        assert_eq!(f.syn_stalled(), 0);
    }

    #[test]
    fn a_snapshot_carries_the_stalls_with_their_series() {
        let stats = Stats::new(crate::stats::Retention::ONE_SHOT);
        let now = SystemTime::now();
        let landed = crate::stats::tests::result(3_000, crate::model::Outcome::Ok, now);
        stats.record(&landed);
        let node: Arc<str> = landed.source_node.clone();
        // The same target, whose node discovery knew before the probe.
        let same = Arc::new(
            Target::parse("t", "http://127.0.0.1:1/")
                .unwrap()
                .with_node(crate::model::TargetNode::Known("n2".into())),
        );
        let mut stalled = StallHold::default();
        // A probe of the same series, stalled now.
        stalled.lost(
            stats.live(),
            2,
            (now, Instant::now()),
            (&same, &node, landed.source_kind),
        );
        // A target whose only probe so far is stalled.
        let new = Arc::new(Target::parse("new", "http://127.0.0.1:2/").unwrap());
        let mut first = StallHold::default();
        first.lost(
            stats.live(),
            1,
            (now, Instant::now()),
            (&new, &node, landed.source_kind),
        );
        let windows = stats.snapshot(SystemTime::UNIX_EPOCH);
        let of = |target: &str| windows.iter().find(|w| &*w.dims.target == target).unwrap();
        assert_eq!(windows.len(), 2);
        // The landed probe and the stall share a start: the stall is taken
        // as the probe it became, once.
        assert_eq!(
            (
                of(&landed.target.name).samples.len(),
                of(&landed.target.name).pending.len()
            ),
            (1, 0)
        );
        assert_eq!(of("new").samples.len(), 0);
        assert_eq!(of("new").pending[0].syn_retransmits, 1);
        drop(first);
        assert_eq!(
            stats.snapshot(SystemTime::UNIX_EPOCH).len(),
            1,
            "an ended stall leaves"
        );
        drop(stalled);
    }

    #[test]
    fn the_count_follows_its_guards() {
        let f = Live::default();
        let a = f.in_flight();
        let b = f.in_flight();
        assert_eq!(f.probes(), 2);
        drop(a);
        drop(b);
        assert_eq!(f.probes(), 0);
    }
}
