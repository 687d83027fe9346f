//! Runs the system tools the lab is built with (`ip`, `nft`, `ethtool`) and
//! turns their failures into errors that say what to do.

use std::io::Write;
use std::process::{Command, Stdio};

use super::LabError;

/// Runs `program args...`, feeding `stdin` if given; returns stdout.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, LabError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LabError::missing_tool(program),
        _ => LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: e.to_string(),
        },
    })?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .map_err(|e| LabError::Command {
                command: format!("{program} {}", args.join(" ")),
                message: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| LabError::Command {
        command: format!("{program} {}", args.join(" ")),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip [-n ns] -batch -` with these lines.
pub fn ip_batch(ns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    batch("ip", ns, lines)
}

/// `TOOL [-n ns] -batch -` for the iproute2 tools (`ip`, `bridge`).
pub fn batch(tool: &str, ns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    let mut args = vec![];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    run(tool, &args, Some(&(lines.join("\n") + "\n"))).map(drop)
}

/// Runs a command inside a namespace.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all, None)
}

/// Loads an nftables script inside a namespace, atomically.
pub fn nft(ns: &str, script: &str) -> Result<(), LabError> {
    run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script)).map(drop)
}

/// The file of a sysctl in dotted form, where a `/` stands for a dot in a
/// name, as sysctl(8) reads it (`net.ipv4.conf.vxlan/calico.rp_filter`).
fn sysctl_path(key: &str) -> String {
    let path: String = key
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    format!("/proc/sys/{path}")
}

/// Writes a sysctl inside a namespace (`key` in dotted form).
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    let path = sysctl_path(key);
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!("echo {value} > {path}"),
        ],
        None,
    )
    .map(drop)
    .map_err(|e| match e {
        LabError::Command { message, .. } => LabError::Kernel {
            what: format!("cannot set {key} = {value} ({message}); this kernel may lack it"),
        },
        other => other,
    })
}

/// Writes a sysctl in this process's own network namespace (`key` in
/// dotted form): a thread or process that entered a lab namespace.
pub fn sysctl_here(key: &str, value: &str) -> Result<(), LabError> {
    let path = sysctl_path(key);
    std::fs::write(&path, value).map_err(|e| LabError::Kernel {
        what: format!("cannot set {key} = {value} ({e}); this kernel may lack it"),
    })
}

/// The lab namespaces that exist now.
pub fn namespaces() -> Result<Vec<String>, LabError> {
    Ok(run("ip", &["netns", "list"], None)?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}
