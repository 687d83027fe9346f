//! A container's process: started in its sandbox, watched for its exit and
//! restarted with a back-off, checked for readiness and liveness, stopped
//! with its grace period.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::Ctx;
use super::pod::Sandbox;
use super::sandbox::{self, Bind, Rootfs};
use super::spec::{self, Check, CheckKind, ContainerSpec, PodSpec, Restart, VolumeKind};
use super::status::now;
use super::volumes::volume_dir;

/// How one container is doing.
pub(super) struct Running {
    pub(super) spec: ContainerSpec,
    pub(super) child: Option<tokio::process::Child>,
    pub(super) pid: Option<u32>,
    pub(super) started: Option<Time>,
    pub(super) restarts: i32,
    /// When a stopped container may start again (back-off).
    pub(super) restart_at: Option<Instant>,
    pub(super) back_off: Duration,
    pub(super) last_exit: Option<Value>,
    pub(super) waiting: Option<(String, String)>,
    pub(super) ready: bool,
    pub(super) started_ok: bool,
    pub(super) probes: BTreeMap<&'static str, ProbeState>,
    pub(super) env: Vec<(String, String)>,
}

#[derive(Default)]
pub(super) struct ProbeState {
    pub(super) next: Option<Instant>,
    pub(super) successes: u32,
    pub(super) failures: u32,
}

/// Starts one container's process in its sandbox.
pub(super) fn start(ctx: &Arc<Ctx>, spec: &PodSpec, s: &Sandbox, c: &mut Running) {
    c.restart_at = None;
    let cdir = s.dir.join("containers").join(&c.spec.name);
    let root = cdir.join("root");
    let etc = cdir.join("etc");
    let made = (|| {
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("hosts"),
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
                s.ip, spec.hostname
            ),
        )?;
        std::fs::write(etc.join("hostname"), format!("{}\n", spec.hostname))?;
        // The lab runs no cluster DNS; lookups fail at once rather than
        // leave the lab.
        std::fs::write(
            etc.join("resolv.conf"),
            "# The lab runs no cluster DNS: names do not resolve here.\noptions timeout:1 attempts:1\n",
        )?;
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        )?;
        std::fs::write(etc.join("group"), "root:x:0:\nnonroot:x:65532:\n")?;
        std::io::Result::Ok(())
    })();
    if let Err(e) = made {
        c.waiting = Some((
            "CreateContainerError".into(),
            format!("cannot lay out {} ({e})", cdir.display()),
        ));
        c.restart_at = Some(Instant::now() + c.back_off);
        return;
    }
    let mut binds = Vec::new();
    for m in &c.spec.mounts {
        let Some(v) = spec.volumes.iter().find(|v| v.name == m.volume) else {
            continue;
        };
        let base = match &v.kind {
            VolumeKind::HostPath(p) => PathBuf::from(p),
            _ => volume_dir(&s.dir, &v.name),
        };
        let source = match &m.sub_path {
            Some(sp) => base.join(sp),
            None => base,
        };
        let file = source.is_file();
        binds.push(Bind {
            source,
            target: m.path.clone(),
            read_only: m.read_only,
            file,
        });
    }
    let rootfs = Rootfs {
        root,
        exe: ctx.exe.clone(),
        etc,
        system: ctx.system.clone(),
        binds,
        hostname: (!spec.host_network).then(|| spec.hostname.clone()),
    };
    let argv: Vec<String> = c
        .spec
        .argv
        .iter()
        .map(|a| spec::expand(a, &c.env))
        .collect();
    let script = sandbox::launch_script(&rootfs, &c.spec.run_as, &argv);
    let log_path = s.dir.join(format!("{}.log", c.spec.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path);
    let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(p) => p,
        Err(e) => {
            c.waiting = Some((
                "CreateContainerError".into(),
                format!("cannot open {} ({e})", log_path.display()),
            ));
            c.restart_at = Some(Instant::now() + c.back_off);
            return;
        }
    };
    // `ip netns exec` gives the container a mount namespace of its own, with
    // /sys showing its network's devices: the pod's network, or the node's
    // for a host-network pod (which shares the node's host name too).
    let mut cmd = tokio::process::Command::new("ip");
    match &s.netns {
        Some(ns) => cmd.args([
            "netns", "exec", ns, "unshare", "--uts", "sh", "-ec", &script,
        ]),
        None => cmd.args([
            "netns",
            "exec",
            &ctx.plan.node_ns(ctx.node_index),
            "sh",
            "-ec",
            &script,
        ]),
    };
    cmd.env_clear()
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    match cmd.spawn() {
        Ok(child) => {
            c.pid = child.id();
            if let Some(pid) = c.pid {
                let _ = std::fs::write(s.dir.join(format!("{}.pid", c.spec.name)), pid.to_string());
            }
            c.child = Some(child);
            c.started = Some(now());
            c.waiting = None;
            c.ready = false;
            c.started_ok = c.spec.startup.is_none();
            c.probes.clear();
        }
        Err(e) => {
            c.waiting = Some(("CreateContainerError".into(), e.to_string()));
            c.restart_at = Some(Instant::now() + c.back_off);
        }
    }
}

