//! The `lab` subcommands' arguments: what each takes and its defaults.

use std::path::PathBuf;

use clap::Subcommand;

use crate::cli::Format;

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
    /// Give the built-in lab IPv6 beside IPv4 (ULA underlay, pods, Service
    /// VIPs and a second VXLAN device, as Calico's dual-stack VXLAN): its
    /// matrix probes every Service once per family.
    #[arg(long)]
    pub dual_stack: bool,
}

impl KubeArgs {
    pub(super) fn options(&self) -> anyhow::Result<crate::lab::kube::Options> {
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
        /// Only this family's overlay (ipv4: vxlan.calico, ipv6:
        /// vxlan-v6.calico); by default every family the lab has.
        #[arg(long)]
        family: Option<crate::model::Family>,
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
