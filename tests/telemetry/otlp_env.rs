//! OTLP configured the OpenTelemetry way, against the real receiver
//! (oteltest): gRPC and HTTP over mutual TLS through a TLS front that
//! demands a client certificate (`OTEL_EXPORTER_OTLP_CERTIFICATE`, client
//! certificate and key; without the client certificate nothing gets
//! through); the resource's precedence (service name from
//! `OTEL_RESOURCE_ATTRIBUTES`, Kubernetes attributes from the downward
//! API's variables); `OTEL_TRACES_SAMPLER` (always_on keeps every healthy
//! probe, always_off none); `OTEL_SDK_DISABLED`; each signal sent only
//! where it has an endpoint.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::otlp::{Receiver, attr};
use common::{Behaviour, Server, TempDir, bin};

/// A throwaway CA, a server certificate for 127.0.0.1 and a client
/// certificate, made with the openssl command (EC P-256, one day).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new("pki");
        let d = dir.0.clone();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&d)
                .output()
                .expect("openssl runs (scripts/deps installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=tailprobe test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
            openssl(
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-keyout",
                        &format!("{name}.key"),
                        "-out",
                        &format!("{name}.csr"),
                        "-subj",
                        &format!("/CN=tailprobe test {name}"),
                    ],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }
}

fn pem_certs(p: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(p)
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
}

/// A TLS front on loopback for `upstream` (a plain receiver port): it asks
/// for a client certificate signed by the test CA, offers h2 and
/// http/1.1, and forwards the bytes. Returns its port and the count of
/// handshakes it completed.
async fn tls_front(pki: &Pki, upstream: u16) -> (u16, Arc<AtomicUsize>) {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&pki.path("ca.pem")) {
        roots.add(c).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            pem_certs(&pki.path("server.pem")),
            PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&handshakes);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counted) = (acceptor.clone(), Arc::clone(&counted));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::Relaxed);
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (port, handshakes)
}

