//! A pod's status as a kubelet reports it: phase, conditions with their
//! transition times, IPs, each container's state and restarts; sent when
//! it changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::Ctx;
use super::container::Running;
use super::pod::{Sandbox, ids};
use super::spec::Restart;

pub(super) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The pod's status as a kubelet reports it, sent when it changes.
pub(super) struct Reporter {
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) started: Time,
    pub(super) last: Option<Value>,
    pub(super) since: BTreeMap<String, (String, Time)>,
}

impl Reporter {
    pub(super) fn new(_ctx: &Arc<Ctx>, pod: &Pod, started: Time) -> Self {
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
    pub(super) fn condition(&mut self, kind: &str, status: bool) -> Value {
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

    pub(super) async fn send(
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
