//! `https://` probes against a real TLS server (openssl s_server) with a CA
//! of the test's own: the TLS handshake as its own phase, the certificate's
//! end of validity, and each refusal as its own outcome with its reason.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TempDir, bin, free_port};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tailprobe::model::{Outcome, SourceKind, Target, TlsOptions};
use tailprobe::probe::Prober;
use tokio_util::sync::CancellationToken;

/// The test's CA and the files it signs into `dir`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, written where the test's files are.
    file: PathBuf,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Midnight UTC of the day `unix_s` falls in: rcgen takes whole days.
fn midnight(unix_s: i64) -> i64 {
    unix_s - unix_s.rem_euclid(86_400)
}

/// Sets the validity to the days `from` and `to` fall in, as rcgen takes
/// them (the date by Howard Hinnant's civil-from-days).
fn validity(p: &mut CertificateParams, from: i64, to: i64) {
    let (y, m, d) = ymd(from);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(to);
    p.not_after = rcgen::date_time_ymd(y, m, d);
}

fn ymd(unix_s: i64) -> (i32, u8, u8) {
    let z = unix_s.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

impl Ca {
    /// A CA whose certificate is written into `dir`.
    fn in_dir(dir: &TempDir) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "tailprobe test CA");
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Self {
            file: dir.file("ca.pem", &cert.pem()),
            issuer: Issuer::new(p, key),
        }
    }

    /// A server certificate for `names` valid from the day of `from` to
    /// midnight of the day of `to` (Unix seconds): (cert file, key file).
    fn sign(
        &self,
        dir: &TempDir,
        tag: &str,
        names: &[&str],
        from: i64,
        to: i64,
    ) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        validity(&mut p, from, to);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            dir.file(&format!("{tag}.pem"), &cert.pem()),
            dir.file(&format!("{tag}-key.pem"), &key.serialize_pem()),
        )
    }
}

/// `openssl s_server` answering every request with a 200 page; killed
/// when dropped.
struct SServer {
    child: Child,
    addr: SocketAddr,
}

