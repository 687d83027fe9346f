//! Fixed-rate schedules without coordinated omission. Every target has its
//! own timeline `t0 + k * interval + jitter_k`; a probe is spawned at each
//! point and never awaited by the schedule, so a probe stuck for 63 s delays
//! neither the next probe of its target nor any other target. When the
//! in-flight bound is reached the probe is skipped and counted, never queued.
//! Every result goes to one [`Record`], the driver's fan-out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Prober;
use crate::model::{Record, SkipReason, Target};

/// Runs one schedule per target until cancelled.
pub struct Scheduler {
    prober: Arc<Prober>,
    sink: Arc<dyn Record>,
    limit: Arc<Semaphore>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    schedules: HashMap<String, (Arc<Target>, CancellationToken)>,
}

impl Scheduler {
    pub fn new(
        prober: Arc<Prober>,
        sink: Arc<dyn Record>,
        max_in_flight: usize,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            prober,
            sink,
            limit: Arc::new(Semaphore::new(max_in_flight.max(1))),
            cancel,
            tasks: TaskTracker::new(),
            schedules: HashMap::new(),
        }
    }

    /// Makes the running schedules match `targets`: new ones start, removed
    /// ones stop (their in-flight probes finish), changed ones restart.
    pub fn sync(&mut self, targets: &[Arc<Target>]) {
        let wanted: HashMap<&str, &Arc<Target>> =
            targets.iter().map(|t| (t.name.as_str(), t)).collect();
        self.schedules.retain(|name, (running, stop)| {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|t| same_target(t, running));
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (name, target) in wanted {
            if self.schedules.contains_key(name) {
                continue;
            }
            let stop = self.cancel.child_token();
            self.tasks.spawn(schedule(
                Arc::clone(target),
                Arc::clone(&self.prober),
                Arc::clone(&self.sink),
                Arc::clone(&self.limit),
                stop.clone(),
                self.cancel.clone(),
                self.tasks.clone(),
            ));
            self.schedules
                .insert(name.to_string(), (Arc::clone(target), stop));
        }
    }

    /// How many schedules run.
    pub fn len(&self) -> usize {
        self.schedules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty()
    }

    /// Waits until every schedule and probe task has ended (after cancel).
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn same_target(a: &Target, b: &Target) -> bool {
    a.url == b.url
        && a.node == b.node
        && a.interval == b.interval
        && a.jitter == b.jitter
        && a.timeout == b.timeout
        && a.connect_timeout == b.connect_timeout
        && a.max_body_bytes == b.max_body_bytes
        && a.first_byte_timeout == b.first_byte_timeout
        && a.tls == b.tls
        && a.tls_timeout == b.tls_timeout
        && a.bearer_token_file == b.bearer_token_file
        && a.all_addresses == b.all_addresses
}

async fn schedule(
    target: Arc<Target>,
    prober: Arc<Prober>,
    sink: Arc<dyn Record>,
    limit: Arc<Semaphore>,
    stop: CancellationToken,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    // A random phase spreads targets over the interval instead of bursting.
    let t0 = Instant::now() + random_up_to(target.interval);
    for k in 0u32.. {
        let due = t0 + target.interval * k + random_up_to(target.jitter);
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            sink.skipped(&target, SkipReason::InFlightLimit);
            continue;
        };
        let (target, prober, sink, cancel) = (
            Arc::clone(&target),
            Arc::clone(&prober),
            Arc::clone(&sink),
            cancel.clone(),
        );
        tasks.spawn(async move {
            let start_lag = due.elapsed();
            for (mut result, stall) in prober.probe_each(&target, &cancel).await {
                result.start_lag = start_lag;
                sink.record(&result, None);
                // Only now: the stall stays visible until its sample is.
                drop(stall);
            }
            drop(permit);
        });
    }
}

fn random_up_to(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    Duration::from_nanos(rand::rng().random_range(0..d.as_nanos().min(u128::from(u64::MAX)) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule restarts when anything a probe reads changes, the TLS
    /// settings and the address expansion included; the name alone does not.
    #[test]
    fn a_target_is_the_same_only_if_its_probe_would_be() {
        let t = Target::parse("t", "https://a.example/").unwrap();
        assert!(same_target(&t, &t.clone()));
        let mut other = t.clone();
        other.tls.as_mut().unwrap().server_name = "b.example".into();
        assert!(!same_target(&t, &other));
        let mut other = t.clone();
        other.tls_timeout = Duration::from_secs(1);
        assert!(!same_target(&t, &other));
        let mut other = t.clone();
        other.all_addresses = true;
        assert!(!same_target(&t, &other));
        let mut other = t.clone();
        other.bearer_token_file = Some("/t".into());
        assert!(!same_target(&t, &other));
    }
}
