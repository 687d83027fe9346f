use super::*;
use crate::detect::{CauseId, FindingKind, LikelyCause, ScopeKey};
use crate::model::{Dims, PathKind};
use std::time::SystemTime;

/// A cell's dims from n1's host network to `t`.
fn dims(destination: Option<&str>, path: PathKind) -> Dims {
    Dims {
        source_node: "n1".into(),
        source_kind: SourceKind::Host,
        destination_node: destination.map(Into::into),
        target: "t".into(),
        path,
        family: Default::default(),
    }
}

/// An empty report from n1's host network.
fn report(samples_per_target: u32) -> MatrixReport {
    MatrixReport::new(
        "n1",
        SourceKind::Host,
        SystemTime::UNIX_EPOCH,
        SystemTime::UNIX_EPOCH,
        samples_per_target,
        &[],
    )
}

fn cause(id: CauseId, score: f64, missing: &[&str], unknown: &[&str]) -> LikelyCause {
    LikelyCause {
        id,
        title: format!("title of {id}"),
        why: "why".into(),
        score,
        present: vec!["p1".into(), "p2".into()],
        missing: missing.iter().map(|s| s.to_string()).collect(),
        unknown: unknown.iter().map(|s| s.to_string()).collect(),
        remediation: vec!["do this".into(), "then that".into()],
    }
}

