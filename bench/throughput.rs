//! Whole-process comparison of fresh-connection probing, peers side by side in
//! one run on one machine: tailprobe's prober, a bare tokio+hyper loop (the
//! floor: connect, GET, read, close, nothing else), a curl loop (the incident's
//! method: one process per probe) and prometheus-blackbox-exporter driven at the
//! same concurrency. Run it with `bench/run`.
//!
//! Measures probes per second at concurrency 1, 16 and 256 against a local
//! `tailprobe echo`, CPU per probe, and resident memory per in-flight probe
//! with probes stuck in SYN_SENT (a listener with a full accept queue drops
//! their SYNs). All traffic stays on loopback.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
#[path = "machine.rs"]
mod machine;

use machine::cpu_secs;
use tailprobe::model::SourceKind;
use tailprobe::model::Target;
use tailprobe::probe::Prober;
use tokio_util::sync::CancellationToken;

const CONCURRENCY: [usize; 3] = [1, 16, 256];
const RUN: Duration = Duration::from_secs(2);
const REPS: usize = 3;
/// Destination addresses 127.0.0.1..=N share the load, so TIME_WAIT entries
/// spread over many 4-tuples and no run runs out of ports.
const DESTINATIONS: u8 = 32;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss-child") {
        let kind = args[i + 1].as_str();
        let n: usize = args[i + 2].parse().unwrap();
        rss_child(kind, n);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--probe-loop") {
        // For profilers (strace -c, valgrind): N sequential probes of one kind.
        let client = if args[i + 1] == "tailprobe" {
            Client::Tailprobe
        } else {
            Client::Floor
        };
        let port: u16 = args[i + 2].parse().unwrap();
        let n: u64 = args[i + 3].parse().unwrap();
        let concurrency: u64 = args.get(i + 4).and_then(|c| c.parse().ok()).unwrap_or(1);
        probe_loop(
            client,
            SocketAddr::from(([127, 0, 0, 1], port)),
            n,
            concurrency,
        );
        return;
    }
    println!("{}", machine());
    let echo = Echo::start();
    let targets: Vec<SocketAddr> = (1..=DESTINATIONS)
        .map(|i| SocketAddr::from(([127, 0, 0, i], echo.port)))
        .collect();
    let blackbox = Blackbox::start();

    println!(
        "\nfresh-connection probes against a local `tailprobe echo`: median of {REPS} interleaved runs of {}s per cell",
        RUN.as_secs()
    );
    println!(
        "{:<24} {:>5} {:>12} {:>14} {:>10}",
        "client", "conc", "probes/s", "CPU us/probe", "vs floor"
    );
    let mut table: Vec<(String, usize, f64, f64)> = Vec::new();
    for &c in &CONCURRENCY {
        let mut runs: Vec<(&str, Vec<(f64, f64)>)> = vec![
            ("floor (tokio+hyper)", vec![]),
            ("tailprobe", vec![]),
            ("curl loop", vec![]),
            ("blackbox_exporter", vec![]),
        ];
        for _ in 0..REPS {
            runs[0]
                .1
                .push(measure_in_process(c, &targets, Client::Floor));
            runs[1]
                .1
                .push(measure_in_process(c, &targets, Client::Tailprobe));
            runs[2].1.push(measure_curl(c, &targets));
            if let Some(b) = &blackbox {
                runs[3].1.push(b.measure(c, &targets));
            }
        }
        let floor = median_of(&runs[0].1);
        for (name, r) in runs.iter().filter(|(_, r)| !r.is_empty()) {
            let (rate, cpu) = median_of(r);
            println!(
                "{name:<24} {c:>5} {rate:>12.0} {cpu:>14.1} {:>9.2}x",
                rate / floor.0
            );
            table.push((name.to_string(), c, rate, cpu));
        }
    }

    println!("\nresident memory per in-flight probe, probes stuck in SYN_SENT");
    let exe = std::env::current_exe().unwrap();
    let rss = |kind: &str, n: usize| -> String {
        let out = Command::new(&exe)
            .args(["--rss-child", kind, &n.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    println!("{}", rss("floor", 10_000));
    println!("{}", rss("tailprobe", 10_000));
    if let Some(b) = &blackbox {
        // Two descriptors per in-flight probe in the exporter (the scrape and
        // the probe) under a 20,000 descriptor limit.
        println!("{}", b.rss_in_flight(4_000));
    }
    println!("curl: one process per probe (several MB each); not measured in flight");

    println!("\nmicro costs (median of 5)");
    println!(
        "TCP_INFO read on an established socket: {:.0} ns",
        tcp_info_ns()
    );
    println!("histogram record: {:.1} ns", record_ns());

    let get = |n: &str, c: usize| {
        table
            .iter()
            .find(|r| r.0 == n && r.1 == c)
            .map(|r| (r.2, r.3))
    };
    println!("\ntargets");
    if let (Some(t), Some(f)) = (get("tailprobe", 16), get("floor (tokio+hyper)", 16)) {
        println!(
            "tailprobe / floor probes/s at concurrency 16: {:.2} (target >= 0.85)",
            t.0 / f.0
        );
    }
    if let (Some(t), Some(b)) = (get("tailprobe", 16), get("blackbox_exporter", 16)) {
        println!(
            "tailprobe / blackbox_exporter probes per CPU-second at concurrency 16: {:.1}x (target >= 5x)",
            b.1 / t.1
        );
    }
    drop(blackbox);
    drop(echo);
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    format!(
        "machine: {cpu}, {} cores, {:.0} GiB, Linux {}; tailprobe {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        mem as f64 / 1048576.0,
        kernel.trim(),
        tailprobe::VERSION
    )
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[derive(Clone, Copy)]
enum Client {
    Floor,
    Tailprobe,
}

/// A single-threaded runtime for both in-process clients: the comparison is
/// of work per probe, not of thread counts.
fn measure_in_process(concurrency: usize, targets: &[SocketAddr], client: Client) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_secs("self", false);
    let t0 = Instant::now();
    rt.block_on(async {
        let prober = Arc::new(Prober::new("bench", SourceKind::Host));
        let tps: Arc<Vec<Arc<Target>>> = Arc::new(
            targets
                .iter()
                .map(|a| {
                    Arc::new(
                        Target::parse("t", &format!("http://{a}/"))
                            .unwrap()
                            .with_timeout(Duration::from_secs(10)),
                    )
                })
                .collect(),
        );
        let addrs: Arc<Vec<SocketAddr>> = Arc::new(targets.to_vec());
        let cancel = CancellationToken::new();
        let deadline = tokio::time::Instant::now() + RUN;
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let (prober, tps, addrs, done, cancel) = (
                prober.clone(),
                tps.clone(),
                addrs.clone(),
                done.clone(),
                cancel.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while tokio::time::Instant::now() < deadline {
                    i = i.wrapping_add(1);
                    let ok = match client {
                        Client::Tailprobe => prober
                            .probe(&tps[i % tps.len()], &cancel)
                            .await
                            .outcome
                            .is_ok(),
                        Client::Floor => bare_probe(addrs[i % addrs.len()]).await,
                    };
                    if ok {
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
    let cpu = cpu_secs("self", false) - cpu0;
    let n = done.load(Ordering::Relaxed) as f64;
    (n / secs, cpu / n * 1e6)
}

fn probe_loop(client: Client, addr: SocketAddr, n: u64, concurrency: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let prober = Arc::new(Prober::new("bench", SourceKind::Host));
        let target = Arc::new(Target::parse("t", &format!("http://{addr}/")).unwrap());
        let cancel = CancellationToken::new();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (prober, target, cancel) = (prober.clone(), target.clone(), cancel.clone());
                tokio::spawn(async move {
                    for _ in 0..n / concurrency {
                        match client {
                            Client::Tailprobe => {
                                assert!(prober.probe(&target, &cancel).await.outcome.is_ok())
                            }
                            Client::Floor => assert!(bare_probe(addr).await),
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
    });
}

/// The floor: what any fresh-connection HTTP probe must do, and nothing more.
async fn bare_probe(addr: SocketAddr) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut tx, conn)) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "bench")
        .header("connection", "close")
        .body(Empty::new())
        .unwrap();
    match tx.send_request(req).await {
        Ok(resp) => resp.status().is_success() && resp.into_body().collect().await.is_ok(),
        Err(_) => false,
    }
}

fn measure_curl(concurrency: usize, targets: &[SocketAddr]) -> (f64, f64) {
    let workers = concurrency.min(64);
    let cpu0 = cpu_secs("self", true);
    let t0 = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for w in 0..workers {
            let done = done.clone();
            s.spawn(move || {
                let mut i = w;
                while t0.elapsed() < RUN {
                    i += 1;
                    let url = format!("http://{}/", targets[i % targets.len()]);
                    let ok = Command::new("curl")
                        .args(["-s", "-o", "/dev/null", "--max-time", "10", &url])
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed) as f64;
    (n / secs, (cpu_secs("self", true) - cpu0) / n * 1e6)
}

struct Echo {
    child: Child,
    port: u16,
}

impl Echo {
    fn start() -> Self {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

struct Blackbox {
    child: Child,
    port: u16,
    _dir: std::path::PathBuf,
}

impl Blackbox {
    fn start() -> Option<Self> {
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
    fn measure(&self, concurrency: usize, targets: &[SocketAddr]) -> (f64, f64) {
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

    fn rss_in_flight(&self, n: usize) -> String {
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

type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One `/probe` request on a kept-alive connection to the exporter; true
/// when the exporter reports `probe_success 1`.
async fn scrape(conn: &mut Option<Conn>, port: u16, path: &str) -> bool {
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

/// A listener with a full accept queue: the kernel drops every new SYN.
struct Blackhole {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _filler: std::net::TcpStream,
}

impl Blackhole {
    fn new() -> Self {
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        l.listen(0).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let filler = std::net::TcpStream::connect(addr).unwrap();
        Self {
            addr,
            _listener: l,
            _filler: filler,
        }
    }
}

/// Runs in a fresh process so earlier runs' allocations do not blur the figure.
fn rss_child(kind: &str, n: usize) {
    let hole = Blackhole::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (idle, busy) = rt.block_on(async {
        let prober = Arc::new(Prober::new("bench", SourceKind::Host));
        let target = Arc::new(Target::parse("t", &format!("http://{}/", hole.addr)).unwrap());
        let cancel = CancellationToken::new();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = rss_kib("self");
        let mut tasks = Vec::with_capacity(n);
        // Separate spawns: one async block for both kinds would give the
        // floor's tasks the size of the probe future.
        for _ in 0..n {
            let cancel = cancel.clone();
            if kind == "tailprobe" {
                let (prober, target) = (prober.clone(), target.clone());
                tasks.push(tokio::spawn(async move {
                    prober.probe(&target, &cancel).await;
                }));
            } else {
                let addr = hole.addr;
                tasks.push(tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::net::TcpStream::connect(addr) => {}
                        _ = cancel.cancelled() => {}
                    }
                }));
            }
        }
        // Past the first SYN retransmission, so TCP_INFO polling has run.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let busy = rss_kib("self");
        if kind == "tailprobe" {
            assert_eq!(prober.in_flight.probes(), n, "every probe is in flight");
        }
        cancel.cancel();
        for t in tasks {
            let _ = t.await;
        }
        (idle, busy)
    });
    println!(
        "{kind}: {n} in flight, {:.2} KiB per probe ({idle} KiB idle, {busy} KiB busy)",
        busy.saturating_sub(idle) as f64 / n as f64
    );
}

fn tcp_info_ns() -> f64 {
    use std::os::fd::AsFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    median(|| {
        let t = Instant::now();
        for _ in 0..100_000 {
            std::hint::black_box(tailprobe::probe::socket::tcp_info(c.as_fd()).unwrap());
        }
        t.elapsed().as_nanos() as f64 / 100_000.0
    })
}

fn record_ns() -> f64 {
    let mut h = tailprobe::stats::Latency::default();
    median(|| {
        let t = Instant::now();
        for i in 0..1_000_000u64 {
            h.record(Duration::from_micros(500 + (i * 7919) % 5000));
        }
        t.elapsed().as_nanos() as f64 / 1_000_000.0
    })
}

/// The median rate, and the CPU figure of that same run.
fn median_of(runs: &[(f64, f64)]) -> (f64, f64) {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..5).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    v[2]
}
