//! Fixed-rate schedules: a stuck probe delays nothing, and the in-flight
//! bound skips and counts instead of queueing.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Behaviour, Server};
use tailprobe::model::Target;
use tailprobe::model::{Outcome, ProbeResult, Record, SkipReason, SourceKind, TraceRef};
use tailprobe::probe::Prober;
use tailprobe::probe::scheduler::Scheduler;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Collect {
    results: Mutex<Vec<ProbeResult>>,
    skipped: AtomicUsize,
}

impl Record for Collect {
    fn record(&self, r: &ProbeResult, _trace: Option<&TraceRef>) {
        self.results.lock().unwrap().push(r.clone());
    }
    fn skipped(&self, _: &Target, reason: SkipReason) {
        assert_eq!(reason, SkipReason::InFlightLimit);
        self.skipped.fetch_add(1, Ordering::SeqCst);
    }
}

fn target(name: &str, url: &str, interval: Duration) -> Arc<Target> {
    let mut t = Target::parse(name, url)
        .unwrap()
        .with_timeout(Duration::from_secs(30));
    t.interval = interval;
    t.jitter = Duration::ZERO;
    Arc::new(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_target_does_not_delay_another() {
    let stuck = Server::start(Behaviour::Hang).await;
    let fast = Server::start(Behaviour::ok()).await;
    let prober = Arc::new(Prober::new("n1", SourceKind::Host));
    let sink = Arc::new(Collect::default());
    let cancel = CancellationToken::new();
    let mut s = Scheduler::new(Arc::clone(&prober), sink.clone(), 1000, cancel.clone());
    let interval = Duration::from_millis(50);
    s.sync(&[
        target("stuck", &stuck.url("/"), interval),
        target("fast", &fast.url("/"), interval),
    ]);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let hung_now = prober.live.probes();
    cancel.cancel();
    s.wait().await;

    let results = sink.results.lock().unwrap();
    let fast: Vec<_> = results.iter().filter(|r| r.target.name == "fast").collect();
    let stuck: Vec<_> = results
        .iter()
        .filter(|r| r.target.name == "stuck")
        .collect();
    // 2 s at 50 ms is 40 slots, less up to one interval of random phase.
    assert!(
        fast.len() >= 35,
        "fast target kept its rate: {} probes",
        fast.len()
    );
    assert!(fast.iter().filter(|r| r.outcome == Outcome::Ok).count() >= 35);
    let worst = fast.iter().map(|r| r.start_lag).max().unwrap();
    assert!(
        worst < Duration::from_millis(100),
        "worst start lag {worst:?}"
    );
    // The stuck target's probes overlapped instead of waiting for each other.
    assert!(
        hung_now >= 30,
        "{hung_now} stuck probes were in flight together"
    );
    assert!(stuck.iter().all(|r| r.outcome == Outcome::Cancelled));
    // The gauge may also hold a fast probe caught mid-flight.
    assert!(
        stuck.len() + 1 >= hung_now,
        "every in-flight probe was cancelled and counted"
    );
    assert_eq!(sink.skipped.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_in_flight_bound_skips_and_counts() {
    let stuck = Server::start(Behaviour::Hang).await;
    let prober = Arc::new(Prober::new("n1", SourceKind::Host));
    let sink = Arc::new(Collect::default());
    let cancel = CancellationToken::new();
    let mut s = Scheduler::new(prober, sink.clone(), 3, cancel.clone());
    s.sync(&[target("stuck", &stuck.url("/"), Duration::from_millis(20))]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    s.wait().await;
    let finished = sink.results.lock().unwrap().len();
    let skipped = sink.skipped.load(Ordering::SeqCst);
    assert_eq!(finished, 3, "only the bound's worth ran");
    assert!(
        skipped >= 15,
        "the rest were skipped and counted: {skipped}"
    );
}

#[tokio::test]
async fn sync_starts_and_stops_schedules() {
    let fast = Server::start(Behaviour::ok()).await;
    let sink = Arc::new(Collect::default());
    let cancel = CancellationToken::new();
    let mut s = Scheduler::new(
        Arc::new(Prober::new("n1", SourceKind::Host)),
        sink.clone(),
        10,
        cancel.clone(),
    );
    let a = target("a", &fast.url("/"), Duration::from_millis(20));
    let b = target("b", &fast.url("/"), Duration::from_millis(20));
    s.sync(&[a.clone(), b]);
    assert_eq!(s.len(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.sync(&[a]);
    assert_eq!(s.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let count_b = || {
        sink.results
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target.name == "b")
            .count()
    };
    let b_before = count_b();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b_after = count_b();
    assert!(b_before > 0);
    assert_eq!(b_before, b_after, "a removed target is no longer probed");
    cancel.cancel();
    s.wait().await;
}
