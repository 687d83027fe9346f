//! The built-in lab: an emulated cluster made of network namespaces on the
//! real kernel. Real SYNs, real VXLAN, real DNAT, real retransmission timers.
//! Everything it creates carries its prefix; nothing is added to the caller's
//! own namespace; `down` finds leftovers by prefix, even after a crash.

pub mod delayer;
pub mod demo;
mod fault;
pub mod kube;
pub mod netns;
pub mod plan;
pub mod plan6;
pub mod relay;
pub mod run;
pub mod scenario;
mod sh;
mod status;
pub mod telemetry;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use fault::{Fault, clear, inject, load};
pub use plan::Plan;
pub use status::status;

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

    /// Applies to node `i`'s namespace and its pods' (TCP knobs are per
    /// namespace; a Kubernetes lab's agent copies them into pods it makes
    /// later).
    pub fn apply(&self, plan: &Plan, i: usize) -> Result<(), LabError> {
        let pods: Vec<String> = if plan.kubernetes {
            let prefix = format!("{}-k{i}-", plan.prefix);
            sh::namespaces()?
                .into_iter()
                .filter(|ns| ns.starts_with(&prefix))
                .collect()
        } else {
            vec![plan.pod_ns(i)]
        };
        for (key, value) in self.sysctls() {
            sh::sysctl(&plan.node_ns(i), key, &value.to_string())?;
            if key.starts_with("net.ipv4.tcp") {
                for ns in &pods {
                    sh::sysctl(ns, key, &value.to_string())?;
                }
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
    let all = sh::namespaces()?;
    let nodes = all
        .iter()
        .filter(|ns| Plan::owns_namespace(prefix, ns))
        .filter(|ns| ns.strip_prefix(prefix).is_some_and(|r| r.starts_with("-n")))
        .count();
    if nodes < 2 {
        return Err(LabError::NotUp {
            prefix: prefix.into(),
        });
    }
    let kubernetes = all.iter().any(|ns| *ns == format!("{prefix}-cp"));
    let plan = Plan::new(prefix, nodes).map_err(LabError::Usage)?;
    let dual_stack =
        sh::in_ns(&plan.node_ns(1), "ip", &["link", "show", plan6::VXLAN6_DEV]).is_ok();
    Ok(plan.with_kubernetes(kubernetes).with_dual_stack(dual_stack))
}

/// Builds the lab and starts an echo target in every pod; for a Kubernetes
/// lab (`plan.kubernetes`), the control plane, kube-proxy and the node
/// agents instead. On failure it removes what it made.
pub fn up(plan: &Plan, knobs: &Knobs, echo_delay: &str) -> Result<Duration, LabError> {
    up_with(plan, knobs, echo_delay, &kube::Options::default())
}

/// [`up`], with the Kubernetes lab's options.
pub fn up_with(
    plan: &Plan,
    knobs: &Knobs,
    echo_delay: &str,
    kube_opts: &kube::Options,
) -> Result<Duration, LabError> {
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
    if plan.kubernetes && plan.dual_stack {
        return Err(LabError::Usage(
            "--dual-stack builds the lab's own IPv6 Services; the Kubernetes lab's kube-proxy is IPv4-only here: drop --kubernetes or --dual-stack".into(),
        ));
    }
    if plan.kubernetes {
        // Before anything is made: a missing build is a usage error.
        kube::Bins::find(kube_opts.bins.as_deref())?;
    }
    build(plan, knobs, echo_delay)
        .and_then(|()| {
            if plan.kubernetes {
                kube::up(plan, kube_opts)
            } else {
                Ok(())
            }
        })
        .inspect_err(|_| {
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
        if !plan.kubernetes {
            root.push(format!(
                "link add eth0 netns {} type veth peer name cali{i} netns {}",
                plan.pod_ns(i),
                plan.node_ns(i)
            ));
        }
    }
    if plan.kubernetes {
        root.push(format!(
            "link add eth0 netns {} type veth peer name cp netns {ul}",
            plan.control_ns()
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
    if plan.kubernetes {
        bridge.push("link set cp master br0 up".into());
    }
    sh::ip_batch(Some(&ul), &bridge)?;
    if plan.kubernetes {
        sh::ip_batch(Some(&plan.control_ns()), &plan.control_batch())?;
    }
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
        sh::sysctl(&plan.node_ns(i), "net.ipv4.ip_forward", "1")?;
        if plan.dual_stack {
            sh::ip_batch(Some(&plan.node_ns(i)), &plan.node_batch6(i))?;
            sh::batch("bridge", Some(&plan.node_ns(i)), &plan.node_fdb_batch6(i))?;
            sh::sysctl(&plan.node_ns(i), "net.ipv6.conf.all.forwarding", "1")?;
        }
        if plan.kubernetes {
            // kube-proxy programs the Services; pods come from the agent.
            knobs.apply(plan, i)?;
            continue;
        }
        sh::ip_batch(Some(&plan.pod_ns(i)), &plan.pod_batch(i))?;
        if plan.dual_stack {
            sh::ip_batch(Some(&plan.pod_ns(i)), &plan.pod_batch6(i))?;
            sh::nft(&plan.node_ns(i), &plan.kube_proxy6_nft())?;
        }
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
    if plan.kubernetes {
        return Ok(());
    }
    // What `fault clear` gives a backend back.
    std::fs::write(dir.join(ECHO_DELAY_FILE), echo_delay).map_err(|e| LabError::Kernel {
        what: format!("cannot write {} ({e})", dir.display()),
    })?;
    for i in plan.node_ids() {
        start_echo(plan, i, &echo_args(plan, i, echo_delay))?;
    }
    for i in plan.node_ids() {
        wait_listening(&plan.pod_ns(i), plan::POD_PORT)?;
    }
    Ok(())
}

/// Where the lab keeps the service time its echo targets were started with.
const ECHO_DELAY_FILE: &str = "echo-delay";

/// The arguments of node `i`'s echo target: HTTP on the pod's port, and a
/// resolver on port 53 answering with the Service that has a backend on
/// every node.
fn echo_args(plan: &Plan, i: usize, delay: &str) -> Vec<String> {
    // A dual-stack lab's echo listens on both families at once: `[::]`
    // takes IPv4 too (the namespace's bindv6only is 0).
    let any = if plan.dual_stack { "[::]" } else { "0.0.0.0" };
    [
        "echo",
        "--listen",
        &format!("{any}:{}", plan::POD_PORT),
        "--node",
        &plan.node_name(i),
        "--pod",
        &format!("echo-{}", plan.node_name(i)),
        "--delay",
        delay,
        "--dns",
        &format!("{any}:{}", plan::DNS_PORT),
        "--dns-answer",
        &plan.all_vip().to_string(),
    ]
    .map(str::to_string)
    .to_vec()
}

fn start_echo(plan: &Plan, i: usize, args: &[String]) -> Result<(), LabError> {
    let log = state_dir(&plan.prefix).join(format!("echo-node{i}.log"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_in(&plan.pod_ns(i), &args, &log)
}

/// Starts `tailprobe ARGS` inside a namespace, detached from this process:
/// it lives until `lab down` ends every process in the lab's namespaces.
pub fn spawn_in(ns: &str, args: &[&str], log: &std::path::Path) -> Result<(), LabError> {
    spawn_in_env(ns, args, log, &relay::ProberEnv::default())
}

/// [`spawn_in`] with environment variables set and removed.
pub fn spawn_in_env(
    ns: &str,
    args: &[&str],
    log: &std::path::Path,
    env: &relay::ProberEnv,
) -> Result<(), LabError> {
    let exe = std::env::current_exe().map_err(|e| LabError::Kernel {
        what: format!("cannot find this program's path ({e})"),
    })?;
    spawn_program_env(ns, &exe, args, log, &env.remove, &env.set).map(drop)
}

/// Starts `program ARGS` inside a namespace, detached from this process,
/// its output appended to `log`, without the variables in `remove`.
pub fn spawn_program(
    ns: &str,
    program: &std::path::Path,
    args: &[&str],
    log: &std::path::Path,
    remove: &[String],
) -> Result<std::process::Child, LabError> {
    spawn_program_env(ns, program, args, log, remove, &[])
}

/// Starts `program ARGS` in a namespace's network only (`nsenter --net`),
/// in the caller's mount namespace, detached, its output appended to `log`.
pub fn spawn_net_only(
    ns: &str,
    program: &std::path::Path,
    args: &[&str],
    log: &std::path::Path,
) -> Result<std::process::Child, LabError> {
    use std::os::unix::process::CommandExt;
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| LabError::Kernel {
                what: format!("cannot create {} ({e})", log.display()),
            })
    };
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Command {
            command: format!("nsenter --net=/run/netns/{ns} {}", program.display()),
            message: e.to_string(),
        })
}

fn spawn_program_env(
    ns: &str,
    exe: &std::path::Path,
    args: &[&str],
    log: &std::path::Path,
    remove: &[String],
    set: &[(String, String)],
) -> Result<std::process::Child, LabError> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| LabError::Kernel {
            what: format!("cannot create {} ({e})", log.display()),
        })?;
    let err = log.try_clone().map_err(|e| LabError::Kernel {
        what: e.to_string(),
    })?;
    let mut cmd = Command::new("ip");
    for k in remove {
        cmd.env_remove(k);
    }
    cmd.args(["netns", "exec", ns])
        .arg(exe)
        .args(args)
        .envs(set.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Command {
            command: format!("ip netns exec {ns} {} {}", exe.display(), args.join(" ")),
            message: e.to_string(),
        })
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
        // A node agent removes its pods' namespaces as it stops: one gone
        // in between is not an error.
        if let Err(e) = sh::run("ip", &["netns", "del", ns], None)
            && sh::namespaces()?.contains(ns)
        {
            return Err(e);
        }
    }
    fault::release(prefix)?;
    telemetry::stop(prefix);
    let _ = std::fs::remove_dir_all(state_dir(prefix));
    Ok(mine)
}
