//! TLS to the collector, configured the OpenTelemetry way: an `https://`
//! endpoint is verified against the system's roots, or against
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`; `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`
//! and `OTEL_EXPORTER_OTLP_CLIENT_KEY` give a client certificate (mutual
//! TLS). Each has a per-signal form (`OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`
//! and so on) that wins. Files are PEM. rustls with ring, for gRPC (tonic)
//! and HTTP (the exporter's blocking reqwest client) alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::OtlpError;

/// A file and the variable that named it, for errors.
pub type Named = (String, PathBuf);

/// The PEM files one signal's exporter uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// The CA that signs the collector's certificate.
    pub ca: Option<Named>,
    pub cert: Option<Named>,
    pub key: Option<Named>,
}

impl TlsFiles {
    /// `signal` is `TRACES`, `METRICS` or `LOGS`.
    pub fn from_env(signal: &str, var: &dyn Fn(&str) -> Option<String>) -> Self {
        let pick = |what: &str| {
            [
                format!("OTEL_EXPORTER_OTLP_{signal}_{what}"),
                format!("OTEL_EXPORTER_OTLP_{what}"),
            ]
            .into_iter()
            .find_map(|name| var(&name).map(|v| (name, PathBuf::from(v))))
        };
        Self {
            ca: pick("CERTIFICATE"),
            cert: pick("CLIENT_CERTIFICATE"),
            key: pick("CLIENT_KEY"),
        }
    }

    /// Whether any TLS setting was given.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    fn client_pair(&self) -> Result<Option<(&Named, &Named)>, OtlpError> {
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            (Some((name, _)), None) | (None, Some((name, _))) => Err(OtlpError::Tls(format!(
                "{name} is set without its pair; a client certificate needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"
            ))),
        }
    }
}

fn read(var: &str, path: &Path) -> Result<Vec<u8>, OtlpError> {
    std::fs::read(path).map_err(|e| {
        OtlpError::Tls(format!(
            "cannot read {var} ({}): {e}; point it at a readable PEM file",
            path.display()
        ))
    })
}

/// The gRPC exporter's TLS.
pub fn grpc(files: &TlsFiles) -> Result<ClientTlsConfig, OtlpError> {
    let pair = files.client_pair()?;
    let mut c = ClientTlsConfig::new();
    c = match &files.ca {
        Some((var, path)) => c.ca_certificate(Certificate::from_pem(read(var, path)?)),
        None => c.with_native_roots(),
    };
    if let Some(((cv, cp), (kv, kp))) = pair {
        c = c.identity(Identity::from_pem(read(cv, cp)?, read(kv, kp)?));
    }
    Ok(c)
}

/// The HTTP exporter's client: the exporter's own blocking reqwest client,
/// with this TLS and `timeout`.
pub fn http(files: &TlsFiles, timeout: Duration) -> Result<reqwest::blocking::Client, OtlpError> {
    crate::install_crypto();
    let pair = files.client_pair()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some((var, path)) => {
            let pem = read(var, path)?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| OtlpError::Tls(format!("{var} ({}): {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| OtlpError::Tls(format!("{var} ({}): {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(OtlpError::Tls(format!(
                    "{var} ({}) holds no PEM certificate",
                    path.display()
                )));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OtlpError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match pair {
        Some(((cv, cp), (kv, kp))) => {
            let certs = CertificateDer::pem_slice_iter(&read(cv, cp)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| OtlpError::Tls(format!("{cv} ({}): {e}", cp.display())))?;
            let key = PrivateKeyDer::from_pem_slice(&read(kv, kp)?)
                .map_err(|e| OtlpError::Tls(format!("{kv} ({}): {e}", kp.display())))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                OtlpError::Tls(format!("{cv} and {kv} do not make a client identity: {e}"))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    // The blocking client runs a runtime of its own, which cannot be made on
    // a runtime's thread: build it on a thread of its own, as the exporter
    // does for its default client.
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .tls_backend_preconfigured(config)
            .build()
    })
    .join()
    .map_err(|_| OtlpError::Tls("building the HTTPS client panicked".into()))?
    .map_err(|e| OtlpError::Tls(format!("cannot build the HTTPS client: {e}")))
}

/// The exporters' timeout: `OTEL_EXPORTER_OTLP_{signal}_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; 10 s by default.
pub fn timeout(signal: &str, var: &dyn Fn(&str) -> Option<String>) -> Duration {
    [
        format!("OTEL_EXPORTER_OTLP_{signal}_TIMEOUT"),
        "OTEL_EXPORTER_OTLP_TIMEOUT".to_string(),
    ]
    .iter()
    .find_map(|n| var(n).and_then(|v| v.trim().parse::<u64>().ok()))
    .map_or(Duration::from_secs(10), Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_signal_files_win_and_a_lone_half_of_a_pair_is_refused() {
        let var = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_CERTIFICATE" => Some("/etc/ca.pem".to_string()),
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE" => Some("/etc/traces-ca.pem".to_string()),
            "OTEL_EXPORTER_OTLP_CLIENT_KEY" => Some("/etc/key.pem".to_string()),
            _ => None,
        };
        let traces = TlsFiles::from_env("TRACES", &var);
        assert_eq!(
            traces.ca.as_ref().unwrap().1,
            PathBuf::from("/etc/traces-ca.pem")
        );
        let logs = TlsFiles::from_env("LOGS", &var);
        assert_eq!(
            logs.ca.as_ref().unwrap().0,
            "OTEL_EXPORTER_OTLP_CERTIFICATE"
        );
        let err = grpc(&logs).unwrap_err().to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY is set without its pair"),
            "{err}"
        );
        assert!(!TlsFiles::from_env("LOGS", &|_| None).any());
    }

    #[test]
    fn an_unreadable_certificate_names_its_variable_and_path() {
        let var = |k: &str| {
            (k == "OTEL_EXPORTER_OTLP_CERTIFICATE").then(|| "/nonexistent/ca.pem".to_string())
        };
        let files = TlsFiles::from_env("METRICS", &var);
        for err in [
            grpc(&files).unwrap_err().to_string(),
            http(&files, Duration::from_secs(1))
                .unwrap_err()
                .to_string(),
        ] {
            assert!(
                err.contains("cannot read OTEL_EXPORTER_OTLP_CERTIFICATE (/nonexistent/ca.pem)"),
                "{err}"
            );
        }
    }
}
