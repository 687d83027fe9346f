//! The values a container's environment and arguments take from its pod:
//! the downward API's fields and `$(VAR)` references.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// `$(VAR)` in a command or argument replaced by the container's variable,
/// as a kubelet expands them: `$$` is a literal `$`, and a reference to an
/// undefined variable stays as written.
pub fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The values the downward API gives this pod, by field path.
pub fn field(pod: &Pod, path: &str) -> Option<String> {
    let status = pod.status.as_ref();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        map.as_ref()?.get(key).cloned()
    };
    Some(match path {
        "metadata.name" => meta.name.clone()?,
        "metadata.namespace" => meta.namespace.clone()?,
        "metadata.uid" => meta.uid.clone()?,
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?.service_account_name.clone()?,
        "status.podIP" => status?.pod_ip.clone()?,
        "status.hostIP" => status?.host_ip.clone()?,
        "status.podIPs" => status?
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.clone())
            .collect::<Vec<_>>()
            .join(","),
        "status.hostIPs" => status?
            .host_ips
            .iter()
            .flatten()
            .map(|p| p.ip.clone())
            .collect::<Vec<_>>()
            .join(","),
        p if p.starts_with("metadata.labels") => keyed(&meta.labels, &p[15..])?,
        p if p.starts_with("metadata.annotations") => keyed(&meta.annotations, &p[20..])?,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn arguments_expand_the_containers_variables_as_a_kubelet_does() {
        let env = vec![
            ("NODE_NAME".to_string(), "node2".to_string()),
            ("POD".to_string(), "web-1".to_string()),
        ];
        assert_eq!(expand("--node=$(NODE_NAME)", &env), "--node=node2");
        assert_eq!(expand("$(POD)/$(NODE_NAME)", &env), "web-1/node2");
        assert_eq!(expand("$$(NODE_NAME)", &env), "$(NODE_NAME)");
        assert_eq!(expand("$(UNSET) $5 $(", &env), "$(UNSET) $5 $(");
    }

    #[test]
    fn downward_fields_read_the_pod() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "tailprobe-host-abc", "namespace": "tailprobe", "uid": "u1",
                          "labels": {"app": "x"}},
            "spec": {"nodeName": "node1", "containers": []},
            "status": {"podIP": "10.244.1.10", "hostIP": "10.10.72.10",
                       "podIPs": [{"ip": "10.244.1.10"}]}
        }));
        assert_eq!(field(&p, "status.podIP").as_deref(), Some("10.244.1.10"));
        assert_eq!(field(&p, "spec.nodeName").as_deref(), Some("node1"));
        assert_eq!(field(&p, "metadata.uid").as_deref(), Some("u1"));
        assert_eq!(field(&p, "metadata.labels['app']").as_deref(), Some("x"));
        assert_eq!(field(&p, "metadata.labels['none']"), None);
        assert_eq!(field(&p, "spec.nope"), None);
    }
}
