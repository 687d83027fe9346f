//! The detector's goals on the labelled evaluation set: nothing raised on any
//! healthy case, every ladder found (down to 1 probe in 50 over 200 probes),
//! and each finding kind where it belongs.

#[test]
fn every_labelled_case_gets_exactly_its_findings() {
    let cases = tailprobe_evalkit::cases();
    assert!(cases.len() > 40);
    assert!(
        cases
            .iter()
            .filter(|c| c.name.starts_with("recorded:"))
            .count()
            >= 4,
        "the recorded lab runs are part of the set"
    );
    for c in &cases {
        let found: std::collections::BTreeSet<String> =
            tailprobe::detect::detect(&c.series, &c.facts, &Default::default())
                .into_iter()
                .map(|f| f.kind.as_str().to_string())
                .collect();
        let want: std::collections::BTreeSet<String> =
            c.expected.iter().map(|k| k.to_string()).collect();
        assert_eq!(found, want, "case {}", c.name);
    }
    for (kind, (_, fp, fneg)) in tailprobe_evalkit::score(&cases) {
        assert_eq!((fp, fneg), (0, 0), "{kind}");
    }
}

/// Every field of the labelled cases, at its goal: the scope, the dominant
/// rung, the share within tolerance, the first cause, and silence on every
/// healthy case.
#[test]
fn every_labelled_field_is_right() {
    let cases = tailprobe_evalkit::cases();
    let f = tailprobe_evalkit::fields(&cases);
    for (name, (right, judged)) in [
        ("kind", f.kind),
        ("scope", f.scope),
        ("rung", f.rung),
        ("share", f.share),
        ("first cause", f.cause),
        ("timing agreement", f.timing),
        ("locus", f.locus),
        ("healthy quiet", f.quiet),
    ] {
        println!("{name}: {right} of {judged}");
        assert!(judged > 0, "{name} was judged on no case");
        assert_eq!(right, judged, "{name}: {:#?}", f.wrong);
    }
    assert!(
        cases.iter().filter(|c| c.label.is_some()).count() >= 14,
        "the simulated, labelled cases are in the set"
    );
}

/// The simulator walks the kernel's ladders from its timer alone.
mod simulator {
    use rand::rngs::StdRng;
    use tailprobe_evalkit::simulate::{Fault, Kernel, connect};

    fn exact(linear: u32) -> Kernel {
        Kernel {
            slack: 0.0,
            tick_s: 0.0,
            ..Kernel::linux(linear)
        }
    }

    #[test]
    fn the_simulated_timer_walks_the_kernels_ladders() {
        let mut r = <StdRng as rand::SeedableRng>::seed_from_u64(1);
        let at = |k: Kernel, f: Fault, r: &mut StdRng| {
            let c = connect(&k, f, 0.0, r);
            (c.seconds.map(|s| (s * 10.0).round() / 10.0), c.retransmits)
        };
        // Classic: 1, 3, 7, 15, 31, 63 s.
        assert_eq!(at(exact(0), Fault::FirstSyns(6), &mut r), (Some(63.0), 6));
        assert_eq!(at(exact(0), Fault::FirstSyns(2), &mut r), (Some(3.0), 2));
        // Linear timeouts 4: 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s.
        let linear = exact(4);
        assert_eq!(at(linear, Fault::FirstSyns(10), &mut r), (Some(67.0), 10));
        // The NATed entry expires after the first gap over 30 s.
        let nat = Fault::NatExpiry {
            conntrack_timeout_s: 30.0,
            rehash: false,
        };
        assert_eq!(at(exact(0), nat, &mut r), (Some(63.0), 6));
        assert_eq!(at(linear, nat, &mut r), (Some(67.0), 10));
        let short = Fault::NatExpiry {
            conntrack_timeout_s: 10.0,
            rehash: false,
        };
        assert_eq!(at(exact(0), short, &mut r), (Some(31.0), 5));
        let rehash = Fault::NatExpiry {
            conntrack_timeout_s: 30.0,
            rehash: true,
        };
        assert_eq!(at(exact(0), rehash, &mut r), (Some(1.0), 1));
        let gave_up = connect(&exact(0), Fault::All, 0.0, &mut r);
        assert_eq!((gave_up.seconds, gave_up.retransmits), (None, 6));
        assert_eq!(gave_up.gave_up_at, Some(127.0));
        // Windows: 3 s, then 6 s.
        let w = Kernel {
            slack: 0.0,
            tick_s: 0.0,
            ..Kernel::windows()
        };
        assert_eq!(at(w, Fault::FirstSyns(2), &mut r), (Some(9.0), 2));
    }
}

/// Each node's prober alone, on its own host-network probes and its own
/// facts: the fault found where it hit and nowhere else, and the right cause
/// first, for the simulated cases and the recorded lab runs alike.
#[test]
fn each_node_alone_ranks_the_right_cause_first() {
    let cases = tailprobe_evalkit::cases();
    let scores = tailprobe_evalkit::views(&cases);
    println!(
        "{:<40} {:>9} {:>6} {:>5} blind",
        "scenario (one node's view)", "precision", "recall", "top-1"
    );
    for (name, s) in &scores {
        println!(
            "{name:<40} {:>9.3} {:>6.3} {:>5.3} {}",
            s.precision(),
            s.recall(),
            s.top1(),
            s.blind
                .map(|(listed, first)| format!("listed={listed} first={first}"))
                .unwrap_or_default()
        );
    }
    assert!(scores.len() >= 9, "{:?}", scores.keys());
    assert!(
        scores.keys().filter(|k| k.starts_with("recorded:")).count() >= 6,
        "the recorded lab runs carry view labels: {:?}",
        scores.keys()
    );
    for (name, s) in &scores {
        assert_eq!(
            (s.precision(), s.recall(), s.top1()),
            (1.0, 1.0, 1.0),
            "{name}: {:#?}",
            s.wrong
        );
        assert!(s.top1.1 > 0, "{name}: no view judged");
        if let Some(b) = s.blind {
            assert_eq!(b, (true, true), "{name}: {:#?}", s.wrong);
        }
    }
}
