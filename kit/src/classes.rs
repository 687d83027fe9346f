//! The cluster's failure classes beyond the seed, one case each: a three-node
//! matrix (host and pod network, each node's Service and, where the class
//! needs it, its pods' own addresses) with the class's pattern and the
//! counters its nodes would show. Several leave the same rung (the 1 s rung
//! of a SNAT clash, IPVS reuse and a full neighbour table): only the scope
//! and the counters tell them apart, and each case is labelled with the
//! scope, the locus and the first cause that must say so. The truth of the
//! share is the generated probes' own, never the detector's.

use super::simulate::{Fault, Kernel};
use super::{Case, Label, Mode, NODES, ViewLabel, build_from, mix, node_facts};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tailprobe::model::{NodeFacts, SeriesWindow as Series, SourceKind};

const N: usize = 40;

const BASE: Mode = Mode::Base {
    base_ms: 0.5,
    jitter_ms: 1.0,
};

/// A lookup answered at once: a DNS phase of (nearly) nothing.
const ANSWERED: Mode = Mode::Dns { tries: 0 };

/// `n` lookups, `hits` of them waiting out the resolver's timeouts.
fn lookup_mix(hits: usize, tries: u32, r: &mut StdRng) -> Vec<Mode> {
    mix(N, hits, Mode::Dns { tries }, BASE, r)
        .into_iter()
        .map(|m| match m {
            Mode::Base { .. } => ANSWERED,
            m => m,
        })
        .collect()
}

/// Which targets a matrix holds: every node's Service (`node/X`), and with
/// `pods` every node's pod straight (`pod/X`).
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Service,
    Pod,
}

/// Every source (host and pod network) to every node, through its Service
/// and, with `pods`, straight to its pod; `modes` gives each cell's probes.
fn matrix(
    pods: bool,
    modes: impl Fn(&str, SourceKind, &str, Via, &mut StdRng) -> Vec<Mode>,
    r: &mut StdRng,
) -> Vec<Series> {
    let mut out = Vec::new();
    for src in NODES {
        for kind in [SourceKind::Host, SourceKind::Pod] {
            for dst in NODES {
                let vias: &[Via] = if pods {
                    &[Via::Service, Via::Pod]
                } else {
                    &[Via::Service]
                };
                for via in vias {
                    let m = modes(src, kind, dst, *via, r);
                    let target = match via {
                        Via::Service => format!("node/{dst}"),
                        Via::Pod => format!("pod/{dst}"),
                    };
                    out.push(build_from(
                        src,
                        kind,
                        dst,
                        &target,
                        "http://x/",
                        &m,
                        Kernel::linux(0),
                        r,
                    ));
                }
            }
        }
    }
    out
}

/// Every source's lookups to a resolver on every node.
fn lookups(
    url: &str,
    modes: impl Fn(&str, SourceKind, &str, &mut StdRng) -> Vec<Mode>,
    r: &mut StdRng,
) -> Vec<Series> {
    let mut out = Vec::new();
    for src in NODES {
        for kind in [SourceKind::Host, SourceKind::Pod] {
            for dst in NODES {
                let m = modes(src, kind, dst, r);
                out.push(build_from(
                    src,
                    kind,
                    dst,
                    &format!("dns/{dst}"),
                    url,
                    &m,
                    Kernel::linux(0),
                    r,
                ));
            }
        }
    }
    out
}

fn healthy_facts() -> Vec<NodeFacts> {
    NODES
        .iter()
        .map(|n| NodeFacts {
            pod_rises: tailprobe::model::Counters::zero(),
            conntrack_count: Some(900),
            conntrack_max: Some(262_144),
            neigh_entries: Some(12),
            neigh_gc_thresh3: Some(1024),
            ..node_facts(n, "6.1.0", None, false)
        })
        .collect()
}

fn with(facts: &mut [NodeFacts], node: &str, edit: impl FnOnce(&mut NodeFacts)) {
    edit(
        facts
            .iter_mut()
            .find(|f| f.node == node)
            .expect("a node of the matrix"),
    );
}

