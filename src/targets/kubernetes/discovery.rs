//! Watches the API server and keeps the target list current.
//!
//! Only what tailprobe needs, where it lives: the Services and
//! EndpointSlices labelled `tailprobe.io/probe=true`, in the prober's own
//! namespace and in each of `[kubernetes] service_namespaces` (cluster-wide
//! only for `"*"`). The node set comes from the per-node Services, the
//! pod-network probers' addresses from their registration slices: no Node
//! or Pod watch, whose every heartbeat and status write would reach every
//! prober (at 5,000 nodes, each node's status written every few minutes,
//! to 10,000 probers).
//!
//! Each watch runs through kube's watcher (list, then watch from the list's
//! resourceVersion, relist on 410 Gone, exponential backoff on errors) into
//! a reflector store, managedFields dropped. A relist replaces a store only
//! once it is complete, so an outage leaves the last known objects in
//! place: probing goes on with the last targets while
//! `tailprobe_kubernetes_watch_up` shows 0. A 410 is routine: counted in
//! `tailprobe_kubernetes_watch_relists_total`, not as an error.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::metrics::KubeMetrics;
use super::plan::{self, Me, ProberInfo, ServiceInfo, SliceInfo, Snapshot, labels};
use crate::config::KubernetesConfig;
use crate::config::ProbeConfig;
use crate::model::Target;
use crate::ratelimit::RateLimit;

/// Changes closer together than this are planned once.
const SETTLE: Duration = Duration::from_millis(200);

/// The discovered targets; a new value is sent whenever they change.
pub type Targets = watch::Receiver<Arc<Vec<Arc<Target>>>>;

/// Who this prober is, for planning.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node: String,
    pub namespace: String,
    pub echo_port: u16,
    /// Fired when a watch sees this node's Service or one of its slices
    /// deleted: registration applies them again at once.
    pub deleted: Arc<Notify>,
    /// Per-node Services or the pool, and this node's pool slot this round:
    /// what registration applies.
    pub wish: watch::Sender<super::register::Wish>,
}

