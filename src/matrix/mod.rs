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
use crate::export::report::MatrixReport;
use crate::probe::scheduler::Sink;
use crate::probe::{InFlight, Prober};
use crate::stats::{Retention, Series, Stats};

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
}

impl MatrixOptions {
    pub fn from_loaded(loaded: &Loaded) -> Self {
        let m = &loaded.config.matrix;
        Self {
            samples: m.samples,
            concurrency: m.concurrency,
            spacing: m.spacing.get(),
            progress: false,
            otlp: None,
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
        .then(|| Progress::start(total, Arc::clone(&done), Arc::clone(&prober.in_flight)));
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
    let (mut report, series) = run_with(prober, &loaded.targets, &opts, cancel, &done).await;
    if let Some(p) = progress {
        p.finish();
    }
    // Read again: what rose while the probes ran is this node's evidence
    // as a receiver.
    let facts = crate::node::with_rise(&facts, crate::node::gather(&node).await);
    report.findings = crate::detect::detect(
        &windows(&series),
        std::slice::from_ref(&facts),
        &loaded.config.detect.detector(),
    );
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
    let stats = Arc::new(Stats::new(Retention::ONE_SHOT));
    let recorder = Arc::new(
        Recorder::new(opts.otlp.clone())
            .with(Arc::clone(&stats) as _)
            .with(Arc::clone(done) as _),
    );
    let started = SystemTime::now();
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let tasks = TaskTracker::new();
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
                let r = prober.probe(&target, &cancel).await;
                recorder.record(&r);
                drop(permit);
            });
            if !opts.spacing.is_zero() {
                tokio::time::sleep(opts.spacing).await;
            }
        }
    }
    tasks.close();
    tasks.wait().await;
    let series = stats.snapshot();
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

/// A progress bar that says how many probes wait on SYN retransmission, so a
/// person watching a 63 s rung knows why nothing moves.
pub struct Progress {
    bar: indicatif::ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(total: u64, done: Arc<AtomicU64>, in_flight: Arc<InFlight>) -> Self {
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
                let stalled = in_flight.syn_stalled();
                b.set_message(if stalled > 0 {
                    format!(
                        "({} in flight, {stalled} waiting on SYN retransmission)",
                        in_flight.probes()
                    )
                } else {
                    format!("({} in flight)", in_flight.probes())
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
