//! The TLS phase of `https://` probes: rustls (the ring provider already in
//! the tree) over the probe's own connected socket, so `TCP_INFO` stays
//! readable and the handshake is a phase of its own. A handshake that
//! stalls is `tls-timeout`; one refused is `tls-error` with rustls's reason.
//! The server certificate's end of validity is kept for the expiry gauge and
//! finding.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::run::Failure;
use crate::model::{Outcome, TlsOptions};

/// A target's files are read again after this: a rotated CA bundle or
/// client certificate (cert-manager, the kubelet) is used within a minute,
/// and no probe reads a file.
const RELOAD_AFTER: Duration = Duration::from_secs(60);

/// The client configurations of the `https://` targets, built from their
/// files once a minute, shared by every probe of a target.
#[derive(Default)]
pub struct TlsClients(Mutex<HashMap<TlsOptions, Loaded>>);

impl std::fmt::Debug for TlsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClients")
    }
}

struct Loaded {
    at: Instant,
    config: Result<Arc<rustls::ClientConfig>, String>,
}

impl TlsClients {
    /// The configuration for these options: the cached one, or built now
    /// (a failure is cached as well, so a missing file is read once a
    /// minute, not once a probe).
    pub fn config(&self, o: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(l) = map.get(o)
            && now.duration_since(l.at) < RELOAD_AFTER
        {
            return l.config.clone();
        }
        let config = client_config(o).map(Arc::new);
        map.insert(
            o.clone(),
            Loaded {
                at: now,
                config: config.clone(),
            },
        );
        config
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {} ({e})", path.display()))
}

/// The PEM certificates in `path`; at least one.
pub fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} {} is not PEM ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} {} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
            path.display()
        ));
    }
    Ok(certs)
}

/// A client configuration for these options: the named CAs or the
/// system's roots, the client identity when given, HTTP/1.1 by ALPN.
pub fn client_config(o: &TlsOptions) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &o.ca_file {
        Some(path) => {
            for cert in certificates("CA file", path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("a certificate in {} is not a CA: {e}", path.display()))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err(
                    "the system has no CA certificates; install ca-certificates or set ca_file"
                        .into(),
                );
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut config = match &o.client_cert {
        Some((cert, key)) => {
            let certs = certificates("client certificate", cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read("client key", key)?)
                .map_err(|e| format!("the client key {} is not a PEM key ({e})", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("the client certificate and key do not match ({e})"))?
        }
        None => builder.with_no_client_auth(),
    };
    // The probe speaks HTTP/1.1; a server that would pick h2 must not.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The handshake over a connected socket, bounded by `deadline`. On
/// success, the stream and the server certificate's `notAfter` (Unix
/// seconds).
pub(super) async fn handshake(
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
    stream: TcpStream,
    deadline: Instant,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, Option<i64>), Failure> {
    let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
        Failure::new(
            Outcome::TlsError,
            format!("\"{server_name}\" is not a name or address a certificate can carry; set server_name"),
        )
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = tokio::time::timeout_at(deadline, connector.connect(name, stream))
        .await
        .map_err(|_| {
            Failure::new(
                Outcome::TlsTimeout,
                format!(
                    "the TLS handshake did not end {} after the connect",
                    humantime::format_duration(timeout)
                ),
            )
        })?
        .map_err(|e| handshake_failure(&e, server_name))?;
    let not_after = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| not_after(leaf));
    Ok((tls, not_after))
}

/// The certificate's end of validity, Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// A failed handshake: the kernel's resets and closes keep their own
/// outcomes; whatever rustls refused is `tls-error` with its reason in the
/// words of what to do.
fn handshake_failure(e: &io::Error, server_name: &str) -> Failure {
    use rustls::{CertificateError, Error};
    let during = "during the TLS handshake";
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            return Failure::new(Outcome::Reset, format!("reset {during}: {e}"));
        }
        io::ErrorKind::UnexpectedEof => {
            return Failure::new(
                Outcome::Closed,
                format!(
                    "the server closed the connection {during}: is it speaking TLS on this port?"
                ),
            );
        }
        _ => {}
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return Failure::new(Outcome::TlsError, format!("{during}: {e}"));
    };
    let why = match tls {
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => format!(
            "the server's certificate is not for \"{server_name}\" ({tls}); probe the name it carries, or set server_name to it"
        ),
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("the server's certificate has expired ({tls}); renew it"),
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => format!(
            "the server's certificate is not valid yet ({tls}); check the clocks of the server and of this node"
        ),
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by a trusted CA ({tls}); set ca_file to the CA that signed it"
        ),
        Error::AlertReceived(_) => format!(
            "the server refused the handshake ({tls}); if it asks for a client certificate, set client_cert and client_key"
        ),
        other => format!("{during}: {other}"),
    };
    Failure::new(Outcome::TlsError, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_or_empty_ca_file_says_which_and_why() {
        let o = TlsOptions {
            server_name: "x".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            client_cert: None,
        };
        let e = client_config(&o).unwrap_err();
        assert!(
            e.contains("cannot read the CA file /nonexistent/ca.pem"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("tailprobe-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let o = TlsOptions {
            ca_file: Some(empty.clone()),
            ..o
        };
        let e = client_config(&o).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_the_end_of_validity_of_a_certificate() {
        let mut p = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        p.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        // 2031-05-17T00:00:00Z
        assert_eq!(not_after(cert.der()), Some(1_936_742_400));
        assert_eq!(not_after(b"junk"), None);
    }

    #[test]
    fn handshake_errors_name_what_to_do() {
        let io_of = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let f = handshake_failure(
            &io_of(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )),
            "svc.example",
        );
        assert_eq!(f.outcome, Outcome::TlsError);
        assert!(
            f.message.contains("not for \"svc.example\""),
            "{}",
            f.message
        );
        let f = handshake_failure(
            &io_of(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
            "x",
        );
        assert!(f.message.contains("set ca_file"), "{}", f.message);
        let f = handshake_failure(&io::Error::from(io::ErrorKind::UnexpectedEof), "x");
        assert_eq!(f.outcome, Outcome::Closed);
        let f = handshake_failure(&io::Error::from(io::ErrorKind::ConnectionReset), "x");
        assert_eq!(f.outcome, Outcome::Reset);
    }
}
