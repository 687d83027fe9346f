//! `tailprobe cluster matrix`: every prober asked, judged as one cluster,
//! printed; with `--until-verdict`, judged again until the verdict holds.

use std::io::IsTerminal;

use anyhow::Context;

use super::{ClusterMatrixArgs, Format, load, write_output};
use crate::config;

/// `cluster matrix`: one round of the hub, printed.
/// `cluster matrix --until-verdict`: the probers' windows, stalls in
/// progress included, judged once a second until the same findings have
/// held for a second or `max_wait` has passed; the stalls per path shown
/// as they happen.
async fn until_cluster_verdict(
    puller: &crate::hub::pull::Puller,
    urls: &[String],
    probers: &std::sync::Mutex<crate::hub::pull::Probers>,
    loaded: &config::Loaded,
    max_wait: std::time::Duration,
    tty: bool,
) -> crate::hub::view::ClusterMatrix {
    let t0 = std::time::Instant::now();
    let mut hold = crate::detect::VerdictHold::new(std::time::Duration::from_secs(1));
    loop {
        let m = crate::hub::ask_and_judge(
            puller,
            urls,
            crate::hub::pull::Ask::Window,
            probers,
            loaded,
            |_| {},
        )
        .await;
        if tty {
            let waiting: u64 = m
                .cells
                .iter()
                .map(|c| c.cell.waiting.values().sum::<u64>())
                .sum();
            eprint!(
                "\r[{:>3}s] {} findings, {waiting} probes waiting on SYN retransmission   ",
                t0.elapsed().as_secs(),
                m.findings.len()
            );
        }
        if hold.held(&m.findings, std::time::Instant::now()) {
            return m;
        }
        if t0.elapsed() >= max_wait {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

pub(super) fn cluster_matrix(args: ClusterMatrixArgs) -> anyhow::Result<u8> {
    let mut loaded = match &args.config {
        Some(path) => load(path)?,
        None => config::Loaded::defaults(),
    };
    if !args.probers.is_empty() {
        loaded.config.hub.probers = args.probers.clone();
    }
    if let Some((_, problem)) = loaded.config.hub.problem() {
        anyhow::bail!("--probers: {problem}");
    }
    // One runtime for the whole run: the Kubernetes client's worker lives
    // on the runtime that made it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (urls, puller) = if loaded.config.hub.probers.is_empty() {
        // Through the API server: list the prober pods, reach each through
        // the pod proxy.
        let selector = loaded
            .config
            .kubernetes
            .as_ref()
            .map_or("app.kubernetes.io/name=tailprobe".to_string(), |k| {
                k.prober_selector.clone()
            });
        let namespace = args.namespace.clone().unwrap_or_else(|| {
            loaded
                .config
                .kubernetes
                .as_ref()
                .and_then(|k| k.namespace.clone())
                .unwrap_or_else(|| "tailprobe".into())
        });
        let (client, pods) = rt.block_on(async {
            let client = crate::targets::kubernetes::client().await?;
            let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(
                client.clone(),
                &namespace,
            )
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .with_context(|| {
                format!(
                    "cannot list the prober pods ({selector}) in namespace {namespace}; check the kubeconfig and that it may list pods there (deploy/hub/operator-rbac.yaml)"
                )
            })?;
            anyhow::Ok((client, pods))
        })?;
        let urls = crate::hub::discover::proxy_bases(&namespace, &pods.items);
        if urls.is_empty() {
            anyhow::bail!(
                "no running prober pods ({selector}) in namespace {namespace}; give --namespace, or --probers URL,..."
            );
        }
        (
            urls,
            crate::hub::pull::Puller::through_kube(&loaded.config.hub, client),
        )
    } else {
        let token = match &loaded.config.hub.token_file {
            Some(p) => Some(crate::server::token::read(p)?),
            None => None,
        };
        (
            loaded.config.hub.probers.clone(),
            crate::hub::pull::Puller::new(&loaded.config.hub, token)?,
        )
    };
    if !(1..=crate::server::api::MAX_ROUND_SAMPLES).contains(&args.samples) {
        anyhow::bail!(
            "--samples must be 1 to {}",
            crate::server::api::MAX_ROUND_SAMPLES
        );
    }
    let ask = if args.from_window {
        crate::hub::pull::Ask::Window
    } else {
        // Past the last SYN rung and the give-up of every probe in it.
        crate::hub::pull::Ask::Round {
            samples: args.samples,
            budget: std::time::Duration::from_secs(180),
        }
    };
    let probers = std::sync::Mutex::default();
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let tty = std::io::stderr().is_terminal();
    let m = if args.until_verdict {
        rt.block_on(until_cluster_verdict(
            &puller,
            &urls,
            &probers,
            &loaded,
            args.max_wait,
            tty,
        ))
    } else {
        rt.block_on(crate::hub::ask_and_judge(
            &puller,
            &urls,
            ask,
            &probers,
            &loaded,
            |r| {
                let n = answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if tty {
                    eprint!(
                        "\r{n} of {} probers answered{}",
                        urls.len(),
                        if r.is_err() { " (one failed)" } else { "" }
                    );
                }
            },
        ))
    };
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if tty {
        eprintln!();
    }
    let text = match args.format {
        Format::Table => crate::hub::table::render(&m),
        Format::Json => serde_json::to_string_pretty(&m)? + "\n",
        Format::Html => {
            let mut m = m.clone();
            m.trace_url = loaded.config.ui.trace_url.clone();
            crate::wire::page::report(&m)
        }
    };
    write_output(args.output.as_deref(), &text)?;
    let answered = m.probers.get("up").copied().unwrap_or(0);
    let wanted = args.min_answered.unwrap_or(urls.len());
    if answered < wanted {
        for s in probers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .statuses()
            .iter()
            .filter(|s| s.error.is_some())
        {
            eprintln!("{}", s.error.as_deref().unwrap_or_default());
        }
        eprintln!(
            "{answered} of {} probers answered; wanted {wanted}",
            urls.len()
        );
        return Ok(3);
    }
    Ok(if m.healthy() { 0 } else { 1 })
}
