//! The built-in lab: an emulated cluster made of network namespaces on the
//! real kernel. Real SYNs, real VXLAN, real DNAT, real retransmission timers.
//! Everything it creates carries its prefix; nothing is added to the caller's
//! own namespace; `down` finds leftovers by prefix, even after a crash.

pub mod delayer;
pub mod netns;
pub mod plan;
pub mod run;
mod sh;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use plan::Plan;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root (it creates network namespaces); run it with sudo or as root")]
    NotRoot,
    #[error(
        "`{tool}` is not installed; install the Debian package {package} (apt-get install {package})"
    )]
    MissingTool { tool: String, package: String },
    #[error(
        "a lab named \"{prefix}\" exists already; pick another --name or remove it with `tailprobe lab down --name {prefix}`"
    )]
    NameInUse { prefix: String },
    #[error("no lab named \"{prefix}\" is up; start one with `tailprobe lab up --name {prefix}`")]
    NotUp { prefix: String },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("{what}")]
    Kernel { what: String },
    #[error("{0}")]
    Usage(String),
}

impl LabError {
    fn missing_tool(tool: &str) -> Self {
        let package = match tool {
            "ip" | "bridge" | "ss" => "iproute2",
            "nft" => "nftables",
            "ethtool" => "ethtool",
            other => other,
        };
        LabError::MissingTool {
            tool: tool.into(),
            package: package.into(),
        }
    }
}

/// Per-namespace kernel knobs that shape what a probe sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs {
    /// `net.ipv4.tcp_syn_linear_timeouts` (kernels >= 6.5; 0 = classic ladder).
    pub syn_linear_timeouts: Option<u32>,
    /// `net.ipv4.tcp_syn_retries`.
    pub syn_retries: Option<u32>,
    /// `net.core.txrehash`: rehash the flow (and VXLAN source port) on a SYN timeout.
    pub txrehash: Option<u32>,
    /// `net.netfilter.nf_conntrack_udp_timeout`, seconds.
    pub udp_timeout: Option<u32>,
}

