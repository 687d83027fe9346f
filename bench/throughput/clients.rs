//! The in-process clients and the curl loop, each timed per probe.

use super::*;

#[derive(Clone, Copy)]
pub enum Client {
    Floor,
    Tailprobe,
}

/// A single-threaded runtime for both in-process clients: the comparison is
/// of work per probe, not of thread counts.
pub fn measure_in_process(
    concurrency: usize,
    targets: &[SocketAddr],
    client: Client,
) -> (f64, f64) {
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

pub fn probe_loop(client: Client, addr: SocketAddr, n: u64, concurrency: u64) {
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
pub async fn bare_probe(addr: SocketAddr) -> bool {
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

pub fn measure_curl(concurrency: usize, targets: &[SocketAddr]) -> (f64, f64) {
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
