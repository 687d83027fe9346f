//! The one-shot run: probe every target N times from this host, wait for
//! every probe (up to its timeout, past the last SYN rung), report. It shares
//! the probe, stats and report code with the daemon; only the driver differs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Loaded;
use crate::export::Recorder;
use crate::export::otlp::{Otlp, OtlpError};
use crate::model::Record;
use crate::probe::Prober;
use crate::stats::{Live, PendingStall};
use crate::stats::{Retention, Series, Stats};
use crate::wire::report::MatrixReport;

#[derive(Debug, Clone)]
pub struct MatrixOptions {
    pub samples: u32,
    pub concurrency: usize,
    /// Pause between probe starts, so a run is not one burst of SYNs.
    pub spacing: Duration,
    /// Show a live line on stderr (in-flight and SYN-stalled probes).
    pub progress: bool,
    /// Where probe traces and metrics go, when OTLP is configured.
    pub otlp: Option<Arc<Otlp>>,
    /// End the run as soon as the verdict is certain, judging the probes
    /// still waiting in SYN_SENT as censored evidence.
    pub until_verdict: bool,
    /// What the verdict watch judges with (set by [`run`]).
    watch: Option<Arc<UntilVerdict>>,
}

/// What `--until-verdict` judges with, and what it found.
#[derive(Debug)]
pub struct UntilVerdict {
    pub facts: crate::model::NodeFacts,
    pub detector: crate::model::DetectorConfig,
    reached: std::sync::Mutex<Option<Early>>,
}

/// The verdict a run ended on before its probes landed.
#[derive(Debug, Clone)]
pub struct Early {
    pub after: Duration,
    /// The windows judged, with the stalls then pending: the report
    /// judges them again with the node's facts read at the end.
    pub windows: Vec<crate::model::SeriesWindow>,
}

impl UntilVerdict {
    pub fn new(facts: crate::model::NodeFacts, detector: crate::model::DetectorConfig) -> Self {
        Self {
            facts,
            detector,
            reached: Default::default(),
        }
    }

