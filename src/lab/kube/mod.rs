//! The lab's real Kubernetes (`lab up --kubernetes`): etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler in the control plane's
//! namespace on the underlay (10.10.72.2), the real kube-proxy and a node
//! agent (`agent`, the kubelet's stand-in) in every node's namespace. The
//! programs are the official ones, built from the Go modules pinned in
//! `tools/` (`bins`); certificates and kubeconfigs come from `pki`.
//!
//! Invariant: every process runs inside a lab namespace and listens only on
//! lab addresses or a lab namespace's loopback; `lab down` ends them all
//! with the namespaces, whatever state a crash left.

pub mod agent;
pub mod bins;
pub mod deploy;
pub mod pki;
mod proc;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};

use super::{LabError, Plan, netns, plan, state_dir};
pub use bins::Bins;
pub use pki::Identity;
pub use proc::Proc;
use proc::{reap, wait_tcp};

/// How kube-proxy programs Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    #[default]
    Nftables,
    Iptables,
}

impl ProxyMode {
    pub fn parse(s: &str) -> Result<Self, LabError> {
        match s {
            "nftables" => Ok(Self::Nftables),
            "iptables" => Ok(Self::Iptables),
            other => Err(LabError::Usage(format!(
                "--proxy-mode \"{other}\" is not nftables or iptables"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nftables => "nftables",
            Self::Iptables => "iptables",
        }
    }
}

/// What `lab up --kubernetes` takes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The cache `scripts/control-plane` printed; else its default.
    pub bins: Option<PathBuf>,
    pub proxy_mode: ProxyMode,
}

/// The Kubernetes lab's own folder: `<state>/kubernetes`.
pub fn state(prefix: &str) -> PathBuf {
    state_dir(prefix).join("kubernetes")
}

/// The kubeconfig of an identity of this lab.
pub fn kubeconfig_path(prefix: &str, id: &Identity) -> PathBuf {
    pki::Pki {
        dir: state(prefix).join("pki"),
    }
    .kubeconfig(id)
}

/// The admin's kubeconfig: `kubectl --kubeconfig` it inside the control
/// plane's namespace (or `tailprobe lab kubectl`).
pub fn admin_kubeconfig(prefix: &str) -> PathBuf {
    kubeconfig_path(prefix, &Identity::admin())
}

/// `amd64`, `arm64`: the architecture as Kubernetes names it.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Result<kube::Client, LabError> {
    crate::install_crypto();
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| LabError::Kernel {
        what: format!("cannot read {} ({e})", path.display()),
    })?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| LabError::Kernel {
            what: format!("cannot use {} ({e})", path.display()),
        })?;
    cfg.connect_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(cfg).map_err(|e| LabError::Kernel {
        what: format!("cannot make a client from {} ({e})", path.display()),
    })
}

/// Runs `f` with the admin's client, on a thread inside the control
/// plane's namespace (the API server listens on lab addresses only).
pub fn with_admin<T, F, Fut>(plan: &Plan, f: F) -> Result<T, LabError>
where
    T: Send + 'static,
    F: FnOnce(kube::Client) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, LabError>>,
{
    let path = admin_kubeconfig(&plan.prefix);
    netns::run_in(&plan.control_ns(), move || {
        // The lab's own calls say what failed in the error they return;
        // kube's log of every refused poll (a 500 while the API server
        // starts) is noise here.
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds")
                .block_on(async move { f(client_from(&path).await?).await })
        })
    })?
}

/// Every component's name as `lab restart` takes it.
pub const APISERVER: &str = "kube-apiserver";

pub const ETCD: &str = "etcd";

