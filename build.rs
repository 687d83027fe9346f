//! Builds the passive mode's BPF program (`bpf/passive.bpf.c`) with clang,
//! when clang and libbpf's headers are there. Without them the binary still
//! builds: `TAILPROBE_BPF` then carries the reason, and passive mode says it
//! is unavailable and why. `TAILPROBE_REQUIRE_BPF=1` makes that a build
//! error instead (the container image sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let src = "bpf/passive.bpf.c";
    println!("cargo::rerun-if-env-changed=CLANG");
    println!("cargo::rerun-if-env-changed=TAILPROBE_REQUIRE_BPF");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("passive.bpf.o");
    let deps = out.join("passive.bpf.d");
    // Cargo reruns a script while a path it watches is missing, and this one
    // is never created.
    let never = out.join("rerun-until-the-bpf-program-builds");
    let _ = std::fs::remove_file(&never);
    let status = build(src, &obj, &deps);
    match &status {
        Ok(inputs) => {
            // Only the compiler's real inputs: the source and every header
            // clang read, as its dependency file lists them.
            for input in inputs {
                println!("cargo::rerun-if-changed={}", input.display());
            }
        }
        Err(why) => {
            // An empty object: the loader reads the reason instead.
            let _ = std::fs::write(&obj, b"");
            println!("cargo::warning=passive mode unavailable: {why}");
            // Installing clang or libbpf-dev changes nothing cargo could
            // watch (dpkg keeps the files' old mtimes), so every build tries
            // again until the program builds.
            println!("cargo::rerun-if-changed={}", never.display());
            if std::env::var("TAILPROBE_REQUIRE_BPF").is_ok_and(|v| !v.is_empty() && v != "0") {
                eprintln!("passive mode unavailable, and TAILPROBE_REQUIRE_BPF is set: {why}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "cargo::rustc-env=TAILPROBE_BPF={}",
        status.err().unwrap_or_else(|| "built".to_string())
    );
}

/// Compiles `src` into `obj`; the files the compile read, or why it failed.
fn build(src: &str, obj: &Path, deps: &Path) -> Result<Vec<PathBuf>, String> {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        return Err(format!("eBPF needs Linux, and this build targets {os}"));
    }
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH")
        .unwrap_or_default()
        .as_str()
    {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => return Err(format!("no BPF target macro for the {other} architecture")),
    };
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let install = "install clang and libbpf-dev (apt-get install clang libbpf-dev)";
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .args(["-MD", "-MT", "bpf", "-MF"])
        .arg(deps)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .map_err(|e| format!("cannot run {clang} ({e}); {install}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let mut lines = err.lines().map(str::trim).filter(|l| !l.is_empty());
        // 127 is a shell's "command not found" (a wrapper, or a clang
        // symlink whose target is gone).
        if output.status.code() == Some(127) {
            let first = lines.next().unwrap_or("exit status 127");
            return Err(format!("cannot run {clang} ({first}); {install}"));
        }
        let first = err
            .lines()
            .find(|l| l.contains("error"))
            .map(str::trim)
            .or_else(|| lines.next())
            .unwrap_or("");
        return Err(format!(
            "{clang} could not compile {src}: {first}; install libbpf-dev for <bpf/bpf_helpers.h>"
        ));
    }
    // The DWARF is not needed to load (BTF is kept): a smaller binary.
    let _ = Command::new("llvm-strip").arg("-g").arg(obj).status();
    let mut inputs = std::fs::read_to_string(deps)
        .map(|d| depfile_inputs(&d))
        .unwrap_or_else(|_| {
            // No dependency file: the headers where clang looks by default.
            ["bpf_helpers.h", "bpf_tracing.h", "bpf_core_read.h"]
                .map(|h| Path::new("/usr/include/bpf").join(h))
                .into()
        });
    if !inputs.iter().any(|p| p == Path::new(src)) {
        inputs.push(src.into());
    }
    Ok(inputs)
}

/// The prerequisites of a make rule as clang writes it (`bpf: a b \` and
/// continuation lines, spaces in names escaped with a backslash).
fn depfile_inputs(text: &str) -> Vec<PathBuf> {
    let body = text.split_once(':').map_or("", |(_, rest)| rest);
    let mut inputs = Vec::new();
    let mut word = String::new();
    let mut chars = body.chars().peekable();
    loop {
        let c = chars.next();
        match c {
            Some('\\') if chars.peek() == Some(&' ') => word.push(chars.next().unwrap_or(' ')),
            Some('$') if chars.peek() == Some(&'$') => word.push(chars.next().unwrap_or('$')),
            Some('\\') if chars.peek() == Some(&'\n') => {}
            Some(c) if !c.is_whitespace() => word.push(c),
            _ if !word.is_empty() => inputs.push(PathBuf::from(std::mem::take(&mut word))),
            _ => {}
        }
        if c.is_none() {
            return inputs;
        }
    }
}
