//! Builds the passive mode's BPF program (`bpf/passive.bpf.c`) with clang,
//! when clang and libbpf's headers are there. Without them the binary still
//! builds: `TAILPROBE_BPF` then carries the reason, and passive mode says it
//! is unavailable and why.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/passive.bpf.c";
    println!("cargo::rerun-if-changed={src}");
    println!("cargo::rerun-if-env-changed=CLANG");
    // Installing libbpf's headers (and clang with them) builds it again; a
    // missing file reruns this script every build, which costs nothing.
    println!("cargo::rerun-if-changed=/usr/include/bpf/bpf_helpers.h");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("passive.bpf.o");
    let status = build(src, &obj);
    if let Err(why) = &status {
        // An empty object: the loader reads the reason instead.
        let _ = std::fs::write(&obj, b"");
        println!("cargo::warning=passive mode unavailable: {why}");
    }
    println!(
        "cargo::rustc-env=TAILPROBE_BPF={}",
        status.err().unwrap_or_else(|| "built".to_string())
    );
}

fn build(src: &str, obj: &std::path::Path) -> Result<(), String> {
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
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .map_err(|e| {
            format!("cannot run {clang} ({e}); install clang and libbpf-dev (apt-get install clang libbpf-dev)")
        })?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let first = err
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or("")
            .trim();
        return Err(format!(
            "{clang} could not compile {src}: {first}; install libbpf-dev for <bpf/bpf_helpers.h>"
        ));
    }
    // The DWARF is not needed to load (BTF is kept): a smaller binary.
    let _ = Command::new("llvm-strip").arg("-g").arg(obj).status();
    Ok(())
}
