//! One real Kubernetes lab per test binary: `tailprobe lab up --kubernetes
//! --hold`, started by the first test that asks and removed when this
//! process ends (its standard input closes, the holder takes the lab down),
//! whatever way the tests end. Everything the tests reach lives in the lab's
//! namespaces: kubectl and the admin client run inside the control plane's,
//! requests to pods and Services from inside a node's.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde_json::Value;
use tailprobe::lab::Plan;
use tailprobe::lab::kube::{self, Bins};

pub struct Cluster {
    pub plan: Plan,
    pub bins: Bins,
    /// Its standard input is the lab's lifeline; never closed before exit.
    _holder: Mutex<std::process::Child>,
    deployed: OnceLock<()>,
}

/// Tests that stop or pause the control plane take this for writing; the
/// others for reading, so none of them runs while the API server is down.
static GATE: RwLock<()> = RwLock::new(());

impl Cluster {
    /// The binary's cluster, up on first use (about 5 s).
    pub fn get() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| {
            super::require_root("the cluster tests");
            let bins = Bins::find(None)
                .unwrap_or_else(|e| panic!("{e} (./scripts/test builds it before the tests run)"));
            let prefix = format!("kc{}", std::process::id() % 1_000_000);
            let mut holder = Command::new(super::bin())
                .args(["lab", "up", "--kubernetes", "--hold", "--name", &prefix])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let out = holder.stdout.take().unwrap();
            let mut seen = String::new();
            let mut up = false;
            for line in BufReader::new(out).lines() {
                let line = line.unwrap();
                seen.push_str(&line);
                seen.push('\n');
                if line.starts_with("node3:") {
                    up = true;
                    break;
                }
            }
            if !up {
                let mut err = String::new();
                if let Some(mut e) = holder.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("lab up --kubernetes failed: {seen}{err}");
            }
            let plan = Plan::new(&prefix, 3).unwrap().with_kubernetes(true);
            Cluster {
                plan,
                bins,
                _holder: Mutex::new(holder),
                deployed: OnceLock::new(),
            }
        })
    }

    /// For a test that only reads and writes objects.
    pub fn share(&self) -> RwLockReadGuard<'static, ()> {
        GATE.read().unwrap_or_else(|e| e.into_inner())
    }

    /// For a test that stops, pauses or restarts the control plane.
    pub fn disrupt(&self) -> RwLockWriteGuard<'static, ()> {
        GATE.write().unwrap_or_else(|e| e.into_inner())
    }

    /// `kubectl ARGS` as the lab's admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    /// `kubectl ARGS` with `stdin` fed to it.
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.plan.control_ns()])
            .arg(self.bins.kubectl())
            .arg(format!(
                "--kubeconfig={}",
                kube::admin_kubeconfig(&self.plan.prefix).display()
            ))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `kubectl ARGS`, which must succeed; its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An object as JSON, or `None` when it does not exist.
    pub fn get_json(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let out = self.kubectl(&["get", kind, "-n", ns, name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// The items of a list, as JSON.
    pub fn list(&self, kind: &str, ns: &str, selector: Option<&str>) -> Vec<Value> {
        let mut args = vec!["get", kind, "-n", ns, "-o", "json"];
        if let Some(s) = selector {
            args.extend(["-l", s]);
        }
        let v: Value = serde_json::from_str(&self.kubectl_ok(&args)).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// deploy/ applied from the repository, every workload ready: once per
    /// binary, whichever test asks first.
    pub fn deployed(&self) {
        self.deployed.get_or_init(|| {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
            self.kubectl_ok(&["apply", "--server-side", "-k", dir]);
            tailprobe::lab::kube::deploy::wait_rollout(
                &self.plan,
                "tailprobe",
                Duration::from_secs(120),
            )
            .unwrap();
        });
    }

    /// GET `url` from inside node `i`'s namespace: (status, headers and
    /// body), or `None` when nothing answered within 5 s.
    pub fn curl(&self, node: usize, url: &str) -> Option<(u16, String)> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.plan.node_ns(node)])
            .args(["curl", "-s", "-i", "-m", "5", "--noproxy", "*", url])
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, text))
    }

    /// The body of a GET that answered 200.
    pub fn body(&self, node: usize, url: &str) -> Option<String> {
        let (status, text) = self.curl(node, url)?;
        (status == 200).then(|| {
            text.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default()
        })
    }

    /// The sum of a metric's samples whose labels hold every needle, from a
    /// prober's `/metrics` (`base` such as `http://10.244.1.10:9797`).
    pub fn metric(&self, node: usize, base: &str, metric: &str, needles: &[&str]) -> f64 {
        let Some(body) = self.body(node, &format!("{base}/metrics")) else {
            return 0.0;
        };
        body.lines()
            .filter(|l| {
                l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} "))
            })
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Everything a pod's containers wrote, as the node agent keeps it.
    pub fn pod_log(&self, ns: &str, name: &str) -> String {
        let pods = kube::state(&self.plan.prefix).join("pods");
        let mut out = String::new();
        for node in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
            for dir in std::fs::read_dir(node.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let file = dir.file_name().to_string_lossy().into_owned();
                if file.starts_with(&format!("{ns}_{name}_")) {
                    for f in std::fs::read_dir(dir.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        if f.path().extension().is_some_and(|e| e == "log") {
                            out += &std::fs::read_to_string(f.path()).unwrap_or_default();
                        }
                    }
                }
            }
        }
        out
    }

    /// A kustomization in a folder of its own under the target folder,
    /// over `base` (a folder under deploy/, named relative to the
    /// repository: kustomize takes no absolute path), with these extra
    /// lines and files; returns the folder.
    pub fn overlay(
        &self,
        name: &str,
        base: &str,
        lines: &str,
        files: &[(&str, &str)],
    ) -> std::path::PathBuf {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{}-{name}", self.plan.prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(base);
        let rel = relative(&dir, &target);
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\n{lines}",
                rel.display()
            ),
        )
        .unwrap();
        for (f, text) in files {
            std::fs::write(dir.join(f), text).unwrap();
        }
        dir
    }

    /// Every request the API server audited: (user, verb, resource with its
    /// subresource, namespace, response code).
    pub fn audit(&self) -> Vec<Audited> {
        let path = kube::state(&self.plan.prefix).join("audit.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut seen = BTreeSet::new();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| seen.insert(e["auditID"].as_str().unwrap_or_default().to_string()))
            .map(|e| {
                let o = &e["objectRef"];
                let mut resource = o["resource"].as_str().unwrap_or_default().to_string();
                if let Some(sub) = o["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                Audited {
                    user: e["user"]["username"].as_str().unwrap_or_default().into(),
                    verb: e["verb"].as_str().unwrap_or_default().into(),
                    resource,
                    namespace: o["namespace"].as_str().map(str::to_string),
                    code: e["responseStatus"]["code"].as_u64().unwrap_or(0),
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Audited {
    pub user: String,
    pub verb: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub code: u64,
}

/// `to` as a path relative to the folder `from` (both absolute).
fn relative(from: &std::path::Path, to: &std::path::Path) -> std::path::PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}
