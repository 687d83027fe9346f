//! The lab's IPv6 half, on a dual-stack lab (`lab up --dual-stack`), laid
//! out as Calico's dual-stack VXLAN mode lays it out: a second VXLAN device,
//! `vxlan-v6.calico`, over the IPv6 underlay carries the pods' IPv6 traffic,
//! with its own routes and static FDB and neighbour entries. Every address
//! is a ULA (fd00::/8) inside the lab's own namespaces, and mirrors its IPv4
//! twin: node i's underlay is fd00:10:72::(9+i), its tunnel address
//! fd00:245::i, its pod fd00:244:i::2 behind fd00:244:i::1; the Service with
//! a backend on every node is fd00:96::10, node i's own fd00:96::(10+i).
//! The numbers are the IPv4 octets written as they read, so
//! 10.96.0.11 and fd00:96::11 are the same Service.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

use super::plan::{
    MASQ_MARK, POD_PORT, Plan, SynLadder, UNDERLAY_DEV, VXLAN_PORT, VXLAN_VNI, syn_ladder_nft,
};
use crate::model::Family;

/// Calico's name for the IPv6 VXLAN device.
pub const VXLAN6_DEV: &str = "vxlan-v6.calico";
pub const POD_CIDR6: &str = "fd00:244::/32";
pub const SERVICE_CIDR6: &str = "fd00:96::/112";

/// An address whose last groups are decimal numbers read as hex digits, so
/// the IPv6 plan reads like the IPv4 one.
fn v6(s: String) -> Ipv6Addr {
    s.parse()
        .expect("the lab's IPv6 plan writes valid addresses")
}