    /// The verdict the run ended on, if it ended early.
    pub fn reached(&self) -> Option<Early> {
        self.reached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// How often `--until-verdict` judges, and for how long the same findings
/// must hold before the run ends: a verdict that survives a second of new
/// probes and stalls, not the first two unlucky SYNs of a cell.
const VERDICT_POLL: Duration = Duration::from_millis(500);
const VERDICT_HOLD: Duration = Duration::from_secs(1);

impl MatrixOptions {
    pub fn from_loaded(loaded: &Loaded) -> Self {
        let m = &loaded.config.matrix;
        Self {
            samples: m.samples,
            concurrency: m.concurrency,
            spacing: m.spacing.get(),
            progress: false,
            otlp: None,
            until_verdict: false,
            watch: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    #[error(transparent)]
    OpenFiles(#[from] crate::probe::limits::FdLimitError),
}

/// Runs the matrix; cancelled probes are counted as such in the report.
/// Exports over OTLP when configured, and flushes before returning.
pub async fn run(
    loaded: &Loaded,
    opts: &MatrixOptions,
    cancel: &CancellationToken,
) -> Result<MatrixReport, MatrixError> {
    crate::probe::limits::raise_open_files(opts.concurrency)?;
    let prober = Arc::new(Prober::from_loaded(loaded));
    let done = Arc::new(AtomicU64::new(0));
    let total = loaded.targets.len() as u64 * u64::from(opts.samples);
    let progress = opts
        .progress
        .then(|| Progress::start(total, Arc::clone(&done), Arc::clone(&prober.live)));
    let facts = crate::node::gather(&prober.source_node).await;
    let mut opts = opts.clone();
    if opts.otlp.is_none() {
        opts.otlp = Otlp::start(
            loaded.config.otlp.as_ref(),
            &prober.source_node,
            facts.syn_schedule(),
            Default::default(),
        )?
        .map(Arc::new);
    }
    let node = prober.source_node.clone();
    if opts.until_verdict {
        opts.watch = Some(Arc::new(UntilVerdict::new(
            facts.clone(),
            loaded.config.detect.detector(),
        )));
    }
    let (mut report, series) = run_with(prober, &loaded.targets, &opts, cancel, &done).await;
    if let Some(p) = progress {
        p.finish();
    }
    // Read again: what rose while the probes ran is this node's evidence
    // as a receiver.
    let facts = crate::node::with_rise(&facts, crate::node::gather(&node).await);
    let early = opts.watch.as_ref().and_then(|u| u.reached());
    report.findings = match &early {
        // The windows the verdict was reached on: the probes it stopped
        // are cancelled in the series, but were waiting on a rung then.
        Some(e) => crate::detect::detect(
            &e.windows,
            std::slice::from_ref(&facts),
            &loaded.config.detect.detector(),
        ),
        None => crate::detect::detect(
            &windows(&series),
            std::slice::from_ref(&facts),
            &loaded.config.detect.detector(),
        ),
    };
    if let Some(e) = &early {
        report.mark_early(e.after, &e.windows);
    }
    crate::export::finish_one_shot(opts.otlp.clone(), &report.findings).await;
    report.facts = Some(facts);
    Ok(report)
}

/// Every sample of a one-shot run's series, as the detector takes them.
pub fn windows(series: &[Series]) -> Vec<crate::model::SeriesWindow> {
    series
        .iter()
        .map(|s| s.window_samples(SystemTime::UNIX_EPOCH))
        .collect()
}

/// Runs the matrix with a given prober (its node, kind and in-flight
/// counters), counting finished probes in `done`. Every probe goes through
/// the same [`Recorder`] fan-out as the daemon's (OTLP when configured, the
/// stats, `done`). Returns the report (without findings) and the series,
/// samples included, for the detector.
pub async fn run_with(
    prober: Arc<Prober>,
    targets: &[Arc<crate::model::Target>],
    opts: &MatrixOptions,
    cancel: &CancellationToken,
    done: &Arc<AtomicU64>,
) -> (MatrixReport, Vec<Series>) {
    let stats = Arc::new(Stats::with_live(
        Retention::ONE_SHOT,
        Arc::clone(&prober.live),
    ));
    let recorder = Arc::new(
        Recorder::new(opts.otlp.clone())
            .with(Arc::clone(&stats) as _)
            .with(Arc::clone(done) as _),
    );
    let started = SystemTime::now();
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let tasks = TaskTracker::new();
    // Cancelled by the caller, or by the verdict watch once it is certain.
    let cancel = &cancel.child_token();
    let watch = opts.watch.as_ref().map(|u| {
        tokio::spawn(watch_verdict(
            Arc::clone(u),
            Arc::clone(&stats),
            cancel.clone(),
        ))
    });
    // Round-robin over targets, so every target has probes in flight early.
    'launch: for _ in 0..opts.samples {
        for target in targets {
            let permit = tokio::select! {
                _ = cancel.cancelled() => break 'launch,
                p = Arc::clone(&limit).acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let (prober, recorder, target, cancel) = (
                Arc::clone(&prober),
                Arc::clone(&recorder),
                Arc::clone(target),
                cancel.clone(),
            );
            tasks.spawn(async move {
                for (r, stall) in prober.probe_each(&target, &cancel).await {
                    recorder.record(&r, None);
                    drop(stall);
                }
                drop(permit);
            });
            if !opts.spacing.is_zero() {
                tokio::time::sleep(opts.spacing).await;
            }
        }
    }
    tasks.close();
    tasks.wait().await;
    if let Some(w) = watch {
        w.abort();
    }
    let series = stats.series();
    let report = MatrixReport::new(
        &prober.source_node,
        prober.source_kind,
        started,
        SystemTime::now(),
        opts.samples,
        &series,
    );
    (report, series)
}

/// Judges the run every [`VERDICT_POLL`] (and when a stall begins or
/// ends), the stalls as censored evidence; once the same findings have held
/// for [`VERDICT_HOLD`], keeps them and ends the run.
async fn watch_verdict(until: Arc<UntilVerdict>, stats: Arc<Stats>, cancel: CancellationToken) {
    let t0 = std::time::Instant::now();
    let mut hold = crate::detect::VerdictHold::new(VERDICT_HOLD);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(VERDICT_POLL) => {}
            _ = stats.live().changed() => {}
        }
        // Copying and judging is CPU work: off the runtime's workers, so
        // the probes' timers keep time.
        let (stats, until_) = (Arc::clone(&stats), Arc::clone(&until));
        let Ok((windows, findings)) = tokio::task::spawn_blocking(move || {
            let windows = stats.snapshot(SystemTime::UNIX_EPOCH);
            let findings = crate::detect::detect(
                &windows,
                std::slice::from_ref(&until_.facts),
                &until_.detector,
            );
            (windows, findings)
        })
        .await
        else {
            return;
        };
        if hold.held(&findings, std::time::Instant::now()) {
            *until.reached.lock().unwrap_or_else(|e| e.into_inner()) = Some(Early {
                after: t0.elapsed(),
                windows,
            });
            cancel.cancel();
            return;
        }
    }
}

/// A progress bar that says how many probes wait on SYN retransmission, and
/// on which paths, so a person watching a 63 s rung knows why nothing
/// moves and where.
pub struct Progress {
    bar: indicatif::ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(total: u64, done: Arc<AtomicU64>, live: Arc<Live>) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {pos}/{len} probes done {msg}",
            )
            .expect("the template is valid"),
        );
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                b.set_position(done.load(Ordering::Relaxed));
                let stalled = live.pending();
                b.set_message(if stalled.is_empty() {
                    format!("({} in flight)", live.probes())
                } else {
                    format!(
                        "({} in flight, {} waiting on SYN retransmission: {})",
                        live.probes(),
                        stalled.len(),
                        stalls_by_path(&stalled)
                    )
                });
                b.tick();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self { bar, ticker }
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// The stalls by destination and path, most first, three at most:
/// "node2 cross-node 8 (>=2 SYNs lost), node3 cross-node 7 (>=1)".
pub fn stalls_by_path(stalled: &[PendingStall]) -> String {
    let mut by: std::collections::BTreeMap<(String, &str), (usize, u32)> = Default::default();
    for PendingStall {
        dims: d,
        pending: p,
        ..
    } in stalled
    {
        let e = by
            .entry((d.destination_or_unknown().to_string(), d.path.as_str()))
            .or_insert((0, u32::MAX));
        e.0 += 1;
        e.1 = e.1.min(p.syn_retransmits);
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1.0));
    let more = v.len().saturating_sub(3);
    let mut out: Vec<String> = v
        .into_iter()
        .take(3)
        .map(|((dest, path), (n, k))| format!("{dest} {path} {n} (>={k} SYNs lost)"))
        .collect();
    if more > 0 {
        out.push(format!("{more} more paths"));
    }
    out.join(", ")
}

/// The finished probes of a one-shot run, for its progress display.
impl Record for std::sync::atomic::AtomicU64 {
    fn record(&self, _r: &crate::model::ProbeResult, _trace: Option<&crate::model::TraceRef>) {
        self.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}
