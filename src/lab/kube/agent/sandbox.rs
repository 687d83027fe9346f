//! A pod's sandbox, as a container runtime and a CNI plugin would make it,
//! with the kernel's own tools: a network namespace with a veth to the node
//! (Calico's layout: a /32 route on the node, proxy ARP for the gateway
//! 169.254.1.1), and for each container a private mount namespace whose
//! root is a fresh tmpfs holding the image's one file (`/tailprobe`), the
//! system's libraries read-only, `/proc`, `/sys`, `/dev`, and the pod's
//! volumes where its spec mounts them. Nothing is mounted in the agent's
//! own mount namespace, so nothing outlives the container's process.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::spec::RunAs;
use crate::lab::{LabError, Plan, plan, sh};

/// A bind mount into the container's root: `source` on the host, `target`
/// an absolute path inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// A single file (its mount point is a file, not a folder).
    pub file: bool,
}

/// A top-level folder of the host's system: a symlink on a merged-/usr
/// system (`/bin -> usr/bin`), else a folder bound read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemDir {
    Link { name: String, target: String },
    Bind { name: String },
}

/// The host's system folders a dynamically linked binary and the launch
/// tools (`setpriv`) need.
pub fn system_dirs() -> Vec<SystemDir> {
    ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr"]
        .into_iter()
        .filter_map(|name| {
            let path = Path::new("/").join(name);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                Some(SystemDir::Link {
                    name: name.into(),
                    target: target.to_string_lossy().into_owned(),
                })
            } else {
                meta.is_dir().then(|| SystemDir::Bind { name: name.into() })
            }
        })
        .collect()
}

/// What one container's root is made of.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// An empty folder; the container's root is a tmpfs mounted on it.
    pub root: PathBuf,
    /// The binary bound at `/tailprobe`.
    pub exe: PathBuf,
    /// A folder whose files are copied into `/etc` (hosts, resolv.conf, ...).
    pub etc: PathBuf,
    pub system: Vec<SystemDir>,
    pub binds: Vec<Bind>,
    /// Set in a UTS namespace of the container's own (pod network only).
    pub hostname: Option<String>,
}

/// Single-quotes a word for `sh`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `setpriv` arguments that give the process `run_as`'s identity: its uid
/// and gid, no supplementary groups, no inheritable capabilities, and a
/// bounding set of exactly its capabilities (a root process keeps the
/// bounding set across exec, a non-root one keeps none).
pub fn setpriv_args(run_as: &RunAs) -> Vec<String> {
    let mut a = vec![
        format!("--reuid={}", run_as.uid),
        format!("--regid={}", run_as.gid),
        "--clear-groups".into(),
        "--inh-caps=-all".into(),
    ];
    if !run_as.caps.iter().any(|c| c == "ALL") {
        let mut set = "-all".to_string();
        for c in &run_as.caps {
            let _ = write!(set, ",+{}", c.to_ascii_lowercase());
        }
        a.push(format!("--bounding-set={set}"));
    }
    if run_as.no_new_privs {
        a.push("--no-new-privs".into());
    }
    a
}

/// The shell script that builds the container's root inside a fresh mount
/// namespace and execs the process in it. Run as `sh -ec SCRIPT`.
pub fn launch_script(r: &Rootfs, run_as: &RunAs, argv: &[String]) -> String {
    let root = quote(&r.root.to_string_lossy());
    let mut s = String::new();
    // Mounts made here must not reach the node's mount namespace.
    s += "mount --make-rslave /\n";
    let _ = writeln!(
        s,
        "mount -t tmpfs -o mode=0755,size=16m tailprobe-pod {root}"
    );
    let _ = writeln!(s, "cd {root}");
    s += "mkdir -p proc sys dev etc tmp run var/run\n";
    for d in &r.system {
        match d {
            SystemDir::Link { name, target } => {
                let _ = writeln!(s, "ln -s {} {}", quote(target), quote(name));
            }
            SystemDir::Bind { name } => {
                let n = quote(name);
                let _ = writeln!(
                    s,
                    "mkdir {n} && mount --rbind /{name} {n} && mount -o remount,bind,ro {n}"
                );
            }
        }
    }
    s += "mount --rbind /proc proc\nmount --rbind /sys sys\nmount --rbind /dev dev\n";
    let _ = writeln!(s, "cp -a {}/. etc/", quote(&r.etc.to_string_lossy()));
    let _ = writeln!(
        s,
        "touch tailprobe && mount --bind {} tailprobe && mount -o remount,bind,ro tailprobe",
        quote(&r.exe.to_string_lossy())
    );
    for b in &r.binds {
        let target = quote(&format!(".{}", b.target));
        if b.file {
            let parent = Path::new(&b.target)
                .parent()
                .map_or(".".to_string(), |p| format!(".{}", p.display()));
            let _ = writeln!(s, "mkdir -p {} && touch {target}", quote(&parent));
        } else {
            let _ = writeln!(s, "mkdir -p {target}");
        }
        let _ = writeln!(
            s,
            "mount --bind {} {target}",
            quote(&b.source.to_string_lossy())
        );
        if b.read_only {
            let _ = writeln!(s, "mount -o remount,bind,ro {target}");
        }
    }
    if run_as.read_only_root {
        let _ = writeln!(s, "mount -o remount,ro {root}");
    }
    if let Some(h) = &r.hostname {
        let _ = writeln!(s, "hostname {}", quote(h));
    }
    let _ = write!(s, "exec chroot {root} /usr/bin/setpriv");
    for a in setpriv_args(run_as) {
        let _ = write!(s, " {}", quote(&a));
    }
    s += " --";
    for a in argv {
        let _ = write!(s, " {}", quote(a));
    }
    s.push('\n');
    s
}

