//! Precision and recall of the detector on the labelled evaluation set.
//! Run with `cargo bench --bench eval`.

fn main() {
    let cases = tailprobe_evalkit::cases();
    let t = std::time::Instant::now();
    let scores = tailprobe_evalkit::score(&cases);
    let took = t.elapsed();
    println!(
        "detector evaluation: {} labelled cases, detected in {:.1} ms",
        cases.len(),
        took.as_secs_f64() * 1e3
    );
    println!(
        "{:<24} {:>4} {:>4} {:>4} {:>10} {:>8}",
        "finding kind", "tp", "fp", "fn", "precision", "recall"
    );
    for (kind, (tp, fp, fneg)) in scores {
        let p = if tp + fp == 0 {
            1.0
        } else {
            f64::from(tp) / f64::from(tp + fp)
        };
        let r = if tp + fneg == 0 {
            1.0
        } else {
            f64::from(tp) / f64::from(tp + fneg)
        };
        println!("{kind:<24} {tp:>4} {fp:>4} {fneg:>4} {p:>10.3} {r:>8.3}");
    }
    let healthy = cases.iter().filter(|c| c.expected.is_empty()).count();
    let quiet = cases
        .iter()
        .filter(|c| c.expected.is_empty())
        .filter(|c| tailprobe::detect::detect(&c.series, &c.facts, &Default::default()).is_empty())
        .count();
    println!("healthy cases with no finding: {quiet} of {healthy}");
    let f = tailprobe_evalkit::fields(&cases);
    println!("per field (right of judged):");
    for (name, (right, judged)) in [
        ("kind", f.kind),
        ("scope", f.scope),
        ("dominant rung", f.rung),
        ("share", f.share),
        ("first cause", f.cause),
        ("timing agreement", f.timing),
        ("locus", f.locus),
        ("healthy quiet", f.quiet),
    ] {
        let acc = if judged == 0 {
            1.0
        } else {
            f64::from(right) / f64::from(judged)
        };
        println!("  {name:<16} {right:>3} of {judged:<3} {acc:.3}");
    }
    println!("failure classes beyond the seed (the cluster's view):");
    println!(
        "  {:<30} {:<18} {:<8} {:<26} {:>6}",
        "class", "scope", "locus", "first cause", "margin"
    );
    for c in cases.iter().filter(|c| c.name.starts_with("class:")) {
        let found = tailprobe::detect::detect(&c.series, &c.facts, &Default::default());
        let Some(first) = found.first() else {
            println!("  {:<30} quiet", c.name);
            continue;
        };
        let causes = &first.likely_causes;
        let margin = match causes.as_slice() {
            [a, b, ..] => format!("{:+.2}", a.score - b.score),
            [a] => format!("{:+.2}", a.score),
            [] => String::new(),
        };
        println!(
            "  {:<30} {:<18} {:<8} {:<26} {:>6}",
            c.name,
            first.scope_key.grouping.as_str(),
            first.locus.as_str(),
            causes.first().map(|c| c.id.as_str()).unwrap_or("-"),
            margin
        );
    }
    println!("each node alone (its host-network probes, its own facts):");
    println!(
        "  {:<38} {:>9} {:>6} {:>5} {:>7}  blind service",
        "scenario", "precision", "recall", "top-1", "margin"
    );
    for (name, s) in tailprobe_evalkit::views(&cases) {
        println!(
            "  {name:<38} {:>9.3} {:>6.3} {:>5.3} {:>7}  {}",
            s.precision(),
            s.recall(),
            s.top1(),
            s.margin.map(|m| format!("{m:+.2}")).unwrap_or_default(),
            s.blind
                .map(|(listed, first)| format!(
                    "cause {} with its path unknown, {}",
                    if listed { "listed" } else { "NOT listed" },
                    if first { "first" } else { "NOT first" }
                ))
                .unwrap_or_default()
        );
        for w in &s.wrong {
            println!("    {w}");
        }
    }
    let wrong: Vec<&str> = cases
        .iter()
        .filter(|c| {
            let found: std::collections::BTreeSet<String> =
                tailprobe::detect::detect(&c.series, &c.facts, &Default::default())
                    .into_iter()
                    .map(|f| f.kind.as_str().to_string())
                    .collect();
            found
                .iter()
                .map(String::as_str)
                .ne(c.expected.iter().copied())
        })
        .map(|c| c.name.as_str())
        .collect();
    println!(
        "cases with a wrong verdict: {}",
        if wrong.is_empty() {
            "none".into()
        } else {
            wrong.join(", ")
        }
    );
}
