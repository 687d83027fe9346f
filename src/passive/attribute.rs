//! Whose connection it was and where it went (pure): the network namespace
//! names the vantage (the node's host network, one of its pods, or neither),
//! and the destination address names the target, from the targets of the
//! moment (static, per-node Services, opted-in Services).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::model::{SourceKind, Target};

/// Which network namespaces are this node's, and as what.
#[derive(Debug, Clone)]
pub struct Vantages {
    /// The host network's namespace (the prober's own, on the host network).
    pub host: u32,
    /// Pods' namespaces; `None`: every namespace but the host's.
    pub pods: Option<HashSet<u32>>,
}

impl Vantages {
    pub fn kind_of(&self, netns: u32) -> Option<SourceKind> {
        if netns == self.host {
            return Some(SourceKind::PassiveHost);
        }
        match &self.pods {
            None => Some(SourceKind::PassivePod),
            Some(set) => set.contains(&netns).then_some(SourceKind::PassivePod),
        }
    }
}

/// Destination address to target: the first target (in configuration, then
/// discovery order) with that address and port names it, so a Service
/// probed at several paths is one passive series.
#[derive(Debug, Default)]
pub struct Attribution {
    by_addr: HashMap<SocketAddr, Arc<Target>>,
}

impl Attribution {
    pub fn new(targets: &[Arc<Target>]) -> Self {
        let mut by_addr = HashMap::new();
        for t in targets {
            if let Some(ip) = t.ip {
                by_addr
                    .entry(SocketAddr::new(ip, t.port))
                    .or_insert_with(|| Arc::clone(t));
            }
        }
        Self { by_addr }
    }

    pub fn target(&self, addr: &SocketAddr) -> Option<&Arc<Target>> {
        self.by_addr.get(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, url: &str) -> Arc<Target> {
        Arc::new(
            crate::config::parse(
                "t.toml",
                &format!("[[target]]\nname = \"{name}\"\nurl = \"{url}\"\n"),
            )
            .expect("a target parses")
            .targets[0]
                .as_ref()
                .clone(),
        )
    }

    #[test]
    fn the_first_target_at_an_address_names_it() {
        let a = Attribution::new(&[
            target("svc-node2", "http://10.96.0.12:8080/"),
            target("svc-node2-64k", "http://10.96.0.12:8080/bytes/65536"),
            target("by-name", "http://example.invalid:8080/"),
        ]);
        let hit = a.target(&"10.96.0.12:8080".parse().unwrap()).unwrap();
        assert_eq!(hit.name, "svc-node2");
        assert!(a.target(&"10.96.0.12:80".parse().unwrap()).is_none());
        assert_eq!(a.by_addr.len(), 1, "a name has no address to match");
    }

    #[test]
    fn namespaces_name_the_vantage() {
        let all = Vantages {
            host: 1,
            pods: None,
        };
        assert_eq!(all.kind_of(1), Some(SourceKind::PassiveHost));
        assert_eq!(all.kind_of(9), Some(SourceKind::PassivePod));
        let listed = Vantages {
            host: 1,
            pods: Some([5].into()),
        };
        assert_eq!(listed.kind_of(5), Some(SourceKind::PassivePod));
        assert_eq!(listed.kind_of(9), None, "another node's namespace");
    }
}