/// Starts the watches and the planner; they stop with `cancel`.
pub fn start(
    client: Client,
    cfg: KubernetesConfig,
    probe: ProbeConfig,
    me: Identity,
    metrics: KubeMetrics,
    cancel: CancellationToken,
) -> Targets {
    let changed = Arc::new(Notify::new());
    let w = Watches {
        changed: Arc::clone(&changed),
        metrics: metrics.clone(),
        cancel: cancel.clone(),
        own: (
            me.namespace.clone(),
            super::names::node_service(&me.node),
            Arc::clone(&me.deleted),
        ),
    };
    let on = format!("{}=true", labels::PROBE);
    let config = || watcher::Config::default().labels(&on);
    let namespaces = watched_namespaces(&cfg, &me.namespace);
    let (mut services, mut slices) = (Vec::new(), Vec::new());
    for ns in &namespaces {
        let (svc_api, slice_api) = match ns {
            Some(ns) => (
                Api::<Service>::namespaced(client.clone(), ns),
                Api::<EndpointSlice>::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let at = ns.as_deref().unwrap_or("*");
        services.push(w.spawn(
            format!("services/{at}"),
            watcher::watcher(svc_api.clone(), config()).modify(clear_managed_fields),
            answers(svc_api, on.clone()),
        ));
        slices.push(w.spawn(
            format!("endpointslices/{at}"),
            watcher::watcher(slice_api.clone(), config()).modify(clear_managed_fields),
            answers(slice_api, on.clone()),
        ));
    }
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    let stores = Stores {
        namespace: me.namespace.clone(),
        services,
        slices,
    };
    tokio::spawn(planner(
        stores, cfg, probe, me, changed, tx, metrics, cancel,
    ));
    rx
}

/// The namespaces to watch: the prober's own and each of
/// `service_namespaces`; `None` in the list is every namespace (`"*"`).
fn watched_namespaces(cfg: &KubernetesConfig, own: &str) -> Vec<Option<String>> {
    if cfg.service_namespaces.iter().any(|n| n == "*") {
        return vec![None];
    }
    let mut out = vec![Some(own.to_string())];
    for n in &cfg.service_namespaces {
        if !out.iter().any(|o| o.as_deref() == Some(n)) {
            out.push(Some(n.clone()));
        }
    }
    out
}

/// Whether the API server answers a list of what a watch follows (one
/// object, the watch's selector): after an error, a watch that resumes
/// where it was delivers nothing until something changes, so this is how
/// discovery learns it works again.
type Answers = Arc<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

fn answers<K>(api: Api<K>, selector: String) -> Answers
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    Arc::new(move || {
        let (api, selector) = (api.clone(), selector.clone());
        Box::pin(async move {
            api.list_metadata(&kube::api::ListParams::default().labels(&selector).limit(1))
                .await
                .is_ok()
        })
    })
}

fn clear_managed_fields<K: ResourceExt>(o: &mut K) {
    o.managed_fields_mut().clear();
}

struct Watches {
    changed: Arc<Notify>,
    metrics: KubeMetrics,
    cancel: CancellationToken,
    /// This node's namespace, Service name, and whom to tell when it or
    /// one of its slices is deleted.
    own: (String, String, Arc<Notify>),
}

impl Watches {
    /// Runs one watch into a store until cancelled; every change wakes the planner.
    fn spawn<K, S>(&self, resource: String, stream: S, answers: Answers) -> Store<K>
    where
        K: kube::runtime::reflector::Lookup + kube::Resource + Clone + Send + Sync + 'static,
        <K as kube::runtime::reflector::Lookup>::DynamicType:
            Eq + std::hash::Hash + Clone + Default + Send + Sync,
        S: Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
    {
        let (store, writer) = reflector::store::<K>();
        let (changed, metrics, cancel) = (
            Arc::clone(&self.changed),
            self.metrics.clone(),
            self.cancel.clone(),
        );
        let (own_ns, own_service, deleted) = self.own.clone();
        let ours = move |o: &K| {
            let name = o.name_any();
            o.namespace().as_deref() == Some(own_ns.as_str())
                && (name == own_service
                    || name
                        .strip_prefix(own_service.as_str())
                        .is_some_and(|k| k == "-host" || k == "-pod"))
        };
        let reader = store.clone();
        tokio::spawn(async move {
            let log = RateLimit::new(10);
            let mut events = std::pin::pin!(reflector::reflector(writer, stream.default_backoff()));
            let mut down = false;
            // The first list is not a relist: nothing was registered yet.
            let mut relisting = false;
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    next = events.next() => next,
                    // While down, ask every 2 s whether the API server
                    // answers again: a resumed watch says nothing until
                    // something changes.
                    () = async {
                        loop {
                            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                            if answers().await {
                                break;
                            }
                        }
                    }, if down => {
                        down = false;
                        metrics.watch_up(&resource, true);
                        continue;
                    }
                };
                down = matches!(next, Some(Err(ref e)) if !matches!(e, watcher::Error::WatchError(s) if s.code == 410));
                match next {
                    None => return,
                    Some(Ok(Event::Delete(o))) => {
                        if ours(&o) {
                            deleted.notify_one();
                        }
                        metrics.watch_up(&resource, true);
                        metrics.watch_event(&resource);
                        changed.notify_one();
                    }
                    Some(Ok(Event::Apply(_))) => {
                        metrics.watch_up(&resource, true);
                        metrics.watch_event(&resource);
                        changed.notify_one();
                    }
                    Some(Ok(Event::InitDone)) => {
                        // A (re)list: what was deleted meanwhile is simply
                        // absent, with no delete event. This node's own
                        // objects missing is a deletion all the same.
                        if relisting && !reader.state().iter().any(|o| ours(o)) {
                            deleted.notify_one();
                        }
                        relisting = true;
                        metrics.watch_up(&resource, true);
                        changed.notify_one();
                    }
                    Some(Ok(_)) => metrics.watch_up(&resource, true),
                    // The resourceVersion expired: the watcher relists, and
                    // the store stays whole until the new list is complete.
                    Some(Err(watcher::Error::WatchError(status))) if status.code == 410 => {
                        metrics.relist(&resource);
                    }
                    Some(Err(e)) => {
                        metrics.watch_error(&resource);
                        if let Some(suppressed) = log.allow() {
                            match refused(&e) {
                                Some(why) => tracing::warn!(
                                    resource = %resource,
                                    error = %why,
                                    suppressed,
                                    "The API server refused this watch; probing goes on with the last known targets. \
                                     Grant list and watch: deploy/base/rbac.yaml in the prober's namespace, \
                                     deploy/service-namespaces' ClusterRole through a RoleBinding in each other namespace."
                                ),
                                None => tracing::warn!(
                                    resource = %resource,
                                    error = %e,
                                    suppressed,
                                    "Kubernetes watch failed; probing goes on with the last known targets."
                                ),
                            }
                        }
                    }
                }
            }
        });
        store
    }
}

