//! Passive mode on the checksum bug: the kernel's own tracepoints, no
//! probe sent.

use super::*;

/// Whether passive mode can run here; the reason printed when it cannot.
/// The test command sets `TAILPROBE_REQUIRE_PASSIVE`, having installed
/// clang: there a missing BPF build is a failure, not a skip.
fn passive_available() -> bool {
    match tailprobe::passive::bpf::unavailable() {
        None => true,
        Some(why) if std::env::var_os("TAILPROBE_REQUIRE_PASSIVE").is_some() => {
            panic!("passive mode is required here but unavailable: {why}")
        }
        Some(why) => {
            eprintln!("SKIPPED: passive mode is unavailable on this machine: {why}");
            false
        }
    }
}

/// Passive mode on the checksum bug, no probe sent: plain curls from node1's
/// host network to the other nodes' Services wait 63 s, and the prober
/// reading the node's own connections says so (in progress within seconds,
/// then on the 63 s rung with the checksum cause first), while curls from
/// node1's pod and to node1's own Service stay clean. The hub shows the
/// passive vantage beside the others.
#[test]
fn real_curls_on_the_checksum_bug_give_a_passive_verdict_as_root() {
    common::require_root("the lab tests");
    if !passive_available() {
        return;
    }
    let lab = Lab::up(&["--syn-linear-timeouts", "0", "--txrehash", "0"]);
    for on in ["node1", "node2", "node3"] {
        lab.run(&["lab", "fault", "vxlan-csum-bug", "--on", on]);
    }
    let (code, _, err) = tailprobe(&["lab", "run", "--passive", "--name", &lab.name]);
    assert_eq!(code, 0, "{err}");
    let plan = tailprobe::lab::Plan::new(&lab.name, 3).unwrap();
    let prober = |path: &str| curl_in(&plan.node_ns(1), &format!("http://127.0.0.1:9797{path}"));
    // Every prober's program is attached before any curl: a connect that
    // began before it is not seen.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for i in 1..=3 {
        common::eventually_every(
            &format!("node{i}'s prober reading the kernel ({err})"),
            deadline.saturating_duration_since(std::time::Instant::now()),
            std::time::Duration::from_millis(200),
            || {
                let out = Command::new("ip")
                    .args(["netns", "exec", &plan.node_ns(i), "curl", "-sf", "-m", "5"])
                    .arg("http://127.0.0.1:9797/metrics")
                    .output()
                    .unwrap();
                let metrics = String::from_utf8_lossy(&out.stdout);
                if metrics.contains("\ntailprobe_passive_up 1\n") {
                    Ok(())
                } else {
                    Err(metrics.into_owned())
                }
            },
        );
    }
    let started = std::time::Instant::now();
    let mut curls = Vec::new();
    let mut curl = |ns: String, vip: std::net::Ipv4Addr| {
        curls.push(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-m",
                    "90",
                ])
                .args(["-w", "%{time_connect}"])
                .arg(format!("http://{vip}:{}/", tailprobe::lab::plan::POD_PORT))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    for _ in 0..3 {
        curl(plan.node_ns(1), plan.node_vip(2));
        curl(plan.node_ns(1), plan.node_vip(3));
        curl(plan.node_ns(1), plan.node_vip(1));
        curl(plan.pod_ns(1), plan.node_vip(2));
    }
    let ladder = |m: &serde_json::Value| -> Option<serde_json::Value> {
        m["findings"]
            .as_array()?
            .iter()
            .find(|f| f["kind"] == "syn-retransmit-ladder" && f["scope_key"]["passive"] == true)
            .cloned()
    };
    // In progress while the curls still wait in SYN_SENT.
    let provisional = loop {
        if let Some(f) = prober("/api/v1/findings").as_ref().and_then(ladder) {
            break (f, started.elapsed());
        }
        assert!(
            started.elapsed().as_secs() < 55,
            "no passive finding while the curls waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(provisional.0["provisional"], true, "{:#}", provisional.0);
    eprintln!("passive finding in progress after {:?}", provisional.1);
    let times: Vec<f64> = curls
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        })
        .collect();
    // 6 cross-node curls waited for the 63 s rung; the other 6 did not.
    assert_eq!(times.iter().filter(|t| **t > 60.0).count(), 6, "{times:?}");
    let f = loop {
        let f = prober("/api/v1/findings").as_ref().and_then(ladder);
        if let Some(f) = f.filter(|f| f["provisional"] == false) {
            break f;
        }
        assert!(
            started.elapsed().as_secs() < 100,
            "the passive finding never became final"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(f["source_kind"], "passive-host", "{f:#}");
    assert_eq!(f["path"], "cross-node", "{f:#}");
    assert_eq!(f["rungs"][0]["seconds"], 63.0, "{f:#}");
    assert_eq!(f["rungs"][0]["count"], 6, "{f:#}");
    assert_eq!(
        f["likely_causes"][0]["id"], "vxlan-checksum-offload",
        "{f:#}"
    );
    let evidence = f["evidence"].to_string();
    assert!(
        evidence.contains("real connections of this node's processes"),
        "{evidence}"
    );
    // Node1's prober saw its pod's curls and its own Service's: clean.
    let m = prober("/api/v1/matrix").unwrap();
    let cells = m["cells"].as_array().unwrap();
    let clean = |kind: &str, dst: &str| {
        cells.iter().any(|c| {
            c["source_kind"] == kind
                && c["destination_node"] == dst
                && c["samples"] == 3
                && c["syn_retransmits"] == 0
        })
    };
    assert!(clean("passive-pod", "node2"), "the pod's curls: {cells:#?}");
    assert!(
        clean("passive-host", "node1"),
        "the same-node curls: {cells:#?}"
    );
    assert!(
        !cells
            .iter()
            .any(|c| c["source_kind"] == "host" || c["source_kind"] == "pod"),
        "no probe was sent: {cells:#?}"
    );
    // The hub pulls the passive series as their own vantage.
    common::eventually_every(
        "the hub's final verdict",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(1),
        || {
            let hub = curl_in(&plan.node_ns(1), "http://127.0.0.1:9798/api/v1/matrix");
            if hub
                .as_ref()
                .and_then(ladder)
                .is_some_and(|f| f["provisional"] == false)
            {
                Ok(())
            } else {
                Err(format!("{hub:#?}"))
            }
        },
    );
}
