//! The machine a benchmark ran on, for the line it prints first.

/// "Intel(R) Xeon(R) Processor, 2 CPUs, Linux 6.18.44".
#[allow(dead_code)]
pub fn describe() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {} CPUs, Linux {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel.trim()
    )
}

/// The sizes to run and whether this is `cargo bench` (which passes
/// `--bench`): sizes given as arguments, else `full` when benching, else
/// `smoke` (`cargo test --all-targets` runs benches without `--bench`: a
/// small size proves the benchmark still works).
#[allow(dead_code)]
pub fn sizes(full: &[usize], smoke: &[usize]) -> (Vec<usize>, bool) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let given: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let sizes = match (given.is_empty(), benching) {
        (false, _) => given,
        (true, true) => full.to_vec(),
        (true, false) => smoke.to_vec(),
    };
    (sizes, benching)
}

/// CPU seconds (user + system) of a process from /proc: own, or waited-for children.
#[allow(dead_code)]
pub fn cpu_secs(pid: &str, children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: utime is field 14 overall, index 11 here.
    let base = if children { 13 } else { 11 };
    let ticks: u64 = fields.get(base).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields
            .get(base + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    ticks as f64 / 100.0
}
