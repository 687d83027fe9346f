//! Object names derived from node names. A node name is a DNS subdomain of up
//! to 253 characters and may hold dots; a Service name is a DNS-1035 label of
//! at most 63. Names that fit unchanged are used as they are; any other name
//! is cut and suffixed with a hash of the whole node name, so two nodes never
//! share a Service. The node's full name always travels in the
//! `tailprobe.io/node` annotation.

/// Every per-node Service name starts with this.
pub const NODE_SERVICE_PREFIX: &str = "tailprobe-node-";

const MAX_SERVICE_NAME: usize = 63;
const HASH_LEN: usize = 10;

/// The per-node Service of `node`: `tailprobe-node-<node>`, or, when the node
/// name does not fit a Service name as it is, a cut name with a hash suffix.
pub fn node_service(node: &str) -> String {
    let plain = format!("{NODE_SERVICE_PREFIX}{node}");
    let clean: String = node
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if clean == node && plain.len() <= MAX_SERVICE_NAME && !node.ends_with('-') {
        return plain;
    }
    let hash = format!("{:016x}", fnv1a(node.as_bytes()));
    let room = MAX_SERVICE_NAME - NODE_SERVICE_PREFIX.len() - 1 - HASH_LEN;
    let head: String = clean.chars().take(room).collect();
    let head = head.trim_end_matches('-');
    format!("{NODE_SERVICE_PREFIX}{head}-{}", &hash[..HASH_LEN])
}

/// The EndpointSlice one prober pod writes for its node's Service: one per
/// source kind, so the host-network and pod-network probers of a node never
/// overwrite each other.
pub fn node_slice(node: &str, kind: crate::model::SourceKind) -> String {
    format!("{}-{}", node_service(node), kind.as_str())
}

/// Probe Service `k` of the pool (clusters past
/// `[kubernetes] node_services_max_nodes`).
pub fn pool_service(k: usize) -> String {
    format!("tailprobe-pool-{k}")
}

/// The EndpointSlice a prober writes for pool slot `k` in its turn.
pub fn pool_slice(k: usize, kind: crate::model::SourceKind) -> String {
    format!("{}-{}", pool_service(k), kind.as_str())
}

/// FNV-1a, 64 bits: stable across versions and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether `s` is a DNS-1035 label, as Kubernetes requires of Service names.
pub fn is_dns1035_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SERVICE_NAME
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceKind;

    #[test]
    fn short_names_stay_readable() {
        assert_eq!(node_service("node-1"), "tailprobe-node-node-1");
        assert_eq!(
            node_slice("node-1", SourceKind::Pod),
            "tailprobe-node-node-1-pod"
        );
    }

    #[test]
    fn long_and_dotted_names_get_a_stable_hash_suffix() {
        let long = format!("ip-10-0-0-1.{}.compute.internal", "x".repeat(80));
        let dotted = "ip-10-0-0-1.ec2.internal";
        let lookalike = "ip-10-0-0-1-ec2-internal";
        for node in [long.as_str(), dotted, lookalike, "Node-A", "trailing-"] {
            let name = node_service(node);
            assert!(is_dns1035_label(&name), "{node} -> {name}");
            assert_eq!(name, node_service(node), "stable");
        }
        assert_ne!(node_service(dotted), node_service(lookalike));
        assert_eq!(
            node_service(lookalike),
            "tailprobe-node-ip-10-0-0-1-ec2-internal"
        );
        assert_ne!(
            node_service(&format!("{}a", "n".repeat(70))),
            node_service(&format!("{}b", "n".repeat(70)))
        );
        assert!(!is_dns1035_label("1abc") && !is_dns1035_label("a.b") && !is_dns1035_label(""));
    }
}
