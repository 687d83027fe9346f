//! Failures no other finding explains (a PMTU finding explains its own).

use super::super::cell::Cell;
use super::super::{Finding, FindingKind, examples, ratio, round3};
use crate::model::Outcome;

pub fn findings(cells: &[Cell], pmtu: &[Finding]) -> Vec<Finding> {
    let explained = |c: &Cell| {
        let d = &c.w.dims;
        pmtu.iter().any(|f| {
            f.targets.iter().any(|t| **t == *d.target)
                && f.source_node.as_deref() == Some(&*d.source_node)
                && f.source_kind == Some(d.source_kind)
                && f.destination_node.as_deref() == d.destination_node.as_deref()
        })
    };
    cells
        .iter()
        .filter(|c| !c.failures.is_empty() && !explained(c))
        .map(|c| {
            let failed: u64 = c.failures.values().sum();
            let outcomes: Vec<String> = c
                .failures
                .iter()
                .map(|(o, n)| format!("{n} {}", o.as_str()))
                .collect();
            Finding {
                share: round3(ratio(failed, c.n)),
                samples: c.n,
                evidence: std::iter::once(format!(
                    "{failed} of {} probes failed: {}",
                    c.n,
                    outcomes.join(", ")
                ))
                .chain(
                    c.failures
                        .keys()
                        .filter_map(|o| outcome_hint(*o))
                        .map(str::to_string),
                )
                .collect(),
                examples: examples(&[c], |p| !p.outcome.is_ok()),
                ..Finding::of_cell(FindingKind::ProbeFailures, c)
            }
            .with_confidence(1.0)
        })
        .collect()
}

fn outcome_hint(o: Outcome) -> Option<&'static str> {
    Some(match o {
        Outcome::Refused => {
            "refused: the SYN reached a host where nothing listens (no ready backend, wrong port, or a REJECT rule)"
        }
        Outcome::Unreachable => "unreachable: no route, or the neighbour never answered ARP",
        Outcome::ConnectTimeout => {
            "connect timeout without SYN retransmissions seen: the deadline is shorter than the first retransmission"
        }
        Outcome::TotalTimeout => {
            "connected but no complete response in time: a slow or stuck backend, or large packets lost on the path"
        }
        Outcome::Reset => {
            "reset after connecting: the backend or a middlebox aborted the connection"
        }
        Outcome::HttpStatus => "the backend answered with a non-2xx status",
        Outcome::DnsError => "the name did not resolve",
        Outcome::DnsTimeout => {
            "the name lookup did not finish in time: the node's resolver (resolv.conf) does not answer"
        }
        _ => return None,
    })
}
