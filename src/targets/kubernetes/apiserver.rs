//! The API server's own probe: through the `kubernetes` Service's VIP, as
//! every pod and node agent reaches it, over HTTPS with the service
//! account's CA and token, asking `/readyz`. The kubelet names the VIP in
//! every pod's environment (host-network pods too), so no watch is needed.

use std::path::PathBuf;

use crate::config::{KubernetesConfig, ProbeConfig};
use crate::model::{API_SERVER_TARGET, Target, TargetNode, TlsOptions};

/// Where a pod's service account is mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The name the API server's serving certificate carries for the Service
/// (kubeadm, the managed clusters and the lab all put it there); the VIP
/// itself is not always in it.
pub const SERVER_NAME: &str = "kubernetes.default.svc";

/// The API server as a pod sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    /// `KUBERNETES_SERVICE_HOST`: the VIP.
    pub host: String,
    /// `KUBERNETES_SERVICE_PORT`.
    pub port: u16,
    pub ca_file: PathBuf,
    pub token_file: PathBuf,
}

impl ApiServer {
    /// From the kubelet's variables, when both are set and the service
    /// account is mounted in `dir`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, dir: &std::path::Path) -> Option<Self> {
        let host = var("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty())?;
        let port = var("KUBERNETES_SERVICE_PORT")?.parse().ok()?;
        Some(Self {
            host,
            port,
            ca_file: dir.join("ca.crt"),
            token_file: dir.join("token"),
        })
    }

    /// The probe target, or why it cannot be one.
    pub fn target(&self, cfg: &KubernetesConfig, probe: &ProbeConfig) -> Result<Target, String> {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let url = format!("https://{host}:{}{}", self.port, cfg.api_server_path);
        let mut t = Target::parse(API_SERVER_TARGET, &url)
            .map_err(|e| format!("{API_SERVER_TARGET}: {e}"))?
            // Its backends are the control plane's own addresses, which no
            // prober's echo names: the path stays unknown.
            .with_node(TargetNode::Unknown)
            .with_timing(&probe.timing());
        t.valid_status = vec![(200, 299)];
        t.tls = Some(TlsOptions {
            server_name: SERVER_NAME.into(),
            ca_file: Some(self.ca_file.clone()),
            client_cert: None,
        });
        // /readyz is readable without a token where anonymous requests are
        // allowed; the token makes it readable where they are not.
        t.bearer_token_file = Some(self.token_file.clone());
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelets_variables_name_the_vip_and_the_mount_the_trust() {
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("fd00:96::1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let api = ApiServer::from_env(env, std::path::Path::new(SERVICE_ACCOUNT_DIR)).unwrap();
        let t = api
            .target(&KubernetesConfig::default(), &ProbeConfig::default())
            .unwrap();
        assert_eq!(t.name, API_SERVER_TARGET);
        assert_eq!(t.url, "https://[fd00:96::1]:443/readyz");
        let tls = t.tls.unwrap();
        assert_eq!(tls.server_name, "kubernetes.default.svc");
        assert_eq!(
            tls.ca_file.unwrap(),
            PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt")
        );
        assert!(t.bearer_token_file.unwrap().ends_with("token"));
        assert!(ApiServer::from_env(|_| None, std::path::Path::new("/x")).is_none());
    }
}
