//! A hub pulling every lab prober over the lab's network.

use super::*;

/// Probers in every node and vantage, a hub pulling them over the lab's
/// network, the checksum bug on every node: the hub's verdict names the bug
/// first with the other nodes' receive-side counters and the pod network's
/// clean paths as evidence; `cluster matrix` over the same probers agrees;
/// a prober killed shows as stale and the verdict says so.
#[test]
fn the_hub_judges_every_prober_as_one_cluster_as_root() {
    let lab = Lab::up(&["--syn-linear-timeouts", "0", "--txrehash", "0"]);
    for on in ["node1", "node2", "node3"] {
        lab.run(&["lab", "fault", "vxlan-csum-bug", "--on", on]);
    }
    // `lab run` starts the probers and the hub, then runs one matrix
    // (about 75 s), long enough for the probers' first 63 s rungs.
    let (code, _, err) = tailprobe(&[
        "lab",
        "run",
        "--name",
        &lab.name,
        "--samples",
        "3",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "a finding: {err}");
    assert!(err.contains("hub: http://"), "{err}");
    let n1 = format!("{}-n1", lab.name);
    let hub = |path: &str| curl_in(&n1, &format!("http://127.0.0.1:9798{path}"));
    let m = common::eventually_every(
        "the hub judged",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(2),
        || {
            let m = hub("/api/v1/matrix");
            let judged = m.as_ref().is_some_and(|m| {
                m["probers"]["up"] == 6
                    && m["findings"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|f| f["kind"] == "syn-retransmit-ladder"))
            });
            match m {
                Some(m) if judged => Ok(m),
                m => Err(format!("{m:#?}")),
            }
        },
    );
    let cells = m["cells"].as_array().unwrap();
    let sources: std::collections::BTreeSet<(String, String)> = cells
        .iter()
        .map(|c| (c["source_node"].to_string(), c["source_kind"].to_string()))
        .collect();
    assert_eq!(sources.len(), 6, "every node and vantage: {sources:?}");
    let f = m["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "syn-retransmit-ladder")
        .unwrap();
    assert_eq!(f["path"], "cross-node", "{f:#}");
    assert_eq!(f["source_kind"], "host", "{f:#}");
    let cause = &f["likely_causes"][0];
    assert_eq!(cause["id"], "vxlan-checksum-offload", "{f:#}");
    let present: Vec<&str> = cause["present"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        present
            .iter()
            .any(|p| p.starts_with("receiving nodes' UDP checksum errors")),
        "the other nodes' counters: {present:#?}"
    );
    assert!(
        present
            .iter()
            .any(|p| p.starts_with("host-network probes are hit, pod-network probes are clean")),
        "the pod probers' clean paths: {present:#?}"
    );
    assert!(
        m["facts"].as_array().unwrap().len() == 3,
        "one facts per node"
    );

    // The cluster matrix over the same probers' windows, from node1.
    let probers: Vec<String> = hub("/api/v1/probers")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(probers.len(), 6);
    let out = Command::new("ip")
        .args(["netns", "exec", &n1])
        .arg(bin())
        .args([
            "cluster",
            "matrix",
            "--from-window",
            "--format",
            "json",
            "--probers",
            &probers.join(","),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let one: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        one["findings"][0]["likely_causes"][0]["id"],
        "vxlan-checksum-offload"
    );
    let keys = |m: &serde_json::Value| -> std::collections::BTreeSet<String> {
        m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} {}",
                    c["source_node"], c["source_kind"], c["target"], c["destination_node"]
                )
            })
            .collect()
    };
    // The windows only grow between the two reads: every cell the hub
    // showed is there (svc/lab/all may have reached one more backend since).
    let (hub_cells, one_cells) = (keys(&m), keys(&one));
    assert!(
        hub_cells.is_subset(&one_cells),
        "the same matrix: {:?}",
        hub_cells.difference(&one_cells).collect::<Vec<_>>()
    );

    // node3's pod prober dies: stale, and the verdict says so.
    let p3 = format!("{}-p3", lab.name);
    let pids = Command::new("ip")
        .args(["netns", "pids", &p3])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    common::eventually_every(
        "the killed prober stale",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(1),
        || {
            let m = hub("/api/v1/matrix");
            if let Some(m) = &m
                && m["rests_on"]
                    .as_str()
                    .is_some_and(|r| r.contains("1 stale (last data kept: node3 pod)"))
            {
                return Ok(());
            }
            Err(format!("{m:#?}"))
        },
    );
}
