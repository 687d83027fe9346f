//! `tailprobe run`: probe continuously, serve the endpoints, stop cleanly.
//! On cancellation, in-flight probes end as `cancelled` and are counted before
//! the server stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Loaded;
use crate::export::prometheus::Metrics;
use crate::export::{Recorder, SloExporter};
use crate::probe::Prober;
use crate::probe::scheduler::Scheduler;
use crate::server::api::{self, ApiState};
use crate::stats::{Retention, Stats};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "cannot listen on {addr} ({source}); pick a free port with [server] listen or --listen"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Otlp(#[from] crate::export::otlp::OtlpError),
    #[error(transparent)]
    OpenFiles(#[from] crate::probe::limits::FdLimitError),
    #[error(transparent)]
    Token(#[from] crate::server::token::TokenError),
    #[error(transparent)]
    Kube(#[from] crate::targets::kubernetes::KubeError),
    #[error(
        "cannot listen on {addr} for the echo target ({source}); pick a free port with [kubernetes] echo_listen"
    )]
    EchoBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs until `cancel` fires. `ready` (if given) receives the bound address.
pub async fn run(
    loaded: Loaded,
    listen: Option<SocketAddr>,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), DaemonError> {
    let files = crate::probe::limits::raise_open_files(loaded.config.probe.max_in_flight)?;
    tracing::debug!(open_files = files, "Open-files limit raised.");
    let prober = Arc::new(Prober::from_loaded(&loaded));
    let stats = Arc::new(Stats::with_live(
        Retention {
            max_age: Some(loaded.config.detect.window.get()),
            ..Retention::DAEMON
        },
        Arc::clone(&prober.live),
    ));
    let metrics = Arc::new(Metrics::new(
        Arc::clone(stats.live()),
        &loaded.config.metrics,
    ));
    let facts = crate::node::gather(&prober.source_node).await;
    let otlp = crate::export::otlp::Otlp::start(
        loaded.config.otlp.as_ref(),
        &prober.source_node,
        facts.syn_schedule(),
        metrics.otlp.clone(),
    )?
    .map(Arc::new);
    let slo = Arc::new(SloExporter {
        tracker: Arc::new(std::sync::Mutex::new(crate::slo::Tracker::new(
            &loaded.config.slos,
        ))),
        metrics: Arc::clone(&metrics),
        epoch: std::time::Instant::now(),
    });
    let (slos, epoch) = (Arc::clone(&slo.tracker), slo.epoch);
    let recorder = Arc::new(
        Recorder::new(otlp.clone())
            .with(Arc::clone(&stats) as _)
            .with(Arc::clone(&metrics) as _)
            .with(slo),
    );
    let addr = listen.unwrap_or(loaded.config.server.listen);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let ready = Arc::new(AtomicBool::new(false));
    let verdict = Arc::new(std::sync::RwLock::new(crate::wire::findings::FindingsDoc {
        source_node: prober.source_node.to_string(),
        ..Default::default()
    }));
    // What a requested round probes: the targets of the moment.
    let current = Arc::new(std::sync::RwLock::new(loaded.targets.clone()));
    let state = ApiState {
        source_node: Arc::clone(&prober.source_node),
        source_kind: prober.source_kind,
        window: loaded.config.detect.window.get(),
        metrics: Arc::clone(&metrics),
        stats: Arc::clone(&stats),
        trace_url: loaded.config.ui.trace_url.clone(),
        node_labels: crate::node::labels_from_env(),
        ready: Arc::clone(&ready),
        verdict: Arc::clone(&verdict),
        targets: Arc::new(std::sync::RwLock::new(
            loaded
                .targets
                .iter()
                .map(|t| crate::wire::findings::TargetDoc::from(t.as_ref()))
                .collect(),
        )),
        token: match &loaded.config.server.token_file {
            Some(path) => Some(crate::server::token::read(path)?),
            None => None,
        },
        round: Some(round_fn(
            Arc::clone(&prober),
            Arc::clone(&current),
            (&loaded, otlp.clone()),
            cancel.clone(),
        )),
        round_busy: Arc::default(),
    };
    let listed = Arc::clone(&state.targets);
    // The server outlives probing by a moment, so the cancelled probes are
    // visible to a final scrape; it stops on its own token.
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(crate::server::http::serve(
        listener,
        api::router(state),
        crate::server::http::Limits::api(&loaded.config.server),
        server_counters(&metrics, "api"),
        server_stop.clone(),
    ));
    let mut scheduler = Scheduler::new(
        Arc::clone(&prober),
        recorder,
        loaded.config.probe.max_in_flight,
        cancel.clone(),
    );
    // With probing off, the targets still name passive destinations and
    // serve requested rounds; no timeline runs.
    let probing = loaded.config.probe.enabled;
    let scheduled =
        |all: &[Arc<crate::model::Target>]| if probing { all.to_vec() } else { Vec::new() };
    scheduler.sync(&scheduled(&loaded.targets));
    let passive = passive(&loaded, &prober, (&stats, &metrics), &current, &cancel);
    let kube = match &loaded.config.kubernetes {
        Some(k) => Some(
            start_kubernetes(
                k,
                &loaded,
                &prober,
                (metrics.kube.clone(), server_counters(&metrics, "echo")),
                &cancel,
                server_stop.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let judge = tokio::spawn(judge(
        Arc::clone(&stats),
        Arc::clone(&metrics),
        verdict,
        (slos, epoch),
        otlp.clone(),
        (loaded.config.detect.clone(), prober.source_kind),
        cancel.clone(),
    ));
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        %addr,
        node = %prober.source_node,
        source_kind = prober.source_kind.as_str(),
        targets = scheduler.len(),
        "Probing."
    );
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let mut discovered = kube.as_ref().map(|k| k.targets.clone());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(changed) = async {
                match discovered.as_mut() {
                    Some(rx) => Some(rx.changed().await),
                    None => None,
                }
            } => {
                if changed.is_err() {
                    discovered = None;
                    continue;
                }
                let found = discovered
                    .as_ref()
                    .map(|rx| Arc::clone(&rx.borrow()))
                    .unwrap_or_default();
                let all = crate::targets::merge(&loaded.targets, &found);
                prober.known_nodes.set(&prober.source_node, &all);
                scheduler.sync(&scheduled(&all));
                let since = std::time::SystemTime::now() - loaded.config.detect.window.get();
                let forgotten = stats.forget(|t| all.iter().any(|a| *a.name == *t), since);
                let dropped = metrics.retain_targets(|t| all.iter().any(|a| *a.name == *t));
                if dropped > 0 {
                    tracing::debug!(dropped, "Dropped the metric series of targets no longer probed.");
                }
                if forgotten > 0 {
                    tracing::debug!(forgotten, "Dropped the series of targets no longer probed.");
                }
                *listed.write().unwrap_or_else(|e| e.into_inner()) =
                    all.iter().map(|t| crate::wire::findings::TargetDoc::from(t.as_ref())).collect();
                *current.write().unwrap_or_else(|e| e.into_inner()) = all.clone();
                tracing::debug!(targets = scheduler.len(), "Schedules follow discovery.");
            }
        }
    }
    ready.store(false, Ordering::Relaxed);
    if let Some(k) = kube {
        let _ = k.registration.await;
    }
    scheduler.wait().await;
    if let Some(p) = passive {
        let _ = tokio::task::spawn_blocking(move || p.join()).await;
    }
    let _ = judge.await;
    let cancelled = stats.count(crate::model::Outcome::Cancelled);
    // Flush what probing exported before the servers drain, so a client
    // holding a connection open cannot delay the flush.
    if let Some(o) = otlp {
        let _ = tokio::task::spawn_blocking(move || o.shutdown()).await;
    }
    server_stop.cancel();
    if let Err(e) = server.await {
        tracing::warn!(error = %e, "The HTTP server task ended abnormally.");
    }
    tracing::info!(cancelled_probes = cancelled, "Stopped.");
    Ok(())
}

/// Starts passive mode when `[passive]` turns it on. A node where it cannot
/// load keeps probing: the error is logged and `tailprobe_passive_up`
/// stays 0.
fn passive(
    loaded: &Loaded,
    prober: &Arc<Prober>,
    (stats, metrics): (&Arc<Stats>, &Arc<Metrics>),
    targets: &Arc<std::sync::RwLock<Vec<Arc<crate::model::Target>>>>,
    cancel: &CancellationToken,
) -> Option<std::thread::JoinHandle<()>> {
    let cfg = &loaded.config.passive;
    if !cfg.enabled {
        return None;
    }
    if prober.source_kind != crate::model::SourceKind::Host {
        // Its own namespace would read as the host's.
        tracing::error!(
            "Passive mode is off: it runs in the host-network prober (source_kind = \"host\"), which tells the host's connections from the pods'."
        );
        return None;
    }
    // No tracer: a passive connect has no probe to trace.
    let sink = Arc::new(
        Recorder::new(None)
            .with(Arc::clone(stats) as _)
            .with(Arc::clone(metrics) as _),
    );
    let ctx = crate::passive::Context {
        source_node: Arc::clone(&prober.source_node),
        targets: Arc::clone(targets),
        sink,
        live: Arc::clone(stats.live()),
        metrics: metrics.passive.clone(),
    };
    match crate::passive::start(cfg, ctx, cancel.clone()) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::error!(error = %e, "Passive mode is off.");
            None
        }
    }
}