/// Starts the control plane, registers every node, and starts kube-proxy
/// and the agent in every node; returns once every node is Ready and its
/// kube-proxy has programmed the API server's own Service.
pub fn up(plan: &Plan, opts: &Options) -> Result<(), LabError> {
    let bins = Bins::find(opts.bins.as_deref())?;
    let dir = state(&plan.prefix);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::Kernel {
        what: format!("cannot create {} ({e})", dir.display()),
    })?;
    let api = format!("https://{}:{}", plan.api_ip(), plan::API_PORT);
    let sans = vec![
        "kubernetes".to_string(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        plan::API_SERVICE_IP.to_string(),
        plan.api_ip().to_string(),
    ];
    let mut ids = vec![
        Identity::admin(),
        Identity::controller_manager(),
        Identity::scheduler(),
        Identity::proxy(),
    ];
    ids.extend(plan.node_ids().map(|i| Identity::node(&plan.node_name(i))));
    let pki = pki::make(&dir.join("pki"), &api, &sans, &ids)?;
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let cp = plan.control_ns();

    let etcd = Proc {
        name: ETCD.into(),
        ns: cp.clone(),
        program: bins.etcd(),
        args: vec![
            format!("--data-dir={}", path(dir.join("etcd"))),
            "--listen-client-urls=http://127.0.0.1:2379".into(),
            "--advertise-client-urls=http://127.0.0.1:2379".into(),
            "--listen-peer-urls=http://127.0.0.1:2380".into(),
            // tmpfs under /run: fsync buys nothing, and costs the 2 cores.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
        net_only: false,
    };
    let mut child = etcd.spawn(&plan.prefix)?;
    wait_tcp(
        &cp,
        "127.0.0.1:2379",
        Duration::from_secs(20),
        &etcd,
        &mut child,
        &plan.prefix,
    )?;
    reap(child);

    let audit = dir.join("audit-policy.yaml");
    std::fs::write(
        &audit,
        "# Every request, who made it and its verb: the tests compare it with deploy/'s RBAC.\n\
         apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n",
    )
    .map_err(|e| LabError::Kernel {
        what: format!("cannot write {} ({e})", audit.display()),
    })?;
    let apiserver = Proc {
        name: APISERVER.into(),
        ns: cp.clone(),
        program: bins.apiserver(),
        args: vec![
            "--etcd-servers=http://127.0.0.1:2379".into(),
            format!("--bind-address={}", plan.api_ip()),
            format!("--advertise-address={}", plan.api_ip()),
            format!("--secure-port={}", plan::API_PORT),
            format!("--tls-cert-file={}", path(pki.serving_cert())),
            format!("--tls-private-key-file={}", path(pki.serving_key())),
            format!("--client-ca-file={}", path(pki.ca_cert())),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!(
                "--service-account-key-file={}",
                path(pki.service_account_pub())
            ),
            format!(
                "--service-account-signing-key-file={}",
                path(pki.service_account_key())
            ),
            format!("--service-cluster-ip-range={}", plan::SERVICE_CIDR),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement"
                .into(),
            format!("--audit-policy-file={}", path(audit)),
            format!("--audit-log-path={}", path(dir.join("audit.log"))),
            "--audit-log-maxsize=200".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ],
        net_only: false,
    };
    let mut child = apiserver.spawn(&plan.prefix)?;
    let api_addr = format!("{}:{}", plan.api_ip(), plan::API_PORT);
    wait_tcp(
        &cp,
        &api_addr,
        Duration::from_secs(60),
        &apiserver,
        &mut child,
        &plan.prefix,
    )?;
    reap(child);
    wait_ready(plan, Duration::from_secs(60), &apiserver.log(&plan.prefix))?;
    register_nodes(plan)?;

    let cm = Proc {
        name: "kube-controller-manager".into(),
        ns: cp.clone(),
        program: bins.controller_manager(),
        args: vec![
            format!(
                "--kubeconfig={}",
                path(pki.kubeconfig(&Identity::controller_manager()))
            ),
            "--leader-elect=false".into(),
            "--use-service-account-credentials=true".into(),
            format!(
                "--service-account-private-key-file={}",
                path(pki.service_account_key())
            ),
            format!("--root-ca-file={}", path(pki.ca_cert())),
            format!("--service-cluster-ip-range={}", plan::SERVICE_CIDR),
            format!("--cluster-cidr={}", plan::POD_CIDR),
            // What the lab's workloads need, and no more on two cores.
            "--controllers=endpointslice-controller,endpointslice-mirroring-controller,\
             serviceaccount-controller,serviceaccount-token-controller,namespace-controller,\
             garbage-collector-controller,daemonset-controller,deployment-controller,\
             replicaset-controller,root-ca-certificate-publisher-controller,\
             node-lifecycle-controller,pod-garbage-collector-controller,\
             taint-eviction-controller,ttl-controller"
                .into(),
            "--secure-port=10257".into(),
            "--bind-address=127.0.0.1".into(),
            "--v=1".into(),
        ],
        net_only: false,
    };
    cm.start(&plan.prefix)?;
    let scheduler = Proc {
        name: "kube-scheduler".into(),
        ns: cp.clone(),
        program: bins.scheduler(),
        args: vec![
            format!(
                "--kubeconfig={}",
                path(pki.kubeconfig(&Identity::scheduler()))
            ),
            "--leader-elect=false".into(),
            "--secure-port=10259".into(),
            "--bind-address=127.0.0.1".into(),
            "--v=1".into(),
        ],
        net_only: false,
    };
    scheduler.start(&plan.prefix)?;

    let exe = std::env::current_exe().map_err(|e| LabError::Kernel {
        what: format!("cannot find this program's path ({e})"),
    })?;
    let mut proxies = Vec::new();
    for i in plan.node_ids() {
        let node = plan.node_name(i);
        let proxy = Proc {
            name: format!("kube-proxy-{node}"),
            ns: plan.node_ns(i),
            program: bins.proxy(),
            args: vec![
                format!("--kubeconfig={}", path(pki.kubeconfig(&Identity::proxy()))),
                format!("--hostname-override={node}"),
                format!("--proxy-mode={}", opts.proxy_mode.as_str()),
                format!("--cluster-cidr={}", plan::POD_CIDR),
                // nf_conntrack_max is read-only outside the first network
                // namespace: leave every conntrack limit as it is.
                "--conntrack-max-per-core=0".into(),
                "--conntrack-tcp-timeout-established=0".into(),
                "--conntrack-tcp-timeout-close-wait=0".into(),
                "--healthz-bind-address=0.0.0.0:10256".into(),
                "--metrics-bind-address=127.0.0.1:10249".into(),
                "--v=1".into(),
            ],
            net_only: false,
        };
        let child = proxy.spawn(&plan.prefix)?;
        proxies.push((proxy, child));
        let agent = Proc {
            name: format!("agent-{node}"),
            ns: plan.node_ns(i),
            program: exe.clone(),
            args: vec![
                "lab".into(),
                "agent".into(),
                "--name".into(),
                plan.prefix.clone(),
                "--node".into(),
                node.clone(),
            ],
            net_only: true,
        };
        agent.start(&plan.prefix)?;
    }
    wait_nodes_ready(plan, Duration::from_secs(60))?;
    // Each node reaches the API server through its Service: kube-proxy
    // has read the API and programmed the node.
    let api_service = format!("{}:443", plan::API_SERVICE_IP);
    for (p, child) in &mut proxies {
        wait_tcp(
            &p.ns,
            &api_service,
            Duration::from_secs(60),
            p,
            child,
            &plan.prefix,
        )?;
    }
    Ok(())
}

/// Waits for the API server's `/readyz`.
fn wait_ready(plan: &Plan, within: Duration, log: &Path) -> Result<(), LabError> {
    let log = log.to_path_buf();
    with_admin(plan, move |client| async move {
        let deadline = Instant::now() + within;
        loop {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a request");
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                _ if Instant::now() > deadline => {
                    return Err(LabError::Kernel {
                        what: format!(
                            "the API server was not ready after {}s; see {}",
                            within.as_secs(),
                            log.display()
                        ),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// Every lab node as a Node object, with its pod range and labels, as a
/// provisioner registers machines; the agents keep their status.
fn register_nodes(plan: &Plan) -> Result<(), LabError> {
    let nodes: Vec<Node> = plan
        .node_ids()
        .map(|i| {
            let name = plan.node_name(i);
            // node1 and node2 in zone-a, the rest in zone-b, as the page
            // groups the plain lab.
            let zone = if i <= 2 { "zone-a" } else { "zone-b" };
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": arch(),
                    "topology.kubernetes.io/zone": zone,
                }},
                "spec": {"podCIDR": plan.pod_cidr(i), "podCIDRs": [plan.pod_cidr(i)]},
            }))
            .expect("a valid Node")
        })
        .collect();
    with_admin(plan, move |client| async move {
        let api: Api<Node> = Api::all(client);
        for n in &nodes {
            match api.create(&PostParams::default(), n).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    return Err(LabError::Kernel {
                        what: format!("cannot register the lab's nodes ({e})"),
                    });
                }
            }
        }
        Ok(())
    })
}

fn wait_nodes_ready(plan: &Plan, within: Duration) -> Result<(), LabError> {
    let want = plan.nodes;
    let logs = state(&plan.prefix).join("logs");
    with_admin(plan, move |client| async move {
        let api: Api<Node> = Api::all(client);
        let deadline = Instant::now() + within;
        loop {
            let ready = api
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|n| {
                            n.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                        })
                        .count()
                })
                .unwrap_or(0);
            if ready == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::Kernel {
                    what: format!(
                        "{ready} of {want} nodes are Ready after {}s; the agents' logs are in {}",
                        within.as_secs(),
                        logs.display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// Runs the lab's kubectl as the admin, inside the control plane's
/// namespace; returns its exit code. Output goes to this process's.
pub fn kubectl(plan: &Plan, bins: Option<&Path>, args: &[String]) -> Result<i32, LabError> {
    let bins = Bins::find(bins)?;
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &plan.control_ns()])
        .arg(bins.kubectl())
        .arg(format!(
            "--kubeconfig={}",
            admin_kubeconfig(&plan.prefix).display()
        ))
        .args(args)
        .status()
        .map_err(|e| LabError::Command {
            command: "ip netns exec ... kubectl".into(),
            message: e.to_string(),
        })?;
    Ok(status.code().unwrap_or(1))
}
