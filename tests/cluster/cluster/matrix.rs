//! `cluster matrix` through the API server's pod proxy.

use super::*;

/// `tailprobe cluster matrix` from an operator's laptop: the prober pods
/// listed, each reached through the real API server's pod proxy, with
/// exactly the rights deploy/hub/operator-rbac.yaml grants.
#[test]
fn cluster_matrix_reaches_every_prober_through_the_pod_proxy_as_root() {
    let c = Cluster::get();
    let _g = c.share();
    c.deployed();
    c.kubectl_ok(&[
        "apply",
        "-n",
        NS,
        "-f",
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/hub/operator-rbac.yaml"),
    ]);
    c.kubectl_ok(&["create", "serviceaccount", "-n", NS, "operator"]);
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "-n",
        NS,
        "operator",
        "--role=tailprobe-operator",
        &format!("--serviceaccount={NS}:operator"),
    ]);
    let token = c.kubectl_ok(&["create", "token", "-n", NS, "operator"]);
    let ca =
        std::fs::read_to_string(tailprobe::lab::kube::state(&c.plan.prefix).join("pki/ca.crt"))
            .unwrap();
    let kubeconfig = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-operator.kubeconfig", c.plan.prefix));
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": format!("https://{}:6443", c.plan.api_ip()), "certificate-authority-data": b64(&ca)}}],
        "users": [{"name": "operator", "user": {"token": token.trim()}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "operator"}}],
        "current-context": "lab",
    });
    std::fs::write(&kubeconfig, doc.to_string()).unwrap();
    let cluster = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &c.plan.control_ns()])
            .arg(common::bin())
            .args(["cluster", "matrix", "--namespace", NS, "--format", "json"])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let sources = |m: &Value| -> BTreeSet<(String, String)> {
        m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["source_node"].as_str().unwrap().to_string(),
                    c["source_kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // A fresh round probes what each prober knows: wait until they all
    // know every node.
    let ps = eventually("six prober pods", Duration::from_secs(60), || {
        let ps = probers(c, NS);
        if ps.len() == 6 {
            Ok(ps)
        } else {
            Err(format!("{ps:?}"))
        }
    });
    every_prober_knows_every_node(c, &ps);
    let fresh = cluster(&["--samples", "2"]);
    assert_eq!(sources(&fresh).len(), 6, "{:?}", sources(&fresh));
    assert!(
        fresh["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["samples"] == 2),
        "{fresh:#}"
    );
    // The windows fill at the probers' own pace (every 10 s).
    eventually("every prober's window", Duration::from_secs(60), || {
        let window = cluster(&["--from-window"]);
        let got = sources(&window);
        if got.len() == 6 {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(
        used_by(c, &format!("system:serviceaccount:{NS}:operator"), NS),
        role_grants("deploy/hub/operator-rbac.yaml"),
        "deploy/hub/operator-rbac.yaml grants exactly what cluster matrix uses"
    );
}
