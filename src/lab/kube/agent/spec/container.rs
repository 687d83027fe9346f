//! A container of a pod spec: its command, variables, checks and identity,
//! or the reason the agent cannot run it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PodSecurityContext, Probe as K8sProbe, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    Check, CheckKind, ContainerSpec, EnvSource, MountSpec, Refusal, RunAs, VolumeSpec, refuse,
};

/// The image's entrypoint, as the Dockerfile's final stage has it.
pub const ENTRYPOINT: &str = "/tailprobe";

/// The image's user and group (`USER 65532:65532`).
pub const IMAGE_USER: u32 = 65532;

/// A container runtime's default capabilities for a root process
/// (containerd's and Docker's set).
pub const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Whether an image reference names tailprobe's image: any registry and
/// tag, the last path element `tailprobe`.
pub fn is_tailprobe_image(image: &str) -> bool {
    let no_digest = image.split('@').next().unwrap_or("");
    let last = no_digest.rsplit('/').next().unwrap_or("");
    last.split(':').next() == Some("tailprobe")
}

pub(super) fn env(e: &EnvVar) -> Result<(String, EnvSource), Refusal> {
    let src = match (&e.value, &e.value_from) {
        (_, Some(from)) => {
            if let Some(f) = &from.field_ref {
                EnvSource::Field(f.field_path.clone())
            } else if let Some(k) = &from.config_map_key_ref {
                EnvSource::ConfigMapKey {
                    name: k.name.clone(),
                    key: k.key.clone(),
                    optional: k.optional.unwrap_or(false),
                }
            } else if let Some(k) = &from.secret_key_ref {
                EnvSource::SecretKey {
                    name: k.name.clone(),
                    key: k.key.clone(),
                    optional: k.optional.unwrap_or(false),
                }
            } else if let Some(r) = &from.resource_field_ref {
                EnvSource::Resource {
                    resource: r.resource.clone(),
                    divisor: r.divisor.as_ref().map_or("1".into(), |q| q.0.clone()),
                }
            } else {
                return Err(refuse(
                    "CreateContainerConfigError",
                    format!(
                        "env {}: a valueFrom the lab's node agent cannot read",
                        e.name
                    ),
                ));
            }
        }
        (v, None) => EnvSource::Value(v.clone().unwrap_or_default()),
    };
    Ok((e.name.clone(), src))
}

pub(super) fn port_of(c: &Container, port: &IntOrString) -> Result<u16, Refusal> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| refuse("InvalidPod", format!("probe port {n} is out of range"))),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                refuse(
                    "InvalidPod",
                    format!(
                        "container {}: probe port \"{name}\" names no containerPort",
                        c.name
                    ),
                )
            }),
    }
}

pub(super) fn check(c: &Container, p: &K8sProbe) -> Result<Check, Refusal> {
    let kind = if let Some(h) = &p.http_get {
        if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err(refuse(
                "LabUnsupported",
                format!("container {}: only HTTP probes, not HTTPS", c.name),
            ));
        }
        CheckKind::Http {
            port: port_of(c, &h.port)?,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
        }
    } else if let Some(t) = &p.tcp_socket {
        CheckKind::Tcp {
            port: port_of(c, &t.port)?,
        }
    } else {
        return Err(refuse(
            "LabUnsupported",
            format!(
                "container {}: exec and gRPC probes are not run by the lab's node agent; use httpGet or tcpSocket",
                c.name
            ),
        ));
    };
    let secs =
        |v: Option<i32>, default: u64| Duration::from_secs(v.map_or(default, |s| s.max(0) as u64));
    Ok(Check {
        kind,
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: p.success_threshold.map_or(1, |v| v.max(1) as u32),
        failure_threshold: p.failure_threshold.map_or(3, |v| v.max(1) as u32),
    })
}

