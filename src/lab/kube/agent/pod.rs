//! One pod on the agent's node, from its spec to its deletion: the sandbox,
//! the volumes (read with the node's own credentials, so the Node
//! authorizer decides), the processes, the readiness and liveness checks,
//! restarts with back-off, and the status a kubelet reports.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Ctx;
use super::sandbox::{self, Bind, Rootfs};
use super::spec::{
    self, Check, CheckKind, ContainerSpec, EnvSource, FileSource, PodSpec, Refusal, Restart,
    VolumeKind, WholeSource,
};
use crate::lab::plan;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The pod as the watch last saw it; `None` once it left the API.
pub type Latest = watch::Receiver<Option<Pod>>;

/// How one container is doing.
struct Running {
    spec: ContainerSpec,
    child: Option<tokio::process::Child>,
    pid: Option<u32>,
    started: Option<Time>,
    restarts: i32,
    /// When a stopped container may start again (back-off).
    restart_at: Option<Instant>,
    back_off: Duration,
    last_exit: Option<Value>,
    waiting: Option<(String, String)>,
    ready: bool,
    started_ok: bool,
    probes: BTreeMap<&'static str, ProbeState>,
    env: Vec<(String, String)>,
}

#[derive(Default)]
struct ProbeState {
    next: Option<Instant>,
    successes: u32,
    failures: u32,
}

/// Everything the agent keeps of a pod while it runs.
struct Sandbox {
    ip: Ipv4Addr,
    slot: Option<usize>,
    veth: Option<String>,
    netns: Option<String>,
    dir: PathBuf,
}

/// Runs one pod until it is deleted (then deletes it for good) or leaves
/// the API (then stops it at once).
pub async fn run(ctx: Arc<Ctx>, mut latest: Latest) {
    let Some(pod) = latest.borrow().clone() else {
        return;
    };
    let (ns, name, uid) = ids(&pod);
    let started = now();
    if pod.metadata.deletion_timestamp.is_some() {
        finish(&ctx, &ns, &name, &uid).await;
        return;
    }
    let spec = match spec::translate(&pod) {
        Ok(s) => s,
        Err(r) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), reason = r.reason, "Cannot run this pod: {}", r.message);
            refused(&ctx, &pod, &r, &started).await;
            wait_for_end(&mut latest).await;
            finish(&ctx, &ns, &name, &uid).await;
            return;
        }
    };
    let sandbox = match make_sandbox(&ctx, &pod, &spec).await {
        Ok(s) => s,
        Err(e) => {
            let r = Refusal {
                reason: "CreatePodSandboxError",
                message: e,
            };
            refused(&ctx, &pod, &r, &started).await;
            wait_for_end(&mut latest).await;
            finish(&ctx, &ns, &name, &uid).await;
            return;
        }
    };
    let mut pod_now = pod.clone();
    set_ips(&mut pod_now, &sandbox.ip, &ctx.node_ip);
    let mut containers: Vec<Running> = spec
        .containers
        .iter()
        .map(|c| Running {
            spec: c.clone(),
            child: None,
            pid: None,
            started: None,
            restarts: 0,
            restart_at: Some(Instant::now()),
            back_off: Duration::from_secs(10),
            last_exit: None,
            waiting: Some(("ContainerCreating".into(), String::new())),
            ready: false,
            started_ok: c.startup.is_none(),
            probes: BTreeMap::new(),
            env: vec![],
        })
        .collect();
    let mut reporter = Reporter::new(&ctx, &pod, started);
    reporter
        .send(&ctx, &sandbox, &containers, spec.restart)
        .await;
    // Volumes and variables read from the API: retried until they can be
    // (the Node authorizer learns a pod's objects a moment after it is
    // bound; kube-root-ca.crt is published a moment after a namespace is
    // made), as a kubelet retries a mount.
    let mut tokens: Vec<TokenFile>;
    loop {
        match prepare(&ctx, &pod_now, &spec, &sandbox.dir).await {
            Ok(t) => {
                tokens = t;
                let mut ok = true;
                for c in &mut containers {
                    match resolve_env(&ctx, &pod_now, &c.spec).await {
                        Ok(env) => c.env = env,
                        Err(e) => {
                            c.waiting = Some(("CreateContainerConfigError".into(), e));
                            ok = false;
                        }
                    }
                }
                if ok {
                    break;
                }
            }
            Err(e) => {
                for c in &mut containers {
                    c.waiting = Some(("ContainerCreating".into(), e.clone()));
                }
            }
        }
        reporter
            .send(&ctx, &sandbox, &containers, spec.restart)
            .await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            r = latest.changed() => if r.is_err() || ending(&latest) {
                stop_all(&mut containers, Duration::ZERO).await;
                cleanup(&ctx, &sandbox).await;
                finish(&ctx, &ns, &name, &uid).await;
                return;
            }
        }
    }
    loop {
        let now_i = Instant::now();
        for c in &mut containers {
            poll_exit(c, spec.restart);
            if c.child.is_none() && c.restart_at.is_some_and(|t| t <= now_i) {
                start(&ctx, &spec, &sandbox, c);
            }
            check_probes(&ctx, c, &sandbox.ip).await;
        }
        for t in &mut tokens {
            if Instant::now() >= t.refresh_at
                && let Err(e) = t.refresh(&ctx, &pod_now).await
            {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "Cannot refresh a service-account token; retrying.");
            }
        }
        reporter
            .send(&ctx, &sandbox, &containers, spec.restart)
            .await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            r = latest.changed() => {
                if r.is_err() || latest.borrow().is_none() {
                    // Gone from the API without a graceful delete: stop now.
                    stop_all(&mut containers, Duration::ZERO).await;
                    cleanup(&ctx, &sandbox).await;
                    return;
                }
                if ending(&latest) {
                    let grace = latest
                        .borrow()
                        .as_ref()
                        .and_then(|p| p.metadata.deletion_grace_period_seconds)
                        .map_or(spec.grace, |s| Duration::from_secs(s.max(0) as u64));
                    stop_all(&mut containers, grace).await;
                    cleanup(&ctx, &sandbox).await;
                    finish(&ctx, &ns, &name, &uid).await;
                    return;
                }
            }
        }
    }
}

