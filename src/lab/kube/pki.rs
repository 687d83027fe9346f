//! The lab cluster's certificates: one CA, the API server's serving
//! certificate (its lab address and the `kubernetes` Service's names and
//! VIP), a client certificate per identity the API server authorizes (the
//! admin, each control-plane component, kube-proxy, each node), the
//! service-account signing key, and a kubeconfig per identity. ECDSA P-256
//! throughout, from rcgen over ring, the provider already in the tree.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::lab::LabError;

/// Who a client certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The file stem: `admin`, `node1`, ...
    pub file: String,
    /// The user name (CN).
    pub user: String,
    /// The groups (O).
    pub groups: Vec<String>,
}

impl Identity {
    fn new(file: &str, user: &str, groups: &[&str]) -> Self {
        Self {
            file: file.into(),
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
    /// The cluster's administrator: `system:masters` bypasses RBAC.
    pub fn admin() -> Self {
        Self::new("admin", "kubernetes-admin", &["system:masters"])
    }
    pub fn controller_manager() -> Self {
        Self::new("controller-manager", "system:kube-controller-manager", &[])
    }
    pub fn scheduler() -> Self {
        Self::new("scheduler", "system:kube-scheduler", &[])
    }
    /// kube-proxy's user: bound to `system:node-proxier` by the API
    /// server's own bootstrap policy.
    pub fn proxy() -> Self {
        Self::new("kube-proxy", "system:kube-proxy", &[])
    }
    /// A node's own credentials: the Node authorizer and NodeRestriction
    /// admit exactly what a kubelet on that node may do.
    pub fn node(name: &str) -> Self {
        Self::new(name, &format!("system:node:{name}"), &["system:nodes"])
    }
}

/// Where the files of one lab's PKI live.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn service_account_key(&self) -> PathBuf {
        self.dir.join("service-account.key")
    }
    /// The public half: the API server verifies tokens with it.
    pub fn service_account_pub(&self) -> PathBuf {
        self.dir.join("service-account.pub")
    }
    pub fn kubeconfig(&self, id: &Identity) -> PathBuf {
        self.dir.join(format!("{}.kubeconfig", id.file))
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> LabError {
    LabError::Kernel {
        what: format!("cannot make the lab's {what} ({e})"),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// Valid from yesterday (clocks of the lab's processes agree, but a
/// certificate made this second must verify this second) for a year: the
/// lab's certificates go with the lab.
fn validity(p: &mut CertificateParams) {
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let (y, m, d) = civil(today - 1);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil(today + 365);
    p.not_after = rcgen::date_time_ymd(y, m, d);
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| err(&path.display().to_string(), e))
}

/// Makes every certificate, key and kubeconfig for a cluster whose API
/// server listens at `server` (`https://IP:PORT`), with `sans` (names and
/// addresses) on its serving certificate, for these client identities.
pub fn make(
    dir: &Path,
    server: &str,
    sans: &[String],
    clients: &[Identity],
) -> Result<Pki, LabError> {
    std::fs::create_dir_all(dir).map_err(|e| err(&dir.display().to_string(), e))?;
    let pki = Pki {
        dir: dir.to_path_buf(),
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tailprobe-lab-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    validity(&mut ca_params);
    let ca_key = KeyPair::generate().map_err(|e| err("CA key", e))?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| err("CA certificate", e))?;
    let ca_pem = ca_cert.pem();
    write(&pki.ca_cert(), &ca_pem)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut serving = CertificateParams::new(sans.to_vec()).map_err(|e| err("serving SANs", e))?;
    serving.distinguished_name = DistinguishedName::new();
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.use_authority_key_identifier_extension = true;
    validity(&mut serving);
    let key = KeyPair::generate().map_err(|e| err("serving key", e))?;
    let cert = serving
        .signed_by(&key, &issuer)
        .map_err(|e| err("serving certificate", e))?;
    write(&pki.serving_cert(), &cert.pem())?;
    write(&pki.serving_key(), &key.serialize_pem())?;

    let sa = KeyPair::generate().map_err(|e| err("service-account key", e))?;
    write(&pki.service_account_key(), &sa.serialize_pem())?;
    write(&pki.service_account_pub(), &sa.public_key_pem())?;

    for id in clients {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&id.user, e))?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, id.user.as_str());
        for g in &id.groups {
            p.distinguished_name
                .push(DnType::OrganizationName, g.as_str());
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p);
        let key = KeyPair::generate().map_err(|e| err(&id.user, e))?;
        let cert = p.signed_by(&key, &issuer).map_err(|e| err(&id.user, e))?;
        write(
            &pki.kubeconfig(id),
            &kubeconfig(server, &ca_pem, &id.user, &cert.pem(), &key.serialize_pem()),
        )?;
    }
    Ok(pki)
}

/// A kubeconfig (JSON, which every YAML reader takes) with everything
/// inline, so it works from any folder and any mount namespace.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, cert: &str, key: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(cert),
            "client-key-data": b64(key),
        }}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
        "current-context": "lab",
    });
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_the_calendar() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_820), (2027, 1, 2));
        assert_eq!(civil(-1), (1969, 12, 31));
    }

    #[test]
    fn every_identity_gets_a_kubeconfig_signed_by_the_ca() {
        let dir = std::env::temp_dir().join(format!("tailprobe-pki-{}", std::process::id()));
        let ids = [Identity::admin(), Identity::node("node2")];
        let pki = make(
            &dir,
            "https://10.10.72.2:6443",
            &["kubernetes".into(), "10.96.0.1".into()],
            &ids,
        )
        .unwrap();
        let node: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(pki.kubeconfig(&ids[1])).unwrap())
                .unwrap();
        assert_eq!(node["users"][0]["name"], "system:node:node2");
        assert_eq!(
            node["clusters"][0]["cluster"]["server"],
            "https://10.10.72.2:6443"
        );
        let key = std::fs::read_to_string(pki.service_account_key()).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        assert!(
            std::fs::read_to_string(pki.ca_cert())
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