pub(super) fn run_as(c: &Container, pod: Option<&PodSecurityContext>) -> Result<RunAs, Refusal> {
    let sc: Option<&SecurityContext> = c.security_context.as_ref();
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod.and_then(|p| p.run_as_user));
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod.and_then(|p| p.run_as_group));
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    // The image's USER when the spec names none, as a runtime does.
    let uid = uid.map_or(IMAGE_USER, |u| u.max(0) as u32);
    let gid = gid.map_or(if uid == IMAGE_USER { IMAGE_USER } else { 0 }, |g| {
        g.max(0) as u32
    });
    if non_root && uid == 0 {
        return Err(refuse(
            "CreateContainerConfigError",
            format!(
                "container {} has runAsNonRoot and runAsUser 0: it would run as root",
                c.name
            ),
        ));
    }
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = if uid != 0 {
        // A runtime gives a non-root process no effective capability.
        vec![]
    } else if privileged {
        vec!["ALL".into()]
    } else {
        capabilities(sc.and_then(|s| s.capabilities.as_ref()))
    };
    Ok(RunAs {
        uid,
        gid,
        caps,
        no_new_privs: sc
            .and_then(|s| s.allow_privilege_escalation)
            .is_some_and(|a| !a),
        read_only_root: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
    })
}

/// The runtime's default set, less what is dropped, plus what is added.
pub(super) fn capabilities(c: Option<&Capabilities>) -> Vec<String> {
    let norm = |s: &String| s.trim_start_matches("CAP_").to_ascii_uppercase();
    let drop: Vec<String> = c
        .and_then(|c| c.drop.as_ref())
        .map(|d| d.iter().map(norm).collect())
        .unwrap_or_default();
    let mut caps: Vec<String> = if drop.iter().any(|d| d == "ALL") {
        vec![]
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|s| !drop.contains(s))
            .collect()
    };
    for a in c.and_then(|c| c.add.as_ref()).into_iter().flatten() {
        let a = norm(a);
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    caps
}

pub(super) fn container(
    c: &Container,
    pod_sc: Option<&PodSecurityContext>,
    volumes: &[VolumeSpec],
) -> Result<ContainerSpec, Refusal> {
    let image = c.image.clone().unwrap_or_default();
    if !is_tailprobe_image(&image) {
        return Err(refuse(
            "ErrImageNeverPull",
            format!(
                "container {}: image \"{image}\" is not available in the lab; its node agent runs only the tailprobe image (any registry and tag)",
                c.name
            ),
        ));
    }
    let mut argv = match &c.command {
        Some(cmd) if !cmd.is_empty() => {
            if cmd[0] != ENTRYPOINT {
                return Err(refuse(
                    "CreateContainerConfigError",
                    format!(
                        "container {}: command {:?} is not in the image, which holds only {ENTRYPOINT}",
                        c.name, cmd[0]
                    ),
                ));
            }
            cmd.clone()
        }
        _ => vec![ENTRYPOINT.to_string()],
    };
    argv.extend(c.args.iter().flatten().cloned());
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(refuse(
            "LabUnsupported",
            format!(
                "container {}: envFrom is not read by the lab's node agent; list each variable",
                c.name
            ),
        ));
    }
    let env = c
        .env
        .iter()
        .flatten()
        .map(env)
        .collect::<Result<Vec<_>, _>>()?;
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        if !volumes.iter().any(|v| v.name == m.name) {
            return Err(refuse(
                "CreateContainerConfigError",
                format!(
                    "container {}: volumeMount \"{}\" names no volume of the pod",
                    c.name, m.name
                ),
            ));
        }
        if !m.mount_path.starts_with('/') || m.mount_path.split('/').any(|p| p == "..") {
            return Err(refuse(
                "CreateContainerConfigError",
                format!(
                    "container {}: mountPath \"{}\" is not an absolute path",
                    c.name, m.mount_path
                ),
            ));
        }
        let sub_path = m.sub_path.clone().filter(|s| !s.is_empty());
        if sub_path
            .as_deref()
            .is_some_and(|s| s.starts_with('/') || s.split('/').any(|p| p == ".."))
        {
            return Err(refuse(
                "CreateContainerConfigError",
                format!("container {}: subPath must stay inside its volume", c.name),
            ));
        }
        mounts.push(MountSpec {
            volume: m.name.clone(),
            path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false),
            sub_path,
        });
    }
    let probe = |p: &Option<K8sProbe>| p.as_ref().map(|p| check(c, p)).transpose();
    Ok(ContainerSpec {
        name: c.name.clone(),
        image,
        argv,
        env,
        mounts,
        run_as: run_as(c, pod_sc)?,
        readiness: probe(&c.readiness_probe)?,
        liveness: probe(&c.liveness_probe)?,
        startup: probe(&c.startup_probe)?,
    })
}
