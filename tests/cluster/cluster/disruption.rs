//! The probers through a control plane that goes away: an API server
//! restart and an etcd pause.

use super::*;

/// The API server stops and comes back, etcd hangs and resumes: the probers'
/// watches say so (`tailprobe_kubernetes_watch_up`), probing goes on with the
/// last targets, and they follow the cluster again once it is back.
#[test]
fn probers_outlive_an_api_server_restart_and_an_etcd_pause_as_root() {
    let c = Cluster::get();
    c.deployed();
    let _g = c.disrupt();
    let host1 = "http://10.10.72.10:9797";
    let up = || {
        c.metric(
            1,
            host1,
            "tailprobe_kubernetes_watch_up",
            &["resource=\"services/tailprobe\""],
        )
    };
    let ok_probes = || {
        c.metric(
            1,
            host1,
            "tailprobe_probes_total",
            &["target=\"node/node2\"", "outcome=\"ok\""],
        )
    };
    eventually("the watch is up", Duration::from_secs(30), || {
        if up() == 1.0 {
            Ok(())
        } else {
            Err(format!("{}", up()))
        }
    });
    let apiserver = Proc::load(&c.plan.prefix, tailprobe::lab::kube::APISERVER).unwrap();
    apiserver.stop();
    eventually("the outage shows", Duration::from_secs(60), || {
        let errors = c.metric(
            1,
            host1,
            "tailprobe_kubernetes_watch_errors_total",
            &["resource=\"services/tailprobe\""],
        );
        if up() == 0.0 && errors > 0.0 {
            Ok(())
        } else {
            Err(format!("up {}, errors {errors}", up()))
        }
    });
    // Probing goes on through kube-proxy's rules, which outlive the API.
    let before = ok_probes();
    std::thread::sleep(Duration::from_secs(12));
    assert!(ok_probes() > before, "probing stopped with the API server");
    assert!(targets(c, host1).contains("node/node2"));
    apiserver.start(&c.plan.prefix).unwrap();
    eventually("the watches resume", Duration::from_secs(90), || {
        if up() == 1.0 {
            Ok(())
        } else {
            Err(format!("up {}", up()))
        }
    });

    // etcd hangs: the API server cannot answer, the probers keep probing;
    // once it resumes, a change made then reaches them.
    let etcd = Proc::load(&c.plan.prefix, tailprobe::lab::kube::ETCD).unwrap();
    etcd.pause(true);
    let before = ok_probes();
    std::thread::sleep(Duration::from_secs(12));
    let during = ok_probes();
    etcd.pause(false);
    assert!(during > before, "probing stopped while etcd hung");
    c.kubectl_ok(&["delete", "service", "-n", NS, "tailprobe-node-node3"]);
    eventually(
        "a change after the pause reaches the prober",
        Duration::from_secs(60),
        || match c.get_json("service", NS, "tailprobe-node-node3") {
            // Re-applied by node3's probers, who saw the delete.
            Some(_) if targets(c, host1).contains("node/node3") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}
