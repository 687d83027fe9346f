//! The overlays: each signal sent only where a receiver takes it, and the
//! passive overlay's narrow grant.

use super::*;

/// The overlays' objects: every YAML document their resources name,
/// followed into directories, and the ConfigMaps their generators make (as
/// (name, file) pairs).
fn overlay(dir: &Path) -> (Vec<Value>, Vec<(String, PathBuf)>) {
    let k: Kustomization =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut docs = Vec::new();
    let mut maps: Vec<(String, PathBuf)> = k
        .config_map_generator
        .iter()
        .flat_map(|g| {
            g.files
                .iter()
                .map(|f| (g.name.clone(), dir.join(f.rsplit('=').next().unwrap())))
        })
        .collect();
    for r in &k.resources {
        let p = dir.join(r);
        if p.is_dir() {
            let (d, m) = overlay(&p);
            docs.extend(d);
            maps.extend(m);
        } else {
            docs.extend(documents(&std::fs::read_to_string(&p).unwrap()));
        }
    }
    (docs, maps)
}

/// What the workload behind `host:port` (a Service of the overlay) takes
/// over OTLP: Jaeger v2 traces only; a collector the signals whose
/// pipelines read an OTLP receiver.
fn accepted(docs: &[Value], maps: &[(String, PathBuf)], host: &str, port: u16) -> Vec<String> {
    let name = host.split('.').next().unwrap();
    let svc = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Service {name} in the overlay"));
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == port),
        "Service {name} has no port {port}"
    );
    let selector = &svc["spec"]["selector"];
    let deploy = docs
        .iter()
        .find(|d| {
            d["kind"] == "Deployment"
                && d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
                    == selector["app.kubernetes.io/name"]
        })
        .unwrap_or_else(|| panic!("no Deployment behind Service {name}"));
    let image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    if image.starts_with("jaegertracing/") {
        assert!(
            image.starts_with("jaegertracing/jaeger:2."),
            "Jaeger v1 ({image}) reached end of life; use v2"
        );
        return vec!["traces".into()];
    }
    assert!(
        image.starts_with("otel/opentelemetry-collector"),
        "unknown OTLP receiver {image}"
    );
    let volume = deploy["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
        .as_str()
        .unwrap();
    let file = &maps.iter().find(|(n, _)| n == volume).unwrap().1;
    let config: Value = serde_norway::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let pipelines = config["service"]["pipelines"].as_object().unwrap();
    let mut out: Vec<String> = pipelines
        .iter()
        .filter(|(_, p)| {
            p["receivers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().split('/').next() == Some("otlp"))
        })
        .map(|(k, _)| k.split('/').next().unwrap().to_string())
        .collect();
    out.sort();
    out.dedup();
    // What the collector forwards must be taken where it goes.
    for (signal, p) in pipelines {
        for e in p["exporters"].as_array().unwrap() {
            let e = e.as_str().unwrap();
            if !e.starts_with("otlp") {
                continue;
            }
            let endpoint = config["exporters"][e]["endpoint"].as_str().unwrap();
            let (h, port) = endpoint.rsplit_once(':').unwrap();
            let signal = signal.split('/').next().unwrap();
            assert!(
                accepted(docs, maps, h, port.parse().unwrap()).contains(&signal.to_string()),
                "the collector sends {signal} to {endpoint}, which does not take them"
            );
        }
    }
    out
}

/// In every overlay that sets the probers' OTLP variables, each signal
/// either has no endpoint (and is not sent) or goes to a workload that
/// takes it: Jaeger is never sent metrics or alert records.
#[test]
fn every_signal_is_sent_only_where_it_is_taken() {
    for dir in ["jaeger", "otel-collector"] {
        let k: Kustomization = serde_norway::from_str(
            &std::fs::read_to_string(deploy().join(dir).join("kustomization.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            k.patches[0]["target"]["kind"], "DaemonSet",
            "both DaemonSets"
        );
        let ops: Vec<Value> =
            serde_norway::from_str(k.patches[0]["patch"].as_str().unwrap()).unwrap();
        let env = |name: &str| {
            ops.iter()
                .find(|op| op["value"]["name"] == name)
                .and_then(|op| op["value"]["value"].as_str())
                .map(str::to_string)
        };
        let (docs, maps) = overlay(&deploy().join(dir));
        let mut sent = Vec::new();
        for signal in ["traces", "metrics", "logs"] {
            let upper = signal.to_uppercase();
            if env(&format!("OTEL_{upper}_EXPORTER")).as_deref() == Some("none") {
                continue;
            }
            let Some(endpoint) = env(&format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"))
                .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            else {
                continue;
            };
            let protocol = env(&format!("OTEL_EXPORTER_OTLP_{upper}_PROTOCOL"))
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
            let authority = endpoint.strip_prefix("http://").unwrap();
            let (host, port) = authority.split_once(':').unwrap();
            let port: u16 = port
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap();
            assert_eq!(
                (protocol.as_deref(), port),
                (Some("grpc"), 4317),
                "deploy/{dir}: {signal} over gRPC to the gRPC port"
            );
            assert!(
                host.ends_with(".tailprobe.svc"),
                "deploy/{dir}: {signal} to a Service of the namespace"
            );
            assert!(
                accepted(&docs, &maps, host, port).contains(&signal.to_string()),
                "deploy/{dir}: {signal} would be sent to {endpoint}, which refuses them"
            );
            sent.push(signal);
        }
        let want: &[&str] = match dir {
            "jaeger" => &["traces"],
            _ => &["traces", "metrics", "logs"],
        };
        assert_eq!(sent, want, "deploy/{dir}");
    }
}

/// deploy/passive: its patches applied to the base's DaemonSets (JSON
/// patches, `replace` only, as kustomize applies them) give a host prober
/// that runs `run --passive` as root with CAP_BPF and CAP_PERFMON added and
/// every other capability dropped; the pod prober is untouched.
#[test]
fn the_passive_overlay_gives_the_host_prober_bpf_and_nothing_else() {
    let dir = deploy().join("passive");
    let k: Kustomization =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    assert_eq!(k.resources, ["../base"]);
    let (docs, _) = overlay(&dir);
    let mut patched = Vec::new();
    for mut d in docs.into_iter().filter(|d| d["kind"] == "DaemonSet") {
        for p in &k.patches {
            let t = &p["target"];
            if t["kind"] != "DaemonSet" || t["name"] != d["metadata"]["name"] {
                continue;
            }
            let ops: Vec<Value> = serde_norway::from_str(p["patch"].as_str().unwrap()).unwrap();
            for op in ops {
                assert_eq!(op["op"], "replace", "{op}");
                let at = d
                    .pointer_mut(op["path"].as_str().unwrap())
                    .unwrap_or_else(|| panic!("{}: nothing to replace", op["path"]));
                *at = op["value"].clone();
            }
        }
        patched.push(typed::<DaemonSet>(&d, &dir));
    }
    assert_eq!(patched.len(), 2);
    for ds in patched {
        let name = ds.metadata.name.clone().unwrap();
        let pod = ds.spec.template.spec.unwrap();
        let c = &pod.containers[0];
        let mut argv = vec!["tailprobe".to_string()];
        argv.extend(c.args.clone().unwrap());
        let Command::Run(run) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("{name} does not run `tailprobe run`")
        };
        let sc = c.security_context.as_ref().unwrap();
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{name}"
        );
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
        let user = pod.security_context.as_ref().unwrap().run_as_user;
        if name == "tailprobe-host" {
            assert!(run.passive, "{argv:?}");
            assert_eq!(
                caps.add.as_deref(),
                Some(&["BPF".to_string(), "PERFMON".to_string()][..])
            );
            // Added capabilities reach the effective set of root only.
            assert_eq!(user, Some(0));
        } else {
            assert!(!run.passive && caps.add.is_none(), "{name}");
            assert_ne!(user, Some(0), "{name}");
        }
    }
}
