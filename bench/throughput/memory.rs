//! What an in-flight probe costs in memory, and the per-probe syscall and
//! histogram costs.

use super::*;

/// A listener with a full accept queue: the kernel drops every new SYN.
pub struct Blackhole {
    pub addr: SocketAddr,
    pub _listener: socket2::Socket,
    pub _filler: std::net::TcpStream,
}

impl Blackhole {
    pub fn new() -> Self {
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
pub fn rss_child(kind: &str, n: usize) {
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
            assert_eq!(prober.live.probes(), n, "every probe is in flight");
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

pub fn tcp_info_ns() -> f64 {
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

pub fn record_ns() -> f64 {
    let mut h = tailprobe::stats::Latency::default();
    median(|| {
        let t = Instant::now();
        for i in 0..1_000_000u64 {
            h.record(Duration::from_micros(500 + (i * 7919) % 5000));
        }
        t.elapsed().as_nanos() as f64 / 1_000_000.0
    })
}