/// The share of probes in `series` that lost SYNs, timed out on a lookup,
/// answered late or started late: what the generator put there.
fn share(series: &[Series], hit: impl Fn(&Series) -> bool) -> f64 {
    let (mut h, mut n) = (0usize, 0usize);
    for s in series.iter().filter(|s| hit(s)) {
        n += s.samples.len();
        h += s
            .samples
            .iter()
            .filter(|p| {
                p.syn_retransmits > 0
                    || !p.outcome.completed()
                    || p.phases.dns.is_some_and(|d| d.as_secs_f64() >= 4.0)
                    || p.prober_late()
                    || p.phases
                        .first_byte
                        .zip(p.phases.connect)
                        .is_some_and(|(f, c)| (f - c).as_secs_f64() >= 1.0)
            })
            .count();
    }
    h as f64 / n.max(1) as f64
}

/// A host-network series between two nodes.
fn host_cross_node(s: &Series) -> bool {
    s.dims.source_kind == SourceKind::Host
        && s.dims.destination_node.as_deref() != Some(&*s.dims.source_node)
}

fn label(
    grouping: &'static str,
    rungs: &[u32],
    share: f64,
    cause: &'static str,
    locus: &'static str,
) -> Option<Label> {
    Some(Label {
        grouping,
        rungs: rungs.to_vec(),
        share,
        cause: Some(cause),
        timing_agrees: true,
        locus: Some(locus),
    })
}

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 7000u64;
    let mut rng = || {
        seed += 1;
        StdRng::seed_from_u64(seed)
    };
    let mut push = |name: &str,
                    series: Vec<Series>,
                    facts: Vec<NodeFacts>,
                    kinds: &[&'static str],
                    label: Option<Label>| {
        out.push(Case::labelled(
            format!("class:{name}"),
            series,
            facts,
            kinds,
            label,
        ));
    };
    let ladder = ["syn-retransmit-ladder"];
    let fill = |v: Mode| vec![v; N];

    // node2's backend accepts too slowly: its full accept queue drops SYNs
    // from every source, its own node's included; its pod's namespace
    // counts the overflows.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |_, _, d, _, _| {
                fill(if d == "node2" {
                    Mode::Syn(Fault::Random(0.3))
                } else {
                    BASE
                })
            },
            &mut r,
        );
        let mut f = healthy_facts();
        with(&mut f, "node2", |f| {
            f.pod_rises.listen_overflows = Some(140);
            f.pod_rises.listen_drops = Some(140);
        });
        let sh = share(&s, |s| s.dims.destination_node.as_deref() == Some("node2"));
        push(
            "listen-overflow",
            s,
            f,
            &ladder,
            label("destination", &[1], sh, "listen-queue-overflow", "backend"),
        );
    }
    // node2's backend answers 10 % of requests 2 s late, on every path to
    // it; the handshakes are on time.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |_, _, d, _, r| {
                if d == "node2" {
                    mix(N, 4, Mode::Late { ms: 2000.0 }, BASE, r)
                } else {
                    fill(BASE)
                }
            },
            &mut r,
        );
        let sh = share(&s, |s| s.dims.destination_node.as_deref() == Some("node2"));
        push(
            "slow-backend",
            s,
            healthy_facts(),
            &["server-time-tail"],
            label("destination", &[], sh, "backend-slow", "backend"),
        );
    }
    // Queries to the resolver on node3 are lost on the way from the other
    // nodes; node3's own lookups are on time.
    {
        let mut r = rng();
        let s = lookups(
            "dns://10.96.0.10/kubernetes.default.svc.cluster.local",
            |src, _, d, r| {
                if d == "node3" && src != "node3" {
                    lookup_mix(10, 1, r)
                } else {
                    fill(ANSWERED)
                }
            },
            &mut r,
        );
        let sh = share(&s, |s| {
            s.dims.destination_node.as_deref() == Some("node3") && &*s.dims.source_node != "node3"
        });
        push(
            "dns-loss-to-one-resolver",
            s,
            healthy_facts(),
            &["dns-timeout-ladder"],
            label("destination-path", &[], sh, "dns-path-loss", "dns"),
        );
    }
    // node1 sends A and AAAA at once and its conntrack loses the insert
    // race: its lookups to every resolver wait 5 s.
    {
        let mut r = rng();
        let s = lookups(
            "dns://10.96.0.10/kubernetes.default.svc.cluster.local?parallel=1",
            |src, _, _, r| {
                if src == "node1" {
                    lookup_mix(5, 1, r)
                } else {
                    fill(ANSWERED)
                }
            },
            &mut r,
        );
        let mut f = healthy_facts();
        with(&mut f, "node1", |f| {
            f.rises.conntrack_insert_failed = Some(30)
        });
        let sh = share(&s, |s| &*s.dims.source_node == "node1");
        push(
            "dns-conntrack-race",
            s,
            f,
            &["dns-timeout-ladder"],
            label("source", &[], sh, "conntrack-dns-race", "dns"),
        );
    }
    // node2's conntrack table is full: new flows through it, to it and from
    // it, are dropped at random, its same-node paths too.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |src, _, d, _, _| {
                fill(if src == "node2" || d == "node2" {
                    Mode::Syn(Fault::Random(0.25))
                } else {
                    BASE
                })
            },
            &mut r,
        );
        let mut f = healthy_facts();
        with(&mut f, "node2", |f| {
            f.rises.conntrack_drops = Some(800);
            f.rises.conntrack_early_drops = Some(200);
            f.conntrack_count = Some(262_100);
        });
        let sh = share(&s, |s| {
            &*s.dims.source_node == "node2" || s.dims.destination_node.as_deref() == Some("node2")
        });
        push(
            "conntrack-full-on-one-node",
            s,
            f,
            &ladder,
            label("node", &[1], sh, "conntrack-table-full", "network"),
        );
    }
    // node1 talks to more peers than gc_thresh3: its new neighbour entries
    // are refused and its cross-node paths lose the first SYN now and then.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |src, _, d, _, r| {
                if src == "node1" && d != "node1" {
                    mix(N, 8, Mode::Rung { k: 1 }, BASE, r)
                } else {
                    fill(BASE)
                }
            },
            &mut r,
        );
        let mut f = healthy_facts();
        with(&mut f, "node1", |f| {
            f.rises.neigh_table_fulls = Some(60);
            f.neigh_entries = Some(1024);
        });
        let sh = share(&s, |s| {
            &*s.dims.source_node == "node1" && s.dims.destination_node.as_deref() != Some("node1")
        });
        push(
            "neighbour-table-overflow",
            s,
            f,
            &ladder,
            label(
                "source-path",
                &[1],
                sh,
                "neighbour-table-overflow",
                "network",
            ),
        );
    }
    // Masqueraded flows from the host network clash on a source port: a
    // few lose their first SYN, and insert_failed rises where they leave.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |src, k, d, _, r| {
                if k == SourceKind::Host && src != d {
                    mix(N, 3, Mode::Rung { k: 1 }, BASE, r)
                } else {
                    fill(BASE)
                }
            },
            &mut r,
        );
        let mut f = healthy_facts();
        for n in NODES {
            with(&mut f, n, |f| f.rises.conntrack_insert_failed = Some(12));
        }
        let sh = share(&s, host_cross_node);
        push(
            "snat-port-clash",
            s,
            f,
            &ladder,
            label("kind-path", &[1], sh, "snat-port-clash", "network"),
        );
    }
    // IPVS with conn_reuse_mode=1: a new connection that reuses a source
    // port of an old one loses its SYN, on every path alike.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |_, _, _, _, r| mix(N, 3, Mode::Rung { k: 1 }, BASE, r),
            &mut r,
        );
        let mut f = healthy_facts();
        for n in NODES {
            with(&mut f, n, |f| {
                f.kube_proxy_ipvs = Some(true);
                f.ipvs_conn_reuse_mode = Some(1);
            });
        }
        let sh = share(&s, host_cross_node);
        push(
            "ipvs-conn-reuse",
            s,
            f,
            &ladder,
            label("kind-path", &[1], sh, "ipvs-conn-reuse", "network"),
        );
    }
    // node3 filters reverse paths strictly and the other nodes reach it over
    // a second interface: their SYNs never arrive, and the kernel gives up.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |src, _, d, _, _| {
                fill(if d == "node3" && src != "node3" {
                    Mode::Syn(Fault::All)
                } else {
                    BASE
                })
            },
            &mut r,
        );
        let mut f = healthy_facts();
        with(&mut f, "node3", |f| {
            f.rises.reverse_path_drops = Some(300);
            f.rp_filter_strict = vec!["eth1".into()];
        });
        push(
            "reverse-path-filter",
            s,
            f,
            &ladder,
            label(
                "destination-path",
                &[],
                1.0,
                "reverse-path-filter",
                "network",
            ),
        );
    }
    // node1's kube-proxy stopped syncing: its Service paths lead to a pod
    // that is gone, while its straight pod paths and every other node's
    // Service paths work.
    {
        let mut r = rng();
        let s = matrix(
            true,
            |src, _, _, via, _| {
                fill(if src == "node1" && via == Via::Service {
                    Mode::Syn(Fault::All)
                } else {
                    BASE
                })
            },
            &mut r,
        );
        push(
            "stale-proxy-rules",
            s,
            healthy_facts(),
            &ladder,
            label("source-service", &[], 1.0, "stale-proxy-rules", "network"),
        );
    }
    // node1's pod prober runs in a cgroup that throttles it: its probes
    // start late, the paths are healthy.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |src, k, _, _, r| {
                if src == "node1" && k == SourceKind::Pod {
                    mix(N, 8, Mode::LateStart { ms: 400.0 }, BASE, r)
                } else {
                    fill(BASE)
                }
            },
            &mut r,
        );
        let mut f = healthy_facts();
        with(&mut f, "node1", |f| {
            f.pod_rises.throttled_periods = Some(90)
        });
        let sh = share(&s, |s| {
            &*s.dims.source_node == "node1" && s.dims.source_kind == SourceKind::Pod
        });
        push(
            "prober-starved",
            s,
            f,
            &["prober-starved"],
            label("source", &[], sh, "prober-starved", "prober"),
        );
    }
    // A lossy underlay link between node1 and node2, no overlay: random
    // loss on their paths both ways, never the checksum bug.
    {
        let mut r = rng();
        let s = matrix(
            false,
            |src, _, d, _, _| {
                let pair = [src, d];
                fill(if pair.contains(&"node1") && pair.contains(&"node2") {
                    Mode::Syn(Fault::Random(0.15))
                } else {
                    BASE
                })
            },
            &mut r,
        );
        let sh = share(&s, |s| {
            &*s.dims.source_node == "node1" && s.dims.destination_node.as_deref() == Some("node2")
        });
        push(
            "underlay-loss-one-link",
            s,
            healthy_facts(),
            &ladder,
            label("pair", &[1], sh, "path-packet-loss", "network"),
        );
    }
    // Healthy paths while the counters move for reasons of their own:
    // another listener's overflows, a little conntrack churn. Quiet.
    {
        let mut r = rng();
        let s = matrix(true, |_, _, _, _, _| fill(BASE), &mut r);
        let mut f = healthy_facts();
        with(&mut f, "node2", |f| f.pod_rises.listen_overflows = Some(5));
        with(&mut f, "node3", |f| {
            f.rises.conntrack_insert_failed = Some(2)
        });
        push("healthy-with-moving-counters", s, f, &[], None);
    }
    // What one node's prober concludes alone, where its own probes and its
    // own counters can know: a full neighbour table, a SNAT clash and IPVS
    // reuse are counted on the source, stale rules break the source's own
    // Service paths, a lossy link shows on both ends' rows. The others
    // need the far end's counters or the other rows: the hub's view.
    let every: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
    let node = |n: &str| vec![n.to_string()];
    for (name, hit, cause) in [
        (
            "neighbour-table-overflow",
            node("node1"),
            "neighbour-table-overflow",
        ),
        ("snat-port-clash", every.clone(), "snat-port-clash"),
        ("ipvs-conn-reuse", every.clone(), "ipvs-conn-reuse"),
        ("stale-proxy-rules", node("node1"), "stale-proxy-rules"),
        (
            "underlay-loss-one-link",
            vec!["node1".to_string(), "node2".to_string()],
            "path-packet-loss",
        ),
    ] {
        let case = out
            .iter_mut()
            .find(|c| c.name == format!("class:{name}"))
            .expect("a class case");
        case.view = Some(ViewLabel {
            hit_sources: hit,
            cause: cause.to_string(),
            blind_target: None,
        });
    }
    out
}
