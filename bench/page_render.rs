//! The page's render time in a real headless Chromium: a synthetic cluster
//! matrix of N nodes (host and pod probers, 20 remote nodes and the node
//! itself each, 20 probes per cell, one planted 3 s rung), written as the
//! self-contained report, opened from disk. Printed per size: the file's
//! size, when the first heatmap was drawn after navigation began (JSON
//! parse included), and one redraw (colour by another statistic), medians
//! of 3 loads. The target: 1,000 nodes drawn within 1 s.
//!
//!   cargo bench --bench page_render              100, 1000 and 5000 nodes
//!   cargo bench --bench page_render -- 1000      one size
//!
//! Under `cargo test --all-targets`, 100 nodes only.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

#[path = "machine.rs"]
mod machine;

use std::time::Duration;

use serde_json::json;
use tailprobe::model::{Dims, PathKind, SourceKind};
use tailprobe::wire::report::{Cell, ClusterCell, ClusterMatrix};

const REMOTE: usize = 20;

fn node(i: usize) -> String {
    format!("node-{i:04}")
}

fn matrix(nodes: usize) -> ClusterMatrix {
    let mut cells = Vec::new();
    let step = (nodes / REMOTE).max(1);
    for n in 0..nodes {
        for kind in [SourceKind::Host, SourceKind::Pod] {
            let mut dests: Vec<usize> = (0..REMOTE).map(|k| (n + 1 + k * step) % nodes).collect();
            dests.push(n);
            dests.sort_unstable();
            dests.dedup();
            for d in dests {
                let slow = d == 42 % nodes && d != n;
                let connect = if slow {
                    3_000.4
                } else {
                    0.4 + (n % 7) as f64 * 0.05
                };
                let mut cell = Cell::from_samples(
                    Dims {
                        source_node: node(n).into(),
                        source_kind: kind,
                        destination_node: Some(node(d).into()),
                        target: format!("node/{}", node(d)).into(),
                        path: if d == n {
                            PathKind::SameNode
                        } else {
                            PathKind::CrossNode
                        },
                        family: Default::default(),
                    },
                    &format!("http://tailprobe-node-{}.tailprobe.svc/", node(d)),
                    &[],
                );
                cell.samples = 20;
                cell.outcomes = [("ok".to_string(), 20)].into();
                cell.connect_p50_ms = Some(connect);
                cell.connect_max_ms = Some(connect * 1.01);
                cell.p50_ms = Some(connect + 0.3);
                cell.p99_ms = Some(connect * 1.01 + 0.3);
                cell.connect_log_hist = vec![(connect * 1.06, 18), (connect * 1.18, 2)];
                cell.syn_retransmits = if slow { 40 } else { 0 };
                cells.push(ClusterCell {
                    cell,
                    prober: format!("{} {}", node(n), kind.as_str()),
                });
            }
        }
    }
    ClusterMatrix {
        generated_at: Some("2026-12-01T00:00:00.000Z".into()),
        rests_on: format!("judged on {} of {} probers", nodes * 2, nodes * 2),
        probers: [("up".to_string(), nodes * 2)].into(),
        cells,
        rungs: (0..nodes)
            .map(|n| (node(n), vec![1.0, 3.0, 7.0, 15.0, 31.0, 63.0]))
            .collect(),
        ..Default::default()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let (sizes, _) = machine::sizes(&[100, 1000, 5000], &[100]);
    let chromium = std::process::Command::new("/usr/bin/chromium")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "page render on {}, {chromium} headless, 1400x1000; target: 1,000 nodes drawn within 1 s",
        machine::describe()
    );
    println!(
        "{:>6} {:>8} {:>9} {:>14} {:>10}",
        "nodes", "cells", "file MiB", "first draw ms", "redraw ms"
    );
    let dir = common::TempDir::new("page-render");
    let b = common::browser::Browser::start(1400, 1000).await;
    for n in sizes {
        let m = matrix(n);
        let html = tailprobe::wire::page::report(&m);
        let file = dir.file(&format!("m{n}.html"), &html);
        let (mut first, mut redraw) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            b.goto(&format!("file://{}", file.display())).await;
            let at = b
                .until(
                    "return document.body.dataset.firstRenderAt",
                    Duration::from_secs(120),
                )
                .await;
            first.push(at.as_str().unwrap().parse::<f64>().unwrap());
            let ms = b
                .exec(
                    "const s = document.getElementById('stat'); s.value = 'maxc'; s.dispatchEvent(new Event('change')); return document.body.dataset.renderMs;",
                    json!([]),
                )
                .await;
            redraw.push(ms.as_str().unwrap().parse::<f64>().unwrap());
        }
        println!(
            "{:>6} {:>8} {:>9.1} {:>14.0} {:>10.0}",
            n,
            m.cells.len(),
            html.len() as f64 / (1 << 20) as f64,
            median(first),
            median(redraw)
        );
    }
}
