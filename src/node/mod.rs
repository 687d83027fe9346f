//! Facts about the host a prober runs on, read-only: what the detector needs
//! to name a cause. Everything is read through `/proc/thread-self` and
//! netlink, so a thread that entered another network namespace (as the lab's
//! do) reads that namespace's facts.

use crate::model::{Counters, NodeFacts, OverlayDevice};

/// Overlay devices worth reporting, by the names CNIs give them.
pub fn is_overlay(name: &str) -> bool {
    name == "vxlan.calico"
        || name == "flannel.1"
        || name == "cilium_vxlan"
        || name == "tunl0"
        || name.starts_with("vxlan")
        || name.starts_with("genev")
}

/// `UdpInCsumErrors` from the text of `/proc/net/snmp`: the receiver-side
/// count of UDP datagrams dropped for a bad checksum.
pub fn udp_in_csum_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let i = names.split_whitespace().position(|n| n == "InCsumErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// The sum over CPUs of `insert_failed` in `/proc/net/stat/nf_conntrack`
/// (hexadecimal columns, one line per CPU).
pub fn conntrack_insert_failed(stat: &str) -> Option<u64> {
    let mut lines = stat.lines();
    let i = lines
        .next()?
        .split_whitespace()
        .position(|n| n == "insert_failed")?;
    Some(
        lines
            .filter_map(|l| l.split_whitespace().nth(i))
            .filter_map(|v| u64::from_str_radix(v, 16).ok())
            .sum(),
    )
}

/// The `TcpExt` counters by name, from the text of `/proc/net/netstat`.
pub fn tcp_ext(netstat: &str) -> std::collections::BTreeMap<String, u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Default::default();
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
        .collect()
}

/// The columns of a `/proc/net/stat/*` file (a header, then one line of
/// hexadecimal values per CPU), each summed over the CPUs; `entries` is a
/// table-wide gauge that every line repeats, so it is taken once.
pub fn stat_columns(stat: &str) -> std::collections::BTreeMap<String, u64> {
    let mut lines = stat.lines();
    let Some(header) = lines.next() else {
        return Default::default();
    };
    let names: Vec<&str> = header.split_whitespace().collect();
    let mut out = std::collections::BTreeMap::new();
    for (row, line) in lines.enumerate() {
        for (name, v) in names.iter().zip(line.split_whitespace()) {
            let Ok(v) = u64::from_str_radix(v, 16) else {
                continue;
            };
            if *name == "entries" {
                if row == 0 {
                    out.insert(name.to_string(), v);
                }
            } else {
                *out.entry(name.to_string()).or_default() += v;
            }
        }
    }
    out
}

/// The interfaces whose reverse-path filter is strict: the larger of
/// `all` and the interface's own `rp_filter` is 1 (2 is loose).
pub fn rp_filter_strict(devices: &[String], read: impl Fn(&str) -> Option<u32>) -> Vec<String> {
    let all = read("all").unwrap_or(0);
    devices
        .iter()
        .filter(|d| d.as_str() != "lo")
        .filter(|d| all.max(read(d).unwrap_or(0)) == 1)
        .cloned()
        .collect()
}

/// `nr_throttled` from a cgroup v2 `cpu.stat`.
pub fn throttled(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|v| v.trim().parse().ok())
}

/// This process's `cpu.stat` with a throttling count: cgroup v2's, or v1's
/// cpu controller where v2 has none (hybrid hosts).
fn own_cpu_stat() -> Option<String> {
    let cgroup = read("/proc/self/cgroup")?;
    cpu_stat_paths(&cgroup)
        .into_iter()
        .filter_map(|p| read(&p))
        .find(|s| throttled(s).is_some())
}

/// Where `cpu.stat` may be for a process with this `/proc/PID/cgroup`.
pub fn cpu_stat_paths(cgroup: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim().trim_end_matches('/');
        if controllers.is_empty() {
            paths.push(format!("/sys/fs/cgroup{path}/cpu.stat"));
            paths.push(format!("/sys/fs/cgroup/unified{path}/cpu.stat"));
        } else if controllers.split(',').any(|c| c == "cpu") {
            paths.push(format!("/sys/fs/cgroup/{controllers}{path}/cpu.stat"));
            paths.push(format!("/sys/fs/cgroup/cpu{path}/cpu.stat"));
        }
    }
    paths
}

