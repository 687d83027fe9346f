//! Runs a closure on a thread that has entered a network namespace. Sockets
//! keep the namespace they were created in, so a runtime on that thread
//! probes from inside the namespace while the process stays outside.

use std::fs::File;

use nix::sched::{CloneFlags, setns};

use super::LabError;

/// Runs `f` on a new thread inside the named namespace and waits for it.
pub fn run_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    spawn_in(ns, f)?.join().map_err(|_| LabError::Kernel {
        what: format!("the thread in namespace {ns} panicked"),
    })?
}

/// Starts `f` on a new thread inside the named namespace (`ip netns` naming).
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T, LabError>>, LabError> {
    let path = format!("/var/run/netns/{ns}");
    let file = File::open(&path).map_err(|e| LabError::Kernel {
        what: format!("cannot open {path} ({e}); is the lab up? run `tailprobe lab up`"),
    })?;
    let name = ns.to_string();
    std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| LabError::Kernel {
                what: format!("cannot enter namespace {name} ({e}); run as root"),
            })?;
            Ok(f())
        })
        .map_err(|e| LabError::Kernel {
            what: format!("cannot start a thread ({e})"),
        })
}