impl SServer {
    fn start(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Self {
        let port = free_port();
        let mut cmd = Command::new("openssl");
        cmd.args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key);
        if let Some(ca) = client_ca {
            // -Verify: a client certificate is required, not only asked for.
            cmd.args(["-Verify", "1", "-CAfile"]).arg(ca);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl is installed (scripts/deps)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Self { child, addr };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("openssl s_server did not listen on {addr}");
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn probe(url: &str, tls: TlsOptions, tls_timeout: Duration) -> tailprobe::model::ProbeResult {
    let prober = Prober::new("n1", SourceKind::Host);
    let mut t = Target::parse("t", url)
        .unwrap()
        .with_timeout(Duration::from_secs(20));
    t.tls = Some(tls);
    t.tls_timeout = tls_timeout;
    prober.probe(&Arc::new(t), &CancellationToken::new()).await
}

fn opts(name: &str, ca: Option<&Path>) -> TlsOptions {
    TlsOptions {
        server_name: name.into(),
        ca_file: ca.map(Path::to_path_buf),
        client_cert: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_probes_time_the_handshake_and_read_the_certificate() {
    let dir = TempDir::new("https");
    let ca = Ca::in_dir(&dir);
    let ca_file = ca.file.clone();
    let now = unix(SystemTime::now());
    let end = midnight(now + 400 * 86_400);
    let (cert, key) = ca.sign(&dir, "good", &["svc.test", "127.0.0.1"], now - 3600, end);
    let s = SServer::start(&cert, &key, None);
    let url = format!("https://{}/", s.addr);

    let r = probe(
        &url,
        opts("svc.test", Some(&ca_file)),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);
    assert_eq!(r.status, Some(200));
    let p = r.phases;
    let (c, t, fb) = (p.connect.unwrap(), p.tls.unwrap(), p.first_byte.unwrap());
    assert!(
        c < t && t <= fb,
        "connect {c:?} < tls {t:?} <= first byte {fb:?}"
    );
    // The end the CA wrote, read back from the handshake exactly.
    assert_eq!(r.cert_not_after, Some(end));
    // The IP the URL names is in the certificate too.
    let r = probe(
        &url,
        opts("127.0.0.1", Some(&ca_file)),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);

    // Another name than the certificate's: tls-error naming it.
    let r = probe(
        &url,
        opts("other.test", Some(&ca_file)),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.outcome, Outcome::TlsError);
    let e = r.error.unwrap();
    assert!(e.contains("not for \"other.test\""), "{e}");
    assert!(r.phases.connect.is_some() && r.phases.tls.is_none());

    // The system's roots do not know the test's CA.
    let r = probe(&url, opts("svc.test", None), Duration::from_secs(5)).await;
    assert_eq!(r.outcome, Outcome::TlsError);
    assert!(r.error.unwrap().contains("set ca_file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_and_a_stalled_handshake_are_their_own_outcomes() {
    let dir = TempDir::new("https-bad");
    let ca = Ca::in_dir(&dir);
    let ca_file = ca.file.clone();
    let now = unix(SystemTime::now());
    let (cert, key) = ca.sign(&dir, "old", &["svc.test"], now - 90 * 86_400, now - 86_400);
    let s = SServer::start(&cert, &key, None);
    let r = probe(
        &format!("https://{}/", s.addr),
        opts("svc.test", Some(&ca_file)),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.outcome, Outcome::TlsError);
    let e = r.error.unwrap();
    assert!(e.contains("has expired") && e.contains("renew it"), "{e}");

    // A server that accepts and never answers the ClientHello.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = probe(
        &format!("https://{}/", hole.local_addr().unwrap()),
        opts("svc.test", Some(&ca_file)),
        Duration::from_millis(800),
    )
    .await;
    assert_eq!(r.outcome, Outcome::TlsTimeout, "{:?}", r.error);
    assert!(r.phases.connect.is_some() && r.phases.tls.is_none());
    assert!(
        r.phases.total >= Duration::from_millis(800),
        "{:?}",
        r.phases.total
    );
    drop(hole);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_asks_for_a_client_certificate_gets_the_configured_one() {
    let dir = TempDir::new("https-mtls");
    let ca = Ca::in_dir(&dir);
    let ca_file = ca.file.clone();
    let now = unix(SystemTime::now());
    let (cert, key) = ca.sign(&dir, "srv", &["svc.test"], now - 3600, now + 86_400 * 30);
    let (client, client_key) = ca.sign(&dir, "client", &["prober.test"], now - 3600, now + 86_400);
    let s = SServer::start(&cert, &key, Some(&ca_file));
    let url = format!("https://{}/", s.addr);
    let r = probe(
        &url,
        opts("svc.test", Some(&ca_file)),
        Duration::from_secs(5),
    )
    .await;
    assert_ne!(
        r.outcome,
        Outcome::Ok,
        "the server requires a client certificate"
    );
    let mut with = opts("svc.test", Some(&ca_file));
    with.client_cert = Some((client, client_key));
    let r = probe(&url, with, Duration::from_secs(5)).await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.error);
}

/// The one-shot matrix over a config file: the TLS phase in the JSON and
/// the table, and a certificate ending in five days named as a finding.
#[tokio::test(flavor = "multi_thread")]
async fn the_matrix_reports_the_tls_phase_and_a_certificate_about_to_end() {
    let dir = TempDir::new("https-matrix");
    let ca = Ca::in_dir(&dir);
    let ca_file = ca.file.clone();
    let now = unix(SystemTime::now());
    let end = midnight(now + 5 * 86_400);
    let (cert, key) = ca.sign(&dir, "soon", &["svc.test"], now - 3600, end);
    let s = SServer::start(&cert, &key, None);
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node1\"\n[matrix]\nspacing = \"0s\"\n\
             [[target]]\nname = \"secure\"\nurl = \"https://{}/\"\nnode = \"node1\"\n\
             server_name = \"svc.test\"\nca_file = \"{}\"\n",
            s.addr,
            ca_file.display()
        ),
    );
    let run = |format: &'static str| {
        std::process::Command::new(bin())
            .args([
                "matrix",
                "--config",
                cfg.to_str().unwrap(),
                "--samples",
                "4",
            ])
            .args(["--format", format])
            .output()
            .unwrap()
    };
    let out = run("json");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let cell = &report["cells"][0];
    assert_eq!(cell["failures"], 0, "{report:#}");
    assert!(
        cell["tls_p50_ms"].as_f64().unwrap() >= cell["connect_p50_ms"].as_f64().unwrap(),
        "{report:#}"
    );
    let until = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(end as u64));
    assert_eq!(cell["cert_not_after"], until.to_string(), "{report:#}");
    let f = &report["findings"][0];
    assert_eq!(f["kind"], "tls-cert-expiring", "{report:#}");
    assert_eq!(f["locus"], "backend");
    assert!(
        f["evidence"][0].as_str().unwrap().contains("valid until"),
        "{f:#}"
    );
    assert_eq!(out.status.code(), Some(1), "a finding is unhealthy");

    let table = String::from_utf8(run("table").stdout).unwrap();
    assert!(table.contains("TLS-P50"), "{table}");
    assert!(table.contains("tls-cert-expiring"), "{table}");
}
