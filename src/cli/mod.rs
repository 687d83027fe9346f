//! The command line. Parsing lives here (not in `main.rs`) so tests can check
//! that deploy files' command lines parse with the real CLI.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

mod cluster;
mod lab;

pub use lab::{FaultCommand, KnobArgs, LabCommand, LabMatrixArgs, LabName};

use crate::config::{self, ConfigError};
use crate::matrix::{self, MatrixOptions};

#[derive(Debug, Parser)]
#[command(
    name = "tailprobe",
    version,
    about = "Fresh-connection latency prober that finds SYN-retransmit tails and names their cause"
)]
pub struct Cli {
    /// Log filter, such as `info` or `tailprobe=debug,kube=warn`.
    #[arg(long, global = true, env = "TAILPROBE_LOG", default_value = "info")]
    pub log: String,
    /// Log lines as text (coloured on a terminal unless NO_COLOR is set) or
    /// as one JSON object per line, for log pipelines.
    #[arg(long, global = true, env = "TAILPROBE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and exit (0 valid, 2 invalid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Probe every target N times from this host and report.
    Matrix(MatrixArgs),
    /// Probe continuously and serve /metrics, /healthz, /readyz, /api/v1/histograms.
    Run(RunArgs),
    /// Serve the target that names its node and pod in response headers.
    Echo(EchoArgs),
    /// Print the configuration's SLO alerts as a PrometheusRule (YAML).
    Rules {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Pull every prober, judge the cluster as one, serve the cluster matrix.
    Hub(RunArgs),
    /// The cluster at once, from anywhere that reaches the probers.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// The built-in lab: an emulated multi-node cluster on this kernel (root).
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    #[arg(long, short)]
    pub config: PathBuf,
    /// Probes per target (default: [matrix] samples, else 20).
    #[arg(long)]
    pub samples: Option<u32>,
    /// Probes in flight at once (default: [matrix] concurrency).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// End as soon as the verdict is certain at the configured
    /// significance, judging probes still waiting in SYN_SENT as "at least
    /// k SYNs lost" (seconds, not the 63 s rung); the probes then in
    /// flight are stopped.
    #[arg(long)]
    pub until_verdict: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Ask every prober for a fresh round of probes (or, with
    /// --from-window, its current window), judge them as one cluster, print
    /// the node x node grid and the verdict. Exit 0 healthy, 1 a finding or
    /// a failed probe, 2 usage, 3 too few probers answered.
    Matrix(ClusterMatrixArgs),
}

#[derive(Debug, clap::Args)]
pub struct ClusterMatrixArgs {
    /// Probers' base URLs, comma-separated (default: [hub] probers, else
    /// the prober pods found through the kubeconfig's API server, reached
    /// through its pod proxy).
    #[arg(long, value_delimiter = ',')]
    pub probers: Vec<String>,
    /// Where the prober pods run (default: [kubernetes] namespace, else
    /// "tailprobe").
    #[arg(long)]
    pub namespace: Option<String>,
    /// [hub] (timeouts, token) and [detect] settings; defaults without it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The fewest probers that must answer (default: every one).
    #[arg(long)]
    pub min_answered: Option<usize>,
    /// Probes per target in the fresh round (1 to 20).
    #[arg(long, default_value_t = 3)]
    pub samples: u32,
    /// Merge the probers' current windows instead of a fresh round.
    #[arg(long)]
    pub from_window: bool,
    /// Judge the probers' windows, stalls in progress included, once a
    /// second until the same verdict has held for a second (at most
    /// --max-wait): a verdict seconds after the first lost SYNs, not after
    /// the 63 s rung. Implies --from-window.
    #[arg(long)]
    pub until_verdict: bool,
    /// How long --until-verdict waits for a verdict.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub max_wait: std::time::Duration,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// The page, the report inside: one file that opens offline.
    Html,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[arg(long, short)]
    pub config: PathBuf,
    /// Overrides [server] listen.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// `run` only: turns passive mode on, as [passive] enabled = true (the
    /// host DaemonSet's deploy/passive overlay sets it; the pod DaemonSet
    /// shares the ConfigMap and stays off).
    #[arg(long)]
    pub passive: bool,
}

#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The node to name (default: NODE_NAME).
    #[arg(long, env = "NODE_NAME", default_value = "unknown")]
    pub node: String,
    /// The pod to name (default: POD_NAME).
    #[arg(long, env = "POD_NAME", default_value = "unknown")]
    pub pod: String,
    /// Service time before each response: `5ms`, `uniform:1ms..20ms`,
    /// `exp:5ms`, or `2s@10%` (a tenth of responses 2 s late, the rest at
    /// once).
    #[arg(long, default_value = "0s")]
    pub delay: crate::server::echo::Delay,
    /// The listen backlog: connections the kernel holds for accept (capped
    /// by net.core.somaxconn).
    #[arg(long, default_value_t = 1024)]
    pub backlog: u32,
    /// Accept at most this many connections a second (0: no limit); the
    /// rest wait in the accept queue and past --backlog their SYNs are
    /// dropped, as behind a backend whose accept loop is slow.
    #[arg(long, default_value_t = 0.0)]
    pub accept_rate: f64,
    /// Also answer DNS on this address, UDP and TCP: a resolver whose
    /// node is known, for `dns://` targets.
    #[arg(long)]
    pub dns: Option<SocketAddr>,
    /// The address every A question is answered with.
    #[arg(long, default_value = "127.0.0.1")]
    pub dns_answer: std::net::Ipv4Addr,
}

/// Parses the process arguments and runs; the exit code follows the
/// documented contract (0 healthy, 1 unhealthy, 2 usage or config error).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::install_crypto();
    if let Err(e) = init_logging(&cli.log, cli.log_format) {
        eprintln!("tailprobe: {e}");
        return ExitCode::from(2);
    }
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("{ce}");
            } else {
                eprintln!("tailprobe: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}

/// The log filter, refused when it would not mean what was typed: a
/// misspelt level (`--log debgu`) parses as a target name and silences
/// everything.
pub fn log_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = d.rsplit_once('=').map_or(d, |(_, l)| l);
        let bare = !d.contains('=') && !d.contains('[');
        if (bare || d.contains('=')) && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "--log: \"{d}\" is not a level; use one of {} or TARGET=LEVEL, such as tailprobe=debug",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| {
        format!("--log: \"{filter}\" is not a log filter ({e}); such as info or tailprobe=debug")
    })
}

fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = log_filter(filter)?;
    // https://no-color.org: set and not empty means no colour.
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(color).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    Ok(())
}

/// Runs `f` to completion on a multi-threaded runtime, then gives blocking
/// work left behind (a host-name lookup stuck on a dead resolver) one second
/// before the process moves on: a stuck lookup never holds up an exit.
fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(f);
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(out)
}

fn load(path: &std::path::Path) -> Result<config::Loaded, ConfigError> {
    config::load(&path.to_string_lossy())
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check { config } => {
            let loaded = load(&config)?;
            println!(
                "{}: valid; {} target(s), node {}",
                config.display(),
                loaded.targets.len(),
                loaded.node()
            );
            if loaded.config.passive.enabled
                && let Some(why) = crate::passive::bpf::unavailable()
            {
                eprintln!(
                    "warning: [passive] is on, but passive mode cannot run with this binary or kernel: {why}; the prober will probe without it"
                );
            }
            Ok(0)
        }
        Command::Matrix(args) => {
            let loaded = load(&args.config)?;
            let mut opts = MatrixOptions::from_loaded(&loaded);
            if let Some(n) = args.samples {
                if n == 0 {
                    anyhow::bail!("--samples 0 probes nothing; give 1 or more");
                }
                opts.samples = n;
            }
            if let Some(c) = args.concurrency {
                if c == 0 {
                    anyhow::bail!("--concurrency 0 starts nothing; give 1 or more");
                }
                opts.concurrency = c;
            }
            opts.progress = std::io::stderr().is_terminal();
            opts.until_verdict = args.until_verdict;
            let report = block_on(async {
                let cancel = CancellationToken::new();
                let caught = crate::shutdown::cancel_on_signals(cancel.clone());
                let report = matrix::run(&loaded, &opts, &cancel).await;
                report.map(|mut r| {
                    r.interrupted = caught.name().map(str::to_string);
                    r
                })
            })??;
            if report.interrupted.is_some() {
                eprintln!(
                    "tailprobe: interrupted by {}: the report is partial",
                    report.interrupted.as_deref().unwrap_or_default()
                );
            }
            let text = match args.format {
                Format::Table => report.to_table(),
                Format::Json => report.to_json() + "\n",
                Format::Html => {
                    let mut m = crate::wire::report::ClusterMatrix::of_reports(
                        std::slice::from_ref(&report),
                        &report.findings,
                        report.facts.as_slice(),
                    );
                    m.trace_url = loaded.config.ui.trace_url.clone();
                    let labels = crate::node::labels_from_env();
                    if !labels.is_empty() {
                        m.node_labels.insert(report.source_node.clone(), labels);
                    }
                    crate::wire::page::report(&m)
                }
            };
            write_output(args.output.as_deref(), &text)?;
            Ok(report.exit_code())
        }
        Command::Run(args) => {
            let mut loaded = load(&args.config)?;
            loaded.config.passive.enabled |= args.passive;
            block_on(async {
                let cancel = CancellationToken::new();
                crate::shutdown::cancel_on_signals(cancel.clone());
                crate::daemon::run(loaded, args.listen, cancel, None).await
            })??;
            Ok(0)
        }
        Command::Hub(args) => {
            if args.passive {
                anyhow::bail!(
                    "--passive applies to `tailprobe run`: the hub reads probers, not a node's connections"
                );
            }
            let loaded = load(&args.config)?;
            block_on(async {
                let cancel = CancellationToken::new();
                crate::shutdown::cancel_on_signals(cancel.clone());
                crate::hub::run(loaded, args.listen, cancel).await
            })??;
            Ok(0)
        }
        Command::Cluster {
            command: ClusterCommand::Matrix(args),
        } => cluster::cluster_matrix(args),
        Command::Lab { command } => lab::lab(command),
        Command::Rules { config } => {
            let loaded = load(&config)?;
            print!(
                "{}",
                crate::slo::rules::prometheus_rule(
                    &loaded.config.slos,
                    &loaded.config.ui.runbook_base
                )
            );
            Ok(0)
        }
        Command::Echo(args) => {
            if !(args.accept_rate.is_finite() && args.accept_rate >= 0.0) {
                anyhow::bail!(
                    "--accept-rate {} is not a rate; give connections a second, 0 for no limit",
                    args.accept_rate
                );
            }
            block_on(async {
                let listener = crate::server::echo::listen(args.listen, args.backlog)
                    .with_context(|| {
                        format!(
                            "cannot listen on {}; pick a free address with --listen",
                            args.listen
                        )
                    })?;
                tracing::info!(addr = %args.listen, node = %args.node, pod = %args.pod, delay = %args.delay, "Echo serving.");
                let cancel = CancellationToken::new();
                crate::shutdown::cancel_on_signals(cancel.clone());
                let dns = match args.dns {
                    Some(addr) => {
                        let responder = crate::server::dns::Responder::bind(addr)
                            .await
                            .with_context(|| {
                                format!(
                                    "cannot answer DNS on {addr}; pick a free address with --dns"
                                )
                            })?;
                        tracing::info!(%addr, answer = %args.dns_answer, "DNS answering.");
                        Some(tokio::spawn(
                            responder.serve(args.dns_answer, cancel.clone()),
                        ))
                    }
                    None => None,
                };
                let id = crate::server::echo::EchoIdentity {
                    node: args.node,
                    pod: args.pod,
                };
                let limits = crate::server::http::Limits {
                    accept_every: if args.accept_rate > 0.0 {
                        std::time::Duration::from_secs_f64(1.0 / args.accept_rate)
                    } else {
                        std::time::Duration::ZERO
                    },
                    ..crate::server::http::Limits::ECHO
                };
                crate::server::echo::serve(
                    listener,
                    id,
                    args.delay,
                    limits,
                    Default::default(),
                    cancel,
                )
                .await;
                if let Some(task) = dns {
                    task.await?;
                }
                anyhow::Ok(())
            })??;
            Ok(0)
        }
    }
}

fn write_output(path: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text)
            .with_context(|| format!("cannot write the report to {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