/// Interface names from the text of `/proc/net/dev`.
pub fn interfaces(dev: &str) -> Vec<String> {
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_u32(path: &str) -> Option<u32> {
    read(path)?.trim().parse().ok()
}

/// Reads this node's facts (in the calling thread's network namespace).
pub async fn gather(node: &str) -> NodeFacts {
    let devices = read("/proc/thread-self/net/dev").map(|d| interfaces(&d));
    let mut overlays = Vec::new();
    for name in devices.iter().flatten().filter(|n| is_overlay(n)).cloned() {
        let (tx, generic) = offloads(&name).await.unwrap_or((None, None));
        overlays.push(OverlayDevice {
            name,
            tx_checksumming: tx,
            tx_checksum_ip_generic: generic,
        });
    }
    NodeFacts {
        node: node.to_string(),
        kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
        syn_retries: read_u32("/proc/sys/net/ipv4/tcp_syn_retries"),
        syn_linear_timeouts: read_u32("/proc/sys/net/ipv4/tcp_syn_linear_timeouts"),
        txrehash: read_u32("/proc/sys/net/core/txrehash"),
        udp_in_csum_errors: read("/proc/thread-self/net/snmp").and_then(|s| udp_in_csum_errors(&s)),
        udp_in_csum_errors_delta: None,
        conntrack_insert_failed: read("/proc/thread-self/net/stat/nf_conntrack")
            .and_then(|s| conntrack_insert_failed(&s)),
        conntrack_udp_timeout: read_u32("/proc/sys/net/netfilter/nf_conntrack_udp_timeout"),
        conntrack_udp_timeout_stream: read_u32(
            "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream",
        ),
        kube_proxy_ipvs: devices
            .as_ref()
            .map(|d| d.iter().any(|n| n == "kube-ipvs0")),
        overlays,
        counters: counters(),
        rises: Counters::default(),
        pod_rises: Counters::default(),
        conntrack_count: read_u64("/proc/sys/net/netfilter/nf_conntrack_count"),
        conntrack_max: read_u64("/proc/sys/net/netfilter/nf_conntrack_max"),
        neigh_entries: read("/proc/thread-self/net/stat/arp_cache")
            .and_then(|s| stat_columns(&s).get("entries").copied()),
        neigh_gc_thresh3: read_u64("/proc/sys/net/ipv4/neigh/default/gc_thresh3"),
        rp_filter_strict: rp_filter_strict(devices.as_deref().unwrap_or(&[]), |d| {
            read_u32(&format!("/proc/sys/net/ipv4/conf/{d}/rp_filter"))
        }),
        ipvs_conn_reuse_mode: read_u32("/proc/sys/net/ipv4/vs/conn_reuse_mode"),
        zone: labels_from_env()
            .get("topology.kubernetes.io/zone")
            .cloned(),
    }
}

fn read_u64(path: &str) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// The counters that name failure classes, as this thread's network
/// namespace (and this process's cgroup) count them now.
pub fn counters() -> Counters {
    let ext = read("/proc/thread-self/net/netstat").map(|s| tcp_ext(&s));
    let ct = read("/proc/thread-self/net/stat/nf_conntrack").map(|s| stat_columns(&s));
    let fulls = |file: &str| {
        read(&format!("/proc/thread-self/net/stat/{file}"))
            .and_then(|s| stat_columns(&s).get("table_fulls").copied())
    };
    let get = |m: &Option<std::collections::BTreeMap<String, u64>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k).copied())
    };
    Counters {
        listen_overflows: get(&ext, "ListenOverflows"),
        listen_drops: get(&ext, "ListenDrops"),
        req_q_full_drops: get(&ext, "TCPReqQFullDrop"),
        syncookies_sent: get(&ext, "SyncookiesSent"),
        reverse_path_drops: get(&ext, "IPReversePathFilter"),
        conntrack_drops: get(&ct, "drop"),
        conntrack_early_drops: get(&ct, "early_drop"),
        conntrack_insert_failed: get(&ct, "insert_failed"),
        conntrack_invalid: get(&ct, "invalid"),
        neigh_table_fulls: match (fulls("arp_cache"), fulls("ndisc_cache")) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        },
        throttled_periods: own_cpu_stat().and_then(|s| throttled(&s)),
    }
}

/// The most labels a node reports, and the longest key and value: what a
/// person sets, bounded, since the hub keeps every node's.
const MAX_LABELS: usize = 16;
const MAX_LABEL_LEN: usize = 253;

/// This node's labels from `TAILPROBE_NODE_LABELS` ("zone=a,pool=b"): the
/// Kubernetes downward API cannot expose a node's labels, so deploy files
/// (or a person) pass the ones worth grouping by, such as the zone.
pub fn labels_from_env() -> std::collections::BTreeMap<String, String> {
    parse_labels(&std::env::var("TAILPROBE_NODE_LABELS").unwrap_or_default())
}

