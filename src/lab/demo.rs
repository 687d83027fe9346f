//! The demo: a lab up, a scenario's faults injected, probers and a hub
//! started (or deploy/ applied on the real control plane), one round over
//! HTTP, the verdict, the lab down.

use std::sync::atomic::AtomicU64;

use tokio_util::sync::CancellationToken;

use super::run::{lab_otlp, start_daemons, zones};
use super::scenario::Scenario;
use super::{LabError, Plan, netns, state_dir};
use crate::config::Loaded;

/// Up, inject, matrix from every node, report, down (unless `keep`, or
/// `telemetry`: the lab's own Jaeger and collector, whose trace link the
/// report ends with).
pub async fn demo(
    plan: &Plan,
    scenario: Scenario,
    samples: u32,
    keep: bool,
    telemetry: bool,
    progress: bool,
    cancel: &CancellationToken,
) -> Result<(String, crate::wire::report::ClusterMatrix), LabError> {
    // Checked before anything is built: a missing build is a usage error.
    if telemetry {
        super::telemetry::Programs::find()?;
    }
    // The link printed at the end must open: with its own Jaeger, the lab
    // stays up for `lab down` to remove, Jaeger and the collector with it.
    let keep = keep || telemetry;
    let took = super::up(plan, &scenario.knobs(), "0s")?;
    let result = async {
        let (faults, said) = scenario.faults(plan);
        for f in &faults {
            super::inject(plan, f)?;
        }
        let mut text = format!(
            "lab {}: {} nodes up in {:.1}s; injected {said}\n",
            plan.prefix,
            plan.nodes,
            took.as_secs_f64()
        );
        let tele = if telemetry {
            Some(super::telemetry::start(&plan.prefix).await?)
        } else {
            None
        };
        // The probers' traces reach a collector on this machine through
        // the relay; the verdict's alert records go from this process.
        let endpoint = tele.as_ref().map(super::telemetry::Telemetry::endpoint);
        let env = super::relay::start(plan, endpoint.as_deref())?;
        let started = start_daemons(plan, false, &env)?;
        let m = round_over_http(plan, samples, progress, tele.as_ref(), cancel).await?;
        text += &crate::hub::table::render(&m);
        if let Some(t) = &tele {
            text += &format!(
                "\ntraces: Jaeger's query API at http://{} (its own collector at {})\n",
                t.jaeger,
                t.endpoint()
            );
            let example = m.findings.iter().flat_map(|f| f.examples.first()).next();
            match example {
                Some(e) if t.wait_for_trace(&e.trace_id).await => {
                    text += &format!(
                        "the verdict's example trace: {}\n",
                        t.trace_url(&e.trace_id)
                    )
                }
                Some(e) => {
                    text += &format!(
                        "the verdict's example trace {} did not reach Jaeger within 30 s; the collector's log is in {}\n",
                        e.trace_id,
                        super::state_dir(&plan.prefix).join("telemetry").display()
                    )
                }
                None => text += "no finding, so no example trace\n",
            }
            text += &format!(
                "Jaeger and the lab stay up until: tailprobe lab down --name {}\n",
                plan.prefix
            );
        }
        if keep {
            text += "\nthe lab stays up; its probers and hub:\n";
            for line in started {
                text += &format!("  {line}\n");
            }
        }
        Ok::<_, LabError>((text, m))
    }
    .await;
    if !keep {
        super::down(&plan.prefix)?;
    }
    result
}

/// The demo on the real control plane: up with `--kubernetes`, deploy/
/// applied (`deploy`, else the manifests this binary carries), the
/// scenario's faults injected on top of the real kube-proxy's rules, then
/// the deployed hub's verdict once every probe of the scenario's rungs has
/// landed: at least 75 s after the faults (past the 63 s and 67 s rungs)
/// and no finding still provisional, at most 4 minutes.
pub async fn demo_kubernetes(
    plan: &Plan,
    scenario: Scenario,
    opts: &super::kube::Options,
    deploy: Option<&std::path::Path>,
    keep: bool,
    progress: bool,
    cancel: &CancellationToken,
) -> Result<(String, crate::wire::report::ClusterMatrix), LabError> {
    use super::kube::{self, deploy as dep};
    let plan = plan.clone().with_kubernetes(true);
    let took = super::up_with(&plan, &scenario.knobs(), "0s", opts)?;
    let result = async {
        let bins = kube::Bins::find(opts.bins.as_deref())?;
        let t0 = std::time::Instant::now();
        let dir = match deploy {
            Some(d) => d.to_path_buf(),
            None => dep::write_embedded(&plan)?,
        };
        dep::apply(&plan, &bins, &dir)?;
        let p = plan.clone();
        tokio::task::spawn_blocking(move || {
            dep::wait_rollout(&p, dep::NAMESPACE, std::time::Duration::from_secs(120))
        })
        .await
        .map_err(|e| LabError::Kernel {
            what: e.to_string(),
        })??;
        let rolled = t0.elapsed();
        let (faults, said) = scenario.faults(&plan);
        for f in &faults {
            super::inject(&plan, f)?;
        }
        let injected = std::time::Instant::now();
        let m = loop {
            if cancel.is_cancelled() {
                return Err(LabError::Usage("interrupted".into()));
            }
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            let p = plan.clone();
            let m = tokio::task::spawn_blocking(move || dep::hub_matrix(&p))
                .await
                .map_err(|e| LabError::Kernel {
                    what: e.to_string(),
                })?;
            let waited = injected.elapsed();
            if progress {
                eprint!(
                    "\r{:>3.0}s after the faults: the hub's verdict {}",
                    waited.as_secs_f64(),
                    match &m {
                        Ok(m) if m.findings.iter().any(|f| f.provisional) => "is in progress   ",
                        Ok(m) if m.findings.is_empty() => "is healthy so far",
                        Ok(_) => "is final         ",
                        Err(_) => "is not in yet    ",
                    }
                );
            }
            match m {
                Ok(m) if waited.as_secs() >= 75 && !m.findings.iter().any(|f| f.provisional) => {
                    break m;
                }
                Err(e) if waited.as_secs() >= 240 => return Err(e),
                Ok(m) if waited.as_secs() >= 240 => break m,
                _ => {}
            }
        };
        if progress {
            eprintln!();
        }
        let mut text = format!(
            "lab {} (Kubernetes {}, kube-proxy {}): {} nodes up in {:.1}s; deploy/ applied, every prober and the hub ready in {:.1}s; injected {said}\n",
            plan.prefix,
            kube::bins::kubernetes_version(),
            opts.proxy_mode.as_str(),
            plan.nodes,
            took.as_secs_f64(),
            rolled.as_secs_f64(),
        );
        text += &crate::hub::table::render(&m);
        if keep {
            text += &format!(
                "\nthe lab stays up: `tailprobe lab kubectl --name {} -- get pods -A`; `tailprobe lab down --name {}` removes it\n",
                plan.prefix, plan.prefix
            );
        }
        Ok::<_, LabError>((text, m))
    }
    .await;
    if !keep {
        super::down(&plan.prefix)?;
    }
    result
}