/// The hub's matrix reads back as it was served, stalls in progress
/// included: a cell's map keyed by SYNs lost passes through the
/// flattened cell.
#[test]
fn a_cluster_matrix_with_waiting_probes_reads_back() {
    let mut cell = Cell::from_samples(dims(Some("n2"), PathKind::CrossNode), "u", &[]);
    cell.waiting = [(3, 2), (6, 1)].into();
    let m = ClusterMatrix {
        cells: vec![ClusterCell {
            cell,
            prober: "p".into(),
        }],
        ..Default::default()
    };
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains(r#""waiting":{"3":2,"6":1}"#), "{json}");
    let back: ClusterMatrix = serde_json::from_str(&json).unwrap();
    assert_eq!(back.cells[0].cell.waiting, [(3, 2), (6, 1)].into());
    let bad = json.replace(r#""3":2"#, r#""three":2"#);
    let err = serde_json::from_str::<ClusterMatrix>(&bad).unwrap_err();
    assert!(
        err.to_string().contains("\"three\" is not a count of SYNs"),
        "{err}"
    );
}

#[test]
fn findings_are_rendered_with_evidence_cause_and_the_others() {
    assert_eq!(render_findings(&[]), "\nfindings: none\n");
    let dims = dims(Some("n2"), PathKind::CrossNode);
    let mut f = Finding::new(
        FindingKind::SynRetransmitLadder,
        ScopeKey::of(crate::detect::Grouping::Cell, &dims),
        1,
        1,
    );
    f.confidence = 0.87;
    f.evidence = vec!["e1".into(), "e2".into()];
    f.likely_causes = vec![
        cause(CauseId::VxlanChecksumOffload, 0.8, &["m1"], &["u1", "u2"]),
        cause(CauseId::SynDroppedOnPath, 0.4, &[], &[]),
    ];
    let mut g = f.clone();
    g.likely_causes = vec![cause(CauseId::PathPacketLoss, 1.0, &[], &[])];
    let text = render_findings(&[f, g]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "");
    assert_eq!(lines[1], "findings:");
    assert!(lines[2].starts_with("1. syn-retransmit-ladder: "), "{text}");
    assert_eq!(lines[3], "   confidence 0.87");
    assert_eq!(&lines[4..6], ["   - e1", "   - e2"]);
    assert_eq!(
        lines[6],
        "   likely cause: title of vxlan-checksum-offload (evidence score 0.80)"
    );
    assert_eq!(lines[7], "     why: why");
    assert_eq!(lines[8], "     present: p1; p2");
    assert_eq!(lines[9], "     missing: m1");
    assert_eq!(lines[10], "     unknown: u1; u2");
    assert_eq!(
        &lines[11..14],
        [
            "     remediation:",
            "       - do this",
            "       - then that"
        ]
    );
    assert_eq!(lines[14], "   other candidates: syn-dropped-on-path (0.40)");
    // No missing, unknown or other candidates: no such lines.
    assert!(lines[15].starts_with("2. "), "{text}");
    assert!(!lines[16..].iter().any(|l| l.contains("missing:")
        || l.contains("unknown:")
        || l.contains("other candidates")));
}

/// A sample that connected in `connect_ms` and ended at `total_ms`.
fn sample(
    connect_ms: u64,
    total_ms: u64,
    outcome: crate::model::Outcome,
    syn_retransmits: u32,
) -> crate::model::Sample {
    crate::model::Sample {
        prober_lag_ms: None,
        at: SystemTime::UNIX_EPOCH,
        phases: crate::model::Phases {
            tls: None,
            dns: None,
            connect: Some(Duration::from_millis(connect_ms)),
            first_byte: None,
            total: Duration::from_millis(total_ms),
        },
        outcome,
        syn_retransmits,
        body_bytes: 0,
        trace: None,
    }
}

#[test]
fn a_cell_from_samples_has_exact_percentiles() {
    use crate::model::{Outcome, Sample};
    let at = |ms: u64, outcome: Outcome, r: u32| sample(ms, ms + 1, outcome, r);
    let mut v: Vec<Sample> = (1..=100).map(|ms| at(ms, Outcome::Ok, 0)).collect();
    v.push(at(63_000, Outcome::Ok, 6));
    v.push(at(5, Outcome::Refused, 0));
    v.push(at(5, Outcome::Reset, 0));
    // Shut down, not failed.
    v.push(at(5, Outcome::Cancelled, 0));
    let dims = dims(None, PathKind::Unknown);
    let c = Cell::from_samples(dims, "http://x/", &v);
    assert_eq!((c.samples, c.failures, c.syn_retransmits), (104, 2, 6));
    assert_eq!(c.p50_ms, Some(52.0), "51st of 101 completed totals");
    assert_eq!(c.p90_ms, Some(92.0));
    assert_eq!(c.max_ms, Some(63_001.0));
    assert_eq!(c.connect_max_ms, Some(63_000.0));
    assert_eq!(c.outcomes["refused"], 1);
    assert!(c.histogram.is_empty());
}

#[test]
fn connect_times_bucket_twenty_to_a_decade_from_ten_microseconds() {
    let ms = |v: f64| Duration::from_secs_f64(v / 1e3);
    let h = log_hist(
        [
            // Below the floor: the first bucket, up to 10^(1/20) x 10 us.
            (ms(0.005), 1),
            // 1 ms is bucket 40; 1.05 ms shares it.
            (ms(1.0), 2),
            (ms(1.05), 3),
            // 1.15 ms is past 10^(41/20) x 10 us = 1.122 ms.
            (ms(1.15), 1),
            // The 63 s rung: bucket 135, up to 10^6.8 x 10 us.
            (ms(63_000.0), 4),
        ]
        .into_iter(),
    );
    assert_eq!(h, vec![(0.011, 1), (1.122, 5), (1.259, 1), (63_095.734, 4)]);
}

#[test]
fn examples_are_the_bad_probes_first_then_the_slowest() {
    use crate::model::{Outcome, Sample, TraceRef};
    let at = |ms: u64, outcome: Outcome, r: u32, id: Option<&str>| Sample {
        trace: id.map(|id| TraceRef {
            trace_id: id.into(),
            span_id: "s".into(),
        }),
        ..sample(ms, ms, outcome, r)
    };
    let v = [
        at(900, Outcome::Ok, 0, Some("slow")),
        at(2, Outcome::Ok, 0, Some("fast")),
        at(1_003, Outcome::Ok, 1, Some("lost-a-syn")),
        at(5, Outcome::Refused, 0, Some("refused")),
        // The slowest of all, and failed, but not traced.
        at(9_000, Outcome::TotalTimeout, 0, None),
    ];
    assert_eq!(examples(v.iter()), ["lost-a-syn", "refused", "slow"]);
    assert_eq!(examples(v[..2].iter()), ["slow", "fast"]);
    assert!(examples(v[4..].iter()).is_empty());
}

#[test]
fn an_early_end_counts_each_cells_probes_waiting_by_syns_lost() {
    use crate::model::{Pending, SeriesWindow};
    let to = |dest: &str| dims(Some(dest), PathKind::CrossNode);
    let pending = |syn_retransmits| Pending {
        at: SystemTime::UNIX_EPOCH,
        syn_retransmits,
        stalled_after: Duration::from_secs(1),
        waited: Duration::from_secs(3),
    };
    let window = |dest, lost: &[u32]| SeriesWindow {
        pending: lost.iter().map(|n| pending(*n)).collect(),
        ..SeriesWindow::new(to(dest), vec![], 0)
    };
    let mut r = report(3);
    r.cells = ["n2", "n3"]
        .map(|d| Cell::from_samples(to(d), "http://x/", &[]))
        .to_vec();
    r.mark_early(
        Duration::from_millis(3_460),
        &[
            // A probe that has lost no SYN yet is not waiting on a rung.
            window("n2", &[2, 2, 0]),
            window("n3", &[1]),
            // A series without a cell in the report.
            window("n4", &[3]),
        ],
    );
    assert_eq!(
        r.ended_early,
        Some(EndedEarly {
            after_s: 3.5,
            waiting: 3
        })
    );
    assert_eq!(r.cells[0].waiting, [(2, 2)].into());
    assert_eq!(r.cells[1].waiting, [(1, 1)].into());
    let table = r.to_table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[1].starts_with("ended on its verdict after 3.5 s: 3 probes were still waiting"),
        "{table}"
    );
    assert!(lines[2].ends_with("SYN-RTX  WAITING"), "{table}");
    assert!(lines[3].ends_with("  2 >=2"), "{table}");
    assert!(lines[4].ends_with("  1 >=1"), "{table}");
    assert_eq!(waiting_text(&[(4, 1), (2, 2)].into()), "3 >=2");
    assert_eq!(waiting_text(&BTreeMap::new()), "-");
}

#[test]
fn exit_codes() {
    let mut r = report(1);
    assert_eq!(r.exit_code(), 0);
    assert!(!r.to_table().contains("INTERRUPTED"));
    let mut failed = Cell::from_samples(dims(None, PathKind::Unknown), "http://x/", &[]);
    failed.failures = 1;
    r.cells.push(failed);
    assert_eq!(r.exit_code(), 1);
    // A partial run is never healthy, and says so first.
    r.cells.clear();
    r.interrupted = Some("SIGINT".into());
    assert_eq!(r.exit_code(), 130);
    assert!(
        r.to_table()
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("INTERRUPTED by SIGINT: a partial run")
    );
    r.interrupted = Some("SIGTERM".into());
    assert_eq!(r.exit_code(), 143);
}

#[test]
fn a_cluster_matrix_is_healthy_without_failures_findings_or_unheard_probers() {
    let dims = dims(Some("n2"), PathKind::CrossNode);
    let cell = |outcome| ClusterCell {
        cell: Cell::from_samples(
            dims.clone(),
            "http://x/",
            &[crate::model::Sample {
                prober_lag_ms: None,
                at: SystemTime::UNIX_EPOCH,
                phases: crate::model::Phases::default(),
                outcome,
                syn_retransmits: 0,
                body_bytes: 0,
                trace: None,
            }],
        ),
        prober: "n1 host".into(),
    };
    let ok = ClusterMatrix {
        probers: [("up".to_string(), 2)].into(),
        cells: vec![cell(crate::model::Outcome::Ok)],
        ..ClusterMatrix::default()
    };
    assert!(ok.healthy());
    let mut failed = ok.clone();
    failed.cells.push(cell(crate::model::Outcome::Refused));
    assert!(!failed.healthy(), "a failed probe");
    let mut found = ok.clone();
    found.findings.push(Finding::new(
        FindingKind::ProbeFailures,
        ScopeKey::of(crate::detect::Grouping::Cell, &dims),
        1,
        1,
    ));
    assert!(!found.healthy(), "a finding");
    let mut stale = ok.clone();
    stale.probers.insert("stale".into(), 1);
    assert!(!stale.healthy(), "a prober not heard from");
}

#[test]
fn names_align_left_and_numbers_right() {
    let dims = dims(Some("node-with-a-long-name"), PathKind::CrossNode);
    let mut r = report(1);
    let cell = Cell {
        cert_not_after: None,
        tls_max_ms: None,
        tls_p50_ms: None,
        dims,
        url: "http://x/".into(),
        samples: 7,
        failures: 0,
        outcomes: BTreeMap::new(),
        p50_ms: Some(1.0),
        p90_ms: None,
        p99_ms: None,
        max_ms: None,
        connect_p50_ms: None,
        connect_max_ms: None,
        syn_retransmits: 0,
        histogram: String::new(),
        connect_histogram: String::new(),
        connect_log_hist: vec![],
        examples: vec![],
        waiting: BTreeMap::new(),
    };
    r.cells.push(cell);
    let table = r.to_table();
    let lines: Vec<&str> = table.lines().collect();
    // PATH (third column) is a name, SAMPLES (fourth) a number.
    assert!(
        lines[1].starts_with("TARGET  DESTINATION            PATH        SAMPLES"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("t       node-with-a-long-name  cross-node        7"),
        "{table}"
    );
}

#[test]
fn human_units() {
    assert_eq!(human_ms(Some(0.684)), "0.68ms");
    assert_eq!(human_ms(Some(12.34)), "12.3ms");
    assert_eq!(human_ms(Some(63_420.0)), "63.42s");
    assert_eq!(human_ms(None), "-");
}

#[test]
fn the_family_column_shows_on_a_dual_stack_run_only() {
    let mut r = report(1);
    let cell = |target: &str, family| {
        let mut d = dims(Some("n2"), PathKind::CrossNode);
        d.target = target.into();
        d.family = family;
        Cell::from_samples(d, "http://x/", &[])
    };
    r.cells.push(cell("node/n2", crate::model::Family::Ipv4));
    let one = r.to_table();
    assert!(!one.contains("FAMILY") && !one.contains("ipv4"), "{one}");
    r.cells
        .push(cell("node/n2/ipv6", crate::model::Family::Ipv6));
    let both = r.to_table();
    let lines: Vec<&str> = both.lines().collect();
    assert!(lines[1].contains("  PATH        FAMILY  SAMPLES"), "{both}");
    assert!(
        lines[2].contains("cross-node  ipv4  ") && lines[3].contains("cross-node  ipv6  "),
        "{both}"
    );
}
