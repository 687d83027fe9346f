//! Time to detect, per ladder shape, on the built-in lab (root): a daemon
//! in node1 probes every node's Service once a second and judges every
//! 30 s (so anything sooner is the stall-driven judge); each shape's fault
//! is in place before it starts. Printed per shape: when the prober first
//! reported a lost SYN (a probe stalled, or one landed after losing SYNs),
//! how long after that the first (provisional) finding
//! and its settled scope were on `/api/v1/findings`, and when the finding
//! became final (the probes landed on their rung), from the daemon's start.
//!
//!   cargo bench --bench time_to_detect             every shape
//!   cargo bench --bench time_to_detect -- rehash   the shapes whose name contains "rehash"
//!
//! Under `cargo test --all-targets`, the 3 s rung shape only (about 10 s).

#[path = "machine.rs"]
mod machine;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tailprobe");

struct Shape {
    name: &'static str,
    knobs: &'static [&'static str],
    faults: &'static [&'static [&'static str]],
}

const CSUM: &[&[&str]] = &[
    &["vxlan-csum-bug", "--on", "node1"],
    &["vxlan-csum-bug", "--on", "node2"],
    &["vxlan-csum-bug", "--on", "node3"],
];

const SHAPES: &[Shape] = &[
    Shape {
        name: "checksum bug, classic (63 s rung)",
        knobs: &["--syn-linear-timeouts", "0", "--txrehash", "0"],
        faults: CSUM,
    },
    Shape {
        name: "checksum bug, linear timeouts 4 (67 s rung)",
        knobs: &["--syn-linear-timeouts", "4", "--txrehash", "0"],
        faults: CSUM,
    },
    Shape {
        name: "checksum bug, txrehash 1 (1 s rung)",
        knobs: &["--syn-linear-timeouts", "0", "--txrehash", "1"],
        faults: CSUM,
    },
    Shape {
        name: "2 SYNs dropped to node2, classic (3 s rung)",
        knobs: &["--syn-linear-timeouts", "0"],
        faults: &[&[
            "drop-syn", "--from", "node1", "--to", "node2", "--count", "2",
        ]],
    },
    Shape {
        name: "4 SYNs dropped to node2, classic (15 s rung)",
        knobs: &["--syn-linear-timeouts", "0"],
        faults: &[&[
            "drop-syn", "--from", "node1", "--to", "node2", "--count", "4",
        ]],
    },
    Shape {
        name: "3 SYNs dropped on 30 % of flows to node2 (7 s rung)",
        knobs: &["--syn-linear-timeouts", "0"],
        faults: &[&[
            "drop-syn",
            "--from",
            "node1",
            "--to",
            "node2",
            "--count",
            "3",
            "--percent",
            "30",
        ]],
    },
];

fn tailprobe(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn curl(ns: &str, path: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf", "--max-time", "2"])
        .arg(format!("http://127.0.0.1:9798{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Timeline {
    stall: Option<Duration>,
    first: Option<Duration>,
    settled: Option<Duration>,
    fin: Option<Duration>,
    scope: String,
}

fn measure(shape: &Shape, n: usize) -> Timeline {
    let name = format!("ttd{}x{n}", std::process::id() % 100_000);
    let mut up = vec!["lab", "up", "--name", &name, "--nodes", "3"];
    up.extend_from_slice(shape.knobs);
    tailprobe(&up);
    for f in shape.faults {
        let mut args = vec!["lab", "fault"];
        args.extend_from_slice(f);
        args.extend(["--name", &name]);
        tailprobe(&args);
    }
    let dir = std::env::temp_dir().join(format!("{name}-ttd"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = String::from(
        "node = \"node1\"\n[probe]\ninterval = \"1s\"\n[server]\nlisten = \"127.0.0.1:9798\"\n[detect]\ninterval = \"30s\"\n",
    );
    for i in 1..=3 {
        cfg += &format!(
            "[[target]]\nname = \"svc-node{i}\"\nurl = \"http://10.96.0.1{i}/\"\nnode = \"node{i}\"\n"
        );
    }
    let path = dir.join("c.toml");
    std::fs::write(&path, cfg).unwrap();
    let ns = format!("{name}-n1");
    let t0 = Instant::now();
    let mut daemon: Child = Command::new("ip")
        .args(["netns", "exec", &ns, BIN, "run", "--config"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut t = Timeline {
        stall: None,
        first: None,
        settled: None,
        fin: None,
        scope: String::new(),
    };
    let mut last_key = String::new();
    let mut key_since = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(120) && t.fin.is_none() {
        let now = t0.elapsed();
        // The first lost SYN the prober knows of: a probe stalled now, or
        // one that lost SYNs and landed before it was seen stalled.
        if t.stall.is_none()
            && curl(&ns, "/metrics").lines().any(|l| {
                l.starts_with("tailprobe_probes_stalled{")
                    || (l.starts_with("tailprobe_syn_retransmits_total{")
                        && l.rsplit(' ').next().is_some_and(|v| v != "0"))
            })
        {
            t.stall = Some(now);
        }
        let doc: serde_json::Value =
            serde_json::from_str(&curl(&ns, "/api/v1/findings")).unwrap_or_default();
        if let Some(f) = doc["findings"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["kind"] == "syn-retransmit-ladder"))
        {
            t.first.get_or_insert(now);
            let key = f["scope_key"].to_string();
            if key != last_key {
                (last_key, key_since) = (key, now);
                t.scope = f["scope"].as_str().unwrap_or("").to_string();
            }
            // The scope an alert would be raised on: held for 2 s.
            if t.settled.is_none() && now - key_since >= Duration::from_secs(2) {
                t.settled = Some(key_since);
            }
            if f["provisional"] == false {
                t.fin = Some(now);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = Command::new(BIN)
        .args(["lab", "down", "--name", &name])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    t
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filter: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .collect();
    // `cargo test --all-targets` runs this without --bench: the quickest
    // shape only, so the benchmark is known to work.
    let benching = args.iter().any(|a| a == "--bench");
    if !benching && filter.is_empty() {
        filter.push("2 SYNs dropped".into());
    }
    println!(
        "time to detect on {}: daemon in node1, probes every 1 s, [detect] interval 30 s",
        machine::describe()
    );
    println!(
        "{:<52} {:>7} {:>9} {:>9} {:>7}  scope",
        "shape", "loss", "+finding", "+settled", "final"
    );
    for (i, shape) in SHAPES
        .iter()
        .enumerate()
        .filter(|(_, s)| filter.is_empty() || filter.iter().any(|f| s.name.contains(f.as_str())))
    {
        let t = measure(shape, i);
        assert!(
            benching || (t.stall.is_some() && t.first.is_some() && t.fin.is_some()),
            "{}: a lost SYN, a finding and a final verdict within 120 s",
            shape.name
        );
        let after = |x: Option<Duration>| match (x, t.stall) {
            (Some(x), Some(s)) => Some(x.saturating_sub(s)),
            _ => None,
        };
        println!(
            "{:<52} {:>7} {:>9} {:>9} {:>7}  {}",
            shape.name,
            secs(t.stall),
            secs(after(t.first)),
            secs(after(t.settled)),
            secs(t.fin),
            t.scope
        );
    }
    println!(
        "loss: the first lost SYN on /metrics (a stall, or a landed probe's retransmits), s after start; +finding, +settled: the first finding and the scope held for 2 s (what an alert is raised on), s after the loss; final: s after start"
    );
}