/// `tailprobe matrix` with only these OTEL_* variables (and the downward
/// API's) set.
async fn matrix(cfg: &Path, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args([
        "matrix",
        "--config",
        cfg.to_str().unwrap(),
        "--samples",
        "3",
    ]);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

/// Waits up to 10 s for `ready`, without failing: the assertions after it
/// say what was missing.
async fn wait_until(mut ready: impl FnMut() -> bool) {
    let ready = &mut ready;
    common::poll_async(Duration::from_secs(10), Duration::from_millis(100), || {
        std::future::ready(ready().then_some(()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_and_http_over_mutual_tls_with_the_resource_and_sampler_from_the_environment() {
    let pki = Pki::new();
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("otlp-tls");
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[matrix]\nspacing = \"0s\"\n\
             [[target]]\nname = \"fine\"\nurl = \"{}\"\nnode = \"node1\"\n",
            ok.url("/")
        ),
    );
    let rx = Receiver::start();
    let path = |n: &str| pki.path(n).to_str().unwrap().to_string();
    for (protocol, upstream) in [("grpc", rx.grpc), ("http/protobuf", rx.http)] {
        let (port, handshakes) = tls_front(&pki, upstream).await;
        let base = vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("https://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", path("ca.pem")),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_string()),
        ];
        let label = if protocol == "grpc" { "grpc" } else { "http" };

        // Without the client certificate the front refuses the handshake:
        // nothing arrives, and the run says the export failed.
        let before = rx.spans(label).len();
        let out = matrix(
            &cfg,
            &[
                base.clone(),
                vec![("OTEL_TRACES_SAMPLER", "always_on".to_string())],
            ]
            .concat(),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{protocol}: {out:?}");
        assert_eq!(handshakes.load(Ordering::Relaxed), 0, "{protocol}");
        assert_eq!(rx.spans(label).len(), before, "{protocol}");

        // With it: every healthy probe kept (always_on), the service name
        // from OTEL_RESOURCE_ATTRIBUTES (no OTEL_SERVICE_NAME), the pod's
        // attributes from the downward API's variables.
        let out = matrix(
            &cfg,
            &[
                base.clone(),
                vec![
                    ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path("client.pem")),
                    ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path("client.key")),
                    ("OTEL_TRACES_SAMPLER", "always_on".to_string()),
                    (
                        "OTEL_RESOURCE_ATTRIBUTES",
                        "service.name=edge-prober,k8s.cluster.name=lab".to_string(),
                    ),
                    ("POD_NAME", "tailprobe-host-abc".to_string()),
                    ("POD_NAMESPACE", "tailprobe".to_string()),
                    ("POD_UID", "5d1c-uid".to_string()),
                ],
            ]
            .concat(),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{protocol}: {out:?}");
        wait_until(|| rx.spans(label).len() >= before + 3).await;
        let spans: Vec<_> = rx
            .spans(label)
            .into_iter()
            .skip(before)
            .filter(|(_, s)| s["name"] == "GET fine")
            .collect();
        assert_eq!(
            spans.len(),
            3,
            "{protocol}: always_on keeps all 3 healthy probes"
        );
        let res = &spans[0].0;
        for (k, v) in [
            ("service.name", "edge-prober"),
            ("k8s.cluster.name", "lab"),
            ("k8s.node.name", "node2"),
            ("k8s.pod.name", "tailprobe-host-abc"),
            ("k8s.namespace.name", "tailprobe"),
            ("k8s.pod.uid", "5d1c-uid"),
            ("service.instance.id", "5d1c-uid"),
        ] {
            assert_eq!(attr(res, k).as_deref(), Some(v), "{protocol}: {k}");
        }
        assert!(attr(res, "host.name").is_some(), "{protocol}: host.name");
        assert!(handshakes.load(Ordering::Relaxed) > 0, "{protocol}");
        wait_until(|| !rx.metric_names(label).is_empty()).await;
        assert!(
            !rx.metric_names(label).is_empty(),
            "{protocol}: metrics too"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn always_off_keeps_no_trace_and_sdk_disabled_sends_nothing() {
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("otlp-off");
    let closed = common::free_port();
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[matrix]\nspacing = \"0s\"\n\
             [[target]]\nname = \"fine\"\nurl = \"{}\"\nnode = \"node1\"\n\
             [[target]]\nname = \"refused\"\nurl = \"http://127.0.0.1:{closed}/\"\nnode = \"node1\"\n",
            ok.url("/")
        ),
    );
    let rx = Receiver::start();
    let endpoint = (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{}", rx.http),
    );
    let interval = ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_string());
    // always_off: not even the refused probes' traces; metrics still go.
    let out = matrix(
        &cfg,
        &[
            endpoint.clone(),
            interval.clone(),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_off".to_string()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    wait_until(|| !rx.metric_names("http").is_empty()).await;
    assert!(!rx.metric_names("http").is_empty());
    assert!(rx.spans("http").is_empty(), "{:?}", rx.spans("http"));

    // OTEL_SDK_DISABLED: nothing at all, and the log says why.
    let rx = Receiver::start();
    let out = matrix(
        &cfg,
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", rx.http),
            ),
            interval,
            ("OTEL_SDK_DISABLED", "TRUE".to_string()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rx.received().is_empty(), "{:?}", rx.received());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OTEL_SDK_DISABLED is true"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A traces-only backend (Jaeger) gets traces only: a signal without an
/// endpoint of its own or a general one is not sent, and
/// `OTEL_METRICS_EXPORTER=none` turns one signal off.
#[tokio::test(flavor = "multi_thread")]
async fn each_signal_goes_only_where_it_has_an_endpoint() {
    let dir = TempDir::new("otlp-signals");
    let closed = common::free_port();
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[matrix]\nspacing = \"0s\"\n\
             [[target]]\nname = \"refused\"\nurl = \"http://127.0.0.1:{closed}/\"\nnode = \"node1\"\n"
        ),
    );
    let signals = |rx: &Receiver| {
        let mut s: Vec<String> = rx
            .received()
            .iter()
            .map(|r| r["signal"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let rx = Receiver::start();
    let out = matrix(
        &cfg,
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://127.0.0.1:{}/v1/traces", rx.http),
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf".into()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500".into()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    wait_until(|| !rx.spans("http").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(signals(&rx), ["traces"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OTLP log records are not exported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rx = Receiver::start();
    let out = matrix(
        &cfg,
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", rx.http),
            ),
            ("OTEL_METRICS_EXPORTER", "none".into()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500".into()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    wait_until(|| signals(&rx).len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(signals(&rx), ["logs", "traces"]);
}
