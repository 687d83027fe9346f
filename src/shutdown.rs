//! One cancellation signal for every task, fired by SIGTERM or SIGINT. A
//! second signal ends the process at once: an operator who asks twice is
//! not kept waiting on a drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The signal that cancelled the run, if one did.
#[derive(Debug, Clone, Default)]
pub struct Caught(Arc<AtomicI32>);

impl Caught {
    /// The signal's number (2 SIGINT, 15 SIGTERM).
    pub fn number(&self) -> Option<i32> {
        Some(self.0.load(Ordering::Relaxed)).filter(|n| *n != 0)
    }

    pub fn name(&self) -> Option<&'static str> {
        self.number()
            .map(|n| if n == 2 { "SIGINT" } else { "SIGTERM" })
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT, and says which it was;
/// exits on the second.
pub fn cancel_on_signals(token: CancellationToken) -> Caught {
    let caught = Caught::default();
    let record = caught.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("Cannot install signal handlers; stop the process with SIGKILL.");
            return;
        };
        let n = tokio::select! {
            _ = term.recv() => 15,
            _ = int.recv() => 2,
        };
        record.0.store(n, Ordering::Relaxed);
        tracing::info!(signal = record.name().unwrap_or_default(), "Shutting down.");
        token.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("Second signal: exiting without draining.");
        std::process::exit(130);
    });
    caught
}
