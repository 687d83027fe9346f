//! The lab's addressing plan and the nftables it programs: pure functions of
//! the prefix and node count, so the rules can be unit-tested without root.
//!
//! Node i (1-based) has the underlay address 10.10.72.(9+i) on `eth0`, a VXLAN
//! device `vxlan.calico` (VNI 4096, UDP 4789, no UDP checksum, as Calico sets
//! it up) with the tunnel address 10.245.0.i, and a pod 10.244.i.2 behind a
//! veth whose node side is 10.244.i.1. Service VIPs: 10.96.0.10 has a backend
//! on every node; 10.96.0.(10+i) has node i's pod only. Every address lives
//! inside the lab's own namespaces.
//!
//! With `--kubernetes` the control plane sits at 10.10.72.2 in its own
//! namespace on the underlay, no pod or Service is written by hand: pods get
//! 10.244.i.(10+k) from node i's agent, as Calico gives them (a veth per pod,
//! a /32 route, proxy ARP for the gateway 169.254.1.1), and the real
//! kube-proxy programs Services from 10.96.0.0/16.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The VXLAN device name, as Calico names it, so remediation commands read
/// exactly as they would on a real node.
pub const VXLAN_DEV: &str = "vxlan.calico";
pub const VXLAN_VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;
pub const UNDERLAY_DEV: &str = "eth0";
/// The port the pods' echo targets listen on (Services keep the port).
pub const POD_PORT: u16 = 80;
/// The port the pods' echo targets answer DNS on, UDP and TCP.
pub const DNS_PORT: u16 = 53;
/// kube-proxy's masquerade mark.
pub const MASQ_MARK: u32 = 0x4000;
/// A mark bit no kube-proxy mode uses: the checksum-bug fault's note that
/// kube-proxy marked a flow's first packet.
pub const NOTE_MARK: u32 = 0x0010_0000;
pub const POD_CIDR: &str = "10.244.0.0/16";
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Node i of the lab is 1-based; at most this many.
pub const MAX_NODES: usize = 200;
/// The API server's port; the `kubernetes` Service (10.96.0.1:443) leads here.
pub const API_PORT: u16 = 6443;
/// The first Service address, the API server's own Service.
pub const API_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// Pods a node's agent can place: 10.244.i.10 to 10.244.i.249.
pub const MAX_PODS_PER_NODE: usize = 240;
/// The gateway every pod routes through, answered by proxy ARP on the
/// node's side of its veth, as Calico does.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// One lab: a name prefix and a node count; `kubernetes` when the real
/// control plane runs it (`lab up --kubernetes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub prefix: String,
    pub nodes: usize,
    pub kubernetes: bool,
    /// IPv6 beside IPv4 (`lab up --dual-stack`): see `plan6.rs`.
    pub dual_stack: bool,
}

