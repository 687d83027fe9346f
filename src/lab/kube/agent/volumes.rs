//! A pod's volumes and variables, read with the node's own credentials (so
//! the Node authorizer decides what it may read): ConfigMap and Secret
//! keys, projected service-account tokens (refreshed as a kubelet does),
//! the downward API, resources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};

use super::Ctx;
use super::pod::ids;
use super::spec::{self, ContainerSpec, EnvSource, FileSource, PodSpec, VolumeKind, WholeSource};
use crate::lab::plan;

/// A projected token file, and when to ask for a new one.
pub(super) struct TokenFile {
    pub(super) path: PathBuf,
    pub(super) service_account: String,
    pub(super) audience: Option<String>,
    pub(super) expiration: Duration,
    pub(super) refresh_at: Instant,
}

impl TokenFile {
    pub(super) async fn refresh(&mut self, ctx: &Arc<Ctx>, pod: &Pod) -> Result<(), String> {
        let (ns, name, uid) = ids(pod);
        let tr = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: self.audience.clone().map(|a| vec![a]),
                expiration_seconds: Some(self.expiration.as_secs() as i64),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name),
                    uid: Some(uid),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got: TokenRequest = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ns)
            .create_subresource("token", &self.service_account, &PostParams::default(), &tr)
            .await
            .map_err(|e| {
                format!(
                    "token for service account {ns}/{}: {e}",
                    self.service_account
                )
            })?;
        let status = got
            .status
            .ok_or_else(|| "the token request came back without a token".to_string())?;
        let token = status
            .token
            .ok_or_else(|| "the token request came back without a token".to_string())?;
        write_atomic(&self.path, token.as_bytes())?;
        // As a kubelet: at 80 % of the life asked for (the server may grant
        // longer), and at least every 24 hours.
        let life = self.expiration.min(Duration::from_secs(86_400));
        self.refresh_at = Instant::now() + life.mul_f64(0.8);
        Ok(())
    }
}

pub(super) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{} ({e})", parent.display()))?;
    }
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, data).map_err(|e| format!("{} ({e})", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{} ({e})", path.display()))?;
    // The container's user reads it (a runtime's fsGroup-less default is
    // world-readable content for configMaps and tokens alike).
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
    Ok(())
}

pub(super) fn volume_dir(pod_dir: &Path, volume: &str) -> PathBuf {
    pod_dir.join("volumes").join(volume)
}

/// Writes every volume's files; returns the tokens to keep fresh.
pub(super) async fn prepare(
    ctx: &Arc<Ctx>,
    pod: &Pod,
    spec: &PodSpec,
    pod_dir: &Path,
) -> Result<Vec<TokenFile>, String> {
    let (ns, _, _) = ids(pod);
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let mut tokens = Vec::new();
    for v in &spec.volumes {
        let dir = volume_dir(pod_dir, &v.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{} ({e})", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        let VolumeKind::Files {
            files,
            whole,
            optional,
        } = &v.kind
        else {
            continue;
        };
        for w in whole {
            let data = match w {
                WholeSource::ConfigMap(n) => config_map(ctx, &ns, n).await,
                WholeSource::Secret(n) => secret(ctx, &ns, n).await,
            };
            match data {
                Ok(map) => {
                    for (k, bytes) in map {
                        write_atomic(&dir.join(&k), &bytes)?;
                    }
                }
                Err(_) if *optional => {}
                Err(e) => return Err(format!("volume {}: {e}", v.name)),
            }
        }
        for (path, src) in files {
            let target = dir.join(path);
            let bytes = match src {
                FileSource::ConfigMapKey { name, key } => {
                    take_key(config_map(ctx, &ns, name).await, key, name)
                }
                FileSource::SecretKey { name, key } => {
                    take_key(secret(ctx, &ns, name).await, key, name)
                }
                FileSource::Field(f) => spec::field(pod, f)
                    .map(String::into_bytes)
                    .ok_or_else(|| format!("field {f} has no value")),
                FileSource::Token {
                    audience,
                    expiration,
                } => {
                    let mut t = TokenFile {
                        path: target.clone(),
                        service_account: sa.clone(),
                        audience: audience.clone(),
                        expiration: *expiration,
                        refresh_at: Instant::now(),
                    };
                    t.refresh(ctx, pod).await?;
                    tokens.push(t);
                    continue;
                }
            };
            match bytes {
                Ok(b) => write_atomic(&target, &b)?,
                Err(_) if *optional => {}
                Err(e) => return Err(format!("volume {}: {e}", v.name)),
            }
        }
    }
    Ok(tokens)
}

pub(super) fn take_key(
    map: Result<BTreeMap<String, Vec<u8>>, String>,
    key: &str,
    name: &str,
) -> Result<Vec<u8>, String> {
    map?.remove(key)
        .ok_or_else(|| format!("{name} has no key \"{key}\""))
}

pub(super) async fn config_map(
    ctx: &Arc<Ctx>,
    ns: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let cm = Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("ConfigMap {ns}/{name}: {e}"))?;
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    out.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    Ok(out)
}

