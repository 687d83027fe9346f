//! Address families compared as paths are: a ladder in one family only is
//! that family's, its twins in the other family named clean, and causes
//! that cannot pick a family weighed down.

use super::*;
use crate::model::Family;

/// Every node to every node, from host and pod networks, through each
/// node's Service and straight to its pod, in both families; `hit` says
/// which IPv6 cells lose `k` SYNs on every probe.
fn dual_stack(hit: impl Fn(&str, &str, SourceKind) -> Option<(f64, u32)>) -> Vec<Series> {
    let mut s = Vec::new();
    for src in NODES {
        for dst in NODES {
            for kind in [SourceKind::Host, SourceKind::Pod] {
                for (target, v4, v6) in [
                    (
                        format!("node/{dst}"),
                        "http://10.96.0.11/",
                        "http://[fd00:96::11]/",
                    ),
                    (
                        format!("pod/{dst}"),
                        "http://10.244.1.2/",
                        "http://[fd00:244:1::2]/",
                    ),
                ] {
                    s.push(series(src, kind, dst, &target, v4, &repeat(ok(0.7), 20)));
                    let probes = match hit(src, dst, kind) {
                        Some((ms, k)) => repeat((ms, k, Outcome::Ok), 20),
                        None => repeat(ok(0.8), 20),
                    };
                    s.push(series(
                        src,
                        kind,
                        dst,
                        &format!("{target}/ipv6"),
                        v6,
                        &probes,
                    ));
                }
            }
        }
    }
    s
}

fn node_facts() -> Vec<NodeFacts> {
    NODES
        .iter()
        .map(|n| facts(n, "6.18.0", Some(0), 0))
        .collect()
}

#[test]
fn a_ladder_on_one_family_only_is_that_family_s() {
    // Two SYNs lost from node1 to node2, IPv6 only: an IPv6 ND, route or
    // ip6 rule problem, the IPv4 twins clean.
    let s = dual_stack(|src, dst, _| (src == "node1" && dst == "node2").then_some((3_050.0, 2)));
    let found = detect(&s, &node_facts(), &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f.kind, FindingKind::SynRetransmitLadder);
    assert_eq!(f.scope_key.grouping, Grouping::Pair);
    assert_eq!(f.scope_key.family, Some(Family::Ipv6));
    assert_eq!(f.scope, "every path from node1 to node2, IPv6 only");
    assert!(f.scope_key.id().ends_with("/ipv6"), "{}", f.scope_key.id());
    assert_eq!(f.share, 1.0);
    assert!(
        f.evidence.iter().any(|l| l
            == "IPv6 only: 80 of 80 IPv6 probes lost SYNs, 0 of 80 IPv4 probes between the same nodes, from the same networks, through the same kind of target"),
        "{:#?}",
        f.evidence
    );
    let ids: Vec<CauseId> = f.likely_causes.iter().map(|c| c.id).collect();
    let family = f
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::FamilyPath)
        .unwrap_or_else(|| panic!("{ids:?}"));
    assert_eq!(family.score, 1.0, "{family:#?}");
    assert!(
        family
            .present
            .iter()
            .any(|p| p.starts_with("one address family is hit"))
    );
    // A lossy link loses both families' SYNs: only one lost them.
    if let Some(loss) = f
        .likely_causes
        .iter()
        .find(|c| c.id == CauseId::PathPacketLoss)
    {
        assert!(
            loss.missing.iter().any(|m| m.contains("address family")),
            "{loss:#?}"
        );
        assert!(loss.score <= 0.5, "{loss:#?}");
    }
}

#[test]
fn both_families_hit_alike_keep_one_scope_and_name_no_family() {
    let s = dual_stack(|src, dst, _| (src == "node1" && dst == "node2").then_some((3_050.0, 2)));
    // The same loss on the IPv4 cells too.
    let s: Vec<Series> = s
        .into_iter()
        .map(|mut w| {
            if w.dims.family == Family::Ipv4
                && &*w.dims.source_node == "node1"
                && w.dims.destination_node.as_deref() == Some("node2")
            {
                for p in &mut w.samples {
                    p.syn_retransmits = 2;
                    p.phases.connect = Some(Duration::from_millis(3_050));
                }
            }
            w
        })
        .collect();
    let found = detect(&s, &node_facts(), &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f.scope_key.family, None, "{f:#?}");
    assert_eq!(f.scope, "every path from node1 to node2");
    assert!(
        !f.evidence.iter().any(|l| l.contains(" only: ")),
        "{:#?}",
        f.evidence
    );
    // Both hit: the family's own path is no candidate.
    assert!(
        !f.likely_causes.iter().any(|c| c.id == CauseId::FamilyPath),
        "{:#?}",
        f.likely_causes
    );
}

#[test]
fn a_one_family_cluster_keeps_its_scopes_and_scores() {
    // IPv4 only: no family in any key, no family check judged.
    let s: Vec<Series> = dual_stack(|_, _, _| None)
        .into_iter()
        .filter(|w| w.dims.family == Family::Ipv4)
        .map(|mut w| {
            if &*w.dims.source_node == "node1"
                && w.dims.destination_node.as_deref() == Some("node2")
            {
                for p in &mut w.samples {
                    p.syn_retransmits = 2;
                    p.phases.connect = Some(Duration::from_millis(3_050));
                }
            }
            w
        })
        .collect();
    let found = detect(&s, &node_facts(), &DetectorConfig::default());
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f.scope_key.family, None);
    assert!(
        !serde_json::to_string(&f.scope_key)
            .unwrap()
            .contains("family")
    );
    for c in &f.likely_causes {
        assert!(
            !c.unknown
                .iter()
                .chain(&c.missing)
                .any(|m| m.contains("address family")),
            "{c:#?}"
        );
    }
}

#[test]
fn older_window_documents_without_a_family_read_as_ipv4() {
    let d: Dims = serde_json::from_str(
        r#"{"source_node":"a","source_kind":"host","destination_node":"b","target":"t","path":"cross-node"}"#,
    )
    .unwrap();
    assert_eq!(d.family, Family::Ipv4);
    let v6 = Dims {
        family: Family::Ipv6,
        ..d
    };
    assert!(
        serde_json::to_string(&v6)
            .unwrap()
            .contains(r#""family":"ipv6""#)
    );
}
