//! The planner's paths beside the mesh: the API server's own probe and the
//! NodePort targets.

use super::tests::{ME, cluster};
use super::*;

#[test]
fn node_ports_are_probed_from_this_nodes_address_only_when_asked() {
    let mut snap = cluster(&["a", "b"]);
    for (i, s) in snap.services.iter_mut().enumerate() {
        s.node_port = Some(30_080 + i as u16);
    }
    let me = Me {
        host_ip: Some("192.0.2.7"),
        ..ME
    };
    let probe = ProbeConfig::default();
    let names_of = |p: &Plan| -> Vec<(String, String, TargetNode)> {
        p.targets
            .iter()
            .filter(|t| t.name.starts_with("nodeport/"))
            .map(|t| (t.name.clone(), t.url.clone(), t.node.clone()))
            .collect()
    };
    let off = plan(&snap, &me, &KubernetesConfig::default(), &probe, 0);
    assert!(names_of(&off).is_empty(), "opt-in only");
    let cfg = KubernetesConfig {
        node_ports: true,
        ..KubernetesConfig::default()
    };
    let on = plan(&snap, &me, &cfg, &probe, 0);
    let got = names_of(&on);
    assert_eq!(got.len(), 2, "{got:?}");
    for (name, url, node) in &got {
        let dest = name.trim_start_matches("nodeport/");
        assert!(url.starts_with("http://192.0.2.7:300"), "{url}");
        assert_eq!(*node, TargetNode::Known(dest.to_string()));
    }
    assert_eq!(
        crate::model::Via::of(&got[0].0),
        crate::model::Via::NodePort
    );
    // Without the node's own address there is no NodePort to aim at.
    let blind = plan(&snap, &ME, &cfg, &probe, 0);
    assert!(names_of(&blind).is_empty());
}

#[test]
fn the_api_server_is_probed_unless_its_path_is_empty() {
    let snap = cluster(&["a", "b"]);
    let api = crate::targets::kubernetes::apiserver::ApiServer {
        host: "10.96.0.1".into(),
        port: 443,
        ca_file: "/sa/ca.crt".into(),
        token_file: "/sa/token".into(),
    };
    let me = Me {
        api_server: Some(&api),
        ..ME
    };
    let probe = ProbeConfig::default();
    let p = plan(&snap, &me, &KubernetesConfig::default(), &probe, 0);
    let t = p
        .targets
        .iter()
        .find(|t| t.name == API_SERVER_TARGET)
        .expect("the API server's target");
    assert_eq!(t.url, "https://10.96.0.1:443/readyz");
    // Past max_targets it is kept with the mesh, before opted-in Services.
    let tight = KubernetesConfig {
        max_targets: 1,
        ..KubernetesConfig::default()
    };
    let p = plan(&snap, &me, &tight, &probe, 0);
    assert!(
        p.targets
            .iter()
            .all(|t| !t.name.starts_with("svc/") || t.name == API_SERVER_TARGET)
    );
    let off = KubernetesConfig {
        api_server_path: String::new(),
        ..KubernetesConfig::default()
    };
    let p = plan(&snap, &me, &off, &probe, 0);
    assert!(p.targets.iter().all(|t| t.name != API_SERVER_TARGET));
}
