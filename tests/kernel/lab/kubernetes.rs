//! The lab with the real control plane: the demo through the deployed hub,
//! kube-proxy's iptables mode, a control plane that cannot start.

use super::*;

/// The demo as `./scripts/demo` runs it: the real control plane and
/// kube-proxy, deploy/ applied, the checksum bug on top of kube-proxy's
/// rules, and the deployed hub's verdict names the bug first, on the host
/// network's cross-node paths, from every prober. Nothing is left after.
#[test]
fn the_demo_on_the_real_control_plane_names_the_checksum_bug_through_the_hub_as_root() {
    let _turn = crate::shared();
    common::require_root("the lab tests");
    let name = format!("tk{}", std::process::id() % 100_000);
    let out = Command::new(bin())
        .args([
            "lab",
            "demo",
            "--kubernetes",
            "--name",
            &name,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let _ = tailprobe(&["lab", "down", "--name", &name]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let m: tailprobe::wire::report::ClusterMatrix = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(m.probers.get("up"), Some(&6), "{}", m.rests_on);
    let first = m.findings.first().expect("a finding");
    assert_eq!(
        first.kind,
        FindingKind::SynRetransmitLadder,
        "{:#?}",
        m.findings
    );
    assert_eq!(
        first.likely_causes[0].id,
        CauseId::VxlanChecksumOffload,
        "{:#?}",
        first.likely_causes
    );
    for f in &m.findings {
        if f.kind != FindingKind::SynRetransmitLadder {
            // A probe refused by a backend the Service named before it
            // listened (the agent's pods start as they are scheduled): a
            // stray failure, never a ladder elsewhere.
            assert_eq!(f.kind, FindingKind::ProbeFailures, "{f:#?}");
            assert!(
                f.share <= 0.1 && f.evidence.iter().any(|e| e.contains("refused")),
                "{f:#?}"
            );
            continue;
        }
        assert_eq!(f.source_kind, Some(SourceKind::Host), "{f:#?}");
        assert_eq!(f.path, Some(PathKind::CrossNode), "{f:#?}");
    }
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&format!("{name}-")),
        "the demo removed its lab"
    );
}

/// kube-proxy in iptables mode programs the API server's own Service in
/// every node; the lab's other mode, chosen by a flag.
#[test]
fn a_kubernetes_lab_runs_kube_proxy_in_iptables_mode_as_root() {
    common::require_root("the lab tests");
    let lab = Lab::up(&["--kubernetes", "--proxy-mode", "iptables"]);
    for n in 1..=3 {
        let ns = format!("{}-n{n}", lab.name);
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args([
                "curl",
                "-sk",
                "--max-time",
                "5",
                "https://10.96.0.1/version",
            ])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.contains("\"gitVersion\""), "node{n}: {body}");
        let rules = Command::new("ip")
            .args(["netns", "exec", &ns, "iptables-save", "-t", "nat"])
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(
            rules.contains("KUBE-SERVICES") && rules.contains("10.96.0.1/32"),
            "{rules}"
        );
    }
}

/// A control plane that cannot start is one line saying which part and
/// why, and leaves nothing: here an etcd that exits at once, as one whose
/// port is taken does.
#[test]
fn a_control_plane_that_cannot_start_says_why_and_leaves_nothing_as_root() {
    let _turn = crate::shared();
    common::require_root("the lab tests");
    let real = tailprobe::lab::kube::Bins::find(None).unwrap();
    let dir = common::TempDir::new("broken-etcd");
    let k8s = dir
        .0
        .join("kubernetes")
        .join(tailprobe::lab::kube::bins::kubernetes_version());
    let etcd = dir
        .0
        .join("etcd")
        .join(tailprobe::lab::kube::bins::etcd_version());
    std::fs::create_dir_all(&k8s).unwrap();
    std::fs::create_dir_all(&etcd).unwrap();
    for p in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "kubectl",
    ] {
        std::os::unix::fs::symlink(real.kubernetes.join(p), k8s.join(p)).unwrap();
    }
    let script = etcd.join("etcd");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'listen tcp 127.0.0.1:2379: bind: address already in use' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = format!("tb{}", std::process::id() % 100_000);
    let (code, out, err) = tailprobe(&[
        "lab",
        "up",
        "--kubernetes",
        "--name",
        &name,
        "--kube-bin",
        dir.0.to_str().unwrap(),
    ]);
    let _ = tailprobe(&["lab", "down", "--name", &name]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("etcd stopped while starting")
            && err.contains("address already in use")
            && err.lines().count() == 1,
        "{err}"
    );
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&format!("{name}-")),
        "nothing is left"
    );
    // A control plane that was never built: said before anything is made.
    let (code, _, err) = tailprobe(&[
        "lab",
        "up",
        "--kubernetes",
        "--name",
        &name,
        "--kube-bin",
        "/nonexistent",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("run scripts/control-plane"), "{err}");
}
