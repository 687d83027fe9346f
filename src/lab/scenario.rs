//! What the demo injects: each scenario's faults, in words, and the kernel
//! knobs it needs.

use super::{Fault, Knobs, LabError, Plan};

/// What the demo injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    VxlanCsumBug,
    DropSyn,
    Loss,
    MtuBlackhole,
    ListenOverflow,
    SlowBackend,
    DnsLoss,
    RpFilter,
    ConntrackDrop,
    Healthy,
}

/// Every scenario's name, as `--fault` takes it.
pub const SCENARIOS: &str = "vxlan-csum-bug, drop-syn, loss, mtu-blackhole, listen-overflow, slow-backend, dns-loss, rp-filter, conntrack-drop or none";

impl Scenario {
    pub fn parse(s: &str) -> Result<Self, LabError> {
        Ok(match s {
            "vxlan-csum-bug" => Scenario::VxlanCsumBug,
            "drop-syn" => Scenario::DropSyn,
            "loss" => Scenario::Loss,
            "mtu-blackhole" => Scenario::MtuBlackhole,
            "listen-overflow" => Scenario::ListenOverflow,
            "slow-backend" => Scenario::SlowBackend,
            "dns-loss" => Scenario::DnsLoss,
            "rp-filter" => Scenario::RpFilter,
            "conntrack-drop" => Scenario::ConntrackDrop,
            "none" | "healthy" => Scenario::Healthy,
            other => {
                return Err(LabError::Usage(format!(
                    "unknown scenario \"{other}\"; pick {SCENARIOS}"
                )));
            }
        })
    }

    /// The faults, and a sentence saying what was injected.
    pub fn faults(self, plan: &Plan) -> (Vec<Fault>, String) {
        match self {
            Scenario::VxlanCsumBug => (
                plan.node_ids().map(|on| Fault::VxlanCsumBug { on }).collect(),
                "the VXLAN double-NAT checksum bug on every node (kube-proxy mark kept through encapsulation, bad outer UDP checksum), classic SYN ladder, txrehash off".into(),
            ),
            Scenario::DropSyn => (
                vec![Fault::DropSyn {
                    from: 2,
                    to: 1,
                    count: 2,
                    percent: 100,
                    family: None,
                }],
                "the first 2 SYNs of every flow from node2 to node1 dropped on node1's overlay".into(),
            ),
            Scenario::Loss => (
                vec![Fault::Loss { on: 1, percent: 10 }],
                "10 % loss on node1's underlay".into(),
            ),
            Scenario::MtuBlackhole => (
                vec![Fault::MtuBlackhole { on: 1, size: 1200 }],
                "overlay packets above 1200 bytes dropped at node1, no ICMP".into(),
            ),
            Scenario::ListenOverflow => (
                vec![Fault::ListenOverflow {
                    on: 1,
                    backlog: 8,
                    accept_rate: 500,
                    load: 550,
                }],
                "node1's backend accepts 500 connections a second behind a backlog of 8, under 550 more a second from its own node".into(),
            ),
            Scenario::SlowBackend => (
                vec![Fault::SlowBackend {
                    on: 1,
                    delay: std::time::Duration::from_secs(2),
                    percent: 10,
                }],
                "a tenth of node1's backend answers 2 s late".into(),
            ),
            Scenario::DnsLoss => (
                vec![Fault::DnsLoss { on: 1, percent: 30 }],
                "30 % of the DNS queries reaching node1's resolver over the overlay lost".into(),
            ),
            Scenario::RpFilter => (
                vec![Fault::RpFilter { on: 1, from: 2 }],
                "node1 routes node2's pods over the underlay and filters reverse paths strictly".into(),
            ),
            Scenario::ConntrackDrop => (
                vec![Fault::ConntrackDrop { on: 3.min(plan.nodes), percent: 20 }],
                format!(
                    "20 % of new flows through {} dropped, as a full conntrack table drops them (emulated: its counters do not move)",
                    plan.node_name(3.min(plan.nodes))
                ),
            ),
            Scenario::Healthy => (vec![], "nothing".into()),
        }
    }

    /// Knobs the scenario needs: the classic ladder and no rehash make the
    /// checksum bug show its 63 s rung, as on the incident's kernel.
    pub fn knobs(self) -> Knobs {
        let classic = std::path::Path::new("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
            .exists()
            .then_some(0);
        match self {
            Scenario::VxlanCsumBug => Knobs {
                syn_linear_timeouts: classic,
                txrehash: Some(0),
                ..Knobs::default()
            },
            _ => Knobs {
                syn_linear_timeouts: classic,
                ..Knobs::default()
            },
        }
    }
}