impl Knobs {
    fn sysctls(&self) -> Vec<(&'static str, u32)> {
        [
            ("net.ipv4.tcp_syn_linear_timeouts", self.syn_linear_timeouts),
            ("net.ipv4.tcp_syn_retries", self.syn_retries),
            ("net.core.txrehash", self.txrehash),
            ("net.netfilter.nf_conntrack_udp_timeout", self.udp_timeout),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// Applies to node `i`'s namespace and its pod's (TCP knobs are per namespace).
    pub fn apply(&self, plan: &Plan, i: usize) -> Result<(), LabError> {
        for (key, value) in self.sysctls() {
            sh::sysctl(&plan.node_ns(i), key, &value.to_string())?;
            if key.starts_with("net.ipv4.tcp") {
                sh::sysctl(&plan.pod_ns(i), key, &value.to_string())?;
            }
        }
        Ok(())
    }
}

fn check_root() -> Result<(), LabError> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    if uid == "0" {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

fn check_tools() -> Result<(), LabError> {
    for tool in ["ip", "nft", "ethtool"] {
        sh::run(tool, &["-V"], None).or_else(|e| match e {
            LabError::MissingTool { .. } => Err(e),
            // Some versions answer -V with a non-zero status; present is enough.
            _ => Ok(String::new()),
        })?;
    }
    Ok(())
}

/// Where a lab keeps its generated configs and logs.
pub fn state_dir(prefix: &str) -> PathBuf {
    PathBuf::from("/run/tailprobe-lab").join(prefix)
}

/// The lab with this prefix, if it is up: its node count comes from the
/// namespaces that exist.
pub fn find(prefix: &str) -> Result<Plan, LabError> {
    check_root()?;
    let nodes = sh::namespaces()?
        .iter()
        .filter(|ns| Plan::owns_namespace(prefix, ns))
        .filter(|ns| ns.strip_prefix(prefix).is_some_and(|r| r.starts_with("-n")))
        .count();
    if nodes < 2 {
        return Err(LabError::NotUp {
            prefix: prefix.into(),
        });
    }
    Plan::new(prefix, nodes).map_err(LabError::Usage)
}

/// Builds the lab and starts an echo target in every pod. On failure it
/// removes what it made.
pub fn up(plan: &Plan, knobs: &Knobs, echo_delay: &str) -> Result<Duration, LabError> {
    check_root()?;
    check_tools()?;
    let t0 = Instant::now();
    let existing = sh::namespaces()?;
    if existing
        .iter()
        .any(|ns| Plan::owns_namespace(&plan.prefix, ns))
    {
        return Err(LabError::NameInUse {
            prefix: plan.prefix.clone(),
        });
    }
    build(plan, knobs, echo_delay).inspect_err(|_| {
        let _ = down(&plan.prefix);
    })?;
    Ok(t0.elapsed())
}

fn build(plan: &Plan, knobs: &Knobs, echo_delay: &str) -> Result<(), LabError> {
    let mut root: Vec<String> = plan
        .namespaces()
        .iter()
        .map(|ns| format!("netns add {ns}"))
        .collect();
    let ul = plan.underlay_ns();
    for i in plan.node_ids() {
        // Both ends are created straight into the lab's namespaces.
        root.push(format!(
            "link add eth0 netns {} type veth peer name n{i} netns {ul}",
            plan.node_ns(i)
        ));
        root.push(format!(
            "link add eth0 netns {} type veth peer name cali{i} netns {}",
            plan.pod_ns(i),
            plan.node_ns(i)
        ));
    }
    sh::ip_batch(None, &root)?;
    let mut bridge = vec![
        "link set lo up".to_string(),
        "link add br0 type bridge".into(),
        "link set br0 up".into(),
    ];
    for i in plan.node_ids() {
        bridge.push(format!("link set n{i} master br0 up"));
    }
    sh::ip_batch(Some(&ul), &bridge)?;
    for i in plan.node_ids() {
        sh::ip_batch(Some(&plan.node_ns(i)), &plan.node_batch(i)).map_err(|e| match e {
            LabError::Command { message, .. } if message.contains("vxlan") || message.contains("Unknown device type") => {
                LabError::Kernel {
                    what: format!("cannot create a VXLAN device ({message}); this kernel lacks the vxlan module"),
                }
            }
            other => other,
        })?;
        sh::batch("bridge", Some(&plan.node_ns(i)), &plan.node_fdb_batch(i))?;
        sh::ip_batch(Some(&plan.pod_ns(i)), &plan.pod_batch(i))?;
        sh::sysctl(&plan.node_ns(i), "net.ipv4.ip_forward", "1")?;
        sh::nft(&plan.node_ns(i), &plan.kube_proxy_nft(true)).map_err(|e| match e {
            LabError::Command { message, .. } => LabError::Kernel {
                what: format!(
                    "cannot load the Service rules ({message}); this kernel needs nftables with nat"
                ),
            },
            other => other,
        })?;
        knobs.apply(plan, i)?;
    }
    let dir = state_dir(&plan.prefix);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::Kernel {
        what: format!("cannot create {} ({e})", dir.display()),
    })?;
    for i in plan.node_ids() {
        let log = dir.join(format!("echo-node{i}.log"));
        spawn_in(
            &plan.pod_ns(i),
            &[
                "echo",
                "--listen",
                &format!("0.0.0.0:{}", plan::POD_PORT),
                "--node",
                &plan.node_name(i),
                "--pod",
                &format!("echo-{}", plan.node_name(i)),
                "--delay",
                echo_delay,
            ],
            &log,
        )?;
    }
    for i in plan.node_ids() {
        wait_listening(&plan.pod_ns(i), plan::POD_PORT)?;
    }
    Ok(())
}

/// Starts `tailprobe ARGS` inside a namespace, detached from this process:
/// it lives until `lab down` ends every process in the lab's namespaces.
pub fn spawn_in(ns: &str, args: &[&str], log: &std::path::Path) -> Result<(), LabError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| LabError::Kernel {
        what: format!("cannot find this program's path ({e})"),
    })?;
    let log = std::fs::File::create(log).map_err(|e| LabError::Kernel {
        what: format!("cannot create {} ({e})", log.display()),
    })?;
    let err = log.try_clone().map_err(|e| LabError::Kernel {
        what: e.to_string(),
    })?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Command {
            command: format!("ip netns exec {ns} tailprobe {}", args.join(" ")),
            message: e.to_string(),
        })?;
    Ok(())
}

fn wait_listening(ns: &str, port: u16) -> Result<(), LabError> {
    let filter = format!("sport = :{port}");
    for _ in 0..100 {
        if !sh::in_ns(ns, "ss", &["-Hltn", &filter])?.trim().is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::Kernel {
        what: format!(
            "nothing listens on port {port} in {ns} after 5 s; see the logs in {}",
            state_dir("").display()
        ),
    })
}

