//! The judge: the detector over the window, on a period and as stalls
//! begin and end; the verdict it publishes, and the alerts it raises,
//! updates and resolves, in the log and over OTLP.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::export::prometheus::Metrics;
use crate::stats::Stats;
use crate::wire::findings::FindingsDoc;

/// The shortest gap between two judge runs woken by stalls, and how many
/// times the last run's duration the gap is at least: judging woken by a
/// storm of stalls takes at most a tenth of one core.
const EVENT_GAP: std::time::Duration = std::time::Duration::from_secs(1);
const EVENT_GAP_FACTOR: u32 = 10;

/// What the judge reads and where its verdict goes.
pub(super) struct Judge {
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub verdict: Arc<std::sync::RwLock<FindingsDoc>>,
    pub slos: Arc<std::sync::Mutex<crate::slo::Tracker>>,
    /// The SLO tracker's clock starts here.
    pub epoch: std::time::Instant,
    pub otlp: Option<Arc<crate::export::otlp::Otlp>>,
    pub cfg: crate::config::DetectConfig,
    /// A pod prober reads its node's facts as a pod sees them.
    pub kind: crate::model::SourceKind,
}

impl Judge {
    /// Starts judging until `cancel` fires; await the handle to know it
    /// has stopped.
    pub fn start(self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(cancel))
    }

    /// Runs the detector over the window every `[detect] interval`, and within
    /// a second of a probe stalling in SYN_SENT or a stalled probe landing (the
    /// stalls judged as censored evidence), off the probing path; publishes the
    /// verdict, and turns findings and firing SLO alerts into alerts: raised
    /// once (provisional ones "in progress", updated once when final), re-sent
    /// while active, resolved once; in the log, and over OTLP as log records
    /// when configured.
    async fn run(self, cancel: CancellationToken) {
        use crate::export::alerts::{self, Alerter};
        let Judge {
            stats,
            metrics,
            verdict,
            slos,
            epoch,
            otlp,
            cfg,
            kind,
        } = self;
        let period = cfg
            .interval
            .get()
            .max(std::time::Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = (tokio::time::Instant::now(), std::time::Duration::ZERO);
        let detector = cfg.detector();
        let resend = otlp
            .as_ref()
            .map(|o| o.alert_resend())
            .unwrap_or(std::time::Duration::from_secs(600));
        // The judge runs as stalls arrive, a second apart: a scope that widens
        // between two runs must not raise, resolve and raise again.
        let mut alerter =
            Alerter::new(resend).settle_all(crate::export::alerts::PROVISIONAL_SETTLE);
        let mut csum_errors = crate::node::CounterWindow::default();
        let mut counters = crate::node::CounterWindows::default();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
                // A provisional finding settling is judged again before it
                // would be raised.
                _ = tokio::time::sleep(EVENT_GAP), if alerter.settling() => {}
                _ = stats.live().changed() => {
                    let gap = EVENT_GAP.max(last.1 * EVENT_GAP_FACTOR);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep_until(last.0 + gap) => {}
                    }
                }
            }
            let began = tokio::time::Instant::now();
            let node = verdict
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .source_node
                .clone();
            let mut facts = crate::node::gather(&node).await;
            facts.udp_in_csum_errors_delta = facts
                .udp_in_csum_errors
                .and_then(|n| csum_errors.rise(std::time::Instant::now(), n, cfg.window.get()));
            facts.rises =
                counters.rises(std::time::Instant::now(), &facts.counters, cfg.window.get());
            if kind == crate::model::SourceKind::Pod {
                facts = facts.read_in_a_pod();
            }
            // Copying the window and judging it is CPU work: on the blocking
            // pool, so it never delays a probe's timer.
            let since = std::time::SystemTime::now() - cfg.window.get();
            let (judged, f, d) = (Arc::clone(&stats), facts.clone(), detector.clone());
            let findings = match tokio::task::spawn_blocking(move || {
                let windows = judged.snapshot(since);
                crate::detect::detect(&windows, std::slice::from_ref(&f), &d)
            })
            .await
            {
                Ok(findings) => findings,
                Err(e) => {
                    tracing::error!(error = %e, "The detector failed; keeping the last verdict.");
                    continue;
                }
            };
            metrics.set_findings(&findings);
            let states = slos
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .evaluate(epoch.elapsed().as_secs());
            metrics.set_slo(&states);
            let conditions = findings
                .iter()
                .map(|f| alerts::finding(f, alerts::Source::Prober))
                .chain(
                    states
                        .iter()
                        .filter(|(s, _)| s.firing)
                        .map(|(s, a)| alerts::slo(s, a)),
                )
                .collect();
            for a in alerter.update(std::time::Instant::now(), conditions) {
                log(&a);
                if let Some(o) = &otlp {
                    o.send(&a);
                }
            }
            let mut v = verdict.write().unwrap_or_else(|e| e.into_inner());
            v.generated_at =
                Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
            v.facts = Some(facts);
            v.findings = findings;
            drop(v);
            last = (began, began.elapsed());
        }
    }
}

/// One alert's change, in the log.
fn log(a: &crate::export::alerts::Alert) {
    use crate::export::alerts::{AlertKey, Phase};
    let slo = matches!(a.condition.key, AlertKey::Slo { .. });
    match (a.phase, slo) {
        (Phase::Raised, false) if a.condition.provisional => {
            tracing::warn!(finding = %a.condition.summary, "Finding raised, in progress.")
        }
        (Phase::Raised, false) => {
            tracing::warn!(finding = %a.condition.summary, "Finding raised.")
        }
        (Phase::Updated, _) => {
            tracing::warn!(finding = %a.condition.summary, "Finding confirmed.")
        }
        (Phase::Resolved, false) => {
            tracing::info!(finding = %a.condition.summary, "Finding cleared.")
        }
        (Phase::Raised, true) => {
            tracing::warn!(alert = %a.condition.summary, "SLO alert firing.")
        }
        (Phase::Resolved, true) => {
            tracing::info!(alert = %a.condition.summary, "SLO alert resolved.")
        }
        (Phase::Active, _) => {
            tracing::info!(alert = %a.condition.summary, "Alert still active.")
        }
    }
}
