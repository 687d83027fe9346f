//! `[server]`: the daemon's HTTP endpoints, and their bounds.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::validate::Checker;
use super::{ConfigError, Dur};

/// `[server]`: the daemon's HTTP endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Connections open at once; past it a new one is closed on accept.
    pub max_connections: usize,
    /// A request head must arrive within this; idle connections close after it.
    pub header_read_timeout: Dur,
    /// On shutdown, open connections may finish for this long.
    pub shutdown_grace: Dur,
    /// A file holding a bearer token (a mounted Secret): when set, every
    /// endpoint but /healthz and /readyz wants it.
    pub token_file: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9797)),
            max_connections: 256,
            header_read_timeout: Dur::secs(10),
            shutdown_grace: Dur::secs(2),
            token_file: None,
        }
    }
}

impl ServerConfig {
    /// Every bound of `[server]`.
    pub(super) fn check(&self, k: &Checker<'_>) -> Result<(), ConfigError> {
        let s = self;
        k.num(
            &["server", "max_connections"],
            s.max_connections,
            1..=65_536,
            "each open connection holds a descriptor and a little memory",
        )?;
        k.dur(
            &["server", "header_read_timeout"],
            s.header_read_timeout.get(),
            Duration::from_millis(100)..=Duration::from_secs(300),
            "an idle or slow client holds a connection this long",
        )?;
        k.dur(
            &["server", "shutdown_grace"],
            s.shutdown_grace.get(),
            Duration::ZERO..=Duration::from_secs(60),
            "shutdown waits this long on open connections",
        )?;
        Ok(())
    }
}
