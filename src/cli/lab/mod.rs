//! `tailprobe lab ...`: the built-in lab's subcommands.

use std::io::IsTerminal;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{Format, block_on, write_output};

mod args;

pub use args::{FaultCommand, KnobArgs, LabCommand, LabMatrixArgs, LabName};

pub fn lab(command: LabCommand) -> anyhow::Result<u8> {
    use crate::lab::{self, Plan};
    let node = |plan: &Plan, name: &str| {
        plan.node_index(name).ok_or_else(|| {
            anyhow::anyhow!(
                "no node \"{name}\" in lab {}; nodes are node1..node{}",
                plan.prefix,
                plan.nodes
            )
        })
    };
    let progress = std::io::stderr().is_terminal();
    match command {
        LabCommand::Up {
            nodes,
            name,
            knobs,
            echo_delay,
            kube,
            hold,
        } => {
            let plan = Plan::new(&name.prefix, nodes)
                .map_err(anyhow::Error::msg)?
                .with_kubernetes(kube.kubernetes)
                .with_dual_stack(kube.dual_stack);
            let took = lab::up_with(
                &plan,
                &(&knobs).into(),
                &echo_delay.to_string(),
                &kube.options()?,
            )?;
            println!(
                "lab {} up: {} nodes in {:.1}s",
                plan.prefix,
                plan.nodes,
                took.as_secs_f64()
            );
            print!("{}", lab::status(&plan)?);
            if hold {
                use std::io::Write as _;

                let _ = std::io::stdout().flush();
                block_on(async {
                    let cancel = CancellationToken::new();
                    crate::shutdown::cancel_on_signals(cancel.clone());
                    let mut stdin = tokio::io::stdin();
                    let mut buf = [0u8; 256];
                    loop {
                        use tokio::io::AsyncReadExt as _;
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            n = stdin.read(&mut buf) => if !matches!(n, Ok(n) if n > 0) { break },
                        }
                    }
                })?;
                let removed = lab::down(&plan.prefix)?;
                // Whoever held the lab may be gone, its end of the pipe too.
                let _ = writeln!(
                    std::io::stdout(),
                    "lab {}: removed {} namespaces",
                    plan.prefix,
                    removed.len()
                );
            }
            Ok(0)
        }
        LabCommand::Kubectl {
            name,
            kube_bin,
            args,
        } => {
            let plan = lab::find(&name.prefix)?;
            if !plan.kubernetes {
                anyhow::bail!(
                    "lab {} runs no Kubernetes; start one with `tailprobe lab up --kubernetes --name {}`",
                    plan.prefix,
                    plan.prefix
                );
            }
            let code = lab::kube::kubectl(&plan, kube_bin.as_deref(), &args)?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        LabCommand::Restart { component, name } => {
            let plan = lab::find(&name.prefix)?;
            let proc = lab::kube::Proc::load(&plan.prefix, &component)?;
            proc.restart(&plan.prefix)?;
            println!("lab {}: restarted {component}", plan.prefix);
            Ok(0)
        }
        LabCommand::Agent { name, node: n } => {
            let plan = lab::find(&name.prefix)?;
            let i = node(&plan, &n)?;
            block_on(async {
                let cancel = CancellationToken::new();
                crate::shutdown::cancel_on_signals(cancel.clone());
                lab::kube::agent::run(plan, i, cancel).await
            })??;
            Ok(0)
        }
        LabCommand::Down { name } => {
            let removed = lab::down(&name.prefix)?;
            println!("lab {}: removed {} namespaces", name.prefix, removed.len());
            Ok(0)
        }
        LabCommand::Status { name } => {
            print!("{}", lab::status(&lab::find(&name.prefix)?)?);
            Ok(0)
        }
        LabCommand::Knobs {
            node: n,
            name,
            knobs,
        } => {
            let plan = lab::find(&name.prefix)?;
            crate::lab::Knobs::from(&knobs).apply(&plan, node(&plan, &n)?)?;
            Ok(0)
        }
        LabCommand::Fault { fault, name } => {
            let plan = lab::find(&name.prefix)?;
            let f = match fault {
                FaultCommand::DropSyn {
                    from,
                    to,
                    count,
                    percent,
                    family,
                } => lab::Fault::DropSyn {
                    from: node(&plan, &from)?,
                    to: node(&plan, &to)?,
                    count,
                    percent,
                    family,
                },
                FaultCommand::VxlanCsumBug { on } => lab::Fault::VxlanCsumBug {
                    on: node(&plan, &on)?,
                },
                FaultCommand::Loss { on, percent } => lab::Fault::Loss {
                    on: node(&plan, &on)?,
                    percent,
                },
                FaultCommand::MtuBlackhole { on, size } => lab::Fault::MtuBlackhole {
                    on: node(&plan, &on)?,
                    size,
                },
                FaultCommand::Delay { on, delay, jitter } => lab::Fault::Delay {
                    on: node(&plan, &on)?,
                    delay,
                    jitter,
                },
                FaultCommand::Jitter { on, jitter } => lab::Fault::Delay {
                    on: node(&plan, &on)?,
                    delay: std::time::Duration::ZERO,
                    jitter,
                },
                FaultCommand::SlowBackend { on, delay, percent } => lab::Fault::SlowBackend {
                    on: node(&plan, &on)?,
                    delay,
                    percent,
                },
                FaultCommand::ListenOverflow {
                    on,
                    backlog,
                    accept_rate,
                    load,
                } => lab::Fault::ListenOverflow {
                    on: node(&plan, &on)?,
                    backlog,
                    accept_rate,
                    load,
                },
                FaultCommand::DnsLoss { on, percent } => lab::Fault::DnsLoss {
                    on: node(&plan, &on)?,
                    percent,
                },
                FaultCommand::RpFilter { on, from } => lab::Fault::RpFilter {
                    on: node(&plan, &on)?,
                    from: node(&plan, &from)?,
                },
                FaultCommand::ConntrackDrop { on, percent } => lab::Fault::ConntrackDrop {
                    on: node(&plan, &on)?,
                    percent,
                },
                FaultCommand::StarveProber { on, cpu } => lab::Fault::StarveProber {
                    on: node(&plan, &on)?,
                    percent: cpu,
                },
                FaultCommand::Clear => {
                    let n = lab::clear(&plan)?;
                    println!("lab {}: {n} fault(s) removed", plan.prefix);
                    return Ok(0);
                }
            };
            lab::inject(&plan, &f)?;
            Ok(0)
        }
        LabCommand::Delayer {
            queue,
            delay,
            jitter,
        } => {
            lab::delayer::run(queue, delay, jitter)?;
            Ok(0)
        }
        LabCommand::Load { to, rate } => {
            lab::load(to, rate)?;
            Ok(0)
        }
        LabCommand::Matrix(args) | LabCommand::Run(args) if args.samples == 0 => {
            anyhow::bail!("--samples must be at least 1")
        }
        LabCommand::Matrix(args) => lab_matrix(args, false, progress),
        LabCommand::Run(args) => lab_matrix(args, true, progress),
        LabCommand::Demo {
            nodes,
            fault,
            samples,
            keep,
            telemetry,
            name,
            format,
            html,
            kube,
            deploy,
        } => {
            let plan = Plan::new(&name, nodes)
                .map_err(anyhow::Error::msg)?
                .with_dual_stack(kube.dual_stack);
            let scenario = lab::scenario::Scenario::parse(&fault)?;
            if deploy.is_some() && !kube.kubernetes {
                anyhow::bail!("--deploy applies with --kubernetes");
            }
            if telemetry && kube.kubernetes {
                anyhow::bail!(
                    "--telemetry runs with the lab's own probers, not with --kubernetes; there, apply deploy/otel-collector (lab run --deploy)"
                );
            }
            let opts = kube.options()?;
            let (text, report) = block_on(async {
                let cancel = CancellationToken::new();
                crate::shutdown::cancel_on_signals(cancel.clone());
                if kube.kubernetes {
                    lab::demo::demo_kubernetes(
                        &plan,
                        scenario,
                        &opts,
                        deploy.as_deref(),
                        keep,
                        progress,
                        &cancel,
                    )
                    .await
                } else {
                    lab::demo::demo(&plan, scenario, samples, keep, telemetry, progress, &cancel)
                        .await
                }
            })??;
            if let Some(path) = &html {
                std::fs::write(path, crate::wire::page::report(&report))
                    .with_context(|| format!("cannot write the page to {}", path.display()))?;
            }
            match format {
                Format::Table => print!("{text}"),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Html => print!("{}", crate::wire::page::report(&report)),
            }
            Ok(0)
        }
    }
}

