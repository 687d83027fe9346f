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
#[path = "../machine.rs"]
mod machine;

mod clients;
mod memory;
mod peers;

use clients::*;
use memory::*;
use peers::*;

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
