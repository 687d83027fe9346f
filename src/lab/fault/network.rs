//! Network faults beyond the seed's: DNS queries lost on the way to one
//! node's resolver, a strict reverse-path filter on an asymmetric route,
//! and new flows dropped at one node as a full conntrack table drops them
//! (emulated: a namespace cannot lower its own `nf_conntrack_max`, and
//! filling the table it shares with the host would hit the host; the
//! kernel's conntrack counters do not move).

use std::fmt::Write as _;

use crate::lab::plan::{UNDERLAY_DEV, VXLAN_DEV};
use crate::lab::{LabError, Plan, sh};

/// Queries to node `on`'s resolver (port 53, UDP and TCP) arriving over
/// the overlay, `percent` % of them dropped: lookups from other nodes are
/// lost, its own node's are not.
pub fn dns_loss_nft(plan: &Plan, percent: u32) -> String {
    let t = plan.fault_table("dns", "loss");
    format!(
        "table ip {t} {{\n  chain prerouting {{ type filter hook prerouting priority raw - 10; policy accept;\n    \
         iifname \"{VXLAN_DEV}\" meta l4proto {{ tcp, udp }} th dport {} numgen random mod 100 < {percent} counter drop\n  }}\n}}\n",
        crate::lab::plan::DNS_PORT
    )
}

/// The first packet of `percent` % of new flows through the node dropped,
/// arriving (prerouting) or leaving from the node itself (output): what
/// conntrack does with the table full. A retransmitted SYN is a new flow
/// again and takes its chance again.
pub fn conntrack_drop_nft(plan: &Plan, percent: u32) -> String {
    let t = plan.fault_table("conntrack", "drop");
    let mut s = format!("table ip {t} {{\n");
    for hook in ["prerouting", "output"] {
        let _ = writeln!(
            s,
            "  chain {hook} {{ type filter hook {hook} priority filter; policy accept;\n    \
             ct state new numgen random mod 100 < {percent} counter drop\n  }}"
        );
    }
    s.push_str("}\n");
    s
}

/// Node `on` routes node `from`'s pods over the underlay while their
/// packets still arrive over the overlay, and filters reverse paths
/// strictly on the overlay: every packet from `from`'s pods is dropped and
/// counted (TcpExtIPReversePathFilter). `from`'s host network, whose
/// tunnel address still routes over the overlay, passes.
pub fn rp_filter(plan: &Plan, on: usize, from: usize) -> Result<(), LabError> {
    if on == from {
        return Err(LabError::Usage(
            "rp-filter acts between two nodes: --on and --from must differ".into(),
        ));
    }
    let ns = plan.node_ns(on);
    sh::ip_batch(
        Some(&ns),
        &[format!(
            "route replace {} via {} dev {UNDERLAY_DEV}",
            plan.pod_cidr(from),
            plan.underlay_ip(from)
        )],
    )?;
    sh::sysctl(&ns, "net.ipv4.conf.all.rp_filter", "1")?;
    sh::sysctl(
        &ns,
        &format!("net.ipv4.conf.{}.rp_filter", VXLAN_DEV.replace('.', "/")),
        "1",
    )
}

/// Every node's routes to the other nodes' pods over the overlay again,
/// and the reverse-path filter off, as `lab up` leaves them.
pub fn clear_rp_filter(plan: &Plan) -> Result<usize, LabError> {
    let mut restored = 0;
    for i in plan.node_ids() {
        let ns = plan.node_ns(i);
        let strict = sh::in_ns(&ns, "sysctl", &["-n", "net.ipv4.conf.all.rp_filter"])?;
        if strict.trim() == "0" {
            continue;
        }
        let routes: Vec<String> = plan
            .node_ids()
            .filter(|j| *j != i)
            .map(|j| {
                format!(
                    "route replace {} via {} dev {VXLAN_DEV} onlink",
                    plan.pod_cidr(j),
                    plan.tunnel_ip(j)
                )
            })
            .collect();
        sh::ip_batch(Some(&ns), &routes)?;
        sh::sysctl(&ns, "net.ipv4.conf.all.rp_filter", "0")?;
        sh::sysctl(
            &ns,
            &format!("net.ipv4.conf.{}.rp_filter", VXLAN_DEV.replace('.', "/")),
            "0",
        )?;
        restored += 1;
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_loss_drops_queries_from_the_overlay_only() {
        let p = Plan::new("tp", 3).unwrap();
        let t = dns_loss_nft(&p, 30);
        assert!(t.contains("table ip tp-fault-dns-loss"));
        assert!(t.contains(
            "iifname \"vxlan.calico\" meta l4proto { tcp, udp } th dport 53 numgen random mod 100 < 30 counter drop"
        ));
    }

    #[test]
    fn conntrack_drop_takes_new_flows_in_and_out() {
        let t = conntrack_drop_nft(&Plan::new("tp", 3).unwrap(), 20);
        assert_eq!(
            t.matches("ct state new numgen random mod 100 < 20 counter drop")
                .count(),
            2
        );
        assert!(t.contains("hook prerouting") && t.contains("hook output"));
    }
}
