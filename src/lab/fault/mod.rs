//! Faults injected into a lab: nftables rules in the nodes' namespaces (and
//! the NFQUEUE delayer for delay and jitter), each in a table named with the
//! lab's prefix so `clear` and `down` find them; backends in trouble
//! ([`backend`]), a reverse-path filter and emulated conntrack drops
//! ([`network`]), a prober held to a CPU quota ([`starve`]).

mod backend;
mod network;
mod starve;

use std::time::Duration;

pub use backend::load;

/// Lets go of probers held by the lab named `lab`: its cgroups outlive
/// its namespaces.
pub fn release(lab: &str) -> Result<usize, LabError> {
    starve::clear(lab)
}

use super::{LabError, Plan, check_root, delayer, plan, sh, signal, spawn_in, state_dir};
use crate::model::Family;

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
        /// One family's overlay only; `None`: every family the lab has.
        family: Option<Family>,
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
    /// `percent` % of node `on`'s backend answers `delay` late, the rest
    /// at once (its echo restarted with that service time).
    SlowBackend {
        on: usize,
        delay: Duration,
        percent: u32,
    },
    /// Node `on`'s backend accepts `accept_rate` connections a second
    /// behind a backlog of `backlog`, under `load` more a second from its
    /// own node: its accept queue overflows and drops SYNs.
    ListenOverflow {
        on: usize,
        backlog: u32,
        accept_rate: u32,
        load: u32,
    },
    /// `percent` % of the DNS queries reaching node `on`'s resolver over
    /// the overlay lost.
    DnsLoss { on: usize, percent: u32 },
    /// Node `on` drops node `from`'s pods' packets with a strict
    /// reverse-path filter on an asymmetric route.
    RpFilter { on: usize, from: usize },
    /// Emulated: `percent` % of new flows through node `on` dropped, as a
    /// full conntrack table drops them (its counters do not move).
    ConntrackDrop { on: usize, percent: u32 },
    /// Node `on`'s prober daemons held to `percent` % of one CPU.
    StarveProber { on: usize, percent: u32 },
}

pub fn inject(plan: &Plan, fault: &Fault) -> Result<(), LabError> {
    check_root()?;
    match *fault {
        Fault::DropSyn {
            from,
            to,
            count,
            percent,
            family,
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
            if family == Some(Family::Ipv6) && !plan.dual_stack {
                return Err(LabError::Usage(format!(
                    "lab {} has no IPv6 overlay; start it with `lab up --dual-stack` or drop --family",
                    plan.prefix
                )));
            }
            for f in plan.families() {
                if family.is_some_and(|only| only != *f) {
                    continue;
                }
                let rules = match f {
                    Family::Ipv4 => plan.drop_syn_nft(from, count, percent),
                    Family::Ipv6 => plan.drop_syn6_nft(from, count, percent),
                };
                sh::nft(&plan.node_ns(to), &rules)?;
            }
            Ok(())
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
        Fault::SlowBackend { on, delay, percent } => backend::slow(plan, on, delay, percent),
        Fault::ListenOverflow {
            on,
            backlog,
            accept_rate,
            load,
        } => backend::listen_overflow(plan, on, backlog, accept_rate, load),
        Fault::DnsLoss { on, percent } => {
            percent_ok(percent)?;
            sh::nft(&plan.node_ns(on), &network::dns_loss_nft(plan, percent))
        }
        Fault::RpFilter { on, from } => network::rp_filter(plan, on, from),
        Fault::ConntrackDrop { on, percent } => {
            percent_ok(percent)?;
            sh::nft(
                &plan.node_ns(on),
                &network::conntrack_drop_nft(plan, percent),
            )
        }
        Fault::StarveProber { on, percent } => starve::inject(plan, on, percent),
    }
}

fn percent_ok(percent: u32) -> Result<(), LabError> {
    if (1..=100).contains(&percent) {
        Ok(())
    } else {
        Err(LabError::Usage("--percent must be 1 to 100".into()))
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
    pids_running(ns, &["lab", "delayer"])
}

/// This program's processes in a namespace whose arguments begin with
/// `words` (after the program's path).
pub(super) fn pids_running(ns: &str, words: &[&str]) -> impl Iterator<Item = String> {
    let words: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
    sh::run("ip", &["netns", "pids", ns], None)
        .unwrap_or_default()
        .split_whitespace()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).skip(1).collect();
                args.len() >= words.len()
                    && args.iter().zip(&words).all(|(a, w)| *a == w.as_slice())
            })
        })
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
}

/// Removes every fault: fault tables go, Service rules, routes, offloads
/// and backends return to their healthy state, held probers are let go.
pub fn clear(plan: &Plan) -> Result<usize, LabError> {
    check_root()?;
    let mut removed =
        backend::clear(plan)? + network::clear_rp_filter(plan)? + starve::clear(&plan.prefix)?;
    for i in plan.node_ids() {
        let ns = plan.node_ns(i);
        for (family, table) in fault_tables(plan, i)? {
            sh::nft(&ns, &format!("delete table {family} {table}\n"))?;
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

/// The fault tables on node i, each with its nftables family (`ip`, `ip6`).
pub(super) fn fault_tables(plan: &Plan, i: usize) -> Result<Vec<(String, String)>, LabError> {
    let prefix = format!("{}-fault-", plan.prefix);
    Ok(sh::in_ns(&plan.node_ns(i), "nft", &["list", "tables"])?
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(1);
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .filter(|(_, t)| t.starts_with(&prefix))
        .collect())
}
