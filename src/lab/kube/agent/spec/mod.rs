//! What a pod spec asks of the node agent, as data: pure, so every refusal
//! and every default is tested without a cluster. The agent runs one image,
//! tailprobe's, as the Dockerfile builds it (`/tailprobe` as entrypoint, user
//! 65532); anything it cannot do as a kubelet would is refused with the
//! reason, which becomes the pod's status.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Volume};

mod container;
mod fields;

use container::container;
pub use container::{DEFAULT_CAPS, ENTRYPOINT, IMAGE_USER, is_tailprobe_image};
pub use fields::{expand, field};

/// Where in-cluster clients read their service account.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Value(String),
    /// A downward-API field path, such as `status.podIP`.
    Field(String),
    ConfigMapKey {
        name: String,
        key: String,
        optional: bool,
    },
    SecretKey {
        name: String,
        key: String,
        optional: bool,
    },
    /// `limits.memory`, `requests.cpu`, ... of this container, in units of
    /// the divisor (cores and bytes by default, rounded up).
    Resource {
        resource: String,
        divisor: String,
    },
}

/// A file a volume holds, and where its content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    ConfigMapKey {
        name: String,
        key: String,
    },
    SecretKey {
        name: String,
        key: String,
    },
    /// A projected service-account token for this pod.
    Token {
        audience: Option<String>,
        expiration: Duration,
    },
    Field(String),
}

/// One volume as the agent prepares it in the pod's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    /// Files written by the agent (configMap, secret, projected, downward).
    /// A whole source (`items` absent) expands when the object is read:
    /// `whole` lists those.
    Files {
        files: Vec<(String, FileSource)>,
        whole: Vec<WholeSource>,
        optional: bool,
    },
    EmptyDir,
    HostPath(String),
}

/// Every key of a ConfigMap or Secret, each as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WholeSource {
    ConfigMap(String),
    Secret(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub kind: VolumeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub volume: String,
    pub path: String,
    pub read_only: bool,
    pub sub_path: Option<String>,
}

/// A readiness, liveness or startup check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Http { port: u16, path: String },
    Tcp { port: u16 },
}

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Capabilities the process keeps (upper case, no `CAP_`); only a root
    /// process holds any.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub read_only_root: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, EnvSource)>,
    pub mounts: Vec<MountSpec>,
    pub run_as: RunAs,
    pub readiness: Option<Check>,
    pub liveness: Option<Check>,
    pub startup: Option<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

/// Everything the agent needs to run one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    pub host_network: bool,
    pub containers: Vec<ContainerSpec>,
    pub volumes: Vec<VolumeSpec>,
    pub restart: Restart,
    pub grace: Duration,
    pub hostname: String,
}

/// Why a pod cannot run here: `reason` is a status reason (one word),
/// `message` says what and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

pub(super) fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// Translates a pod into what the agent runs, or says why it cannot.
pub fn translate(pod: &Pod) -> Result<PodSpec, Refusal> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| refuse("InvalidPod", "the pod has no spec"))?;
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(refuse(
            "LabUnsupported",
            "init containers are not run by the lab's node agent; move their work into the container",
        ));
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(refuse(
            "LabUnsupported",
            "ephemeral containers are not run by the lab's node agent",
        ));
    }
    let volumes = spec
        .volumes
        .iter()
        .flatten()
        .map(volume)
        .collect::<Result<Vec<_>, _>>()?;
    let pod_sc = spec.security_context.as_ref();
    let mut containers = Vec::new();
    for c in &spec.containers {
        containers.push(container(c, pod_sc, &volumes)?);
    }
    if containers.is_empty() {
        return Err(refuse("InvalidPod", "the pod has no container"));
    }
    let restart = match spec.restart_policy.as_deref() {
        None | Some("Always") => Restart::Always,
        Some("OnFailure") => Restart::OnFailure,
        Some("Never") => Restart::Never,
        Some(other) => {
            return Err(refuse(
                "InvalidPod",
                format!("restartPolicy \"{other}\" is not Always, OnFailure or Never"),
            ));
        }
    };
    let grace = spec
        .termination_grace_period_seconds
        .map_or(30, |s| s.max(0) as u64);
    let name = pod.metadata.name.clone().unwrap_or_default();
    Ok(PodSpec {
        host_network: spec.host_network.unwrap_or(false),
        containers,
        volumes,
        restart,
        grace: Duration::from_secs(grace),
        hostname: spec.hostname.clone().unwrap_or(name),
    })
}

