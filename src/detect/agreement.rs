//! Probes and the node's own connections (passive mode) are judged apart;
//! here each verdict is read against the other, which is evidence in
//! itself: a fault real traffic meets but probes do not (or the reverse)
//! says what the fault depends on.

use std::collections::BTreeSet;

use super::Finding;
use super::cell::Cell;

/// The words of a finding judged on real connections: they are
/// connections, not probes, and their SYN count is the kernel's own, read
/// by the BPF program, not through `TCP_INFO`.
pub fn passive_words(f: &mut Finding, connections: u64) {
    let say = |s: &str| {
        s.replace("TCP_INFO agrees", "The kernel's retransmit count agrees")
            .replace(
                "TCP_INFO and timing agree",
                "the kernel's retransmit count and timing agree",
            )
            .replace("probes", "connections")
            .replace("probe", "connection")
    };
    for line in f.evidence.iter_mut() {
        *line = say(line);
    }
    for c in f.likely_causes.iter_mut() {
        for line in c
            .present
            .iter_mut()
            .chain(&mut c.missing)
            .chain(&mut c.unknown)
        {
            *line = say(line);
        }
    }
    f.evidence.push(format!(
        "read from the kernel on {connections} real connections of this node's processes: no probe was sent"
    ));
}

/// Adds to each finding whether the other kind of evidence agrees on the
/// same (source, destination) pairs: found the same kind of fault there,
/// or saw those pairs clean, or never saw them.
pub fn cross_check(probed: &mut [Finding], passive: &mut [Finding], cells: (&[Cell], &[Cell])) {
    let seen = |cells: &[Cell]| -> BTreeSet<(String, String)> {
        cells
            .iter()
            .filter_map(|c| {
                let d = c.w.dims.destination_node.as_deref()?;
                Some((c.w.dims.source_node.to_string(), d.to_string()))
            })
            .collect()
    };
    let (probed_pairs, passive_pairs) = (seen(cells.0), seen(cells.1));
    let snapshot: Vec<Finding> = probed.to_vec();
    for f in passive.iter_mut() {
        f.evidence
            .push(judge(f, &snapshot, &probed_pairs, "probes"));
    }
    let snapshot: Vec<Finding> = passive.to_vec();
    for f in probed.iter_mut() {
        if !passive_pairs.is_empty() {
            f.evidence
                .push(judge(f, &snapshot, &passive_pairs, "real connections"));
        }
    }
}

fn judge(
    f: &Finding,
    others: &[Finding],
    other_pairs: &BTreeSet<(String, String)>,
    other: &str,
) -> String {
    let mine: BTreeSet<&(String, String)> = f.pairs.iter().collect();
    let agreeing: BTreeSet<&(String, String)> = others
        .iter()
        .filter(|o| o.kind == f.kind)
        .flat_map(|o| o.pairs.iter())
        .filter(|p| mine.contains(p))
        .collect();
    let clean = mine
        .iter()
        .filter(|p| other_pairs.contains(**p) && !agreeing.contains(**p))
        .count();
    match (agreeing.len(), clean) {
        (0, 0) => {
            format!("{other} did not cover these paths in the window: nothing to compare with")
        }
        (0, n) => format!(
            "{other} disagree: {n} of these {} paths are clean for {other}, so the fault depends on what differs (port, process, socket options, timing)",
            mine.len()
        ),
        (a, 0) => format!(
            "{other} agree: the same {} on {a} of these {} paths",
            f.kind.as_str(),
            mine.len()
        ),
        (a, n) => format!(
            "{other} partly agree: the same {} on {a} of these {} paths, clean on {n}",
            f.kind.as_str(),
            mine.len()
        ),
    }
}
