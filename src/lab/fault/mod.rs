//! Faults injected into a lab: nftables rules in the nodes' namespaces (and
//! the NFQUEUE delayer for delay and jitter), each in a table named with the
//! lab's prefix so `clear` and `down` find them.

use std::time::Duration;

use super::{LabError, Plan, check_root, delayer, plan, sh, signal, spawn_in, state_dir};

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Drop the first `count` SYNs of `percent` % of the flows from `from`
    /// to `to`.
    DropSyn {
        from: usize,
        to: usize,
        count: u32,
        percent: u32,
    },
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
        Fault::DropSyn {
            from,
            to,
            count,
            percent,
        } => {
            if from == to {
                return Err(LabError::Usage(
                    "drop-syn acts on the overlay, so --from and --to must be different nodes"
                        .into(),
                ));
            }
            if count == 0 {
                return Err(LabError::Usage("--count must be at least 1".into()));
            }
            if !(1..=100).contains(&percent) {
                return Err(LabError::Usage("--percent must be 1 to 100".into()));
            }
            sh::nft(&plan.node_ns(to), &plan.drop_syn_nft(from, count, percent))
        }
        Fault::VxlanCsumBug { on } => {
            // The mark survives encapsulation, so the outer packet is
            // masqueraded too; checksums are computed in software on the
            // sender and verified in software on the receivers, as they would
            // be by hardware that does not offload them.
            if plan.kubernetes {
                // kube-proxy owns its table: the old behaviour goes on top.
                sh::nft(&plan.node_ns(on), &plan.keep_mark_nft())?;
            } else {
                sh::nft(&plan.node_ns(on), &plan.kube_proxy_replace_nft(false))?;
            }
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
            let rule = delay_rule("-A");
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            sh::in_ns(&ns, "iptables", &args).map(drop)
        }
    }
}

/// The NFQUEUE rule that hands a node's arriving packets to the delayer,
/// to add (`-A`) or delete (`-D`).
fn delay_rule(op: &str) -> Vec<String> {
    [
        "-t",
        "mangle",
        op,
        "PREROUTING",
        "-i",
        plan::UNDERLAY_DEV,
        "-j",
        "NFQUEUE",
        "--queue-num",
        &delayer::QUEUE.to_string(),
        "--queue-bypass",
    ]
    .map(str::to_string)
    .to_vec()
}

/// The delayer processes running in a namespace.
pub(super) fn delayer_pids(ns: &str) -> impl Iterator<Item = String> {
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
        if !plan.kubernetes {
            sh::nft(&ns, &plan.kube_proxy_replace_nft(true))?;
        }
        sh::in_ns(
            &ns,
            "ethtool",
            &["-K", plan::UNDERLAY_DEV, "tx", "on", "rx", "on"],
        )?;
        let pids: Vec<String> = delayer_pids(&ns).collect();
        if !pids.is_empty() {
            // Only the delayer's rule: kube-proxy's iptables mode has chains
            // of its own in this table.
            let rule = delay_rule("-D");
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            let _ = sh::in_ns(&ns, "iptables", &args);
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

pub(super) fn fault_tables(plan: &Plan, i: usize) -> Result<Vec<String>, LabError> {
    let prefix = format!("{}-fault-", plan.prefix);
    Ok(sh::in_ns(&plan.node_ns(i), "nft", &["list", "tables"])?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .filter(|t| t.starts_with(&prefix))
        .collect())
}