impl Plan {
    pub fn new(prefix: &str, nodes: usize) -> Result<Self, String> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 12
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return Err(format!(
                "lab name \"{prefix}\" must be 1 to 12 lowercase letters and digits, starting with a letter"
            ));
        }
        if !(2..=MAX_NODES).contains(&nodes) {
            return Err(format!("a lab needs 2 to {MAX_NODES} nodes, not {nodes}"));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            nodes,
            kubernetes: false,
            dual_stack: false,
        })
    }

    /// The same lab with IPv6 beside IPv4.
    pub fn with_dual_stack(mut self, on: bool) -> Self {
        self.dual_stack = on;
        self
    }

    /// The same lab, run by the real control plane.
    pub fn with_kubernetes(mut self, on: bool) -> Self {
        self.kubernetes = on;
        self
    }

    pub fn node_ids(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.nodes
    }
    pub fn node_name(&self, i: usize) -> String {
        format!("node{i}")
    }
    /// The node index for a node name such as `node2`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        name.strip_prefix("node")
            .and_then(|n| n.parse().ok())
            .filter(|i| self.node_ids().contains(i))
    }
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }
    pub fn pod_ns(&self, i: usize) -> String {
        format!("{}-p{i}", self.prefix)
    }
    pub fn underlay_ns(&self) -> String {
        format!("{}-ul", self.prefix)
    }
    /// The control plane's namespace (etcd, the API server, the controller
    /// manager and the scheduler), on the underlay.
    pub fn control_ns(&self) -> String {
        format!("{}-cp", self.prefix)
    }
    /// The namespace node i's agent makes for its pod in slot `k`.
    pub fn kube_pod_ns(&self, i: usize, k: usize) -> String {
        format!("{}-k{i}-{k}", self.prefix)
    }
    /// Every namespace the lab itself creates (a Kubernetes lab's pods'
    /// come and go with them).
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.underlay_ns()];
        if self.kubernetes {
            v.push(self.control_ns());
        }
        for i in self.node_ids() {
            v.push(self.node_ns(i));
            if !self.kubernetes {
                v.push(self.pod_ns(i));
            }
        }
        v
    }
    /// Whether `ns` is a namespace this prefix names (any node count).
    pub fn owns_namespace(prefix: &str, ns: &str) -> bool {
        let Some(rest) = ns.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            return false;
        };
        let digits = |d: &str| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit());
        rest == "ul"
            || rest == "cp"
            || rest
                .strip_prefix('n')
                .or_else(|| rest.strip_prefix('p'))
                .is_some_and(digits)
            || rest
                .strip_prefix('k')
                .and_then(|r| r.split_once('-'))
                .is_some_and(|(i, k)| digits(i) && digits(k))
    }
    pub fn underlay_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 10, 72, (9 + i) as u8)
    }
    pub fn tunnel_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 245, 0, i as u8)
    }
    pub fn pod_gateway(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, i as u8, 1)
    }
    pub fn pod_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, i as u8, 2)
    }
    /// The API server's address, on the underlay.
    pub fn api_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 10, 72, 2)
    }
    /// Node i's pod range, as its Node's `spec.podCIDR`.
    pub fn pod_cidr(&self, i: usize) -> String {
        format!("10.244.{i}.0/24")
    }
    /// The address of node i's pod in slot `k` (Kubernetes mode).
    pub fn kube_pod_ip(&self, i: usize, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, i as u8, (10 + k) as u8)
    }
    pub fn vxlan_mac(&self, i: usize) -> String {
        format!("66:74:70:00:00:{i:02x}")
    }
    /// The Service whose only backend is node i's pod.
    pub fn node_vip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 96, 0, (10 + i) as u8)
    }
    /// The Service with a backend on every node.
    pub fn all_vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 96, 0, 10)
    }
    pub fn kube_table(&self) -> String {
        format!("{}-kube", self.prefix)
    }
    pub fn fault_table(&self, kind: &str, detail: &str) -> String {
        format!("{}-fault-{kind}-{detail}", self.prefix)
    }

    /// `ip -batch` lines for node i's own namespace.
    pub fn node_batch(&self, i: usize) -> Vec<String> {
        let mut b = vec![
            "link set lo up".to_string(),
            format!("addr add {}/24 dev {UNDERLAY_DEV}", self.underlay_ip(i)),
            format!("link set {UNDERLAY_DEV} up"),
            format!(
                "link add {VXLAN_DEV} type vxlan id {VXLAN_VNI} dstport {VXLAN_PORT} local {} dev {UNDERLAY_DEV} nolearning noudpcsum",
                self.underlay_ip(i)
            ),
            format!("link set {VXLAN_DEV} address {}", self.vxlan_mac(i)),
            format!("addr add {}/32 dev {VXLAN_DEV}", self.tunnel_ip(i)),
            // 50 bytes of VXLAN overhead on a 1500-byte underlay.
            format!("link set {VXLAN_DEV} mtu 1450 up"),
            // Services route like the node's default route would.
            format!("route add {SERVICE_CIDR} dev {UNDERLAY_DEV}"),
        ];
        if self.kubernetes {
            // Proxy ARP answers for the pods' gateway only where the node
            // has a route to it (on a real node, its default route).
            b.push(format!("route add {POD_GATEWAY}/32 dev {UNDERLAY_DEV}"));
        } else {
            b.push(format!("addr add {}/24 dev cali{i}", self.pod_gateway(i)));
            b.push(format!("link set cali{i} up"));
        }
        for j in self.node_ids().filter(|j| *j != i) {
            b.push(format!(
                "neigh add {} lladdr {} dev {VXLAN_DEV} nud permanent",
                self.tunnel_ip(j),
                self.vxlan_mac(j)
            ));
            b.push(format!(
                "route add {}/32 dev {VXLAN_DEV}",
                self.tunnel_ip(j)
            ));
            b.push(format!(
                "route add 10.244.{j}.0/24 via {} dev {VXLAN_DEV} onlink",
                self.tunnel_ip(j)
            ));
        }
        b
    }

    /// `bridge -batch` lines for node i: where each peer's VXLAN MAC lives.
    pub fn node_fdb_batch(&self, i: usize) -> Vec<String> {
        self.node_ids()
            .filter(|j| *j != i)
            .map(|j| {
                format!(
                    "fdb append {} dev {VXLAN_DEV} dst {}",
                    self.vxlan_mac(j),
                    self.underlay_ip(j)
                )
            })
            .collect()
    }

    /// `ip -batch` lines for the control plane's namespace: on the underlay,
    /// with a route back to every node's pods (the API server answers pods
    /// and reaches them through its pod proxy).
    pub fn control_batch(&self) -> Vec<String> {
        let mut b = vec![
            "link set lo up".to_string(),
            format!("addr add {}/24 dev {UNDERLAY_DEV}", self.api_ip()),
            format!("link set {UNDERLAY_DEV} up"),
        ];
        for j in self.node_ids() {
            b.push(format!(
                "route add {} via {}",
                self.pod_cidr(j),
                self.underlay_ip(j)
            ));
        }
        b
    }

    /// `ip -batch` lines for node i's pod namespace.
    pub fn pod_batch(&self, i: usize) -> Vec<String> {
        vec![
            "link set lo up".into(),
            format!("addr add {}/24 dev eth0", self.pod_ip(i)),
            "link set eth0 up".into(),
            format!("route add default via {}", self.pod_gateway(i)),
        ]
    }

    /// Services as kube-proxy's nftables mode programs them: DNAT in output
    /// (host-network clients) and prerouting (pods), the masquerade mark for
    /// sources outside the pod range, and masquerade in postrouting.
    /// `clear_mark` clears the mark before masquerading, as kube-proxy does
    /// since the fix for double NAT of VXLAN packets (Kubernetes PR #92035);
    /// without it the mark survives encapsulation and the outer UDP packet is
    /// masqueraded too.
    pub fn kube_proxy_nft(&self, clear_mark: bool) -> String {
        let t = self.kube_table();
        let mut s = String::new();
        let _ = writeln!(s, "table ip {t} {{");
        let _ = writeln!(s, "  chain services {{");
        let _ = writeln!(
            s,
            "    ip daddr {} tcp dport {POD_PORT} jump svc-all",
            self.all_vip()
        );
        for i in self.node_ids() {
            let _ = writeln!(
                s,
                "    ip daddr {} tcp dport {POD_PORT} jump svc-node{i}",
                self.node_vip(i)
            );
        }
        let _ = writeln!(s, "  }}");
        let mark = format!("meta mark set meta mark | {MASQ_MARK:#x}");
        // As kube-proxy: a chain per endpoint that also marks hairpin traffic
        // (a pod reaching itself through the VIP), a chain per Service that
        // marks sources outside the pod range.
        for i in self.node_ids() {
            let _ = writeln!(
                s,
                "  chain ep-node{i} {{ ip saddr {pod} {mark}; dnat to {pod}; }}",
                pod = self.pod_ip(i)
            );
        }
        let backends: Vec<String> = self
            .node_ids()
            .map(|i| format!("{} : goto ep-node{i}", i - 1))
            .collect();
        let _ = writeln!(
            s,
            "  chain svc-all {{ ip saddr != {POD_CIDR} {mark}; numgen random mod {} vmap {{ {} }}; }}",
            self.nodes,
            backends.join(", ")
        );
        for i in self.node_ids() {
            let _ = writeln!(
                s,
                "  chain svc-node{i} {{ ip saddr != {POD_CIDR} {mark}; goto ep-node{i}; }}"
            );
        }
        let _ = writeln!(
            s,
            "  chain output {{ type nat hook output priority -100; policy accept; jump services; }}"
        );
        let _ = writeln!(
            s,
            "  chain prerouting {{ type nat hook prerouting priority -100; policy accept; jump services; }}"
        );
        let _ = writeln!(
            s,
            "  chain postrouting {{ type nat hook postrouting priority 100; policy accept;"
        );
        let _ = writeln!(s, "    meta mark & {MASQ_MARK:#x} != {MASQ_MARK:#x} return");
        if clear_mark {
            let _ = writeln!(s, "    meta mark set meta mark & {:#x}", !MASQ_MARK);
        }
        let _ = writeln!(s, "    masquerade fully-random");
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        s
    }

    /// Replaces the kube-proxy table in one transaction.
    pub fn kube_proxy_replace_nft(&self, clear_mark: bool) -> String {
        format!(
            "delete table ip {}\n{}",
            self.kube_table(),
            self.kube_proxy_nft(clear_mark)
        )
    }

    /// Drops the first `count` SYNs of every flow from node `from` arriving on
    /// the overlay of the node this table is loaded on. A dropped SYN never
    /// confirms its conntrack entry, so counting conntrack packets cannot work;
    /// a ladder of dynamic sets keyed on source address and port remembers
    /// how many SYNs of each flow were dropped. With `percent` below 100, a
    /// flow's first SYN is picked at random; a flow not picked passes.
    pub fn drop_syn_nft(&self, from: usize, count: u32, percent: u32) -> String {
        let sources = format!("{{ {}, 10.244.{from}.0/24 }}", self.tunnel_ip(from));
        syn_ladder_nft(
            &SynLadder {
                table: format!("ip {}", self.fault_table("dropsyn", &format!("from{from}"))),
                addr_type: "ipv4_addr",
                saddr: "ip saddr",
                dev: VXLAN_DEV,
                sources,
            },
            count,
            percent,
        )
    }

    /// The VXLAN checksum bug, on the sending node: outer UDP packets whose
    /// conntrack entry was source-NATed leave with a bad checksum (what the
    /// kernel's NAT did to a checksum that TX offload never computed).
    pub fn csum_bug_nft(&self) -> String {
        let t = self.fault_table("csum", "bug");
        format!(
            "table ip {t} {{\n  chain postrouting {{ type filter hook postrouting priority srcnat + 100; policy accept;\n    \
             oifname \"{UNDERLAY_DEV}\" udp dport {VXLAN_PORT} ct status snat @th,48,16 set 0xffff counter\n  }}\n}}\n"
        )
    }

    /// On a Kubernetes lab, the kube-proxy of before the fix: the real one
    /// clears its masquerade mark as it masquerades (Kubernetes PR #92035),
    /// so this table notes the first packet of each flow it marked (nat
    /// chains see only a flow's first packet) and puts the mark back after
    /// kube-proxy's chain. The mark then survives VXLAN encapsulation and
    /// kube-proxy masquerades the outer UDP packet too, as it did.
    pub fn keep_mark_nft(&self) -> String {
        let t = self.fault_table("csum", "mark");
        format!(
            "table ip {t} {{\n  chain note {{ type nat hook postrouting priority srcnat - 10; policy accept;\n    \
             meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark | {NOTE_MARK:#x}\n  }}\n  \
             chain keep {{ type filter hook postrouting priority srcnat + 10; policy accept;\n    \
             meta mark & {NOTE_MARK:#x} == {NOTE_MARK:#x} meta mark set meta mark | {MASQ_MARK:#x} counter\n  }}\n}}\n"
        )
    }

    /// Random loss of `percent` % of packets arriving on a node's underlay.
    pub fn loss_nft(&self, percent: u32) -> String {
        let t = self.fault_table("loss", "underlay");
        format!(
            "table ip {t} {{\n  chain prerouting {{ type filter hook prerouting priority raw - 10; policy accept;\n    \
             iifname \"{UNDERLAY_DEV}\" numgen random mod 100 < {percent} counter drop\n  }}\n}}\n"
        )
    }

    /// Overlay packets above `size` bytes vanish, and no ICMP says why.
    pub fn mtu_blackhole_nft(&self, size: u32) -> String {
        let t = self.fault_table("mtu", "blackhole");
        format!(
            "table ip {t} {{\n  chain prerouting {{ type filter hook prerouting priority raw - 10; policy accept;\n    \
             iifname \"{UNDERLAY_DEV}\" udp dport {VXLAN_PORT} meta length > {size} counter drop\n  }}\n}}\n"
        )
    }
}

