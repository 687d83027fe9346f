//! Faults in a backend rather than the network: node i's echo target
//! restarted as a backend in trouble (late answers, a slow accept loop
//! behind a small backlog), and a load that keeps such a backend's accept
//! queue full. The kernel does the rest: connections queue for accept, and
//! past the backlog their SYNs are dropped and counted (ListenOverflows,
//! ListenDrops) in the pod's own namespace.

use std::time::Duration;

use super::pids_running;
use crate::lab::{
    ECHO_DELAY_FILE, LabError, Plan, echo_args, plan, signal, spawn_in, start_echo, state_dir,
    wait_listening,
};

/// Marks a node whose echo a fault restarted, for `clear`.
fn marker(plan: &Plan, i: usize) -> std::path::PathBuf {
    state_dir(&plan.prefix).join(format!("fault-echo-node{i}"))
}

/// The service time the lab's echo targets were started with.
fn base_delay(plan: &Plan) -> String {
    std::fs::read_to_string(state_dir(&plan.prefix).join(ECHO_DELAY_FILE))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "0s".into())
}

fn refuse_on_kubernetes(plan: &Plan, fault: &str) -> Result<(), LabError> {
    if plan.kubernetes {
        return Err(LabError::Usage(format!(
            "{fault} restarts the lab's own echo targets; on a Kubernetes lab the backends are the probers' echo, which the lab does not restart: use a lab without --kubernetes"
        )));
    }
    Ok(())
}

/// Restarts node `i`'s echo with `extra` arguments after (or instead of)
/// the lab's own, and waits until it listens again.
fn restart_echo(plan: &Plan, i: usize, delay: &str, extra: &[String]) -> Result<(), LabError> {
    let ns = plan.pod_ns(i);
    let old: Vec<String> = pids_running(&ns, &["echo"]).collect();
    for pid in &old {
        signal(pid, nix::sys::signal::Signal::SIGTERM);
    }
    for _ in 0..60 {
        if pids_running(&ns, &["echo"]).next().is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids_running(&ns, &["echo"]) {
        signal(&pid, nix::sys::signal::Signal::SIGKILL);
    }
    let mut args = echo_args(plan, i, delay);
    args.extend_from_slice(extra);
    start_echo(plan, i, &args)?;
    wait_listening(&ns, plan::POD_PORT)
}

/// A share of node `on`'s answers `delay` late, the rest at once.
pub fn slow(plan: &Plan, on: usize, delay: Duration, percent: u32) -> Result<(), LabError> {
    refuse_on_kubernetes(plan, "slow-backend")?;
    if !(1..=100).contains(&percent) || delay.is_zero() {
        return Err(LabError::Usage(
            "give a --delay above zero and a --percent from 1 to 100".into(),
        ));
    }
    let spec = format!("{}us@{percent}%", delay.as_micros());
    restart_echo(plan, on, &spec, &[])?;
    touch(&marker(plan, on))
}

/// Node `on`'s backend accepts `accept_rate` connections a second behind
/// a backlog of `backlog`, while `load` connections a second arrive from
/// its own node on top of the probes.
pub fn listen_overflow(
    plan: &Plan,
    on: usize,
    backlog: u32,
    accept_rate: u32,
    load: u32,
) -> Result<(), LabError> {
    refuse_on_kubernetes(plan, "listen-overflow")?;
    if accept_rate == 0 {
        return Err(LabError::Usage("--accept-rate must be at least 1".into()));
    }
    let extra = [
        "--backlog".to_string(),
        backlog.to_string(),
        "--accept-rate".to_string(),
        accept_rate.to_string(),
    ];
    restart_echo(plan, on, &base_delay(plan), &extra)?;
    touch(&marker(plan, on))?;
    if load > 0 {
        let log = state_dir(&plan.prefix).join(format!("load-{}.log", plan.node_name(on)));
        spawn_in(
            &plan.node_ns(on),
            &[
                "lab",
                "load",
                "--to",
                &format!("{}:{}", plan.pod_ip(on), plan::POD_PORT),
                "--rate",
                &load.to_string(),
            ],
            &log,
        )?;
    }
    Ok(())
}

/// Stops every load and gives every restarted echo the lab's own
/// arguments back; how many it undid.
pub fn clear(plan: &Plan) -> Result<usize, LabError> {
    let mut undone = 0;
    for i in plan.node_ids() {
        let ns = plan.node_ns(i);
        let loads: Vec<String> = pids_running(&ns, &["lab", "load"]).collect();
        for pid in &loads {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
        undone += usize::from(!loads.is_empty());
        let m = marker(plan, i);
        if m.exists() {
            restart_echo(plan, i, &base_delay(plan), &[])?;
            let _ = std::fs::remove_file(m);
            undone += 1;
        }
    }
    Ok(undone)
}

fn touch(path: &std::path::Path) -> Result<(), LabError> {
    std::fs::write(path, b"").map_err(|e| LabError::Kernel {
        what: format!("cannot write {} ({e})", path.display()),
    })
}

/// `tailprobe lab load`: `rate` connections a second to `to`, each a GET
/// read to its end or abandoned after 10 s; at most 4,096 open. A connect
/// not answered within 900 ms is given up before its SYN's first
/// retransmission: a load that retransmitted its dropped SYNs would add
/// them to the next second's arrivals and drive the drop share towards
/// every SYN, where a load above the accept rate by a margin drops about
/// that margin's share (25 a second against 20 accepted: a fifth).
/// Returns only on an error.
pub fn load(to: std::net::SocketAddr, rate: u32) -> Result<(), LabError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if rate == 0 {
        return Err(LabError::Usage("--rate must be at least 1".into()));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Kernel {
            what: format!("cannot start the load's runtime ({e})"),
        })?;
    rt.block_on(async move {
        let open = std::sync::Arc::new(tokio::sync::Semaphore::new(4096));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        loop {
            tick.tick().await;
            let Ok(slot) = std::sync::Arc::clone(&open).try_acquire_owned() else {
                continue;
            };
            tokio::spawn(async move {
                let _slot = slot;
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    let mut s = tokio::time::timeout(
                        Duration::from_millis(900),
                        tokio::net::TcpStream::connect(to),
                    )
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                    s.write_all(b"GET / HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n")
                        .await?;
                    let mut sink = Vec::new();
                    s.read_to_end(&mut sink).await?;
                    Ok::<_, std::io::Error>(())
                })
                .await;
            });
        }
    })
}
