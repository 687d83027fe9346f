//! Hostile targets and clients cannot exhaust a prober. Each test is one
//! defect a hostile peer or a careless operator could exploit, within
//! bounded counts and times, all on loopback.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Behaviour, Server, SynBlackhole, TempDir, bin, free_port, get};
use tailprobe::model::{Outcome, SourceKind, Target, TargetNode};
use tailprobe::probe::Prober;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Connects, retrying while the server starts.
async fn connect(addr: &str) -> TcpStream {
    // The last refusal, for the failure's message.
    let last = std::cell::RefCell::new(None);
    let tried = &last;
    let stream = common::poll_async(
        Duration::from_secs(10),
        Duration::from_millis(20),
        move || async move {
            TcpStream::connect(addr)
                .await
                .map_err(|e| *tried.borrow_mut() = Some(e))
                .ok()
        },
    )
    .await;
    stream.unwrap_or_else(|| panic!("{addr}: {}", last.into_inner().unwrap()))
}

/// Sends a GET and reads the response head.
async fn head(addr: &str, path: &str) -> (TcpStream, String) {
    let mut s = connect(addr).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&buf).to_lowercase())
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_streams_large_bodies_in_bounded_memory_and_caps_streams() {
    let addr = format!("127.0.0.1:{}", free_port());
    let echo = tokio::process::Command::new(bin())
        .args(["echo", "--listen", &addr, "--node", "n1", "--pod", "p1"])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = echo.id().unwrap();

    // A whole body arrives, with its length declared up front.
    let (mut s, h) = head(&addr, "/bytes/1000000").await;
    assert!(h.contains("content-length: 1000000"), "{h}");
    let mut body = vec![0u8; 1_000_000];
    s.read_exact(&mut body).await.unwrap();
    assert!(body.iter().all(|b| *b == b'x'));

    // Eight 64 MiB bodies whose clients stop reading: before streaming, each
    // was built whole in memory (512 MiB); now memory does not grow with N.
    let before = rss_kib(pid);
    let mut held = Vec::new();
    for _ in 0..8 {
        let (mut s, h) = head(&addr, "/bytes/67108864").await;
        assert!(h.starts_with("http/1.1 200"), "{h}");
        let mut some = vec![0u8; 65536];
        s.read_exact(&mut some).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "8 stalled 64 MiB bodies grew the echo by {grown} KiB"
    );

    // Past the stream cap, new bodies are refused with a 503 and Retry-After.
    let mut refused = 0;
    for _ in 0..70 {
        let (s, h) = head(&addr, "/bytes/67108864").await;
        if h.starts_with("http/1.1 503") {
            assert!(h.contains("retry-after: 1"), "{h}");
            refused += 1;
        }
        held.push(s);
    }
    assert!(refused >= 14, "{refused} of 78 streams refused past 64");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_cannot_mint_series_with_node_headers() {
    let hostile = Server::start(Behaviour::NewNodeEveryTime).await;
    // Directly: an unknown target's header is believed only for known nodes.
    let prober = Prober::new("n1", SourceKind::Host);
    let t = Arc::new(Target::parse("hostile", &hostile.url("/")).unwrap());
    let r = prober.probe(&t, &CancellationToken::new()).await;
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(r.destination_node, None);
    assert!(r.rejected_node_header);
    // A mixed target believes only its own candidates.
    let mixed = Arc::new(
        Target::parse("mixed", &hostile.url("/"))
            .unwrap()
            .with_node(TargetNode::Mixed(vec!["n2".into(), "n3".into()])),
    );
    let r = prober.probe(&mixed, &CancellationToken::new()).await;
    assert!(r.destination_node.is_none() && r.rejected_node_header);

    // A daemon probing it every 20 ms keeps one series and counts the rest.
    let dir = TempDir::new("hardening-mint");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"n1\"\n[probe]\ninterval = \"20ms\"\njitter = \"0s\"\n[server]\nlisten = \"{listen}\"\n\
             [[target]]\nname = \"hostile\"\nurl = \"{}\"\n",
            hostile.url("/")
        ),
    );
    let (mut child, mut stderr) = common::daemon(&cfg, &[]);
    common::wait_for_line(&mut stderr, "Probing.", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, _, doc) = get(&listen, "/api/v1/histograms").await;
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{doc}");
    assert!(series[0]["destination_node"].is_null());
    let (_, _, metrics) = get(&listen, "/metrics").await;
    assert!(
        !metrics.contains("minted-"),
        "no minted name reaches a label"
    );
    let rejected: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tailprobe_node_header_rejected_total{target=\"hostile\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(rejected >= 20.0, "{rejected} rejected headers counted");
    common::terminate(child.id().unwrap());
    let _ = child.wait().await;
}

