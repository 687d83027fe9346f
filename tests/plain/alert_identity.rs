//! A finding's identity is its kind and its scope's stable key, never its
//! words: when a node joins a cluster-wide ladder the scope's text and
//! counts change, and the alert stays the same alert (no resolve, no
//! re-raise), and the Prometheus labels stay the same series.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tailprobe::detect::{FindingKind, Grouping};
use tailprobe::export::alerts::{self, Alerter, Phase};
use tailprobe::export::prometheus::Metrics;
use tailprobe::model::{
    DetectorConfig, Dims, Outcome, PathKind, Phases, Sample, SeriesWindow, SourceKind,
};

/// 20 probes from `src` to `dst`: on the 63 s rung when cross-node.
fn window(src: &str, dst: &str) -> SeriesWindow {
    let cross = src != dst;
    let connect = if cross {
        Duration::from_millis(64_400)
    } else {
        Duration::from_micros(700)
    };
    SeriesWindow {
        cert_not_after: None,
        dims: Dims {
            source_node: src.into(),
            source_kind: SourceKind::Host,
            destination_node: Some(dst.into()),
            target: format!("svc-{dst}").into(),
            path: if cross {
                PathKind::CrossNode
            } else {
                PathKind::SameNode
            },
            family: Default::default(),
        },
        samples: (0..20)
            .map(|i| Sample {
                prober_lag_ms: None,
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(i),
                phases: Phases {
                    tls: None,
                    dns: None,
                    connect: Some(connect),
                    first_byte: Some(connect),
                    total: connect + Duration::from_micros(300),
                },
                outcome: Outcome::Ok,
                syn_retransmits: if cross { 6 } else { 0 },
                body_bytes: 2,
                trace: None,
            })
            .collect(),
        body_bytes: 2,
        pending: vec![],
        dns_parallel: false,
    }
}

fn cluster(nodes: &[&str]) -> Vec<SeriesWindow> {
    nodes
        .iter()
        .flat_map(|s| nodes.iter().map(move |d| window(s, d)))
        .collect()
}

#[test]
fn a_node_joining_a_scope_changes_its_words_not_its_identity() {
    let cfg = DetectorConfig::default();
    let two = tailprobe::detect::detect(&cluster(&["node1", "node2"]), &[], &cfg);
    let three = tailprobe::detect::detect(&cluster(&["node1", "node2", "node3"]), &[], &cfg);
    assert_eq!((two.len(), three.len()), (1, 1), "{two:#?} {three:#?}");
    let (a, b) = (&two[0], &three[0]);
    assert_eq!(a.kind, FindingKind::SynRetransmitLadder);
    assert_eq!(a.scope_key.grouping, Grouping::KindPath);
    assert_eq!(
        a.scope,
        "every cross-node path from the host network of 2 nodes"
    );
    assert_eq!(
        b.scope,
        "every cross-node path from the host network of 3 nodes"
    );
    assert_eq!(a.key(), b.key(), "same identity");

    let mut alerter = Alerter::new(Duration::from_secs(600));
    let t0 = Instant::now();
    let first = alerter.update(
        t0,
        two.iter()
            .map(|f| alerts::finding(f, alerts::Source::Prober))
            .collect(),
    );
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].phase, Phase::Raised);
    let later = alerter.update(
        t0 + Duration::from_secs(30),
        three
            .iter()
            .map(|f| alerts::finding(f, alerts::Source::Prober))
            .collect(),
    );
    assert!(later.is_empty(), "no resolve and no re-raise: {later:#?}");
    // The newest details are kept for the next re-send.
    let resent = alerter.update(
        t0 + Duration::from_secs(601),
        three
            .iter()
            .map(|f| alerts::finding(f, alerts::Source::Prober))
            .collect(),
    );
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].phase, Phase::Active);
    let attr = |k: &str| {
        resent[0]
            .condition
            .attributes
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(attr("tailprobe.finding.source_nodes").as_deref(), Some("3"));
    assert_eq!(
        attr("tailprobe.finding.scope_key").as_deref(),
        Some("kind-path/host/cross-node")
    );

    // Prometheus: the same label set before and after, no prose in it.
    let metrics = Metrics::new(Arc::default(), &Default::default());
    metrics.set_findings(&two);
    let before = finding_lines(&metrics.encode());
    metrics.set_findings(&three);
    let after = finding_lines(&metrics.encode());
    assert_eq!(before, after);
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(
        before[0].contains("scope=\"kind-path/host/cross-node\"")
            && before[0].contains("kind=\"syn-retransmit-ladder\""),
        "{before:?}"
    );
}

fn finding_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("tailprobe_findings{"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_widened_scope_is_a_new_identity() {
    // From one source only, the ladder is one source's paths; with a second
    // source it becomes a cluster-wide scope: a different finding.
    let cfg = DetectorConfig::default();
    let mut one = cluster(&["node1", "node2", "node3"]);
    for w in one.iter_mut().filter(|w| &*w.dims.source_node != "node1") {
        for s in &mut w.samples {
            s.syn_retransmits = 0;
            s.phases.connect = Some(Duration::from_micros(700));
        }
    }
    let narrow = tailprobe::detect::detect(&one, &[], &cfg);
    let wide = tailprobe::detect::detect(&cluster(&["node1", "node2", "node3"]), &[], &cfg);
    assert_eq!(narrow.len(), 1, "{narrow:#?}");
    assert_eq!(narrow[0].scope_key.grouping, Grouping::SourceKindPath);
    assert_ne!(narrow[0].key(), wide[0].key());
}