fn ids(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

fn ending(latest: &Latest) -> bool {
    latest
        .borrow()
        .as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

async fn wait_for_end(latest: &mut Latest) {
    while !ending(latest) {
        if latest.changed().await.is_err() {
            return;
        }
    }
}

fn set_ips(pod: &mut Pod, ip: &Ipv4Addr, host: &Ipv4Addr) {
    let status = pod.status.get_or_insert_with(Default::default);
    status.pod_ip = Some(ip.to_string());
    status.host_ip = Some(host.to_string());
    status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
        ip: ip.to_string(),
    }]);
    status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
        ip: host.to_string(),
    }]);
}

async fn make_sandbox(ctx: &Arc<Ctx>, pod: &Pod, spec: &PodSpec) -> Result<Sandbox, String> {
    let (ns, name, uid) = ids(pod);
    let dir = ctx.dir.join(format!("{ns}_{name}_{uid}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {} ({e})", dir.display()))?;
    if spec.host_network {
        return Ok(Sandbox {
            ip: ctx.node_ip,
            slot: None,
            veth: None,
            netns: None,
            dir,
        });
    }
    let slot = ctx.take_slot(&uid).ok_or_else(|| {
        format!(
            "node {} has no free pod address left ({} pods at most)",
            ctx.node,
            plan::MAX_PODS_PER_NODE
        )
    })?;
    let veth = sandbox::host_veth(&ns, &name);
    let (plan, i, v) = (ctx.plan.clone(), ctx.node_index, veth.clone());
    let made = tokio::task::spawn_blocking(move || sandbox::create_pod_network(&plan, i, slot, &v))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match made {
        Ok(ip) => Ok(Sandbox {
            ip,
            slot: Some(slot),
            veth: Some(veth),
            netns: Some(ctx.plan.kube_pod_ns(ctx.node_index, slot)),
            dir,
        }),
        Err(e) => {
            ctx.free_slot(slot);
            Err(format!("cannot make the pod's network ({e})"))
        }
    }
}

async fn cleanup(ctx: &Arc<Ctx>, s: &Sandbox) {
    if let (Some(ns), Some(veth)) = (&s.netns, &s.veth) {
        let (ns, veth) = (ns.clone(), veth.clone());
        let _ = tokio::task::spawn_blocking(move || sandbox::remove_pod_network(&ns, &veth)).await;
    }
    if let Some(slot) = s.slot {
        ctx.free_slot(slot);
    }
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Deletes the pod for good, as a kubelet does once its containers are gone.
async fn finish(ctx: &Arc<Ctx>, ns: &str, name: &str, uid: &str) {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .delete(name, &dp)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "Cannot delete the stopped pod.")
        }
    }
}