/// The host side of a pod's veth: `cali` and 11 hex digits of a hash of the
/// pod's namespace and name, as Calico names them.
pub fn host_veth(namespace: &str, name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (namespace, name).hash(&mut h);
    format!("cali{:011x}", h.finish() & 0xfff_ffff_ffff)
}

/// Makes pod slot `k` of node `i`: its network namespace, a veth with the
/// pod's end as `eth0`, the /32 route and proxy ARP on the node's end. The
/// agent runs in the node's namespace, so the node's end lands there.
pub fn create_pod_network(
    plan: &Plan,
    i: usize,
    k: usize,
    veth: &str,
) -> Result<Ipv4Addr, LabError> {
    let ns = plan.kube_pod_ns(i, k);
    let ip = plan.kube_pod_ip(i, k);
    // A namespace left by an agent that died is this slot's to reuse.
    let _ = sh::run("ip", &["netns", "del", &ns], None);
    let _ = sh::run("ip", &["link", "del", veth], None);
    sh::run("ip", &["netns", "add", &ns], None)?;
    let made = (|| {
        sh::run(
            "ip",
            &[
                "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
            None,
        )?;
        sh::run("ip", &["link", "set", veth, "up"], None)?;
        sh::sysctl_here(&format!("net.ipv4.conf.{veth}.proxy_arp"), "1")?;
        sh::run(
            "ip",
            &["route", "add", &format!("{ip}/32"), "dev", veth],
            None,
        )?;
        sh::ip_batch(
            Some(&ns),
            &[
                "link set lo up".into(),
                format!("addr add {ip}/32 dev eth0"),
                "link set eth0 up".into(),
                format!("route add {} dev eth0 scope link", plan::POD_GATEWAY),
                format!("route add default via {} dev eth0", plan::POD_GATEWAY),
            ],
        )?;
        // The node's SYN knobs (the lab's schedule) hold in its pods too.
        for key in [
            "net.ipv4.tcp_syn_linear_timeouts",
            "net.ipv4.tcp_syn_retries",
        ] {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            if let Ok(v) = std::fs::read_to_string(&path) {
                sh::sysctl(&ns, key, v.trim())?;
            }
        }
        Ok::<_, LabError>(())
    })();
    if let Err(e) = made {
        remove_pod_network(&ns, veth);
        return Err(e);
    }
    Ok(ip)
}

/// Removes a pod's network namespace and the node's end of its veth.
pub fn remove_pod_network(ns: &str, veth: &str) {
    let _ = sh::run("ip", &["netns", "del", ns], None);
    let _ = sh::run("ip", &["link", "del", veth], None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_as(uid: u32, caps: &[&str]) -> RunAs {
        RunAs {
            uid,
            gid: uid,
            caps: caps.iter().map(|c| c.to_string()).collect(),
            no_new_privs: true,
            read_only_root: true,
        }
    }

    #[test]
    fn setpriv_keeps_exactly_the_capabilities_asked() {
        assert_eq!(
            setpriv_args(&run_as(65532, &[])),
            [
                "--reuid=65532",
                "--regid=65532",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs"
            ]
        );
        let root = setpriv_args(&run_as(0, &["BPF", "PERFMON"]));
        assert!(
            root.contains(&"--bounding-set=-all,+bpf,+perfmon".to_string()),
            "{root:?}"
        );
        let all = setpriv_args(&run_as(0, &["ALL"]));
        assert!(
            !all.iter().any(|a| a.starts_with("--bounding-set")),
            "{all:?}"
        );
    }

    #[test]
    fn the_script_builds_a_private_root_and_execs_the_entrypoint() {
        let r = Rootfs {
            root: "/run/x/root".into(),
            exe: "/opt/it's/tailprobe".into(),
            etc: "/run/x/etc".into(),
            system: vec![
                SystemDir::Link {
                    name: "bin".into(),
                    target: "usr/bin".into(),
                },
                SystemDir::Bind { name: "usr".into() },
            ],
            binds: vec![Bind {
                source: "/run/x/vol/config".into(),
                target: "/etc/tailprobe".into(),
                read_only: true,
                file: false,
            }],
            hostname: Some("pod-a".into()),
        };
        let s = launch_script(
            &r,
            &run_as(65532, &[]),
            &["/tailprobe".into(), "run".into()],
        );
        assert!(s.starts_with("mount --make-rslave /\n"), "{s}");
        assert!(s.contains("mount -t tmpfs -o mode=0755,size=16m tailprobe-pod '/run/x/root'"));
        assert!(s.contains("ln -s 'usr/bin' 'bin'"));
        assert!(s.contains("mount --rbind /usr 'usr' && mount -o remount,bind,ro 'usr'"));
        assert!(
            s.contains("mount --bind '/opt/it'\\''s/tailprobe' tailprobe"),
            "{s}"
        );
        assert!(s.contains("mkdir -p './etc/tailprobe'\nmount --bind '/run/x/vol/config' './etc/tailprobe'\nmount -o remount,bind,ro './etc/tailprobe'"), "{s}");
        assert!(s.contains("mount -o remount,ro '/run/x/root'"));
        assert!(s.contains("hostname 'pod-a'"));
        assert!(
            s.trim_end()
                .ends_with("'--no-new-privs' -- '/tailprobe' 'run'"),
            "{s}"
        );
    }

    #[test]
    fn veth_names_fit_the_kernel_limit() {
        let v = host_veth("tailprobe", "tailprobe-pod-x7k2p");
        assert_eq!(v.len(), 15, "{v}");
        assert!(v.starts_with("cali"));
        assert_ne!(v, host_veth("tailprobe", "tailprobe-pod-x7k2q"));
    }
}
