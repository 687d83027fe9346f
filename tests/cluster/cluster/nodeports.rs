//! The NodePort path: each node's Service reached through every node's own
//! address on the node port the real API server allocated.

use super::*;

/// `node_ports = true`: the per-node Services become type NodePort and each
/// prober also reaches every node through its own node's address on the
/// node port the real API server allocated, which the real kube-proxy
/// DNATs (and masquerades when the backend is on another node).
#[test]
fn node_ports_reach_every_node_through_this_nodes_own_address_as_root() {
    let c = Cluster::get();
    let _g = c.share();
    let ns = "tnport";
    pod_probers(
        c,
        ns,
        "[probe]\ninterval = \"1s\"\njitter = \"0s\"\ntimeout = \"10s\"\n\
         [server]\nlisten = \"0.0.0.0:9797\"\n\
         [kubernetes]\necho_listen = \"0.0.0.0:9798\"\nnode_service_port = 80\nreapply = \"1s\"\n\
         round = \"3s\"\npod_ip_targets = false\nnode_ports = true\n",
    );
    for node in NODES {
        eventually(
            "a NodePort Service per node",
            Duration::from_secs(60),
            || match c.get_json("service", ns, &format!("tailprobe-node-{node}")) {
                Some(svc) if svc["spec"]["type"] == "NodePort" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    let ps = probers(c, ns);
    assert_eq!(ps.len(), 3, "{ps:?}");
    for ((me, _), (_, _, base)) in &ps {
        for dest in NODES {
            let path = if dest == me {
                "same-node"
            } else {
                "cross-node"
            };
            let needles = [
                format!("target=\"nodeport/{dest}\""),
                format!("destination_node=\"{dest}\""),
                format!("path=\"{path}\""),
                "outcome=\"ok\"".to_string(),
            ];
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            eventually(
                "a probe through the NodePort",
                Duration::from_secs(60),
                || {
                    if c.metric(1, base, "tailprobe_probes_total", &needles) > 0.0 {
                        Ok(())
                    } else {
                        Err(format!("{me}: {needles:?}"))
                    }
                },
            );
        }
    }
    c.kubectl_ok(&["delete", "namespace", ns, "--wait=true", "--timeout=90s"]);
}