/// One family's SYN-drop fault: where its rules go and what they match.
pub(super) struct SynLadder<'a> {
    /// `ip NAME` or `ip6 NAME`.
    pub table: String,
    /// The set element type of a source address.
    pub addr_type: &'a str,
    /// The match on a packet's source address (`ip saddr`, `ip6 saddr`).
    pub saddr: &'a str,
    /// The overlay device the SYNs arrive on.
    pub dev: &'a str,
    /// The sources dropped from, as an nftables set literal.
    pub sources: String,
}

/// The ladder of dynamic sets behind [`Plan::drop_syn_nft`], for either
/// family: the first `count` SYNs of `percent` % of the flows are dropped.
pub(super) fn syn_ladder_nft(l: &SynLadder<'_>, count: u32, percent: u32) -> String {
    let key = format!("{} . tcp sport", l.saddr);
    let mut s = format!("table {} {{\n", l.table);
    for k in 1..=count {
        let _ = writeln!(
            s,
            "  set s{k} {{ type {} . inet_service; flags dynamic,timeout; timeout 10m; }}",
            l.addr_type
        );
    }
    let _ = writeln!(
        s,
        "  chain prerouting {{ type filter hook prerouting priority raw - 10; policy accept;"
    );
    let m = format!(
        "iifname \"{}\" {} {} tcp flags & (syn | ack) == syn",
        l.dev, l.saddr, l.sources
    );
    let _ = writeln!(s, "    {m} {key} @s{count} accept");
    for k in (1..count).rev() {
        let _ = writeln!(
            s,
            "    {m} {key} @s{k} add @s{} {{ {key} }} counter drop",
            k + 1
        );
    }
    let pick = if percent < 100 {
        format!(" numgen random mod 100 < {percent}")
    } else {
        String::new()
    };
    let _ = writeln!(s, "    {m}{pick} add @s1 {{ {key} }} counter drop");
    let _ = writeln!(s, "  }}\n}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let p = Plan::new("tp7", 3).unwrap();
        assert_eq!(
            p.namespaces(),
            [
                "tp7-ul", "tp7-n1", "tp7-p1", "tp7-n2", "tp7-p2", "tp7-n3", "tp7-p3"
            ]
        );
        assert!(Plan::owns_namespace("tp7", "tp7-n12"));
        assert!(
            !Plan::owns_namespace("tp", "tp7-n1"),
            "another lab's prefix extends ours"
        );
        assert!(!Plan::owns_namespace("tp7", "tp7-nx"));
        assert!(
            Plan::new("Tp", 3).is_err()
                && Plan::new("tp", 1).is_err()
                && Plan::new("a-b", 3).is_err()
        );
        assert_eq!(p.node_index("node3"), Some(3));
        assert_eq!(p.node_index("node4"), None);
    }

    #[test]
    fn kube_proxy_rules_mark_dnat_and_masquerade() {
        let p = Plan::new("tp", 3).unwrap();
        let fixed = p.kube_proxy_nft(true);
        assert!(fixed.contains("ip daddr 10.96.0.12 tcp dport 80 jump svc-node2"));
        assert!(fixed.contains("chain svc-node2 { ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000; goto ep-node2; }"));
        assert!(fixed.contains(
            "chain ep-node2 { ip saddr 10.244.2.2 meta mark set meta mark | 0x4000; dnat to 10.244.2.2; }"
        ));
        assert!(fixed.contains(
            "numgen random mod 3 vmap { 0 : goto ep-node1, 1 : goto ep-node2, 2 : goto ep-node3 }"
        ));
        assert!(
            fixed.contains("meta mark set meta mark & 0xffffbfff\n    masquerade fully-random")
        );
        let buggy = p.kube_proxy_nft(false);
        assert!(!buggy.contains("0xffffbfff") && buggy.contains("masquerade fully-random"));
        assert!(
            p.kube_proxy_replace_nft(true)
                .starts_with("delete table ip tp-kube\ntable ip tp-kube {")
        );
    }

    #[test]
    fn drop_syn_is_a_ladder_of_sets() {
        let p = Plan::new("tp", 3).unwrap();
        let r = p.drop_syn_nft(2, 3, 100);
        let rules: Vec<&str> = r.lines().filter(|l| l.contains("iifname")).collect();
        assert_eq!(rules.len(), 4, "{r}");
        assert!(rules[0].ends_with("ip saddr . tcp sport @s3 accept"));
        assert!(rules[1].ends_with("@s2 add @s3 { ip saddr . tcp sport } counter drop"));
        assert!(rules[2].ends_with("@s1 add @s2 { ip saddr . tcp sport } counter drop"));
        assert!(rules[3].ends_with("add @s1 { ip saddr . tcp sport } counter drop"));
        assert!(rules[0].contains("ip saddr { 10.245.0.2, 10.244.2.0/24 }"));
        assert!(r.contains("table ip tp-fault-dropsyn-from2"));
        assert!(r.contains("priority raw - 10"));
        assert!(!r.contains("numgen"), "every flow is hit");
        // A share of flows: only a flow's first SYN is drawn.
        let partial = p.drop_syn_nft(2, 3, 30);
        let rules: Vec<&str> = partial.lines().filter(|l| l.contains("numgen")).collect();
        assert_eq!(rules.len(), 1, "{partial}");
        assert!(
            rules[0].ends_with(
                "numgen random mod 100 < 30 add @s1 { ip saddr . tcp sport } counter drop"
            )
        );
    }

    #[test]
    fn node_batch_routes_every_other_pod_range_over_vxlan() {
        let p = Plan::new("tp", 3).unwrap();
        let b = p.node_batch(1);
        assert!(
            b.iter()
                .any(|l| l == "route add 10.244.3.0/24 via 10.245.0.3 dev vxlan.calico onlink")
        );
        assert!(
            p.node_fdb_batch(1)
                .iter()
                .any(|l| l == "fdb append 66:74:70:00:00:02 dev vxlan.calico dst 10.10.72.11")
        );
        assert_eq!(p.node_fdb_batch(1).len(), 2);
        assert!(
            !b.iter().any(|l| l.contains("10.244.1.0/24 via")),
            "no overlay route to its own pods"
        );
        assert!(b.iter().any(|l| l.contains("noudpcsum")));
    }
}
