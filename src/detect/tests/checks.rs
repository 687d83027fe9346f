//! The causes' checks one by one: each present, missing or unknown on
//! the evidence that decides it.

use super::*;
use crate::detect::causes::rank;
use crate::detect::stat::RungShape;

fn cause(e: &Evidence, kind: FindingKind, id: CauseId) -> LikelyCause {
    rank(kind, e)
        .into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{id} not ranked: {e:#?}"))
}

fn has(v: &[String], start: &str) -> bool {
    v.iter().any(|x| x.starts_with(start))
}

#[test]
fn the_first_rungs_are_one_or_two_lost_syns() {
    let at = |k| Evidence {
        dominant_rung: Some(k),
        shape: Some(RungShape::Deterministic),
        ..Evidence::default()
    };
    let ladder = FindingKind::SynRetransmitLadder;
    let early = "probes sit on the first rungs";
    assert!(has(
        &cause(&at(2), ladder, CauseId::SynDroppedOnPath).present,
        early
    ));
    assert!(has(
        &cause(&at(3), ladder, CauseId::SynDroppedOnPath).missing,
        early
    ));
}

#[test]
fn half_the_probes_is_most_not_a_minority() {
    let at = |share| Evidence {
        share,
        dominant_rung: Some(1),
        shape: Some(RungShape::Geometric),
        ..Evidence::default()
    };
    let ladder = FindingKind::SynRetransmitLadder;
    let few = "a minority of probes";
    assert!(has(
        &cause(&at(0.5), ladder, CauseId::PathPacketLoss).missing,
        few
    ));
    assert!(has(
        &cause(&at(0.49), ladder, CauseId::PathPacketLoss).present,
        few
    ));
}

#[test]
fn a_local_checksum_rise_is_evidence_and_no_rise_is_unknown() {
    let with = |n| Evidence {
        cross_node_hit: true,
        same_node_probed: true,
        local_udp_checksum_errors: n,
        ..Evidence::default()
    };
    let ladder = FindingKind::SynRetransmitLadder;
    let local = "the source node's own UdpInCsumErrors rose";
    let c = cause(&with(Some(3)), ladder, CauseId::VxlanChecksumOffload);
    assert!(has(&c.present, local), "{c:#?}");
    for quiet in [Some(0), None] {
        let c = cause(&with(quiet), ladder, CauseId::VxlanChecksumOffload);
        assert!(has(&c.unknown, local) && !has(&c.missing, local), "{c:#?}");
    }
}

#[test]
fn conntrack_insert_failures_count_only_when_they_rose() {
    let with = |n| Evidence {
        dns_rung: true,
        dns_parallel: true,
        source_insert_failed: n,
        ..Evidence::default()
    };
    let dns = FindingKind::DnsTimeoutLadder;
    let failed = "conntrack insert_failed rose";
    assert!(has(
        &cause(&with(Some(0)), dns, CauseId::ConntrackDnsRace).missing,
        failed
    ));
    assert!(has(
        &cause(&with(Some(1)), dns, CauseId::ConntrackDnsRace).present,
        failed
    ));
    // Unknown weighs half: 4 present of 4 + 3 / 2 judged.
    let c = cause(&with(None), dns, CauseId::ConntrackDnsRace);
    assert!(has(&c.unknown, failed));
    assert_eq!(c.score, 0.73);
}