/// The API server's own words when it refused the request (401, 403):
/// an RBAC or credential problem, which retrying alone will not fix.
fn refused(e: &watcher::Error) -> Option<String> {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.as_ref(),
        watcher::Error::WatchError(s) => s.as_ref(),
        _ => return None,
    };
    matches!(api.code, 401 | 403).then(|| format!("{} {}: {}", api.code, api.reason, api.message))
}

struct Stores {
    /// The prober's own namespace: the per-node Services and the probers'
    /// registration slices live there.
    namespace: String,
    services: Vec<Store<Service>>,
    slices: Vec<Store<EndpointSlice>>,
}

impl Stores {
    async fn ready(&self) {
        for s in &self.services {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.slices {
            let _ = s.wait_until_ready().await;
        }
    }

    fn snapshot(&self) -> Snapshot {
        let services: Vec<ServiceInfo> = self
            .services
            .iter()
            .flat_map(|s| s.state())
            .map(|s| ServiceInfo::from(s.as_ref()))
            .collect();
        let slices: Vec<Arc<EndpointSlice>> = self.slices.iter().flat_map(|s| s.state()).collect();
        let probers: Vec<ProberInfo> = slices
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(self.namespace.as_str()))
            .filter_map(|s| ProberInfo::from_slice(s))
            .collect();
        Snapshot {
            nodes: plan::nodes_of(&services, &probers, &self.namespace),
            probers,
            slices: slices.iter().map(|s| SliceInfo::from(s.as_ref())).collect(),
            services,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn planner(
    stores: Stores,
    cfg: KubernetesConfig,
    probe: ProbeConfig,
    me: Identity,
    changed: Arc<Notify>,
    tx: watch::Sender<Arc<Vec<Arc<Target>>>>,
    metrics: KubeMetrics,
    cancel: CancellationToken,
) {
    // Planning before every store has listed once would drop targets that
    // are merely not loaded yet.
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = stores.ready() => {}
    }
    let round = cfg.round.get();
    let api = super::apiserver::ApiServer::from_env(
        |k| std::env::var(k).ok(),
        std::path::Path::new(super::apiserver::SERVICE_ACCOUNT_DIR),
    );
    // The node's own address, where its NodePorts listen (the downward
    // API's status.hostIP).
    let host_ip = std::env::var("HOST_IP").ok().filter(|ip| !ip.is_empty());
    let who = Me {
        host_ip: host_ip.as_deref(),
        node: &me.node,
        namespace: &me.namespace,
        echo_port: me.echo_port,
        api_server: api.as_ref(),
    };
    let mut rejected: Vec<String> = Vec::new();
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let round_no = now.as_secs() / round.as_secs().max(1);
        let p = plan::plan(&stores.snapshot(), &who, &cfg, &probe, round_no);
        metrics.set_plan(&p, round);
        let wish = super::register::Wish {
            pool: p.pool,
            slot: p.pool_slot,
            node_port: cfg.node_ports,
        };
        me.wish.send_if_modified(|w| {
            let changed = *w != wish;
            *w = wish;
            changed
        });
        if p.rejected != rejected {
            for why in p.rejected.iter().filter(|w| !rejected.contains(w)) {
                tracing::warn!(service = %why, "An opted-in Service cannot be probed.");
            }
            rejected = p.rejected.clone();
        }
        let fresh: Vec<Arc<Target>> = p.targets.into_iter().map(Arc::new).collect();
        tx.send_if_modified(|old| {
            let same = old.len() == fresh.len()
                && old
                    .iter()
                    .zip(&fresh)
                    .all(|(a, b)| a.name == b.name && a.url == b.url && a.node == b.node);
            if !same {
                tracing::info!(
                    targets = fresh.len(),
                    remote_nodes = p.remote_nodes,
                    remote_nodes_probed = p.remote_nodes_probed,
                    "Discovered targets changed."
                );
                *old = Arc::new(fresh);
            }
            !same
        });
        let next_round =
            Duration::from_secs((round_no + 1) * round.as_secs().max(1)).saturating_sub(now);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = changed.notified() => tokio::time::sleep(SETTLE).await,
            _ = tokio::time::sleep(next_round) => {}
        }
    }
}