/// `lab run` on a Kubernetes lab: deploy/ applied as a user applies it, the
/// rollout awaited, and the deployed hub's first verdict on every prober.
fn kube_run(plan: &crate::lab::Plan, args: &LabMatrixArgs, daemons: bool) -> anyhow::Result<u8> {
    use crate::lab::kube::{self, deploy};
    if !daemons {
        anyhow::bail!(
            "lab {p} runs Kubernetes: its Services come from the API server, not from the lab. \
             Run `tailprobe lab run --name {p}` (deploy/ and the hub), then read the hub, or run \
             `ip netns exec {p}-cp tailprobe cluster matrix` with KUBECONFIG={}",
            kube::admin_kubeconfig(&plan.prefix).display(),
            p = plan.prefix
        );
    }
    if args.record.is_some() {
        anyhow::bail!(
            "--record keeps a lab matrix's samples; on a Kubernetes lab the probers' windows are the hub's (/api/v1/window)"
        );
    }
    if args.passive && args.deploy.is_none() {
        anyhow::bail!(
            "on a Kubernetes lab, passive mode is deploy/passive: pass --deploy deploy/passive"
        );
    }
    let bins = kube::Bins::find(None)?;
    let dir = match &args.deploy {
        Some(d) => d.clone(),
        None => deploy::write_embedded(plan)?,
    };
    eprint!("{}", deploy::apply(plan, &bins, &dir)?);
    deploy::wait_rollout(plan, deploy::NAMESPACE, std::time::Duration::from_secs(120))?;
    let want = 2 * plan.nodes;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let m = loop {
        let m = deploy::hub_matrix(plan);
        match m {
            Ok(m) if m.probers.get("up").copied().unwrap_or(0) >= want => break m,
            Ok(m) if std::time::Instant::now() > deadline => break m,
            Err(e) if std::time::Instant::now() > deadline => return Err(e.into()),
            _ => std::thread::sleep(std::time::Duration::from_secs(2)),
        }
    };
    let text = match args.format {
        Format::Table => crate::hub::table::render(&m),
        Format::Json => serde_json::to_string_pretty(&m)? + "\n",
        Format::Html => crate::wire::page::report(&m),
    };
    write_output(args.output.as_deref(), &text)?;
    Ok(0)
}