pub(super) fn volume(v: &Volume) -> Result<VolumeSpec, Refusal> {
    let key_files = |items: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>,
                     make: &dyn Fn(String) -> FileSource| {
        items
            .iter()
            .flatten()
            .map(|i| (i.path.clone(), make(i.key.clone())))
            .collect::<Vec<_>>()
    };
    let kind = if let Some(cm) = &v.config_map {
        let name = cm.name.clone();
        let files = key_files(&cm.items, &|key| FileSource::ConfigMapKey {
            name: name.clone(),
            key,
        });
        let whole = if cm.items.is_none() {
            vec![WholeSource::ConfigMap(name.clone())]
        } else {
            vec![]
        };
        VolumeKind::Files {
            files,
            whole,
            optional: cm.optional.unwrap_or(false),
        }
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let files = key_files(&s.items, &|key| FileSource::SecretKey {
            name: name.clone(),
            key,
        });
        let whole = if s.items.is_none() {
            vec![WholeSource::Secret(name.clone())]
        } else {
            vec![]
        };
        VolumeKind::Files {
            files,
            whole,
            optional: s.optional.unwrap_or(false),
        }
    } else if let Some(p) = &v.projected {
        let (mut files, mut whole) = (Vec::new(), Vec::new());
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                files.push((
                    t.path.clone(),
                    FileSource::Token {
                        audience: t.audience.clone().filter(|a| !a.is_empty()),
                        expiration: Duration::from_secs(
                            t.expiration_seconds.unwrap_or(3600).max(600) as u64,
                        ),
                    },
                ));
            } else if let Some(cm) = &src.config_map {
                let name = cm.name.clone();
                files.extend(key_files(&cm.items, &|key| FileSource::ConfigMapKey {
                    name: name.clone(),
                    key,
                }));
                if cm.items.is_none() {
                    whole.push(WholeSource::ConfigMap(name.clone()));
                }
            } else if let Some(s) = &src.secret {
                let name = s.name.clone();
                files.extend(key_files(&s.items, &|key| FileSource::SecretKey {
                    name: name.clone(),
                    key,
                }));
                if s.items.is_none() {
                    whole.push(WholeSource::Secret(name.clone()));
                }
            } else if let Some(d) = &src.downward_api {
                files.extend(downward_files(d.items.iter().flatten(), &v.name)?);
            } else {
                return Err(refuse(
                    "LabUnsupported",
                    format!(
                        "volume \"{}\": a projected source other than serviceAccountToken, configMap, secret or downwardAPI",
                        v.name
                    ),
                ));
            }
        }
        VolumeKind::Files {
            files,
            whole,
            optional: false,
        }
    } else if let Some(d) = &v.downward_api {
        VolumeKind::Files {
            files: downward_files(d.items.iter().flatten(), &v.name)?,
            whole: vec![],
            optional: false,
        }
    } else if v.empty_dir.is_some() {
        VolumeKind::EmptyDir
    } else if let Some(h) = &v.host_path {
        VolumeKind::HostPath(h.path.clone())
    } else {
        return Err(refuse(
            "LabUnsupported",
            format!(
                "volume \"{}\" is of a kind the lab's node agent cannot mount; it mounts configMap, secret, projected, downwardAPI, emptyDir and hostPath",
                v.name
            ),
        ));
    };
    Ok(VolumeSpec {
        name: v.name.clone(),
        kind,
    })
}

