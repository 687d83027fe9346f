//! Generated cases: series with known modes and noise, labelled with the
//! finding kinds they must raise and nothing more.

use super::*;

pub(crate) fn generated() -> Vec<Case> {
    let mut out = Vec::new();
    let base = Mode::Base {
        base_ms: 0.5,
        jitter_ms: 1.0,
    };
    let mut seed = 0u64;
    let mut rng = || {
        seed += 1;
        StdRng::seed_from_u64(seed)
    };
    // Healthy: jitter up to 300 ms, millisecond bimodality, one unlucky probe.
    for (name, modes) in [
        (
            "healthy-jitter-300ms",
            vec![
                Mode::Base {
                    base_ms: 0.5,
                    jitter_ms: 300.0
                };
                200
            ],
        ),
        ("healthy-fast", vec![base; 200]),
    ] {
        let mut r = rng();
        out.push(one(
            name,
            "t",
            &modes,
            Kernel::linux(0),
            vec![],
            BTreeSet::new(),
            &mut r,
        ));
    }
    {
        let mut r = rng();
        let mut modes = vec![base; 100];
        modes.extend(vec![
            Mode::Base {
                base_ms: 3.0,
                jitter_ms: 1.0
            };
            100
        ]);
        out.push(one(
            "healthy-mixed-node-service",
            "svc-all",
            &modes,
            Kernel::linux(0),
            vec![],
            BTreeSet::new(),
            &mut r,
        ));
    }
    for n in [50, 200, 1000] {
        let mut r = rng();
        let modes = mix(n, 1, Mode::Rung { k: 1 }, base, &mut r);
        out.push(one(
            format!("healthy-one-unlucky-probe-in-{n}"),
            "t",
            &modes,
            Kernel::linux(0),
            vec![],
            BTreeSet::new(),
            &mut r,
        ));
    }
    // Ladders: every rung of both schedules, at shares from 1 in 50 up.
    for (schedule, linear, label) in [
        (Kernel::linux(0), Some(0), "classic"),
        (Kernel::linux(4), Some(4), "linear"),
    ] {
        for k in 1..=schedule.syn_retries {
            for (n, hits) in [(200, 4), (50, 5), (20, 20)] {
                let mut r = rng();
                let modes = mix(n, hits, Mode::Rung { k }, base, &mut r);
                out.push(one(
                    format!("ladder-{label}-rung{k}-{hits}of{n}"),
                    "t",
                    &modes,
                    schedule,
                    vec![facts("node1", linear)],
                    ["syn-retransmit-ladder"].into(),
                    &mut r,
                ));
            }
        }
    }
    for hits in [2, 10] {
        let mut r = rng();
        let modes = mix(100, hits, Mode::Dns { tries: 1 }, base, &mut r);
        out.push(one(
            format!("dns-5s-{hits}of100"),
            "t",
            &modes,
            Kernel::linux(0),
            vec![],
            ["dns-timeout-ladder"].into(),
            &mut r,
        ));
    }
    {
        let mut r = rng();
        let small = build(
            "node1",
            "node2",
            "small",
            "http://x/",
            &[base; 20],
            Kernel::linux(0),
            &mut r,
        );
        let big = build(
            "node1",
            "node2",
            "big",
            "http://x/bytes/65536",
            &[Mode::Fail(Outcome::TotalTimeout); 20],
            Kernel::linux(0),
            &mut r,
        );
        out.push(Case {
            name: "pmtu-blackhole".into(),
            series: vec![small, big],
            facts: vec![],
            expected: ["pmtu-blackhole"].into(),
            label: None,
            view: None,
        });
    }
    {
        // The first probes to two new peers waited on ARP; later ones were fast.
        let mut r = rng();
        let mut series = Vec::new();
        for dst in ["node2", "node3"] {
            let mut modes = vec![Mode::Rung { k: 1 }];
            modes.extend(vec![base; 30]);
            let mut s = build(
                "node1",
                dst,
                "t",
                "http://x/",
                &modes,
                Kernel::linux(0),
                &mut r,
            );
            for (i, p) in s.samples.iter_mut().enumerate() {
                p.at = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * i as u64);
            }
            series.push(s);
        }
        out.push(Case {
            name: "first-contact-arp".into(),
            series,
            facts: vec![],
            expected: ["first-contact-delay"].into(),
            label: None,
            view: None,
        });
    }
    {
        let mut r = rng();
        let modes = mix(20, 5, Mode::Fail(Outcome::Refused), base, &mut r);
        out.push(one(
            "refused",
            "t",
            &modes,
            Kernel::linux(0),
            vec![],
            ["probe-failures"].into(),
            &mut r,
        ));
    }
    out
}