/// "k=v,k2=v2": pairs without `=`, empty keys, over-long keys or values and
/// pairs past the sixteenth are left out.
pub fn parse_labels(s: &str) -> std::collections::BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, v)| !k.is_empty() && k.len() <= MAX_LABEL_LEN && v.len() <= MAX_LABEL_LEN)
        .filter(|(k, v)| !k.chars().chain(v.chars()).any(char::is_control))
        .take(MAX_LABELS)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The rise of `UdpInCsumErrors` over a window: readings are kept for as
/// long as the window lasts, and the rise is the newest minus the oldest.
/// A counter that went backwards (a reboot under a long-lived prober) starts
/// over.
#[derive(Debug, Default)]
pub struct CounterWindow {
    readings: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl CounterWindow {
    /// Records `value` read at `now` and returns the rise over `window`;
    /// `None` until two readings exist.
    pub fn rise(
        &mut self,
        now: std::time::Instant,
        value: u64,
        window: std::time::Duration,
    ) -> Option<u64> {
        if self.readings.back().is_some_and(|(_, v)| *v > value) {
            self.readings.clear();
        }
        self.readings.push_back((now, value));
        // Keep one reading at or before the window's start, so the rise
        // covers the whole window.
        while self.readings.len() > 2 && now.duration_since(self.readings[1].0) >= window {
            self.readings.pop_front();
        }
        let (_, first) = self.readings.front()?;
        (self.readings.len() >= 2).then(|| value - first)
    }
}

/// Fills `later.udp_in_csum_errors_delta` from an earlier reading of the
/// same node: what a one-shot run saw rise while it probed.
pub fn with_rise(earlier: &NodeFacts, mut later: NodeFacts) -> NodeFacts {
    later.udp_in_csum_errors_delta = match (earlier.udp_in_csum_errors, later.udp_in_csum_errors) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    later.rises = later.counters.rise_since(&earlier.counters);
    later
}

/// The rise of every counter over a window, each in its own
/// [`CounterWindow`].
#[derive(Debug, Default)]
pub struct CounterWindows {
    each: std::collections::BTreeMap<&'static str, CounterWindow>,
}

impl CounterWindows {
    /// Records `now`'s readings and returns each counter's rise over
    /// `window` (`None` until two readings, or where unreadable).
    pub fn rises(
        &mut self,
        at: std::time::Instant,
        now: &Counters,
        window: std::time::Duration,
    ) -> Counters {
        let mut out = Counters::default();
        for (name, value) in now.fields() {
            let rise = value.and_then(|v| self.each.entry(name).or_default().rise(at, v, window));
            out.set(name, rise);
        }
        out
    }
}

/// Active TX checksum features over ethtool netlink, as `ethtool -k` reads them.
async fn offloads(dev: &str) -> Option<(Option<bool>, Option<bool>)> {
    use futures::StreamExt;
    let (connection, mut handle, _) = ethtool::new_connection().ok()?;
    let conn = tokio::spawn(connection);
    let mut stream = handle.feature().get(Some(dev)).execute().await.ok()?;
    let (mut any_tx, mut generic) = (None, None);
    while let Some(Ok(msg)) = stream.next().await {
        for nla in msg.payload.nlas {
            if let ethtool::EthtoolAttr::Feature(ethtool::EthtoolFeatureAttr::Active(bits)) = nla {
                for b in bits {
                    if b.name.starts_with("tx-checksum") {
                        any_tx = Some(any_tx.unwrap_or(false) || b.value);
                    }
                    if b.name == "tx-checksum-ip-generic" {
                        generic = Some(b.value);
                    }
                }
            }
        }
    }
    conn.abort();
    Some((any_tx.or(Some(false)), generic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_pairs_bounded_and_clean() {
        let l = parse_labels("topology.kubernetes.io/zone=eu-1a, pool = gpu ,bad,=x,ctl=a\u{7}b");
        assert_eq!(
            l.into_iter().collect::<Vec<_>>(),
            [
                ("pool".to_string(), "gpu".to_string()),
                (
                    "topology.kubernetes.io/zone".to_string(),
                    "eu-1a".to_string()
                )
            ]
        );
        let many: String = (0..40).map(|i| format!("k{i}=v,")).collect();
        assert_eq!(parse_labels(&many).len(), MAX_LABELS);
    }

    #[test]
    fn reads_udp_checksum_errors() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 24 0 3 0 0 0 7 0 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(udp_in_csum_errors(snmp), Some(7));
        assert_eq!(udp_in_csum_errors("Ip: x\n"), None);
    }

    #[test]
    fn sums_conntrack_insert_failed_over_cpus() {
        let stat = "entries clashres found new invalid ignore delete chainlength insert insert_failed drop\n\
                    0000000a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000\n\
                    0000000a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000\n";
        assert_eq!(conntrack_insert_failed(stat), Some(17));
    }

    #[test]
    fn reads_the_counters_that_name_failure_classes() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPReqQFullDrop IPReversePathFilter\n\
                       TcpExt: 2 7 9 1 4\nIpExt: InNoRoutes\nIpExt: 0\n";
        let ext = tcp_ext(netstat);
        assert_eq!(ext["ListenOverflows"], 7);
        assert_eq!(ext["IPReversePathFilter"], 4);
        let arp = "entries  allocs destroys hash_grows lookups hits res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls\n\
                   00000005 1 0 0 0 0 0 0 0 0 0 0 00000002\n\
                   00000005 1 0 0 0 0 0 0 0 0 0 0 00000003\n";
        let cols = stat_columns(arp);
        assert_eq!((cols["entries"], cols["table_fulls"]), (5, 5));
        let strict = rp_filter_strict(&["lo".into(), "eth0".into(), "cali1".into()], |d| match d {
            "all" => Some(0),
            "eth0" => Some(1),
            _ => Some(2),
        });
        assert_eq!(strict, ["eth0"]);
        assert_eq!(
            throttled("usage_usec 5\nnr_periods 10\nnr_throttled 3\nthrottled_usec 9\n"),
            Some(3)
        );
    }

    #[test]
    fn finds_cpu_stat_under_cgroup_v2_and_v1() {
        assert_eq!(
            cpu_stat_paths("0::/kubepods/pod1/c1\n"),
            [
                "/sys/fs/cgroup/kubepods/pod1/c1/cpu.stat",
                "/sys/fs/cgroup/unified/kubepods/pod1/c1/cpu.stat"
            ]
        );
        let hybrid = "4:memory:/x\n2:cpu,cpuacct:/kubepods/p\n0::/\n";
        assert_eq!(
            cpu_stat_paths(hybrid),
            [
                "/sys/fs/cgroup/cpu,cpuacct/kubepods/p/cpu.stat",
                "/sys/fs/cgroup/cpu/kubepods/p/cpu.stat",
                "/sys/fs/cgroup/cpu.stat",
                "/sys/fs/cgroup/unified/cpu.stat"
            ]
        );
    }

    #[test]
    fn reads_overlay_names() {
        assert!(is_overlay("vxlan.calico") && is_overlay("flannel.1") && !is_overlay("eth0"));
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 0 0\n  eth0: 1 2\nvxlan.calico: 3 4\n";
        assert_eq!(interfaces(dev), ["lo", "eth0", "vxlan.calico"]);
    }

    #[test]
    fn counts_the_rise_over_the_window_only() {
        let t0 = std::time::Instant::now();
        let s = std::time::Duration::from_secs;
        let w = s(60);
        let mut c = CounterWindow::default();
        assert_eq!(c.rise(t0, 1000, w), None, "one reading is no rise");
        assert_eq!(c.rise(t0 + s(30), 1004, w), Some(4));
        assert_eq!(c.rise(t0 + s(60), 1010, w), Some(10));
        // The reading at 0 s fell out; the one at 30 s opens the window.
        assert_eq!(c.rise(t0 + s(95), 1010, w), Some(6));
        assert_eq!(c.rise(t0 + s(200), 1010, w), Some(0));
        // A counter that went back (a reboot) starts over.
        assert_eq!(c.rise(t0 + s(210), 3, w), None);
        assert_eq!(c.rise(t0 + s(220), 5, w), Some(2));
    }

    #[test]
    fn a_one_shot_rise_is_later_minus_earlier() {
        let at = |n| NodeFacts {
            udp_in_csum_errors: n,
            ..NodeFacts::default()
        };
        assert_eq!(
            with_rise(&at(Some(7)), at(Some(19))).udp_in_csum_errors_delta,
            Some(12)
        );
        assert_eq!(
            with_rise(&at(None), at(Some(19))).udp_in_csum_errors_delta,
            None
        );
    }

    #[tokio::test]
    async fn gathers_this_hosts_facts() {
        let f = gather("here").await;
        assert!(f.kernel.is_some() && f.syn_retries.is_some(), "{f:?}");
    }
}