/// Sends a signal to a process by its decimal pid; a process that is
/// already gone is not an error.
fn signal(pid: &str, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = pid.parse::<i32>() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Removes every namespace with this prefix (and with them their links,
/// tables and processes) and the state directory. Safe to run twice.
pub fn down(prefix: &str) -> Result<Vec<String>, LabError> {
    check_root()?;
    let mine: Vec<String> = sh::namespaces()?
        .into_iter()
        .filter(|ns| Plan::owns_namespace(prefix, ns))
        .collect();
    for ns in &mine {
        let pids = sh::run("ip", &["netns", "pids", ns], None).unwrap_or_default();
        for pid in pids.split_whitespace() {
            signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
    if !mine.is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    for ns in &mine {
        let pids = sh::run("ip", &["netns", "pids", ns], None).unwrap_or_default();
        for pid in pids.split_whitespace() {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
        sh::run("ip", &["netns", "del", ns], None)?;
    }
    let _ = std::fs::remove_dir_all(state_dir(prefix));
    Ok(mine)
}

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Drop the first `count` SYNs of every flow from `from` to `to`.
    DropSyn { from: usize, to: usize, count: u32 },
    /// The VXLAN double-NAT checksum bug on node `on`'s outgoing overlay.
    VxlanCsumBug { on: usize },
    /// Lose `percent` % of packets arriving on node `on`'s underlay.
    Loss { on: usize, percent: u32 },
    /// Drop overlay packets above `size` bytes arriving at node `on`.
    MtuBlackhole { on: usize, size: u32 },
    /// Hold packets arriving on node `on`'s underlay for `delay` plus up to
    /// `jitter`, through the NFQUEUE delayer (these kernels have no netem).
    Delay {
        on: usize,
        delay: Duration,
        jitter: Duration,
    },
}

pub fn inject(plan: &Plan, fault: &Fault) -> Result<(), LabError> {
    check_root()?;
    match *fault {
        Fault::DropSyn { from, to, count } => {
            if from == to {
                return Err(LabError::Usage(
                    "drop-syn acts on the overlay, so --from and --to must be different nodes"
                        .into(),
                ));
            }
            if count == 0 {
                return Err(LabError::Usage("--count must be at least 1".into()));
            }
            sh::nft(&plan.node_ns(to), &plan.drop_syn_nft(from, count))
        }
        Fault::VxlanCsumBug { on } => {
            // The mark survives encapsulation, so the outer packet is
            // masqueraded too; checksums are computed in software on the
            // sender and verified in software on the receivers, as they would
            // be by hardware that does not offload them.
            sh::nft(&plan.node_ns(on), &plan.kube_proxy_replace_nft(false))?;
            sh::nft(&plan.node_ns(on), &plan.csum_bug_nft())?;
            sh::in_ns(
                &plan.node_ns(on),
                "ethtool",
                &["-K", plan::UNDERLAY_DEV, "tx", "off"],
            )?;
            for j in plan.node_ids().filter(|j| *j != on) {
                sh::in_ns(
                    &plan.node_ns(j),
                    "ethtool",
                    &["-K", plan::UNDERLAY_DEV, "rx", "off"],
                )?;
            }
            Ok(())
        }
        Fault::Loss { on, percent } => {
            if !(1..=100).contains(&percent) {
                return Err(LabError::Usage("--percent must be 1 to 100".into()));
            }
            sh::nft(&plan.node_ns(on), &plan.loss_nft(percent))
        }
        Fault::MtuBlackhole { on, size } => {
            sh::nft(&plan.node_ns(on), &plan.mtu_blackhole_nft(size))
        }
        Fault::Delay { on, delay, jitter } => {
            if delay.is_zero() && jitter.is_zero() {
                return Err(LabError::Usage(
                    "give a --delay or a --jitter above zero".into(),
                ));
            }
            let ns = plan.node_ns(on);
            if delayer_pids(&ns).next().is_some() {
                return Err(LabError::Usage(format!(
                    "{} already has a delay; run `tailprobe lab fault clear` first",
                    plan.node_name(on)
                )));
            }
            let us = |d: Duration| format!("{}us", d.as_micros());
            let log = state_dir(&plan.prefix).join(format!("delayer-{}.log", plan.node_name(on)));
            spawn_in(
                &ns,
                &[
                    "lab",
                    "delayer",
                    "--queue",
                    &delayer::QUEUE.to_string(),
                    "--delay",
                    &us(delay),
                    "--jitter",
                    &us(jitter),
                ],
                &log,
            )?;
            // The delayer binds its queue before packets are sent to it;
            // --queue-bypass lets them through if it is not there.
            std::thread::sleep(Duration::from_millis(200));
            sh::in_ns(
                &ns,
                "iptables",
                &[
                    "-t",
                    "mangle",
                    "-A",
                    "PREROUTING",
                    "-i",
                    plan::UNDERLAY_DEV,
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    &delayer::QUEUE.to_string(),
                    "--queue-bypass",
                ],
            )
            .map(drop)
        }
    }
}

/// The delayer processes running in a namespace.
fn delayer_pids(ns: &str) -> impl Iterator<Item = String> {
    sh::run("ip", &["netns", "pids", ns], None)
        .unwrap_or_default()
        .split_whitespace()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == b"delayer"))
                .unwrap_or(false)
        })
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
}

