//! The connect phase against the wire: two namespaces joined by a veth, a
//! packet capture (tcpdump) on the client's end, and each probe's connect
//! time compared with its SYN-to-SYN-ACK on the capture, matched by local
//! port. A bare tokio connect loop, timed around the call as most clients
//! do, is measured in the same run as the floor to compare with.

use crate::common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tailprobe::lab::netns;
use tailprobe::model::{SourceKind, Target};
use tailprobe::probe::Prober;
use tokio_util::sync::CancellationToken;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and a veth between them, removed by name when dropped.
struct Pair {
    client: String,
    server: String,
    dev: String,
    server_ip: String,
}

impl Pair {
    fn new() -> Self {
        let id = std::process::id() % 100_000;
        let (client, server) = (format!("tptc{id}"), format!("tpts{id}"));
        let (dev, peer) = (format!("tptc{id}"), format!("tpts{id}"));
        let net = id % 250;
        for ns in [&client, &server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", &dev, "netns", &client, "type", "veth", "peer", "name", &peer, "netns",
            &server,
        ]);
        ip(&[
            "-n",
            &client,
            "addr",
            "add",
            &format!("10.213.{net}.1/30"),
            "dev",
            &dev,
        ]);
        ip(&[
            "-n",
            &server,
            "addr",
            "add",
            &format!("10.213.{net}.2/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &client, "link", "set", &dev, "up"]);
        ip(&["-n", &server, "link", "set", &peer, "up"]);
        Pair {
            client,
            server,
            dev,
            server_ip: format!("10.213.{net}.2"),
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// (local port, connect time) of every probe.
type Timed = Vec<(u16, Duration)>;

/// Connects to `addr` `n` times, `overlap` at once, with tailprobe's prober
/// and with a bare tokio connect timed around the call.
async fn probe_both(addr: String, n: usize, overlap: usize) -> (Timed, Timed) {
    let prober = Arc::new(Prober::new("c", SourceKind::Host));
    let target = Arc::new(Target::parse("t", &format!("tcp://{addr}")).unwrap());
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..n / overlap {
        let mut tasks = Vec::new();
        for _ in 0..overlap {
            let (p, t) = (Arc::clone(&prober), Arc::clone(&target));
            tasks.push(tokio::spawn(async move {
                let r = p.probe(&t, &CancellationToken::new()).await;
                (
                    r.local_addr.unwrap().port(),
                    r.phases.connect_only().unwrap(),
                )
            }));
        }
        for t in tasks {
            ours.push(t.await.unwrap());
        }
        let mut tasks = Vec::new();
        for _ in 0..overlap {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let took = t0.elapsed();
                (s.local_addr().unwrap().port(), took)
            }));
        }
        for t in tasks {
            bare.push(t.await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (ours, bare)
}

/// Local port -> SYN to SYN-ACK, from tcpdump's text with nanosecond stamps.
fn wire(capture: &str, server: &str) -> HashMap<u16, Duration> {
    let (mut syn, mut out) = (HashMap::new(), HashMap::new());
    for line in capture.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 7 || f[1] != "IP" {
            continue;
        }
        let secs = |s: &str| -> f64 { s.parse().unwrap() };
        let port = |a: &str| -> u16 {
            a.trim_end_matches(':')
                .rsplit('.')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (src, dst, flags) = (f[2], f[4], f[6]);
        if flags == "[S]," && dst.starts_with(server) {
            syn.entry(port(src)).or_insert(secs(f[0]));
        } else if flags == "[S.]," && src.starts_with(server) {
            let p = port(dst);
            if let Some(t) = syn.get(&p) {
                out.insert(p, Duration::from_secs_f64(secs(f[0]) - t));
            }
        }
    }
    out
}

/// Median and p99 of |measured - wire|, in microseconds.
fn errors(timed: &Timed, wire: &HashMap<u16, Duration>) -> (f64, f64, usize) {
    let mut e: Vec<f64> = timed
        .iter()
        .filter_map(|(p, d)| {
            let w = wire.get(p)?;
            Some((d.as_secs_f64() - w.as_secs_f64()).abs() * 1e6)
        })
        .collect();
    e.sort_by(f64::total_cmp);
    let q = |x: f64| e[((e.len() - 1) as f64 * x).round() as usize];
    (q(0.5), q(0.99), e.len())
}

#[test]
fn each_connect_time_matches_the_wire_against_a_capture_as_root() {
    let _turn = crate::shared();
    let pair = Pair::new();
    let port = 8123;
    let server_ip = pair.server_ip.clone();
    let listen = format!("{server_ip}:{port}");
    let l = listen.clone();
    // Accepts, and closes only after the client has: the client side then
    // holds TIME_WAIT, so no local port is reused within the run and each
    // port names one connection on the capture.
    let _server = netns::spawn_in(&pair.server, move || {
        let listener = std::net::TcpListener::bind(&l).unwrap();
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::Read;
                let mut s = s;
                let _ = s.read(&mut [0u8; 16]);
            });
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The capture goes to a file: a pipe nobody reads would fill and stall
    // tcpdump into dropping packets.
    let dir = common::TempDir::new("timing");
    let capture_file = dir.0.join("capture.txt");
    let mut dump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.client,
            "tcpdump",
            "-i",
            &pair.dev,
            "-nn",
            "-tt",
            "-l",
        ])
        .args(["--time-stamp-precision=nano", "-B", "16384"])
        .arg("tcp[tcpflags] & tcp-syn != 0")
        .stdout(std::fs::File::create(&capture_file).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump runs (scripts/deps installs it)");
    {
        use std::io::BufRead;
        let mut err = std::io::BufReader::new(dump.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "tcpdump did not start"
            );
        }
    }
    let addr = listen.clone();
    let (one, sixteen) = netns::run_in(&pair.client, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let one = probe_both(addr.clone(), 200, 1).await;
            let sixteen = probe_both(addr, 320, 16).await;
            (one, sixteen)
        })
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dump.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    dump.wait().unwrap();
    let capture = std::fs::read_to_string(&capture_file).unwrap();
    let w = wire(&capture, &server_ip);
    let mut report = Vec::new();
    for (label, (ours, bare)) in [("one at a time", &one), ("16 overlapping", &sixteen)] {
        let (om, o99, on) = errors(ours, &w);
        let (bm, b99, bn) = errors(bare, &w);
        assert!(
            on * 10 >= ours.len() * 9 && bn * 10 >= bare.len() * 9,
            "probes matched on the capture: {on}, {bn}"
        );
        report.push(format!(
            "{label}: tailprobe error median {om:.1} us, p99 {o99:.1} us; bare tokio connect median {bm:.1} us, p99 {b99:.1} us"
        ));
        // The connect phase is the handshake on the wire: the kernel's own
        // sample, not the task's clock.
        assert!(om <= 50.0 && o99 <= 250.0, "{}", report.join("\n"));
        assert!(om <= bm * 1.1 + 5.0, "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
}
