//! `tailprobe lab ...`: the built-in lab's subcommands.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::{Format, block_on, write_output};

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build a lab: node and pod namespaces, a VXLAN overlay, Services as nftables DNAT.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[command(flatten)]
        name: LabName,
        #[command(flatten)]
        knobs: KnobArgs,
        /// Service-time jitter in every pod's echo target, as for `echo --delay`.
        #[arg(long, default_value = "0s")]
        echo_delay: crate::server::echo::Delay,
        #[command(flatten)]
        kube: KubeArgs,
        /// Stay in the foreground and remove the lab when standard input
        /// closes or on SIGTERM or SIGINT: a lab tied to the lifetime of
        /// whatever started it (a test run, a script).
        #[arg(long)]
        hold: bool,
    },
    /// Run the lab's kubectl as its admin, inside the control plane's namespace.
    Kubectl {
        #[command(flatten)]
        name: LabName,
        /// The control plane's build, as `scripts/control-plane` printed it.
        #[arg(long, env = "TAILPROBE_KUBE_BIN")]
        kube_bin: Option<PathBuf>,
        /// kubectl's own arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Stop one component of a Kubernetes lab and start it again, as it was
    /// started (kube-apiserver, etcd, kube-proxy-node2, agent-node1, ...).
    Restart {
        component: String,
        #[command(flatten)]
        name: LabName,
    },
    /// The node agent of a Kubernetes lab (runs inside a node's namespace;
    /// `lab up --kubernetes` starts one per node).
    #[command(hide = true)]
    Agent {
        #[command(flatten)]
        name: LabName,
        #[arg(long)]
        node: String,
    },
    /// Remove a lab and everything it created, even after a crash.
    Down {
        #[command(flatten)]
        name: LabName,
    },
    /// Show the topology, knobs, faults with their counters, checksum errors.
    Status {
        #[command(flatten)]
        name: LabName,
    },
    /// Set kernel knobs on one node (its namespace and its pod's).
    Knobs {
        #[arg(long)]
        node: String,
        #[command(flatten)]
        name: LabName,
        #[command(flatten)]
        knobs: KnobArgs,
    },
    /// Inject or clear a fault.
    Fault {
        #[command(subcommand)]
        fault: FaultCommand,
        #[command(flatten)]
        name: LabName,
    },
    /// Run the matrix from every node's host network and pod network.
    Matrix(LabMatrixArgs),
    /// Start a prober daemon in every node, then run the matrix.
    Run(LabMatrixArgs),
    /// The userspace delayer behind `fault delay` (runs inside a node's namespace).
    Delayer {
        #[arg(long)]
        queue: u16,
        #[arg(long, value_parser = humantime::parse_duration)]
        delay: std::time::Duration,
        #[arg(long, value_parser = humantime::parse_duration)]
        jitter: std::time::Duration,
    },
    /// The load behind `fault listen-overflow`: connections a second to
    /// one address (runs inside a node's namespace).
    #[command(hide = true)]
    Load {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        rate: u32,
    },
    /// Up, inject a fault, start the probers and the hub, one round over HTTP, verdict, down.
    Demo {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// vxlan-csum-bug, drop-syn, loss, mtu-blackhole, listen-overflow,
        /// slow-backend, dns-loss, rp-filter, conntrack-drop or none.
        #[arg(long, default_value = "vxlan-csum-bug")]
        fault: String,
        #[arg(long, default_value_t = 20)]
        samples: u32,
        /// Leave the lab up afterwards.
        #[arg(long)]
        keep: bool,
        /// Start the lab's own Jaeger and OpenTelemetry Collector (built by
        /// scripts/telemetry) on this machine's loopback, send the probers'
        /// traces and the verdict's alerts through them, and end with the
        /// link to the verdict's example trace; the lab stays up for `lab
        /// down`.
        #[arg(long)]
        telemetry: bool,
        #[arg(long, default_value = "tpdemo")]
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Also write the page, the report inside, to this file.
        #[arg(long)]
        html: Option<std::path::PathBuf>,
        #[command(flatten)]
        kube: KubeArgs,
        /// With --kubernetes: the kustomization to apply (default: the
        /// deploy/ this binary was built with).
        #[arg(long)]
        deploy: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct LabName {
    /// The lab's name: a prefix on every namespace and table it creates.
    #[arg(long = "name", default_value = "tp", global = true)]
    pub prefix: String,
}

#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// Run the lab with the real Kubernetes control plane and kube-proxy,
    /// built by scripts/control-plane; no Service is written by hand.
    #[arg(long)]
    pub kubernetes: bool,
    /// kube-proxy's mode with --kubernetes: nftables or iptables.
    #[arg(long, default_value = "nftables")]
    pub proxy_mode: String,
    /// The control plane's build, as `scripts/control-plane` printed it
    /// (default: its cache).
    #[arg(long, env = "TAILPROBE_KUBE_BIN")]
    pub kube_bin: Option<PathBuf>,
}

impl KubeArgs {
    fn options(&self) -> anyhow::Result<crate::lab::kube::Options> {
        Ok(crate::lab::kube::Options {
            bins: self.kube_bin.clone(),
            proxy_mode: crate::lab::kube::ProxyMode::parse(&self.proxy_mode)?,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct KnobArgs {
    /// net.ipv4.tcp_syn_linear_timeouts (0 = the classic doubling ladder).
    #[arg(long)]
    pub syn_linear_timeouts: Option<u32>,
    /// net.ipv4.tcp_syn_retries.
    #[arg(long)]
    pub syn_retries: Option<u32>,
    /// net.core.txrehash (0 keeps a flow's VXLAN source port across SYN timeouts).
    #[arg(long)]
    pub txrehash: Option<u32>,
    /// net.netfilter.nf_conntrack_udp_timeout in seconds.
    #[arg(long)]
    pub udp_timeout: Option<u32>,
}

impl From<&KnobArgs> for crate::lab::Knobs {
    fn from(k: &KnobArgs) -> Self {
        Self {
            syn_linear_timeouts: k.syn_linear_timeouts,
            syn_retries: k.syn_retries,
            txrehash: k.txrehash,
            udp_timeout: k.udp_timeout,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Drop the first K SYNs of every flow (or of a share of flows) from
    /// one node to another (on the overlay).
    DropSyn {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        count: u32,
        /// The share of flows hit, in percent; the others pass untouched
        /// (a partial, still deterministic drop).
        #[arg(long, default_value_t = 100)]
        percent: u32,
    },
    /// The VXLAN double-NAT checksum bug on a node's outgoing overlay traffic.
    VxlanCsumBug {
        #[arg(long)]
        on: String,
    },
    /// Random loss on a node's underlay.
    Loss {
        #[arg(long)]
        on: String,
        #[arg(long)]
        percent: u32,
    },
    /// Drop overlay packets above a size arriving at a node, with no ICMP.
    MtuBlackhole {
        #[arg(long)]
        on: String,
        #[arg(long, default_value_t = 1200)]
        size: u32,
    },
    /// Hold packets arriving on a node's underlay for a delay plus jitter.
    Delay {
        #[arg(long)]
        on: String,
        #[arg(long, value_parser = humantime::parse_duration)]
        delay: std::time::Duration,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        jitter: std::time::Duration,
    },
    /// Jitter alone: hold packets for a random time up to --jitter.
    Jitter {
        #[arg(long)]
        on: String,
        #[arg(long, value_parser = humantime::parse_duration)]
        jitter: std::time::Duration,
    },
    /// A share of one node's backend answers late, the rest at once: a
    /// backend whose service time is bimodal (its echo restarted).
    SlowBackend {
        #[arg(long)]
        on: String,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        delay: std::time::Duration,
        #[arg(long, default_value_t = 10)]
        percent: u32,
    },
    /// One node's backend accepts slowly behind a small backlog while a
    /// load from its own node fills its accept queue: SYNs dropped at the
    /// destination, counted in ListenOverflows.
    ListenOverflow {
        #[arg(long)]
        on: String,
        #[arg(long, default_value_t = 8)]
        backlog: u32,
        /// Connections accepted a second: above what the probes alone send
        /// (a matrix sends a few hundred a second to one node), so the load
        /// decides the overflow.
        #[arg(long, default_value_t = 500)]
        accept_rate: u32,
        /// Connections a second from the node itself, on top of the probes:
        /// the share above the accept rate is about the share of SYNs
        /// dropped.
        #[arg(long, default_value_t = 550)]
        load: u32,
    },
    /// Lose a share of the DNS queries reaching one node's resolver over
    /// the overlay (its own node's lookups pass).
    DnsLoss {
        #[arg(long)]
        on: String,
        #[arg(long, default_value_t = 30)]
        percent: u32,
    },
    /// One node routes another's pods over the underlay and filters
    /// reverse paths strictly: their packets, arriving over the overlay,
    /// are dropped (TcpExtIPReversePathFilter).
    RpFilter {
        #[arg(long)]
        on: String,
        #[arg(long)]
        from: String,
    },
    /// Emulated: drop a share of new flows through one node, as a full
    /// conntrack table drops them (the kernel's counters do not move: a
    /// namespace cannot lower its table).
    ConntrackDrop {
        #[arg(long)]
        on: String,
        #[arg(long, default_value_t = 20)]
        percent: u32,
    },
    /// Hold one node's prober daemons (`lab run`) to a share of one CPU
    /// with a cgroup quota.
    StarveProber {
        #[arg(long)]
        on: String,
        /// Percent of one CPU.
        #[arg(long, default_value_t = 2)]
        cpu: u32,
    },
    /// Remove every fault.
    Clear,
}

#[derive(Debug, clap::Args)]
pub struct LabMatrixArgs {
    #[command(flatten)]
    pub name: LabName,
    #[arg(long, default_value_t = 20)]
    pub samples: u32,
    /// host, pod or both.
    #[arg(long, default_value = "both")]
    pub vantage: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also write every sample and the nodes' facts here (JSON), to judge again later.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// `lab run` only: the probers send no probe and read the nodes' own
    /// connections instead (passive mode), and no matrix is run. Send your
    /// own traffic, such as `ip netns exec NODE-NAMESPACE curl http://VIP/`.
    #[arg(long)]
    pub passive: bool,
    /// `lab run` on a Kubernetes lab: the kustomization to apply (default:
    /// the deploy/ this binary was built with; `deploy/passive` for passive
    /// mode).
    #[arg(long)]
    pub deploy: Option<PathBuf>,
}

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
                .with_kubernetes(kube.kubernetes);
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
                } => lab::Fault::DropSyn {
                    from: node(&plan, &from)?,
                    to: node(&plan, &to)?,
                    count,
                    percent,
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
            let plan = Plan::new(&name, nodes).map_err(anyhow::Error::msg)?;
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
                std::fs::write(path, crate::export::page::report(&report))
                    .with_context(|| format!("cannot write the page to {}", path.display()))?;
            }
            match format {
                Format::Table => print!("{text}"),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Html => print!("{}", crate::export::page::report(&report)),
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
        Format::Html => crate::export::page::report(&m),
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
            t += &crate::export::report::render_findings(&report.findings);
            t
        }
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Html => crate::export::page::report(&run::page_of(&report)),
    };
    write_output(args.output.as_deref(), &text)?;
    Ok(if report.healthy() { 0 } else { 1 })
}