/// The shortest gap between two judge runs woken by stalls, and how many
/// times the last run's duration the gap is at least: judging woken by a
/// storm of stalls takes at most a tenth of one core.
const EVENT_GAP: std::time::Duration = std::time::Duration::from_secs(1);
const EVENT_GAP_FACTOR: u32 = 10;

/// Runs the detector over the window every `[detect] interval`, and within
/// a second of a probe stalling in SYN_SENT or a stalled probe landing (the
/// stalls judged as censored evidence), off the probing path; publishes the
/// verdict, and turns findings and firing SLO alerts into alerts: raised
/// once (provisional ones "in progress", updated once when final), re-sent
/// while active, resolved once; in the log, and over OTLP as log records
/// when configured.
#[allow(clippy::too_many_arguments)]
async fn judge(
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
    verdict: Arc<std::sync::RwLock<crate::wire::findings::FindingsDoc>>,
    (slos, epoch): (
        Arc<std::sync::Mutex<crate::slo::Tracker>>,
        std::time::Instant,
    ),
    otlp: Option<Arc<crate::export::otlp::Otlp>>,
    (cfg, kind): (crate::config::DetectConfig, crate::model::SourceKind),
    cancel: CancellationToken,
) {
    use crate::export::alerts::{self, Alerter, Phase};
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
    let mut alerter = Alerter::new(resend).settle_all(crate::export::alerts::PROVISIONAL_SETTLE);
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
        facts.rises = counters.rises(std::time::Instant::now(), &facts.counters, cfg.window.get());
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
            let slo = matches!(a.condition.key, alerts::AlertKey::Slo { .. });
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

/// What runs for `[kubernetes]`: the echo target, registration, discovery.
struct Kube {
    targets: crate::targets::kubernetes::discovery::Targets,
    /// Ends after the pod's EndpointSlice is withdrawn.
    registration: tokio::task::JoinHandle<()>,
}

async fn start_kubernetes(
    k: &crate::config::KubernetesConfig,
    loaded: &Loaded,
    prober: &Prober,
    (metrics, echo_counters): (
        crate::targets::kubernetes::metrics::KubeMetrics,
        crate::server::http::ServerCounters,
    ),
    cancel: &CancellationToken,
    server_stop: CancellationToken,
) -> Result<Kube, DaemonError> {
    use crate::targets::kubernetes::{self, discovery, register};
    let client = kubernetes::client().await?;
    let namespace = k.namespace();
    let node = prober.source_node.to_string();
    let listener =
        TcpListener::bind(k.echo_listen)
            .await
            .map_err(|source| DaemonError::EchoBind {
                addr: k.echo_listen,
                source,
            })?;
    let echo_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let id = crate::server::echo::EchoIdentity {
        node: node.clone(),
        pod: std::env::var("POD_NAME").unwrap_or_else(|_| "tailprobe".into()),
    };
    // The echo answers until the server stops, after registration is withdrawn.
    tokio::spawn(crate::server::echo::serve(
        listener,
        id,
        crate::server::echo::Delay::None,
        crate::server::http::Limits::ECHO,
        echo_counters,
        server_stop,
    ));
    let deleted = Arc::new(tokio::sync::Notify::new());
    let (wish, wishes) = tokio::sync::watch::channel(register::Wish::default());
    let registration = match register::PodIdentity::from_env(
        namespace.clone(),
        node.clone(),
        prober.source_kind,
        echo_port,
    ) {
        Ok(pod) => tokio::spawn(register::keep(
            client.clone(),
            pod,
            k.node_service_port,
            k.reapply.get(),
            metrics.clone(),
            Arc::clone(&deleted),
            wishes,
            cancel.clone(),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "Not registering this node's Service; discovery only.");
            tokio::spawn(async {})
        }
    };
    let targets = discovery::start(
        client,
        k.clone(),
        loaded.config.probe.clone(),
        discovery::Identity {
            node,
            namespace,
            echo_port,
            deleted,
            wish,
        },
        metrics,
        cancel.clone(),
    );
    Ok(Kube {
        targets,
        registration,
    })
}

/// A server's counters, registered under its name.
fn server_counters(metrics: &Metrics, server: &str) -> crate::server::http::ServerCounters {
    let (refused, cut_at_shutdown) = metrics.server_counters(server);
    crate::server::http::ServerCounters {
        refused,
        cut_at_shutdown,
    }
}

/// The API's bearer token: the file's content without surrounding space.
/// `POST /api/v1/round`: one fresh round over the current targets, through
/// the same probe as the schedule (its own stats, so the window is not
/// touched), the node's facts read before and after.
fn round_fn(
    prober: Arc<Prober>,
    current: Arc<std::sync::RwLock<Vec<Arc<crate::model::Target>>>>,
    (loaded, otlp): (&Loaded, Option<Arc<crate::export::otlp::Otlp>>),
    cancel: CancellationToken,
) -> api::RoundFn {
    let mut base = crate::matrix::MatrixOptions::from_loaded(loaded);
    // A requested round's probes are traced as the schedule's are: the
    // findings judged on them link to their traces.
    base.otlp = otlp;
    Arc::new(move |samples| {
        let (prober, cancel) = (Arc::clone(&prober), cancel.clone());
        let targets = current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut opts = base.clone();
        opts.samples = samples;
        opts.progress = false;
        Box::pin(async move {
            let before = crate::node::gather(&prober.source_node).await;
            let started = std::time::Instant::now();
            let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (_, series) =
                crate::matrix::run_with(Arc::clone(&prober), &targets, &opts, &cancel, &done).await;
            let facts =
                crate::node::with_rise(&before, crate::node::gather(&prober.source_node).await);
            crate::wire::window::WindowDoc::of_round(
                &prober.source_node,
                prober.source_kind,
                &series,
                started.elapsed(),
                Some(facts),
            )
        })
    })
}
