//! One process of the lab's cluster (etcd, a control-plane component,
//! kube-proxy, a node agent): started detached in its namespace, its
//! command kept on disk so it can be stopped, paused and started again
//! exactly as `up` started it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::state;
use crate::lab::{LabError, netns};

/// One process of the lab's cluster, kept on disk so `lab restart` can
/// start it again exactly as `up` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proc {
    pub name: String,
    pub ns: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Entered into `ns`'s network only (nsenter), staying in the caller's
    /// mount namespace: a node agent's `ip netns add` must reach every
    /// tool's view of /run/netns, which `ip netns exec`'s private mount
    /// namespace would hide.
    #[serde(default)]
    pub net_only: bool,
}

impl Proc {
    fn file(prefix: &str, name: &str) -> PathBuf {
        state(prefix).join("procs").join(format!("{name}.json"))
    }

    pub fn log(&self, prefix: &str) -> PathBuf {
        state(prefix)
            .join("logs")
            .join(format!("{}.log", self.name))
    }

    /// Starts it, detached, its output in its log; the child is for
    /// telling whether it ended while it starts.
    pub fn spawn(&self, prefix: &str) -> Result<std::process::Child, LabError> {
        let file = Self::file(prefix, &self.name);
        let _ = std::fs::create_dir_all(file.parent().expect("a parent"));
        let _ = std::fs::create_dir_all(self.log(prefix).parent().expect("a parent"));
        std::fs::write(&file, serde_json::to_vec(self).expect("serializes")).map_err(|e| {
            LabError::Kernel {
                what: format!("cannot write {} ({e})", file.display()),
            }
        })?;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        if self.net_only {
            crate::lab::spawn_net_only(&self.ns, &self.program, &args, &self.log(prefix))
        } else {
            crate::lab::spawn_program(&self.ns, &self.program, &args, &self.log(prefix), &[])
        }
    }

    pub fn load(prefix: &str, name: &str) -> Result<Self, LabError> {
        let file = Self::file(prefix, name);
        let text = std::fs::read(&file).map_err(|_| {
            LabError::Usage(format!(
                "lab {prefix} has no component \"{name}\"; it has {}",
                Self::names(prefix).join(", ")
            ))
        })?;
        serde_json::from_slice(&text).map_err(|e| LabError::Kernel {
            what: format!("cannot read {} ({e})", file.display()),
        })
    }

    /// The components this lab started.
    pub fn names(prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(state(prefix).join("procs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.path()
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .collect();
        v.sort();
        v
    }

    /// Its pids: processes in its namespace running its program with its
    /// arguments.
    pub fn pids(&self) -> Vec<i32> {
        let out = crate::lab::sh::run("ip", &["netns", "pids", &self.ns], None).unwrap_or_default();
        out.split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let argv: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    argv.first()
                        .is_some_and(|a| *a == self.program.as_os_str().as_encoded_bytes())
                        && self
                            .args
                            .iter()
                            .zip(argv.iter().skip(1))
                            .all(|(want, got)| want.as_bytes() == *got)
                })
            })
            .collect()
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s) and starts it again.
    pub fn restart(&self, prefix: &str) -> Result<(), LabError> {
        self.stop();
        self.start(prefix)
    }

    /// Starts it, as [`Proc::spawn`], and reaps it on a thread of its own
    /// when it ends, so a long-lived caller collects no zombie.
    pub fn start(&self, prefix: &str) -> Result<(), LabError> {
        reap(self.spawn(prefix)?);
        Ok(())
    }

    /// Stops it: SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&self) {
        for pid in self.pids() {
            crate::lab::signal(&pid.to_string(), nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in self.pids() {
            crate::lab::signal(&pid.to_string(), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) it: a hung process, not a
    /// dead one.
    pub fn pause(&self, paused: bool) {
        let sig = if paused {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        for pid in self.pids() {
            crate::lab::signal(&pid.to_string(), sig);
        }
    }
}

/// Waits for a child on a thread of its own: it is reaped whenever it ends.
pub(super) fn reap(mut child: std::process::Child) {
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// Waits until a TCP connection to `addr` from inside `ns` succeeds; fails
/// at once, with the last error its log holds, if `proc` ends meanwhile.
pub(super) fn wait_tcp(
    ns: &str,
    addr: &str,
    within: Duration,
    proc: &Proc,
    child: &mut std::process::Child,
    prefix: &str,
) -> Result<(), LabError> {
    let target: std::net::SocketAddr = addr.parse().expect("a socket address");
    let deadline = Instant::now() + within;
    let log = proc.log(prefix);
    loop {
        let ok = netns::run_in(ns, move || {
            std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok()
        })?;
        if ok {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::Kernel {
                what: format!(
                    "{} stopped while starting ({status}): {}; its log is {}",
                    proc.name,
                    last_error(&log),
                    log.display()
                ),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::Kernel {
                what: format!(
                    "nothing answered on {addr} inside {ns} after {}s; see {}",
                    within.as_secs(),
                    log.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last line of a log that reads as an error (else its last line), for
/// a one-line message.
pub(super) fn last_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with('e') || l.contains("error") || l.contains("fatal")
        })
        .or(lines.last())
        .map(|l| l.chars().take(400).collect())
        .unwrap_or_else(|| "it logged nothing".into())
}
