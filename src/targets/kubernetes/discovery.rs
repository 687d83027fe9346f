//! Watches the API server and keeps the target list current.
//!
//! One watch per kind, each through kube's watcher (list, then watch from the
//! list's resourceVersion, relist on 410 Gone, exponential backoff on errors)
//! into a reflector store. A relist replaces a store only once it is complete,
//! so an outage leaves the last known objects in place: probing goes on with
//! the last targets while `tailprobe_kubernetes_watch_up` shows 0.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::core::PartialObjectMeta;
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
    };
    let on = format!("{}=true", labels::PROBE);
    let nodes = w.spawn(
        "nodes",
        // Metadata only: a Node's status (images, conditions) is large, and
        // only names matter here.
        watcher::watcher(
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(clear_managed_fields),
    );
    // Only the prober pods of this namespace are trusted (see `plan`), so
    // only they are watched: a cluster-wide pod watch would hand every
    // prober every pod spec in the cluster, env values included.
    let pods = w.spawn(
        "pods",
        watcher::watcher(
            Api::<Pod>::namespaced(client.clone(), &me.namespace),
            watcher::Config::default().labels(&cfg.prober_selector),
        )
        .modify(clear_managed_fields),
    );
    let services = w.spawn(
        "services",
        watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(&on),
        )
        .modify(clear_managed_fields),
    );
    let slices = w.spawn(
        "endpointslices",
        watcher::watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default().labels(&on),
        )
        .modify(clear_managed_fields),
    );
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    let stores = Stores {
        nodes,
        pods,
        services,
        slices,
    };
    tokio::spawn(planner(
        stores, cfg, probe, me, changed, tx, metrics, cancel,
    ));
    rx
}

fn clear_managed_fields<K: ResourceExt>(o: &mut K) {
    o.managed_fields_mut().clear();
}

struct Watches {
    changed: Arc<Notify>,
    metrics: KubeMetrics,
    cancel: CancellationToken,
}

impl Watches {
    /// Runs one watch into a store until cancelled; every change wakes the planner.
    fn spawn<K, S>(&self, resource: &'static str, stream: S) -> Store<K>
    where
        K: kube::runtime::reflector::Lookup + Clone + Send + Sync + 'static,
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
        tokio::spawn(async move {
            let log = RateLimit::new(10);
            let mut events = std::pin::pin!(reflector::reflector(writer, stream.default_backoff()));
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    next = events.next() => next,
                };
                match next {
                    None => return,
                    Some(Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone)) => {
                        metrics.watch_up(resource, true);
                        changed.notify_one();
                    }
                    Some(Ok(_)) => metrics.watch_up(resource, true),
                    Some(Err(e)) => {
                        metrics.watch_error(resource);
                        if let Some(suppressed) = log.allow() {
                            tracing::warn!(
                                resource,
                                error = %e,
                                suppressed,
                                "Kubernetes watch failed; probing goes on with the last known targets."
                            );
                        }
                    }
                }
            }
        });
        store
    }
}

struct Stores {
    nodes: Store<PartialObjectMeta<Node>>,
    pods: Store<Pod>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
}

impl Stores {
    async fn ready(&self) {
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
    }

    fn snapshot(&self) -> Snapshot {
        let mut nodes: Vec<String> = self.nodes.state().iter().map(|n| n.name_any()).collect();
        nodes.sort();
        Snapshot {
            nodes,
            probers: self
                .pods
                .state()
                .iter()
                .filter_map(|p| ProberInfo::from_pod(p))
                .collect(),
            services: self
                .services
                .state()
                .iter()
                .map(|s| ServiceInfo::from(s.as_ref()))
                .collect(),
            slices: self
                .slices
                .state()
                .iter()
                .map(|s| SliceInfo::from(s.as_ref()))
                .collect(),
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
    let who = Me {
        node: &me.node,
        namespace: &me.namespace,
        echo_port: me.echo_port,
    };
    let mut rejected: Vec<String> = Vec::new();
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let round_no = now.as_secs() / round.as_secs().max(1);
        let p = plan::plan(&stores.snapshot(), &who, &cfg, &probe, round_no);
        metrics.set_plan(&p, round);
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
