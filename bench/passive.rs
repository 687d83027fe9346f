//! What passive mode costs the node: the bare connect loop (connect, then
//! an abortive close: no TIME_WAIT to run out of ports) over loopback, with
//! the BPF program attached and read every second as the daemon does, and
//! without, in alternating rounds. Printed: connects per second (median of
//! the rounds, closed loop), the programs' own kernel time per connect
//! (kernel.bpf_stats_enabled, restored after), the same paced at 10,000
//! connects per second, the kernel memory of the maps, and whether every
//! connect was counted. Needs root, clang at build time and a kernel with
//! BTF; says why and exits 0 elsewhere.
//!
//! `cargo bench --bench passive` (full), or `... -- SECONDS` per round.

#[path = "machine.rs"]
mod machine;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tailprobe::passive::bpf::Loaded;
use tailprobe::passive::read::ConnectKey;

const ROUNDS: usize = 5;
const PACED_RATE: u64 = 10_000;

fn main() {
    println!("machine: {}", machine::describe());
    if let Some(why) = tailprobe::passive::bpf::unavailable() {
        println!("SKIPPED: {why}");
        return;
    }
    let (sizes, benching) = machine::sizes(&[2], &[1]);
    let round = Duration::from_secs(sizes[0] as u64);
    let rounds = if benching { ROUNDS } else { 1 };
    // A deep backlog: a full accept queue drops SYNs, and the 1 s
    // retransmission would be measured instead of the connect.
    let listener = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        s.listen(4096).unwrap();
        TcpListener::from(s)
    };
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            listener.set_nonblocking(false).unwrap();
            for s in listener.incoming() {
                drop(s);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })
    };
    // One core accepts; the others connect.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().max(2) - 1);
    // The kernel times every program run while this is on (a few ns each).
    let stats_before = std::fs::read_to_string(BPF_STATS).unwrap_or_default();
    let _ = std::fs::write(BPF_STATS, "1");
    let mut runs = (0u64, 0u64, 0u64);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut counted = (0u64, 0u64);
    let mut memlock = 0;
    for _ in 0..rounds {
        off.push(closed_loop(addr, workers, round).0);
        let loaded = Loaded::load(2048, 65_536, 0).unwrap_or_else(|e| panic!("{e}"));
        memlock = maps_memlock();
        let (rate, made) = closed_loop(addr, workers, round);
        counted.0 += established_to(&loaded, addr);
        counted.1 += made;
        let (n, ns) = programs_run();
        runs = (runs.0 + n, runs.1 + ns, runs.2 + made);
        on.push(rate);
    }
    let (m_off, m_on) = (median(&mut off), median(&mut on));
    println!(
        "closed loop, {workers} threads, {rounds} rounds of {round:?} each way, median: {m_off:.0} connects/s without passive mode ({:.0} to {:.0}), {m_on:.0} with it ({:.0} to {:.0}): {:.3}x ({:+.1} %)",
        off[0],
        off[off.len() - 1],
        on[0],
        on[on.len() - 1],
        m_on / m_off,
        (m_on / m_off - 1.0) * 100.0
    );
    let _ = std::fs::write(BPF_STATS, stats_before.trim());
    if runs.0 > 0 {
        println!(
            "the programs ran {:.1} times per connect (both ends, every state change), {:.0} ns each: {:.2} us of kernel time per connect, {:.1} % of a connect's {:.1} us in the closed loop",
            runs.0 as f64 / runs.2 as f64,
            runs.1 as f64 / runs.0 as f64,
            runs.1 as f64 / runs.2 as f64 / 1e3,
            runs.1 as f64 / runs.2 as f64 / 1e3 / (1e6 / m_off) * 100.0,
            1e6 / m_off
        );
    }
    // Paced at the rate the target is stated at: the rate is held, and
    // the programs' own time is what the node pays.
    let _ = std::fs::write(BPF_STATS, "1");
    let loaded = Loaded::load(2048, 65_536, 0).unwrap();
    let (achieved, _) = paced(addr, round * rounds as u32, &loaded);
    let (n, ns) = programs_run();
    let _ = std::fs::write(BPF_STATS, stats_before.trim());
    drop(loaded);
    println!(
        "paced at {PACED_RATE} connects/s with passive mode on for {:?}: {achieved:.0} connects/s held; the programs took {:.2} % of one core ({:.2} us per connect)",
        round * rounds as u32,
        ns as f64 / (round * rounds as u32).as_secs_f64() / 1e9 * 100.0,
        ns as f64 / n.max(1) as f64
            * (n as f64 / (achieved * (round * rounds as u32).as_secs_f64()))
            / 1e3
    );
    println!(
        "kernel memory of the maps (memlock, 2,048 destinations, 65,536 connecting): {:.1} MiB",
        memlock as f64 / 1048576.0
    );
    println!(
        "counted {} of the {} connects made with passive mode on ({:.2} %)",
        counted.0,
        counted.1,
        counted.0 as f64 * 100.0 / counted.1.max(1) as f64
    );
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr);
    let _ = acceptor.join();
}

/// One connect and an abortive close.
fn connect(addr: SocketAddr) -> bool {
    let Ok(s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    true
}

/// Connects per second, and how many were made.
fn closed_loop(addr: SocketAddr, workers: usize, d: Duration) -> (f64, u64) {
    let done = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while t0.elapsed() < d {
                    if connect(addr) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let n = done.load(Ordering::Relaxed);
    (n as f64 / t0.elapsed().as_secs_f64(), n)
}

/// Connects per second achieved when paced at PACED_RATE, reading the maps
/// every second as the daemon does, and how many were made.
fn paced(addr: SocketAddr, d: Duration, loaded: &Loaded) -> (f64, u64) {
    let t0 = Instant::now();
    let (mut n, mut last_read) = (0u64, Instant::now());
    while t0.elapsed() < d {
        let due = (t0.elapsed().as_secs_f64() * PACED_RATE as f64) as u64;
        while n < due {
            connect(addr);
            n += 1;
        }
        if last_read.elapsed() >= Duration::from_secs(1) {
            let _ = loaded.read();
            last_read = Instant::now();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    (n as f64 / t0.elapsed().as_secs_f64(), n)
}

/// Established connects to `addr` the maps hold.
fn established_to(loaded: &Loaded, addr: SocketAddr) -> u64 {
    let r = loaded.read().unwrap();
    r.connects
        .iter()
        .filter(|(k, _)| {
            ConnectKey::parse(k).is_some_and(|k| {
                k.destination.addr == addr
                    && k.end == tailprobe::passive::read::ConnectEnd::Established
            })
        })
        .map(|(_, v)| v.iter().map(|n| u64::from(*n)).sum::<u64>())
        .sum()
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Runs and nanoseconds of this process's BPF programs, from
/// /proc/self/fdinfo (counted while kernel.bpf_stats_enabled is 1).
fn programs_run() -> (u64, u64) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return (0, 0);
    };
    let field = |s: &str, k: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|s| s.contains("prog_type:"))
        .fold((0, 0), |(n, ns), s| {
            (n + field(&s, "run_cnt:"), ns + field(&s, "run_time_ns:"))
        })
}

/// The memlock of this process's BPF maps, from /proc/self/fdinfo.
fn maps_memlock() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|s| s.contains("map_type:"))
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