/// The `--delay` argument that reproduces a parsed delay.
fn lab_matrix(args: LabMatrixArgs, daemons: bool, progress: bool) -> anyhow::Result<u8> {
    use crate::lab::{self, run};
    let plan = lab::find(&args.name.prefix)?;
    let vantage = match args.vantage.as_str() {
        "host" => run::Vantage::Host,
        "pod" => run::Vantage::Pod,
        "both" => run::Vantage::Both,
        other => anyhow::bail!("--vantage \"{other}\" is not host, pod or both"),
    };
    if args.passive && !daemons {
        anyhow::bail!("--passive applies to `lab run`: `lab matrix` sends probes by design");
    }
    if plan.kubernetes {
        return kube_run(&plan, &args, daemons);
    }
    if args.deploy.is_some() {
        anyhow::bail!(
            "--deploy applies to a Kubernetes lab (`tailprobe lab up --kubernetes`); lab {} writes its Services by hand",
            plan.prefix
        );
    }
    if daemons {
        for line in run::start_daemons(&plan, args.passive, &Default::default())? {
            eprintln!("prober {line}");
        }
    }
    if args.passive {
        for i in plan.node_ids() {
            eprintln!(
                "{}: ip netns exec {} curl http://{}:{}/ (host network), ip netns exec {} curl ... (pod)",
                plan.node_name(i),
                plan.node_ns(i),
                plan.node_vip(i),
                crate::lab::plan::POD_PORT,
                plan.pod_ns(i)
            );
        }
        return Ok(0);
    }
    let (report, recording) = block_on(async {
        let cancel = CancellationToken::new();
        crate::shutdown::cancel_on_signals(cancel.clone());
        run::matrix_all(&plan, vantage, args.samples, progress, &cancel).await
    })??;
    if let Some(path) = &args.record {
        std::fs::write(path, serde_json::to_string(&recording)? + "\n")
            .with_context(|| format!("cannot write the recording to {}", path.display()))?;
    }
    let text = match args.format {
        Format::Table => {
            let mut t = run::render_grid(&report);
            t += &crate::wire::report::render_findings(&report.findings);
            t
        }
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Html => crate::wire::page::report(&run::page_of(&report)),
    };
    write_output(args.output.as_deref(), &text)?;
    Ok(if report.healthy() { 0 } else { 1 })
}
