//! The command lines deploy/ runs, parsed by the real CLI: the DaemonSets'
//! and the hub's, their configs checked, the image's user and entrypoint.

use super::*;

#[test]
fn daemonsets_run_a_command_line_the_cli_accepts_with_a_config_that_checks() {
    let cfg_path = deploy().join("base/tailprobe.toml");
    let loaded = tailprobe::config::load(cfg_path.to_str().unwrap()).unwrap();
    let k = loaded
        .config
        .kubernetes
        .clone()
        .expect("[kubernetes] in the deployed config");
    let out = std::process::Command::new(common::bin())
        .args(["check", "--config", cfg_path.to_str().unwrap()])
        .env("NODE_NAME", "node-1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (kind, ds) in daemonsets() {
        let spec = ds.spec;
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        // The image's ENTRYPOINT is /tailprobe; the args are the CLI's.
        let mut argv = vec!["tailprobe".to_string()];
        argv.extend(c.args.clone().unwrap());
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let Command::Run(run) = cli.command else {
            panic!("{kind}: the DaemonSet does not run `tailprobe run`")
        };
        // --config names the ConfigMap's file where it is mounted.
        let mount = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "config")
            .unwrap();
        assert_eq!(
            run.config,
            Path::new(&mount.mount_path).join("tailprobe.toml"),
            "{kind}"
        );
        let vol = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "config")
            .unwrap();
        assert_eq!(vol.config_map.as_ref().unwrap().name, "tailprobe-config");

        // The downward API feeds what registration and attribution need.
        let env: std::collections::BTreeMap<String, String> = c
            .env
            .iter()
            .flatten()
            .map(|e| {
                let v = e.value.clone().or_else(|| {
                    e.value_from
                        .as_ref()?
                        .field_ref
                        .as_ref()
                        .map(|f| format!("field:{}", f.field_path))
                });
                (e.name.clone(), v.unwrap_or_default())
            })
            .collect();
        for (name, want) in [
            ("NODE_NAME", "field:spec.nodeName"),
            ("POD_NAME", "field:metadata.name"),
            ("POD_NAMESPACE", "field:metadata.namespace"),
            ("POD_UID", "field:metadata.uid"),
            ("POD_IP", "field:status.podIP"),
            ("TAILPROBE_SOURCE_KIND", kind.as_str()),
        ] {
            assert_eq!(
                env.get(name).map(String::as_str),
                Some(want),
                "{kind}: {name}"
            );
        }
        assert_eq!(pod.host_network.unwrap_or(false), kind == "host");

        // Pods carry the labels discovery selects prober pods by.
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        let sel: tailprobe::config::LabelSelector = k.prober_selector.parse().unwrap();
        assert!(
            sel.matches(&labels),
            "{kind}: pods must match prober_selector"
        );
        assert_eq!(labels["tailprobe.io/source-kind"], kind);

        // Ports agree with the config: metrics on [server], echo on [kubernetes].
        let port = |name: &str| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap()
                .container_port
        };
        assert_eq!(
            port("metrics"),
            i32::from(loaded.config.server.listen.port())
        );
        assert_eq!(port("echo"), i32::from(k.echo_listen.port()));

        // Every node, least privilege, bounded resources, health checks.
        let tol = pod.tolerations.unwrap();
        assert!(
            tol.iter()
                .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("tailprobe"));
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        let res = c.resources.clone().unwrap();
        for k in ["cpu", "memory"] {
            assert!(
                res.requests.as_ref().unwrap().contains_key(k),
                "{kind}: request {k}"
            );
        }
        let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        };
        assert_eq!(path(&c.liveness_probe), "/healthz");
        assert_eq!(path(&c.readiness_probe), "/readyz");
    }
}

#[test]
fn the_image_runs_as_the_daemonsets_user_with_the_cli_as_entrypoint() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert_eq!(
        froms.last(),
        Some(&"FROM scratch"),
        "a static binary in an empty image"
    );
    assert!(text.contains("ENTRYPOINT [\"/tailprobe\"]"));
    assert!(
        text.contains("--locked"),
        "the image builds what Cargo.lock pins"
    );
    let user = text.lines().find_map(|l| l.strip_prefix("USER ")).unwrap();
    let uid: i64 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    for (kind, ds) in daemonsets() {
        let sc = ds.spec.template.spec.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_user, Some(uid), "{kind}");
    }
}

/// The hub's Deployment runs `tailprobe hub` on the ConfigMap's file, that
/// file checks, and the prober selector it discovers with selects both
/// DaemonSets' pods but never the hub's own.
#[test]
fn the_hub_runs_a_command_line_the_cli_accepts_and_finds_the_probers_not_itself() {
    let cfg_path = deploy().join("hub/hub.toml");
    let out = std::process::Command::new(common::bin())
        .args(["check", "--config", cfg_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded = tailprobe::config::load(cfg_path.to_str().unwrap()).unwrap();
    assert!(
        loaded.config.hub.probers.is_empty(),
        "found through Kubernetes"
    );
    let selector = loaded.config.kubernetes.unwrap().prober_selector;
    let (key, value) = selector.split_once('=').unwrap();

    let text = std::fs::read_to_string(deploy().join("hub/hub.yaml")).unwrap();
    let doc = documents(&text)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    let d: Deployment = typed(&doc, &deploy().join("hub/hub.yaml"));
    let template = d.spec.template;
    let c = &template.spec.as_ref().unwrap().containers[0];
    let mut argv = vec!["tailprobe".to_string()];
    argv.extend(c.args.clone().unwrap());
    let cli = Cli::try_parse_from(&argv).unwrap();
    let Command::Hub(run) = cli.command else {
        panic!("the hub Deployment does not run `tailprobe hub`")
    };
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(run.config, Path::new(&mount.mount_path).join("hub.toml"));
    let hub_labels = template.metadata.unwrap().labels.unwrap();
    assert_ne!(
        hub_labels.get(key).map(String::as_str),
        Some(value),
        "the hub would pull itself"
    );
    for (kind, ds) in daemonsets() {
        let labels = ds.spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{kind}");
    }
    assert!(
        c.ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("metrics")),
        "the port the hub serves on"
    );
}
