//! What discovery sees of the API server, and what it made of it, as
//! Prometheus metrics. Discovery owns them; `export::prometheus` registers
//! them with the rest, so discovery never reaches into the exporters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// What discovery sees of the API server, and what it made of it.
#[derive(Clone)]
pub struct KubeMetrics {
    watch_up: Family<ResourceLabels, Gauge>,
    watch_errors: Family<ResourceLabels, Counter>,
    watch_events: Family<ResourceLabels, Counter>,
    relists: Family<ResourceLabels, Counter>,
    targets: Gauge,
    targets_over_limit: Gauge,
    remote_nodes: Gauge,
    remote_nodes_probed: Gauge,
    cycle: Gauge,
    applies: Family<ResultLabels, Counter>,
}

impl KubeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            watch_up: Family::default(),
            watch_errors: Family::default(),
            watch_events: Family::default(),
            relists: Family::default(),
            targets: Gauge::default(),
            targets_over_limit: Gauge::default(),
            remote_nodes: Gauge::default(),
            remote_nodes_probed: Gauge::default(),
            cycle: Gauge::default(),
            applies: Family::default(),
        };
        registry.register(
            "kubernetes_watch_up",
            "1 while the watch of a resource works, 0 after an error (probing goes on with the last targets)",
            m.watch_up.clone(),
        );
        registry.register(
            "kubernetes_watch_errors",
            "Errors of the watch of each resource (API server unreachable, forbidden); a routine 410 Gone is a relist, not an error",
            m.watch_errors.clone(),
        );
        registry.register(
            "kubernetes_watch_events",
            "Objects added, changed or deleted that the watch of each resource delivered (relists not counted): what discovery costs the API server and this prober",
            m.watch_events.clone(),
        );
        registry.register(
            "kubernetes_watch_relists",
            "Relists after 410 Gone (the watch's resourceVersion expired): routine, the store stays whole meanwhile",
            m.relists.clone(),
        );
        registry.register(
            "kubernetes_targets",
            "Targets discovered from the Kubernetes API",
            m.targets.clone(),
        );
        registry.register(
            "kubernetes_targets_over_limit",
            "Discovered targets left out because [kubernetes] max_targets were planned (named in the log)",
            m.targets_over_limit.clone(),
        );
        registry.register(
            "kubernetes_remote_nodes",
            "Nodes other than this prober's",
            m.remote_nodes.clone(),
        );
        registry.register(
            "kubernetes_remote_nodes_probed",
            "Remote nodes probed this round (all of them up to full_mesh_max_nodes)",
            m.remote_nodes_probed.clone(),
        );
        registry.register(
            "kubernetes_pinglist_cycle_seconds",
            "Time within which every remote node is probed at least once",
            m.cycle.clone(),
        );
        registry.register(
            "kubernetes_node_service_applies",
            "Server-side applies of this node's Service and EndpointSlice, by result",
            m.applies.clone(),
        );
        m
    }

    pub fn watch_up(&self, resource: &str, up: bool) {
        self.watch_up
            .get_or_create(&ResourceLabels {
                resource: resource.into(),
            })
            .set(i64::from(up));
    }

    pub fn watch_error(&self, resource: &str) {
        self.watch_up(resource, false);
        self.watch_errors
            .get_or_create(&ResourceLabels {
                resource: resource.into(),
            })
            .inc();
    }

    /// An object added, changed or deleted, as a watch event.
    pub fn watch_event(&self, resource: &str) {
        self.watch_events
            .get_or_create(&ResourceLabels {
                resource: resource.into(),
            })
            .inc();
    }

    /// A 410 Gone: the watcher relists; the watch is not down.
    pub fn relist(&self, resource: &str) {
        self.relists
            .get_or_create(&ResourceLabels {
                resource: resource.into(),
            })
            .inc();
    }

    pub fn set_plan(&self, p: &super::plan::Plan, round: std::time::Duration) {
        self.targets.set(p.targets.len() as i64);
        self.targets_over_limit.set(p.over_limit as i64);
        self.remote_nodes.set(p.remote_nodes as i64);
        self.remote_nodes_probed.set(p.remote_nodes_probed as i64);
        let cycle = if p.rounds_per_cycle <= 1 {
            0
        } else {
            p.rounds_per_cycle * round.as_secs()
        };
        self.cycle.set(cycle as i64);
    }

    pub fn applied(&self, ok: bool) {
        self.applies
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }
}
