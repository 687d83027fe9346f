//! One pod on the agent's node, from its spec to its deletion: the sandbox,
//! the volumes and variables (`volumes`), the containers (`container`),
//! and the status a kubelet reports (`status`), until the pod is deleted
//! (then it is removed for good) or leaves the API (then it stops at once).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Ctx;
use super::container::{Running, check_probes, poll_exit, start, stop_all};
use super::sandbox;
use super::spec::{self, PodSpec, Refusal};
use super::status::{Reporter, now};
use super::volumes::{TokenFile, prepare, resolve_env};
use crate::lab::plan;

/// The pod as the watch last saw it; `None` once it left the API.
pub type Latest = watch::Receiver<Option<Pod>>;

/// Everything the agent keeps of a pod while it runs.
pub(super) struct Sandbox {
    pub(super) ip: Ipv4Addr,
    pub(super) slot: Option<usize>,
    pub(super) veth: Option<String>,
    pub(super) netns: Option<String>,
    pub(super) dir: PathBuf,
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

pub(super) fn ids(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

pub(super) fn ending(latest: &Latest) -> bool {
    latest
        .borrow()
        .as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

pub(super) async fn wait_for_end(latest: &mut Latest) {
    while !ending(latest) {
        if latest.changed().await.is_err() {
            return;
        }
    }
}

pub(super) fn set_ips(pod: &mut Pod, ip: &Ipv4Addr, host: &Ipv4Addr) {
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

pub(super) async fn make_sandbox(
    ctx: &Arc<Ctx>,
    pod: &Pod,
    spec: &PodSpec,
) -> Result<Sandbox, String> {
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

pub(super) async fn cleanup(ctx: &Arc<Ctx>, s: &Sandbox) {
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
pub(super) async fn finish(ctx: &Arc<Ctx>, ns: &str, name: &str, uid: &str) {
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
pub(super) async fn refused(ctx: &Arc<Ctx>, pod: &Pod, r: &Refusal, started: &Time) {
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