#[tokio::test]
async fn endless_and_stalled_response_heads_end_early() {
    let prober = Prober::new("n1", SourceKind::Host);
    // A head that never ends is refused past 16 KiB (hyper's default would
    // read about 400 KB), long before the timeout.
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let endless = Server::start(Behaviour::EndlessHead(Arc::clone(&written))).await;
    let t = Arc::new(
        Target::parse("endless", &endless.url("/"))
            .unwrap()
            .with_timeout(Duration::from_secs(20)),
    );
    let t0 = Instant::now();
    let r = prober.probe(&t, &CancellationToken::new()).await;
    assert_eq!(r.outcome, Outcome::ProtocolError, "{:?}", r.error);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 100_000, "the probe read {sent} bytes of head");

    // A server that accepts and never answers: the first-byte deadline ends
    // the probe, not the 20 s timeout that leaves room for the SYN ladder.
    let hang = Server::start(Behaviour::Hang).await;
    let mut t = Target::parse("hang", &hang.url("/"))
        .unwrap()
        .with_timeout(Duration::from_secs(20));
    t.first_byte_timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let r = prober.probe(&Arc::new(t), &CancellationToken::new()).await;
    assert_eq!(r.outcome, Outcome::TotalTimeout, "{:?}", r.error);
    assert!(r.error.unwrap().contains("no response head"));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_and_floods_cannot_hold_the_api_or_delay_shutdown() {
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("hardening-slowloris");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"n1\"\n[server]\nlisten = \"{listen}\"\nmax_connections = 32\nheader_read_timeout = \"1s\"\nshutdown_grace = \"1s\"\n\
             [[target]]\nname = \"ok\"\nurl = \"{}\"\n",
            ok.url("/")
        ),
    );
    let (mut child, mut stderr) = common::daemon(&cfg, &[]);
    common::wait_for_line(&mut stderr, "Probing.", Duration::from_secs(10)).await;

    // 48 clients each send half a request head and go quiet.
    let mut slow = Vec::new();
    for _ in 0..48 {
        let mut s = connect(&listen).await;
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n").await;
        slow.push(s);
    }
    // The server closes every one of them once the head deadline passes.
    let t0 = Instant::now();
    for mut s in slow {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(4), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a slow client was still connected after 4 s"
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(4));
    // The API answers again, and said how many it refused past 32.
    let (status, _, metrics) = get(&listen, "/metrics").await;
    assert_eq!(status, 200);
    let refused: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tailprobe_server_connections_refused_total{server=\"api\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 16.0, "{refused} refused");

    // Idle keep-alive clients do not hold up shutdown past the grace.
    let mut idle = Vec::new();
    for _ in 0..16 {
        let mut s = connect(&listen).await;
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        idle.push(s);
    }
    let t0 = Instant::now();
    common::terminate(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the daemon exits")
        .unwrap();
    assert!(status.success());
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_open_files_limit_is_raised_checked_and_healthz_outlives_stuck_probes() {
    let hole = SynBlackhole::new();
    let dir = TempDir::new("hardening-nofile");
    let listen = format!("127.0.0.1:{}", free_port());
    let target = format!(
        "[[target]]\nname = \"stuck\"\nurl = \"http://{}/\"\n",
        hole.addr
    );
    // A bound that cannot fit under a hard limit of 1500 is refused at start.
    let too_many = dir.file(
        "many.toml",
        &format!("node = \"n1\"\n[server]\nlisten = \"{listen}\"\n{target}"),
    );
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "ulimit -Sn 1024 && ulimit -Hn 1500 && exec {} run --config {}",
                bin(),
                too_many.display()
            ),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("hard limit is 1500") && err.contains("at most 476"),
        "{err}"
    );

    // 400 probes stuck in SYN_SENT under a soft limit of 512 (raised to the
    // hard 1500 at start): /healthz still gets a descriptor.
    let fits = dir.file(
        "fits.toml",
        &format!(
            "node = \"n1\"\n[probe]\ninterval = \"5ms\"\njitter = \"0s\"\nmax_in_flight = 400\n\
             [server]\nlisten = \"{listen}\"\n{target}"
        ),
    );
    let mut child = tokio::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "ulimit -Sn 512 && ulimit -Hn 1500 && exec {} run --config {}",
                bin(),
                fits.display()
            ),
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    common::eventually_async(
        "400 probes in flight",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let (_, _, m) = match TcpStream::connect(&listen).await {
                Ok(_) => get(&listen, "/metrics").await,
                Err(_) => (0, String::new(), String::new()),
            };
            let in_flight: f64 = m
                .lines()
                .find(|l| l.starts_with("tailprobe_probes_in_flight "))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0);
            if in_flight >= 400.0 {
                Ok(())
            } else {
                Err(format!("{in_flight} in flight"))
            }
        },
    )
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        open.split_whitespace().nth(3) == Some("1500"),
        "soft limit raised: {open}"
    );
    for _ in 0..20 {
        assert_eq!(get(&listen, "/healthz").await.0, 200);
    }
    common::terminate(pid);
    let _ = child.wait().await;
}

/// Runs `cmd` inside network namespace `ns`.
fn in_ns(ns: &str, cmd: &[&str]) -> std::process::Output {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .unwrap()
}

/// A namespace whose resolv.conf (`ip netns exec` mounts
/// /etc/netns/NAME/resolv.conf over /etc/resolv.conf) names a resolver that
/// takes queries and never answers. Removed, by name, when dropped.
struct DeadResolver {
    ns: String,
    swallow: std::process::Child,
}

