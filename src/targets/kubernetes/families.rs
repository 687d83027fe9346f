//! Dual-stack Services: a Service with a ClusterIP per family is probed
//! once per family. The primary family's target keeps the Service's name;
//! each other family's is that name with `/ipv4` or `/ipv6` after it, so
//! every target name stays unique and keeps its prefix (`svc/`, which
//! `Via::of` reads), and the series differ by their `family` dimension.

use super::plan::ServiceInfo;
use crate::model::{Family, Target};

/// The Service as each of its families sees it: itself first, then a copy
/// whose ClusterIP is the other family's, with that family. A Service's
/// `clusterIPs` list its primary first; the same family twice, or an
/// address that does not parse, adds nothing.
pub fn per_family(svc: &ServiceInfo) -> Vec<(ServiceInfo, Option<Family>)> {
    let family = |ip: &str| ip.parse().ok().map(Family::of);
    let primary = svc.cluster_ip.as_deref().and_then(family);
    let mut out = vec![(svc.clone(), None)];
    for ip in &svc.cluster_ips {
        let f = family(ip);
        if f.is_some() && f != primary && out.iter().all(|(_, g)| *g != f) {
            let mut twin = svc.clone();
            twin.cluster_ip = Some(ip.clone());
            out.push((twin, f));
        }
    }
    out
}

/// The targets of an opted-in Service once `trust` (whether it may be
/// probed at all) is judged: one per family, each built by `build`, the
/// secondary families' named for them.
pub fn targets(
    svc: &ServiceInfo,
    trust: Result<(), String>,
    build: impl Fn(&ServiceInfo) -> Result<Target, String>,
) -> Vec<Result<Target, String>> {
    if let Err(why) = trust {
        return vec![Err(why)];
    }
    per_family(svc)
        .into_iter()
        .map(|(s, family)| {
            build(&s).map(|mut t| {
                if let Some(f) = family {
                    t.name = format!("{}/{}", t.name, f.as_str());
                }
                t
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KubernetesConfig, ProbeConfig};
    use crate::targets::kubernetes::plan::{Me, Snapshot, labels, plan};

    fn dual(ips: &[&str]) -> ServiceInfo {
        ServiceInfo {
            namespace: "shop".into(),
            name: "cart".into(),
            labels: [(labels::PROBE.to_string(), "true".to_string())].into(),
            cluster_ip: ips.first().map(|s| s.to_string()),
            cluster_ips: ips.iter().map(|s| s.to_string()).collect(),
            ports: vec![("http".into(), 80)],
            has_selector: true,
            ..ServiceInfo::default()
        }
    }

    #[test]
    fn a_dual_stack_service_is_one_target_per_family() {
        let v = per_family(&dual(&["10.96.3.4", "fd00:96::3:4"]));
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0.cluster_ip.as_deref(), Some("fd00:96::3:4"));
        assert_eq!(v[1].1, Some(Family::Ipv6));
        // IPv6 primary: the IPv4 twin is the one named for its family.
        let v = per_family(&dual(&["fd00:96::3:4", "10.96.3.4"]));
        assert_eq!(v[1].1, Some(Family::Ipv4));
        // One family only, listed twice or not at all: one target.
        assert_eq!(per_family(&dual(&["10.96.3.4", "10.96.3.5"])).len(), 1);
        assert_eq!(per_family(&dual(&["10.96.3.4"])).len(), 1);
        assert_eq!(per_family(&dual(&["10.96.3.4", "not-an-ip"])).len(), 1);
    }

    #[test]
    fn discovery_probes_each_clusterip_with_its_family() {
        let mut snap = Snapshot::default();
        snap.services.push(dual(&["10.96.3.4", "fd00:96::3:4"]));
        snap.nodes = vec!["node1".into()];
        let me = Me {
            node: "node1",
            namespace: "shop",
            echo_port: 8080,
            api_server: None,
            host_ip: None,
        };
        let p = plan(
            &snap,
            &me,
            &KubernetesConfig::default(),
            &ProbeConfig::default(),
            0,
        );
        let got: Vec<(&str, &str, Option<Family>)> = p
            .targets
            .iter()
            .map(|t| (t.name.as_str(), t.url.as_str(), t.family))
            .collect();
        assert_eq!(
            got,
            [
                ("svc/shop/cart", "http://10.96.3.4:80/", Some(Family::Ipv4)),
                (
                    "svc/shop/cart/ipv6",
                    "http://[fd00:96::3:4]:80/",
                    Some(Family::Ipv6)
                ),
            ],
            "{:?}",
            p.rejected
        );
        for t in &p.targets {
            assert_eq!(crate::model::Via::of(&t.name), crate::model::Via::Service);
        }
    }
}