/// Removes every fault: fault tables go, Service rules and offloads return
/// to their healthy state.
pub fn clear(plan: &Plan) -> Result<usize, LabError> {
    check_root()?;
    let mut removed = 0;
    for i in plan.node_ids() {
        let ns = plan.node_ns(i);
        for table in fault_tables(plan, i)? {
            sh::nft(&ns, &format!("delete table ip {table}\n"))?;
            removed += 1;
        }
        sh::nft(&ns, &plan.kube_proxy_replace_nft(true))?;
        sh::in_ns(
            &ns,
            "ethtool",
            &["-K", plan::UNDERLAY_DEV, "tx", "on", "rx", "on"],
        )?;
        let pids: Vec<String> = delayer_pids(&ns).collect();
        if !pids.is_empty() {
            sh::in_ns(&ns, "iptables", &["-t", "mangle", "-F", "PREROUTING"])?;
            for pid in &pids {
                signal(pid, nix::sys::signal::Signal::SIGTERM);
            }
            for _ in 0..20 {
                if delayer_pids(&ns).next().is_none() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            for pid in delayer_pids(&ns) {
                signal(&pid, nix::sys::signal::Signal::SIGKILL);
            }
            removed += 1;
        }
    }
    Ok(removed)
}

fn fault_tables(plan: &Plan, i: usize) -> Result<Vec<String>, LabError> {
    let prefix = format!("{}-fault-", plan.prefix);
    Ok(sh::in_ns(&plan.node_ns(i), "nft", &["list", "tables"])?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .filter(|t| t.starts_with(&prefix))
        .collect())
}

/// What `lab status` shows: the topology, the faults with their counters,
/// and each node's UDP checksum errors and SYN knobs.
pub fn status(plan: &Plan) -> Result<String, LabError> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lab {}: {} nodes, state in {}",
        plan.prefix,
        plan.nodes,
        state_dir(&plan.prefix).display()
    );
    let _ = writeln!(
        out,
        "services: {} (backend on every node){}",
        plan.all_vip(),
        plan.node_ids()
            .map(|i| format!(", {} -> {}", plan.node_vip(i), plan.node_name(i)))
            .collect::<String>()
    );
    for i in plan.node_ids() {
        let ns = plan.node_ns(i);
        let read = |key: &str| {
            sh::in_ns(
                &ns,
                "cat",
                &[&format!("/proc/sys/{}", key.replace('.', "/"))],
            )
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "-".into())
        };
        let snmp = sh::in_ns(&ns, "cat", &["/proc/net/snmp"]).unwrap_or_default();
        let csum_errors = crate::node::udp_in_csum_errors(&snmp)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        let offload = sh::in_ns(&ns, "ethtool", &["-k", plan::UNDERLAY_DEV]).unwrap_or_default();
        let feature = |name: &str| {
            offload
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("-")
                .to_string()
        };
        let _ = writeln!(
            out,
            "{}: underlay {} pod {} tunnel {}; syn_linear_timeouts={} syn_retries={} txrehash={} udp_timeout={}; eth0 tx-checksumming={} rx-checksumming={}; UdpInCsumErrors={}",
            plan.node_name(i),
            plan.underlay_ip(i),
            plan.pod_ip(i),
            plan.tunnel_ip(i),
            read("net.ipv4.tcp_syn_linear_timeouts"),
            read("net.ipv4.tcp_syn_retries"),
            read("net.core.txrehash"),
            read("net.netfilter.nf_conntrack_udp_timeout"),
            feature("tx-checksumming:"),
            feature("rx-checksumming:"),
            csum_errors
        );
        for table in fault_tables(plan, i)? {
            let listing = sh::in_ns(&ns, "nft", &["list", "table", "ip", &table])?;
            for rule in listing.lines().filter(|l| l.contains("counter packets")) {
                let _ = writeln!(out, "  fault {table}: {}", rule.trim());
            }
        }
        if delayer_pids(&ns).next().is_some() {
            let rules = sh::in_ns(&ns, "iptables", &["-t", "mangle", "-S", "PREROUTING"])
                .unwrap_or_default();
            for rule in rules.lines().filter(|l| l.contains("NFQUEUE")) {
                let _ = writeln!(out, "  fault delay: {rule} (userspace delayer running)");
            }
        }
    }
    Ok(out)
}
