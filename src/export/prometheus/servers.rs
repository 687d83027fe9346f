//! The bounded HTTP servers' losses (the API, the echo target): connections
//! refused at the limit and cut at shutdown, per server.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::labels::ServerLabels;

pub struct ServerMetrics {
    refused: Family<ServerLabels, Counter>,
    cut: Family<ServerLabels, Counter>,
}

impl ServerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let refused = Family::<ServerLabels, Counter>::default();
        registry.register(
            "server_connections_refused",
            "Connections closed on accept because the server's connection limit was reached (server: api, echo)",
            refused.clone(),
        );
        let cut = Family::<ServerLabels, Counter>::default();
        registry.register(
            "server_connections_cut",
            "Connections closed at shutdown because they outlived the shutdown grace",
            cut.clone(),
        );
        Self { refused, cut }
    }

    /// The counters the server `server` reports into: connections refused
    /// at the limit, and cut at shutdown.
    pub fn of(&self, server: &str) -> (Counter, Counter) {
        let l = ServerLabels {
            server: server.into(),
        };
        (
            self.refused.get_or_create(&l).clone(),
            self.cut.get_or_create(&l).clone(),
        )
    }
}
