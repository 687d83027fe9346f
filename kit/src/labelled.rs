//! Cases simulated on the client kernel's timer, every field labelled.

use super::*;

/// Cases simulated on the kernel's timer with every field labelled: kind,
/// scope, rungs, share and, where one node's evidence names it, the cause.
pub(crate) fn labelled() -> Vec<Case> {
    let base = Mode::Base {
        base_ms: 0.5,
        jitter_ms: 1.0,
    };
    let mut seed = 1000u64;
    let mut rng = || {
        seed += 1;
        StdRng::seed_from_u64(seed)
    };
    let mut out = Vec::new();
    let mut push = |name: &str,
                    series: Vec<Series>,
                    facts: Vec<NodeFacts>,
                    kinds: &[&'static str],
                    label: Option<Label>| {
        out.push(Case::labelled(
            format!("sim:{name}"),
            series,
            facts,
            kinds,
            label,
        ));
    };
    let ladder = ["syn-retransmit-ladder"];
    let label = |grouping, rungs: &[u32], share, cause| {
        Some(Label {
            grouping,
            rungs: rungs.to_vec(),
            share,
            cause,
            timing_agrees: true,
            locus: None,
        })
    };

    // The double-NAT checksum bug: every cross-node SYN from the host
    // network rides a NATed conntrack entry until a gap outlasts its timeout.
    for (name, kernel, linear, kernel_release, fault, rung) in [
        (
            "vxlan-classic",
            Kernel::linux(0),
            None,
            "3.10.0-1160.el7.x86_64",
            Fault::NatExpiry {
                conntrack_timeout_s: 30.0,
                rehash: false,
            },
            6,
        ),
        (
            "vxlan-linear",
            Kernel::linux(4),
            Some(4),
            "6.6.0",
            Fault::NatExpiry {
                conntrack_timeout_s: 30.0,
                rehash: false,
            },
            10,
        ),
        (
            "vxlan-conntrack-10s",
            Kernel::linux(0),
            None,
            "3.10.0",
            Fault::NatExpiry {
                conntrack_timeout_s: 10.0,
                rehash: false,
            },
            5,
        ),
        (
            "vxlan-rehash",
            Kernel::linux(0),
            None,
            "3.10.0",
            Fault::NatExpiry {
                conntrack_timeout_s: 30.0,
                rehash: true,
            },
            1,
        ),
    ] {
        let mut r = rng();
        let series = cluster(
            kernel,
            20,
            |s, k, d| {
                if k == SourceKind::Host && s != d {
                    Mode::Syn(fault)
                } else {
                    base
                }
            },
            &mut r,
        );
        let facts = NODES
            .iter()
            .map(|n| {
                let Fault::NatExpiry {
                    conntrack_timeout_s,
                    rehash,
                } = fault
                else {
                    unreachable!("the checksum bug is a NAT-expiry fault")
                };
                NodeFacts {
                    conntrack_udp_timeout: Some(conntrack_timeout_s as u32),
                    txrehash: Some(u32::from(rehash)),
                    ..node_facts(n, kernel_release, linear, true)
                }
            })
            .collect();
        push(
            name,
            series,
            facts,
            &ladder,
            label("kind-path", &[rung], 1.0, Some("vxlan-checksum-offload")),
        );
    }
    {
        // A rule on node1 drops the first 2 SYNs of every flow from node2.
        let mut r = rng();
        let series = cluster(
            Kernel::linux(0),
            20,
            |s, _, d| {
                if s == "node2" && d == "node1" {
                    Mode::Syn(Fault::FirstSyns(2))
                } else {
                    base
                }
            },
            &mut r,
        );
        push(
            "drop-syn-2-one-pair",
            series,
            vec![],
            &ladder,
            label("pair", &[2], 1.0, Some("syn-dropped-on-path")),
        );
    }
    {
        // 5 % random loss everywhere: mostly one lost SYN, on every path.
        let mut r = rng();
        let series = cluster(
            Kernel::linux(0),
            200,
            |_, _, _| Mode::Syn(Fault::Random(0.05)),
            &mut r,
        );
        push(
            "random-loss-5pct",
            series,
            vec![],
            &ladder,
            label("kind-path", &[1], 0.05, Some("path-packet-loss")),
        );
    }
    {
        // A partial, deterministic drop on three sources' cross-node paths:
        // 6 of every 20 probes per cell, an exact share.
        let mut r2 = rng();
        let mut series = Vec::new();
        for src in NODES {
            for kind in [SourceKind::Host, SourceKind::Pod] {
                for dst in NODES {
                    let mut modes = vec![base; 20];
                    if kind == SourceKind::Host && src != dst {
                        for m in modes.iter_mut().step_by(3).take(6) {
                            *m = Mode::Syn(Fault::FirstSyns(3));
                        }
                    }
                    series.push(build_from(
                        src,
                        kind,
                        dst,
                        &format!("svc-{dst}"),
                        "http://x/",
                        &modes,
                        Kernel::linux(0),
                        &mut r2,
                    ));
                }
            }
        }
        // Nodes that report their facts: a 30 s UDP conntrack timeout, no
        // rehash, no overlay offload.
        let facts = NODES
            .iter()
            .map(|n| node_facts(n, "6.1.0", None, false))
            .collect();
        push(
            "partial-share-cross-node",
            series,
            facts,
            &ladder,
            label("kind-path", &[3], 0.3, None),
        );
    }
    {
        // The checksum bug behind a Service with a backend on every node and
        // no echo headers: a third of the probes land on the same node and
        // pass, the rest wait for the 63 s rung, destination unknown.
        let mut r = rng();
        let (nat, mut series) = checksum_cluster(base, &mut r);
        for src in NODES {
            let modes: Vec<Mode> = (0..30)
                .map(|i| if i % 3 == 0 { base } else { Mode::Syn(nat) })
                .collect();
            let mixed = build(
                src,
                src,
                "svc-all",
                "http://x/",
                &modes,
                Kernel::linux(0),
                &mut r,
            );
            series.extend(blind(vec![mixed], "svc-all"));
        }
        let facts = NODES
            .iter()
            .map(|n| node_facts(n, "5.10.0", None, true))
            .collect();
        push(
            "vxlan-mixed-service",
            series,
            facts,
            &ladder,
            label("kind-path", &[6], 1.0, Some("vxlan-checksum-offload")),
        );
    }
    {
        // The checksum bug, and a Service whose backends are gone (refused)
        // probed from every node: the refused cells neither join nor split
        // the ladder's scope.
        let mut r = rng();
        let (_, mut series) = checksum_cluster(base, &mut r);
        for src in NODES {
            for dst in NODES.iter().filter(|d| **d != src) {
                let refused = vec![Mode::Fail(Outcome::Refused); 20];
                series.push(build(
                    src,
                    dst,
                    "svc-gone",
                    "http://x/",
                    &refused,
                    Kernel::linux(0),
                    &mut r,
                ));
            }
        }
        let facts = NODES
            .iter()
            .map(|n| node_facts(n, "5.10.0", None, true))
            .collect();
        push(
            "failing-cells-beside-ladder",
            series,
            facts,
            &["syn-retransmit-ladder", "probe-failures"],
            label("kind-path", &[6], 1.0, Some("vxlan-checksum-offload")),
        );
    }
    {
        // Only pod-network sources lose SYNs cross-node.
        let mut r = rng();
        let series = cluster(
            Kernel::linux(0),
            20,
            |s, k, d| {
                if k == SourceKind::Pod && s != d {
                    Mode::Syn(Fault::FirstSyns(1))
                } else {
                    base
                }
            },
            &mut r,
        );
        push(
            "pod-network-only",
            series,
            vec![],
            &ladder,
            label("kind-path", &[1], 1.0, None),
        );
    }
    // One pair's series: give-ups, timer slack at and past the window's
    // edge, a Windows client, borderline significance, a delay that is no
    // loss.
    let mut single = |name: &str,
                      kernel: Kernel,
                      modes: Vec<Mode>,
                      facts: Vec<NodeFacts>,
                      kinds: &[&'static str],
                      l: Option<Label>,
                      r: &mut StdRng| {
        let s = build("node1", "node2", "t", "http://x/", &modes, kernel, r);
        push(name, vec![s], facts, kinds, l);
    };
    {
        let mut r = rng();
        let mut modes = vec![base; 15];
        modes.extend([Mode::Syn(Fault::All); 5]);
        single(
            "give-ups",
            Kernel::linux(0),
            modes,
            vec![],
            &ladder,
            label("cell", &[], 0.25, None),
            &mut r,
        );
    }
    // Slack up to 12 % of the 4 s timeout keeps the 7 s rung inside its
    // window; 25 % carries most probes past it, and the kernel's count
    // still places them, with the disagreement said.
    for (name, slack, within) in [
        ("slack-at-window-edge", 0.12, true),
        ("slack-past-window-edge", 0.25, false),
    ] {
        let mut r = rng();
        let kernel = Kernel {
            slack,
            ..Kernel::linux(0)
        };
        let mut l = label("cell", &[3], 1.0, None);
        if let Some(l) = l.as_mut() {
            l.timing_agrees = within;
        }
        single(
            name,
            kernel,
            vec![Mode::Syn(Fault::FirstSyns(3)); 20],
            vec![],
            &ladder,
            l,
            &mut r,
        );
    }
    {
        let mut r = rng();
        single(
            "windows-client",
            Kernel::windows(),
            vec![Mode::Syn(Fault::FirstSyns(2)); 10],
            vec![NodeFacts {
                node: "node1".into(),
                kernel: Some("Windows Server 2022 10.0.20348".into()),
                ..NodeFacts::default()
            }],
            &ladder,
            label("cell", &[2], 1.0, None),
            &mut r,
        );
    }
    {
        let mut r = rng();
        let modes = mix(2000, 2, Mode::Syn(Fault::FirstSyns(1)), base, &mut r);
        single(
            "borderline-2-in-2000",
            Kernel::linux(0),
            modes,
            vec![],
            &[],
            None,
            &mut r,
        );
        let mut r = rng();
        let modes = mix(200, 3, Mode::Syn(Fault::FirstSyns(1)), base, &mut r);
        single(
            "borderline-3-in-200",
            Kernel::linux(0),
            modes,
            vec![],
            &ladder,
            label("cell", &[1], 0.015, None),
            &mut r,
        );
    }
    {
        // Every connect takes just over a second, but no SYN was lost: a
        // delay timed like a rung, which the kernel's count overrules.
        let mut r = rng();
        let modes = vec![
            Mode::Base {
                base_ms: 1000.5,
                jitter_ms: 2.0
            };
            40
        ];
        single(
            "delay-not-loss",
            Kernel::linux(0),
            modes,
            vec![],
            &[],
            None,
            &mut r,
        );
    }
    {
        let mut r = rng();
        // A and AAAA at once, and conntrack's insert_failed rising on the
        // source: the race, as glibc meets it.
        let modes = mix(100, 10, Mode::Dns { tries: 2 }, base, &mut r);
        let s = build(
            "node1",
            "node2",
            "t",
            "dns://10.96.0.10/kubernetes.default?parallel=1",
            &modes,
            Kernel::linux(0),
            &mut r,
        );
        let mut f = facts("node1", None);
        f.rises.conntrack_insert_failed = Some(10);
        push(
            "dns-10s",
            vec![s],
            vec![f],
            &["dns-timeout-ladder"],
            label("cell", &[], 0.1, Some("conntrack-dns-race")),
        );
    }
    // What each node's own prober must conclude.
    let every: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
    let views: [(&str, &[String], &str, Option<&str>); 9] = [
        ("vxlan-classic", &every, "vxlan-checksum-offload", None),
        ("vxlan-linear", &every, "vxlan-checksum-offload", None),
        (
            "vxlan-conntrack-10s",
            &every,
            "vxlan-checksum-offload",
            None,
        ),
        ("vxlan-rehash", &every, "vxlan-checksum-offload", None),
        (
            "vxlan-mixed-service",
            &every,
            "vxlan-checksum-offload",
            Some("svc-all"),
        ),
        (
            "failing-cells-beside-ladder",
            &every,
            "vxlan-checksum-offload",
            None,
        ),
        (
            "drop-syn-2-one-pair",
            &["node2".to_string()],
            "syn-dropped-on-path",
            None,
        ),
        ("random-loss-5pct", &every, "path-packet-loss", None),
        (
            "partial-share-cross-node",
            &every,
            "syn-dropped-on-path",
            None,
        ),
    ];
    for (name, sources, cause, blind_target) in views {
        let case = out
            .iter_mut()
            .find(|c| c.name == format!("sim:{name}"))
            .unwrap_or_else(|| panic!("no case {name}"));
        case.view = Some(ViewLabel {
            hit_sources: sources.to_vec(),
            cause: cause.into(),
            blind_target: blind_target.map(str::to_string),
        });
    }
    out
}