impl DeadResolver {
    fn new() -> Self {
        let ns = format!("tpdns{}", std::process::id() % 100_000);
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .status();
        assert!(
            std::process::Command::new("ip")
                .args(["netns", "add", &ns])
                .status()
                .unwrap()
                .success(),
            "this test needs root: it creates a network namespace"
        );
        in_ns(&ns, &["ip", "link", "set", "lo", "up"]);
        let dir = format!("/etc/netns/{ns}");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            format!("{dir}/resolv.conf"),
            "nameserver 127.0.0.53\noptions timeout:30 attempts:5\n",
        )
        .unwrap();
        let swallow = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c"])
            .arg(
                "import socket,time\n\
                 s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                 s.bind(('127.0.0.53',53))\n\
                 time.sleep(120)\n",
            )
            .spawn()
            .unwrap();
        Self { ns, swallow }
    }
}

impl Drop for DeadResolver {
    fn drop(&mut self) {
        let _ = self.swallow.kill();
        let _ = self.swallow.wait();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_resolver_strands_few_threads_times_out_and_never_blocks_exit_as_root() {
    let dead = DeadResolver::new();
    let dir = TempDir::new("hardening-dns");
    let port = free_port();
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"n1\"\n[probe]\ninterval = \"10ms\"\njitter = \"0s\"\nconnect_timeout = \"1s\"\nmax_in_flight = 400\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n\
             [[target]]\nname = \"by-name\"\nurl = \"http://probe-target.tailprobe.test:80/\"\n"
        ),
    );
    let mut child = tokio::process::Command::from(common::run_command(Some(&dead.ns), &cfg))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = in_ns(
        &dead.ns,
        &["curl", "-s", &format!("http://127.0.0.1:{port}/metrics")],
    );
    let metrics = String::from_utf8_lossy(&out.stdout);
    let timeouts: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("tailprobe_probes_total{") && l.contains("outcome=\"dns-timeout\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(timeouts >= 100.0, "{timeouts} lookups timed out: {metrics}");
    // 100 probes a second, each stuck in getaddrinfo: the threads are bounded.
    let threads: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(threads <= 64, "{threads} threads");
    let t0 = Instant::now();
    common::terminate(pid);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the prober exits though lookups are stuck")
        .unwrap();
    assert!(status.success());
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
}

/// A raw GET with extra header lines; the status.
async fn status_with(addr: &str, path: &str, extra: &str) -> u16 {
    let mut s = connect(addr).await;
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: x\r\n{extra}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_closes_the_api_but_not_the_health_checks() {
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("hardening-token");
    let token = "s3cret-token-0123456789";
    let token_file = dir.file("token", &format!("{token}\n"));
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"n1\"\n[server]\nlisten = \"{listen}\"\ntoken_file = \"{}\"\n\
             [[target]]\nname = \"ok\"\nurl = \"{}\"\n",
            token_file.display(),
            ok.url("/")
        ),
    );
    let (mut child, mut stderr) = common::daemon(&cfg, &[]);
    common::wait_for_line(&mut stderr, "Probing.", Duration::from_secs(10)).await;
    for path in [
        "/metrics",
        "/api/v1/histograms",
        "/api/v1/findings",
        "/api/v1/targets",
    ] {
        assert_eq!(status_with(&listen, path, "").await, 401, "{path}");
        let wrong = "authorization: Bearer s3cret-token-0123456780\r\n";
        assert_eq!(status_with(&listen, path, wrong).await, 401, "{path}");
        let right = format!("authorization: Bearer {token}\r\n");
        assert_eq!(status_with(&listen, path, &right).await, 200, "{path}");
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(status_with(&listen, path, "").await, 200, "{path}");
    }
    common::terminate(child.id().unwrap());
    let _ = child.wait().await;

    // A token file that is missing or too short stops the start, saying why.
    let short = dir.file("short", "abc\n");
    let bad = dir.file(
        "bad.toml",
        &format!(
            "node = \"n1\"\n[server]\nlisten = \"{listen}\"\ntoken_file = \"{}\"\n\
             [[target]]\nname = \"ok\"\nurl = \"{}\"\n",
            short.display(),
            ok.url("/")
        ),
    );
    let out = std::process::Command::new(bin())
        .args(["run", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 16 printable characters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A second signal ends the process at once, without waiting out the drain.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_without_draining() {
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("hardening-second-signal");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"n1\"\n[server]\nlisten = \"{listen}\"\nheader_read_timeout = \"60s\"\nshutdown_grace = \"60s\"\n\
             [[target]]\nname = \"ok\"\nurl = \"{}\"\n",
            ok.url("/")
        ),
    );
    let (mut child, mut stderr) = common::daemon(&cfg, &[]);
    common::wait_for_line(&mut stderr, "Probing.", Duration::from_secs(10)).await;
    // Half a request head: the drain would wait the 60 s grace on it.
    let mut slow = connect(&listen).await;
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.id().unwrap();
    common::terminate(pid);
    common::wait_for_line(&mut stderr, "Shutting down.", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    common::terminate(pid);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the second signal ends the process")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}
