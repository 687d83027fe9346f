//! `lab status`: what a person checks before and after a fault.

use super::fault::{delayer_pids, fault_tables};
use super::{LabError, Plan, kube, plan, plan6, sh, state_dir};

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
    if plan.kubernetes {
        let _ = writeln!(
            out,
            "kubernetes {}: API server https://{}:{} (inside {}), admin kubeconfig {}; \
             `tailprobe lab kubectl --name {} -- get pods -A`",
            kube::bins::kubernetes_version(),
            plan.api_ip(),
            plan::API_PORT,
            plan.control_ns(),
            kube::admin_kubeconfig(&plan.prefix).display(),
            plan.prefix
        );
        let _ = writeln!(
            out,
            "services: from the API server, programmed by kube-proxy in every node; node i's pods in 10.244.i.0/24"
        );
    } else {
        let _ = writeln!(
            out,
            "services: {} (backend on every node){}",
            plan.all_vip(),
            plan.node_ids()
                .map(|i| format!(", {} -> {}", plan.node_vip(i), plan.node_name(i)))
                .collect::<String>()
        );
        if plan.dual_stack {
            let _ = writeln!(
                out,
                "ipv6 services: {} (backend on every node){}; overlay {}",
                plan.all_vip6(),
                plan.node_ids()
                    .map(|i| format!(", {} -> {}", plan.node_vip6(i), plan.node_name(i)))
                    .collect::<String>(),
                plan6::VXLAN6_DEV
            );
            for i in plan.node_ids() {
                let _ = writeln!(
                    out,
                    "{}: ipv6 underlay {} pod {} tunnel {}",
                    plan.node_name(i),
                    plan.underlay_ip6(i),
                    plan.pod_ip6(i),
                    plan.tunnel_ip6(i)
                );
            }
        }
    }
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
            "{}: underlay {} pods {} tunnel {}; syn_linear_timeouts={} syn_retries={} txrehash={} udp_timeout={}; eth0 tx-checksumming={} rx-checksumming={}; UdpInCsumErrors={}",
            plan.node_name(i),
            plan.underlay_ip(i),
            if plan.kubernetes {
                plan.pod_cidr(i)
            } else {
                plan.pod_ip(i).to_string()
            },
            plan.tunnel_ip(i),
            read("net.ipv4.tcp_syn_linear_timeouts"),
            read("net.ipv4.tcp_syn_retries"),
            read("net.core.txrehash"),
            read("net.netfilter.nf_conntrack_udp_timeout"),
            feature("tx-checksumming:"),
            feature("rx-checksumming:"),
            csum_errors
        );
        for (family, table) in fault_tables(plan, i)? {
            let listing = sh::in_ns(&ns, "nft", &["list", "table", &family, &table])?;
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
