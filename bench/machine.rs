//! The machine a benchmark ran on, for the line it prints first.

/// "Intel(R) Xeon(R) Processor, 2 CPUs, Linux 6.18.44".
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