pub(super) fn downward_files<'a>(
    items: impl Iterator<Item = &'a k8s_openapi::api::core::v1::DownwardAPIVolumeFile>,
    volume: &str,
) -> Result<Vec<(String, FileSource)>, Refusal> {
    items
        .map(|i| match &i.field_ref {
            Some(f) => Ok((i.path.clone(), FileSource::Field(f.field_path.clone()))),
            None => Err(refuse(
                "LabUnsupported",
                format!(
                    "volume \"{volume}\": downward API file {} is not a fieldRef",
                    i.path
                ),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).unwrap()
    }

    fn prober() -> serde_json::Value {
        serde_json::json!({
            "metadata": {"name": "tailprobe-host-abc", "namespace": "tailprobe", "uid": "u1",
                          "labels": {"app": "x"}},
            "spec": {
                "hostNetwork": true,
                "nodeName": "node1",
                "terminationGracePeriodSeconds": 15,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532},
                "volumes": [
                    {"name": "config", "configMap": {"name": "tailprobe-config-h"}},
                    {"name": "kube-api-access-x", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
                    ]}}
                ],
                "containers": [{
                    "name": "tailprobe",
                    "image": "registry.example/team/tailprobe:0.1.0",
                    "args": ["run", "--config", "/etc/tailprobe/tailprobe.toml"],
                    "env": [
                        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "TAILPROBE_SOURCE_KIND", "value": "host"}
                    ],
                    "ports": [{"name": "metrics", "containerPort": 9797}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10},
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/tailprobe", "readOnly": true},
                        {"name": "kube-api-access-x", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true}
                    ]
                }]
            }
        })
    }

    #[test]
    fn a_prober_pod_runs_the_entrypoint_as_the_image_user() {
        let s = translate(&pod(prober())).unwrap();
        assert!(s.host_network);
        assert_eq!(s.grace, Duration::from_secs(15));
        let c = &s.containers[0];
        assert_eq!(
            c.argv,
            [
                "/tailprobe",
                "run",
                "--config",
                "/etc/tailprobe/tailprobe.toml"
            ]
        );
        assert_eq!(
            c.run_as,
            RunAs {
                uid: 65532,
                gid: 65532,
                caps: vec![],
                no_new_privs: true,
                read_only_root: true
            }
        );
        assert_eq!(
            c.readiness.as_ref().unwrap().kind,
            CheckKind::Http {
                port: 9797,
                path: "/readyz".into()
            }
        );
        assert_eq!(
            c.env[0],
            ("NODE_NAME".into(), EnvSource::Field("spec.nodeName".into()))
        );
        let VolumeKind::Files { files, whole, .. } = &s.volumes[1].kind else {
            panic!("projected is files")
        };
        assert!(whole.is_empty());
        assert_eq!(files.len(), 3);
        assert!(
            matches!(files[0].1, FileSource::Token { expiration, .. } if expiration.as_secs() == 3607)
        );
        let VolumeKind::Files { whole, .. } = &s.volumes[0].kind else {
            panic!("configMap is files")
        };
        assert_eq!(
            whole,
            &[WholeSource::ConfigMap("tailprobe-config-h".into())]
        );
    }

    #[test]
    fn root_with_added_capabilities_keeps_exactly_those() {
        let mut p = prober();
        p["spec"]["securityContext"] =
            serde_json::json!({"runAsNonRoot": false, "runAsUser": 0, "runAsGroup": 0});
        p["spec"]["containers"][0]["securityContext"]["capabilities"] =
            serde_json::json!({"drop": ["ALL"], "add": ["BPF", "CAP_PERFMON"]});
        let c = &translate(&pod(p)).unwrap().containers[0];
        assert_eq!((c.run_as.uid, c.run_as.gid), (0, 0));
        assert_eq!(c.run_as.caps, ["BPF", "PERFMON"]);
        // No drop: the runtime's defaults, less none.
        let mut p = prober();
        p["spec"]["securityContext"] = serde_json::json!({"runAsUser": 0});
        p["spec"]["containers"][0]["securityContext"] = serde_json::json!({});
        let c = &translate(&pod(p)).unwrap().containers[0];
        assert_eq!(c.run_as.caps.len(), DEFAULT_CAPS.len());
    }

    #[test]
    fn what_the_agent_cannot_run_is_refused_with_the_reason() {
        let mut p = prober();
        p["spec"]["containers"][0]["image"] = "jaegertracing/jaeger:2.1.0".into();
        let r = translate(&pod(p)).unwrap_err();
        assert_eq!(r.reason, "ErrImageNeverPull");
        assert!(
            r.message.contains("jaegertracing/jaeger:2.1.0"),
            "{}",
            r.message
        );

        let mut p = prober();
        p["spec"]["securityContext"]["runAsUser"] = 0.into();
        let r = translate(&pod(p)).unwrap_err();
        assert!(r.message.contains("runAsNonRoot"), "{}", r.message);

        let mut p = prober();
        p["spec"]["containers"][0]["command"] = serde_json::json!(["/bin/sh", "-c", "x"]);
        assert!(translate(&pod(p)).unwrap_err().message.contains("/bin/sh"));

        let mut p = prober();
        p["spec"]["volumes"][0] =
            serde_json::json!({"name": "config", "nfs": {"server": "x", "path": "/"}});
        assert_eq!(translate(&pod(p)).unwrap_err().reason, "LabUnsupported");

        let mut p = prober();
        p["spec"]["containers"][0]["readinessProbe"] =
            serde_json::json!({"exec": {"command": ["true"]}});
        assert!(translate(&pod(p)).unwrap_err().message.contains("exec"));

        let mut p = prober();
        p["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "nope".into();
        assert!(translate(&pod(p)).unwrap_err().message.contains("\"nope\""));

        let mut p = prober();
        p["spec"]["containers"][0]["volumeMounts"][0]["subPath"] = "../../etc".into();
        assert!(translate(&pod(p)).is_err());
    }

    #[test]
    fn images_are_matched_by_their_last_path_element() {
        assert!(is_tailprobe_image("tailprobe"));
        assert!(is_tailprobe_image("tailprobe:0.1.0"));
        assert!(is_tailprobe_image("ghcr.io/acme/tailprobe:v1@sha256:ab"));
        assert!(!is_tailprobe_image("tailprobe-extra:1"));
        assert!(!is_tailprobe_image("registry:5000/other"));
    }
}