/// A pod the agent cannot run: Pending, with every container waiting and
/// the reason, as `kubectl get pods` and `describe` show it.
async fn refused(ctx: &Arc<Ctx>, pod: &Pod, r: &Refusal, started: &Time) {
    let (ns, name, _) = ids(pod);
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": false,
                "restartCount": 0, "started": false,
                "state": {"waiting": {"reason": r.reason, "message": r.message}},
            })
        })
        .collect();
    let status = json!({"status": {
        "phase": "Pending",
        "hostIP": ctx.node_ip.to_string(),
        "hostIPs": [{"ip": ctx.node_ip.to_string()}],
        "startTime": started,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "reason": r.reason, "message": r.message},
        ],
        "containerStatuses": containers,
    }});
    if let Err(e) = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "Cannot report why the pod cannot run.");
    }
}

/// A projected token file, and when to ask for a new one.
struct TokenFile {
    path: PathBuf,
    service_account: String,
    audience: Option<String>,
    expiration: Duration,
    refresh_at: Instant,
}

impl TokenFile {
    async fn refresh(&mut self, ctx: &Arc<Ctx>, pod: &Pod) -> Result<(), String> {
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

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
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

fn volume_dir(pod_dir: &Path, volume: &str) -> PathBuf {
    pod_dir.join("volumes").join(volume)
}

/// Writes every volume's files; returns the tokens to keep fresh.
async fn prepare(
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

fn take_key(
    map: Result<BTreeMap<String, Vec<u8>>, String>,
    key: &str,
    name: &str,
) -> Result<Vec<u8>, String> {
    map?.remove(key)
        .ok_or_else(|| format!("{name} has no key \"{key}\""))
}

async fn config_map(
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

async fn secret(ctx: &Arc<Ctx>, ns: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
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
async fn resolve_env(
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

fn hostname_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

/// `limits.memory` or `requests.cpu` (and the like) of a container, in the
/// divisor's units, rounded up as a kubelet rounds.
fn resource_value(pod: &Pod, container: &str, resource: &str, divisor: &str) -> Option<String> {
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

fn node_memory_bytes() -> Option<u64> {
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

/// Starts one container's process in its sandbox.
fn start(ctx: &Arc<Ctx>, spec: &PodSpec, s: &Sandbox, c: &mut Running) {
    c.restart_at = None;
    let cdir = s.dir.join("containers").join(&c.spec.name);
    let root = cdir.join("root");
    let etc = cdir.join("etc");
    let made = (|| {
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("hosts"),
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
                s.ip, spec.hostname
            ),
        )?;
        std::fs::write(etc.join("hostname"), format!("{}\n", spec.hostname))?;
        // The lab runs no cluster DNS; lookups fail at once rather than
        // leave the lab.
        std::fs::write(
            etc.join("resolv.conf"),
            "# The lab runs no cluster DNS: names do not resolve here.\noptions timeout:1 attempts:1\n",
        )?;
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        )?;
        std::fs::write(etc.join("group"), "root:x:0:\nnonroot:x:65532:\n")?;
        std::io::Result::Ok(())
    })();
    if let Err(e) = made {
        c.waiting = Some((
            "CreateContainerError".into(),
            format!("cannot lay out {} ({e})", cdir.display()),
        ));
        c.restart_at = Some(Instant::now() + c.back_off);
        return;
    }
    let mut binds = Vec::new();
    for m in &c.spec.mounts {
        let Some(v) = spec.volumes.iter().find(|v| v.name == m.volume) else {
            continue;
        };
        let base = match &v.kind {
            VolumeKind::HostPath(p) => PathBuf::from(p),
            _ => volume_dir(&s.dir, &v.name),
        };
        let source = match &m.sub_path {
            Some(sp) => base.join(sp),
            None => base,
        };
        let file = source.is_file();
        binds.push(Bind {
            source,
            target: m.path.clone(),
            read_only: m.read_only,
            file,
        });
    }
    let rootfs = Rootfs {
        root,
        exe: ctx.exe.clone(),
        etc,
        system: ctx.system.clone(),
        binds,
        hostname: (!spec.host_network).then(|| spec.hostname.clone()),
    };
    let argv: Vec<String> = c
        .spec
        .argv
        .iter()
        .map(|a| spec::expand(a, &c.env))
        .collect();
    let script = sandbox::launch_script(&rootfs, &c.spec.run_as, &argv);
    let log_path = s.dir.join(format!("{}.log", c.spec.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path);
    let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(p) => p,
        Err(e) => {
            c.waiting = Some((
                "CreateContainerError".into(),
                format!("cannot open {} ({e})", log_path.display()),
            ));
            c.restart_at = Some(Instant::now() + c.back_off);
            return;
        }
    };
    // `ip netns exec` gives the container a mount namespace of its own, with
    // /sys showing its network's devices: the pod's network, or the node's
    // for a host-network pod (which shares the node's host name too).
    let mut cmd = tokio::process::Command::new("ip");
    match &s.netns {
        Some(ns) => cmd.args([
            "netns", "exec", ns, "unshare", "--uts", "sh", "-ec", &script,
        ]),
        None => cmd.args([
            "netns",
            "exec",
            &ctx.plan.node_ns(ctx.node_index),
            "sh",
            "-ec",
            &script,
        ]),
    };
    cmd.env_clear()
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    match cmd.spawn() {
        Ok(child) => {
            c.pid = child.id();
            if let Some(pid) = c.pid {
                let _ = std::fs::write(s.dir.join(format!("{}.pid", c.spec.name)), pid.to_string());
            }
            c.child = Some(child);
            c.started = Some(now());
            c.waiting = None;
            c.ready = false;
            c.started_ok = c.spec.startup.is_none();
            c.probes.clear();
        }
        Err(e) => {
            c.waiting = Some(("CreateContainerError".into(), e.to_string()));
            c.restart_at = Some(Instant::now() + c.back_off);
        }
    }
}

/// Notes a process that exited, and when it may start again.
fn poll_exit(c: &mut Running, restart: Restart) {
    let Some(child) = c.child.as_mut() else {
        return;
    };
    let Ok(Some(status)) = child.try_wait() else {
        return;
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or(128 + status.signal().unwrap_or(0));
    let ran = c
        .started
        .as_ref()
        .map(|t| (k8s_openapi::jiff::Timestamp::now() - t.0).get_seconds())
        .unwrap_or(0);
    c.last_exit = Some(json!({"terminated": {
        "exitCode": code,
        "reason": if code == 0 { "Completed" } else { "Error" },
        "startedAt": c.started,
        "finishedAt": now(),
    }}));
    c.child = None;
    c.pid = None;
    c.ready = false;
    let again = match restart {
        Restart::Always => true,
        Restart::OnFailure => code != 0,
        Restart::Never => false,
    };
    if again {
        // A container that ran ten minutes starts its back-off anew.
        if ran > 600 {
            c.back_off = Duration::from_secs(10);
        }
        c.restarts += 1;
        c.restart_at = Some(Instant::now() + c.back_off);
        c.waiting = Some((
            "CrashLoopBackOff".into(),
            format!(
                "back-off {}s restarting the failed container {}",
                c.back_off.as_secs(),
                c.spec.name
            ),
        ));
        c.back_off = (c.back_off * 2).min(Duration::from_secs(300));
    }
}

async fn probe_once(ctx: &Arc<Ctx>, check: &Check, ip: &Ipv4Addr) -> bool {
    match &check.kind {
        CheckKind::Http { port, path } => {
            let url = format!("http://{ip}:{port}{path}");
            matches!(
                ctx.http.get(&url).timeout(check.timeout).send().await,
                Ok(r) if (200..400).contains(&r.status().as_u16())
            )
        }
        CheckKind::Tcp { port } => matches!(
            tokio::time::timeout(check.timeout, tokio::net::TcpStream::connect((*ip, *port))).await,
            Ok(Ok(_))
        ),
    }
}

/// Runs the checks that are due; a failed liveness check restarts the
/// container, a readiness check sets its readiness.
async fn check_probes(ctx: &Arc<Ctx>, c: &mut Running, ip: &Ipv4Addr) {
    if c.child.is_none() {
        return;
    }
    let started = c.started_instant();
    let mut checks: Vec<(&'static str, Check)> = Vec::new();
    if !c.started_ok {
        checks.extend(c.spec.startup.clone().map(|k| ("startup", k)));
    } else {
        checks.extend(c.spec.readiness.clone().map(|k| ("readiness", k)));
        checks.extend(c.spec.liveness.clone().map(|k| ("liveness", k)));
    }
    if c.started_ok && c.spec.readiness.is_none() {
        c.ready = true;
    }
    for (what, check) in checks {
        let due = {
            let st = c.probes.entry(what).or_default();
            let first = started + check.initial_delay;
            let next = *st.next.get_or_insert(first);
            Instant::now() >= next
        };
        if !due {
            continue;
        }
        let ok = probe_once(ctx, &check, ip).await;
        let st = c.probes.entry(what).or_default();
        st.next = Some(Instant::now() + check.period);
        if ok {
            st.successes += 1;
            st.failures = 0;
        } else {
            st.failures += 1;
            st.successes = 0;
        }
        match what {
            "startup" if ok => c.started_ok = true,
            "readiness" => {
                if ok && st.successes >= check.success_threshold {
                    c.ready = true;
                } else if !ok && st.failures >= check.failure_threshold {
                    c.ready = false;
                }
            }
            "liveness" | "startup" if !ok && st.failures >= check.failure_threshold => {
                tracing::info!(container = %c.spec.name, "The {what} check failed {} times; restarting the container.", st.failures);
                if let Some(pid) = c.pid {
                    signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            _ => {}
        }
    }
}

impl Running {
    fn started_instant(&self) -> Instant {
        let ago = self
            .started
            .as_ref()
            .map(|t| {
                (k8s_openapi::jiff::Timestamp::now() - t.0)
                    .get_milliseconds()
                    .max(0)
            })
            .unwrap_or(0);
        Instant::now() - Duration::from_millis(ago as u64)
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// SIGTERM, up to `grace` for every process to end, then SIGKILL.
async fn stop_all(containers: &mut [Running], grace: Duration) {
    for c in containers.iter() {
        if let Some(pid) = c.pid {
            signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    for c in containers.iter_mut() {
        if let Some(child) = c.child.as_mut() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
        c.child = None;
        c.pid = None;
    }
}

/// The pod's status as a kubelet reports it, sent when it changes.
struct Reporter {
    ns: String,
    name: String,
    started: Time,
    last: Option<Value>,
    since: BTreeMap<String, (String, Time)>,
}

impl Reporter {
    fn new(_ctx: &Arc<Ctx>, pod: &Pod, started: Time) -> Self {
        let (ns, name, _) = ids(pod);
        Self {
            ns,
            name,
            started,
            last: None,
            since: BTreeMap::new(),
        }
    }

    /// A condition's last transition: kept while its status holds.
    fn condition(&mut self, kind: &str, status: bool) -> Value {
        let s = if status { "True" } else { "False" };
        let entry = self
            .since
            .entry(kind.to_string())
            .or_insert_with(|| (s.to_string(), now()));
        if entry.0 != s {
            *entry = (s.to_string(), now());
        }
        json!({"type": kind, "status": s, "lastTransitionTime": entry.1})
    }

    async fn send(
        &mut self,
        ctx: &Arc<Ctx>,
        s: &Sandbox,
        containers: &[Running],
        restart: Restart,
    ) {
        let all_ready = containers.iter().all(|c| c.ready);
        let any_running = containers.iter().any(|c| c.child.is_some());
        let finished = restart == Restart::Never
            && containers
                .iter()
                .all(|c| c.child.is_none() && c.last_exit.is_some());
        let phase = if finished {
            let failed = containers.iter().any(|c| {
                c.last_exit
                    .as_ref()
                    .and_then(|e| e["terminated"]["exitCode"].as_i64())
                    .is_some_and(|code| code != 0)
            });
            if failed { "Failed" } else { "Succeeded" }
        } else if any_running || containers.iter().any(|c| c.restarts > 0) {
            "Running"
        } else {
            "Pending"
        };
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                let state = match (&c.child, &c.waiting) {
                    (Some(_), _) => json!({"running": {"startedAt": c.started}}),
                    (None, Some((reason, message))) => {
                        json!({"waiting": {"reason": reason, "message": message}})
                    }
                    (None, None) => c.last_exit.clone().unwrap_or(json!({"waiting": {}})),
                };
                json!({
                    "name": c.spec.name,
                    "image": c.spec.image,
                    "imageID": "",
                    "containerID": c.pid.map(|p| format!("tailprobe-lab://{p}")),
                    "ready": c.ready,
                    "started": c.child.is_some() && c.started_ok,
                    "restartCount": c.restarts,
                    "state": state,
                    "lastState": c.last_exit.clone().unwrap_or(json!({})),
                })
            })
            .collect();
        let conditions = vec![
            json!({"type": "PodScheduled", "status": "True"}),
            self.condition("PodReadyToStartContainers", true),
            self.condition("Initialized", true),
            self.condition("ContainersReady", all_ready),
            self.condition("Ready", all_ready),
        ];
        let status = json!({
            "phase": phase,
            "hostIP": ctx.node_ip.to_string(),
            "hostIPs": [{"ip": ctx.node_ip.to_string()}],
            "podIP": s.ip.to_string(),
            "podIPs": [{"ip": s.ip.to_string()}],
            "startTime": self.started,
            "conditions": conditions,
            "containerStatuses": statuses,
        });
        if self.last.as_ref() == Some(&status) {
            return;
        }
        match Api::<Pod>::namespaced(ctx.client.clone(), &self.ns)
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => self.last = Some(status),
            Err(kube::Error::Api(e)) if e.code == 404 => self.last = Some(status),
            Err(e) => {
                tracing::warn!(pod = %format!("{}/{}", self.ns, self.name), error = %e, "Cannot report the pod's status; retrying.")
            }
        }
    }
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
