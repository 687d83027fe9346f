//! Who is sending: the OTLP resource, in the specification's precedence.
//! What tailprobe detects (node, pod, namespace, pod UID, host, instance)
//! comes first; `OTEL_RESOURCE_ATTRIBUTES` overrides it; the service name
//! is `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
//! else `tailprobe`.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;

/// The resource of a process on `node`, reading the environment through
/// `var` (the process environment outside tests).
pub fn resource(node: &str, var: &dyn Fn(&str) -> Option<String>) -> Resource {
    let attrs = attributes(node, var);
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(attrs)
        .build()
}

/// Every attribute but the SDK's own, in order of precedence: a later key
/// wins.
fn attributes(node: &str, var: &dyn Fn(&str) -> Option<String>) -> Vec<KeyValue> {
    let host = var("HOSTNAME").or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
    });
    let mut out = vec![
        KeyValue::new("service.version", crate::VERSION),
        KeyValue::new("k8s.node.name", node.to_string()),
    ];
    // The DaemonSets pass these from the downward API.
    for (key, env) in [
        ("k8s.pod.name", "POD_NAME"),
        ("k8s.namespace.name", "POD_NAMESPACE"),
        ("k8s.pod.uid", "POD_UID"),
    ] {
        if let Some(v) = var(env) {
            out.push(KeyValue::new(key, v));
        }
    }
    if let Some(h) = &host {
        out.push(KeyValue::new("host.name", h.clone()));
    }
    // Unique per running instance: the pod's UID where there is one.
    let instance = var("POD_UID").unwrap_or_else(random_uuid);
    out.push(KeyValue::new("service.instance.id", instance));
    let user = var("OTEL_RESOURCE_ATTRIBUTES")
        .map(|s| parse_attributes(&s))
        .unwrap_or_default();
    let service = var("OTEL_SERVICE_NAME")
        .or_else(|| {
            user.iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| "tailprobe".to_string());
    out.extend(user.into_iter().map(|(k, v)| KeyValue::new(k, v)));
    out.push(KeyValue::new("service.name", service));
    out
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, the
/// values percent-encoded. A malformed pair is skipped, as the
/// specification asks.
fn parse_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v)))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(vars: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        let var = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let r = resource("node1", &var);
        r.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn percent_escapes_decode_and_cut_ones_stay_as_written() {
        assert_eq!(percent_decode("prod%2Deu%20a"), "prod-eu a");
        assert_eq!(percent_decode("%41"), "A");
        for cut in ["x%", "x%2", "a%4", "%zz"] {
            assert_eq!(percent_decode(cut), cut);
        }
    }

    #[test]
    fn the_specifications_precedence_for_the_service_name() {
        assert_eq!(resolved(&[])["service.name"], "tailprobe");
        assert_eq!(
            resolved(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=edge,team=net")])["service.name"],
            "edge"
        );
        assert_eq!(
            resolved(&[
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=edge"),
                ("OTEL_SERVICE_NAME", "probe-eu")
            ])["service.name"],
            "probe-eu"
        );
    }

    #[test]
    fn kubernetes_attributes_come_from_the_downward_api_and_the_user_overrides_them() {
        let r = resolved(&[
            ("POD_NAME", "tailprobe-host-x1"),
            ("POD_NAMESPACE", "tailprobe"),
            ("POD_UID", "0b6f"),
            ("HOSTNAME", "node1"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "k8s.cluster.name=prod%2Deu,host.name=override, bad ,=x",
            ),
        ]);
        assert_eq!(r["k8s.node.name"], "node1");
        assert_eq!(r["k8s.pod.name"], "tailprobe-host-x1");
        assert_eq!(r["k8s.namespace.name"], "tailprobe");
        assert_eq!(r["k8s.pod.uid"], "0b6f");
        assert_eq!(r["service.instance.id"], "0b6f");
        assert_eq!(r["host.name"], "override");
        assert_eq!(r["k8s.cluster.name"], "prod-eu");
        assert_eq!(r["telemetry.sdk.name"], "opentelemetry");
        assert!(!r.contains_key("bad") && !r.contains_key(""));
        // Without HOSTNAME, the kernel's host name.
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(resolved(&[])["host.name"], kernel.trim());
        // Without a pod, an instance id of its own, fresh per process.
        let a = resolved(&[])["service.instance.id"].clone();
        assert_eq!(a.len(), 36, "{a}");
        assert_ne!(a, resolved(&[])["service.instance.id"]);
    }
}