impl Plan {
    pub fn underlay_ip6(&self, i: usize) -> Ipv6Addr {
        v6(format!("fd00:10:72::{}", 9 + i))
    }
    pub fn tunnel_ip6(&self, i: usize) -> Ipv6Addr {
        v6(format!("fd00:245::{i}"))
    }
    pub fn pod_gateway6(&self, i: usize) -> Ipv6Addr {
        v6(format!("fd00:244:{i}::1"))
    }
    pub fn pod_ip6(&self, i: usize) -> Ipv6Addr {
        v6(format!("fd00:244:{i}::2"))
    }
    pub fn pod_cidr6(&self, i: usize) -> String {
        format!("fd00:244:{i}::/64")
    }
    pub fn vxlan6_mac(&self, i: usize) -> String {
        format!("66:74:70:00:06:{i:02x}")
    }
    /// The IPv6 Service whose only backend is node i's pod.
    pub fn node_vip6(&self, i: usize) -> Ipv6Addr {
        v6(format!("fd00:96::{}", 10 + i))
    }
    /// The IPv6 Service with a backend on every node.
    pub fn all_vip6(&self) -> Ipv6Addr {
        v6("fd00:96::10".into())
    }
    pub fn kube6_table(&self) -> String {
        format!("{}-kube6", self.prefix)
    }
    /// The families this lab carries.
    pub fn families(&self) -> &'static [Family] {
        if self.dual_stack {
            &Family::ALL
        } else {
            &[Family::Ipv4]
        }
    }

    /// `ip -batch` lines for node i's IPv6 half. `nodad`: a lab address is
    /// unique by construction, and duplicate detection would hold it
    /// tentative (unusable) for a second or more.
    pub fn node_batch6(&self, i: usize) -> Vec<String> {
        let mut b = vec![
            format!(
                "addr add {}/64 dev {UNDERLAY_DEV} nodad",
                self.underlay_ip6(i)
            ),
            // IPv6 VXLAN keeps its UDP checksums: IPv6 forbids a zero one.
            format!(
                "link add {VXLAN6_DEV} type vxlan id {VXLAN_VNI} dstport {VXLAN_PORT} local {} dev {UNDERLAY_DEV} nolearning",
                self.underlay_ip6(i)
            ),
            format!("link set {VXLAN6_DEV} address {}", self.vxlan6_mac(i)),
            format!("addr add {}/128 dev {VXLAN6_DEV} nodad", self.tunnel_ip6(i)),
            // 70 bytes of VXLAN over IPv6 on a 1500-byte underlay.
            format!("link set {VXLAN6_DEV} mtu 1430 up"),
            format!("route add {SERVICE_CIDR6} dev {UNDERLAY_DEV}"),
            format!("addr add {}/64 dev cali{i} nodad", self.pod_gateway6(i)),
        ];
        for j in self.node_ids().filter(|j| *j != i) {
            b.push(format!(
                "neigh add {} lladdr {} dev {VXLAN6_DEV} nud permanent",
                self.tunnel_ip6(j),
                self.vxlan6_mac(j)
            ));
            b.push(format!(
                "route add {}/128 dev {VXLAN6_DEV}",
                self.tunnel_ip6(j)
            ));
            b.push(format!(
                "route add {} via {} dev {VXLAN6_DEV}",
                self.pod_cidr6(j),
                self.tunnel_ip6(j)
            ));
        }
        b
    }

    /// `bridge -batch` lines for node i's IPv6 VXLAN device.
    pub fn node_fdb_batch6(&self, i: usize) -> Vec<String> {
        self.node_ids()
            .filter(|j| *j != i)
            .map(|j| {
                format!(
                    "fdb append {} dev {VXLAN6_DEV} dst {}",
                    self.vxlan6_mac(j),
                    self.underlay_ip6(j)
                )
            })
            .collect()
    }

    /// `ip -batch` lines for node i's pod's IPv6 address and route.
    pub fn pod_batch6(&self, i: usize) -> Vec<String> {
        vec![
            format!("addr add {}/64 dev eth0 nodad", self.pod_ip6(i)),
            format!("route add ::/0 via {}", self.pod_gateway6(i)),
        ]
    }

    /// The IPv6 Services, as kube-proxy's nftables mode programs a
    /// dual-stack cluster: the same chains as [`Plan::kube_proxy_nft`] in an
    /// `ip6` table of their own.
    pub fn kube_proxy6_nft(&self) -> String {
        let t = self.kube6_table();
        let mark = format!("meta mark set meta mark | {MASQ_MARK:#x}");
        let mut s = format!("table ip6 {t} {{\n  chain services {{\n");
        let _ = writeln!(
            s,
            "    ip6 daddr {} tcp dport {POD_PORT} jump svc-all",
            self.all_vip6()
        );
        for i in self.node_ids() {
            let _ = writeln!(
                s,
                "    ip6 daddr {} tcp dport {POD_PORT} jump svc-node{i}",
                self.node_vip6(i)
            );
        }
        let _ = writeln!(s, "  }}");
        for i in self.node_ids() {
            let _ = writeln!(
                s,
                "  chain ep-node{i} {{ ip6 saddr {pod} {mark}; dnat to {pod}; }}",
                pod = self.pod_ip6(i)
            );
        }
        let backends: Vec<String> = self
            .node_ids()
            .map(|i| format!("{} : goto ep-node{i}", i - 1))
            .collect();
        let _ = writeln!(
            s,
            "  chain svc-all {{ ip6 saddr != {POD_CIDR6} {mark}; numgen random mod {} vmap {{ {} }}; }}",
            self.nodes,
            backends.join(", ")
        );
        for i in self.node_ids() {
            let _ = writeln!(
                s,
                "  chain svc-node{i} {{ ip6 saddr != {POD_CIDR6} {mark}; goto ep-node{i}; }}"
            );
        }
        let _ = writeln!(
            s,
            "  chain output {{ type nat hook output priority -100; policy accept; jump services; }}\n  \
             chain prerouting {{ type nat hook prerouting priority -100; policy accept; jump services; }}\n  \
             chain postrouting {{ type nat hook postrouting priority 100; policy accept;\n    \
             meta mark & {MASQ_MARK:#x} != {MASQ_MARK:#x} return\n    \
             meta mark set meta mark & {:#x}\n    masquerade fully-random\n  }}\n}}",
            !MASQ_MARK
        );
        s
    }

    /// [`Plan::drop_syn_nft`] on the IPv6 overlay: the first `count` SYNs
    /// of `percent` % of the flows from node `from`'s tunnel address and
    /// pods, arriving on `vxlan-v6.calico`.
    pub fn drop_syn6_nft(&self, from: usize, count: u32, percent: u32) -> String {
        let sources = format!("{{ {}, {} }}", self.tunnel_ip6(from), self.pod_cidr6(from));
        syn_ladder_nft(
            &SynLadder {
                table: format!(
                    "ip6 {}",
                    self.fault_table("dropsyn6", &format!("from{from}"))
                ),
                addr_type: "ipv6_addr",
                saddr: "ip6 saddr",
                dev: VXLAN6_DEV,
                sources,
            },
            count,
            percent,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_mirror_the_ipv4_plan_in_ula_space() {
        let p = Plan::new("tp", 3).unwrap().with_dual_stack(true);
        assert_eq!(p.underlay_ip6(1).to_string(), "fd00:10:72::10");
        assert_eq!(p.node_vip6(2).to_string(), "fd00:96::12");
        assert_eq!(p.pod_ip6(3).to_string(), "fd00:244:3::2");
        for a in [
            p.underlay_ip6(3),
            p.tunnel_ip6(3),
            p.pod_ip6(3),
            p.all_vip6(),
        ] {
            assert_eq!(a.octets()[0], 0xfd, "{a} is a ULA");
        }
        let big = Plan::new("tp", crate::lab::plan::MAX_NODES).unwrap();
        let _ = big.pod_ip6(crate::lab::plan::MAX_NODES);
        assert_eq!(p.families(), &Family::ALL);
        assert_eq!(Plan::new("tp", 3).unwrap().families(), &[Family::Ipv4]);
    }

    #[test]
    fn the_ipv6_overlay_routes_other_pods_through_its_own_device() {
        let p = Plan::new("tp", 3).unwrap().with_dual_stack(true);
        let b = p.node_batch6(1);
        assert!(
            b.contains(&"route add fd00:244:3::/64 via fd00:245::3 dev vxlan-v6.calico".into())
        );
        assert!(
            b.iter()
                .any(|l| l.starts_with("link add vxlan-v6.calico type vxlan id 4096"))
        );
        assert!(
            !b.iter().any(|l| l.contains("noudpcsum")),
            "IPv6 keeps checksums"
        );
        assert_eq!(
            p.node_fdb_batch6(1)[0],
            "fdb append 66:74:70:00:06:02 dev vxlan-v6.calico dst fd00:10:72::11"
        );
    }

    #[test]
    fn ipv6_services_and_the_ipv6_syn_drop_are_ip6_tables() {
        let p = Plan::new("tp", 3).unwrap().with_dual_stack(true);
        let k = p.kube_proxy6_nft();
        assert!(k.starts_with("table ip6 tp-kube6 {"));
        assert!(k.contains("ip6 daddr fd00:96::12 tcp dport 80 jump svc-node2"));
        assert!(k.contains("chain ep-node2 { ip6 saddr fd00:244:2::2 meta mark set meta mark | 0x4000; dnat to fd00:244:2::2; }"));
        let d = p.drop_syn6_nft(2, 2, 100);
        assert!(d.contains("table ip6 tp-fault-dropsyn6-from2"));
        let rules: Vec<&str> = d.lines().filter(|l| l.contains("iifname")).collect();
        assert_eq!(rules.len(), 3, "{d}");
        assert!(
            rules[0]
                .contains("iifname \"vxlan-v6.calico\" ip6 saddr { fd00:245::2, fd00:244:2::/64 }")
        );
        assert!(rules[2].ends_with("add @s1 { ip6 saddr . tcp sport } counter drop"));
    }
}
