//! The detector's goals on the labelled evaluation set: nothing raised on any
//! healthy case, every ladder found (down to 1 probe in 50 over 200 probes),
//! and each finding kind where it belongs.

#[path = "../bench/eval_set.rs"]
mod eval_set;

#[test]
fn every_labelled_case_gets_exactly_its_findings() {
    let cases = eval_set::cases();
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
    for (kind, (_, fp, fneg)) in eval_set::score(&cases) {
        assert_eq!((fp, fneg), (0, 0), "{kind}");
    }
}
