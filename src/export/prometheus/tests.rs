use super::*;

/// Every rung lands in one bucket of its own, apart from faster probes
/// and from the next rung.
fn each_rung_alone(bounds: &[f64], rungs: &[f64]) {
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
    let bucket = |v: f64| bounds.iter().position(|b| v <= *b).unwrap();
    for (i, t) in rungs.iter().enumerate() {
        // Seen on real kernels: a rung is late by up to about 4 %.
        let (early, late) = (bucket(*t), bucket(t * 1.04));
        assert_eq!(early, late, "rung {t}s spans buckets");
        assert_ne!(
            bucket(t * 0.9),
            early,
            "rung {t}s shares a bucket with faster probes"
        );
        if let Some(next) = rungs.get(i + 1) {
            assert_ne!(
                bucket(*next),
                early,
                "rungs {t}s and {next}s share a bucket"
            );
        }
    }
}

#[test]
fn every_rung_has_its_own_bucket() {
    // Classic and linear (tcp_syn_linear_timeouts) connect rungs.
    let linux = [
        1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 11.0, 15.0, 19.0, 31.0, 35.0, 63.0, 67.0,
    ];
    each_rung_alone(RUNG_BUCKETS, &linux);
    // Fine adds the Windows 9 s rung and the resolver's 10 s.
    each_rung_alone(
        LATENCY_BUCKETS,
        &[
            1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 9.0, 11.0, 15.0, 19.0, 31.0, 35.0, 63.0, 67.0,
        ],
    );
}

fn result(target: &str, outcome: Outcome, syns: u32) -> ProbeResult {
    let mut r = crate::stats::tests::result(5, outcome, std::time::SystemTime::now());
    r.target = Arc::new(Target::parse(target, "http://127.0.0.1:1/").unwrap());
    r.syn_retransmits = syns;
    r
}

/// The series one target's family lines hold, by name prefix.
fn series(text: &str, target: &str) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&format!("target=\"{target}\"")))
        .count()
}

#[test]
fn a_target_costs_35_series_by_default_and_starts_at_zero() {
    let m = Metrics::new(Arc::default(), &MetricsConfig::default());
    m.observe(&result("a", Outcome::Ok, 0));
    let text = m.encode();
    assert_eq!(series(&text, "a"), 35, "{text}");
    let zero = text
        .lines()
        .find(|l| l.starts_with("tailprobe_syn_retransmits_total{") && l.contains("\"a\""))
        .expect("the counter exists before the first retransmit");
    assert!(zero.ends_with(" 0"), "{zero}");
    // A failure adds its outcome, nothing else; its lost SYNs count.
    m.observe(&result("a", Outcome::ConnectTimeout, 6));
    let text = m.encode();
    assert_eq!(series(&text, "a"), 36);
    let syns = text
        .lines()
        .find(|l| l.starts_with("tailprobe_syn_retransmits_total{") && l.contains("\"a\""))
        .unwrap();
    assert!(syns.ends_with(" 6"), "{syns}");

    let fine = MetricsConfig {
        buckets: Buckets::Fine,
        phases: vec![MetricPhase::Connect, MetricPhase::Total],
        ..MetricsConfig::default()
    };
    let m = Metrics::new(Arc::default(), &fine);
    m.observe(&result("a", Outcome::Ok, 0));
    assert_eq!(
        series(&m.encode(), "a"),
        2 * (LATENCY_BUCKETS.len() + 3) + 2
    );

    let none = MetricsConfig {
        buckets: Buckets::None,
        ..MetricsConfig::default()
    };
    let m = Metrics::new(Arc::default(), &none);
    m.observe(&result("a", Outcome::Ok, 0));
    let text = m.encode();
    assert_eq!(series(&text, "a"), 2);
    assert!(!text.contains("probe_duration_seconds"), "{text}");
}

#[test]
fn per_path_series_drop_the_target_and_destination() {
    let cfg = MetricsConfig {
        per: Grain::Path,
        ..MetricsConfig::default()
    };
    let m = Metrics::new(Arc::default(), &cfg);
    for t in ["a", "b", "c"] {
        m.observe(&result(t, Outcome::Ok, 0));
    }
    let text = m.encode();
    assert_eq!(series(&text, ""), 35, "three targets, one path: {text}");
    assert!(!text.contains("destination_node=\"node1\""), "{text}");
}

#[test]
fn skipped_probes_are_counted_by_target_and_reason() {
    use crate::model::Record;
    let m = Metrics::new(Arc::default(), &MetricsConfig::default());
    let r = result("busy", Outcome::Ok, 0);
    m.skipped(&r.target, SkipReason::InFlightLimit);
    Record::skipped(&m, &r.target, SkipReason::InFlightLimit);
    let text = m.encode();
    assert!(
        text.contains(
            "tailprobe_probes_skipped_total{target=\"busy\",reason=\"in-flight-limit\"} 2"
        ),
        "{text}"
    );
}

#[test]
fn a_target_that_leaves_takes_its_series_along() {
    let m = Metrics::new(Arc::default(), &MetricsConfig::default());
    m.observe(&result("stays", Outcome::Ok, 0));
    m.observe(&result("goes", Outcome::Ok, 0));
    m.observe(&result("goes", Outcome::Refused, 0));
    let gone = result("goes", Outcome::Ok, 0);
    m.skipped(&gone.target, SkipReason::InFlightLimit);
    assert_eq!(m.retain_targets(|t| t == "stays"), 1);
    let text = m.encode();
    assert_eq!(series(&text, "goes"), 0, "{text}");
    assert_eq!(series(&text, "stays"), 35);
    // Probed again, it starts over from zero.
    m.observe(&result("goes", Outcome::Ok, 0));
    assert_eq!(series(&m.encode(), "goes"), 35);
    // What stayed is still known, and goes when its turn comes.
    assert_eq!(m.retain_targets(|_| false), 2);
    assert_eq!(series(&m.encode(), "stays"), 0);
}

#[test]
fn the_family_is_a_label_not_more_series() {
    let m = Metrics::new(Arc::default(), &MetricsConfig::default());
    m.observe(&result("a", Outcome::Ok, 0));
    let mut v6 = result("b", Outcome::Ok, 0);
    v6.target = Arc::new(Target::parse("b", "http://[::1]:1/").unwrap());
    m.observe(&v6);
    let text = m.encode();
    let count = series(&text, "a");
    assert_eq!(series(&text, "b"), count, "{text}");
    let of = |t: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("target=\"{t}\"")))
            .all(|l| {
                l.contains(if t == "a" {
                    "family=\"ipv4\""
                } else {
                    "family=\"ipv6\""
                })
            })
    };
    assert!(of("a") && of("b"), "{text}");
}
