//! The cluster matrix for people: a node x node grid of the slowest probe
//! per source (node and network) and destination, with the SYN
//! retransmissions the kernels reported, then the verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::view::ClusterMatrix;

fn human(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        format!("{ms:.2}ms")
    }
}

/// A grid cell: the slowest probe (ms), SYN retransmits, failures, probes
/// still waiting in SYN_SENT.
type Worst = (f64, u64, u64, u64);

pub fn render(m: &ClusterMatrix) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster matrix, {} ({})",
        m.generated_at.as_deref().unwrap_or("no round yet"),
        m.rests_on
    );
    let dests: BTreeSet<&str> = m
        .cells
        .iter()
        .filter_map(|c| c.cell.dims.destination_node.as_deref())
        .collect();
    let mut grid: BTreeMap<(String, &str), BTreeMap<&str, Worst>> = BTreeMap::new();
    for c in &m.cells {
        let d = &c.cell.dims;
        let Some(dest) = d.destination_node.as_deref() else {
            continue;
        };
        let e = grid
            .entry((d.source_node.to_string(), d.source_kind.as_str()))
            .or_default()
            .entry(dest)
            .or_insert((0.0, 0, 0, 0));
        e.0 = e.0.max(c.cell.max_ms.unwrap_or(0.0));
        e.1 += c.cell.syn_retransmits;
        e.2 += c.cell.failures;
        e.3 += c.cell.waiting.values().sum::<u64>();
    }
    let _ = writeln!(
        out,
        "node x node: slowest probe (SYN retransmits after +, failures after !, probes still waiting on SYN retransmission after ~; = same node)"
    );
    let mut header = format!("{:<22}", "source");
    for d in &dests {
        let _ = write!(header, "{d:<22}");
    }
    let _ = writeln!(out, "{}", header.trim_end());
    for ((src, kind), row) in &grid {
        let mut line = format!("{:<22}", format!("{src} {kind}"));
        for d in &dests {
            let cell = match row.get(d) {
                None => "-".to_string(),
                Some((ms, rtx, failed, waiting)) => {
                    let mut s = human(*ms);
                    if *rtx > 0 {
                        let _ = write!(s, " +{rtx}");
                    }
                    if *failed > 0 {
                        let _ = write!(s, " {failed}!");
                    }
                    if *waiting > 0 {
                        let _ = write!(s, " ~{waiting}");
                    }
                    if src == d {
                        s += " =";
                    }
                    s
                }
            };
            let _ = write!(line, "{cell:<22}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out += &crate::wire::report::render_findings(&m.findings);
    out
}