/// What a cluster matrix run from node1 makes of the lab: every prober
/// (every node, host and pod network) asked over the lab's network for a
/// fresh round of `samples` probes per target, the answers merged and
/// judged as the hub judges them, with every node's facts. The findings go
/// out over OTLP as alert records from this process, when the `OTEL_*`
/// variables ask for it; the probers' traces take the relay.
async fn round_over_http(
    plan: &Plan,
    samples: u32,
    progress: bool,
    telemetry: Option<&super::telemetry::Telemetry>,
    cancel: &CancellationToken,
) -> Result<crate::wire::report::ClusterMatrix, LabError> {
    let mut loaded = Loaded::defaults();
    loaded.config.hub.probers = plan
        .node_ids()
        .flat_map(|i| {
            [plan.underlay_ip(i).to_string(), plan.pod_ip(i).to_string()]
                .map(|ip| format!("http://{ip}:9797"))
        })
        .collect();
    let urls = loaded.config.hub.probers.clone();
    let nodes: Vec<String> = plan.node_ids().map(|i| plan.node_name(i)).collect();
    let (stop, lab) = (cancel.clone(), plan.prefix.clone());
    let logs = state_dir(&plan.prefix);
    let job = netns::spawn_in(&plan.node_ns(1), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
            .block_on(async {
                let puller = crate::hub::pull::Puller::new(&loaded.config.hub, None)
                    .map_err(|e| LabError::Usage(e.to_string()))?;
                ready(&urls, &logs, &stop).await?;
                let probers = std::sync::Mutex::default();
                let answered = AtomicU64::new(0);
                let ask = crate::hub::pull::Ask::Round {
                    samples,
                    budget: std::time::Duration::from_secs(180),
                };
                let m = tokio::select! {
                    m = crate::hub::ask_and_judge(&puller, &urls, ask, &probers, &loaded, |_| {
                        let n = answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if progress {
                            eprint!("\r{n} of {} probers answered", urls.len());
                        }
                    }) => m,
                    _ = stop.cancelled() => return Err(LabError::Usage("interrupted".into())),
                };
                if progress {
                    eprintln!();
                }
                Ok(m)
            })
    })?;
    let mut m = tokio::task::spawn_blocking(move || job.join())
        .await
        .map_err(|e| LabError::Kernel {
            what: e.to_string(),
        })?
        .map_err(|_| LabError::Kernel {
            what: "the round's thread panicked".into(),
        })???;
    m.rests_on = format!("lab {lab}: {}", m.rests_on);
    zones(&nodes, &mut m);
    if let Some(t) = telemetry {
        m.trace_url = Some(t.trace_url("{trace_id}"));
    }
    let endpoint = telemetry.map(super::telemetry::Telemetry::endpoint);
    crate::export::finish_one_shot(lab_otlp(plan, endpoint.as_deref())?, &m.findings).await;
    Ok(m)
}

/// Waits until every prober answers `/readyz` (they start in about a
/// second), at most 30 s.
async fn ready(
    urls: &[String],
    logs: &std::path::Path,
    cancel: &CancellationToken,
) -> Result<(), LabError> {
    crate::install_crypto();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([])
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .map_err(|e| LabError::Usage(e.to_string()))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for url in urls {
        loop {
            let r = client.get(format!("{url}/readyz")).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if cancel.is_cancelled() {
                return Err(LabError::Usage("interrupted".into()));
            }
            if std::time::Instant::now() > deadline {
                return Err(LabError::Kernel {
                    what: format!(
                        "the prober at {url} did not become ready in 30 s; the probers' logs are in {}",
                        logs.display()
                    ),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
