//! The processes measured beside the prober: the echo it probes and
//! blackbox_exporter driven at the same concurrency.

use super::*;

pub struct Echo {
    pub child: Child,
    pub port: u16,
}

impl Echo {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_tailprobe"))
            .args([
                "echo",
                "--listen",
                &format!("0.0.0.0:{port}"),
                "--node",
                "bench",
                "--pod",
                "bench",
            ])
            .env("TAILPROBE_LOG", "warn")
            .spawn()
            .expect("cannot start tailprobe echo");
        wait_listening(port);
        Self { child, port }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_listening(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

pub struct Blackbox {
    pub child: Child,
    pub port: u16,
    pub _dir: std::path::PathBuf,
}

impl Blackbox {
    pub fn start() -> Option<Self> {
        let bin = "/usr/bin/prometheus-blackbox-exporter";
        if !std::path::Path::new(bin).exists() {
            println!(
                "blackbox_exporter: not installed (apt-get install prometheus-blackbox-exporter); its rows are left out"
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!("tailprobe-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("blackbox.yml");
        std::fs::write(
            &cfg,
            "modules:\n  http_fresh:\n    prober: http\n    timeout: 10s\n    http:\n      method: GET\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args([
                &format!("--config.file={}", cfg.display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        wait_listening(port);
        Some(Self {
            child,
            port,
            _dir: dir,
        })
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Drives `/probe` with `concurrency` keep-alive scrapers; only the
    /// exporter's own CPU is counted.
    pub fn measure(&self, concurrency: usize, targets: &[SocketAddr]) -> (f64, f64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let cpu0 = cpu_secs(&self.pid(), false);
        let t0 = Instant::now();
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + RUN;
            let mut tasks = Vec::new();
            for w in 0..concurrency {
                let (done, port) = (done.clone(), self.port);
                let paths: Vec<String> = targets
                    .iter()
                    .map(|a| format!("/probe?module=http_fresh&target=http://{a}/"))
                    .collect();
                tasks.push(tokio::spawn(async move {
                    let mut i = w;
                    let mut conn = None;
                    while tokio::time::Instant::now() < deadline {
                        i += 1;
                        if scrape(&mut conn, port, &paths[i % paths.len()]).await {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let secs = t0.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed) as f64;
        (n / secs, (cpu_secs(&self.pid(), false) - cpu0) / n * 1e6)
    }

    pub fn rss_in_flight(&self, n: usize) -> String {
        let hole = Blackhole::new();
        let idle = rss_kib(&self.pid());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let busy = rt.block_on(async {
            let path = format!("/probe?module=http_fresh&target=http://{}/", hole.addr);
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let (port, path) = (self.port, path.clone());
                    tokio::spawn(async move {
                        let mut conn = None;
                        scrape(&mut conn, port, &path).await
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let busy = rss_kib(&self.pid());
            for t in tasks {
                t.abort();
            }
            busy
        });
        format!(
            "blackbox_exporter: {n} in flight, {:.2} KiB per probe ({} KiB idle, {} KiB busy)",
            busy.saturating_sub(idle) as f64 / n as f64,
            idle,
            busy
        )
    }
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

pub type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One `/probe` request on a kept-alive connection to the exporter; true
/// when the exporter reports `probe_success 1`.
pub async fn scrape(conn: &mut Option<Conn>, port: u16, path: &str) -> bool {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return false;
        };
        let Ok((tx, c)) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await else {
            return false;
        };
        tokio::spawn(c);
        *conn = Some(tx);
    }
    let tx = conn.as_mut().unwrap();
    if tx.ready().await.is_err() {
        *conn = None;
        return false;
    }
    let req = http::Request::get(path)
        .header("host", "bench")
        .body(Empty::new())
        .unwrap();
    match tx.send_request(req).await {
        Ok(resp) => match resp.into_body().collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).contains("\nprobe_success 1"),
            Err(_) => false,
        },
        Err(_) => {
            *conn = None;
            false
        }
    }
}