/// Notes a process that exited, and when it may start again.
pub(super) fn poll_exit(c: &mut Running, restart: Restart) {
    let Some(child) = c.child.as_mut() else {
        return;
    };
    let Ok(Some(status)) = child.try_wait() else {
        return;
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or(128 + status.signal().unwrap_or(0));
    let ran = c
        .started
        .as_ref()
        .map(|t| (k8s_openapi::jiff::Timestamp::now() - t.0).get_seconds())
        .unwrap_or(0);
    c.last_exit = Some(json!({"terminated": {
        "exitCode": code,
        "reason": if code == 0 { "Completed" } else { "Error" },
        "startedAt": c.started,
        "finishedAt": now(),
    }}));
    c.child = None;
    c.pid = None;
    c.ready = false;
    let again = match restart {
        Restart::Always => true,
        Restart::OnFailure => code != 0,
        Restart::Never => false,
    };
    if again {
        // A container that ran ten minutes starts its back-off anew.
        if ran > 600 {
            c.back_off = Duration::from_secs(10);
        }
        c.restarts += 1;
        c.restart_at = Some(Instant::now() + c.back_off);
        c.waiting = Some((
            "CrashLoopBackOff".into(),
            format!(
                "back-off {}s restarting the failed container {}",
                c.back_off.as_secs(),
                c.spec.name
            ),
        ));
        c.back_off = (c.back_off * 2).min(Duration::from_secs(300));
    }
}

pub(super) async fn probe_once(ctx: &Arc<Ctx>, check: &Check, ip: &Ipv4Addr) -> bool {
    match &check.kind {
        CheckKind::Http { port, path } => {
            let url = format!("http://{ip}:{port}{path}");
            matches!(
                ctx.http.get(&url).timeout(check.timeout).send().await,
                Ok(r) if (200..400).contains(&r.status().as_u16())
            )
        }
        CheckKind::Tcp { port } => matches!(
            tokio::time::timeout(check.timeout, tokio::net::TcpStream::connect((*ip, *port))).await,
            Ok(Ok(_))
        ),
    }
}

/// Runs the checks that are due; a failed liveness check restarts the
/// container, a readiness check sets its readiness.
pub(super) async fn check_probes(ctx: &Arc<Ctx>, c: &mut Running, ip: &Ipv4Addr) {
    if c.child.is_none() {
        return;
    }
    let started = c.started_instant();
    let mut checks: Vec<(&'static str, Check)> = Vec::new();
    if !c.started_ok {
        checks.extend(c.spec.startup.clone().map(|k| ("startup", k)));
    } else {
        checks.extend(c.spec.readiness.clone().map(|k| ("readiness", k)));
        checks.extend(c.spec.liveness.clone().map(|k| ("liveness", k)));
    }
    if c.started_ok && c.spec.readiness.is_none() {
        c.ready = true;
    }
    for (what, check) in checks {
        let due = {
            let st = c.probes.entry(what).or_default();
            let first = started + check.initial_delay;
            let next = *st.next.get_or_insert(first);
            Instant::now() >= next
        };
        if !due {
            continue;
        }
        let ok = probe_once(ctx, &check, ip).await;
        let st = c.probes.entry(what).or_default();
        st.next = Some(Instant::now() + check.period);
        if ok {
            st.successes += 1;
            st.failures = 0;
        } else {
            st.failures += 1;
            st.successes = 0;
        }
        match what {
            "startup" if ok => c.started_ok = true,
            "readiness" => {
                if ok && st.successes >= check.success_threshold {
                    c.ready = true;
                } else if !ok && st.failures >= check.failure_threshold {
                    c.ready = false;
                }
            }
            "liveness" | "startup" if !ok && st.failures >= check.failure_threshold => {
                tracing::info!(container = %c.spec.name, "The {what} check failed {} times; restarting the container.", st.failures);
                if let Some(pid) = c.pid {
                    signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            _ => {}
        }
    }
}

impl Running {
    pub(super) fn started_instant(&self) -> Instant {
        let ago = self
            .started
            .as_ref()
            .map(|t| {
                (k8s_openapi::jiff::Timestamp::now() - t.0)
                    .get_milliseconds()
                    .max(0)
            })
            .unwrap_or(0);
        Instant::now() - Duration::from_millis(ago as u64)
    }
}

pub(super) fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// SIGTERM, up to `grace` for every process to end, then SIGKILL.
pub(super) async fn stop_all(containers: &mut [Running], grace: Duration) {
    for c in containers.iter() {
        if let Some(pid) = c.pid {
            signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    for c in containers.iter_mut() {
        if let Some(child) = c.child.as_mut() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
        c.child = None;
        c.pid = None;
    }
}
