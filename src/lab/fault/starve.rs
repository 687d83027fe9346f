//! A prober starved of CPU: node i's prober daemons moved into a cgroup of
//! their own with a CPU quota, as a node's limit would hold them. cgroup v2
//! where its cpu controller is on, else v1's cpu controller. The group is
//! named with the lab's prefix, so `clear` and `down` find it.

use std::path::{Path, PathBuf};

use super::pids_running;
use crate::lab::{LabError, Plan, sh};

/// The CPU period the quota is a share of (the kernel's default).
const PERIOD_US: u64 = 100_000;

/// Where cgroups with a cpu controller are made on this host, and whether
/// it is v2.
fn cpu_root() -> Result<(PathBuf, bool), LabError> {
    let v2 = Path::new("/sys/fs/cgroup");
    if std::fs::read_to_string(v2.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"))
    {
        return Ok((v2.to_path_buf(), true));
    }
    for v1 in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
        if Path::new(v1).join("cpu.cfs_quota_us").exists() {
            return Ok((PathBuf::from(v1), false));
        }
    }
    Err(LabError::Kernel {
        what: "no cgroup cpu controller is mounted (neither v2 with cpu nor v1's cpu); starve-prober needs one".into(),
    })
}

fn group(root: &Path, plan: &Plan, i: usize) -> PathBuf {
    root.join(format!("tailprobe-lab-{}-node{i}", plan.prefix))
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::Kernel {
        what: format!("cannot write \"{text}\" to {} ({e})", path.display()),
    })
}

/// Node `on`'s prober processes: the daemons `lab run` starts in its
/// namespace and its pod's, or the pods a Kubernetes lab's agent runs.
fn probers(plan: &Plan, on: usize) -> Result<Vec<String>, LabError> {
    let mut namespaces = vec![plan.node_ns(on)];
    if plan.kubernetes {
        let prefix = format!("{}-k{on}-", plan.prefix);
        namespaces.extend(
            sh::namespaces()?
                .into_iter()
                .filter(|ns| ns.starts_with(&prefix)),
        );
    } else {
        namespaces.push(plan.pod_ns(on));
    }
    Ok(namespaces
        .iter()
        .flat_map(|ns| pids_running(ns, &["run"]).collect::<Vec<_>>())
        .collect())
}

/// Holds node `on`'s probers to `percent` % of one CPU.
pub fn inject(plan: &Plan, on: usize, percent: u32) -> Result<(), LabError> {
    if !(1..=100).contains(&percent) {
        return Err(LabError::Usage(
            "--cpu must be 1 to 100 (% of one CPU)".into(),
        ));
    }
    let pids = probers(plan, on)?;
    if pids.is_empty() {
        return Err(LabError::Usage(format!(
            "no prober runs on {}: starve-prober holds prober daemons, started by `tailprobe lab run` (a lab matrix probes from this process)",
            plan.node_name(on)
        )));
    }
    let (root, v2) = cpu_root()?;
    let g = group(&root, plan, on);
    std::fs::create_dir_all(&g).map_err(|e| LabError::Kernel {
        what: format!("cannot create the cgroup {} ({e})", g.display()),
    })?;
    let quota = PERIOD_US * u64::from(percent) / 100;
    if v2 {
        write(&g.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
    } else {
        write(&g.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
        write(&g.join("cpu.cfs_quota_us"), &quota.to_string())?;
    }
    for pid in pids {
        write(&g.join("cgroup.procs"), &pid)?;
    }
    Ok(())
}

/// Moves every held prober of the lab named `lab` back to the root group
/// and removes the lab's groups; how many it removed.
pub fn clear(lab: &str) -> Result<usize, LabError> {
    let Ok((root, _)) = cpu_root() else {
        return Ok(0);
    };
    let mut removed = 0;
    let prefix = format!("tailprobe-lab-{lab}-node");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let g = e.path();
        let procs = std::fs::read_to_string(g.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            // A process that ended in between is gone from the list anyway.
            let _ = std::fs::write(root.join("cgroup.procs"), pid);
        }
        std::fs::remove_dir(&g).map_err(|err| LabError::Kernel {
            what: format!("cannot remove the cgroup {} ({err})", g.display()),
        })?;
        removed += 1;
    }
    Ok(removed)
}
