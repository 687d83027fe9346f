//! The lab on the real kernel: these tests need root (they create network
//! namespaces) and fail with a clear message without it. Each builds its own
//! lab under a unique name and removes it, even when an assertion fails.
//! The slow checksum-bug case (about 65 s) runs in parallel with the rest.

use crate::common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Daemon, bin};
use tailprobe::detect::{CauseId, FindingKind};
use tailprobe::lab::run::LabReport;
use tailprobe::model::{PathKind, SourceKind, Via};
use tailprobe::wire::report::Cell;

mod alerts;
mod daemons;
mod hub;
mod kubernetes;
mod ladders;
mod passive;

pub(crate) fn tailprobe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A lab that is removed when dropped.
pub(crate) struct Lab {
    pub(crate) name: String,
    // Dropped after the lab is down (fields drop after `Drop::drop`).
    _turn: crate::Turn,
}

impl Lab {
    pub(crate) fn up(extra: &[&str]) -> Self {
        Self::up_in(crate::Turn::Shared(crate::shared()), extra)
    }

    /// A lab for a test whose assertions are deadlines: no other test of
    /// this binary runs beside it.
    fn up_alone(extra: &[&str]) -> Self {
        Self::up_in(crate::Turn::Alone(crate::alone()), extra)
    }

    fn up_in(turn: crate::Turn, extra: &[&str]) -> Self {
        common::require_root("the lab tests");
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "tt{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut args = vec!["lab", "up", "--name", &name, "--nodes", "3"];
        args.extend_from_slice(extra);
        let (code, out, err) = tailprobe(&args);
        assert_eq!(code, 0, "lab up: {out}{err}");
        Lab { name, _turn: turn }
    }

    pub(crate) fn run(&self, args: &[&str]) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--name", &self.name]);
        let (code, out, err) = tailprobe(&all);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }

    pub(crate) fn matrix(&self, samples: u32) -> LabReport {
        let s = samples.to_string();
        let (code, out, err) = tailprobe(&[
            "lab",
            "matrix",
            "--name",
            &self.name,
            "--samples",
            &s,
            "--format",
            "json",
        ]);
        assert!(code == 0 || code == 1, "lab matrix: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"))
    }
}

impl Lab {
    /// `tailprobe matrix` run by hand inside one node's namespace, on the
    /// config the lab generates for its host network: that node's prober
    /// alone, its own probes and facts, as on a real cluster's node.
    fn node_matrix(&self, node: usize, samples: u32) -> tailprobe::wire::report::MatrixReport {
        self.node_matrix_with(node, samples, &[])
    }

    /// [`Lab::node_matrix`] with more arguments to `matrix`.
    fn node_matrix_with(
        &self,
        node: usize,
        samples: u32,
        extra: &[&str],
    ) -> tailprobe::wire::report::MatrixReport {
        let plan = tailprobe::lab::Plan::new(&self.name, 3).unwrap();
        let config = std::env::temp_dir().join(format!("{}-node{node}.toml", self.name));
        std::fs::write(
            &config,
            tailprobe::lab::run::node_config(&plan, node, SourceKind::Host, samples),
        )
        .unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &plan.node_ns(node)])
            .arg(bin())
            .args(["matrix", "--config"])
            .arg(&config)
            .args(["--format", "json"])
            .args(extra)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&config);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "matrix on node{node}: {stderr}"
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = tailprobe(&["lab", "down", "--name", &self.name]);
    }
}

/// Every cell that opens connections (the name lookups to each node's
/// resolver, over UDP, take no SYN), with its source node and kind.
pub(crate) fn cells(r: &LabReport) -> Vec<(&str, SourceKind, &Cell)> {
    every_cell(r)
        .into_iter()
        .filter(|(_, _, c)| !c.url.starts_with("dns://"))
        .collect()
}

/// Every cell, the lookups included.
fn every_cell(r: &LabReport) -> Vec<(&str, SourceKind, &Cell)> {
    r.reports
        .iter()
        .flat_map(|rep| {
            rep.cells
                .iter()
                .map(move |c| (rep.source_node.as_str(), rep.source_kind, c))
        })
        .collect()
}

/// No lost SYN, no failure, a fast connect (responses may carry service
/// time); a name lookup, which connects nothing, answered fast.
fn fast(c: &Cell) -> bool {
    c.failures == 0
        && c.syn_retransmits == 0
        && c.connect_max_ms.or(c.max_ms).is_some_and(|m| m < 500.0)
}

#[test]
fn lab_commands_fail_clearly() {
    let (code, _, err) = tailprobe(&["lab", "status", "--name", "nosuchlab9"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no lab named \"nosuchlab9\" is up") || err.contains("needs root"),
        "{err}"
    );
    let (code, _, err) = tailprobe(&["lab", "up", "--name", "Bad-Name"]);
    assert_ne!(code, 0);
    assert!(err.contains("lowercase letters and digits"), "{err}");
}

/// `curl` inside one of the lab's namespaces, the body parsed.
fn curl_in(ns: &str, url: &str) -> Option<serde_json::Value> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf", "--max-time", "5", url])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).ok()
}