pub(super) async fn secret(
    ctx: &Arc<Ctx>,
    ns: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let s = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("Secret {ns}/{name}: {e}"))?;
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    out.extend(
        s.string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    Ok(out)
}

/// The container's environment, as a kubelet builds it: the variables of
/// the `kubernetes` Service (always, whatever `enableServiceLinks` says),
/// then the spec's own, in order.
pub(super) async fn resolve_env(
    ctx: &Arc<Ctx>,
    pod: &Pod,
    c: &ContainerSpec,
) -> Result<Vec<(String, String)>, String> {
    let (ns, _, _) = ids(pod);
    let api = plan::API_SERVICE_IP;
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOSTNAME".into(), hostname_of(pod)),
        ("KUBERNETES_SERVICE_HOST".into(), api.to_string()),
        ("KUBERNETES_SERVICE_PORT".into(), "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into()),
        ("KUBERNETES_PORT".into(), format!("tcp://{api}:443")),
        ("KUBERNETES_PORT_443_TCP".into(), format!("tcp://{api}:443")),
        ("KUBERNETES_PORT_443_TCP_PROTO".into(), "tcp".into()),
        ("KUBERNETES_PORT_443_TCP_PORT".into(), "443".into()),
        ("KUBERNETES_PORT_443_TCP_ADDR".into(), api.to_string()),
    ];
    for (k, src) in &c.env {
        let v = match src {
            // A literal value may name variables defined before it.
            EnvSource::Value(v) => Some(spec::expand(v, &env)),
            EnvSource::Field(f) => Some(
                spec::field(pod, f).ok_or_else(|| format!("env {k}: field {f} has no value"))?,
            ),
            EnvSource::ConfigMapKey {
                name,
                key,
                optional,
            } => match take_key(config_map(ctx, &ns, name).await, key, name) {
                Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Err(_) if *optional => None,
                Err(e) => return Err(format!("env {k}: {e}")),
            },
            EnvSource::SecretKey {
                name,
                key,
                optional,
            } => match take_key(secret(ctx, &ns, name).await, key, name) {
                Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Err(_) if *optional => None,
                Err(e) => return Err(format!("env {k}: {e}")),
            },
            EnvSource::Resource { resource, divisor } => Some(
                resource_value(pod, &c.name, resource, divisor).ok_or_else(|| {
                    format!("env {k}: resource {resource} with divisor {divisor} cannot be read")
                })?,
            ),
        };
        if let Some(v) = v {
            env.retain(|(n, _)| n != k);
            env.push((k.clone(), v));
        }
    }
    Ok(env)
}

pub(super) fn hostname_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

/// `limits.memory` or `requests.cpu` (and the like) of a container, in the
/// divisor's units, rounded up as a kubelet rounds.
pub(super) fn resource_value(
    pod: &Pod,
    container: &str,
    resource: &str,
    divisor: &str,
) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let c = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?;
    let r = c.resources.as_ref();
    let q = match kind {
        "limits" => r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(name)),
        "requests" => r
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(name)),
        _ => return None,
    };
    // Unset limits read as the node's capacity, as the downward API does.
    let value = match q {
        Some(q) => quantity(&q.0)?,
        None if name == "cpu" => {
            std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
        }
        None if name == "memory" => node_memory_bytes()? as f64,
        None => return None,
    };
    let d = quantity(divisor)?;
    (d > 0.0).then(|| format!("{}", (value / d).ceil() as u64))
}

pub(super) fn node_memory_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A Kubernetes quantity (`100m`, `64Mi`, `1G`, `2`) as a number.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: f64 = n.parse().ok()?;
    let m = match unit {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some(n * m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(quantity("100m"), Some(0.1));
        assert_eq!(quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1G"), Some(1e9));
        assert_eq!(quantity("3x"), None);
    }
}
