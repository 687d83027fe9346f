//! The Kubernetes part: the echo target a node's Service points at, this
//! pod's registration, and discovery feeding the targets channel.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Core, DaemonError};
use crate::model::{Target, TargetList};

/// What runs for `[kubernetes]`: the echo target, registration, and
/// discovery, whose targets, merged with the configured ones, go on the
/// daemon's targets channel.
pub(super) struct Kube {
    /// Ends after the pod's EndpointSlice is withdrawn.
    registration: tokio::task::JoinHandle<()>,
    /// Ends when discovery does (at cancellation).
    forward: tokio::task::JoinHandle<()>,
}

impl Kube {
    /// Starts the echo target (it answers until `server_stop`, after
    /// registration is withdrawn), registration and discovery.
    pub async fn start(
        core: &Core,
        k: &crate::config::KubernetesConfig,
        targets: watch::Sender<TargetList>,
        cancel: &CancellationToken,
        server_stop: CancellationToken,
    ) -> Result<Kube, DaemonError> {
        let (loaded, prober) = (&core.loaded, &core.prober);
        let metrics = core.metrics.kube.clone();
        let echo_counters = super::api::server_counters(&core.metrics, "echo");
        use crate::targets::kubernetes::{self, discovery, register};
        let client = kubernetes::client().await?;
        let namespace = k.namespace();
        let node = prober.source_node.to_string();
        let listener =
            TcpListener::bind(k.echo_listen)
                .await
                .map_err(|source| DaemonError::EchoBind {
                    addr: k.echo_listen,
                    source,
                })?;
        let echo_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let id = crate::server::echo::EchoIdentity {
            node: node.clone(),
            pod: std::env::var("POD_NAME").unwrap_or_else(|_| "tailprobe".into()),
        };
        // The echo answers until the server stops, after registration is withdrawn.
        tokio::spawn(crate::server::echo::serve(
            listener,
            id,
            crate::server::echo::Delay::None,
            crate::server::http::Limits::ECHO,
            echo_counters,
            server_stop,
        ));
        let deleted = Arc::new(tokio::sync::Notify::new());
        let (wish, wishes) = tokio::sync::watch::channel(register::Wish::default());
        let registration = match register::PodIdentity::from_env(
            namespace.clone(),
            node.clone(),
            prober.source_kind,
            echo_port,
        ) {
            Ok(pod) => tokio::spawn(register::keep(
                client.clone(),
                pod,
                k.node_service_port,
                k.reapply.get(),
                metrics.clone(),
                Arc::clone(&deleted),
                wishes,
                cancel.clone(),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "Not registering this node's Service; discovery only.");
                tokio::spawn(async {})
            }
        };
        let discovered = discovery::start(
            client,
            k.clone(),
            loaded.config.probe.clone(),
            discovery::Identity {
                node,
                namespace,
                echo_port,
                deleted,
                wish,
            },
            metrics,
            cancel.clone(),
        );
        let configured = loaded.targets.clone();
        let forward = tokio::spawn(forward(configured, discovered, targets));
        Ok(Kube {
            registration,
            forward,
        })
    }

    /// Waits for registration to be withdrawn and discovery to end.
    pub async fn shutdown(self) {
        let _ = self.registration.await;
        let _ = self.forward.await;
    }
}

/// Sends the configured targets with what discovery found, on every
/// change, until discovery ends.
async fn forward(
    configured: Vec<Arc<Target>>,
    mut discovered: crate::targets::kubernetes::discovery::Targets,
    targets: watch::Sender<TargetList>,
) {
    while discovered.changed().await.is_ok() {
        let found = Arc::clone(&discovered.borrow_and_update());
        targets.send_replace(Arc::new(crate::targets::merge(&configured, &found)));
    }
}
